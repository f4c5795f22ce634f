// SAEs trained elsewhere load to the numbers their framework computes. The fixtures under
// test/fixtures/sae-formats were written by make_fixtures.py there (numpy; torch.save's zip layout),
// which also wrote each framework's forward on an input x into expected.json.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadTextModel } from '../src/encoder/index.js';
import { ItdError } from '../src/errors.js';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import { openTensorFile } from '../src/io/tensor-file.js';
import { loadSae, saveSae, type Sae } from '../src/sae/index.js';
import { maxAbsDiff, tinyModel, tmpDir } from './helpers.js';

const FIX = path.join(import.meta.dirname, 'fixtures', 'sae-formats');
const SCRIPT = path.join(FIX, 'make_fixtures.py');

interface Expected { x: number[][]; z: number[][]; x_hat: number[][] }

const readExpected = (dir: string): Expected => JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected;

/** Dense latents [r, n] and reconstruction [r, D] of x through itd's encode/decode. */
async function forward(sae: Sae, x: number[][]): Promise<{ z: Float32Array; xHat: Float32Array }> {
  const r = x.length;
  const codes = await sae.encode(Float32Array.from(x.flat()), r);
  const z = new Float32Array(r * sae.n);
  for (let i = 0; i < r; i++) for (let s = 0; s < codes.k; s++) if (codes.values[i * codes.k + s]! !== 0) z[i * sae.n + codes.indices[i * codes.k + s]!] = codes.values[i * codes.k + s]!;
  return { z, xHat: sae.decode(codes.indices, codes.values, r, codes.k) };
}

/** |a - b| <= 1e-5 * max(1, |b|) elementwise. */
function assertClose(got: Float32Array, want: number[], what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  want.forEach((w, i) => assert.ok(Math.abs(got[i]! - w) <= 1e-5 * Math.max(1, Math.abs(w)), `${what}[${i}]: ${got[i]} vs ${w}`));
}

const CASES: [string, string][] = [
  ['saelens-standard', 'relu'],
  ['saelens-jumprelu', 'jumprelu'],
  ['saelens-topk', 'topk'],
  ['saelens-topk-rescaled', 'topk'],
  ['dictlearn-batchtopk', 'batchtopk'],
  ['itd-official', 'topk'],
  ['openai-relu', 'relu'],
  ['sparsify-topk', 'topk'],
];

for (const [name, activation] of CASES) {
  test(`${name}: latents and reconstruction match the framework's forward (1e-5)`, async () => {
    const dir = path.join(FIX, name);
    const want = readExpected(dir);
    const sae = loadSae(dir);
    assert.equal(sae.activation, activation);
    const { z, xHat } = await forward(sae, want.x);
    assertClose(z, want.z.flat(), `${name} z`);
    assertClose(xHat, want.x_hat.flat(), `${name} x_hat`);
    // Written back in itd's (sparsify) layout, it loads to the same numbers.
    const out = path.join(tmpDir(), name);
    saveSae(out, sae);
    const again = await forward(loadSae(out), want.x);
    assert.deepEqual(again.z, z);
    assert.deepEqual(again.xHat, xHat);
    await sae.release();
  });
}

test('SAELens < 6 configs (TopK as "standard" + activation_fn_str "topk", boolean normalize_activations) load the same SAE', async () => {
  const dir = path.join(tmpDir(), 'saelens-v5');
  fs.cpSync(path.join(FIX, 'saelens-topk'), dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'cfg.json'), JSON.stringify({
    architecture: 'standard', d_in: 8, d_sae: 32, activation_fn_str: 'topk', activation_fn_kwargs: { k: 5 },
    apply_b_dec_to_input: true, normalize_activations: false, hook_name: 'text_model.encoder.layers.8', hook_layer: 8,
  }));
  const want = readExpected(dir);
  const sae = loadSae(dir);
  assert.equal(sae.k, 5);
  assert.equal(sae.cfg.layer, 8);
  const { z, xHat } = await forward(sae, want.x);
  assertClose(z, want.z.flat(), 'z');
  assertClose(xHat, want.x_hat.flat(), 'x_hat');
  await sae.release();
});

test('a SAELens JumpReLU training checkpoint (log_threshold instead of threshold) gives the same SAE', async () => {
  const dir = path.join(tmpDir(), 'saelens-log-threshold');
  fs.cpSync(path.join(FIX, 'saelens-jumprelu'), dir, { recursive: true });
  const file = path.join(dir, 'sae_weights.safetensors');
  const st = SafetensorsFile.open(file);
  const tensors = Object.fromEntries(st.names().map((nm) => [nm === 'threshold' ? 'log_threshold' : nm, {
    dtype: 'F32' as const, shape: st.info(nm).shape, data: nm === 'threshold' ? st.readF32(nm).map(Math.log) : st.readF32(nm),
  }]));
  st.close();
  writeSafetensors(file, tensors);
  const want = readExpected(dir);
  const sae = loadSae(dir);
  const { z, xHat } = await forward(sae, want.x);
  assertClose(z, want.z.flat(), 'z');
  assertClose(xHat, want.x_hat.flat(), 'x_hat');
  await sae.release();
});

test('torch zip reader: k, dtypes and non-tensor values of real state-dict layouts', () => {
  const dl = openTensorFile(path.join(FIX, 'dictlearn-batchtopk', 'ae.pt'));
  assert.deepEqual(dl.info('k').shape, []);
  assert.equal(dl.readF32('k')[0], 6);
  assert.ok(Math.abs(dl.readF32('threshold')[0]! - 0.6) < 1e-7);
  dl.close();
  const itd = openTensorFile(path.join(FIX, 'itd-official', 'state_dict.pth'));
  assert.deepEqual(itd.names(), ['pre_bias', 'latent_bias', 'stats_last_nonzero', 'encoder.weight', 'decoder.weight']);
  assert.equal(itd.info('decoder.weight').dtype, 'BF16');
  assert.deepEqual(Array.from(itd.readF32('stats_last_nonzero')), Array.from({ length: 32 }, (_, i) => i));
  // decoder.weight [8, 32] is a column-major view: its transpose reads straight from the storage.
  const dec = itd.readF32('decoder.weight');
  const decT = (itd as Required<typeof itd>).readF32Transposed('decoder.weight');
  for (let t = 0; t < 8; t++) for (let j = 0; j < 32; j++) assert.equal(decT[j * 8 + t], dec[t * 32 + j]);
  itd.close();
  const oa = openTensorFile(path.join(FIX, 'refused', 'openai-topk-ln.pt'));
  assert.equal(oa.values?.get('activation'), 'TopK');
  assert.equal(oa.values?.get('activation_state_dict.k'), 3);
  oa.close();
});

test('torch zip reader: strided, offset, 0-d, empty, f16/f64 and Parameter views read row-major', () => {
  const want = JSON.parse(fs.readFileSync(path.join(FIX, 'views', 'expected.json'), 'utf8')) as Record<string, { shape: number[]; values: number[] }>;
  const tf = openTensorFile(path.join(FIX, 'views', 'views.pt'));
  assert.deepEqual(tf.names().sort(), Object.keys(want).sort());
  for (const [name, w] of Object.entries(want)) {
    assert.deepEqual(tf.info(name).shape, w.shape, name);
    assert.deepEqual(Array.from(tf.readF32(name)), w.values, name);
  }
  tf.close();
});

test('pickles that could run code are refused, naming the file and the global or opcode', () => {
  const refuse = (file: string, what: RegExp) =>
    assert.throws(() => openTensorFile(path.join(FIX, 'refused', file)), (e: unknown) => e instanceof ItdError && e.code === 'unsupported' && e.message.includes(file) && what.test(e.message));
  refuse('evil.pt', /global posix\.system is not allowed/);
  refuse('inst.pt', /opcode INST/);
  refuse('legacy.bin', /legacy \(non-zip.*never loaded.*save_file/s);
  assert.throws(() => loadSae(path.join(FIX, 'refused', 'evil.pt'), { k: 1 }), /posix\.system/);
  // openai/sparse_autoencoder TopK state dicts LayerNorm each token: a forward itd does not reproduce.
  assert.throws(() => loadSae(path.join(FIX, 'refused', 'openai-topk-ln.pt')), (e: unknown) => e instanceof ItdError && e.code === 'unsupported' && /LayerNorm/.test(e.message));
});

test('a truncated torch checkpoint is a format error naming the file', () => {
  const file = path.join(tmpDir(), 'ae.pt');
  const bytes = fs.readFileSync(path.join(FIX, 'dictlearn-batchtopk', 'ae.pt'));
  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 200));
  assert.throws(() => openTensorFile(file), (e: unknown) => e instanceof ItdError && e.code === 'format' && e.message.includes(file));
});

test('inconsistent or ambiguous SAE files: ItdErrors name the file and the field', () => {
  const copy = (name: string) => {
    const dir = path.join(tmpDir(), name);
    fs.cpSync(path.join(FIX, name), dir, { recursive: true });
    return dir;
  };
  const sl = copy('saelens-jumprelu');
  const cfgPath = path.join(sl, 'cfg.json');
  const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
  fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, d_sae: 64 }));
  assert.throws(() => loadSae(sl), (e: unknown) => e instanceof ItdError && e.code === 'mismatch' && e.field === 'd_sae' && e.message.includes('cfg.json'));
  fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, normalize_activations: 'layer_norm' }));
  assert.throws(() => loadSae(sl), (e: unknown) => e instanceof ItdError && e.field === 'normalize_activations');
  fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, architecture: 'gated' }));
  assert.throws(() => loadSae(sl), (e: unknown) => e instanceof ItdError && e.code === 'unsupported' && /gated/.test(e.message));
  fs.rmSync(cfgPath);
  assert.throws(() => loadSae(sl), (e: unknown) => e instanceof ItdError && /needs its cfg\.json/.test(e.message));

  const dl = copy('dictlearn-batchtopk');
  fs.rmSync(path.join(dl, 'config.json'));
  assert.throws(() => loadSae(dl), (e: unknown) => e instanceof ItdError && e.field === 'trainer.dict_class' && /BatchTopKSAE or an AutoEncoderTopK/.test(e.message));

  const sp = copy('sparsify-topk');
  fs.writeFileSync(path.join(sp, 'cfg.json'), JSON.stringify({ d_in: 8, d_sae: 32, architecture: 'topk', k: 4 }));
  assert.throws(() => loadSae(sp), (e: unknown) => e instanceof ItdError && e.code === 'mismatch' && /SAELens config/.test(e.message));

  fs.writeFileSync(path.join(sp, 'cfg.json'), JSON.stringify({ d_in: 8, num_latents: 0, expansion_factor: 8, k: 4 }));
  assert.throws(() => loadSae(sp), (e: unknown) => e instanceof ItdError && e.field === 'expansion_factor' && /64 latents/.test(e.message));
  fs.writeFileSync(path.join(sp, 'cfg.json'), JSON.stringify({ d_in: 8, num_latents: 32, k: 4, activation: 'groupmax' }));
  assert.throws(() => loadSae(sp), (e: unknown) => e instanceof ItdError && e.code === 'unsupported' && /groupmax/.test(e.message));

  const itd = copy('itd-official');
  fs.writeFileSync(path.join(itd, 'config.json'), JSON.stringify({ n_dirs_local: 32, d_model: 16, k: 4 }));
  assert.throws(() => loadSae(itd), (e: unknown) => e instanceof ItdError && e.field === 'd_model');
});

const hasNumpy = (() => {
  try {
    execFileSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test('the committed fixtures are exactly what make_fixtures.py writes', { skip: !hasNumpy && 'python3 with numpy not available' }, () => {
  const out = tmpDir();
  execFileSync('python3', [SCRIPT, out]);
  const files = (d: string): string[] => fs.readdirSync(d, { recursive: true, encoding: 'utf8' }).filter((f) => fs.statSync(path.join(d, f)).isFile() && !f.endsWith('.py')).sort();
  assert.deepEqual(files(out), files(FIX).filter((f) => f !== 'README.md'));
  for (const f of files(out)) assert.ok(fs.readFileSync(path.join(out, f)).equals(fs.readFileSync(path.join(FIX, f))), f);
});

test('a text encoder saved as pytorch_model.bin (torch zip) encodes exactly like its safetensors', { skip: !hasNumpy && 'python3 with numpy not available' }, async () => {
  const dir = path.join(tmpDir(), 'bin-model');
  fs.cpSync(tinyModel(), dir, { recursive: true });
  const te = path.join(dir, 'text_encoder');
  execFileSync('python3', [SCRIPT, '--convert', path.join(te, 'model.safetensors'), path.join(te, 'pytorch_model.bin')]);
  fs.rmSync(path.join(te, 'model.safetensors'));
  const [a, b] = [await loadTextModel(tinyModel()), await loadTextModel(dir)];
  const batch = a.tokenizer.batch(['a photo of a cat', 'x']);
  const args = { ids: batch.ids, n: batch.n, t: batch.maxLength, lengths: batch.lengths };
  const [ra, rb] = [await a.encoder.encode(args), await b.encoder.encode(args)];
  assert.equal(maxAbsDiff(ra.lastHiddenState, rb.lastHiddenState), 0);
});
