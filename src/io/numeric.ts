/** Finiteness checks for loaded data: NaN/Inf in weights or activations poison every result downstream. */

/** Index of the first NaN or ±Inf in `a`, or -1. */
export function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (v - v !== 0) return i; // NaN - NaN and Inf - Inf are NaN; finite v gives 0
  }
  return -1;
}
