/**
 * The sparse and elementwise parts of a training step. Two implementations share this interface:
 * the plain-JS reference below and the C addon in ./native (multi-threaded, built per ISA and
 * dispatched at run time), picked by ./native.ts. Both are deterministic: every output element is computed by one
 * thread in a fixed order, and reductions go through fixed-size chunks summed in chunk order, so the
 * thread count never changes a result. The native kernels return promises (they run off the JS
 * thread); callers await every call.
 *
 * Sparse codes come as CSR by row (rowPtr, lat, val: decode) and CSR by latent (colPtr, colRow,
 * colVal: backward, rows ascending within a latent). Only entries with val > 0 are stored, so the
 * ReLU mask of the backward pass is implicit.
 */

/** Latents per reduction chunk of the backward pass (fixed, so sums never depend on threads). */
export const LATENT_CHUNK = 256;

export interface DecodeArgs {
  B: number;
  D: number;
  x: Float32Array; // [B, D]
  bPre: Float32Array; // [D]
  wDec: Float32Array; // [n, D]
  rowPtr: Int32Array; // [B + 1]
  lat: Int32Array; // [nnz]
  val: Float32Array; // [nnz]
  /** g = gScale (x_hat - x). */
  gScale: number;
  xc: Float32Array; // out [B, D]: x - b_pre
  g: Float32Array; // out [B, D]
  rowErr: Float64Array; // out [B]: ||x_hat - x||^2
}

export interface AdamArgs {
  mWEnc: Float32Array; vWEnc: Float32Array; // [n, D]
  mBEnc: Float32Array; vBEnc: Float32Array; // [n]
  mWDec: Float32Array; vWDec: Float32Array; // [n, D]
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Bias corrections 1 - beta^t. */
  bc1: number;
  bc2: number;
}

export interface BackwardArgs {
  n: number;
  D: number;
  wEnc: Float32Array; // [n, D] in/out
  bEnc: Float32Array; // [n] in/out
  wDec: Float32Array; // [n, D] in/out
  xc: Float32Array; // [B, D]
  g: Float32Array; // [B, D]
  colPtr: Int32Array; // [n + 1]
  colRow: Int32Array; // [nnz]
  colVal: Float32Array; // [nnz]
  /** Latent j's row in the aux gradients, or -1. */
  auxSlot: Int32Array; // [n]
  auxWEnc: Float32Array; // [m, D]
  auxBEnc: Float32Array; // [m]
  auxWDec: Float32Array; // [m, D]
  /** out [ceil(n / LATENT_CHUNK), D]: per chunk, -sum_j dL/db_enc[j] W_enc[j] (b_pre's encoder-side gradient). */
  dbPre: Float64Array;
  /** Apply Adam (decoder gradient projected off its row first, row renormalised after)... */
  adam?: AdamArgs;
  /** ...or store the raw gradients here and leave the weights alone (gradient checks). */
  grads?: { wEnc: Float32Array; bEnc: Float32Array; wDec: Float32Array };
}

export interface EncodeTopKArgs {
  B: number;
  D: number;
  n: number;
  k: number;
  x: Float32Array; // [B, D]
  bPre: Float32Array; // [D]
  wEnc: Float32Array; // [n, D]
  bEnc: Float32Array; // [n]
  values: Float32Array; // out [B, k]: ReLU'd, descending
  indices: Int32Array; // out [B, k]
}

/** AuxK over m dead latents, their rows gathered (see auxKGraph in ./graphs.ts for the maths). */
export interface AuxKArgs {
  B: number;
  D: number;
  m: number;
  /** kAux, at most m. */
  k: number;
  xc: Float32Array; // [B, D]
  g: Float32Array; // [B, D]: the main gradient; the residual is r = rScale g
  we: Float32Array; // [m, D]
  be: Float32Array; // [m]
  wd: Float32Array; // [m, D]
  rScale: number;
  /** 2 auxCoef / V_r. */
  cAux: number;
  dWe: Float32Array; // out [m, D]
  dBe: Float32Array; // out [m]
  dWd: Float32Array; // out [m, D]
  sqErr: Float64Array; // out [1]: ||e_hat - r||^2
}

export interface Kernels {
  readonly name: string;
  /** The instruction set the native kernels run (avx512, avx2, generic); absent for JS. */
  readonly isa?: string;
  /**
   * TopK_k(W_enc (x - b_pre) + b_enc) per row without materialising [B, n] (fused GEMM + selection).
   * Optional: without it the trainer runs onnxruntime's Gemm + TopK.
   */
  encodeTopK?(a: EncodeTopKArgs): void | Promise<void>;
  /** AuxK gradients of the dead latents. Optional: without it the trainer runs onnxruntime's auxKGraph. */
  auxK?(a: AuxKArgs): void | Promise<void>;
  /** Column sums (f64) and the total sum of squares of a [B, D] matrix. */
  colStats(x: Float32Array, B: number, D: number): { sum: Float64Array; sumSq: number };
  /** Per row: xc = x - b_pre, x_hat = b_pre + sum val W_dec[lat], g = gScale (x_hat - x), rowErr = ||x_hat - x||^2. */
  decode(a: DecodeArgs): void | Promise<void>;
  /**
   * Per latent j (dz_bj = W_dec[j] . g_b for each row b where j fired with value z_bj):
   *   dW_dec[j] = sum_b z_bj g_b        dW_enc[j] = sum_b dz_bj xc_b        db_enc[j] = sum_b dz_bj
   * plus the AuxK gradients of dead latents, then Adam (or storing the gradients).
   */
  backward(a: BackwardArgs): void | Promise<void>;
}

export const jsKernels: Kernels = {
  name: 'js',

  colStats(x, B, D) {
    const sum = new Float64Array(D);
    let sumSq = 0;
    for (let b = 0; b < B; b++) {
      const o = b * D;
      for (let t = 0; t < D; t++) {
        const v = x[o + t]!;
        sum[t]! += v;
        sumSq += v * v;
      }
    }
    return { sum, sumSq };
  },

  decode(a) {
    const { B, D, x, bPre, wDec, rowPtr, lat, val, gScale, xc, g, rowErr } = a;
    const acc = new Float64Array(D);
    for (let b = 0; b < B; b++) {
      const o = b * D;
      for (let t = 0; t < D; t++) acc[t] = bPre[t]!;
      for (let p = rowPtr[b]!; p < rowPtr[b + 1]!; p++) {
        const z = val[p]!;
        const w = lat[p]! * D;
        for (let t = 0; t < D; t++) acc[t]! += z * wDec[w + t]!;
      }
      let err = 0;
      for (let t = 0; t < D; t++) {
        const e = Math.fround(acc[t]!) - x[o + t]!;
        err += e * e;
        g[o + t] = gScale * e;
        xc[o + t] = x[o + t]! - bPre[t]!;
      }
      rowErr[b] = err;
    }
  },

  backward(a) {
    const { n, D, wEnc, bEnc, wDec, xc, g, colPtr, colRow, colVal, auxSlot, auxWEnc, auxBEnc, auxWDec, dbPre } = a;
    const gDec = new Float64Array(D);
    const gEnc = new Float64Array(D);
    dbPre.fill(0);
    for (let j = 0; j < n; j++) {
      const w = j * D;
      gDec.fill(0);
      gEnc.fill(0);
      let gB = 0;
      for (let p = colPtr[j]!; p < colPtr[j + 1]!; p++) {
        const r = colRow[p]! * D;
        const z = colVal[p]!;
        let dz = 0;
        for (let t = 0; t < D; t++) dz += wDec[w + t]! * g[r + t]!;
        for (let t = 0; t < D; t++) {
          gDec[t]! += z * g[r + t]!;
          gEnc[t]! += dz * xc[r + t]!;
        }
        gB += dz;
      }
      const s = auxSlot[j]!;
      if (s >= 0) {
        for (let t = 0; t < D; t++) {
          gDec[t]! += auxWDec[s * D + t]!;
          gEnc[t]! += auxWEnc[s * D + t]!;
        }
        gB += auxBEnc[s]!;
      }
      const chunk = Math.floor(j / LATENT_CHUNK) * D;
      for (let t = 0; t < D; t++) dbPre[chunk + t]! -= gB * wEnc[w + t]!;
      if (a.grads) {
        for (let t = 0; t < D; t++) {
          a.grads.wDec[w + t] = gDec[t]!;
          a.grads.wEnc[w + t] = gEnc[t]!;
        }
        a.grads.bEnc[j] = gB;
      } else if (a.adam) {
        adamDecoderRow(a.adam, wDec, gDec, w, D);
        adamRow(wEnc, a.adam.mWEnc, a.adam.vWEnc, gEnc, w, D, a.adam);
        bEnc[j] = adamScalar(bEnc[j]!, a.adam.mBEnc, a.adam.vBEnc, j, gB, a.adam);
      }
    }
  },
};

/**
 * Decoder row j: g <- g - (g . w) w (keeps the step tangent to the unit sphere), Adam, then
 * w <- w / ||w||.
 */
function adamDecoderRow(h: AdamArgs, wDec: Float32Array, gDec: Float64Array, w: number, D: number): void {
  let dot = 0;
  for (let t = 0; t < D; t++) dot += gDec[t]! * wDec[w + t]!;
  for (let t = 0; t < D; t++) gDec[t]! -= dot * wDec[w + t]!;
  adamRow(wDec, h.mWDec, h.vWDec, gDec, w, D, h);
  let ss = 0;
  for (let t = 0; t < D; t++) ss += wDec[w + t]! * wDec[w + t]!;
  const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
  for (let t = 0; t < D; t++) wDec[w + t]! *= inv;
}

/** PyTorch Adam on p[o, o + len): m, v EMAs; p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps). */
export function adamRow(p: Float32Array, m: Float32Array, v: Float32Array, grad: ArrayLike<number>, o: number, len: number, h: AdamArgs): void {
  for (let t = 0; t < len; t++) p[o + t] = adamScalar(p[o + t]!, m, v, o + t, grad[t]!, h);
}

function adamScalar(p: number, m: Float32Array, v: Float32Array, i: number, grad: number, h: AdamArgs): number {
  const mi = (m[i] = h.beta1 * m[i]! + (1 - h.beta1) * grad);
  const vi = (v[i] = h.beta2 * v[i]! + (1 - h.beta2) * grad * grad);
  return p - (h.lr / h.bc1) * (mi / (Math.sqrt(vi) / Math.sqrt(h.bc2) + h.eps));
}
