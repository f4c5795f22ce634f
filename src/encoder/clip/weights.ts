/**
 * CLIP text-tower weights under their exact Hugging Face names, read tensor by tensor from a
 * safetensors checkpoint (one file or sharded) or an older PyTorch zip `pytorch_model.bin`, and
 * checked against the config's shapes.
 */
import fs from 'node:fs';
import { endianness } from 'node:os';
import path from 'node:path';
import { formatError, ItdError } from '../../errors.js';
import { HeldFiles } from '../../io/files.js';
import { checkFileOnce } from '../../io/hash.js';
import { Checkpoint, readF32Rows } from '../../io/safetensors.js';
import type { WeightSource } from '../../onnx/graph.js';
import { openTensorFile, type TensorFile } from '../../io/tensor-file.js';
import type { ClipTextConfig } from './config.js';

const TORCH_WEIGHTS = 'pytorch_model.bin';

/**
 * The text encoder's weights in a Hugging Face model directory: model(.fp16).safetensors (or its
 * sharded index) first, as transformers prefers them; else pytorch_model.bin (a torch zip state dict).
 */
export function openTextEncoderWeights(dir: string): TensorFile {
  const hasSafetensors = fs.readdirSync(dir).some((f) => /^model(\.fp16)?\.safetensors(\.index\.json)?$/.test(f));
  const bin = path.join(dir, TORCH_WEIGHTS);
  return !hasSafetensors && fs.existsSync(bin) ? openTensorFile(bin) : Checkpoint.open(dir, ['model']);
}

/** The tensors of one pre-LayerNorm transformer block (Linear weights keep PyTorch's [out, in] layout). */
export type BlockKey =
  | 'ln1W' | 'ln1B' // [D]
  | 'qW' | 'qB' | 'kW' | 'kB' | 'vW' | 'vB' // [D, D], [D]
  | 'outW' | 'outB' // [D, D], [D]
  | 'ln2W' | 'ln2B' // [D]
  | 'fc1W' | 'fc1B' // [I, D], [I]
  | 'fc2W' | 'fc2B'; // [D, I], [D]
export type BlockWeights = Record<BlockKey, Float32Array>;

/**
 * A weight as onnxruntime gets it: a byte range of a safetensors file that holds it as f32
 * (onnxruntime reads it there itself, so the weights never pass through JS memory or the
 * protobuf), else the converted values (f16/bf16 checkpoints, torch zips).
 */
export type WeightRef = { dims: number[] } & WeightSource;
export type BlockRefs = Record<BlockKey, WeightRef>;

/** Hugging Face names (under encoder.layers.{i}.) and shapes of a block's tensors. */
function blockTensorNames(D: number, I: number): Record<BlockKey, [string, number[]]> {
  return {
    ln1W: ['layer_norm1.weight', [D]], ln1B: ['layer_norm1.bias', [D]],
    qW: ['self_attn.q_proj.weight', [D, D]], qB: ['self_attn.q_proj.bias', [D]],
    kW: ['self_attn.k_proj.weight', [D, D]], kB: ['self_attn.k_proj.bias', [D]],
    vW: ['self_attn.v_proj.weight', [D, D]], vB: ['self_attn.v_proj.bias', [D]],
    outW: ['self_attn.out_proj.weight', [D, D]], outB: ['self_attn.out_proj.bias', [D]],
    ln2W: ['layer_norm2.weight', [D]], ln2B: ['layer_norm2.bias', [D]],
    fc1W: ['mlp.fc1.weight', [I, D]], fc1B: ['mlp.fc1.bias', [I]],
    fc2W: ['mlp.fc2.weight', [D, I]], fc2B: ['mlp.fc2.bias', [D]],
  };
}

export interface EmbeddingWeights {
  token: Float32Array; // [V, D]
  position: Float32Array; // [P, D]
}

/**
 * token_embedding.weight [V, D] by row. A prompt uses a few dozen of its 49408 rows, so an f32
 * safetensors table stays in the file and each lookup reads just its rows there (checked finite
 * with the block weights by checkRefs); converted tables (f16/bf16, torch zips) are held in memory.
 * The file stays open from load to release(), so a checkpoint replaced on disk meanwhile (by
 * rename, as itd's writers and downloads do) cannot mix its rows into the loaded model's.
 */
export class TokenTable {
  private readonly files: HeldFiles;

  constructor(private readonly ref: WeightRef) {
    this.files = new HeldFiles('file' in ref ? [ref.file] : [], 'a safetensors file');
  }

  /** Rows by id (each id once); ids must be in 0..V-1. */
  rows(ids: Iterable<number>): Map<number, Float32Array> {
    const [, D] = this.ref.dims as [number, number];
    if ('data' in this.ref) {
      const data = this.ref.data;
      return new Map([...new Set(ids)].map((id) => [id, data.subarray(id * D, id * D + D)]));
    }
    // After release() the encoder rebuilds its sessions from the file on use; so does the table.
    return readF32Rows(this.ref.file, this.files.fd(this.ref.file), this.ref.offset, D, ids);
  }

  close(): void {
    this.files.close();
  }
}

export interface FinalNormWeights { w: Float32Array; b: Float32Array } // [D]

/** Reads weights lazily so that a whole model never sits in JS memory at once. */
export class ClipWeightReader {
  readonly prefix: string;
  /** Tensors handed out as file ranges and not yet checked finite, by file. */
  private readonly unchecked = new Map<string, string[]>();

  constructor(private readonly ckpt: TensorFile, private readonly cfg: ClipTextConfig, private readonly source: string) {
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

  /** What the encoder looks tokens up in (see TokenTable) and position_embedding.weight [P, D]. */
  embeddingRefs(): { token: TokenTable; position: Float32Array } {
    const { vocabSize: V, maxPositions: P, hiddenSize: D } = this.cfg;
    const position = this.tensor('embeddings.position_embedding.weight', [P, D]);
    return { token: new TokenTable(this.ref('embeddings.token_embedding.weight', [V, D])), position };
  }

  block(i: number): BlockWeights {
    return this.blockTensors(i, (key, shape) => this.tensor(key, shape));
  }

  /** Block i's weights as references (see WeightRef); checkRefs checks them finite, as readF32 would. */
  blockRefs(i: number): BlockRefs {
    return this.blockTensors(i, (key, shape) => this.ref(key, shape));
  }

  finalNormRefs(): { w: WeightRef; b: WeightRef } {
    const D = this.cfg.hiddenSize;
    return { w: this.ref('final_layer_norm.weight', [D]), b: this.ref('final_layer_norm.bias', [D]) };
  }

  finalNorm(): FinalNormWeights {
    const D = this.cfg.hiddenSize;
    return { w: this.tensor('final_layer_norm.weight', [D]), b: this.tensor('final_layer_norm.bias', [D]) };
  }

  close(): void {
    this.ckpt.close();
  }

  private blockTensors<T>(i: number, get: (key: string, shape: number[]) => T): Record<BlockKey, T> {
    const names = blockTensorNames(this.cfg.hiddenSize, this.cfg.intermediateSize);
    return Object.fromEntries(Object.entries(names).map(([k, [name, shape]]) => [k, get(`encoder.layers.${i}.${name}`, shape)])) as Record<BlockKey, T>;
  }

  private ref(name: string, dims: number[]): WeightRef {
    this.tensor(name, dims, false);
    const key = this.prefix + name;
    const info = this.ckpt.info(key);
    if (!(this.ckpt instanceof Checkpoint) || info.dtype !== 'F32' || endianness() !== 'LE') return { dims, data: this.ckpt.readF32(key) };
    this.unchecked.set(info.file, [...(this.unchecked.get(info.file) ?? []), key]);
    return { dims, file: info.file, offset: info.begin, length: info.end - info.begin };
  }

  /**
   * The finiteness check readF32 makes, for every tensor handed out as a file range since the last
   * call, streamed; remembered per file (as its digest is), so an unchanged checkpoint is read once.
   */
  checkRefs(): void {
    const ckpt = this.ckpt as Checkpoint;
    for (const [file, names] of this.unchecked) checkFileOnce(file, `finite f32: ${names.join(',')}`, () => names.forEach((n) => ckpt.assertFinite(n)));
    this.unchecked.clear();
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
