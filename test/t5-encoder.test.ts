import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ItdError } from '../src/errors.js';
import { loadT5Encoder, parseT5Config, relativePositionBuckets, type T5Config } from '../src/encoder/t5/index.js';
import { t5ShardPlan, writeT5Encoder } from '../src/synth/t5.js';
import { PRESETS } from '../src/synth/clip.js';
import { Checkpoint, SafetensorsFile } from '../src/io/safetensors.js';
import { minRowCosine } from '../src/util/cosine.js';
import { loadAddon } from '../src/util/addon.js';
import { maxAbsDiff, tmpDir, withEnv } from './helpers.js';

const CFG: T5Config = {
  vocabSize: 300, hiddenSize: 64, dKv: 8, dFf: 96, numLayers: 3, numHeads: 12, // 12 heads: attention runs in head groups of 8 + 4
  numBuckets: 32, maxDistance: 20, layerNormEps: 1e-6, padTokenId: 0, eosTokenId: 1,
};

const models = new Map<string, string>();
function model(opts: { dtype?: 'F32' | 'BF16' | 'F16'; maxShardBytes?: number } = {}): string {
  const key = JSON.stringify(opts);
  let dir = models.get(key);
  if (!dir) {
    dir = path.join(tmpDir(), 't5');
    writeT5Encoder(dir, CFG, { seed: 3, ...opts });
    models.set(key, dir);
  }
  return dir;
}

/** Deterministic ids [n, t] with the last positions padded (id 0) after an EOS (1), as a padded batch looks. */
function ids(n: number, t: number, real: number[]): Int32Array {
  const out = new Int32Array(n * t);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < real[r]! - 1; j++) out[r * t + j] = 2 + ((r * 37 + j * 11) % (CFG.vocabSize - 2));
    out[r * t + real[r]! - 1] = 1;
  }
  return out;
}

const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;

/** Runs test/reference/t5_numpy.py and returns the named arrays (float32, flattened). */
function reference(dir: string, batch: Int32Array, n: number, t: number, keys: string[], mask?: Uint8Array): Float32Array[] {
  const tmp = tmpDir();
  const rows = (a: ArrayLike<number>) => Array.from({ length: n }, (_, r) => Array.from(Array.prototype.slice.call(a, r * t, r * t + t) as number[]));
  fs.writeFileSync(path.join(tmp, 'ids.json'), JSON.stringify(rows(batch)));
  const args = [path.join(import.meta.dirname, 'reference', 't5_numpy.py'), dir, path.join(tmp, 'ids.json'), path.join(tmp, 'out.npz')];
  if (mask) {
    fs.writeFileSync(path.join(tmp, 'mask.json'), JSON.stringify(rows(mask)));
    args.push(path.join(tmp, 'mask.json'));
  }
  const r = spawnSync('python3', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const dump = spawnSync('python3', ['-c', `import numpy as np,sys; z=np.load('${path.join(tmp, 'out.npz')}'); sys.stdout.buffer.write(b''.join(z[k].tobytes() for k in ${JSON.stringify(keys)}))`], { maxBuffer: 1 << 28 });
  const buf = dump.stdout as Buffer;
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const size = all.length / keys.length;
  return keys.map((_, i) => all.subarray(i * size, (i + 1) * size));
}

test('relative position buckets match HF _relative_position_bucket (bidirectional, 32 buckets, distance 128)', () => {
  const t = 300;
  const b = relativePositionBuckets(t, 32, 128);
  const at = (i: number, j: number) => Number(b[i * t + j]);
  // Exact offsets 0..7 each way, keys after the query in the upper 16 buckets.
  assert.deepEqual([0, 1, 7].map((d) => at(100, 100 - d)), [0, 1, 7]);
  assert.deepEqual([1, 7].map((d) => at(100, 100 + d)), [17, 23]);
  // Log-spaced: 8 + floor(log(r/8)/log(16)*8); boundaries 16 -> 10, 32 -> 12, 64 -> 14, >= 128 -> 15.
  assert.deepEqual([8, 11, 12, 15, 16, 31, 32, 63, 64, 127, 128, 299].map((d) => at(299, 299 - d)), [8, 8, 9, 9, 10, 11, 12, 13, 14, 15, 15, 15]);
  assert.equal(at(0, 299), 31);
});

test('T5 encoder matches the independent numpy float64 reference on every hidden state (<= 1e-4)', { skip: !hasNumpy && 'python3 with numpy not available' }, async () => {
  const dir = model();
  const { encoder } = await loadT5Encoder(dir);
  const n = 2;
  const t = 40; // > maxDistance: every bucket kind is used
  const batch = { ids: ids(n, t, [40, 9]), n, t };
  const all = Array.from({ length: CFG.numLayers + 1 }, (_, i) => i);
  const out = await encoder.encode(batch, { hiddenStates: all });
  const ref = reference(dir, batch.ids, n, t, ['last', ...all.map((i) => `h${i}`)]);
  const dLast = maxAbsDiff(out.lastHiddenState, ref[0]!);
  assert.ok(dLast <= 1e-4, `last_hidden_state diff ${dLast}`);
  for (const i of all) assert.ok(maxAbsDiff(out.hiddenStates.get(i)!, ref[i + 1]!) <= 1e-4, `hidden_states[${i}]`);
  // hidden_states[L] is after the final LayerNorm, i.e. last_hidden_state.
  assert.deepEqual(out.hiddenStates.get(CFG.numLayers), out.lastHiddenState);
  // With an attention mask the padding is ignored, as HF's masked forward.
  const mask = new Uint8Array(n * t).fill(1);
  mask.fill(0, t + 9, 2 * t);
  const masked = await encoder.encode({ ...batch, attentionMask: mask });
  const refMasked = reference(dir, batch.ids, n, t, ['last'], mask);
  assert.ok(maxAbsDiff(masked.lastHiddenState, refMasked[0]!) <= 1e-4);
  assert.ok(maxAbsDiff(masked.lastHiddenState, out.lastHiddenState) > 1e-3, 'padding is attended without a mask');
  await encoder.release();
});

test('bf16 sharded checkpoints load (index.json) and match the numpy reference on the bf16 weights', { skip: !hasNumpy && 'python3 with numpy not available' }, async () => {
  const dir = model({ dtype: 'BF16', maxShardBytes: 40_000 }); // shards split inside blocks
  assert.ok(fs.existsSync(path.join(dir, 'model.safetensors.index.json')));
  const { encoder } = await loadT5Encoder(dir);
  const batch = { ids: ids(1, 12, [12]), n: 1, t: 12 };
  const out = await encoder.encode(batch);
  assert.ok(maxAbsDiff(out.lastHiddenState, reference(dir, batch.ids, 1, 12, ['last'])[0]!) <= 1e-4);
  const f32 = await loadT5Encoder(model());
  const d = maxAbsDiff(out.lastHiddenState, (await f32.encoder.encode(batch)).lastHiddenState);
  assert.ok(d > 0 && d < 0.5, `bf16 vs f32 diff ${d}`);
  await Promise.all([encoder.release(), f32.encoder.release()]);
});

test('synthetic shards split between tensors at maxShardBytes (transformers max_shard_size); the weights do not depend on the sharding', () => {
  const max = 40_000;
  const sharded = model({ dtype: 'BF16', maxShardBytes: max });
  const single = model({ dtype: 'BF16' });
  assert.ok(fs.existsSync(path.join(single, 'model.safetensors')) && !fs.existsSync(path.join(single, 'model.safetensors.index.json')));
  const index = JSON.parse(fs.readFileSync(path.join(sharded, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  const files = [...new Set(Object.values(index.weight_map))];
  assert.ok(files.length >= 3, `${files.length} shards`);
  assert.deepEqual(files, files.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(files.length).padStart(5, '0')}.safetensors`));
  let total = 0;
  files.forEach((file, i) => {
    const f = SafetensorsFile.open(path.join(sharded, file));
    const bytes = f.names().reduce((sum, n) => sum + f.info(n).end - f.info(n).begin, 0);
    f.close();
    assert.ok(bytes <= max, `${file}: ${bytes} bytes`);
    // Full shards: the next shard's first tensor would not have fitted.
    if (i + 1 < files.length) {
      const next = SafetensorsFile.open(path.join(sharded, files[i + 1]!));
      const first = next.names().map((n) => next.info(n)).sort((a, b) => a.begin - b.begin)[0]!;
      next.close();
      assert.ok(bytes + first.end - first.begin > max);
    }
    total += bytes;
  });
  assert.equal(index.metadata.total_size, total);
  const a = Checkpoint.open(sharded, ['model']);
  const b = Checkpoint.open(single, ['model']);
  assert.deepEqual(a.names().sort(), b.names().sort());
  for (const n of b.names()) assert.deepEqual(a.readF32(n), b.readF32(n), n);
  a.close();
  b.close();
});

test('flux-xxl preset: T5-XXL shapes, 24 blocks, bf16 in the two shards of FLUX.1 text_encoder_2 (planned, not written)', () => {
  const spec = PRESETS['flux-xxl'].t5!;
  assert.deepEqual(spec.shape, { hiddenSize: 4096, dKv: 64, dFf: 10240, numLayers: 24, numHeads: 64 });
  const cfg: T5Config = { ...spec.shape, vocabSize: spec.vocabSize!, numBuckets: 32, maxDistance: 128, layerNormEps: 1e-6, padTokenId: 0, eosTokenId: 1 };
  const plan = t5ShardPlan(cfg, spec.dtype!, spec.maxShardBytes!);
  assert.equal(plan.length, 2);
  const bytes = plan.map((s) => s.reduce((sum, t) => sum + t.bytes, 0));
  assert.equal(bytes[0]! + bytes[1]!, 9_524_621_312); // 4.76 B parameters at 2 bytes
  assert.ok(bytes[0]! <= 5e9 && bytes[0]! > 4.9e9, `${bytes}`);
  assert.equal(plan.flat().length, 3 + 24 * 9);
});

test('hooks: read equals hidden_states[layer+1]; identity edit is exact; layerOutput + resume is the same split', async () => {
  const { encoder } = await loadT5Encoder(model());
  const batch = { ids: ids(2, 10, [10, 4]), n: 2, t: 10 };
  const base = await encoder.encode(batch, { hiddenStates: [2] });
  let seen: Float32Array | undefined;
  const same = await encoder.encode(batch, { edit: { layer: 1, fn: (h) => (seen = h.slice()) } });
  assert.deepEqual(seen, base.hiddenStates.get(2));
  assert.deepEqual(same.lastHiddenState, base.lastHiddenState);
  const changed = await encoder.encode(batch, { edit: { layer: 1, fn: (h) => h.map((v) => v * 0.5) } });
  assert.ok(maxAbsDiff(changed.lastHiddenState, base.lastHiddenState) > 1e-3);
  const h = await encoder.layerOutput(batch, 1);
  assert.deepEqual(h, base.hiddenStates.get(2));
  assert.deepEqual((await encoder.resume(h, batch, 1)).lastHiddenState, base.lastHiddenState);
  // The last block's edit runs before the final LayerNorm.
  const last = await encoder.encode(batch, { edit: { layer: CFG.numLayers - 1, fn: (x) => x.map((v) => v * 2) } });
  assert.ok(maxAbsDiff(last.lastHiddenState, base.lastHiddenState) < 1e-4, 'RMS norm is scale-invariant');
  await assert.rejects(encoder.layerOutput(batch, CFG.numLayers), /layer 3 is outside 0\.\.2/);
  await assert.rejects(encoder.encode(batch, { hiddenStates: [4] }), /hidden_states index 4/);
  assert.throws(() => encoder.embed({ ids: new Int32Array([CFG.vocabSize]), n: 1, t: 1 }), /outside the vocabulary/);
  await encoder.release();
});

test('int8 weights (MatMulNBits) stay within cosine 0.999 of f32 per token', async () => {
  const f32 = await loadT5Encoder(model());
  const q8 = await loadT5Encoder(model(), { weights: 'int8' });
  assert.equal(q8.encoder.weightMode, 'int8');
  const batch = { ids: ids(2, 24, [24, 7]), n: 2, t: 24 };
  const a = (await f32.encoder.encode(batch)).lastHiddenState;
  const b = (await q8.encoder.encode(batch)).lastHiddenState;
  const worst = minRowCosine(a, b, CFG.hiddenSize);
  assert.ok(worst >= 0.999 && worst < 1, `worst per-token cosine ${worst}`);
  await Promise.all([f32.encoder.release(), q8.encoder.release()]);
});

test('int8 load: the native quantisation and bf16 widening give the JS fallback\'s output exactly', { skip: !loadAddon()?.quantize8 && 'native addon not built' }, async () => {
  const batch = { ids: ids(2, 24, [24, 7]), n: 2, t: 24 };
  const run = async () => {
    const { encoder } = await loadT5Encoder(model({ dtype: 'BF16' }), { weights: 'int8' });
    const out = (await encoder.encode(batch)).lastHiddenState;
    await encoder.release();
    return out;
  };
  const native = await run();
  const js = await withEnv('ITD_NATIVE', '0', run);
  assert.deepEqual(new Uint32Array(native.buffer, native.byteOffset, native.length), new Uint32Array(js.buffer, js.byteOffset, js.length));
});

test('config validation names the file and field and says what is supported', () => {
  const base = { d_model: 64, d_kv: 16, d_ff: 96, num_layers: 3, num_heads: 4, vocab_size: 300, feed_forward_proj: 'gated-gelu' };
  assert.equal(parseT5Config(base, 'c.json').maxDistance, 128);
  for (const [patch, re] of [
    [{ feed_forward_proj: 'relu' }, /c\.json: field 'feed_forward_proj' is "relu"; only 'gated-gelu' .* is supported/],
    [{ feed_forward_proj: undefined }, /feed_forward_proj' is "relu"/], // HF's default is relu (T5 v1.0)
    [{ d_model: 0 }, /field 'd_model' must be an integer >= 1/],
    [{ relative_attention_max_distance: 8 }, /relative_attention_max_distance' is 8; it must exceed the 8 exact buckets/],
  ] as const) {
    assert.throws(() => parseT5Config({ ...base, ...patch }, 'c.json'), (e: unknown) => e instanceof ItdError && e.file === 'c.json' && re.test(e.message));
  }
});

test('loading errors: not a T5 checkpoint, missing tensors, config/weights disagreement', async () => {
  const copy = () => {
    const dir = path.join(tmpDir(), 'bad');
    fs.cpSync(model(), dir, { recursive: true });
    return dir;
  };
  const layers = copy();
  const cfgPath = path.join(layers, 'config.json');
  fs.writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgPath, 'utf8')), num_layers: 2 }));
  await assert.rejects(loadT5Encoder(layers), /more than num_layers=2 blocks/);
  const width = copy();
  fs.writeFileSync(path.join(width, 'config.json'), JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgPath, 'utf8')), num_layers: 3, d_ff: 128 }));
  await assert.rejects(loadT5Encoder(width), /wi_0\.weight' has shape \[96, 64\], config\.json implies \[128, 64\]/);
  await assert.rejects(loadT5Encoder(tmpDir()), /missing config\.json \(T5Config\)/);
});
