/** Calibrating an eraser's gate: score target and other prompts, choose the threshold, record how. */
import type { ConceptEraser, Decision } from '../erase/index.js';
import { ItdError } from '../errors.js';
import { perConceptGate, type EraserSpec } from '../select/eraser-file.js';
import { calibrateThreshold, type ThresholdChoice, type ThresholdGoal } from './calibrate.js';

export type CalibrationGoal = ThresholdGoal;

/**
 * How a multi-concept gate is thresholded: 'none' (one threshold on the score over the union of
 * every concept's features: the official rule), or per concept, each concept's own score divided
 * by its scoreNorm with one threshold on the largest ratio, calibrated jointly (so the FPR goal
 * holds for the union): 'target' = the median of the concept's own score on its own prompts,
 * 'neutral' = the concept's own threshold at FPR goal / C on the other prompts (split budget).
 */
export type PerConceptRule = 'none' | 'target' | 'neutral';

/** Prompts of the concepts that kept features (the others cannot be erased and would drag a recall threshold to 0). */
export function erasablePrompts(spec: EraserSpec): string[] {
  return spec.concepts.filter((c) => c.features.length > 0).flatMap((c) => c.prompts);
}

/** Fewest prompts per side a threshold is calibrated on unless forced: one prompt fixes the cut by itself, not the score distribution. */
export const MIN_CALIBRATION_PROMPTS = 2;

/** Refuses, unless `force`, a calibration on too few target or other prompts (before anything is scored). */
export function checkCalibration(nTarget: number, nOther: number, force: boolean): void {
  if (force) return;
  const hint = 'give more prompts, or force it (--force / "force": true)';
  for (const [n, field] of [[nTarget, 'target'], [nOther, 'other']] as const) {
    if (n < MIN_CALIBRATION_PROMPTS) throw new ItdError('quality', `calibration needs at least ${MIN_CALIBRATION_PROMPTS} ${field} prompts, got ${n}`, { field, hint });
  }
}

/** A threshold is refused below this AUROC: the scores do not separate targets from the rest. */
export const MIN_AUROC = 0.6;
/** ... or when it erases at least this share of the non-target prompts. */
export const MAX_FPR = 0.5;

const FIX = 'calibrate for a false-positive rate on neutral prompts (--fpr 0.01 with --retain CAPTIONS.txt), ' +
  'use a better-trained SAE (`itd eraser create` trains one to convergence), or pass --force to keep this threshold anyway';

/**
 * What is wrong with a calibrated threshold: `refuse` makes it unusable (it erases everything, or
 * the scores carry no signal), `warn` makes it poor but usable. Empty lists: a sound threshold.
 */
export function thresholdProblems(c: ThresholdChoice, goal: CalibrationGoal, nOther?: number): { refuse: string[]; warn: string[] } {
  const refuse: string[] = [];
  const warn: string[] = [];
  if (!(c.threshold > 0)) refuse.push(`threshold ${c.threshold} <= 0 erases every prompt on which any selected latent fires, or all of them`);
  if (c.fpr === 1) refuse.push(`it erases all ${nOther === undefined ? '' : `${nOther} `}other prompts (FPR 1): the gate would erase every prompt`);
  else if (c.fpr >= MAX_FPR) refuse.push(`it erases ${(100 * c.fpr).toFixed(1)}% of the non-target prompts`);
  if (c.auroc < MIN_AUROC) refuse.push(`AUROC ${c.auroc.toFixed(3)}: the gate's scores barely separate targets from other prompts`);
  if ('recall' in goal && c.fpr > 0.05) warn.push(`FPR ${c.fpr.toFixed(3)} on the non-target prompts at recall ${goal.recall}`);
  if ('fpr' in goal && c.tpr < 0.9) warn.push(`TPR ${c.tpr.toFixed(3)} on the target prompts at FPR ${goal.fpr}`);
  return { refuse, warn };
}

/**
 * The eraser's spec with a threshold calibrated on these prompts (defaults: the erasable concepts'
 * prompts vs the eraser's retain prompts) and the calibration record; the eraser itself is unchanged.
 * Too few prompts or a degenerate threshold throw ItdError 'quality' unless `force`; a poor but usable one comes back with `warnings`.
 */
export async function calibrateEraser(
  eraser: ConceptEraser,
  goal: CalibrationGoal,
  prompts: { target?: string[]; other?: string[]; progress?: boolean; force?: boolean; perConcept?: PerConceptRule } = {},
): Promise<{ spec: EraserSpec; choice: ThresholdChoice; warnings: string[] }> {
  const target = prompts.target ?? erasablePrompts(eraser.spec);
  const other = prompts.other ?? eraser.spec.retain.prompts;
  const force = prompts.force === true;
  checkCalibration(target.length, other.length, force);
  const classify = (ps: string[]) => eraser.classify(ps, { progress: prompts.progress === true && ps.length > 64 });
  const [targetD, otherD] = [await classify(target), await classify(other)];
  const rule = prompts.perConcept ?? (perConceptGate(eraser.spec) ? 'target' : 'none');
  const norms = rule === 'none' ? undefined : await conceptNorms(eraser, rule, goal, prompts.target ? undefined : targetD, otherD, classify);
  // The score each prompt would get under these norms: the gate's own rule (eraser.ts decide).
  const score = (ds: Decision[]) => ds.map((d) => (norms ? Math.max(0, ...eraser.spec.concepts.map((c, j) => (d.conceptScores[c.name] ?? 0) / norms[j]!)) : d.score));
  const choice = calibrateThreshold(score(targetD), score(otherD), goal);
  const { refuse, warn } = thresholdProblems(choice, goal, other.length);
  if (norms?.some((n) => !Number.isFinite(n))) warn.push(`concept(s) ${eraser.spec.concepts.filter((_, j) => !Number.isFinite(norms[j]!)).map((c) => `'${c.name}'`).join(', ')} never score on their own prompts: they cannot be erased`);
  if (choice.guaranteed === false) warn.push(`${other.length} other prompts are too few to bound the FPR at ${'fpr' in goal ? goal.fpr : ''} with confidence ${'confidence' in goal ? goal.confidence : ''}: the threshold sits above every one of them`);
  if (refuse.length > 0 && !force) {
    throw new ItdError('quality', `calibration refused: ${refuse.join('; ')} (${target.length} target / ${other.length} other prompts)`, { field: 'threshold', hint: FIX });
  }
  const concepts = eraser.spec.concepts.map(({ scoreNorm: _, ...c }, j) => (norms && Number.isFinite(norms[j]!) ? { ...c, scoreNorm: norms[j]! } : c));
  const spec: EraserSpec = {
    ...eraser.spec,
    format: norms ? 'itd-eraser/2' : 'itd-eraser/1',
    concepts,
    threshold: choice.threshold,
    calibration: {
      method: 'recall' in goal ? 'recall' : 'fpr', target: 'recall' in goal ? goal.recall : goal.fpr,
      ...('confidence' in goal && goal.confidence !== undefined ? { confidence: goal.confidence, guaranteed: choice.guaranteed === true } : {}),
      auroc: choice.auroc, tpr: choice.tpr, fpr: choice.fpr, nTarget: target.length, nOther: other.length, date: new Date().toISOString(),
    },
  };
  return { spec, choice, warnings: [...refuse, ...warn] };
}

/**
 * Each concept's scoreNorm under `rule` (Infinity: the concept never scores on its own prompts).
 * `targetD`: decisions on the concatenated concept prompts (erasablePrompts order), when those were the target set.
 */
async function conceptNorms(eraser: ConceptEraser, rule: 'target' | 'neutral', goal: CalibrationGoal, targetD: Decision[] | undefined, otherD: Decision[], classify: (ps: string[]) => Promise<Decision[]>): Promise<number[]> {
  const concepts = eraser.spec.concepts;
  const erasable = concepts.filter((c) => c.features.length > 0);
  const own = new Map<string, Decision[]>();
  let at = 0;
  for (const c of erasable) own.set(c.name, targetD ? targetD.slice(at, (at += c.prompts.length)) : await classify(c.prompts));
  return concepts.map((c) => {
    const mid = targetNorm(c.name, own.get(c.name) ?? []);
    if (mid === Infinity || rule === 'target' || !('fpr' in goal)) return mid;
    // Split budget: this concept's own threshold at FPR goal/C, floored so a concept that never fires on the others keeps a finite scale.
    const alone = calibrateThreshold([mid], otherD.map((d) => d.conceptScores[c.name] ?? 0), { fpr: goal.fpr / erasable.length }).threshold;
    return Math.max(alone, 1e-3 * mid);
  });
}

/** The 'target' rule's scoreNorm: the median of the concept's own positive scores on its own prompts' decisions (Infinity: it never scores). */
export function targetNorm(name: string, own: Decision[]): number {
  const mid = median(own.map((d) => d.conceptScores[name] ?? 0).filter((v) => v > 0));
  return mid > 0 ? mid : Infinity;
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}
