/**
 * Threshold calibration for the erase gate. A prompt is erased iff score >= threshold, where a
 * target prompt is one whose deactivation changes it a lot (high score).
 *   recall r: the largest threshold that keeps >= r of the target scores (official ItD: r = 1,
 *             then x 0.99 for margin);  fpr f: the smallest threshold passing <= f of the others.
 */
import { ItdError } from '../errors.js';

export interface ThresholdChoice {
  threshold: number;
  tpr: number; // fraction of target scores >= threshold
  fpr: number; // fraction of other scores >= threshold
  auroc: number;
}

export function calibrateThreshold(target: ArrayLike<number>, other: ArrayLike<number>, want: { recall: number } | { fpr: number }): ThresholdChoice {
  if (target.length === 0) throw new ItdError('usage', 'calibrate: no target prompts', { field: 'target' });
  if (other.length === 0) throw new ItdError('usage', 'calibrate: no retain/neutral prompts', { field: 'retain' });
  let threshold: number;
  if ('recall' in want) {
    if (!(want.recall > 0 && want.recall <= 1)) throw new ItdError('usage', `calibrate: recall must be in (0, 1], got ${want.recall}`, { field: 'recall' });
    const t = Float64Array.from(target).sort(); // ascending
    const keep = Math.ceil(want.recall * t.length); // number of targets that must pass
    const cut = t[t.length - keep]!;
    threshold = cut > 0 ? cut * 0.99 : cut - 1e-12; // margin as the official code, below the weakest kept target
  } else {
    if (!(want.fpr >= 0 && want.fpr < 1)) throw new ItdError('usage', `calibrate: fpr must be in [0, 1), got ${want.fpr}`, { field: 'fpr' });
    const o = Float64Array.from(other).sort((a, b) => b - a); // descending
    const allowed = Math.floor(want.fpr * o.length); // others allowed at or above the threshold
    threshold = allowed >= o.length ? -Infinity : nextUp(o[allowed]!);
  }
  return { threshold, tpr: rate(target, threshold), fpr: rate(other, threshold), auroc: auroc(target, other) };
}

export function rate(scores: ArrayLike<number>, threshold: number): number {
  let k = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i]! >= threshold) k++;
  return scores.length === 0 ? 0 : k / scores.length;
}

/** P(target score > other score) + 0.5 P(tie): the Mann-Whitney statistic, O((n+m) log(n+m)). */
export function auroc(target: ArrayLike<number>, other: ArrayLike<number>): number {
  const all = [...Array.from(target, (s) => ({ s, t: 1 })), ...Array.from(other, (s) => ({ s, t: 0 }))].sort((a, b) => a.s - b.s);
  let rankSum = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j < all.length && all[j]!.s === all[i]!.s) j++;
    const avgRank = (i + 1 + j) / 2; // 1-based average rank of the tie group
    for (let q = i; q < j; q++) if (all[q]!.t === 1) rankSum += avgRank;
    i = j;
  }
  const n = target.length;
  const m = other.length;
  return (rankSum - (n * (n + 1)) / 2) / (n * m);
}

/** ROC points (fpr, tpr) for every distinct threshold, from (0,0) to (1,1). */
export function rocCurve(target: ArrayLike<number>, other: ArrayLike<number>): [number, number][] {
  const ths = [...new Set([...Array.from(target), ...Array.from(other)])].sort((a, b) => b - a);
  return [[0, 0], ...ths.map((t): [number, number] => [rate(other, t), rate(target, t)]), [1, 1]];
}

/** Smallest double strictly greater than x. */
function nextUp(x: number): number {
  if (x === 0) return Number.MIN_VALUE;
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, x);
  const bits = buf.getBigUint64(0);
  buf.setBigUint64(0, x > 0 ? bits + 1n : bits - 1n);
  return buf.getFloat64(0);
}
