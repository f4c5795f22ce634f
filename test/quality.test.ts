import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { thresholdProblems, calibrateEraser } from '../src/classify/calibrate-eraser.js';
import { calibrateThreshold } from '../src/classify/calibrate.js';
import { loadTextModel } from '../src/encoder/index.js';
import { ConceptEraser } from '../src/erase/index.js';
import { Gate } from '../src/erase/gate.js';
import { ItdError } from '../src/errors.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { loadSae, saeIdentity, Sae } from '../src/sae/index.js';
import { addConceptsGrown, conceptPrompts, createEraser, MIN_NEUTRAL, neutralSlices } from '../src/select/create.js';
import { bundledNeutralPrompts, bundledTemplates } from '../src/select/data.js';
import { loadEraser, saveEraser } from '../src/select/eraser-file.js';
import { addConcept, buildEraser, commonLatents, conceptEntry, conceptSpans } from '../src/select/select.js';
import { synthModel } from '../src/synth/clip.js';
import { Convergence, defaultTokenBudget, saeWarnings } from '../src/train/fit.js';
import { exemplarSae, REPO_ROOT, tinyModel, tmpDir } from './helpers.js';

test('Convergence stops on a plateau, never while the loss still falls by more than tol, and ignores warm-up windows', () => {
  const falling = new Convergence(5, 0.01, 2);
  for (let s = 1; s <= 200; s++) assert.equal(falling.observe(s, 0.98 ** s), false, `step ${s}`);
  const plateau = new Convergence(5, 0.01, 2);
  let stopped = 0;
  for (let s = 1; s <= 100 && !stopped; s++) if (plateau.observe(s, s <= 20 ? 1 / s : 0.05)) stopped = s;
  // windows end at 5,10,...: the window ending at 25 still holds 1/16..1/20, so 30 and 35 are the flat ones
  assert.equal(stopped, 35);
  const warm = new Convergence(5, 0.01, 1, 50);
  let w = 0;
  for (let s = 1; s <= 100 && !w; s++) if (warm.observe(s, 0.5)) w = s;
  assert.equal(w, 55);
});

test('the default token budget scales with the width and never drops below 300 steps or one pass', () => {
  assert.equal(defaultTokenBudget(16384, 50_000, 1024), 64 * 16384);
  assert.equal(defaultTokenBudget(256, 50_000, 1024), 300 * 1024);
  assert.equal(defaultTokenBudget(256, 2_000_000, 1024), 2_000_000);
  assert.equal(defaultTokenBudget(256, 100, 4096), 300 * 100);
});

test('saeWarnings flags a poor FVU, a dead dictionary and a run too short for its width', () => {
  assert.deepEqual(saeWarnings({ fvu: 0.08, deadFraction: 0.01, tokens: 1_000_000, latents: 16384 }), []);
  const w = saeWarnings({ fvu: 0.67, deadFraction: 0.6, tokens: 184_000, latents: 16384 });
  assert.equal(w.length, 3);
  assert.match(w[0]!, /FVU 0\.670/);
  assert.match(w[1]!, /60\.0% of latents are dead/);
  assert.match(w[2]!, /184000 tokens.*16 per latent/);
});

test('thresholdProblems refuses a threshold <= 0, one erasing most prompts, and an AUROC near 0.5', () => {
  const zero = calibrateThreshold([0, 0, 1e-3], [0, 0, 0, 0], { recall: 1 });
  assert.ok(zero.threshold <= 0);
  assert.ok(thresholdProblems(zero, { recall: 1 }).refuse.some((r) => /<= 0/.test(r)));
  const flat = calibrateThreshold([1, 2, 3, 4], [1, 2, 3, 4], { fpr: 0.01 });
  assert.ok(thresholdProblems(flat, { fpr: 0.01 }).refuse.some((r) => /AUROC 0\.500/.test(r)));
  const good = calibrateThreshold([5, 6, 7, 8], [0.1, 0.2, 0.3, 1], { recall: 1 });
  assert.deepEqual(thresholdProblems(good, { recall: 1 }), { refuse: [], warn: [] });
  const poor = calibrateThreshold([0.5, 6, 7, 8], [0.1, 0.2, 0.3, 1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], { recall: 1 });
  const p = thresholdProblems(poor, { recall: 1 });
  assert.deepEqual([p.refuse.length, p.warn.length], [0, 1]);
});

test('commonLatents: latents in more than maxRate of the lists (0: any use)', () => {
  const top = [[1, 2], [2, 3], [2, 4], [5]];
  assert.deepEqual(commonLatents(top, 0), [1, 2, 3, 4, 5]);
  assert.deepEqual(commonLatents(top, 0.25), [2]);
  assert.deepEqual(commonLatents(top, 0.75), []);
});

test('conceptEntry drops common latents and records them; a concept left empty is an ItdError quality', () => {
  const codes = [{ prompt: 'x', tokens: [5, 6], indices: Int32Array.from([1, 2, 3, 1]), values: Float32Array.from([3, 2, 1, 4]), k: 2 }];
  const e = conceptEntry('x', codes, 8, [[3]], new Set([2]));
  assert.deepEqual(e.features.map((f) => f.latent), [1]);
  assert.deepEqual(e.removedAsCommon, [2]);
  assert.deepEqual(e.removedByRetain.map((r) => r.latent), [3]);
});

test('conceptSpans: selection reads rows from the name\'s first token on (all rows when the name is absent)', () => {
  const c = { prompt: 'p', tokens: [10, 11, 20, 21, 99], indices: Int32Array.from([1, 2, 3, 4, 5]), values: Float32Array.from([9, 9, 1, 1, 1]), k: 1 };
  const [named, absent] = conceptSpans([c, { ...c, tokens: [10, 11, 12, 13, 99] }], [20, 21]);
  assert.equal(named!.from, 2);
  assert.equal(absent!.from, 0);
  const e = conceptEntry('x', [named!], 8, []);
  assert.deepEqual(e.features.map((f) => f.latent), [3, 4, 5]); // latents 1 and 2 fired only before the name
});

test("gate score 'max' is the largest per-token energy, 'mean' their average", async () => {
  const D = 4;
  const n = 3;
  const wDec = Float32Array.from({ length: n * D }, (_, i) => ((i * 7) % 5) - 2);
  const sae = new Sae({ d_in: D, num_latents: n, k: 2, activation: 'topk' } as never, { wEnc: wDec.slice(), bEnc: new Float32Array(n), wDec, bPre: new Float32Array(D) });
  const gate = await Gate.create(sae, Int32Array.from([0, 2]), 0, -8);
  const acts = Float32Array.from([0, 0, 0.5, 0, 1, 2]); // rows: none, one, two active
  const energy = (r: number) => {
    let s = 0;
    for (let e = 0; e < D; e++) {
      let v = 0;
      for (const [j, l] of [[0, 0], [1, 2]] as const) v += -9 * acts[r * 2 + j]! * wDec[l * D + e]!;
      s += v * v;
    }
    return s / D;
  };
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) <= 1e-5 * b, `${a} vs ${b}`);
  close(gate.score(acts, 0, 3, undefined, 'max'), Math.max(energy(1), energy(2)));
  close(gate.score(acts, 0, 3, undefined, 'mean'), (energy(1) + energy(2)) / 3);
  assert.equal(gate.score(acts, 0, 1, undefined, 'max'), 0);
  await gate.release();
});

test('bundled data: 4000 neutral captions; build and held-out templates are disjoint and templated', () => {
  const n = bundledNeutralPrompts();
  assert.equal(n.length, 4000);
  assert.ok(fs.readFileSync(path.join(REPO_ROOT, 'data', 'NOTICE'), 'utf8').includes('CC BY 4.0'));
  const t = bundledTemplates();
  assert.ok(t.build.length >= 8 && t.heldout.length >= 4);
  assert.equal(t.build.filter((x) => t.heldout.includes(x)).length, 0);
  const s = neutralSlices(n);
  assert.deepEqual([s.select.length, s.calibrate.length, s.evaluate.length], [2000, 1000, 1000]);
  assert.throws(() => neutralSlices(n.slice(0, MIN_NEUTRAL - 1)), (e: ItdError) => e.code === 'usage' && /at least 400/.test(e.message));
});

test('synth-model noSink: no massive BOS activation', async () => {
  const dir = tmpDir();
  synthModel({ out: path.join(dir, 'a'), preset: 'tiny', seed: 3 });
  synthModel({ out: path.join(dir, 'b'), preset: 'tiny', seed: 3, noSink: true });
  const bosMax = (m: string) => {
    const f = SafetensorsFile.open(path.join(dir, m, 'text_encoder', 'model.safetensors'));
    const w = f.readF32('text_model.embeddings.token_embedding.weight');
    f.close();
    const D = 64;
    const bos = 49406 < w.length / D ? 49406 : (w.length / D) - 2;
    return Math.max(...Array.from(w.subarray(bos * D, (bos + 1) * D), Math.abs));
  };
  assert.ok(bosMax('a') > 30);
  assert.ok(bosMax('b') < 1);
});

test('eraser create: trains an SAE, selects, calibrates on a held-apart slice and reports held-out quality; --sae reuses it zero-shot', async () => {
  const model = await loadTextModel(tinyModel());
  const out = tmpDir();
  const neutral = bundledNeutralPrompts().slice(0, 480);
  const templates = { build: ['a photo of {}', '{} smiling', 'a drawing of {} in a park', 'a picture of {} at night'], heldout: ['a painting of {}', '{} on a poster'] };
  const lines: string[] = [];
  const { spec, sae, summary } = await createEraser(model, {
    concepts: ['lighthouse', 'castle'], out, neutral, templates, latents: 512, k: 4, oversample: 4, tokens: 40_000, fpr: 0.05, force: true, log: (l) => lines.push(l),
  });
  saveEraser(path.join(out, 'eraser.json'), spec);
  assert.ok(fs.existsSync(path.join(out, 'sae', 'sae.safetensors')));
  assert.ok(!fs.existsSync(path.join(out, 'acts')), 'the collection is removed after training');
  assert.equal(summary.sae.trained, true);
  assert.ok(summary.sae.grown >= 1, 'the trained SAE is grown too');
  assert.ok(summary.sae.fvu! > 0 && summary.sae.fvu! < 1, `fvu ${summary.sae.fvu}`);
  assert.equal(spec.scoreStat, 'max');
  assert.equal(spec.neutral!.prompts, 240);
  assert.equal(summary.calibration.neutral, 120);
  assert.equal(summary.heldout.neutralPrompts, 120);
  assert.equal(summary.heldout.targetPrompts, 4);
  assert.ok(summary.calibration.fpr <= 0.05);
  assert.equal(summary.concepts.length, 2);
  assert.ok(summary.concepts.every((c) => c.features > 0));
  assert.ok(lines.some((l) => /train a 512-latent/.test(l)));
  // The SAE on disk is the one the eraser was built for: encode works with it.
  const saeDir = path.join(out, 'sae');
  assert.equal(spec.saeId, saeIdentity(saeDir));
  const eraser = await ConceptEraser.load({ model, sae: saeDir, eraser: path.join(out, 'eraser.json') });
  const r = await eraser.encode(['a photo of castle', 'a bowl of fruit on a table']);
  assert.equal(r.erased.length, 2);
  await eraser.release();
  // Zero-shot: a new concept on the existing SAE, nothing trained; latents grown with the old ones frozen.
  const out2 = tmpDir();
  const base = loadSae(saeDir);
  const z = await createEraser(model, { concepts: ['elephant'], sae: { sae: base, id: saeIdentity(saeDir) }, out: out2, neutral, templates, fpr: 0.05, maxNeutralRate: 0.2, force: true });
  assert.equal(z.summary.sae.trained, false);
  assert.ok(z.summary.sae.grown >= 1);
  const grown = loadSae(path.join(out2, 'sae'));
  assert.equal(grown.n, base.n + z.summary.sae.grown);
  assert.deepEqual([grown.wEnc.subarray(0, base.n * base.d), grown.bEnc.subarray(0, base.n), grown.wDec.subarray(0, base.n * base.d)], [base.wEnc, base.bEnc, base.wDec]);
  assert.equal(z.spec.saeId, saeIdentity(path.join(out2, 'sae')));
  const zs = await ConceptEraser.load({ model, sae: path.join(out2, 'sae'), eraser: z.spec });
  const [hit, miss] = await zs.classify(['a photo of elephant', neutral[0]!]);
  assert.ok(hit!.score > miss!.score, `${hit!.score} vs ${miss!.score}`);
  // Default oldLatents 'edit': the gate scores the grown latents, the SAE's own selected ones are edit-only.
  const c0 = z.spec.concepts[0]!;
  assert.ok(c0.features.length > 0 && c0.features.every((f) => f.latent >= base.n), 'grown latents have the new ids');
  assert.ok(c0.editOnly!.length > 0 && c0.editOnly!.every((f) => f.latent < base.n));
  const gateOnly = { ...z.spec, concepts: z.spec.concepts.map(({ editOnly: _, ...c }) => c) };
  const go = await ConceptEraser.load({ model, sae: path.join(out2, 'sae'), eraser: gateOnly });
  const probe = ['a photo of elephant', neutral[0]!, neutral[1]!];
  assert.deepEqual((await go.classify(probe)).map((d) => d.score), (await zs.classify(probe)).map((d) => d.score), 'edit-only latents never reach the score');
  const [withEdit, withoutEdit] = [await zs.encode(probe.slice(0, 1), { policy: 'always' }), await go.encode(probe.slice(0, 1), { policy: 'always' })];
  assert.notDeepEqual(withEdit.lastHiddenState, withoutEdit.lastHiddenState, 'the edit deactivates the edit-only latents too');
  assert.notEqual(zs.id, go.id);
  await go.release();
  saveEraser(path.join(out2, 'e.json'), z.spec);
  const raw = JSON.parse(fs.readFileSync(path.join(out2, 'e.json'), 'utf8'));
  assert.equal(raw.format, 'itd-eraser/2');
  fs.writeFileSync(path.join(out2, 'e1.json'), JSON.stringify({ ...raw, format: 'itd-eraser/1', concepts: raw.concepts.map(({ scoreNorm: _, ...c }: Record<string, unknown>) => c) }));
  assert.throws(() => loadEraser(path.join(out2, 'e1.json')), (e: ItdError) => /concepts\[0\]\.editOnly/.test(e.message) && /itd-eraser\/2/.test(e.message));
  await zs.release();
  const untrained = loadSae(saeDir);
  untrained.cfg.training = { fvu: 0.9, dead_fraction: 0.7, tokens: 1000 };
  await assert.rejects(createEraser(model, { concepts: ['elephant'], sae: { sae: untrained, id: 'u' }, out: tmpDir(), neutral, templates }),
    (e: ItdError) => e.code === 'quality' && /given SAE is not usable/.test(e.message) && /--force/.test(e.hint!));
  const plain = await createEraser(model, { concepts: ['elephant'], sae: { sae: base, id: saeIdentity(saeDir) }, out: tmpDir(), neutral, templates, fpr: 0.05, maxNeutralRate: 0.2, grow: false, force: true });
  assert.equal(plain.summary.sae.grown, 0);
  // eraser add keeps the neutral specificity rule: a common latent is never added.
  const added = await addConcept(spec, model, sae, 'elephant', ['a photo of elephant'], true);
  const common = new Set(spec.neutral!.common);
  assert.ok(added.concepts.at(-1)!.features.every((f) => !common.has(f.latent)));
  assert.ok(loadEraser(path.join(out, 'eraser.json')).neutral);
  // Zero-shot eraser add: latents grown for the new name, the old concepts untouched, erasing at once.
  const grownDir = tmpDir();
  const g = await addConceptsGrown(model, sae, spec, { concepts: [{ name: 'elephant', prompts: spec.templates.map((t) => t.replaceAll('{}', 'elephant')) }], saeOut: grownDir, neutral: neutral.slice(0, 240) });
  assert.ok(g.grown.length >= 1 && g.sae.n === sae.n + g.grown.length);
  assert.equal(g.spec.saeId, saeIdentity(grownDir));
  assert.deepEqual(g.spec.concepts.slice(0, 2), spec.concepts, 'existing concepts keep their latents and norms');
  const el = g.spec.concepts[2]!;
  assert.ok(el.features.every((f) => f.latent >= sae.n) && (el.editOnly ?? []).every((f) => f.latent < sae.n));
  assert.ok(Number.isFinite(el.scoreNorm) && el.scoreNorm! > 0);
  assert.equal(g.spec.calibration!.stale, true);
  const ga = await ConceptEraser.load({ model, sae: grownDir, eraser: g.spec });
  const [el1, calm] = await ga.classify(['a painting of elephant', neutral[300]!]);
  assert.deepEqual([el1!.erased, el1!.concepts, calm!.erased], [true, ['elephant'], false]);
  await ga.release();
  await sae.release();
});

test('eraser create: a concept whose prompts all truncate, and a degenerate calibration, are ItdErrors with a hint', async () => {
  const model = await loadTextModel(tinyModel());
  const long = Array.from({ length: 90 }, (_, i) => `word${i}`).join(' ');
  assert.throws(() => conceptPrompts(model, long, ['a photo of {}']), (e: ItdError) => e.code === 'usage' && /exceed 77 tokens/.test(e.message) && /shorter/.test(e.hint!));
  // An eraser whose gate never fires: every score is 0, the threshold would be <= 0.
  const prompts = ['a photo of zebra', 'a red car', 'a dog on a sofa'];
  const sae = await exemplarSae(model, prompts, 8, 4);
  const spec = await buildEraser(model, sae, { targets: [{ name: 'zebra', prompts: prompts.slice(0, 1) }], retain: [], kSel: 4, scale: -8, mode: 'official', layer: 8, saeId: 'x' });
  const e = await ConceptEraser.load({ model, sae, eraser: { ...spec, concepts: spec.concepts.map((c) => ({ ...c, features: [] })) } });
  const target = ['a photo of zebra', 'a zebra in a field']; // two: fewer is refused before scoring (MIN_CALIBRATION_PROMPTS)
  await assert.rejects(calibrateEraser(e, { fpr: 0.01 }, { target, other: prompts.slice(1) }), (err: ItdError) => err.code === 'quality' && /refused/.test(err.message) && /--force/.test(err.hint!));
  const forced = await calibrateEraser(e, { fpr: 0.01 }, { target, other: prompts.slice(1), force: true });
  assert.ok(forced.warnings.length > 0);
  await e.release();
});
