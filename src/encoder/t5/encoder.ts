/**
 * Hookable T5 v1.1 encoder (Hugging Face T5EncoderModel numerics) on onnxruntime, with the same
 * hook interface as the CLIP encoder: read or replace the residual after any block, then run the rest.
 *
 * Numbering follows Hugging Face: hidden_states[0] is the embedding output, hidden_states[i] for
 * 1 <= i < L the output of encoder.block[i-1], and hidden_states[L] is *after* the final LayerNorm
 * (= last_hidden_state; the raw output of the last block is no hidden state). "layer N" means the
 * output of encoder.block[N].
 *
 * FLUX.1 and SD3 call T5 with the ids only (no attention mask): padding is attended, so a prompt's
 * states depend on how far it is padded. An optional attention mask gives HF's masked semantics.
 */
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { ItdError } from '../../errors.js';
import { createSession, f32, f32Data, i64, tensor, type SessionOptions } from '../../onnx/session.js';
import { checkLayer, checkRange, encodeTower, resumeTower, type ForwardPass } from '../hooks.js';
import type { EncodeOptions, EncodeResult, TextEncoder, TokenBatch } from '../text-encoder.js';
import type { T5Config } from './config.js';
import { t5BlockGraph, t5FinalNormGraph } from './graph.js';
import type { FedWeights, WeightMode } from './linear.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../../io/safetensors.js';
import type { EmbeddingTable, T5WeightReader } from './weights.js';
import { mallocMmapThreshold } from '../../util/addon.js';

/**
 * Allocations from this size up get their own mapping, returned to the system when onnxruntime
 * frees them (src/native/kernels.c). Measured on the 2-block T5-XXL-shape model at 512
 * tokens: peak RSS 2194 -> ~1960 MiB in f32, 1229 -> ~920 MiB in int8; without it glibc keeps
 * the freed activation buffers of every thread that ran a block.
 */
const MMAP_THRESHOLD = 1 << 20;

/** A token batch with an optional HF attention mask [n, t] (1 = attend); absent = attend everywhere. */
export interface T5Batch extends TokenBatch {
  attentionMask?: Uint8Array;
}

export interface T5EncoderOptions extends SessionOptions {
  /** 'f32' (exact, default) or 'int8' (block-quantised weights, ~3.5x less memory). */
  weights?: WeightMode;
}

/** float32 min, HF's additive value for masked keys. */
const MASKED = -3.4028234663852886e38;

/** T5EncoderModel has no pooled output. */
const NO_POOLER = new Float32Array(0);

export class T5Encoder implements TextEncoder, ForwardPass<T5Batch> {
  readonly architecture = 'T5EncoderModel';
  readonly pooledSize = 0;
  /** Bidirectional: every position sees the padding, so rows are always run at their full framed length. */
  readonly lastStateNormed = true;
  readonly causal = false;
  private buckets: { t: number; tensor: Tensor } | undefined;

  private constructor(
    readonly config: T5Config,
    readonly weightMode: WeightMode,
    private readonly embedding: EmbeddingTable,
    private readonly blocks: InferenceSession[],
    private readonly final: InferenceSession,
    private readonly feeds: Record<string, Tensor>[],
  ) {}

  /**
   * One session per block, its weights streamed from the checkpoint in small chunks into the
   * arrays fed to it at every run (feeds[i]; f32 or int8 codes + scales); the embedding stays in
   * its stored precision. No second copy of the model is ever held.
   */
  static async create(cfg: T5Config, reader: T5WeightReader, opts: T5EncoderOptions = {}): Promise<T5Encoder> {
    const mode = opts.weights ?? 'f32';
    mallocMmapThreshold(MMAP_THRESHOLD);
    const embedding = reader.embedding();
    const table = reader.relativeBias();
    const blocks: InferenceSession[] = [];
    const feeds: Record<string, Tensor>[] = [];
    for (let i = 0; i < cfg.numLayers; i++) {
      const fed: FedWeights = new Map();
      blocks.push(await createSession(t5BlockGraph(cfg, reader.block(i), table, mode, fed), opts));
      feeds.push(Object.fromEntries([...fed].map(([name, w]) => [name, tensor(w.type, w.data, w.dims)])));
    }
    const final = await createSession(t5FinalNormGraph(cfg, reader.finalNorm()), opts);
    return new T5Encoder(cfg, mode, embedding, blocks, final, feeds);
  }

  get numLayers(): number {
    return this.config.numLayers;
  }

  get hiddenSize(): number {
    return this.config.hiddenSize;
  }

  /** hidden_states[0]: shared.weight rows (T5 adds no position embedding and no scaling), [n, t, D]. */
  embed(batch: TokenBatch): Float32Array {
    const { n, t, ids } = batch;
    const { hiddenSize: D, vocabSize: V } = this.config;
    const out = new Float32Array(n * t * D);
    for (let r = 0; r < n * t; r++) {
      const id = ids[r]!;
      if (!(id >= 0 && id < V)) {
        throw new ItdError('usage', `token id ${id} at row ${Math.floor(r / t)}, position ${r % t} is outside the vocabulary (size ${V})`, { field: 'input_ids' });
      }
      out.set(this.row(id), r * D);
    }
    return out;
  }

  /** shared.weight[id], [D] in f32. */
  private row(id: number): Float32Array {
    const D = this.config.hiddenSize;
    const e = this.embedding;
    if (e.dtype === 'F32') return e.data.subarray(id * D, id * D + D);
    const bits = e.data.subarray(id * D, id * D + D);
    return e.dtype === 'BF16' ? bf16ArrayToF32(bits) : f16ArrayToF32(bits);
  }

  /** Runs encoder.block[from .. to-1] on h: [n, t, D]; attentionMask [n, t] as in T5Batch. */
  async runBlocks(h: Float32Array, n: number, t: number, from: number, to: number, attentionMask?: Uint8Array): Promise<Float32Array> {
    checkRange(this.numLayers, from, to);
    if (from === to) return h;
    const buckets = this.positionBuckets(t);
    const mask = attentionMask ? f32(additiveMask(n, t, attentionMask), [n, 1, 1, t]) : f32(new Float32Array(t), [1, 1, 1, t]);
    for (let i = from; i < to; i++) {
      const out = await this.blocks[i]!.run({ ...this.feeds[i], x: f32(h, [n, t, this.config.hiddenSize]), buckets, mask });
      h = f32Data(out['y'], 'y');
    }
    return h;
  }

  /** Output of encoder.block[layer]; runs only blocks 0..layer. */
  async layerOutput(batch: T5Batch, layer: number): Promise<Float32Array> {
    checkLayer(this.numLayers, layer);
    return this.runBlocks(this.embed(batch), batch.n, batch.t, 0, layer + 1, batch.attentionMask);
  }

  /** Continues from the output of block `layer`: the remaining blocks, the final norm (and pooling); hidden_states >= layer+1 on request. */
  resume(h: Float32Array, batch: T5Batch, layer: number, hiddenStates: readonly number[] = []): Promise<EncodeResult> {
    return resumeTower(this, h, batch, layer, hiddenStates);
  }

  encode(batch: T5Batch, opts: EncodeOptions = {}): Promise<EncodeResult> {
    return encodeTower(this, batch, opts);
  }

  /** ForwardPass.forward: blocks from..L-1 on h (the edit after its block), then the final LayerNorm; collects the wanted hidden_states. */
  async forward(h: Float32Array, batch: T5Batch, from: number, want: Set<number>, edit: EncodeOptions['edit']): Promise<EncodeResult> {
    const L = this.numLayers;
    const hiddenStates = new Map<number, Float32Array>();
    for (let i = from; i < L; i++) {
      h = await this.runBlocks(h, batch.n, batch.t, i, i + 1, batch.attentionMask);
      if (edit?.layer === i) h = await edit.fn(h, batch);
      if (i + 1 < L && want.has(i + 1)) hiddenStates.set(i + 1, h);
    }
    const lastHiddenState = await this.finalNorm(h, batch);
    if (want.has(L)) hiddenStates.set(L, lastHiddenState);
    return { lastHiddenState, pooler: NO_POOLER, hiddenStates };
  }


  async release(): Promise<void> {
    await Promise.all([...this.blocks, this.final].map((s) => s.release()));
  }

  /** Relative position buckets [t, t] of every block (each gathers its bias from them), computed once per sequence length. */
  private positionBuckets(t: number): Tensor {
    if (this.buckets?.t !== t) this.buckets = { t, tensor: i64(relativePositionBuckets(t, this.config.numBuckets, this.config.maxDistance), [t, t]) };
    return this.buckets.tensor;
  }

  /** encoder.final_layer_norm of any residual state [n, t, D]. */
  async finalNorm(h: Float32Array, batch: TokenBatch): Promise<Float32Array> {
    const out = await this.final.run({ x: f32(h, [batch.n, batch.t, this.config.hiddenSize]) });
    return f32Data(out['y'], 'y');
  }


}

/** HF's extended attention mask [n, t]: 0 where attended, float32 min where masked. */
function additiveMask(n: number, t: number, attentionMask: Uint8Array): Float32Array {
  const m = new Float32Array(n * t);
  if (attentionMask.length !== n * t) throw new ItdError('usage', `attention mask has ${attentionMask.length} entries, expected ${n} x ${t}`, { field: 'attention_mask' });
  for (let i = 0; i < n * t; i++) if (attentionMask[i] === 0) m[i] = MASKED;
  return m;
}

/**
 * HF T5Attention._relative_position_bucket, bidirectional, for every (query i, key j) of a length-t
 * sequence: half the buckets per direction (keys after the query get the upper half), of which the
 * first half are exact offsets and the rest log-spaced up to maxDistance. The log is evaluated in
 * float32 step by step, as torch does, so boundary offsets land in the same bucket. Returns [t, t].
 */
export function relativePositionBuckets(t: number, numBuckets: number, maxDistance: number): BigInt64Array {
  const half = Math.floor(numBuckets / 2);
  const maxExact = Math.floor(half / 2);
  const logRange = Math.fround(Math.log(maxDistance / maxExact));
  const byOffset = new Map<number, number>();
  const bucketOf = (rel: number): number => {
    let b = byOffset.get(rel);
    if (b === undefined) {
      const r = Math.abs(rel);
      const large = maxExact + Math.trunc(Math.fround(Math.fround(Math.fround(Math.log(Math.fround(r / maxExact))) / logRange) * (half - maxExact)));
      b = (rel > 0 ? half : 0) + (r < maxExact ? r : Math.min(large, half - 1));
      byOffset.set(rel, b);
    }
    return b;
  };
  const out = new BigInt64Array(t * t);
  for (let i = 0; i < t; i++) for (let j = 0; j < t; j++) out[i * t + j] = BigInt(bucketOf(j - i));
  return out;
}
