/**
 * T5EncoderModel weights under their exact Hugging Face names, read one tensor at a time from a
 * safetensors checkpoint (one file or sharded; F32, F16 or BF16), so that the whole model never
 * sits in JS memory at once: each block's tensors are converted, handed to its graph, and dropped.
 */
import { ItdError } from '../../errors.js';
import type { Checkpoint } from '../../io/safetensors.js';
import type { T5Config } from './config.js';

/**
 * A large [rows, cols] tensor read only when streamed, a few MiB of whole rows at a time (converted
 * to f32), so that serialising it into a model leaves no tensor-sized garbage behind.
 */
export interface LazyTensor {
  rows: number;
  cols: number;
  /** Calls fn with consecutive row chunks [k, cols] starting at row `row0`, all in one reused buffer: consume each before returning. */
  stream(fn: (chunk: Float32Array, row0: number) => void): void;
}

/** Elements per streamed chunk (4 MiB of f32). */
const CHUNK = 1 << 20;

/**
 * One encoder block, shapes checked on creation; Linear weights keep PyTorch's [out, in] layout and
 * are read lazily (the graph builder streams them into the model bytes); no biases anywhere.
 */
export interface T5BlockWeights {
  ln1: Float32Array; // layer.0.layer_norm [D]
  q: LazyTensor; k: LazyTensor; v: LazyTensor; // [H*dKv, D]
  o: LazyTensor; // [D, H*dKv]
  ln2: Float32Array; // layer.1.layer_norm [D]
  wi0: LazyTensor; wi1: LazyTensor; // [dFf, D]
  wo: LazyTensor; // [D, dFf]
}

/** The token embedding [V, D] as stored: half-precision checkpoints keep their 16-bit rows (converted per gathered row, exactly). */
export type EmbeddingTable = { dtype: 'F32'; data: Float32Array } | { dtype: 'F16' | 'BF16'; data: Uint16Array };

/** The tied token embedding: HF always stores `shared.weight`; `encoder.embed_tokens.weight` may be absent. */
const EMBEDDING_KEYS = ['shared.weight', 'encoder.embed_tokens.weight'];

export class T5WeightReader {
  constructor(private readonly ckpt: Checkpoint, private readonly cfg: T5Config, private readonly source: string) {
    if (!EMBEDDING_KEYS.some((k) => ckpt.has(k))) {
      const seen = ckpt.names().slice(0, 5).join(', ');
      throw new ItdError('format', `${source}: no 'shared.weight' tensor; this is not a Hugging Face T5EncoderModel checkpoint (first keys: ${seen})`, { file: source, field: 'shared.weight' });
    }
    for (let i = 0; i < cfg.numLayers; i++) this.check(`encoder.block.${i}.layer.0.layer_norm.weight`, [cfg.hiddenSize]);
    if (ckpt.has(`encoder.block.${cfg.numLayers}.layer.0.layer_norm.weight`)) {
      throw new ItdError('mismatch', `${source}: checkpoint has more than num_layers=${cfg.numLayers} blocks; config and weights disagree`, { file: source, field: 'num_layers' });
    }
  }

  /** [V, D] */
  embedding(): EmbeddingTable {
    const { vocabSize: V, hiddenSize: D } = this.cfg;
    const key = EMBEDDING_KEYS.find((k) => this.ckpt.has(k))!;
    this.check(key, [V, D]);
    const { dtype } = this.ckpt.info(key);
    if (dtype === 'F16' || dtype === 'BF16') {
      const raw = this.ckpt.readRaw(key);
      return { dtype, data: new Uint16Array(raw.buffer, 0, raw.byteLength / 2) };
    }
    return { dtype: 'F32', data: this.ckpt.readF32(key) };
  }

  /** relative_attention_bias.weight of block 0 (the only block that has one): [numBuckets, H]. */
  relativeBias(): Float32Array {
    return this.tensor('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight', [this.cfg.numBuckets, this.cfg.numHeads]);
  }

  block(i: number): T5BlockWeights {
    const { hiddenSize: D, dFf: F } = this.cfg;
    const inner = this.cfg.numHeads * this.cfg.dKv;
    const p = `encoder.block.${i}.layer.`;
    const t = (name: string, shape: number[]) => this.tensor(p + name, shape);
    const lazy = (name: string, [rows, cols]: [number, number]): LazyTensor => {
      this.check(p + name, [rows, cols]);
      const step = Math.max(1, Math.floor(CHUNK / cols));
      return {
        rows,
        cols,
        stream: (fn) => {
          const buf = new Float32Array(Math.min(rows, step) * cols);
          for (let r = 0; r < rows; r += step) {
            const r1 = Math.min(rows, r + step);
            fn(this.ckpt.readF32SliceInto(p + name, r * cols, r1 * cols, buf.subarray(0, (r1 - r) * cols)), r);
          }
        },
      };
    };
    return {
      ln1: t('0.layer_norm.weight', [D]),
      q: lazy('0.SelfAttention.q.weight', [inner, D]),
      k: lazy('0.SelfAttention.k.weight', [inner, D]),
      v: lazy('0.SelfAttention.v.weight', [inner, D]),
      o: lazy('0.SelfAttention.o.weight', [D, inner]),
      ln2: t('1.layer_norm.weight', [D]),
      wi0: lazy('1.DenseReluDense.wi_0.weight', [F, D]),
      wi1: lazy('1.DenseReluDense.wi_1.weight', [F, D]),
      wo: lazy('1.DenseReluDense.wo.weight', [D, F]),
    };
  }

  finalNorm(): Float32Array {
    return this.tensor('encoder.final_layer_norm.weight', [this.cfg.hiddenSize]);
  }

  /** Closes the checkpoint: call after every block's graph is serialised (lazy tensors read from it). */
  close(): void {
    this.ckpt.close();
  }

  private check(name: string, shape: number[]): void {
    if (!this.ckpt.has(name)) {
      const hint = this.ckpt.has('encoder.block.0.layer.1.DenseReluDense.wi.weight') ? 'the checkpoint has DenseReluDense.wi (T5 v1.0, not gated); FLUX.1/SD3 use T5 v1.1' : undefined;
      throw new ItdError('format', `${this.source}: missing tensor '${name}' (expected shape [${shape.join(', ')}])`, { file: this.source, field: name, hint });
    }
    const got = this.ckpt.info(name).shape;
    if (got.length !== shape.length || got.some((d, j) => d !== shape[j])) {
      throw new ItdError('mismatch', `${this.source}: tensor '${name}' has shape [${got.join(', ')}], config.json implies [${shape.join(', ')}]`, { file: this.source, field: name });
    }
  }

  private tensor(name: string, shape: number[]): Float32Array {
    this.check(name, shape);
    return this.ckpt.readF32(name);
  }
}
