import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { calibrateEraser } from '../src/classify/calibrate-eraser.js';
import { boundedErrors, calibrateThreshold } from '../src/classify/calibrate.js';
import { loadTextModel } from '../src/encoder/index.js';
import { ConceptEraser } from '../src/erase/index.js';
import { ItdError } from '../src/errors.js';
import { conceptThreshold, loadEraser, perConceptGate, saveEraser } from '../src/select/eraser-file.js';
import { createEraser } from '../src/select/create.js';
import { bundledNeutralPrompts } from '../src/select/data.js';
import { buildEraser } from '../src/select/select.js';
import { exemplarSae, tinyModel, tmpDir } from './helpers.js';

/** P(Binomial(n, p) <= k), summed directly. */
function binomCdf(n: number, p: number, k: number): number {
  let c = 0;
  let logC = 0; // log C(n, i)
  for (let i = 0; i <= k; i++) {
    if (i > 0) logC += Math.log(n - i + 1) - Math.log(i);
    c += Math.exp(logC + i * Math.log(p) + (n - i) * Math.log1p(-p));
  }
  return c;
}

test('boundedErrors: the largest k with P(Bin(n, p) <= k) <= alpha; -1 when n is too small', () => {
  for (const [n, p] of [[1000, 0.01], [2000, 0.01], [500, 0.05]] as const) {
    const k = boundedErrors(n, p, 0.05);
    assert.ok(k >= 0 && k < n * p, `n ${n} p ${p}: k ${k}`);
    assert.ok(binomCdf(n, p, k) <= 0.05 && binomCdf(n, p, k + 1) > 0.05, `n ${n}: k ${k}`);
  }
  assert.equal(boundedErrors(1000, 0.01, 0.05), 4);
  assert.equal(boundedErrors(100, 0.01, 0.05), -1); // 0.99^100 = 0.37: not even 0 errors proves FPR <= 0.01
});

test('calibrateThreshold with a confidence allows fewer false positives than the plain quantile, and says when it cannot guarantee', () => {
  const other = Array.from({ length: 1000 }, (_, i) => i / 1000);
  const plain = calibrateThreshold([2], other, { fpr: 0.01 });
  const sure = calibrateThreshold([2], other, { fpr: 0.01, confidence: 0.95 });
  assert.equal(plain.fpr, 0.01);
  assert.equal(sure.fpr, 0.004);
  assert.equal(sure.guaranteed, true);
  assert.equal(plain.guaranteed, undefined);
  const few = calibrateThreshold([2], other.slice(0, 100), { fpr: 0.01, confidence: 0.95 });
  assert.equal(few.guaranteed, false);
  assert.equal(few.fpr, 0);
  assert.throws(() => calibrateThreshold([2], other, { fpr: 0.01, confidence: 1 }), /confidence/);
});

test('per-concept thresholds: each concept against its own threshold, one joint calibration, saved as itd-eraser/2; itd-eraser/1 files still load', async () => {
  const model = await loadTextModel(tinyModel());
  const prompts = ['a photo of zebra', 'a zebra in a field', 'a red lighthouse', 'a lighthouse at night', 'a bowl of fruit', 'a dog on a sofa', 'a man reading', 'a city street'];
  const sae = await exemplarSae(model, prompts, 8, 4);
  const spec = await buildEraser(model, sae, {
    targets: [{ name: 'zebra', prompts: prompts.slice(0, 2) }, { name: 'lighthouse', prompts: prompts.slice(2, 4) }], retain: [], kSel: 3, scale: -8, mode: 'official', layer: 8, saeId: 'x',
  });
  const e = await ConceptEraser.load({ model, sae, eraser: spec });
  const other = prompts.slice(4);
  const shared = await calibrateEraser(e, { fpr: 0.25 }, { other, force: true, perConcept: 'none' });
  assert.equal(perConceptGate(shared.spec), false);
  assert.equal(shared.spec.format, 'itd-eraser/1');
  const own = await calibrateEraser(e, { fpr: 0.25 }, { other, force: true, perConcept: 'target' });
  assert.equal(own.spec.format, 'itd-eraser/2');
  assert.ok(own.spec.concepts.every((c) => c.scoreNorm! > 0));
  await e.update(own.spec);
  const th = own.spec.threshold!;
  for (const d of await e.classify([...prompts, 'a zebra next to a lighthouse'])) {
    // The prompt's score is its largest concept score / norm; it is erased iff some concept reaches its own threshold.
    const ratios = own.spec.concepts.map((c) => d.conceptScores[c.name]! / c.scoreNorm!);
    assert.ok(Math.abs(d.score - Math.max(0, ...ratios)) <= 1e-12 * Math.max(1, d.score), `${d.prompt}: ${d.score} vs ${ratios}`);
    const fired = own.spec.concepts.filter((c) => d.conceptScores[c.name]! / c.scoreNorm! >= th && d.conceptScores[c.name]! > 0).map((c) => c.name);
    assert.equal(d.erased, fired.length > 0, d.prompt);
    assert.deepEqual(d.concepts, fired);
  }
  // Each concept's own prompts reach their own threshold at this operating point.
  assert.ok(own.choice.tpr === 1, `tpr ${own.choice.tpr}`);
  assert.ok(Math.abs(conceptThreshold(own.spec, own.spec.concepts[0]!)! - th * own.spec.concepts[0]!.scoreNorm!) < 1e-18);
  const dir = tmpDir();
  saveEraser(path.join(dir, 'v2.json'), own.spec);
  saveEraser(path.join(dir, 'v1.json'), shared.spec);
  assert.equal(loadEraser(path.join(dir, 'v2.json')).format, 'itd-eraser/2');
  const v1 = loadEraser(path.join(dir, 'v1.json'));
  assert.equal(v1.format, 'itd-eraser/1');
  // An old file: one threshold on the union score, as before.
  await e.update(v1);
  const union = await e.classify(prompts);
  assert.ok(union.every((d) => d.erased === d.score >= v1.threshold!));
  // A norm in a /1 file, or a bad norm, is refused.
  const raw = JSON.parse(fs.readFileSync(path.join(dir, 'v2.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ ...raw, format: 'itd-eraser/1' }));
  assert.throws(() => loadEraser(path.join(dir, 'bad.json')), (err: ItdError) => /scoreNorm/.test(err.message) && /itd-eraser\/2/.test(err.message));
  raw.concepts[0].scoreNorm = -1;
  fs.writeFileSync(path.join(dir, 'bad.json'), JSON.stringify(raw));
  assert.throws(() => loadEraser(path.join(dir, 'bad.json')), /scoreNorm' must be a finite number > 0, got -1/);
  await e.release();
  await sae.release();
});

test('eraser create bad input: too few neutral prompts, an SAE too small for k, a concept left with no features are ItdErrors with a hint', async () => {
  const model = await loadTextModel(tinyModel());
  const neutral = bundledNeutralPrompts().slice(0, 400);
  const base = { out: tmpDir(), templates: { build: ['a photo of {}', 'a drawing of {}'], heldout: ['a painting of {}'] } };
  await assert.rejects(createEraser(model, { ...base, concepts: ['zebra'], neutral: [] }), (e: ItdError) => e.code === 'usage' && /0 neutral prompts/.test(e.message) && /bundled/.test(e.hint!));
  await assert.rejects(createEraser(model, { ...base, concepts: ['zebra'], neutral, latents: 16, k: 32 }), (e: ItdError) => e.code === 'usage' && /k 32/.test(e.message) && /--latents/.test(e.hint!));
  const sae = await exemplarSae(model, ['a photo of zebra', 'a drawing of zebra', 'a red car'], 8, 4);
  // Retaining the concept itself takes every one of its latents.
  await assert.rejects(createEraser(model, { ...base, concepts: ['zebra'], retainConcepts: ['zebra'], neutral, sae: { sae, id: 'x' }, grow: false, layer: 8 }),
    (e: ItdError) => e.code === 'quality' && /no features left/.test(e.message) && /retain/.test(e.hint!));
  await sae.release();
});
