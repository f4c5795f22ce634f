/**
 * TopK sparse autoencoder (OpenAI recipe) over residual activations x in R^D with n latents:
 *
 *   pre   = W_enc (x - b_pre) + b_enc                      W_enc [n, D], b_enc [n], b_pre [D]
 *   z     = TopK_k(ReLU(pre))                              (topk: the k largest per row)
 *   z     = ReLU(pre) * (pre > threshold)                  (batchtopk at inference: one scalar threshold;
 *                                                           jumprelu: one threshold per latent, [n];
 *                                                           relu: threshold 0, i.e. plain ReLU)
 *   x_hat = W_dec^T z + b_pre                              W_dec [n, D]: row j is latent j's direction
 *
 * Encoding runs as an onnxruntime graph (Gemm + TopK); the [rows, n] pre-activations never leave it.
 * Weights are graph inputs, not initializers, so a 2^19-latent SAE is never copied into a model proto
 * and a trainer can update them in place between runs.
 */
import { Graph } from '../onnx/graph.js';
import { createSession, f32, i64, ort, type SessionOptions } from '../onnx/session.js';
import { Rng } from '../util/rng.js';
import { ItdError } from '../errors.js';

import type { SaeActivation, SaeConfig } from './cfg.js';

export type { SaeActivation, SaeConfig } from './cfg.js';

/** Activations without a fixed k: their codes hold every latent above its threshold. */
export const isThresholdActivation = (a: SaeActivation): boolean => a !== 'topk';

export interface SaeWeights {
  wEnc: Float32Array; // [n, D]
  bEnc: Float32Array; // [n]
  wDec: Float32Array; // [n, D]
  bPre: Float32Array; // [D]
  /** jumprelu only: per-latent thresholds [n]. */
  thresholds?: Float32Array;
}

export interface SparseCodes {
  indices: Int32Array; // [r, k]
  values: Float32Array; // [r, k], >= 0, descending per row
  /** Entries per row (cfg.k for topk; the batch's largest above-threshold count for batchtopk). */
  k: number;
}

/** Bound on one encode run's [rows, n] pre-activation buffer (floats). */
const PRE_BUFFER_FLOATS = 1 << 26;

type EncodeMode = 'topk' | 'threshold';

/**
 * Encoder graph. Inputs: x [r, D], w [n, D], b [n], b_pre [D], and k (int64 [1], topk) or threshold
 * ([1] or per latent [n], threshold). Outputs values [r, K] (ReLU'd, descending) and indices int32
 * [r, K]. In threshold mode the gated activations ReLU(pre) * (pre > threshold) are ranked, and K is
 * the batch's largest per-row count of non-zero ones, so no active latent is dropped.
 */
export function encodeGraph(mode: EncodeMode, D: number): Uint8Array {
  const g = new Graph(`sae_encode_${mode}`);
  const x = g.input('x', 'float32', ['r', D]);
  const w = g.input('w', 'float32', ['n', D]);
  const b = g.input('b', 'float32', ['n']);
  const bPre = g.input('b_pre', 'float32', [D]);
  const pre = g.op('Gemm', [g.op('Sub', [x, bPre]), w, b], { transB: 1 }); // [r, n]
  let values: string;
  let indices: string;
  if (mode === 'topk') {
    [values, indices] = g.opN('TopK', [pre, g.input('k', 'int64', [1])], 2, { axis: 1 }) as [string, string];
    values = g.op('Relu', [values]);
  } else {
    const thr = g.input('threshold', 'float32', ['t']);
    const gated = g.op('Mul', [g.op('Relu', [pre]), g.op('Cast', [g.op('Greater', [pre, thr])], { to: 1 })]);
    const count = g.op('ReduceSum', [g.op('Sign', [gated]), g.constI64([1])], { keepdims: 0 }); // gated >= 0: Sign counts the active ones
    const kMax = g.op('Max', [g.op('ReduceMax', [count], { keepdims: 1 }), g.constF([1], [1])]);
    [values, indices] = g.opN('TopK', [gated, g.op('Cast', [kMax], { to: 7 })], 2, { axis: 1 }) as [string, string];
  }
  g.output(values, 'float32', ['r', 'K'], 'values');
  g.output(g.op('Cast', [indices], { to: 6 }), 'int32', ['r', 'K'], 'indices');
  return g.toModel();
}

/** Pre-activations for a latent subset: x [r, D], w [m, D], b [m], b_pre [D] -> pre [r, m]. */
function preGraph(D: number): Uint8Array {
  const g = new Graph('sae_encode_pre');
  const x = g.input('x', 'float32', ['r', D]);
  const w = g.input('w', 'float32', ['m', D]);
  const b = g.input('b', 'float32', ['m']);
  const bPre = g.input('b_pre', 'float32', [D]);
  g.output(g.op('Gemm', [g.op('Sub', [x, bPre]), w, b], { transB: 1 }), 'float32', ['r', 'm'], 'pre');
  return g.toModel();
}

export class Sae {
  readonly d: number;
  readonly n: number;
  readonly k: number;
  readonly activation: SaeActivation;
  readonly cfg: SaeConfig;
  readonly wEnc: Float32Array;
  readonly bEnc: Float32Array;
  readonly wDec: Float32Array;
  readonly bPre: Float32Array;
  /** jumprelu: per-latent thresholds [n]. */
  readonly thresholds: Float32Array | undefined;
  private sessions = new Map<string, Promise<ort.InferenceSession>>();

  constructor(cfg: SaeConfig, w: SaeWeights, private readonly sessionOpts: SessionOptions = {}) {
    const { d_in: D, num_latents: n, k } = cfg;
    const where = 'SAE';
    if (!Number.isInteger(D) || D <= 0) throw new ItdError('config', `${where}: d_in must be a positive integer, got ${D}`, { field: 'd_in' });
    if (!Number.isInteger(n) || n <= 0) throw new ItdError('config', `${where}: num_latents must be a positive integer, got ${n}`, { field: 'num_latents' });
    if (!Number.isInteger(k) || k <= 0 || k > n) throw new ItdError('config', `${where}: k must be an integer in [1, ${n}], got ${k}`, { field: 'k' });
    const want: [Exclude<keyof SaeWeights, 'thresholds'>, number][] = [['wEnc', n * D], ['bEnc', n], ['wDec', n * D], ['bPre', D]];
    for (const [name, len] of want) {
      if (w[name].length !== len) throw new ItdError('format', `${where}: ${name} has ${w[name].length} values, expected ${len}`, { field: name });
    }
    if (cfg.activation === 'batchtopk' && !(typeof cfg.threshold === 'number' && Number.isFinite(cfg.threshold))) {
      throw new ItdError('config', `${where}: a batchtopk SAE needs a finite cfg.threshold`, { field: 'threshold' });
    }
    if ((cfg.activation === 'jumprelu') !== (w.thresholds !== undefined) || (w.thresholds && w.thresholds.length !== n)) {
      throw new ItdError('config', `${where}: per-latent thresholds [${n}] are required for a jumprelu SAE and only for it`, { field: 'thresholds' });
    }
    this.cfg = cfg;
    this.d = D;
    this.n = n;
    this.k = k;
    this.activation = cfg.activation;
    ({ wEnc: this.wEnc, bEnc: this.bEnc, wDec: this.wDec, bPre: this.bPre, thresholds: this.thresholds } = w);
  }

  /** BatchTopK's inference threshold (undefined for the other activations). */
  get threshold(): number | undefined {
    return this.cfg.threshold;
  }

  /**
   * Random SAE: decoder rows are seeded random unit directions, W_enc = W_dec (tied init), zero biases.
   */
  static random(opts: { d: number; n: number; k: number; seed: number; activation?: SaeActivation; threshold?: number }): Sae {
    const { d, n, k } = opts;
    const wDec = new Float32Array(n * d);
    new Rng(opts.seed).fillNormal(wDec, 1);
    normalizeRows(wDec, d);
    const activation = opts.activation ?? 'topk';
    const cfg = defaultConfig(d, n, k, activation);
    if (activation === 'batchtopk') cfg.threshold = opts.threshold ?? 0;
    return new Sae(cfg, { wEnc: wDec.slice(), bEnc: new Float32Array(n), wDec, bPre: new Float32Array(d) });
  }

  /**
   * Sparse codes of x [r, D]. topk: the k largest ReLU'd pre-activations per row; batchtopk, jumprelu,
   * relu: every latent with ReLU(pre) * (pre > threshold) > 0 (rows padded with zero values up to the
   * largest count).
   */
  async encode(x: Float32Array, r: number): Promise<SparseCodes> {
    this.checkRows(x, r);
    const mode: EncodeMode = this.activation === 'topk' ? 'topk' : 'threshold';
    const session = await this.session(mode);
    const parts: { values: Float32Array; indices: Int32Array; rows: number; k: number }[] = [];
    for (const [start, rows] of this.chunks(r)) {
      const out = await session.run({
        ...this.weightFeeds(),
        x: f32(x.subarray(start * this.d, (start + rows) * this.d), [rows, this.d]),
        ...(mode === 'topk'
          ? { k: i64(BigInt64Array.of(BigInt(this.k)), [1]) }
          : { threshold: this.thresholdFeed() }),
      });
      parts.push({ values: out['values']!.data as Float32Array, indices: out['indices']!.data as Int32Array, rows, k: out['values']!.dims[1]! });
    }
    return concatCodes(parts, r);
  }

  /** Pre-activations W_enc[latents] (x - b_pre) + b_enc[latents] as [r, latents.length]; cost O(r m D). */
  async encodePre(x: Float32Array, r: number, latents: Int32Array): Promise<Float32Array> {
    this.checkRows(x, r);
    const m = latents.length;
    if (m === 0 || r === 0) return new Float32Array(r * m);
    const w = new Float32Array(m * this.d);
    const b = new Float32Array(m);
    latents.forEach((j, s) => {
      if (!Number.isInteger(j) || j < 0 || j >= this.n) throw new ItdError('usage', `encodePre: latent ${j} out of range [0, ${this.n})`, { field: 'latents' });
      w.set(this.wEnc.subarray(j * this.d, (j + 1) * this.d), s * this.d);
      b[s] = this.bEnc[j]!;
    });
    const session = await this.session('pre');
    const out = await session.run({ x: f32(x, [r, this.d]), w: f32(w, [m, this.d]), b: f32(b, [m]), b_pre: f32(this.bPre, [this.d]) });
    return out['pre']!.data as Float32Array;
  }

  /** x_hat [r, D] = b_pre + sum_s vals[i, s] W_dec[idx[i, s]]; kPerRow entries per row. */
  decode(idx: Int32Array, vals: Float32Array, r: number, kPerRow: number): Float32Array {
    if (idx.length !== r * kPerRow || vals.length !== r * kPerRow) {
      throw new ItdError('usage', `decode: expected ${r * kPerRow} indices and values, got ${idx.length} and ${vals.length}`, { field: 'indices' });
    }
    const D = this.d;
    const out = new Float32Array(r * D);
    for (let i = 0; i < r; i++) {
      const o = i * D;
      out.set(this.bPre, o);
      for (let s = i * kPerRow; s < (i + 1) * kPerRow; s++) {
        const v = vals[s]!;
        if (v === 0) continue;
        const j = idx[s]!;
        if (j < 0 || j >= this.n) throw new ItdError('usage', `decode: latent ${j} out of range [0, ${this.n})`, { field: 'indices' });
        const w = j * D;
        for (let t = 0; t < D; t++) out[o + t]! += v * this.wDec[w + t]!;
      }
    }
    return out;
  }

  /** Frees the onnxruntime sessions (weights stay usable; sessions are rebuilt on demand). */
  async release(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s).release();
  }

  private session(kind: EncodeMode | 'pre'): Promise<ort.InferenceSession> {
    let s = this.sessions.get(kind);
    if (!s) {
      s = createSession(kind === 'pre' ? preGraph(this.d) : encodeGraph(kind, this.d), this.sessionOpts);
      this.sessions.set(kind, s);
    }
    return s;
  }

  private thresholdFeed(): ort.Tensor {
    if (this.thresholds) return f32(this.thresholds, [this.n]);
    return f32(Float32Array.of(this.activation === 'relu' ? 0 : this.threshold!), [1]);
  }

  private weightFeeds(): Record<string, ort.Tensor> {
    return {
      w: f32(this.wEnc, [this.n, this.d]),
      b: f32(this.bEnc, [this.n]),
      b_pre: f32(this.bPre, [this.d]),
    };
  }

  private *chunks(r: number): Generator<[number, number]> {
    const step = Math.max(1, Math.floor(PRE_BUFFER_FLOATS / this.n));
    for (let s = 0; s < r; s += step) yield [s, Math.min(step, r - s)];
  }

  private checkRows(x: Float32Array, r: number): void {
    if (!Number.isInteger(r) || r < 0 || x.length !== r * this.d) {
      throw new ItdError('usage', `SAE input has ${x.length} values, expected ${r} rows x ${this.d} (d_in)`, { field: 'x' });
    }
  }
}

export function defaultConfig(d: number, n: number, k: number, activation: SaeActivation): SaeConfig {
  return { d_in: d, num_latents: n, k, activation, multi_topk: false, normalize_decoder: true, normalization: 'none' };
}

/** Scales each row of w [rows, D] to unit L2 norm (zero rows stay zero). */
export function normalizeRows(w: Float32Array, D: number): void {
  for (let o = 0; o < w.length; o += D) {
    let s = 0;
    for (let t = 0; t < D; t++) s += w[o + t]! * w[o + t]!;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let t = 0; t < D; t++) w[o + t]! *= inv;
  }
}

/** Joins per-chunk codes, padding rows of narrower chunks with zero-valued entries. */
function concatCodes(parts: { values: Float32Array; indices: Int32Array; rows: number; k: number }[], r: number): SparseCodes {
  const k = parts.reduce((m, p) => Math.max(m, p.k), 0);
  if (parts.length === 1) return { indices: parts[0]!.indices, values: parts[0]!.values, k };
  const indices = new Int32Array(r * k);
  const values = new Float32Array(r * k);
  let row = 0;
  for (const p of parts) {
    for (let i = 0; i < p.rows; i++, row++) {
      indices.set(p.indices.subarray(i * p.k, (i + 1) * p.k), row * k);
      values.set(p.values.subarray(i * p.k, (i + 1) * p.k), row * k);
    }
  }
  return { indices, values, k };
}
