/**
 * CLIP text-tower weights under their exact Hugging Face names, read tensor by tensor from a
 * safetensors checkpoint (one file or sharded) and checked against the config's shapes.
 */
import { formatError, ItdError } from '../../errors.js';
import { Checkpoint } from '../../io/safetensors.js';
import type { ClipTextConfig } from './config.js';

/** One pre-LayerNorm transformer block; Linear weights keep PyTorch's [out, in] layout. */
export interface BlockWeights {
  ln1W: Float32Array; ln1B: Float32Array; // [D]
  qW: Float32Array; qB: Float32Array; // [D, D], [D]
  kW: Float32Array; kB: Float32Array;
  vW: Float32Array; vB: Float32Array;
  outW: Float32Array; outB: Float32Array; // [D, D], [D]
  ln2W: Float32Array; ln2B: Float32Array; // [D]
  fc1W: Float32Array; fc1B: Float32Array; // [I, D], [I]
  fc2W: Float32Array; fc2B: Float32Array; // [D, I], [D]
}

export interface EmbeddingWeights {
  token: Float32Array; // [V, D]
  position: Float32Array; // [P, D]
}

export interface FinalNormWeights { w: Float32Array; b: Float32Array } // [D]

/** Reads weights lazily so that a whole model never sits in JS memory at once. */
export class ClipWeightReader {
  readonly prefix: string;

  constructor(private readonly ckpt: Checkpoint, private readonly cfg: ClipTextConfig, private readonly source: string) {
    const bare = 'embeddings.token_embedding.weight';
    if (ckpt.has(`text_model.${bare}`)) this.prefix = 'text_model.';
    else if (ckpt.has(bare)) this.prefix = '';
    else {
      const seen = ckpt.names().slice(0, 5).join(', ');
      throw formatError(source, `text_model.${bare}`, `missing; this is not a Hugging Face CLIPTextModel checkpoint (first keys: ${seen})`);
    }
    for (let i = 0; i < cfg.numLayers; i++) this.tensor(`encoder.layers.${i}.layer_norm1.weight`, [cfg.hiddenSize], false);
    if (ckpt.has(`${this.prefix}encoder.layers.${cfg.numLayers}.layer_norm1.weight`)) {
      throw new ItdError('mismatch', `${source}: checkpoint has more than num_hidden_layers=${cfg.numLayers} blocks; config and weights disagree`, { file: source, field: 'num_hidden_layers' });
    }
    if (cfg.architecture === 'CLIPTextModelWithProjection') this.projection(false);
  }

  /** CLIPTextModelWithProjection's text_projection.weight [projection_dim, D] (a Linear without bias, outside text_model). */
  projection(read = true): Float32Array {
    return this.tensor('text_projection.weight', [this.cfg.projectionDim!, this.cfg.hiddenSize], read, '');
  }

  embeddings(): EmbeddingWeights {
    const { vocabSize: V, maxPositions: P, hiddenSize: D } = this.cfg;
    return {
      token: this.tensor('embeddings.token_embedding.weight', [V, D]),
      position: this.tensor('embeddings.position_embedding.weight', [P, D]),
    };
  }

  block(i: number): BlockWeights {
    const { hiddenSize: D, intermediateSize: I } = this.cfg;
    const p = `encoder.layers.${i}.`;
    const t = (name: string, shape: number[]) => this.tensor(p + name, shape);
    return {
      ln1W: t('layer_norm1.weight', [D]), ln1B: t('layer_norm1.bias', [D]),
      qW: t('self_attn.q_proj.weight', [D, D]), qB: t('self_attn.q_proj.bias', [D]),
      kW: t('self_attn.k_proj.weight', [D, D]), kB: t('self_attn.k_proj.bias', [D]),
      vW: t('self_attn.v_proj.weight', [D, D]), vB: t('self_attn.v_proj.bias', [D]),
      outW: t('self_attn.out_proj.weight', [D, D]), outB: t('self_attn.out_proj.bias', [D]),
      ln2W: t('layer_norm2.weight', [D]), ln2B: t('layer_norm2.bias', [D]),
      fc1W: t('mlp.fc1.weight', [I, D]), fc1B: t('mlp.fc1.bias', [I]),
      fc2W: t('mlp.fc2.weight', [D, I]), fc2B: t('mlp.fc2.bias', [D]),
    };
  }

  finalNorm(): FinalNormWeights {
    const D = this.cfg.hiddenSize;
    return { w: this.tensor('final_layer_norm.weight', [D]), b: this.tensor('final_layer_norm.bias', [D]) };
  }

  close(): void {
    this.ckpt.close();
  }

  private tensor(name: string, shape: number[], read = true, prefix = this.prefix): Float32Array {
    const key = prefix + name;
    if (!this.ckpt.has(key)) throw new ItdError('format', `${this.source}: missing tensor '${key}' (expected shape [${shape.join(', ')}])`, { file: this.source, field: key });
    const got = this.ckpt.info(key).shape;
    if (got.length !== shape.length || got.some((d, j) => d !== shape[j])) {
      throw new ItdError('mismatch', `${this.source}: tensor '${key}' has shape [${got.join(', ')}], config.json implies [${shape.join(', ')}]`, { file: this.source, field: key });
    }
    return read ? this.ckpt.readF32(key) : new Float32Array(0);
  }
}
