/** SDXL: two CLIP towers (CLIPTextModel + CLIPTextModelWithProjection), diffusers' conditioning, bad input. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { asClipPart, encodeConditioning, loadTextConditioning, loadTextModel, type TextConditioning } from '../src/encoder/index.js';
import { ItdError } from '../src/errors.js';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import { hasNumpy, maxAbsDiff, npzF32, REPO_ROOT, tinySdxl, tmpDir } from './helpers.js';

const PROMPTS = ['a photo of an astronaut riding a horse', 'wow! a lighthouse!! at dusk', 'x'];
let cached: TextConditioning | undefined;
const sdxl = async () => (cached ??= await loadTextConditioning(tinySdxl()));

test('an SDXL directory loads as text_encoder (CLIPTextModel) + text_encoder_2 (with projection), sizes from the files', async () => {
  const c = await sdxl();
  assert.equal(c.layout.pipeline, 'StableDiffusionXLPipeline');
  assert.deepEqual(c.parts.map((p) => [p.name, p.encoder.architecture, p.encoder.hiddenSize, p.encoder.numLayers, p.encoder.pooledSize]), [
    ['text_encoder', 'CLIPTextModel', 48, 12, 48],
    ['text_encoder_2', 'CLIPTextModelWithProjection', 64, 32, 80],
  ]);
  assert.equal(c.defaultPart.name, 'text_encoder_2');
  assert.equal(c.defaultPart.defaultLayer, 21);
  assert.equal(c.parts[0]!.defaultLayer, 8);
  assert.equal(c.defaultPart.hookpoint(21), 'text_encoder_2.text_model.encoder.layers.21');
  assert.equal(asClipPart(c.parts[1]!).config.hiddenAct, 'gelu');
  assert.equal(asClipPart(c.parts[0]!).config.hiddenAct, 'quick_gelu');
  assert.notEqual(c.parts[0]!.id, c.parts[1]!.id);
  // loadTextModel loads one part: the default, or the one --encoder names.
  assert.equal((await loadTextModel(tinySdxl())).name, 'text_encoder_2');
  assert.equal((await loadTextModel(tinySdxl(), { encoder: '1' })).name, 'text_encoder');
  await assert.rejects(loadTextModel(tinySdxl(), { encoder: '3' }), (e: ItdError) => e.code === 'usage' && /--encoder 3: .* has encoder 1 \(text_encoder\), 2 \(text_encoder_2\)/.test(e.message));
});

test("tokenizer_2 pads with '!' (id 0) and, like HF, turns every literal '!' into that pad token; tokenizer 1 BPE-encodes it", async () => {
  const [a, b] = (await sdxl()).parts.map((p) => asClipPart(p).tokenizer);
  assert.equal(b!.padId, 0);
  const f2 = b!.frame('wow! hi!!');
  assert.deepEqual(Array.from(f2.ids.subarray(0, f2.length)), [b!.bosId, ...b!.encode('wow'), 0, ...b!.encode('hi'), 0, 0, b!.eosId]);
  assert.equal(f2.ids[76], 0);
  assert.equal(a!.frame('wow! hi!!').ids[76], a!.eosId);
  assert.deepEqual(a!.encode('!'), [256]); // byte-level '!</w>', as CLIP's vocabulary numbers it
  assert.deepEqual(b!.encode('!'), [0]);
});

test('prompt_embeds [N, 77, 48+64] = both towers\' hidden_states[-2]; pooled_prompt_embeds [N, 80] = projected EOS state of tower 2', async () => {
  const c = await sdxl();
  const { embeds, parts } = await encodeConditioning(c, PROMPTS);
  assert.deepEqual([embeds.n, embeds.seq, embeds.width, embeds.pooledWidth], [3, 77, 112, 80]);
  const [p1, p2] = parts;
  const h1 = p1!.hiddenStates.get(11)!; // hidden_states[-2] of 12 blocks
  const h2 = p2!.hiddenStates.get(31)!;
  for (const r of [0, 76, 2 * 77 + 5]) {
    assert.deepEqual(embeds.promptEmbeds.subarray(r * 112, r * 112 + 48), h1.subarray(r * 48, r * 48 + 48));
    assert.deepEqual(embeds.promptEmbeds.subarray(r * 112 + 48, r * 112 + 112), h2.subarray(r * 64, r * 64 + 64));
  }
  assert.equal(embeds.pooledPromptEmbeds, p2!.pooler);
  // clip_skip k: hidden_states[-(k + 2)].
  const skip = await encodeConditioning(c, PROMPTS.slice(0, 1), { clipSkip: 2 });
  assert.deepEqual(skip.embeds.promptEmbeds.subarray(0, 48), skip.parts[0]!.hiddenStates.get(9)!.subarray(0, 48));
  await assert.rejects(encodeConditioning(c, ['a'], { clipSkip: 11 }), /clip_skip 11 must be an integer in 0\.\.10/);
});

test('SDXL prompt_embeds and pooled_prompt_embeds match the independent numpy reference (<= 1e-4; skipped without numpy)', async (t) => {
  if (!hasNumpy()) return t.skip('python3 with numpy not available');
  const c = await sdxl();
  for (const clipSkip of [0, 1]) {
    const { embeds, parts } = await encodeConditioning(c, PROMPTS, { clipSkip });
    const dir = tmpDir();
    const ids = parts.map((p, i) => {
      const file = path.join(dir, `ids${i}.json`);
      fs.writeFileSync(file, JSON.stringify(Array.from({ length: p.n }, (_, r) => Array.from(p.inputIds.subarray(r * 77, r * 77 + 77)))));
      return file;
    });
    const out = path.join(dir, 'ref.npz');
    const r = spawnSync('python3', [path.join(import.meta.dirname, 'reference', 'clip_numpy.py'), '--sdxl', c.layout.dir, ...ids, out, String(clipSkip)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const [pe, pooled] = npzF32(out, ['prompt_embeds', 'pooled_prompt_embeds']);
    assert.ok(maxAbsDiff(embeds.promptEmbeds, pe!) <= 1e-4, `prompt_embeds clip_skip ${clipSkip}`);
    assert.ok(maxAbsDiff(embeds.pooledPromptEmbeds!, pooled!) <= 1e-4, `pooled_prompt_embeds ${maxAbsDiff(embeds.pooledPromptEmbeds!, pooled!)}`);
  }
});

test('itd encode --model SDXL writes diffusers-named tensors, the same as the library call', async () => {
  const out = path.join(tmpDir(), 'enc.safetensors');
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'itd.js'), 'encode', '--model', tinySdxl(), '--prompt', PROMPTS[0]!, '--prompt', PROMPTS[1]!, '--out', out, '--hidden-states', '0,12', '--clip-skip', '1'], { encoding: 'utf8', env: { ...process.env, ITD_QUIET: '1' } });
  assert.equal(r.status, 0, r.stderr);
  const f = SafetensorsFile.open(out);
  assert.deepEqual(f.names().sort(), ['hidden_states_1.0', 'hidden_states_1.12', 'hidden_states_2.0', 'hidden_states_2.12', 'input_ids_1', 'input_ids_2', 'pooled_prompt_embeds', 'prompt_embeds']);
  assert.deepEqual(f.info('prompt_embeds').shape, [2, 77, 112]);
  assert.deepEqual(f.info('pooled_prompt_embeds').shape, [2, 80]);
  assert.deepEqual([f.info('input_ids_2').dtype, ...f.info('input_ids_2').shape], ['I32', 2, 77]);
  assert.deepEqual(f.info('hidden_states_2.12').shape, [2, 77, 64]);
  const lib = await encodeConditioning(await sdxl(), PROMPTS.slice(0, 2), { clipSkip: 1 });
  assert.deepEqual(f.readF32('prompt_embeds'), lib.embeds.promptEmbeds);
  assert.deepEqual(f.readF32('pooled_prompt_embeds'), lib.embeds.pooledPromptEmbeds);
  assert.deepEqual(f.readI32('input_ids_2'), lib.parts[1]!.inputIds);
  assert.equal(f.readI32('input_ids_2')[76], 0); // tokenizer_2 pads with '!' = 0
  f.close();
  const bad = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'itd.js'), 'tokenize', '--model', tinySdxl(), '--encoder', '3', '--prompt', 'x'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--encoder 3: .*has encoder 1 \(text_encoder\), 2 \(text_encoder_2\)/);
});

test('a bare CLIPTextModelWithProjection directory loads; its pooled output is text_embeds', async () => {
  const src = tinySdxl();
  const dir = path.join(tmpDir(), 'bigg');
  fs.cpSync(path.join(src, 'text_encoder_2'), dir, { recursive: true });
  for (const f of fs.readdirSync(path.join(src, 'tokenizer_2'))) fs.copyFileSync(path.join(src, 'tokenizer_2', f), path.join(dir, f));
  const bare = await loadTextModel(dir);
  const inPipe = (await sdxl()).parts[1]!;
  assert.equal(bare.encoder.architecture, 'CLIPTextModelWithProjection');
  assert.equal(bare.id, inPipe.id);
  assert.equal(bare.hookpoint(3), 'text_model.encoder.layers.3');
  const b = bare.tokenizer.batch(PROMPTS);
  const ra = await bare.encoder.encode({ ids: b.ids, n: b.n, t: 77 });
  const rb = await inPipe.encoder.encode({ ids: b.ids, n: b.n, t: 77 });
  assert.deepEqual(ra.pooler, rb.pooler);
  assert.equal(ra.pooler.length, 3 * 80);
});

test('bad SDXL directories fail with an error naming the file and what was expected', async () => {
  const copy = () => {
    const dir = path.join(tmpDir(), 'bad');
    fs.cpSync(tinySdxl(), dir, { recursive: true });
    return dir;
  };
  const reject = (dir: string, re: RegExp, field?: string) =>
    assert.rejects(loadTextConditioning(dir), (e: ItdError) => e instanceof ItdError && re.test(e.message) && (field === undefined || e.field === field));
  const noTe2 = copy();
  fs.rmSync(path.join(noTe2, 'text_encoder_2'), { recursive: true });
  await reject(noTe2, /StableDiffusionXLPipeline directory lacks text_encoder_2\//, 'text_encoder_2');
  const noTok2 = copy();
  fs.rmSync(path.join(noTok2, 'tokenizer_2'), { recursive: true });
  await reject(noTok2, /lacks tokenizer_2\//, 'tokenizer_2');

  const badProj = copy();
  const cfgPath = path.join(badProj, 'text_encoder_2', 'config.json');
  fs.writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgPath, 'utf8')), projection_dim: 96 }));
  await reject(badProj, /text_projection\.weight' has shape \[80, 64\], config\.json implies \[96, 64\]/, 'text_projection.weight');

  const noProj = copy();
  const wPath = path.join(noProj, 'text_encoder_2', 'model.safetensors');
  const f = SafetensorsFile.open(wPath);
  const keep = Object.fromEntries(f.names().filter((n) => n !== 'text_projection.weight').map((n) => [n, { dtype: 'F32' as const, shape: f.info(n).shape, data: f.readF32(n) }]));
  f.close();
  writeSafetensors(wPath, keep);
  await reject(noProj, /missing tensor 'text_projection\.weight' \(expected shape \[80, 64\]\)/);

  const wrongClass = copy();
  const idx = path.join(wrongClass, 'model_index.json');
  fs.writeFileSync(idx, JSON.stringify({ ...JSON.parse(fs.readFileSync(idx, 'utf8')), text_encoder_2: ['transformers', 'CLIPTextModel'] }));
  await reject(wrongClass, /architectures says CLIPTextModelWithProjection, but model_index\.json names text_encoder_2 a CLIPTextModel/);
});
