/** Calibrating an eraser's gate: score target and other prompts, choose the threshold, record how. */
import type { ConceptEraser } from '../erase/index.js';
import { ItdError } from '../errors.js';
import type { EraserSpec } from '../select/eraser-file.js';
import { calibrateThreshold, type ThresholdChoice } from './calibrate.js';

export type CalibrationGoal = { recall: number } | { fpr: number };

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
  prompts: { target?: string[]; other?: string[]; progress?: boolean; force?: boolean } = {},
): Promise<{ spec: EraserSpec; choice: ThresholdChoice; warnings: string[] }> {
  const target = prompts.target ?? erasablePrompts(eraser.spec);
  const other = prompts.other ?? eraser.spec.retain.prompts;
  const force = prompts.force === true;
  checkCalibration(target.length, other.length, force);
  const score = async (ps: string[]) => (await eraser.classify(ps, { progress: prompts.progress === true && ps.length > 64 })).map((d) => d.score);
  const choice = calibrateThreshold(await score(target), await score(other), goal);
  const { refuse, warn } = thresholdProblems(choice, goal, other.length);
  if (refuse.length > 0 && !force) {
    throw new ItdError('quality', `calibration refused: ${refuse.join('; ')} (${target.length} target / ${other.length} other prompts)`, { field: 'threshold', hint: FIX });
  }
  const spec: EraserSpec = {
    ...eraser.spec,
    threshold: choice.threshold,
    calibration: {
      method: 'recall' in goal ? 'recall' : 'fpr', target: 'recall' in goal ? goal.recall : goal.fpr,
      auroc: choice.auroc, tpr: choice.tpr, fpr: choice.fpr, nTarget: target.length, nOther: other.length, date: new Date().toISOString(),
    },
  };
  return { spec, choice, warnings: [...refuse, ...warn] };
}
