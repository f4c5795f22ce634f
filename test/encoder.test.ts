import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { asClipPart, loadTextModel, readClipConfig, ClipWeightReader, type TextModel } from '../src/encoder/index.js';
import { referenceForward } from '../src/encoder/clip/reference.js';
import { Checkpoint, SafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import { maxAbsDiff, tinyModel, tmpDir } from './helpers.js';

const PROMPTS = ['a photo of a cat', 'an oil painting of a lighthouse at dusk, dramatic light', 'x'];

async function tiny(opts = {}) {
  return asClipPart(await loadTextModel(tinyModel(opts)));
}

function batchOf(model: TextModel, prompts: string[]) {
  const b = model.tokenizer.batch(prompts);
  return { ids: b.ids, n: b.n, t: b.maxLength, lengths: b.lengths };
}

test('onnx encoder matches the float64 TS oracle on every hidden state (<= 1e-4)', async () => {
  const model = await tiny();
  const batch = batchOf(model, PROMPTS);
  const all = Array.from({ length: model.config.numLayers + 1 }, (_, i) => i);
  const r = await model.encoder.encode(batch, { hiddenStates: all });
  const ckpt = Checkpoint.open(path.join(model.dir, 'text_encoder'));
  const reader = new ClipWeightReader(ckpt, model.config, 'test');
  const D = model.config.hiddenSize;
  for (let p = 0; p < PROMPTS.length; p++) {
    const ref = referenceForward(model.config, reader, batch.ids.subarray(p * 77, p * 77 + 77));
    const row = (a: Float32Array) => a.subarray(p * 77 * D, (p + 1) * 77 * D);
    for (const i of all) assert.ok(maxAbsDiff(row(r.hiddenStates.get(i)!), ref.hidden[i]!) <= 1e-4, `hidden_states[${i}] prompt ${p}`);
    const dLast = maxAbsDiff(row(r.lastHiddenState), ref.last);
    assert.ok(dLast <= 1e-4, `last_hidden_state diff ${dLast}`);
    // pooler_output is the final state at the first EOS.
    const eos = batch.lengths[p]! - 1;
    assert.deepEqual(r.pooler.subarray(p * D, (p + 1) * D), r.lastHiddenState.subarray((p * 77 + eos) * D, (p * 77 + eos + 1) * D));
  }
  reader.close();
});

test('token embeddings are read from the file the model was loaded from: a checkpoint renamed over it meanwhile changes nothing', async () => {
  const dir = path.join(tmpDir(), 'm');
  fs.cpSync(tinyModel(), dir, { recursive: true });
  const model = asClipPart(await loadTextModel(dir));
  const batch = batchOf(model, PROMPTS);
  const before = await model.encoder.encode(batch);
  // Another model's weights, put in place the way itd's writers and downloads do it (rename).
  const weights = path.join(dir, 'text_encoder', 'model.safetensors');
  fs.copyFileSync(path.join(tinyModel({ seed: 8 }), 'text_encoder', 'model.safetensors'), `${weights}.tmp`);
  fs.renameSync(`${weights}.tmp`, weights);
  assert.deepEqual((await model.encoder.encode(batch)).lastHiddenState, before.lastHiddenState);
  await model.encoder.release();
});

test('gelu models (SD2-style, pad "!") match the oracle', async () => {
  const dir = path.join(tmpDir(), 'm');
  fs.cpSync(tinyModel(), dir, { recursive: true });
  const cfgPath = path.join(dir, 'text_encoder', 'config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
  fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, hidden_act: 'gelu' }));
  const model = asClipPart(await loadTextModel(dir));
  assert.equal(model.config.hiddenAct, 'gelu');
  const batch = batchOf(model, ['a red car']);
  const r = await model.encoder.encode(batch);
  const reader = new ClipWeightReader(Checkpoint.open(path.join(dir, 'text_encoder')), model.config, 'test');
  const ref = referenceForward(model.config, reader, batch.ids.subarray(0, 77));
  assert.ok(maxAbsDiff(r.lastHiddenState, ref.last) <= 1e-4);
  reader.close();
});

test('hook: read equals hidden_states[layer+1]; identity edit changes nothing; other edits change the output', async () => {
  const model = await tiny();
  const batch = batchOf(model, PROMPTS);
  const base = await model.encoder.encode(batch, { hiddenStates: [9] });
  let seen: Float32Array | undefined;
  const same = await model.encoder.encode(batch, { edit: { layer: 8, fn: (h) => (seen = h.slice()) } });
  assert.deepEqual(seen, base.hiddenStates.get(9));
  assert.deepEqual(same.lastHiddenState, base.lastHiddenState);
  const changed = await model.encoder.encode(batch, { edit: { layer: 8, fn: (h) => h.map((v) => v * 0.5) } });
  assert.ok(maxAbsDiff(changed.lastHiddenState, base.lastHiddenState) > 1e-3);
  // layerOutput + resume is the same split done by hand.
  const h = await model.encoder.layerOutput(batch, 8);
  assert.deepEqual(h, base.hiddenStates.get(9));
  const resumed = await model.encoder.resume(h, batch, 8);
  assert.deepEqual(resumed.lastHiddenState, base.lastHiddenState);
});

test('padding to the longest prompt gives the same states as padding to 77 (causal mask)', async () => {
  const model = await tiny();
  const batch = batchOf(model, PROMPTS);
  const full = await model.encoder.layerOutput(batch, 8);
  const t = Math.max(...batch.lengths);
  const ids = new Int32Array(PROMPTS.length * t);
  for (let p = 0; p < PROMPTS.length; p++) ids.set(batch.ids.subarray(p * 77, p * 77 + t), p * t);
  const short = await model.encoder.layerOutput({ ids, n: PROMPTS.length, t }, 8);
  const D = model.config.hiddenSize;
  for (let p = 0; p < PROMPTS.length; p++) {
    assert.ok(maxAbsDiff(short.subarray(p * t * D, (p + 1) * t * D), full.subarray(p * 77 * D, (p * 77 + t) * D)) <= 1e-5);
  }
});

test('results do not depend on batch composition', async () => {
  const model = await tiny();
  const both = await model.encoder.encode(batchOf(model, PROMPTS));
  const one = await model.encoder.encode(batchOf(model, [PROMPTS[1]!]));
  const D = model.config.hiddenSize;
  assert.ok(maxAbsDiff(one.lastHiddenState, both.lastHiddenState.subarray(77 * D, 2 * 77 * D)) <= 1e-5);
});

test('fp16 checkpoints load (model.fp16.safetensors) and match the f32 model to f16 precision', async () => {
  const a = await tiny();
  const b = await tiny({ dtype: 'f16' });
  assert.ok(fs.existsSync(path.join(b.dir, 'text_encoder', 'model.fp16.safetensors')));
  const ra = await a.encoder.encode(batchOf(a, PROMPTS));
  const rb = await b.encoder.encode(batchOf(b, PROMPTS));
  const d = maxAbsDiff(ra.lastHiddenState, rb.lastHiddenState);
  assert.ok(d > 0 && d < 0.05, `f16 vs f32 diff ${d}`);
});

test('a bare Hugging Face CLIPTextModel directory loads', async () => {
  const src = tinyModel();
  const dir = path.join(tmpDir(), 'hf');
  fs.cpSync(path.join(src, 'text_encoder'), dir, { recursive: true });
  for (const f of fs.readdirSync(path.join(src, 'tokenizer'))) fs.copyFileSync(path.join(src, 'tokenizer', f), path.join(dir, f));
  const a = await tiny();
  const b = await loadTextModel(dir);
  assert.equal(b.encoderDir, dir);
  assert.equal(b.hookpoint(8), 'text_model.encoder.layers.8');
  assert.equal(b.id, a.id);
  const ra = await a.encoder.encode(batchOf(a, PROMPTS));
  const rb = await b.encoder.encode(batchOf(b, PROMPTS));
  assert.deepEqual(ra.lastHiddenState, rb.lastHiddenState);
});

test('sharded checkpoints (model.safetensors.index.json) load', async () => {
  const src = tinyModel();
  const dir = path.join(tmpDir(), 'sharded');
  fs.cpSync(src, dir, { recursive: true });
  const te = path.join(dir, 'text_encoder');
  const f = SafetensorsFile.open(path.join(te, 'model.safetensors'));
  const names = f.names();
  const halves = [names.slice(0, names.length >> 1), names.slice(names.length >> 1)];
  const weightMap: Record<string, string> = {};
  halves.forEach((part, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(path.join(te, file), Object.fromEntries(part.map((n) => [n, { dtype: 'F32' as const, shape: f.info(n).shape, data: f.readF32(n) }])));
    for (const n of part) weightMap[n] = file;
  });
  f.close();
  fs.rmSync(path.join(te, 'model.safetensors'));
  fs.writeFileSync(path.join(te, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  const a = await tiny();
  const b = await loadTextModel(dir);
  assert.deepEqual((await b.encoder.encode(batchOf(b, PROMPTS))).lastHiddenState, (await a.encoder.encode(batchOf(a, PROMPTS))).lastHiddenState);
});

test('loading errors name the file, key and expectation', async () => {
  const src = tinyModel();
  const copy = () => {
    const dir = path.join(tmpDir(), 'bad');
    fs.cpSync(src, dir, { recursive: true });
    return dir;
  };
  await assert.rejects(loadTextModel('/nonexistent/model'), /model directory not found/);

  const noTok = copy();
  fs.rmSync(path.join(noTok, 'tokenizer'), { recursive: true });
  await assert.rejects(loadTextModel(noTok), /lacks tokenizer\//);

  const missing = copy();
  const te = path.join(missing, 'text_encoder', 'model.safetensors');
  const f = SafetensorsFile.open(te);
  const keep = f.names().filter((n) => n !== 'text_model.encoder.layers.3.mlp.fc2.bias');
  const tensors = Object.fromEntries(keep.map((n) => [n, { dtype: 'F32' as const, shape: f.info(n).shape, data: f.readF32(n) }]));
  f.close();
  writeSafetensors(te, tensors);
  await assert.rejects(loadTextModel(missing), /missing tensor 'text_model\.encoder\.layers\.3\.mlp\.fc2\.bias' \(expected shape \[64\]\)/);

  const wrongShape = copy();
  const cfgPath = path.join(wrongShape, 'text_encoder', 'config.json');
  fs.writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgPath, 'utf8')), intermediate_size: 128 }));
  await assert.rejects(loadTextModel(wrongShape), /fc1\.weight' has shape \[256, 64\], config\.json implies \[128, 64\]/);

  const badAct = copy();
  const cfg2 = path.join(badAct, 'text_encoder', 'config.json');
  fs.writeFileSync(cfg2, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfg2, 'utf8')), hidden_act: 'relu' }));
  await assert.rejects(loadTextModel(badAct), /field 'hidden_act' must be one of .* got "relu"/);

  const pickle = copy();
  fs.rmSync(path.join(pickle, 'text_encoder', 'model.safetensors'));
  fs.writeFileSync(path.join(pickle, 'text_encoder', 'pytorch_model.bin'), 'not loaded');
  await assert.rejects(loadTextModel(pickle), /never loaded.*save_file/s);
  assert.equal(readClipConfig(path.join(src, 'text_encoder', 'config.json')).numLayers, 12);
});

test('encoder rejects bad ranges and ids', async () => {
  const model = await tiny();
  const batch = batchOf(model, ['a']);
  await assert.rejects(model.encoder.layerOutput(batch, 12), /layer 12 is outside 0\.\.11/);
  await assert.rejects(model.encoder.encode(batch, { hiddenStates: [13] }), /hidden_states index 13/);
  const bad = { ids: new Int32Array(77).fill(model.config.vocabSize), n: 1, t: 77 };
  assert.throws(() => model.encoder.embed(bad), /outside the vocabulary/);
});

test('matches an independent numpy CLIP implementation (skipped without python3 + numpy)', async (t) => {
  const { spawnSync } = await import('node:child_process');
  if (spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status !== 0) return t.skip('python3 with numpy not available');
  const model = await tiny();
  const batch = batchOf(model, PROMPTS);
  const dir = tmpDir();
  const ids = Array.from({ length: batch.n }, (_, r) => Array.from(batch.ids.subarray(r * 77, r * 77 + 77)));
  fs.writeFileSync(path.join(dir, 'ids.json'), JSON.stringify(ids));
  const script = path.join(import.meta.dirname, 'reference', 'clip_numpy.py');
  const r = spawnSync('python3', [script, path.join(model.dir, 'text_encoder'), path.join(dir, 'ids.json'), path.join(dir, 'out.npz')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  // Read back through numpy as raw float32 to keep the test free of an npz parser.
  const dump = spawnSync('python3', ['-c', `import numpy as np,sys; z=np.load('${path.join(dir, 'out.npz')}'); sys.stdout.buffer.write(z['last'].tobytes()+z['h9'].tobytes())`], { maxBuffer: 1 << 28 });
  const buf = dump.stdout as Buffer;
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const out = await model.encoder.encode(batch, { hiddenStates: [9] });
  const half = all.length / 2;
  assert.ok(maxAbsDiff(out.lastHiddenState, all.subarray(0, half)) <= 1e-4);
  assert.ok(maxAbsDiff(out.hiddenStates.get(9)!, all.subarray(half)) <= 1e-4);
});

test('synthetic models park attention on BOS like trained CLIP: a token keeps its identity whatever its context', async () => {
  const model = await tiny();
  const D = model.config.hiddenSize;
  // 'dog' at position 3 after different words, and 'cat' at the same position.
  const prompts = ['a red dog on grass', 'the old dog on grass', 'a red cat on grass'];
  for (const p of prompts) assert.equal(model.tokenizer.encode(p).length, 5, p);
  const b = model.tokenizer.batch(prompts);
  const h = await model.encoder.layerOutput({ ids: b.ids, n: b.n, t: b.maxLength }, 8);
  const at = (p: number) => h.subarray((p * b.maxLength + 3) * D, (p * b.maxLength + 4) * D);
  const dist = (x: Float32Array, y: Float32Array) => Math.hypot(...x.map((v, i) => v - y[i]!));
  const context = dist(at(0), at(1));
  const token = dist(at(0), at(2));
  assert.ok(context > 0, 'context still mixes in (attention is not all on BOS)');
  assert.ok(context < 0.1 * token, `same token, other context ${context} vs other token ${token}`);
});
