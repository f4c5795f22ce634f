/** Calibrating an eraser's gate: score target and other prompts, choose the threshold, record how. */
import type { ConceptEraser } from '../erase/index.js';
import type { EraserSpec } from '../select/eraser-file.js';
import { calibrateThreshold, type ThresholdChoice } from './calibrate.js';

export type CalibrationGoal = { recall: number } | { fpr: number };

/** Prompts of the concepts that kept features (the others cannot be erased and would drag a recall threshold to 0). */
export function erasablePrompts(spec: EraserSpec): string[] {
  return spec.concepts.filter((c) => c.features.length > 0).flatMap((c) => c.prompts);
}

/**
 * The eraser's spec with a threshold calibrated on these prompts (defaults: the erasable concepts'
 * prompts vs the eraser's retain prompts) and the calibration record; the eraser itself is unchanged.
 */
export async function calibrateEraser(
  eraser: ConceptEraser,
  goal: CalibrationGoal,
  prompts: { target?: string[]; other?: string[]; progress?: boolean } = {},
): Promise<{ spec: EraserSpec; choice: ThresholdChoice }> {
  const target = prompts.target ?? erasablePrompts(eraser.spec);
  const other = prompts.other ?? eraser.spec.retain.prompts;
  const score = async (ps: string[]) => (await eraser.classify(ps, { progress: prompts.progress === true && ps.length > 64 })).map((d) => d.score);
  const choice = calibrateThreshold(await score(target), await score(other), goal);
  const spec: EraserSpec = {
    ...eraser.spec,
    threshold: choice.threshold,
    calibration: {
      method: 'recall' in goal ? 'recall' : 'fpr', target: 'recall' in goal ? goal.recall : goal.fpr,
      auroc: choice.auroc, tpr: choice.tpr, fpr: choice.fpr, nTarget: target.length, nOther: other.length, date: new Date().toISOString(),
    },
  };
  return { spec, choice };
}
