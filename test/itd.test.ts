import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { auroc, calibrateThreshold, rocCurve } from '../src/classify/calibrate.js';
import { encodePrompts, loadTextModel, type TextModel } from '../src/encoder/index.js';
import { ConceptEraser } from '../src/erase/index.js';
import { Gate } from '../src/erase/gate.js';
import { Sae } from '../src/sae/index.js';
import { erasedLatents, loadEraser, saveEraser, validateEraser, type EraserSpec } from '../src/select/eraser-file.js';
import { buildEraser, conceptEntry, expandConcept, promptCodes, removeConcept, topFeatures, addConcept } from '../src/select/select.js';
import { exemplarSae, maxAbsDiff, tinyModel, tmpDir } from './helpers.js';

const LAYER = 8;
const TARGETS = [
  { name: 'zebra', prompts: ['a photo of a zebra', 'a zebra in a field', 'a painting of a zebra at dusk'] },
  { name: 'lighthouse', prompts: ['a lighthouse on a cliff', 'an old lighthouse at night', 'a photo of a lighthouse'] },
];
const RETAIN = ['a photo of a dog', 'a field of flowers', 'a painting of a city at dusk', 'a cliff by the sea', 'a house at night', 'a photo of a car'];
const NEUTRAL = ['a bowl of fruit on a table', 'a man riding a bicycle', 'a red car parked on the street'];

let cached: { model: TextModel; sae: Sae } | undefined;
async function setup() {
  if (!cached) {
    const model = await loadTextModel(tinyModel());
    const corpus = [...TARGETS.flatMap((t) => t.prompts), ...RETAIN, ...NEUTRAL, 'a volcano erupting', 'a volcano at night'];
    cached = { model, sae: await exemplarSae(model, corpus, LAYER, 8) };
  }
  return cached;
}

async function built(opts: Partial<{ mode: 'official' | 'residual'; scale: number }> = {}): Promise<EraserSpec> {
  const { model, sae } = await setup();
  const spec = await buildEraser(model, sae, { targets: TARGETS, retain: RETAIN, kSel: 8, scale: opts.scale ?? -8, mode: opts.mode ?? 'official', layer: LAYER, saeId: 'test-sae' });
  return { ...spec, threshold: 0, calibration: null };
}

test('promptCodes sees tokens 1..len-1 only (no BOS, no padding)', async () => {
  const { model, sae } = await setup();
  const [c] = await promptCodes(model, sae, LAYER, ['a photo of a zebra']);
  const framed = model.tokenizer.frame('a photo of a zebra');
  assert.equal(c!.tokens.length, framed.length - 1);
  assert.deepEqual(c!.tokens, Array.from(framed.ids.subarray(1, framed.length)));
  assert.equal(c!.tokens.at(-1), model.tokenizer.eosId); // EOS kept
  // Same codes whether the prompt is alone or batched with a longer one (padding never seen).
  const [alone] = await promptCodes(model, sae, LAYER, ['a zebra']);
  const [withLong] = await promptCodes(model, sae, LAYER, ['a zebra', 'a very long prompt about a lighthouse on a cliff by the stormy sea at night']);
  assert.deepEqual(alone!.indices, withLong!.indices);
});

test('topFeatures: max over tokens, descending, cut at K_sel', () => {
  const codes = { prompt: 'p', tokens: [1, 2], k: 3, indices: Int32Array.from([5, 7, 9, 7, 5, 2]), values: Float32Array.from([3, 1, 0, 4, 2, 0.5]) };
  assert.deepEqual(topFeatures(codes, 10), [{ latent: 7, max: 4 }, { latent: 5, max: 3 }, { latent: 2, max: 0.5 }]);
  assert.deepEqual(topFeatures(codes, 2).map((f) => f.latent), [7, 5]);
});

test('conceptEntry subtracts retain latents and names the retain prompts that took them', () => {
  const mk = (idx: number[], val: number[]) => ({ prompt: 'x', tokens: [0], k: idx.length, indices: Int32Array.from(idx), values: Float32Array.from(val) });
  const e = conceptEntry('c', [mk([1, 2, 3], [3, 2, 1]), mk([1, 4, 5], [5, 1, 1])], 3, [[2, 9], [4]]);
  assert.deepEqual(e.features.map((f) => f.latent).sort(), [1, 3, 5]);
  const f1 = e.features.find((f) => f.latent === 1)!;
  assert.deepEqual([f1.max, f1.mean, f1.prompts], [5, 4, 2]);
  assert.deepEqual(e.removedByRetain.sort((a, b) => a.latent - b.latent), [{ latent: 2, retainPrompts: [0] }, { latent: 4, retainPrompts: [1] }]);
});

test('buildEraser: per-concept features exclude every retain top-K_sel latent; union over concepts', async () => {
  const spec = await built();
  const retainAll = new Set(spec.retain.top.flat());
  for (const c of spec.concepts) {
    assert.ok(c.features.length > 0, c.name);
    for (const f of c.features) assert.ok(!retainAll.has(f.latent));
  }
  const union = new Set(spec.concepts.flatMap((c) => c.features.map((f) => f.latent)));
  assert.deepEqual([...erasedLatents(spec)], [...union].sort((a, b) => a - b));
  assert.ok(spec.activationThreshold > 0);
});

test('a concept fully covered by retain prompts is an error naming the retain prompts', async () => {
  const { model, sae } = await setup();
  await assert.rejects(
    buildEraser(model, sae, { targets: [{ name: 'dog', prompts: ['a photo of a dog'] }], retain: ['a photo of a dog'], kSel: 8, scale: -8, mode: 'official', layer: LAYER, saeId: 's' }),
    /concept 'dog' has no features left .*"a photo of a dog"/,
  );
  await assert.rejects(buildEraser(model, sae, { targets: [], retain: RETAIN, kSel: 8, scale: -8, mode: 'official', layer: LAYER, saeId: 's' }), /no target concepts/);
  await assert.rejects(buildEraser(model, sae, { targets: TARGETS, retain: RETAIN, kSel: 8, scale: NaN, mode: 'official', layer: LAYER, saeId: 's' }), /scale must be a finite number/);
});

test('eraser file round-trips and rejects malformed specs', async () => {
  const spec = await built();
  const file = path.join(tmpDir(), 'e.json');
  saveEraser(file, spec);
  assert.deepEqual(loadEraser(file), spec);
  assert.throws(() => validateEraser({ ...spec, scale: 'x' }, 'E.json'), /E\.json: field 'scale' must be a finite number/);
  assert.throws(() => validateEraser({ ...spec, mode: 'zap' }, 'E.json'), /field 'mode' must be 'official' or 'residual'/);
  assert.throws(() => validateEraser({ format: 'other' }, 'E.json'), /not an itd eraser/);
  fs.writeFileSync(file, '{bad json');
  assert.throws(() => loadEraser(file), /invalid JSON in eraser/);
});

test('eraser add/remove edit concepts without touching the others', async () => {
  const { model, sae } = await setup();
  const spec = await built();
  const added = await addConcept(spec, model, sae, 'volcano', expandConcept('volcano'));
  assert.deepEqual(added.concepts.map((c) => c.name), ['zebra', 'lighthouse', 'volcano']);
  assert.deepEqual(added.concepts[0], spec.concepts[0]);
  const removed = removeConcept(added, 'zebra');
  assert.deepEqual(removed.concepts.map((c) => c.name), ['lighthouse', 'volcano']);
  assert.throws(() => removeConcept(removed, 'zebra'), /no concept 'zebra'/);
});

test('prompts the gate passes come out bit-identical to plain encode; erased ones change', async () => {
  const { model, sae } = await setup();
  const spec = await built();
  const eraser = await ConceptEraser.load({ model, sae, eraser: spec });
  const prompts = [...NEUTRAL, TARGETS[0]!.prompts[0]!];
  const scores = (await eraser.classify(prompts)).map((d) => d.score);
  // Threshold between the highest score and the rest: exactly one prompt is erased.
  const order = scores.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]);
  const top = order[0]![1];
  await eraser.update({ ...spec, threshold: (order[0]![0] + order[1]![0]) / 2 });
  const plain = await encodePrompts(model, prompts);
  const erased = await eraser.encode(prompts);
  assert.deepEqual([...erased.erased], prompts.map((_, i) => (i === top ? 1 : 0)));
  const D = model.config.hiddenSize;
  const rows = (a: Float32Array, i: number) => a.subarray(i * 77 * D, (i + 1) * 77 * D);
  for (let i = 0; i < prompts.length; i++) {
    if (i === top) assert.ok(maxAbsDiff(rows(erased.lastHiddenState, i), rows(plain.lastHiddenState, i)) > 1e-3);
    else assert.deepEqual(rows(erased.lastHiddenState, i), rows(plain.lastHiddenState, i));
  }
  assert.equal(erased.concepts[top]!.length, 1);
});

test('official mode equals an independent hook: TopK codes, selected latents x scale, decode, BOS kept', async () => {
  const { model, sae } = await setup();
  const spec = await built({ scale: -8 });
  const eraser = await ConceptEraser.load({ model, sae, eraser: spec });
  const prompt = TARGETS[1]!.prompts[0]!;
  const out = await eraser.encode([prompt], { policy: 'always' });
  const sel = new Set(erasedLatents(spec));
  const D = model.config.hiddenSize;
  const tok = model.tokenizer.batch([prompt]);
  const ref = await model.encoder.encode({ ids: tok.ids, n: 1, t: 77 }, {
    edit: {
      layer: LAYER,
      fn: async (h) => {
        const out2 = h.slice();
        for (let p = 1; p < 77; p++) {
          const z = await sae.encode(h.subarray(p * D, (p + 1) * D), 1);
          const vals = z.values.map((v, j) => (sel.has(z.indices[j]!) ? v * -8 : v));
          out2.set(sae.decode(z.indices, vals, 1, z.k), p * D);
        }
        return out2;
      },
    },
  });
  assert.ok(maxAbsDiff(out.lastHiddenState, ref.lastHiddenState) <= 1e-4);
});

test('residual mode with scale 1 changes nothing; scores do not depend on batch or padding', async () => {
  const { model, sae } = await setup();
  const spec = await built({ mode: 'residual', scale: 1 });
  const eraser = await ConceptEraser.load({ model, sae, eraser: spec });
  const prompts = [TARGETS[0]!.prompts[1]!, NEUTRAL[0]!];
  const plain = await encodePrompts(model, prompts);
  const r = await eraser.encode(prompts, { policy: 'always' });
  assert.deepEqual(r.lastHiddenState, plain.lastHiddenState);
  const spec8 = await built({ mode: 'residual' });
  await eraser.update(spec8);
  const alone = await eraser.classify([prompts[0]!]);
  const batched = await eraser.classify([...prompts, 'a much longer prompt that pads the batch well beyond the others, with many words']);
  assert.ok(Math.abs(alone[0]!.score - batched[0]!.score) <= 1e-5 * Math.max(1, alone[0]!.score));
  const enc = await eraser.encode([prompts[0]!], { policy: 'never' });
  assert.ok(Math.abs(enc.scores[0]! - alone[0]!.score) <= 1e-4 * Math.max(1e-6, alone[0]!.score));
  assert.equal(enc.erased[0], 0);
});

test('eraser/model/SAE mismatches are errors; an uncalibrated eraser refuses to gate', async () => {
  const { model, sae } = await setup();
  const spec = await built();
  await assert.rejects(ConceptEraser.load({ model, sae, eraser: { ...spec, modelId: 'ffff' } }), /built for model ffff/);
  await assert.rejects(ConceptEraser.load({ model, sae, eraser: spec, saeId: 'other' }), /built for SAE test-sae, but the SAE given is other/);
  await assert.rejects(ConceptEraser.load({ model, sae: Sae.random({ d: 32, n: 64, k: 4, seed: 1 }), eraser: spec }), /SAE input width 32/);
  await assert.rejects(ConceptEraser.load({ model, sae: Sae.random({ d: 64, n: 8, k: 4, seed: 1 }), eraser: spec }), /outside the SAE's 8 latents/);
  const eraser = await ConceptEraser.load({ model, sae, eraser: { ...spec, threshold: null } });
  await assert.rejects(eraser.encode(['a']), /no threshold yet/);
});

test('calibration: recall and FPR thresholds, AUROC with ties, ROC end points', () => {
  const target = [5, 6, 7, 8];
  const other = [1, 2, 3, 6];
  const r = calibrateThreshold(target, other, { recall: 1 });
  assert.equal(r.threshold, 5 * 0.99);
  assert.equal(r.tpr, 1);
  assert.equal(r.fpr, 0.25);
  const f = calibrateThreshold(target, other, { fpr: 0 });
  assert.ok(f.threshold > 6 && f.threshold < 6.000001);
  assert.equal(f.fpr, 0);
  assert.equal(f.tpr, 0.5);
  // 16 pairs: target wins 14, ties 1 (6 vs 6), loses 1 (5 vs 6) -> (14 + 0.5) / 16.
  assert.equal(auroc(target, other), 14.5 / 16);
  const roc = rocCurve(target, other);
  assert.deepEqual(roc[0], [0, 0]);
  assert.deepEqual(roc.at(-1), [1, 1]);
  assert.throws(() => calibrateThreshold([], other, { recall: 1 }), /no target prompts/);
});

test('evaluateText: with nothing erased every prompt identifies itself and nothing drifts; erasing all moves neutral prompts', async () => {
  const { evaluateText } = await import('../src/evaluate/text.js');
  const { model, sae } = await setup();
  const spec = await built();
  const templates = ['a photo of a {}', 'a painting of a {}'];
  const concept = (name: string) => ({ name, prompts: templates.map((t) => t.replace('{}', name)) });
  const opts = { targets: [concept('zebra')], retained: [concept('dog'), concept('car')], templates, evalTemplates: [0, 1], filler: 'thing', neutral: NEUTRAL, latencyReps: 1 };
  const pass = await evaluateText(await ConceptEraser.load({ model, sae, eraser: { ...spec, threshold: 1e30 } }), opts);
  assert.deepEqual([pass.accE, pass.accR, pass.tpr, pass.fprNeutral, pass.neutralDrift], [1, 1, 0, 0, 0]);
  assert.equal(pass.counts.targetPrompts, 2);
  // Per concept: 2 prompts each (one per eval template), all identified and none erased at threshold 1e30.
  const zebraFeatures = spec.concepts.find((c) => c.name === 'zebra')?.features.length ?? 0;
  assert.deepEqual(pass.concepts.map((c) => [c.name, c.role, c.prompts, c.erased, c.identified]), [['zebra', 'target', 2, 0, 2], ['dog', 'retained', 2, 0, 2], ['car', 'retained', 2, 0, 2]]);
  assert.equal(pass.concepts[0]!.features, zebraFeatures);
  assert.deepEqual(pass.examples.filter((e) => e.role === 'neutral').map((e) => e.prompt), NEUTRAL.slice(0, 12));
  assert.equal(pass.examples.filter((e) => e.role === 'target').length, 2);
  const all = await evaluateText(await ConceptEraser.load({ model, sae, eraser: { ...spec, threshold: 0 } }), opts);
  assert.equal(all.tpr, 1);
  assert.equal(all.fprNeutral, 1);
  assert.ok(all.examples.every((e) => e.erased));
  assert.deepEqual(all.concepts.map((c) => c.erased), [2, 2, 2]);
  assert.ok(all.neutralDrift > 0);
});

test('gate score = mean over rows and dims of ((scale-1) sum a_i W_dec[i])^2, for 0, 1 or several active latents and column subsets', async () => {
  const { sae } = await setup();
  const D = sae.d;
  const latents = Int32Array.from([1, 4, 6]);
  const scale = -8;
  const gate = await Gate.create(sae, latents, 0, scale);
  // rows: nothing active; one latent; three latents
  const acts = Float32Array.from([0, 0, 0, 0, 0.7, 0, 1.5, 0.2, 0.9]);
  const direct = (cols: number[]) => {
    let sum = 0;
    for (let r = 0; r < 3; r++) {
      for (let e = 0; e < D; e++) {
        let v = 0;
        for (const j of cols) v += (scale - 1) * acts[r * 3 + j]! * sae.wDec[latents[j]! * D + e]!;
        sum += v * v;
      }
    }
    return sum / (3 * D);
  };
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1e-12, Math.abs(b)), `${a} vs ${b}`);
  close(gate.score(acts, 0, 3), direct([0, 1, 2]));
  close(gate.score(acts, 0, 3, Int32Array.from([0, 2])), direct([0, 2]));
  close(gate.score(acts, 0, 3, Int32Array.from([1])), direct([1]));
  assert.equal(gate.score(acts, 0, 1), 0);
  assert.deepEqual([...gate.activeColumns(acts, 0, 3)].sort(), [0, 1, 2]);
  assert.deepEqual([...gate.activeColumns(acts, 1, 2)], [1]);
  await gate.release();
});
