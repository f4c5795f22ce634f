import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadTextModel, tokenRows, type TextModel } from '../src/encoder/index.js';
import { maxAbsDiff, tinyModel } from './helpers.js';

const PROMPTS = ['a photo of a cat', 'an oil painting of a lighthouse at dusk, dramatic light', 'zebra'];

/** The fully framed run of one prompt (the pipeline's own row), [t, D]. */
async function framedRun(model: TextModel, prompt: string, layer: number): Promise<{ h: Float32Array; length: number; ids: Int32Array }> {
  const f = model.tokenizer.frame(prompt);
  return { h: await model.encoder.layerOutput({ ids: f.ids, n: 1, t: f.ids.length }, layer), length: f.length, ids: f.ids };
}

test('CLIP rows: BOS dropped, EOS kept, no padding; batched to the longest prompt they equal the 77-token run', async () => {
  const model = await loadTextModel(tinyModel());
  const D = model.config.hiddenSize;
  const rows = await tokenRows(model, PROMPTS, 8, { batch: 2 });
  assert.equal(rows.n, PROMPTS.length);
  for (const [r, p] of PROMPTS.entries()) {
    const full = await framedRun(model, p, 8);
    const [o, e] = [rows.offsets[r]!, rows.offsets[r + 1]!];
    assert.equal(e - o, full.length - 1);
    assert.deepEqual(Array.from(rows.positions.subarray(o, e)), Array.from({ length: full.length - 1 }, (_, i) => i + 1));
    assert.deepEqual(Array.from(rows.tokenIds.subarray(o, e)), Array.from(full.ids.subarray(1, full.length)));
    assert.equal(rows.tokenIds[e - 1], model.tokenizer.eosId);
    assert.ok(maxAbsDiff(rows.x.subarray(o * D, e * D), full.h.subarray(D, full.length * D)) < 1e-5);
  }
  const withBos = await tokenRows(model, PROMPTS, 8, { bos: true, eos: false });
  assert.equal(withBos.tokenIds.length, rows.tokenIds.length);
  assert.equal(withBos.positions[0], 0);
  await model.encoder.release();
});

test('T5 rows: no BOS, up to and including </s>, run at max_sequence_length (padding is attended, so a shorter run differs)', async () => {
  const dir = tinyModel({ preset: 'flux-tiny' });
  const model = await loadTextModel(dir, { encoder: 'text_encoder_2', maxSequenceLength: 64 });
  const D = model.config.hiddenSize;
  const layer = model.defaultLayer;
  const rows = await tokenRows(model, PROMPTS, layer, { batch: 2 });
  for (const [r, p] of PROMPTS.entries()) {
    const full = await framedRun(model, p, layer);
    assert.equal(full.ids.length, 64);
    const [o, e] = [rows.offsets[r]!, rows.offsets[r + 1]!];
    assert.equal(e - o, full.length);
    assert.equal(rows.positions[o], 0);
    assert.deepEqual(Array.from(rows.tokenIds.subarray(o, e)), Array.from(full.ids.subarray(0, full.length)));
    assert.equal(rows.tokenIds[e - 1], model.tokenizer.eosId);
    // The pipeline's own computation: bit-identical rows.
    assert.equal(maxAbsDiff(rows.x.subarray(o * D, e * D), full.h.subarray(0, full.length * D)), 0);
    // Without the padding the same tokens come out different: shortening the row is not exact for T5.
    const short = await model.encoder.layerOutput({ ids: full.ids.subarray(0, full.length), n: 1, t: full.length }, layer);
    assert.ok(maxAbsDiff(short, full.h.subarray(0, full.length * D)) > 1e-2);
  }
  await model.encoder.release();
});
