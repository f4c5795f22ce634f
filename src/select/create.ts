/**
 * `itd eraser create`: from a model and concept names to a calibrated eraser in one call.
 *
 *   neutral prompts (bundled COCO captions unless given) are split into three disjoint slices:
 *     select    (1/2)  their common latents are never selected (specificity, commonLatents)
 *     calibrate (1/4)  the gate threshold is set for the target FPR on them
 *     evaluate  (1/4)  only measured: held-out FPR
 *   concept prompts come from the build templates; held-out templates only measure TPR.
 *   Without an SAE: collect block `layer` on the select + calibrate slices and the build prompts
 *   (concepts and retained concepts, oversampled so their rare tokens are not drowned), train to
 *   convergence (train/fit.ts), refuse an SAE that did not train.
 *   Then (unless grow is off) grow one latent per name token with every SAE latent frozen and
 *   erase each concept through its grown latents (grow.ts): measured, that is what separates a
 *   name from captions, on SAEs trained with or without the name (BENCHMARKS.md, issue 10).
 */
import fs from 'node:fs';
import path from 'node:path';
import { calibrateEraser, targetNorm, type PerConceptRule } from '../classify/calibrate-eraser.js';
import { auroc, rate } from '../classify/calibrate.js';
import { collectActivations } from '../collect/collect.js';
import { openActivations } from '../collect/dataset.js';
import type { TextModel } from '../encoder/index.js';
import { ConceptEraser } from '../erase/index.js';
import type { ScoreStat } from '../erase/gate.js';
import { ItdError } from '../errors.js';
import type { ProgressFactory } from '../io/progress.js';
import { checkSaeForModel } from '../sae/compat.js';
import { saeIdentity, saveSae, type Sae } from '../sae/index.js';
import { fitSae, saeWarnings, MAX_USABLE_DEAD, MAX_USABLE_FVU } from '../train/fit.js';
import { conceptThreshold, perConceptGate, type EraseMode, type EraserSpec } from './eraser-file.js';
import { bundledNeutralPrompts, bundledTemplates, type TemplateSets } from './data.js';
import { growSae, type GrownLatent } from './grow.js';
import { addConcept, buildEraser, expandConcept, layerRows, type LayerRows, type SelectSpan } from './select.js';

/** What the SAE's own latents selected beside grown ones do (CreateOptions.oldLatents). */
export type OldLatents = 'edit' | 'gate' | 'drop';

/** Fewest neutral prompts create accepts: the calibration slice must resolve an FPR of 1 %. */
export const MIN_NEUTRAL = 400;

export interface CreateOptions {
  concepts: string[];
  retainConcepts?: string[];
  /** An existing SAE (zero-shot: nothing is trained) and its identity; otherwise one is trained into `out`/sae. */
  sae?: { sae: Sae; id: string };
  out: string;
  neutral?: string[];
  templates?: TemplateSets;
  fpr?: number;
  /** Calibrate so that FPR <= fpr holds with this confidence on fresh captions (exact binomial bound); 0: the plain empirical quantile. */
  confidence?: number;
  /** Per-concept thresholds (calibrate-eraser.ts PerConceptRule); 'none': one shared threshold (official). */
  perConcept?: PerConceptRule;
  kSel?: number;
  scale?: number;
  mode?: EraseMode;
  scoreStat?: ScoreStat;
  /** Latents in the top-K_sel of more than this share of the select slice are never selected. */
  maxNeutralRate?: number;
  span?: SelectSpan;
  /** Grow one latent per name token, the SAE's own frozen (grow.ts); the grown SAE is written to `out`/sae. */
  grow?: boolean;
  /**
   * With grown latents, what the SAE's own latents selected for a concept that also got grown ones do:
   * 'edit' (default) deactivate with them when the gate erases, the gate scoring the grown ones only;
   * 'gate' erase and score both (the plain ItD rule); 'drop' not used at all.
   */
  oldLatents?: OldLatents;
  layer?: number;
  latents?: number;
  k?: number;
  /** Training tokens upper bound (default: width-scaled, stopping at convergence). */
  tokens?: number;
  /** Times the concept build prompts repeat in the SAE's training data. */
  oversample?: number;
  seed?: number;
  /** Keep a poor SAE or a degenerate threshold (they are returned with warnings). */
  force?: boolean;
  progress?: ProgressFactory;
  log?: (line: string) => void;
}

/**
 * scale -16, not the official -8: create edits grown latents only (one per name token), and at -8
 * one concept of ten (Anjelica Huston) stayed identifiable after erasure on the sink model; -16
 * gave Acc_e 0.100 -> 0.033 there and 0.083 -> 0 zero-shot without the sink, with Acc_r 1.0 and the
 * gate unchanged (BENCHMARKS.md, issue 10, session 4). Passed prompts never see the scale.
 */
export const CREATE_DEFAULTS = {
  fpr: 0.01, confidence: 0.95, perConcept: 'target' as PerConceptRule, kSel: 64, scale: -16, mode: 'official' as EraseMode, scoreStat: 'max' as ScoreStat,
  maxNeutralRate: 0.01, span: 'name' as SelectSpan, grow: true, oldLatents: 'edit' as OldLatents, layer: 8, latents: 16384, k: 32, oversample: 20, seed: 0,
};

export interface CreateSummary {
  sae: { id: string; trained: boolean; grown: number; fvu?: number; deadFraction?: number; steps?: number; tokens?: number; converged?: boolean };
  /** threshold: the concept's own (per-concept thresholds), else the shared one. */
  /** features: scored by the gate (and erased); editOnly: erased only (CreateOptions.oldLatents 'edit'). */
  concepts: { name: string; features: number; editOnly: number; removedByRetain: number; removedAsCommon: number; heldoutTpr: number; threshold: number }[];
  threshold: number;
  /** guarantee: what the calibration promises, in words. */
  calibration: { fpr: number; tpr: number; auroc: number; neutral: number; perConcept: PerConceptRule; guarantee: string };
  heldout: { tpr: number; fprNeutral: number; fprRetained: number | null; auroc: number; targetPrompts: number; neutralPrompts: number };
  warnings: string[];
  seconds: number;
}

export interface CreateResult {
  spec: EraserSpec;
  sae: Sae;
  summary: CreateSummary;
}

/** Splits the neutral prompts into the select / calibrate / evaluate slices. */
export function neutralSlices(neutral: string[]): { select: string[]; calibrate: string[]; evaluate: string[] } {
  if (neutral.length < MIN_NEUTRAL) {
    throw new ItdError('usage', `eraser create: ${neutral.length} neutral prompts, need at least ${MIN_NEUTRAL} (a quarter of them calibrates the gate's FPR)`, {
      field: 'neutral', hint: 'leave --neutral unset to use the bundled COCO captions, or give a larger file of unrelated captions',
    });
  }
  const a = neutral.length >> 1;
  const b = a + (neutral.length >> 2);
  return { select: neutral.slice(0, a), calibrate: neutral.slice(a, b), evaluate: neutral.slice(b) };
}

/** A concept's prompts from the templates, without those the tokenizer truncates; none left is an error. */
export function conceptPrompts(model: TextModel, name: string, templates: string[]): string[] {
  const all = expandConcept(name, templates);
  const kept = all.filter((p) => model.tokenizer.frame(p).truncated === 0);
  if (kept.length === 0) {
    throw new ItdError('usage', `concept '${name.slice(0, 60)}${name.length > 60 ? '...' : ''}' does not fit: all ${all.length} of its template prompts exceed ${model.tokenizer.maxLength} tokens`, {
      field: 'concept', hint: 'use a shorter concept name (the name of a person, style or object, not a description)',
    });
  }
  return kept;
}

export async function createEraser(model: TextModel, opts: CreateOptions): Promise<CreateResult> {
  const t0 = performance.now();
  const o = { ...CREATE_DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as typeof CREATE_DEFAULTS & CreateOptions;
  // Each stage line carries the elapsed time: where the minutes go is part of the progress report.
  const log = (line: string) => opts.log?.(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${line}`);
  if (o.concepts.length === 0) throw new ItdError('usage', 'eraser create: give at least one --concept', { field: 'concept' });
  if (!o.sae && !(Number.isInteger(o.k) && Number.isInteger(o.latents) && o.k >= 1 && o.k < o.latents)) {
    // Checked before collecting: the trainer would refuse it only after minutes of encoding.
    throw new ItdError('usage', `eraser create: an SAE of ${o.latents} latents with k ${o.k} active per token cannot be trained (need 1 <= k < latents)`, {
      field: 'latents', hint: `use --latents well above --k (default ${CREATE_DEFAULTS.latents} latents, k ${CREATE_DEFAULTS.k})`,
    });
  }
  const templates = o.templates ?? bundledTemplates();
  const slices = neutralSlices(o.neutral ?? bundledNeutralPrompts());
  const targets = o.concepts.map((name) => ({ name, prompts: conceptPrompts(model, name, templates.build) }));
  const retain = (o.retainConcepts ?? []).flatMap((name) => conceptPrompts(model, name, templates.build));
  const warnings: string[] = [];

  const trained = o.sae ? undefined : await trainSae(model, o, [...targets.flatMap((t) => t.prompts), ...retain], slices, warnings, log);
  let sae = o.sae?.sae ?? trained!.sae;
  let saeId = o.sae?.id ?? trained!.id;
  checkSaeForModel(sae, model);
  if (o.sae) warnings.push(...checkGivenSae(sae, o.force === true));
  let grown: GrownLatent[] = [];
  // The selection slice's block outputs, computed once: growing and selection both read them.
  log(`encode the ${slices.select.length} selection captions to block ${o.layer}`);
  const selectRows = await layerRows(model, o.layer, slices.select, 32, o.progress ? { factory: o.progress, label: 'encode captions' } : undefined);
  if (o.grow) {
    log(`grow the dictionary: one latent per name token of ${targets.length} concept(s), the SAE's ${sae.n} latents frozen`);
    ({ sae, id: saeId, grown } = await growInto(path.join(o.out, 'sae'), model, sae, o.layer, targets, selectRows, retain));
  }

  log(`select features for ${targets.length} concept(s) (K_sel ${o.kSel}; latents common in ${slices.select.length} neutral prompts excluded)`);
  let spec = await buildEraser(model, sae, {
    targets, retain, kSel: o.kSel, scale: o.scale, mode: o.mode, layer: o.layer, templates: templates.build, saeId,
    neutral: { prompts: slices.select, maxRate: o.maxNeutralRate, rows: selectRows }, scoreStat: o.scoreStat, span: o.span,
  });
  if (grown.length > 0 && o.oldLatents !== 'gate') spec = gateOnGrown(spec, grown, o.oldLatents);
  const eraser = await ConceptEraser.load({ model, sae, eraser: spec, saeId });
  try {
    log(`calibrate for FPR ${o.fpr} on ${slices.calibrate.length} neutral prompts not used for selection`);
    const goal = { fpr: o.fpr, ...(o.confidence > 0 ? { confidence: o.confidence } : {}) };
    const cal = await calibrateEraser(eraser, goal, { other: slices.calibrate, perConcept: o.perConcept, ...(o.force !== undefined ? { force: o.force } : {}) });
    warnings.push(...cal.warnings);
    spec = cal.spec;
    await eraser.update(spec);
    log(`evaluate on held-out templates (${templates.heldout.length}) and ${slices.evaluate.length} held-out neutral prompts`);
    const heldout = await evaluateHeldout(eraser, model, o.concepts, o.retainConcepts ?? [], templates.heldout, slices.evaluate);
    const summary: CreateSummary = {
      sae: { id: saeId, trained: !o.sae, grown: grown.length, ...(trained ? trained.stats : {}) },
      concepts: spec.concepts.map((c, i) => ({
        name: c.name, features: c.features.length, editOnly: c.editOnly?.length ?? 0, removedByRetain: c.removedByRetain.length, removedAsCommon: c.removedAsCommon?.length ?? 0, heldoutTpr: heldout.perConcept[i]!,
        threshold: conceptThreshold(spec, c) ?? NaN,
      })),
      threshold: spec.threshold!,
      calibration: {
        fpr: cal.choice.fpr, tpr: cal.choice.tpr, auroc: cal.choice.auroc, neutral: slices.calibrate.length, perConcept: o.perConcept,
        guarantee: guarantee(goal, cal.choice.guaranteed, slices.calibrate.length),
      },
      heldout: heldout.totals,
      warnings,
      seconds: (performance.now() - t0) / 1000,
    };
    if (heldout.totals.tpr < 0.9) warnings.push(`held-out TPR ${heldout.totals.tpr.toFixed(3)}: the eraser misses prompts it was not built from; add templates (--templates) or train the SAE with these concepts (no --sae)`);
    return { spec, sae, summary };
  } finally {
    await eraser.release();
  }
}

/** What the calibration promises, for the summary. */
function guarantee(goal: { fpr: number; confidence?: number }, guaranteed: boolean | undefined, n: number): string {
  if (goal.confidence === undefined) return `FPR <= ${goal.fpr} on the ${n} calibration captions (the empirical quantile: fresh captions can exceed it by sampling)`;
  if (!guaranteed) return `none: ${n} calibration captions cannot bound an FPR of ${goal.fpr} at confidence ${goal.confidence}; the threshold sits above all of them`;
  return `FPR <= ${goal.fpr} on fresh captions like the ${n} calibration ones, with confidence ${goal.confidence} (exact binomial upper bound; captions only, not other people's names)`;
}

/**
 * For each concept with grown latents (that survived retain subtraction), the gate scores those
 * only: the old latents that reconstruct an unseen name also fire on ordinary captions and only
 * add noise to the score (zero-shot TPR 0.12-0.32 with them). 'edit' keeps the old ones as
 * edit-only latents: without the attention sink a seen name's identity also sits in them, and the
 * grown latents alone left it identifiable (BENCHMARKS.md, issue 10, session 5).
 */
function gateOnGrown(spec: EraserSpec, grown: GrownLatent[], old: 'edit' | 'drop'): EraserSpec {
  const concepts = spec.concepts.map((c) => {
    const own = new Set(grown.filter((g) => g.concept === c.name).map((g) => g.latent));
    const kept = c.features.filter((f) => own.has(f.latent));
    if (kept.length === 0) return c;
    const rest = c.features.filter((f) => !own.has(f.latent));
    return { ...c, features: kept, ...(old === 'edit' && rest.length > 0 ? { editOnly: rest } : {}) };
  });
  return { ...spec, concepts };
}

export interface AddGrownOptions {
  concepts: { name: string; prompts: string[] }[];
  /** Where the grown SAE is written (it may be the directory `sae` came from: every old latent is kept). */
  saeOut: string;
  /** Captions split as create splits them (default: the bundled COCO ones): the selection slice bounds the grown latents, the calibration slice recalibrates. */
  neutral?: string[];
  progress?: ProgressFactory;
}

export interface AddGrownResult {
  spec: EraserSpec;
  sae: Sae;
  grown: GrownLatent[];
  /** Whether the threshold was recalibrated (an FPR-calibrated eraser) or only marked stale. */
  recalibrated: boolean;
  warnings: string[];
}

/**
 * Zero-shot `eraser add`: grows one latent per name token of each new concept (every SAE latent
 * frozen, so the existing concepts' latents and scores do not move), selects its features on the
 * grown SAE against the eraser's retain set, and gates it on its grown latents with the SAE's own
 * selected ones edit-only, as create does. An eraser create calibrated for an FPR is
 * recalibrated for the same goal on the captions' calibration slice, so the bound covers the new
 * concepts too; otherwise a per-concept gate gives each new concept the 'target' rule's norm (it
 * erases under the existing threshold at once) and the calibration is marked stale.
 */
export async function addConceptsGrown(model: TextModel, sae: Sae, spec: EraserSpec, opts: AddGrownOptions): Promise<AddGrownResult> {
  const slices = neutralSlices(opts.neutral ?? bundledNeutralPrompts());
  const neutral = await layerRows(model, spec.layer, slices.select, 32, opts.progress ? { factory: opts.progress, label: 'encode captions' } : undefined);
  const g = await growInto(opts.saeOut, model, sae, spec.layer, opts.concepts, neutral, spec.retain.prompts);
  let out: EraserSpec = { ...spec, saeId: g.id };
  for (const c of opts.concepts) out = await addConcept(out, model, g.sae, c.name, c.prompts);
  out = gateOnGrown(out, g.grown, 'edit');
  const eraser = await ConceptEraser.load({ model, sae: g.sae, eraser: out });
  try {
    const cal = spec.calibration;
    if (cal?.method === 'fpr' && spec.neutral) { // create's: calibrated on captions' slices like these
      const goal = { fpr: cal.target, ...(cal.confidence !== undefined ? { confidence: cal.confidence } : {}) };
      const r = await calibrateEraser(eraser, goal, { other: slices.calibrate, perConcept: perConceptGate(out) ? 'target' : 'none' });
      return { spec: r.spec, sae: g.sae, grown: g.grown, recalibrated: true, warnings: r.warnings };
    }
    if (perConceptGate(out)) {
      const norms = new Map<string, number>();
      for (const c of opts.concepts) norms.set(c.name, targetNorm(c.name, await eraser.classify(c.prompts)));
      out = { ...out, concepts: out.concepts.map((c) => (Number.isFinite(norms.get(c.name)) ? { ...c, scoreNorm: norms.get(c.name)! } : c)) };
    }
    return { spec: out, sae: g.sae, grown: g.grown, recalibrated: false, warnings: [] };
  } finally {
    await eraser.release();
  }
}

/** growSae (neutral rows given, retained prompts encoded here), the grown SAE saved to `dir`, and its identity. */
async function growInto(dir: string, model: TextModel, sae: Sae, layer: number, concepts: { name: string; prompts: string[] }[], neutral: LayerRows, retained: string[]) {
  const g = await growSae(model, sae, layer, concepts, neutral, retained.length ? await layerRows(model, layer, retained) : undefined);
  saveSae(dir, g.sae);
  return { sae: g.sae, id: saeIdentity(dir), grown: g.grown };
}

/** Collects the SAE's training data into `out`/acts, trains to convergence, saves `out`/sae. */
async function trainSae(model: TextModel, o: typeof CREATE_DEFAULTS & CreateOptions, conceptPromptsAll: string[], slices: ReturnType<typeof neutralSlices>, warnings: string[], log: (l: string) => void) {
  const acts = path.join(o.out, 'acts');
  const prompts = [...Array.from({ length: o.oversample }, () => conceptPromptsAll).flat(), ...slices.select, ...slices.calibrate];
  log(`collect layer ${o.layer} on ${prompts.length} prompts (${slices.select.length + slices.calibrate.length} neutral, concept prompts x${o.oversample})`);
  await collectActivations(model, { out: acts, layer: o.layer, prompts, dtype: 'F16', force: true, ...(o.progress ? { progress: o.progress } : {}) });
  const data = openActivations(acts);
  try {
    log(`train a ${o.latents}-latent TopK SAE (k ${o.k}) on ${data.rows} tokens until the loss flattens`);
    // bench:erase's recipe: smaller batches, twice sparsify's learning rate (more, faster steps on little data).
    const fit = await fitSae(data, { latents: o.latents, k: o.k, seed: o.seed, batch: 1024, lr: 4e-4 / Math.sqrt(o.latents / 2 ** 14), ...(o.tokens ? { tokens: o.tokens } : {}) }, {
      provenance: { layer: o.layer, hookpoint: model.hookpoint(o.layer), model_id: model.id },
      ...(o.progress ? { progress: o.progress } : {}),
      onLog: (l) => log(`  step ${l.step}  tokens ${l.tokens}  FVU ${l.fvu.toFixed(4)}  dead ${(100 * l.deadFraction).toFixed(1)}%`),
    });
    const stats = { fvu: fit.fvu, deadFraction: fit.deadFraction, steps: fit.steps, tokens: fit.tokens, converged: fit.converged };
    fit.sae.cfg.training = { tokens: fit.tokens, steps: fit.steps, fvu: fit.fvu, dead_fraction: fit.deadFraction, converged: fit.converged, seed: o.seed };
    const problems = saeWarnings({ fvu: fit.fvu, deadFraction: fit.deadFraction, tokens: fit.tokens, latents: o.latents });
    const unusable = fit.fvu > MAX_USABLE_FVU || fit.deadFraction > MAX_USABLE_DEAD;
    if (unusable && !o.force) {
      throw new ItdError('quality', `the trained SAE is not usable: ${problems.join('; ')}`, { field: 'sae', hint: 'use fewer --latents, more --tokens, or --force to keep it' });
    }
    warnings.push(...problems);
    const dir = path.join(o.out, 'sae');
    saveSae(dir, fit.sae);
    return { sae: fit.sae, id: saeIdentity(dir), stats };
  } finally {
    data.close();
    fs.rmSync(acts, { recursive: true, force: true });
  }
}

/** What the given SAE's own training record says about it: unusable is an error unless `force`. */
function checkGivenSae(sae: Sae, force: boolean): string[] {
  const t = sae.cfg.training as { fvu?: number; dead_fraction?: number; tokens?: number } | undefined;
  if (!t || typeof t.fvu !== 'number') return [];
  const problems = saeWarnings({ fvu: t.fvu, deadFraction: t.dead_fraction ?? 0, tokens: t.tokens ?? Infinity, latents: sae.n });
  if (!force && (t.fvu > MAX_USABLE_FVU || (t.dead_fraction ?? 0) > MAX_USABLE_DEAD)) {
    throw new ItdError('quality', `the given SAE is not usable: ${problems.join('; ')}`, { field: 'sae', hint: 'train it longer (itd train without --tokens), let eraser create train one (no --sae), or pass --force' });
  }
  return problems.map((w) => `the given SAE: ${w}`);
}

/** TPR on the held-out templates (overall and per concept), FPR on held-out neutral and retained prompts. */
async function evaluateHeldout(eraser: ConceptEraser, model: TextModel, concepts: string[], retained: string[], heldout: string[], neutral: string[]) {
  const score = async (ps: string[]) => (ps.length ? (await eraser.classify(ps)).map((d) => d.score) : []);
  const th = eraser.spec.threshold!;
  const perConceptScores = [];
  for (const c of concepts) perConceptScores.push(await score(expandConcept(c, heldout).filter((p) => model.tokenizer.frame(p).truncated === 0)));
  const target = perConceptScores.flat();
  const neutralScores = await score(neutral);
  const retainedScores = await score(retained.flatMap((c) => expandConcept(c, heldout)));
  return {
    perConcept: perConceptScores.map((s) => rate(s, th)),
    totals: {
      tpr: rate(target, th), fprNeutral: rate(neutralScores, th), fprRetained: retainedScores.length ? rate(retainedScores, th) : null,
      auroc: auroc(target, neutralScores), targetPrompts: target.length, neutralPrompts: neutral.length,
    },
  };
}
