/**
 * Threshold calibration for the erase gate. A prompt is erased iff score >= threshold, where a
 * target prompt is one whose deactivation changes it a lot (high score).
 *   recall r: the largest threshold that keeps >= r of the target scores (official ItD: r = 1,
 *             then x 0.99 for margin);  fpr f: the smallest threshold passing <= f of the others.
 *   fpr f with confidence c: the smallest threshold whose exact (Clopper-Pearson) one-sided c upper
 *             bound on the FPR is <= f, given the k of n others it erases: the largest k with
 *             P(Binomial(n, f) <= k) <= 1 - c. So, with probability >= c over the draw of the n
 *             others, the FPR on fresh prompts from the same distribution is <= f (n i.i.d.).
 *             When even k = 0 cannot show it (n < ln(1 - c) / ln(1 - f)), the cut sits above
 *             every other score and `guaranteed` is false.
 */
import { ItdError } from '../errors.js';

export interface ThresholdChoice {
  threshold: number;
  tpr: number; // fraction of target scores >= threshold
  fpr: number; // fraction of other scores >= threshold
  auroc: number;
  /** With a confidence goal: whether n was large enough for the bound (see the module comment). */
  guaranteed?: boolean;
}

export type ThresholdGoal = { recall: number } | { fpr: number; confidence?: number };

export function calibrateThreshold(target: ArrayLike<number>, other: ArrayLike<number>, want: ThresholdGoal): ThresholdChoice {
  if (target.length === 0) throw new ItdError('usage', 'calibrate: no target prompts', { field: 'target' });
  if (other.length === 0) throw new ItdError('usage', 'calibrate: no retain/neutral prompts', { field: 'retain' });
  let threshold: number;
  let guaranteed: boolean | undefined;
  if ('recall' in want) {
    if (!(want.recall > 0 && want.recall <= 1)) throw new ItdError('usage', `calibrate: recall must be in (0, 1], got ${want.recall}`, { field: 'recall' });
    const t = Float64Array.from(target).sort(); // ascending
    const keep = Math.ceil(want.recall * t.length); // number of targets that must pass
    const cut = t[t.length - keep]!;
    threshold = cut > 0 ? cut * 0.99 : cut - 1e-12; // margin as the official code, below the weakest kept target
  } else {
    if (!(want.fpr >= 0 && want.fpr < 1)) throw new ItdError('usage', `calibrate: fpr must be in [0, 1), got ${want.fpr}`, { field: 'fpr' });
    const o = Float64Array.from(other).sort((a, b) => b - a); // descending
    const c = want.confidence;
    if (c !== undefined && !(c > 0 && c < 1)) throw new ItdError('usage', `calibrate: confidence must be in (0, 1), got ${c}`, { field: 'confidence' });
    const bounded = c === undefined ? undefined : boundedErrors(o.length, want.fpr, 1 - c);
    if (bounded !== undefined) guaranteed = bounded >= 0;
    const allowed = bounded === undefined ? Math.floor(want.fpr * o.length) : Math.max(0, bounded); // others allowed at or above the threshold
    threshold = allowed >= o.length ? -Infinity : nextUp(o[allowed]!);
  }
  return { threshold, tpr: rate(target, threshold), fpr: rate(other, threshold), auroc: auroc(target, other), ...(guaranteed !== undefined ? { guaranteed } : {}) };
}

/** The largest k with P(Binomial(n, p) <= k) <= alpha (-1 when none: even k = 0 is too likely under p). */
export function boundedErrors(n: number, p: number, alpha: number): number {
  if (p <= 0) return -1;
  if (p >= 1) return n;
  // Binomial pmf in log space, term by term: pmf(k+1) = pmf(k) (n-k)/(k+1) p/(1-p).
  let logPmf = n * Math.log1p(-p);
  let cdf = Math.exp(logPmf);
  let k = -1;
  for (let i = 0; i <= n && cdf <= alpha; i++) {
    k = i;
    logPmf += Math.log((n - i) / (i + 1)) + Math.log(p / (1 - p));
    cdf += Math.exp(logPmf);
  }
  return k;
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
