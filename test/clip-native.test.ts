import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { asClipPart, ClipWeightReader, loadTextModel, type EncoderBackend } from '../src/encoder/index.js';
import { referenceForward } from '../src/encoder/clip/reference.js';
import { nativeClip } from '../src/encoder/clip/native.js';
import { Checkpoint } from '../src/io/safetensors.js';
import { maxAbsDiff, tinyModel, tmpDir } from './helpers.js';

const PROMPTS = ['a photo of a cat', 'an oil painting of a lighthouse at dusk, dramatic light', 'x', 'two dogs playing in the snow'];
const skip = nativeClip(undefined) ? false : 'the addon has no CLIP forward on this machine';

async function load(dir: string, backend: EncoderBackend, threads?: number) {
  return asClipPart(await loadTextModel(dir, { backend, ...(threads ? { threads } : {}) }));
}

function batchOf(model: Awaited<ReturnType<typeof load>>, prompts: string[]) {
  const b = model.tokenizer.batch(prompts);
  return { ids: b.ids, n: b.n, t: b.maxLength };
}

/** A copy of the tiny model with hidden_act set to `act`. */
function withActivation(act: string): string {
  const dir = path.join(tmpDir(), 'm');
  fs.cpSync(tinyModel(), dir, { recursive: true });
  const cfgPath = path.join(dir, 'text_encoder', 'config.json');
  fs.writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgPath, 'utf8')), hidden_act: act }));
  return dir;
}

for (const act of ['quick_gelu', 'gelu', 'gelu_new']) {
  test(`native CLIP blocks (${act}) agree with onnxruntime and the float64 oracle on every hidden state`, { skip }, async () => {
    const dir = act === 'quick_gelu' ? tinyModel() : withActivation(act);
    const native = await load(dir, 'native');
    const ort = await load(dir, 'onnxruntime');
    assert.equal(native.encoder.backend, 'native');
    assert.equal(ort.encoder.backend, 'onnxruntime');
    const batch = batchOf(native, PROMPTS);
    const all = Array.from({ length: native.config.numLayers + 1 }, (_, i) => i);
    const a = await native.encoder.encode(batch, { hiddenStates: all });
    const b = await ort.encoder.encode(batch, { hiddenStates: all });
    for (const i of all) assert.ok(maxAbsDiff(a.hiddenStates.get(i)!, b.hiddenStates.get(i)!) <= 2e-5, `hidden_states[${i}]`);
    assert.ok(maxAbsDiff(a.lastHiddenState, b.lastHiddenState) <= 2e-5);
    assert.ok(maxAbsDiff(a.pooler, b.pooler) <= 2e-5);
    const reader = new ClipWeightReader(Checkpoint.open(path.join(dir, 'text_encoder')), native.config, 'test');
    const ref = referenceForward(native.config, reader, batch.ids.subarray(77, 154));
    const D = native.config.hiddenSize;
    assert.ok(maxAbsDiff(a.lastHiddenState.subarray(77 * D, 154 * D), ref.last) <= 1e-4);
    reader.close();
    await Promise.all([native.encoder.release(), ort.encoder.release()]);
  });
}

test('native CLIP blocks: bit-identical whatever the thread count, the batch a prompt is in, or where the tower is cut', { skip }, async () => {
  const dir = tinyModel();
  const one = await load(dir, 'native', 1);
  const three = await load(dir, 'native', 3);
  const batch = batchOf(one, PROMPTS);
  const D = one.config.hiddenSize;
  const ref = await one.encoder.encode(batch, { hiddenStates: [5] });
  assert.deepEqual((await three.encoder.encode(batch, { hiddenStates: [5] })).lastHiddenState, ref.lastHiddenState);
  // The second prompt alone, padded to the same length.
  const alone = await one.encoder.encode(batchOf(one, [PROMPTS[1]!]));
  assert.deepEqual(alone.lastHiddenState, ref.lastHiddenState.subarray(77 * D, 154 * D));
  // Resuming from block 4's output (a read there) equals the uncut forward.
  const h4 = await one.encoder.layerOutput(batch, 4);
  assert.deepEqual(h4, ref.hiddenStates.get(5));
  assert.deepEqual((await three.encoder.resume(h4, batch, 4)).lastHiddenState, ref.lastHiddenState);
  // Released blocks are packed again from the file on the next use, also by forwards that were
  // waiting for their turn when the release came.
  await one.encoder.release();
  assert.deepEqual((await one.encoder.encode(batch)).lastHiddenState, ref.lastHiddenState);
  const queued = [one.encoder.encode(batch), one.encoder.encode(batch), three.encoder.encode(batch)];
  await one.encoder.release();
  for (const r of await Promise.all(queued)) assert.deepEqual(r.lastHiddenState, ref.lastHiddenState);
  await Promise.all([one.encoder.release(), three.encoder.release()]);
});

test('native CLIP blocks: an edit hook replaces the residual stream exactly where onnxruntime does', { skip }, async () => {
  const dir = tinyModel();
  const native = await load(dir, 'native');
  const ort = await load(dir, 'onnxruntime');
  const batch = batchOf(native, PROMPTS);
  const edit = { layer: 7, fn: (h: Float32Array) => h.map((v, i) => (i % 3 === 0 ? 0 : v * 1.5)) };
  const a = await native.encoder.encode(batch, { edit });
  const b = await ort.encoder.encode(batch, { edit });
  assert.ok(maxAbsDiff(a.lastHiddenState, b.lastHiddenState) <= 2e-5);
  const plain = await native.encoder.encode(batch);
  assert.ok(maxAbsDiff(a.lastHiddenState, plain.lastHiddenState) > 1e-2, 'the edit changed nothing');
  await Promise.all([native.encoder.release(), ort.encoder.release()]);
});

test('native CLIP blocks: every instruction-set build this CPU runs (ITD_NATIVE_ISA) agrees with onnxruntime', { skip }, async () => {
  const dir = tinyModel();
  const ort = await load(dir, 'onnxruntime');
  const batch = batchOf(ort, PROMPTS);
  const want = await ort.encoder.encode(batch);
  const saved = process.env['ITD_NATIVE_ISA'];
  try {
    for (const isa of nativeClip(undefined)!.isas) {
      process.env['ITD_NATIVE_ISA'] = isa;
      const native = await load(dir, 'native');
      const got = await native.encoder.encode(batch);
      assert.ok(maxAbsDiff(got.lastHiddenState, want.lastHiddenState) <= 2e-5, isa);
      await native.encoder.release();
    }
  } finally {
    if (saved === undefined) delete process.env['ITD_NATIVE_ISA'];
    else process.env['ITD_NATIVE_ISA'] = saved;
  }
  await ort.encoder.release();
});

test('native CLIP blocks: packed on first use from the files opened at load, even if a checkpoint was renamed over them since', { skip }, async () => {
  const ref = await load(tinyModel(), 'native');
  const want = await ref.encoder.encode(batchOf(ref, PROMPTS));
  await ref.encoder.release();
  const dir = path.join(tmpDir(), 'm');
  fs.cpSync(tinyModel(), dir, { recursive: true });
  const model = await load(dir, 'native');
  const weights = path.join(dir, 'text_encoder', 'model.safetensors');
  fs.copyFileSync(path.join(tinyModel({ seed: 8 }), 'text_encoder', 'model.safetensors'), `${weights}.tmp`);
  fs.renameSync(`${weights}.tmp`, weights);
  assert.deepEqual((await model.encoder.encode(batchOf(model, PROMPTS))).lastHiddenState, want.lastHiddenState);
  await model.encoder.release();
});

test('native CLIP blocks: a checkpoint truncated after load is a format error naming the file, not a crash', { skip }, async () => {
  const dir = path.join(tmpDir(), 'm');
  fs.cpSync(tinyModel(), dir, { recursive: true });
  const model = await load(dir, 'native');
  const weights = path.join(dir, 'text_encoder', 'model.safetensors');
  // The token embeddings come first in the file and stay whole; the last blocks' tensors are cut.
  fs.truncateSync(weights, Math.floor(fs.statSync(weights).size * 0.95));
  await assert.rejects(model.encoder.encode(batchOf(model, PROMPTS)), (e: Error & { code?: string; file?: string }) => {
    assert.equal(e.code, 'format');
    assert.match(e.message, /block \d+ could not be loaded \(clipPackBlock: tensor offsets past the end of the file/);
    assert.equal(e.file, weights);
    return true;
  });
  await model.encoder.release();
});

test('ITD_ENCODER names a backend', () => {
  const saved = process.env['ITD_ENCODER'];
  process.env['ITD_ENCODER'] = 'cuda';
  try {
    assert.throws(() => nativeClip(undefined), /ITD_ENCODER=cuda: expected native or onnxruntime/);
    process.env['ITD_ENCODER'] = 'onnxruntime';
    assert.equal(nativeClip(undefined), undefined);
  } finally {
    if (saved === undefined) delete process.env['ITD_ENCODER'];
    else process.env['ITD_ENCODER'] = saved;
  }
});
