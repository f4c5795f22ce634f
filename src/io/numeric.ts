/** Finiteness checks for loaded data: NaN/Inf in weights or activations poison every result downstream. */

/**
 * Index of the first NaN or ±Inf in `a`, or -1. The common all-finite case is one branch-free pass
 * (v * 0 is 0 for finite v and NaN otherwise; four accumulators keep the adds independent), about
 * twice as fast as testing each element; only a poisoned array is scanned again to find the index.
 */
export function firstNonFinite(a: Float32Array): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const n4 = a.length - (a.length % 4);
  for (let i = 0; i < n4; i += 4) {
    s0 += a[i]! * 0;
    s1 += a[i + 1]! * 0;
    s2 += a[i + 2]! * 0;
    s3 += a[i + 3]! * 0;
  }
  for (let i = n4; i < a.length; i++) s0 += a[i]! * 0;
  if (s0 + s1 + s2 + s3 === 0) return -1;
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (v - v !== 0) return i;
  }
  return -1;
}
