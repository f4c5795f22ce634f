/**
 * Plain-TypeScript CLIP text forward in float64: the test oracle for the onnxruntime graphs.
 * Slow on purpose (no shared code with graph.ts beyond the weight reader); use on tiny models.
 */
import type { ClipTextConfig } from './config.js';
import type { BlockWeights, ClipWeightReader } from './weights.js';

/** Returns hidden_states[0..L] and last_hidden_state for one sequence of ids (length t). */
export function referenceForward(cfg: ClipTextConfig, reader: ClipWeightReader, ids: ArrayLike<number>): { hidden: Float64Array[]; last: Float64Array } {
  const { hiddenSize: D } = cfg;
  const t = ids.length;
  const emb = reader.embeddings();
  let x: Float64Array = new Float64Array(t * D);
  for (let p = 0; p < t; p++) for (let d = 0; d < D; d++) x[p * D + d] = emb.token[ids[p]! * D + d]! + emb.position[p * D + d]!;
  const hidden: Float64Array[] = [x];
  for (let i = 0; i < cfg.numLayers; i++) {
    x = block(cfg, reader.block(i), x, t);
    hidden.push(x);
  }
  const fin = reader.finalNorm();
  return { hidden, last: layerNorm(x, t, D, fin.w, fin.b, cfg.layerNormEps) };
}

function block(cfg: ClipTextConfig, w: BlockWeights, x: Float64Array, t: number): Float64Array {
  const { hiddenSize: D, numHeads: H, intermediateSize: I } = cfg;
  const hd = D / H;
  const a = layerNorm(x, t, D, w.ln1W, w.ln1B, cfg.layerNormEps);
  const q = linear(a, t, D, D, w.qW, w.qB).map((v) => v / Math.sqrt(hd));
  const k = linear(a, t, D, D, w.kW, w.kB);
  const v = linear(a, t, D, D, w.vW, w.vB);
  const ctx = new Float64Array(t * D);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < t; i++) {
      // Causal: position i attends to 0..i only.
      const s = new Float64Array(i + 1);
      for (let j = 0; j <= i; j++) {
        let dot = 0;
        for (let e = 0; e < hd; e++) dot += q[i * D + h * hd + e]! * k[j * D + h * hd + e]!;
        s[j] = dot;
      }
      const m = Math.max(...s);
      let z = 0;
      for (let j = 0; j <= i; j++) z += (s[j] = Math.exp(s[j]! - m));
      for (let j = 0; j <= i; j++) for (let e = 0; e < hd; e++) ctx[i * D + h * hd + e]! += (s[j]! / z) * v[j * D + h * hd + e]!;
    }
  }
  const attn = linear(ctx, t, D, D, w.outW, w.outB);
  const x1 = x.map((val, idx) => val + attn[idx]!);
  const m = layerNorm(x1, t, D, w.ln2W, w.ln2B, cfg.layerNormEps);
  const f = linear(linear(m, t, D, I, w.fc1W, w.fc1B).map((u) => act(cfg.hiddenAct, u)), t, I, D, w.fc2W, w.fc2B);
  return x1.map((val, idx) => val + f[idx]!);
}

/** y = x W^T + b with W in PyTorch [out, in] layout. */
function linear(x: Float64Array, t: number, din: number, dout: number, W: Float32Array, b: Float32Array): Float64Array {
  const y = new Float64Array(t * dout);
  for (let p = 0; p < t; p++) {
    for (let o = 0; o < dout; o++) {
      let s = b[o]!;
      for (let i = 0; i < din; i++) s += x[p * din + i]! * W[o * din + i]!;
      y[p * dout + o] = s;
    }
  }
  return y;
}

function layerNorm(x: Float64Array, t: number, D: number, w: Float32Array, b: Float32Array, eps: number): Float64Array {
  const y = new Float64Array(t * D);
  for (let p = 0; p < t; p++) {
    let mean = 0;
    for (let d = 0; d < D; d++) mean += x[p * D + d]!;
    mean /= D;
    let v = 0;
    for (let d = 0; d < D; d++) v += (x[p * D + d]! - mean) ** 2;
    const inv = 1 / Math.sqrt(v / D + eps);
    for (let d = 0; d < D; d++) y[p * D + d] = (x[p * D + d]! - mean) * inv * w[d]! + b[d]!;
  }
  return y;
}

function act(kind: ClipTextConfig['hiddenAct'], u: number): number {
  if (kind === 'quick_gelu') return u / (1 + Math.exp(-1.702 * u));
  if (kind === 'gelu') return 0.5 * u * (1 + erf(u / Math.SQRT2));
  return 0.5 * u * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (u + 0.044715 * u ** 3)));
}

/** erf to ~1e-15 via its Taylor series (|x| < 3) or the continued-fraction tail. */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 100 && Math.abs(term) > 1e-17; n++) {
      term *= (-ax * ax) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + n / 2 / f;
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f);
}
