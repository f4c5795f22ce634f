/**
 * Hookable CLIP text encoder (Hugging Face CLIPTextModel numerics) on onnxruntime.
 *
 * Numbering follows Hugging Face everywhere: hidden_states[0] is the embedding output and
 * hidden_states[i] the output of encoder.layers[i-1]; "layer N" means the output of
 * encoder.layers[N] = hidden_states[N+1]. ItD edits layer 8 of SD1.x (hidden_states[9]).
 */
import type { InferenceSession } from 'onnxruntime-node';
import { createSession, f32, f32Data, type SessionOptions } from '../onnx/session.js';
import type { ClipTextConfig } from './config.js';
import { blockGraph, finalNormGraph } from './graph.js';
import type { ClipWeightReader, EmbeddingWeights } from './weights.js';

/** Token ids of a batch, row-major [n, t]; t may be shorter than 77 (causal mask makes it exact). */
export interface TokenBatch {
  ids: Int32Array; // [n, t]
  n: number;
  t: number;
}

/** Residual stream [n, t, D] after some layer, handed to an edit hook. */
export type EditFn = (h: Float32Array, batch: TokenBatch) => Float32Array | Promise<Float32Array>;

export interface EncodeOptions {
  /** Hugging Face hidden_states indices (0..L) to return. */
  hiddenStates?: readonly number[];
  /** Replace the output of encoder.layers[layer] with fn(h) before the remaining blocks run. */
  edit?: { layer: number; fn: EditFn };
}

export interface EncodeResult {
  lastHiddenState: Float32Array; // [n, t, D]
  pooler: Float32Array; // [n, D], final state at the EOS token
  hiddenStates: Map<number, Float32Array>; // index -> [n, t, D]
}

export class ClipTextEncoder {
  private readonly masks = new Map<number, Float32Array>();

  private constructor(
    readonly config: ClipTextConfig,
    private readonly embeddings: EmbeddingWeights,
    private readonly blocks: InferenceSession[],
    private readonly final: InferenceSession,
  ) {}

  /** Builds one session per block from weights read block by block (peak memory ~ one block). */
  static async create(cfg: ClipTextConfig, reader: ClipWeightReader, opts: SessionOptions = {}): Promise<ClipTextEncoder> {
    const embeddings = reader.embeddings();
    const blocks: InferenceSession[] = [];
    for (let i = 0; i < cfg.numLayers; i++) blocks.push(await createSession(blockGraph(cfg, reader.block(i)), opts));
    const final = await createSession(finalNormGraph(cfg, reader.finalNorm()), opts);
    return new ClipTextEncoder(cfg, embeddings, blocks, final);
  }

  get numLayers(): number {
    return this.config.numLayers;
  }

  /** hidden_states[0]: token + position embeddings, [n, t, D]. */
  embed(batch: TokenBatch): Float32Array {
    const { n, t, ids } = batch;
    const { hiddenSize: D, vocabSize: V, maxPositions: P } = this.config;
    if (t > P) throw new Error(`sequence length ${t} exceeds max_position_embeddings ${P}`);
    const out = new Float32Array(n * t * D);
    for (let r = 0; r < n * t; r++) {
      const id = ids[r]!;
      if (id < 0 || id >= V) throw new Error(`token id ${id} at row ${Math.floor(r / t)}, position ${r % t} is outside the vocabulary (size ${V})`);
      const tok = this.embeddings.token.subarray(id * D, id * D + D);
      const pos = this.embeddings.position.subarray((r % t) * D, (r % t) * D + D);
      const o = r * D;
      for (let d = 0; d < D; d++) out[o + d] = tok[d]! + pos[d]!;
    }
    return out;
  }

  /** Runs encoder.layers[from .. to-1] on h: [n, t, D]. */
  async runBlocks(h: Float32Array, n: number, t: number, from: number, to: number): Promise<Float32Array> {
    this.checkRange(from, to);
    const mask = f32(this.causalMask(t), [t, t]);
    for (let i = from; i < to; i++) {
      const out = await this.blocks[i]!.run({ x: f32(h, [n, t, this.config.hiddenSize]), mask });
      h = f32Data(out['y'], 'y');
    }
    return h;
  }

  /** Output of encoder.layers[layer] (hidden_states[layer+1]); runs only blocks 0..layer. */
  async layerOutput(batch: TokenBatch, layer: number): Promise<Float32Array> {
    this.checkLayer(layer);
    return this.runBlocks(this.embed(batch), batch.n, batch.t, 0, layer + 1);
  }

  /** Continues from the output of encoder.layers[layer]: remaining blocks, final LayerNorm, pooling. */
  async resume(h: Float32Array, batch: TokenBatch, layer: number): Promise<{ lastHiddenState: Float32Array; pooler: Float32Array }> {
    this.checkLayer(layer);
    const last = await this.finalNorm(await this.runBlocks(h, batch.n, batch.t, layer + 1, this.numLayers), batch);
    return { lastHiddenState: last, pooler: this.pool(last, batch) };
  }

  async encode(batch: TokenBatch, opts: EncodeOptions = {}): Promise<EncodeResult> {
    const { n, t } = batch;
    const want = new Set(opts.hiddenStates ?? []);
    for (const i of want) {
      if (!Number.isInteger(i) || i < 0 || i > this.numLayers) throw new Error(`hidden_states index ${i} is outside 0..${this.numLayers}`);
    }
    if (opts.edit) this.checkLayer(opts.edit.layer);
    const hiddenStates = new Map<number, Float32Array>();
    let h = this.embed(batch);
    if (want.has(0)) hiddenStates.set(0, h);
    for (let i = 0; i < this.numLayers; i++) {
      h = await this.runBlocks(h, n, t, i, i + 1);
      if (opts.edit?.layer === i) h = await opts.edit.fn(h, batch);
      if (want.has(i + 1)) hiddenStates.set(i + 1, h);
    }
    const lastHiddenState = await this.finalNorm(h, batch);
    return { lastHiddenState, pooler: this.pool(lastHiddenState, batch), hiddenStates };
  }

  /** Position of the pooled (EOS) token per row, as Hugging Face picks it. */
  eosPositions(batch: TokenBatch): Int32Array {
    const { ids, n, t } = batch;
    const eos = this.config.eosTokenId;
    const pos = new Int32Array(n);
    for (let r = 0; r < n; r++) {
      const row = ids.subarray(r * t, r * t + t);
      // Legacy configs (eos_token_id == 2) make HF take the argmax id, which is EOS (49407) in CLIP's vocab.
      let best = 0;
      for (let j = 1; j < t; j++) {
        if (eos === 2 ? row[j]! > row[best]! : row[best] !== eos && row[j] === eos) best = j;
      }
      pos[r] = best;
    }
    return pos;
  }

  async release(): Promise<void> {
    await Promise.all([...this.blocks, this.final].map((s) => s.release()));
  }

  private async finalNorm(h: Float32Array, batch: TokenBatch): Promise<Float32Array> {
    const out = await this.final.run({ x: f32(h, [batch.n, batch.t, this.config.hiddenSize]) });
    return f32Data(out['y'], 'y');
  }

  private pool(last: Float32Array, batch: TokenBatch): Float32Array {
    const D = this.config.hiddenSize;
    const pos = this.eosPositions(batch);
    const out = new Float32Array(batch.n * D);
    for (let r = 0; r < batch.n; r++) out.set(last.subarray((r * batch.t + pos[r]!) * D, (r * batch.t + pos[r]! + 1) * D), r * D);
    return out;
  }

  /** Additive causal mask [t, t]: 0 on and below the diagonal, float32 min above (as HF). */
  private causalMask(t: number): Float32Array {
    let m = this.masks.get(t);
    if (!m) {
      m = new Float32Array(t * t);
      for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) m[i * t + j] = -3.4028234663852886e38;
      this.masks.set(t, m);
    }
    return m;
  }

  private checkLayer(layer: number): void {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.numLayers) {
      throw new Error(`layer ${layer} is outside 0..${this.numLayers - 1} (the model has ${this.numLayers} blocks)`);
    }
  }

  private checkRange(from: number, to: number): void {
    if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from <= to && to <= this.numLayers)) {
      throw new Error(`block range ${from}..${to} is outside 0..${this.numLayers}`);
    }
  }
}
