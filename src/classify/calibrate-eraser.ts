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
export function thresholdProblems(c: ThresholdChoice, goal: CalibrationGoal): { refuse: string[]; warn: string[] } {
  const refuse: string[] = [];
  const warn: string[] = [];
  if (!(c.threshold > 0)) refuse.push(`threshold ${c.threshold} <= 0 erases every prompt on which any selected latent fires, or all of them`);
  if (c.fpr >= MAX_FPR) refuse.push(`it erases ${(100 * c.fpr).toFixed(1)}% of the non-target prompts`);
  if (c.auroc < MIN_AUROC) refuse.push(`AUROC ${c.auroc.toFixed(3)}: the gate's scores barely separate targets from other prompts`);
  if ('recall' in goal && c.fpr > 0.05) warn.push(`FPR ${c.fpr.toFixed(3)} on the non-target prompts at recall ${goal.recall}`);
  if ('fpr' in goal && c.tpr < 0.9) warn.push(`TPR ${c.tpr.toFixed(3)} on the target prompts at FPR ${goal.fpr}`);
  return { refuse, warn };
}

/**
 * The eraser's spec with a threshold calibrated on these prompts (defaults: the erasable concepts'
 * prompts vs the eraser's retain prompts) and the calibration record; the eraser itself is unchanged.
 * A degenerate threshold throws ItdError 'quality' unless `force`; then it comes back with `warnings`.
 */
export async function calibrateEraser(
  eraser: ConceptEraser,
  goal: CalibrationGoal,
  prompts: { target?: string[]; other?: string[]; progress?: boolean; force?: boolean } = {},
): Promise<{ spec: EraserSpec; choice: ThresholdChoice; warnings: string[] }> {
  const target = prompts.target ?? erasablePrompts(eraser.spec);
  const other = prompts.other ?? eraser.spec.retain.prompts;
  const score = async (ps: string[]) => (await eraser.classify(ps, { progress: prompts.progress === true && ps.length > 64 })).map((d) => d.score);
  const choice = calibrateThreshold(await score(target), await score(other), goal);
  const { refuse, warn } = thresholdProblems(choice, goal);
  if (refuse.length > 0 && !prompts.force) {
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
