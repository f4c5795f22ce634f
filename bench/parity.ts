/**
 * bench:parity — max |itd - reference| on a CLIP-L-size synthetic model (sd1 preset, f32) against
 * test/reference/clip_numpy.py, an independent float64 numpy implementation. Target <= 1e-4.
 * `npm run bench:parity -- sdxl`: the full-size SDXL pipeline's prompt_embeds [N, 77, 2048] and
 * pooled_prompt_embeds [N, 1280] against the reference's --sdxl mode (diffusers' encode_prompt).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeConditioning, loadTextConditioning, loadTextModel } from '../src/encoder/index.js';
import { benchModel, machine, ROOT } from './common.js';

if (spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status !== 0) {
  console.log('bench:parity skipped: python3 with numpy is not available');
  process.exit(0);
}
if (process.argv[2] === 'sdxl') {
  await sdxlParity();
  process.exit(0);
}
const dir = benchModel('sd1');
const model = await loadTextModel(dir);
const prompts = ['a photo of an astronaut riding a horse on mars', 'An oil painting of a lighthouse, dramatic light!', 'x', 'café naïve 東京 🐱'];
const b = model.tokenizer.batch(prompts);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'itd-parity-'));
fs.writeFileSync(path.join(tmp, 'ids.json'), JSON.stringify(Array.from({ length: b.n }, (_, r) => Array.from(b.ids.subarray(r * 77, r * 77 + 77)))));
const r = spawnSync('python3', [path.join(ROOT, 'test', 'reference', 'clip_numpy.py'), path.join(dir, 'text_encoder'), path.join(tmp, 'ids.json'), path.join(tmp, 'ref.npz')], { encoding: 'utf8' });
if (r.status !== 0) throw new Error(r.stderr);
const keys = ['last', ...Array.from({ length: model.config.numLayers + 1 }, (_, i) => `h${i}`)];
const dump = spawnSync('python3', ['-c', `import numpy as np,sys; z=np.load('${path.join(tmp, 'ref.npz')}'); sys.stdout.buffer.write(b''.join(z[k].tobytes() for k in ${JSON.stringify(keys)}))`], { maxBuffer: 1 << 30 });
const buf = dump.stdout as Buffer;
const ref = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
const out = await model.encoder.encode({ ids: b.ids, n: b.n, t: 77 }, { hiddenStates: keys.slice(1).map((_, i) => i) });
const size = b.n * 77 * model.config.hiddenSize;
const diff = (a: Float32Array, k: number) => {
  let m = 0;
  for (let i = 0; i < size; i++) m = Math.max(m, Math.abs(a[i]! - ref[k * size + i]!));
  return m;
};
const worst = Math.max(diff(out.lastHiddenState, 0), ...keys.slice(1).map((_, i) => diff(out.hiddenStates.get(i)!, i + 1)));
console.log(`bench:parity — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
console.log(`CLIP-L-size synthetic model, ${prompts.length} prompts x 77 tokens, every hidden state + last_hidden_state`);
console.log(`max |itd - numpy float64 reference| = ${worst.toExponential(3)} (target <= 1e-4)`);
fs.rmSync(tmp, { recursive: true, force: true });

async function sdxlParity(): Promise<void> {
  const dir = benchModel('sdxl');
  const text = await loadTextConditioning(dir);
  const prompts = ['a photo of an astronaut riding a horse on mars', 'wow! a lighthouse!! at dusk, café 東京'];
  const { embeds, parts } = await encodeConditioning(text, prompts);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'itd-parity-'));
  const ids = parts.map((p, i) => {
    const f = path.join(tmp, `ids${i}.json`);
    fs.writeFileSync(f, JSON.stringify(Array.from({ length: p.n }, (_, r) => Array.from(p.inputIds.subarray(r * 77, r * 77 + 77)))));
    return f;
  });
  await text.release();
  const r = spawnSync('python3', [path.join(ROOT, 'test', 'reference', 'clip_numpy.py'), '--sdxl', dir, ...ids, path.join(tmp, 'ref.npz')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const dump = spawnSync('python3', ['-c', `import numpy as np,sys; z=np.load('${path.join(tmp, 'ref.npz')}'); sys.stdout.buffer.write(z['prompt_embeds'].tobytes()+z['pooled_prompt_embeds'].tobytes())`], { maxBuffer: 1 << 30 });
  const buf = dump.stdout as Buffer;
  const ref = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const pe = embeds.promptEmbeds;
  const worst = (a: Float32Array, off: number) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - ref[off + i]!)), 0);
  console.log(`bench:parity sdxl — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
  console.log(`full-size synthetic SDXL (CLIP-L + bigG with projection), ${prompts.length} prompts x 77 tokens; token ids from both tokenizers`);
  console.log(`max |itd - numpy float64| prompt_embeds [${embeds.n}, 77, ${embeds.width}] = ${worst(pe, 0).toExponential(3)}, pooled_prompt_embeds [${embeds.n}, ${embeds.pooledWidth}] = ${worst(embeds.pooledPromptEmbeds!, pe.length).toExponential(3)} (target <= 1e-4)`);
  fs.rmSync(tmp, { recursive: true, force: true });
}
