/** Worst per-row cosine similarity of two [rows, D] arrays (how far a reduced-precision run strays per token). */
export function minRowCosine(a: Float32Array, b: Float32Array, D: number): number {
  let worst = 1;
  for (let r = 0; r < a.length / D; r++) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let d = r * D; d < (r + 1) * D; d++) {
      dot += a[d]! * b[d]!;
      na += a[d]! * a[d]!;
      nb += b[d]! * b[d]!;
    }
    worst = Math.min(worst, dot / Math.sqrt(na * nb));
  }
  return worst;
}
