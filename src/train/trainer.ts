/**
 * TopK / BatchTopK SAE trainer (OpenAI recipe, with the official ItD code's defects fixed).
 *
 * Per step on a batch x [B, D] (V = sum_b ||x_b - mean(x)||^2, the batch's total variance):
 *   forward   z = TopK(ReLU(W_enc (x - b_pre) + b_enc))    kernels.encodeTopK (fused GEMM + selection,
 *             never storing [B, n]), else onnxruntime Gemm + TopK; BatchTopK: onnxruntime, top k*B
 *   decode    x_hat = W_dec^T z + b_pre, g = 2 (x_hat - x) / V      kernels.decode
 *   loss      L = ||x_hat - x||^2 / V  +  auxCoef ||e_hat - r||^2 / V_r       (FVU + AuxK)
 *   AuxK      r = x - x_hat (constant), e_hat = W_dec[dead]^T TopK_kAux(ReLU(pre[dead])),
 *             V_r = total variance of r; dense over the gathered dead rows   onnxruntime
 *   backward  sparse gradients per latent, decoder gradient projected off its unit row, Adam
 *             (lr warm-up), decoder rows renormalised                      kernels.backward
 *   b_pre     dL/db_pre = sum_b g_b - sum_j dL/db_enc[j] W_enc[j]; Adam
 * A latent is dead when it has not fired for `deadTokens` tokens (counted in tokens, not steps).
 * Batches follow a seeded permutation per epoch; the next batch is read while a step computes.
 * Every piece is deterministic, so a seed fixes the run and a checkpoint resumes it bit-for-bit.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ActivationSet } from '../collect/dataset.js';
import { configError, ItdError } from '../errors.js';
import { asObject, optInt } from '../io/fields.js';
import { parseJsonStrict } from '../io/files.js';
import { SafetensorsFile, writeSafetensors, writeSafetensorsAsync, type TensorIn } from '../io/safetensors.js';
import { createSession, f32, i64, ort, type SessionOptions } from '../onnx/session.js';
import { encodeGraph, Sae, type SaeConfig } from '../sae/index.js';
import { numericAddon } from '../util/addon.js';
import { Rng } from '../util/rng.js';
import { resolveTrainConfig, totalSteps, type ResolvedTrainConfig } from './config.js';
import { auxKGraph, batchTopKGraph } from './graphs.js';
import { adamRow, LATENT_CHUNK, type AdamArgs, type Kernels } from './kernels.js';
import { defaultKernels } from './native.js';

export const CHECKPOINT_FILE = 'state.safetensors';
const STATE_KEY = 'itd_train_state';
const MEDIAN_ITERS = 100;
const MEDIAN_TOL = 1e-6;

export interface TrainerOptions extends SessionOptions {
  kernels?: Kernels;
  /** Provenance recorded in the SAE's cfg.json. */
  provenance?: Pick<SaeConfig, 'hookpoint' | 'layer' | 'model_id'>;
}

export interface StepStats {
  step: number;
  tokens: number;
  /** ||x_hat - x||^2 / V on the batch (before this step's update). */
  fvu: number;
  /** Mean active latents per row. */
  l0: number;
  deadFraction: number;
  /** ||e_hat - r||^2 / V_r (0 when no latent is dead). */
  auxLoss: number;
  lr: number;
}

export interface Gradients {
  wEnc: Float32Array;
  bEnc: Float32Array;
  wDec: Float32Array;
  bPre: Float32Array;
  /** FVU + auxCoef * aux, as the gradients see it. */
  loss: number;
}

/** Wall time per phase, accumulated over steps (benchmarks read it). */
export type PhaseTimes = Record<'read' | 'forward' | 'decode' | 'aux' | 'backward' | 'other', number>;

interface AdamState {
  mWEnc: Float32Array; vWEnc: Float32Array; mBEnc: Float32Array; vBEnc: Float32Array;
  mWDec: Float32Array; vWDec: Float32Array; mBPre: Float32Array; vBPre: Float32Array;
}

/** Sparse codes, CSR by row; only values > 0 are kept. */
export interface Codes {
  rowPtr: Int32Array; // [B + 1]
  lat: Int32Array;
  val: Float32Array;
}

/** A batch in flight and the data position after it. */
interface Batch {
  x: Promise<Float32Array>;
  epoch: number;
  offset: number;
}

interface Position {
  step: number;
  tokens: number;
  epoch: number;
  offset: number;
  threshold: number;
}

/** The checkpoint's state metadata with every field type-checked (errors name the file and field). */
function parseState(file: string, raw: string, data: ActivationSet): { pos: Position; config: ResolvedTrainConfig; sae: SaeConfig; data: DataIdentity } {
  const where = `${file} (metadata ${STATE_KEY})`;
  const meta = asObject(parseJsonStrict(raw, file, `metadata ${STATE_KEY}`), where, '');
  const pos = asObject(meta['pos'], where, 'pos');
  for (const key of ['step', 'tokens', 'epoch', 'offset']) {
    if (optInt(pos, key, where, 0) === undefined) throw configError(where, `pos.${key}`, 'is missing');
  }
  const config = resolveTrainConfig(asObject(meta['config'], where, 'config') as unknown as ResolvedTrainConfig, data.rows, data.d, `${where} config`);
  const ident = asObject(meta['data'], where, 'data');
  for (const key of ['d', 'rows']) optInt(ident, key, where, 0);
  return { pos: pos as unknown as Position, config, sae: asObject(meta['sae'], where, 'sae') as SaeConfig, data: ident as unknown as DataIdentity };
}

/** What a checkpoint records about its data, to refuse resuming on other activations. */
interface DataIdentity {
  d: number;
  rows: number;
  modelId?: string;
  layer?: number;
  hookpoint?: string;
}

export class Trainer {
  readonly phases: PhaseTimes = { read: 0, forward: 0, decode: 0, aux: 0, backward: 0, other: 0 };
  readonly kernels: Kernels;
  private pos: Position;
  /** Epoch permutations in use (the current one, and the next while a batch straddles them). */
  private perms = new Map<number, Int32Array>();
  /** The next batch, read while this step computes. */
  private ahead?: Batch;
  private sessions = new Map<string, Promise<ort.InferenceSession>>();
  /** Per-batch buffers, reused across steps (fresh 10+ MB arrays per step cost page faults). */
  private scratch?: { B: number; xc: Float32Array; g: Float32Array; rowErr: Float64Array; values: Float32Array; indices: Int32Array };

  private constructor(
    readonly sae: Sae,
    readonly cfg: ResolvedTrainConfig,
    readonly data: ActivationSet,
    private readonly adam: AdamState,
    /** Tokens since each latent last fired. */
    readonly sinceFired: Float64Array,
    pos: Position,
    private readonly opts: TrainerOptions,
  ) {
    this.kernels = opts.kernels ?? defaultKernels();
    this.pos = pos;
  }

  /** A fresh run: b_pre = geometric median of a sample, tied random unit-norm W_dec = W_enc. */
  static create(data: ActivationSet, config: Parameters<typeof resolveTrainConfig>[0], opts: TrainerOptions = {}): Trainer {
    const cfg = resolveTrainConfig(config, data.rows, data.d);
    return Trainer.fresh(data, cfg, randomSae(data, cfg, opts), opts);
  }

  /** create, with the activations loaded on libuv's threads while the JS thread draws the random SAE (the same run). */
  static async start(data: ActivationSet, config: Parameters<typeof resolveTrainConfig>[0], opts: TrainerOptions = {}): Promise<Trainer> {
    const cfg = resolveTrainConfig(config, data.rows, data.d);
    const loading = data.preload();
    loading.catch(() => undefined); // awaited below, after the SAE is drawn
    const sae = randomSae(data, cfg, opts);
    await loading;
    return Trainer.fresh(data, cfg, sae, opts);
  }

  private static fresh(data: ActivationSet, cfg: ResolvedTrainConfig, sae: Sae, opts: TrainerOptions): Trainer {
    const sample = data.sample(cfg.medianSample, new Rng(cfg.seed ^ 0x6d656421));
    sae.bPre.set(geometricMedian(sample, data.d));
    const pos = { step: 0, tokens: 0, epoch: 0, offset: 0, threshold: NaN };
    return new Trainer(sae, cfg, data, newAdam(data.d, cfg.latents), new Float64Array(cfg.latents), pos, opts);
  }

  /** Continues the run saved in `file` on `data` (which must be the same activations). */
  static resume(file: string, data: ActivationSet, opts: TrainerOptions = {}): Trainer {
    const st = SafetensorsFile.open(file);
    try {
      const raw = st.metadata[STATE_KEY];
      if (!raw) throw new ItdError('format', `${file}: not an itd training checkpoint (no "${STATE_KEY}" metadata)`, { file, field: STATE_KEY });
      const meta = parseState(file, raw, data);
      checkSameData(file, meta.data, data);
      const { latents: n } = meta.config;
      const D = data.d;
      const read = (name: string, len: number) => {
        const v = st.readF32(name);
        if (v.length !== len) throw new ItdError('format', `${file}: tensor "${name}" has ${v.length} values, expected ${len}`, { file, field: name });
        return v;
      };
      const sae = new Sae(meta.sae, { wEnc: read('encoder.weight', n * D), bEnc: read('encoder.bias', n), wDec: read('W_dec', n * D), bPre: read('b_dec', D) }, opts);
      const adam = Object.fromEntries(
        Object.entries(newAdam(D, n)).map(([k, v]) => [k, read(`adam.${k}`, v.length)]),
      ) as unknown as AdamState;
      const since = st.info('since_fired');
      if (since.dtype !== 'F64' || since.shape[0] !== n) throw new ItdError('format', `${file}: tensor "since_fired" must be F64 [${n}], got ${since.dtype} ${JSON.stringify(since.shape)}`, { file, field: 'since_fired' });
      const sinceFired = new Float64Array(st.readRaw('since_fired').buffer, 0, n);
      const pos = { ...meta.pos, threshold: meta.pos.threshold ?? NaN };
      return new Trainer(sae, meta.config, data, adam, sinceFired, pos, opts);
    } finally {
      st.close();
    }
  }

  get step(): number {
    return this.pos.step;
  }

  get tokens(): number {
    return this.pos.tokens;
  }

  get totalSteps(): number {
    return totalSteps(this.cfg);
  }

  /** One optimiser step on the next batch of the (seeded, per-epoch shuffled) data. */
  async trainStep(): Promise<StepStats> {
    let t = performance.now();
    const batch = this.ahead ?? this.readBatch(this.pos);
    const x = await batch.x;
    this.ahead = this.pos.step + 2 <= this.totalSteps ? this.readBatch(batch) : undefined;
    this.phases.read += performance.now() - t;
    const B = this.cfg.batch;
    const dead = this.deadLatents();
    const step = this.pos.step + 1;
    const lr = this.cfg.lr * (this.cfg.warmupSteps > 0 ? Math.min(1, step / this.cfg.warmupSteps) : 1);
    const h: AdamArgs = {
      ...this.adam, lr, beta1: this.cfg.adamBeta1, beta2: this.cfg.adamBeta2, eps: this.cfg.adamEps,
      bc1: 1 - this.cfg.adamBeta1 ** step, bc2: 1 - this.cfg.adamBeta2 ** step,
    };
    const r = await this.pass(x, B, dead, { adam: h });
    t = performance.now();
    adamRow(this.sae.bPre, this.adam.mBPre, this.adam.vBPre, r.gBPre, 0, this.sae.d, h);
    this.markFired(r.codes, B);
    if (this.cfg.activation === 'batchtopk') this.updateThreshold(r.codes);
    this.pos = { ...this.pos, step, tokens: this.pos.tokens + B, epoch: batch.epoch, offset: batch.offset };
    this.phases.other += performance.now() - t;
    return {
      step, tokens: this.pos.tokens, fvu: r.fvu, l0: r.codes.val.length / B,
      deadFraction: dead.length / this.cfg.latents, auxLoss: r.auxLoss, lr,
    };
  }

  /** Gradients of the loss on x [B, D] with `dead` latents in AuxK; weights untouched (gradient checks). */
  async gradients(x: Float32Array, B: number, dead: Int32Array = new Int32Array(0)): Promise<Gradients> {
    const { n, d: D } = this.sae;
    const grads = { wEnc: new Float32Array(n * D), bEnc: new Float32Array(n), wDec: new Float32Array(n * D) };
    const r = await this.pass(x, B, dead, { grads });
    return { ...grads, bPre: Float32Array.from(r.gBPre), loss: r.fvu + this.cfg.auxCoef * r.auxLoss };
  }

  /** Writes weights, Adam moments, dead counters and the data position atomically to one file. */
  saveCheckpoint(file: string): void {
    writeSafetensors(file, ...this.checkpointParts(file));
  }

  /**
   * saveCheckpoint with the writes off the JS thread (the same bytes), e.g. while the final
   * evaluation computes. No step may run until it resolves: the state is written from where it lives.
   */
  saveCheckpointAsync(file: string): Promise<void> {
    return writeSafetensorsAsync(file, ...this.checkpointParts(file));
  }

  private checkpointParts(file: string): [Record<string, TensorIn>, Record<string, string>] {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const { n, d: D } = this.sae;
    const t = (shape: number[], data: Float32Array): TensorIn => ({ dtype: 'F32', shape, data });
    const tensors: Record<string, TensorIn> = {
      'encoder.weight': t([n, D], this.sae.wEnc),
      'encoder.bias': t([n], this.sae.bEnc),
      W_dec: t([n, D], this.sae.wDec),
      b_dec: t([D], this.sae.bPre),
      since_fired: { dtype: 'F64', shape: [n], data: this.sinceFired },
    };
    for (const [k, v] of Object.entries(this.adam)) tensors[`adam.${k}`] = t([v.length], v);
    const meta = { pos: this.pos, config: this.cfg, sae: this.sae.cfg, data: identityOf(this.data) };
    return [tensors, { [STATE_KEY]: JSON.stringify(meta) }];
  }

  async release(): Promise<void> {
    await this.releaseSessions();
    await this.sae.release();
  }

  /** Frees the training sessions but keeps the SAE usable (it is handed on after training). */
  async releaseSessions(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s).release();
  }

  /** Forward, decode, AuxK and the sparse backward (Adam or gradient output) on one batch. */
  private async pass(x: Float32Array, B: number, dead: Int32Array, out: { adam: AdamArgs } | { grads: NonNullable<Parameters<Kernels['backward']>[0]['grads']> }) {
    const { n, d: D } = this.sae;
    let t = performance.now();
    const stats = this.kernels.colStats(x, B, D);
    const V = totalVariance(stats, B);
    const codes = await this.forward(x, B);
    this.phases.forward += performance.now() - t;

    t = performance.now();
    const { xc, g, rowErr } = this.buffers(B);
    const gScale = 2 / V;
    await this.kernels.decode({ B, D, x, bPre: this.sae.bPre, wDec: this.sae.wDec, ...codes, gScale, xc, g, rowErr });
    const sqErr = rowErr.reduce((a, b) => a + b, 0);
    const gStats = this.kernels.colStats(g, B, D);
    this.phases.decode += performance.now() - t;

    t = performance.now();
    const aux = await this.auxK(xc, g, B, this.cfg.auxCoef > 0 ? dead : new Int32Array(0), gScale, sqErr, gStats.sum);
    this.phases.aux += performance.now() - t;

    t = performance.now();
    const dbPre = new Float64Array(Math.ceil(n / LATENT_CHUNK) * D);
    await this.kernels.backward({ n, D, wEnc: this.sae.wEnc, bEnc: this.sae.bEnc, wDec: this.sae.wDec, xc, g, ...latentMajor(codes, n), ...aux.grads, dbPre, ...out });
    // dL/db_pre = sum_b g_b (decoder bias) + the encoder-side chunk sums, in chunk order.
    const gBPre = new Float64Array(gStats.sum);
    for (let c = 0; c < dbPre.length; c += D) for (let i = 0; i < D; i++) gBPre[i]! += dbPre[c + i]!;
    this.phases.backward += performance.now() - t;
    return { codes, fvu: sqErr / V, auxLoss: aux.loss, gBPre };
  }

  /** TopK codes of x (fused native kernel, else chunked runs of the SAE's encoder graph), or the batch's top k*B. */
  private async forward(x: Float32Array, B: number): Promise<Codes> {
    const { n, d: D, k } = this.sae;
    const weights = { w: f32(this.sae.wEnc, [n, D]), b: f32(this.sae.bEnc, [n]), b_pre: f32(this.sae.bPre, [D]) };
    if (this.cfg.activation === 'batchtopk') {
      const s = await this.session('batch', () => batchTopKGraph(D));
      const K = Math.min(k * B, n * B);
      const o = await s.run({ ...weights, x: f32(x, [B, D]), k: i64(BigInt64Array.of(BigInt(K)), [1]) });
      return codesByRow(o['rows']!.data as Int32Array, o['latents']!.data as Int32Array, o['values']!.data as Float32Array, B);
    }
    const { values, indices } = this.buffers(B);
    if (this.kernels.encodeTopK) {
      await this.kernels.encodeTopK({ B, D, n, k, x, bPre: this.sae.bPre, wEnc: this.sae.wEnc, bEnc: this.sae.bEnc, values, indices });
      return codesFromTopK(values, indices, B, k);
    }
    const s = await this.session('topk', () => encodeGraph('topk', D));
    const kFeed = i64(BigInt64Array.of(BigInt(k)), [1]);
    for (let r0 = 0; r0 < B; r0 += this.cfg.forwardChunk) {
      const rows = Math.min(this.cfg.forwardChunk, B - r0);
      const o = await s.run({ ...weights, x: f32(x.subarray(r0 * D, (r0 + rows) * D), [rows, D]), k: kFeed });
      values.set(o['values']!.data as Float32Array, r0 * k);
      indices.set(o['indices']!.data as Int32Array, r0 * k);
    }
    return codesFromTopK(values, indices, B, k);
  }

  /** AuxK gradients of the dead latents on their gathered rows: the native kernel (fused TopK, dense GEMMs), else onnxruntime passes over row chunks. */
  private async auxK(xc: Float32Array, g: Float32Array, B: number, dead: Int32Array, gScale: number, sqErr: number, gSum: Float64Array) {
    const { n, d: D } = this.sae;
    const m = dead.length;
    const auxSlot = new Int32Array(n).fill(-1);
    const grads = { auxSlot, auxWEnc: new Float32Array(m * D), auxBEnc: new Float32Array(m), auxWDec: new Float32Array(m * D) };
    // r = x - x_hat = -g / gScale: its total variance from the sums the decode pass already has.
    let sumSq = 0;
    for (const s of gSum) sumSq += (s / gScale) ** 2;
    const vR = sqErr - sumSq / B;
    if (m === 0 || !(vR > 0)) return { grads, loss: 0 };
    const gather = (src: Float32Array) => {
      const out = new Float32Array(m * D);
      dead.forEach((j, s) => out.set(src.subarray(j * D, (j + 1) * D), s * D));
      return out;
    };
    dead.forEach((j, s) => (auxSlot[j] = s));
    const we = gather(this.sae.wEnc);
    const be = Float32Array.from(dead, (j) => this.sae.bEnc[j]!);
    const wd = gather(this.sae.wDec);
    const rScale = -1 / gScale;
    const cAux = (2 * this.cfg.auxCoef) / vR;
    const kAux = Math.min(this.cfg.kAux, m);
    if (this.kernels.auxK) {
      const sqErr = new Float64Array(1);
      await this.kernels.auxK({ B, D, m, k: kAux, xc, g, we, be, wd, rScale, cAux, dWe: grads.auxWEnc, dBe: grads.auxBEnc, dWd: grads.auxWDec, sqErr });
      return { grads, loss: sqErr[0]! / vR };
    }
    const fixed = {
      we: f32(we, [m, D]), be: f32(be, [m]), wd: f32(wd, [m, D]),
      r_scale: f32(Float32Array.of(rScale), [1]),
      c_aux: f32(Float32Array.of(cAux), [1]),
      k: i64(BigInt64Array.of(BigInt(kAux)), [1]),
    };
    const session = await this.session('aux', () => auxKGraph(D));
    let sq = 0;
    for (let r0 = 0; r0 < B; r0 += this.cfg.forwardChunk) {
      const rows = Math.min(this.cfg.forwardChunk, B - r0);
      const sl = (a: Float32Array) => f32(a.subarray(r0 * D, (r0 + rows) * D), [rows, D]);
      const o = await session.run({ ...fixed, xc: sl(xc), g: sl(g) });
      addInto(grads.auxWEnc, o['d_we']!.data as Float32Array);
      addInto(grads.auxBEnc, o['d_be']!.data as Float32Array);
      addInto(grads.auxWDec, o['d_wd']!.data as Float32Array);
      sq += (o['sq_err']!.data as Float32Array)[0]!;
    }
    return { grads, loss: sq / vR };
  }

  private deadLatents(): Int32Array {
    const dead: number[] = [];
    for (let j = 0; j < this.sinceFired.length; j++) if (this.sinceFired[j]! >= this.cfg.deadTokens) dead.push(j);
    return Int32Array.from(dead);
  }

  private markFired(codes: Codes, B: number): void {
    for (let j = 0; j < this.sinceFired.length; j++) this.sinceFired[j]! += B;
    for (const j of codes.lat) this.sinceFired[j] = 0;
  }

  /** BatchTopK inference threshold: EMA of the smallest selected activation (dictionary_learning). */
  private updateThreshold(codes: Codes): void {
    if (codes.val.length === 0) return;
    let min = Infinity;
    for (const v of codes.val) min = Math.min(min, v);
    const prev = this.pos.threshold;
    const thr = Number.isFinite(prev) ? this.cfg.thresholdBeta * prev + (1 - this.cfg.thresholdBeta) * min : min;
    this.pos = { ...this.pos, threshold: thr };
    this.sae.cfg.threshold = thr;
  }

  /** The batch after data position `from`: the next rows of the seeded per-epoch permutation, read asynchronously. */
  private readBatch(from: { epoch: number; offset: number }): Batch {
    const idx = new Int32Array(this.cfg.batch);
    let { epoch, offset } = from;
    for (let i = 0; i < idx.length; i++) {
      if (offset === this.data.rows) {
        epoch++;
        offset = 0;
      }
      idx[i] = this.permutation(epoch)[offset++]!;
    }
    const x = this.data.readRowsAsync(idx);
    x.catch(() => undefined); // a read error surfaces where the batch is awaited
    return { x, epoch, offset };
  }

  private permutation(epoch: number): Int32Array {
    let p = this.perms.get(epoch);
    if (!p) {
      for (const e of this.perms.keys()) if (e < epoch - 1) this.perms.delete(e);
      p = permutation(this.data.rows, this.cfg.seed, epoch);
      this.perms.set(epoch, p);
    }
    return p;
  }

  private buffers(B: number): NonNullable<Trainer['scratch']> {
    if (this.scratch?.B !== B) {
      const { d: D, k } = this.sae;
      this.scratch = { B, xc: new Float32Array(B * D), g: new Float32Array(B * D), rowErr: new Float64Array(B), values: new Float32Array(B * k), indices: new Int32Array(B * k) };
    }
    return this.scratch;
  }

  private session(key: string, graph: () => Uint8Array): Promise<ort.InferenceSession> {
    let s = this.sessions.get(key);
    if (!s) {
      s = createSession(graph(), this.opts);
      this.sessions.set(key, s);
    }
    return s;
  }
}

/** The run's initial SAE: seeded random unit decoder rows, W_enc = W_dec, zero biases; the data's provenance. */
function randomSae(data: ActivationSet, cfg: ResolvedTrainConfig, opts: TrainerOptions): Sae {
  const sae = Sae.random({ d: data.d, n: cfg.latents, k: cfg.k, seed: cfg.seed, activation: cfg.activation });
  Object.assign(sae.cfg, provenanceOf(data, opts));
  return sae;
}

function newAdam(D: number, n: number): AdamState {
  const z = (len: number) => new Float32Array(len);
  return { mWEnc: z(n * D), vWEnc: z(n * D), mBEnc: z(n), vBEnc: z(n), mWDec: z(n * D), vWDec: z(n * D), mBPre: z(D), vBPre: z(D) };
}

/** sum_b ||x_b - mean||^2 = sum x^2 - sum_d (sum_b x_bd)^2 / B; a constant batch gets a tiny floor. */
function totalVariance(s: { sum: Float64Array; sumSq: number }, B: number): number {
  let c = 0;
  for (const v of s.sum) c += v * v;
  return Math.max(s.sumSq - c / B, 1e-12 * (s.sumSq + 1e-30));
}

/** Packs [B, k] TopK output into row CSR, dropping zero (ReLU'd) entries. */
export function codesFromTopK(values: Float32Array, indices: Int32Array, B: number, k: number): Codes {
  const rowPtr = new Int32Array(B + 1);
  let nnz = 0;
  for (let i = 0; i < B * k; i++) if (values[i]! > 0) nnz++;
  const lat = new Int32Array(nnz);
  const val = new Float32Array(nnz);
  let p = 0;
  for (let b = 0; b < B; b++) {
    for (let s = b * k; s < (b + 1) * k; s++) {
      if (values[s]! > 0) {
        lat[p] = indices[s]!;
        val[p++] = values[s]!;
      }
    }
    rowPtr[b + 1] = p;
  }
  return { rowPtr, lat, val };
}

/** Row CSR from (row, latent, value) triples (BatchTopK), stable within a row; zeros dropped. */
function codesByRow(rows: Int32Array, lats: Int32Array, vals: Float32Array, B: number): Codes {
  const rowPtr = new Int32Array(B + 1);
  for (let i = 0; i < rows.length; i++) if (vals[i]! > 0) rowPtr[rows[i]! + 1]!++;
  for (let b = 0; b < B; b++) rowPtr[b + 1]! += rowPtr[b]!;
  const fill = rowPtr.slice(0, B);
  const lat = new Int32Array(rowPtr[B]!);
  const val = new Float32Array(rowPtr[B]!);
  for (let i = 0; i < rows.length; i++) {
    if (!(vals[i]! > 0)) continue;
    const p = fill[rows[i]!]!++;
    lat[p] = lats[i]!;
    val[p] = vals[i]!;
  }
  return { rowPtr, lat, val };
}

/** Latent CSR (counting sort by latent; rows stay ascending within a latent). */
function latentMajor(c: Codes, n: number): { colPtr: Int32Array; colRow: Int32Array; colVal: Float32Array } {
  const colPtr = new Int32Array(n + 1);
  for (const j of c.lat) colPtr[j + 1]!++;
  for (let j = 0; j < n; j++) colPtr[j + 1]! += colPtr[j]!;
  const fill = colPtr.slice(0, n);
  const colRow = new Int32Array(c.lat.length);
  const colVal = new Float32Array(c.lat.length);
  for (let b = 0; b + 1 < c.rowPtr.length; b++) {
    for (let p = c.rowPtr[b]!; p < c.rowPtr[b + 1]!; p++) {
      const q = fill[c.lat[p]!]!++;
      colRow[q] = b;
      colVal[q] = c.val[p]!;
    }
  }
  return { colPtr, colRow, colVal };
}

function addInto(dst: Float32Array, src: Float32Array): void {
  for (let i = 0; i < dst.length; i++) dst[i]! += src[i]!;
}

/** Epoch `epoch`'s row order: a Fisher-Yates shuffle seeded by (seed, epoch). */
function permutation(rows: number, seed: number, epoch: number): Int32Array {
  const p = Int32Array.from({ length: rows }, (_, i) => i);
  new Rng((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0).shuffle(p);
  return p;
}

/**
 * Geometric median by Weiszfeld's iterations: y <- sum_i w_i x_i / sum_i w_i, w_i = 1 / ||x_i - y||,
 * from the mean, until the step is below MEDIAN_TOL (relative) or MEDIAN_ITERS. The native addon's
 * loop on all threads when built, else geometricMedianJs: the same bits.
 */
export function geometricMedian(x: Float32Array, D: number): Float64Array {
  const native = numericAddon()?.geometricMedian;
  if (!native) return geometricMedianJs(x, D);
  const y = new Float64Array(D);
  native({ x, N: x.length / D, D, iters: MEDIAN_ITERS, tol2: MEDIAN_TOL ** 2, y });
  return y;
}

/** The JS fallback of geometricMedian (and its definition, which the native loop matches bit for bit). */
export function geometricMedianJs(x: Float32Array, D: number): Float64Array {
  const N = x.length / D;
  const y = new Float64Array(D);
  for (let i = 0; i < N; i++) for (let t = 0; t < D; t++) y[t]! += x[i * D + t]! / N;
  const num = new Float64Array(D);
  for (let it = 0; it < MEDIAN_ITERS; it++) {
    num.fill(0);
    let den = 0;
    for (let i = 0; i < N; i++) {
      const o = i * D;
      let d2 = 0;
      for (let t = 0; t < D; t++) d2 += (x[o + t]! - y[t]!) ** 2;
      if (d2 === 0) continue; // a sample sitting on y: Weiszfeld's update skips it
      const w = 1 / Math.sqrt(d2);
      den += w;
      for (let t = 0; t < D; t++) num[t]! += w * x[o + t]!;
    }
    if (den === 0) break;
    let step = 0;
    let norm = 0;
    for (let t = 0; t < D; t++) {
      const v = num[t]! / den;
      step += (v - y[t]!) ** 2;
      norm += v * v;
      y[t] = v;
    }
    if (step <= MEDIAN_TOL ** 2 * (norm + 1e-30)) break;
  }
  return y;
}

function identityOf(data: ActivationSet): DataIdentity {
  return { d: data.d, rows: data.rows, modelId: data.modelId, layer: data.layer, hookpoint: data.hookpoint };
}

function provenanceOf(data: ActivationSet, opts: TrainerOptions): Partial<SaeConfig> {
  const p: Partial<SaeConfig> = { hookpoint: data.hookpoint, layer: data.layer, model_id: data.modelId, ...opts.provenance };
  return Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined));
}

function checkSameData(file: string, saved: DataIdentity, data: ActivationSet): void {
  const now = identityOf(data);
  if (saved.d !== now.d) throw new ItdError('mismatch', `${data.path}: activations have D=${now.d} but the checkpoint ${file} was trained on D=${saved.d}`, { file: data.path, field: 'd' });
  for (const key of ['modelId', 'layer', 'hookpoint'] as const) {
    if (saved[key] !== undefined && now[key] !== undefined && saved[key] !== now[key]) {
      throw new ItdError('mismatch', `${data.path}: activations are from ${key} ${JSON.stringify(now[key])} but the checkpoint ${file} was trained on ${JSON.stringify(saved[key])} (different model/layer)`, { file: data.path, field: key });
    }
  }
  if (saved.rows !== now.rows) throw new ItdError('mismatch', `${data.path}: ${now.rows} rows but the checkpoint ${file} was trained on ${saved.rows} (a resumed run must see the same data)`, { file: data.path, field: 'rows' });
}

