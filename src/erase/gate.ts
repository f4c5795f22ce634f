/**
 * The width-independent gate: pre-activations of the eraser's selected latents only,
 *   a_S(x) = pre_S * (pre_S > tau),   pre_S = W_enc[S] (x - b_pre) + b_enc[S]      (S: m latents)
 * and the edit they imply, Delta(x) = (scale - 1) * sum_{i in S} a_i(x) W_dec[i]   ([D]).
 * Its cost is O(rows * m * D), independent of the SAE width n.
 *
 * Where it differs from exact TopK: a latent counts as active when its pre-activation exceeds a
 * fixed tau (BatchTopK's native threshold, or for TopK SAEs one estimated from data) instead of
 * when it ranks in its token's top k. `bench erase` measures the agreement.
 */
import type { InferenceSession } from 'onnxruntime-node';
import { Graph } from '../onnx/graph.js';
import { createSession, f32, f32Data } from '../onnx/session.js';
import type { Sae } from '../sae/index.js';
import { ItdError } from '../errors.js';

/** How a prompt's per-token scores combine: their mean (official) or their max. */
export type ScoreStat = 'mean' | 'max';

export class Gate {
  private constructor(
    readonly latents: Int32Array, // [m] ascending latent ids
    private readonly session: InferenceSession | undefined,
    private readonly wDecS: Float32Array, // [m, D]
    readonly d: number,
    readonly activationThreshold: number,
    readonly scale: number,
  ) {
    this.wDecNorm2 = Float32Array.from({ length: latents.length }, (_, j) => wDecS.subarray(j * d, (j + 1) * d).reduce((a, v) => a + v * v, 0));
  }

  private readonly wDecNorm2: Float32Array; // [m] ||W_dec[i]||^2

  /** Builds a Gemm session with W_enc[S] as a constant (prepacked) and b_pre folded into the bias. */
  static async create(sae: Sae, latents: Int32Array, activationThreshold: number, scale: number): Promise<Gate> {
    const D = sae.d;
    const m = latents.length;
    const wEncS = new Float32Array(m * D);
    const wDecS = new Float32Array(m * D);
    const bias = new Float32Array(m); // b_enc[S] - W_enc[S] b_pre
    latents.forEach((l, j) => {
      if (l < 0 || l >= sae.n) throw new ItdError('mismatch', `eraser latent ${l} is outside the SAE's ${sae.n} latents`, { field: 'latents' });
      wEncS.set(sae.wEnc.subarray(l * D, (l + 1) * D), j * D);
      wDecS.set(sae.wDec.subarray(l * D, (l + 1) * D), j * D);
      let b = sae.bEnc[l]!;
      for (let e = 0; e < D; e++) b -= wEncS[j * D + e]! * sae.bPre[e]!;
      bias[j] = b;
    });
    if (m === 0) return new Gate(latents, undefined, wDecS, D, activationThreshold, scale);
    const g = new Graph('itd_gate');
    const x = g.input('x', 'float32', ['rows', D]);
    const w = g.initializer('w', { type: 'float32', dims: [m, D], data: wEncS });
    const b = g.initializer('b', { type: 'float32', dims: [m], data: bias });
    g.output(g.op('Gemm', [x, w, b], { transB: 1 }), 'float32', ['rows', m], 'pre');
    return new Gate(latents, await createSession(g.toModel()), wDecS, D, activationThreshold, scale);
  }

  get size(): number {
    return this.latents.length;
  }

  /** Gated activations a_S for rows x: [r, D] -> [r, m]. */
  async activations(x: Float32Array, r: number): Promise<Float32Array> {
    if (!this.session || r === 0) return new Float32Array(r * this.size);
    const pre = f32Data((await this.session.run({ x: f32(x, [r, this.d]) }))['pre'], 'pre');
    const tau = this.activationThreshold;
    for (let i = 0; i < pre.length; i++) if (!(pre[i]! > tau && pre[i]! > 0)) pre[i] = 0;
    return pre;
  }

  /** Adds Delta of row `row` of acts to out[o..o+D) (sparse: only active latents contribute). */
  addDelta(acts: Float32Array, row: number, out: Float32Array, o: number): void {
    this.accumulate(acts, row, this.active(acts, row), out, o);
  }

  /**
   * Score of the rows [from, to) (0 for an empty range): the mean over dims of Delta^2, then the
   * mean over rows ('mean', official inference) or their max ('max': a prompt's strongest token,
   * so a concept's score does not shrink as the prompt around it grows). `cols` restricts it to
   * one concept's columns.
   */
  score(acts: Float32Array, from: number, to: number, cols?: Int32Array, stat: ScoreStat = 'mean'): number {
    if (to <= from) return 0;
    const c = this.scale - 1;
    const buf = new Float32Array(this.d);
    let sum = 0;
    let max = 0;
    for (let r = from; r < to; r++) {
      const active = this.active(acts, r, cols);
      if (active.length === 0) continue; // most rows of most prompts: nothing selected fires
      let e = 0;
      if (active.length === 1) {
        // One latent: ||c a w||^2 without touching D floats.
        const j = active[0]!;
        e = (c * acts[r * this.size + j]!) ** 2 * this.wDecNorm2[j]!;
      } else {
        buf.fill(0);
        this.accumulate(acts, r, active, buf, 0);
        for (const v of buf) e += v * v;
      }
      sum += e;
      if (e > max) max = e;
    }
    return stat === 'max' ? max / this.d : sum / ((to - from) * this.d);
  }

  /** Gate columns (all, or those in `cols`) active on row r. */
  private active(acts: Float32Array, r: number, cols?: Int32Array): number[] {
    const m = this.size;
    const out: number[] = [];
    if (cols) {
      for (const j of cols) if (acts[r * m + j] !== 0) out.push(j);
    } else {
      for (let j = 0; j < m; j++) if (acts[r * m + j] !== 0) out.push(j);
    }
    return out;
  }

  /** out[o..o+D) += (scale - 1) * sum over `cols` of a_j(row) W_dec[j]. */
  private accumulate(acts: Float32Array, row: number, cols: number[], out: Float32Array, o: number): void {
    const D = this.d;
    const c = this.scale - 1;
    for (const j of cols) {
      const s = c * acts[row * this.size + j]!;
      const w = this.wDecS.subarray(j * D, (j + 1) * D);
      for (let e = 0; e < D; e++) out[o + e]! += s * w[e]!;
    }
  }

  /** Columns active on some row in [from, to). */
  activeColumns(acts: Float32Array, from: number, to: number): Set<number> {
    const m = this.size;
    const cols = new Set<number>();
    for (let j = from * m; j < to * m; j++) if (acts[j] !== 0) cols.add(j % m);
    return cols;
  }

  /** Gate columns of the given latents (those in the gate). */
  columns(latents: Iterable<number>): Int32Array {
    const pos = new Map<number, number>();
    this.latents.forEach((l, j) => pos.set(l, j));
    return Int32Array.from([...latents].flatMap((l) => (pos.has(l) ? [pos.get(l)!] : [])));
  }

  async release(): Promise<void> {
    await this.session?.release();
  }
}
