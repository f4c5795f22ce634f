/**
 * Synthetic T5 v1.1 encoders: a Hugging Face T5EncoderModel directory (config.json + safetensors,
 * optionally sharded with model.safetensors.index.json as FLUX.1 ships text_encoder_2/) with
 * deterministic random weights drawn as HF's T5 initialisation does (q ~ N(0, 1/(D dKv)),
 * k, v, wi ~ N(0, 1/D), o ~ N(0, 1/(H dKv)), wo ~ N(0, 1/dFf), shared ~ N(0, 1)), with LayerNorm
 * weights ~ N(1, 0.1) so that a norm read from the wrong tensor shows up in parity tests.
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.js';
import { writeSafetensorsStream, type TensorOut } from '../io/safetensors.js';
import { toHfT5Config, type T5Config } from '../encoder/t5/config.js';
import { T5_PIECES, t5TrainingWords, writeT5TokenizerDir } from '../tokenizer/index.js';
import { Rng } from '../util/rng.js';

export interface T5WriteOptions {
  seed: number;
  dtype?: 'F32' | 'F16' | 'BF16'; // F32 (default)
  /**
   * Shards of at most this many bytes with model.safetensors.index.json, split between tensors in
   * write order as transformers' save_pretrained(max_shard_size) does (FLUX.1's text_encoder_2: 5 GB,
   * two shards); a tensor larger than the limit gets a shard of its own. Absent, or when everything
   * fits in one shard: a single model.safetensors.
   */
  maxShardBytes?: number;
}

/**
 * Writes config.json and the weights of `cfg` into `dir`. Each tensor is drawn only when the writer
 * reaches it (in a fixed order: embedding, position bias and final norm, then block by block), so
 * generation holds one tensor in f32 at a time: T5-XXL's largest is shared.weight (502 MiB), its
 * checkpoint 9.5 GB; measured peak RSS ~620 MiB whatever the depth (1 or 3 XXL blocks alike).
 */
export function writeT5Encoder(dir: string, cfg: T5Config, opts: T5WriteOptions): void {
  fs.mkdirSync(dir, { recursive: true });
  const dtype = opts.dtype ?? 'F32';
  writeJsonAtomic(path.join(dir, 'config.json'), { ...toHfT5Config(cfg), torch_dtype: TORCH_DTYPE[dtype] });
  const rng = new Rng(opts.seed);
  const plan = t5ShardPlan(cfg, dtype, opts.maxShardBytes ?? Infinity);
  const shards = plan.map((shard) => shard.map(
    ({ name, shape, std, mean }): TensorOut => ({ name, dtype, shape, make: () => rng.fillNormal(new Float32Array(shape.reduce((x, y) => x * y, 1)), std, mean) }),
  ));
  if (shards.length === 1) {
    writeSafetensorsStream(path.join(dir, 'model.safetensors'), shards[0]!, { format: 'pt' });
    return;
  }
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    writeSafetensorsStream(path.join(dir, file), shard, { format: 'pt' });
    for (const e of shard) weightMap[e.name] = file;
  });
  const total = plan.flat().reduce((sum, d) => sum + d.bytes, 0);
  writeJsonAtomic(path.join(dir, 'model.safetensors.index.json'), { metadata: { total_size: total }, weight_map: weightMap });
}

/**
 * The tensors of `cfg` in draw order, cut into consecutive shards of at most maxBytes (a larger
 * tensor alone in its shard), as transformers splits a state dict.
 */
export function t5ShardPlan(cfg: T5Config, dtype: 'F32' | 'F16' | 'BF16', maxBytes: number): (Draw & { bytes: number })[][] {
  const draws = [...embeddingTensors(cfg), ...Array.from({ length: cfg.numLayers }, (_, i) => blockTensors(cfg, i)).flat()];
  const shards: (Draw & { bytes: number })[][] = [[]];
  let size = 0;
  for (const d of draws) {
    const bytes = d.shape.reduce((x, y) => x * y, 1) * DTYPE_BYTES[dtype];
    if (size + bytes > maxBytes && shards.at(-1)!.length > 0) {
      shards.push([]);
      size = 0;
    }
    shards.at(-1)!.push({ ...d, bytes });
    size += bytes;
  }
  return shards;
}

const DTYPE_BYTES = { F32: 4, F16: 2, BF16: 2 } as const;
const TORCH_DTYPE: Record<keyof typeof DTYPE_BYTES, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/** A tensor to draw: N(mean, std^2) of `shape`. */
export interface Draw {
  name: string;
  shape: number[];
  std: number;
  mean?: number;
}

function embeddingTensors(cfg: T5Config): Draw[] {
  return [
    { name: 'shared.weight', shape: [cfg.vocabSize, cfg.hiddenSize], std: 1 },
    { name: 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight', shape: [cfg.numBuckets, cfg.numHeads], std: 1 / Math.sqrt(cfg.hiddenSize) },
    { name: 'encoder.final_layer_norm.weight', shape: [cfg.hiddenSize], std: 0.1, mean: 1 },
  ];
}

function blockTensors(cfg: T5Config, i: number): Draw[] {
  const { hiddenSize: D, dFf: F, dKv: dk, numHeads: H } = cfg;
  const inner = H * dk;
  const p = `encoder.block.${i}.layer.`;
  return [
    { name: `${p}0.layer_norm.weight`, shape: [D], std: 0.1, mean: 1 },
    { name: `${p}0.SelfAttention.q.weight`, shape: [inner, D], std: 1 / Math.sqrt(D * dk) },
    { name: `${p}0.SelfAttention.k.weight`, shape: [inner, D], std: 1 / Math.sqrt(D) },
    { name: `${p}0.SelfAttention.v.weight`, shape: [inner, D], std: 1 / Math.sqrt(D) },
    { name: `${p}0.SelfAttention.o.weight`, shape: [D, inner], std: 1 / Math.sqrt(inner) },
    { name: `${p}1.layer_norm.weight`, shape: [D], std: 0.1, mean: 1 },
    { name: `${p}1.DenseReluDense.wi_0.weight`, shape: [F, D], std: 1 / Math.sqrt(D) },
    { name: `${p}1.DenseReluDense.wi_1.weight`, shape: [F, D], std: 1 / Math.sqrt(D) },
    { name: `${p}1.DenseReluDense.wo.weight`, shape: [D, F], std: 1 / Math.sqrt(F) },
  ];
}

/** A preset's T5 component: text_encoder_N/ + tokenizer_N/ of a FLUX.1 or SD3 directory. */
export interface T5PartSpec {
  encoder: string;
  tokenizer: string;
  shape: Pick<T5Config, 'hiddenSize' | 'dKv' | 'dFf' | 'numLayers' | 'numHeads'>;
  /** config.json vocab_size (T5 v1.1: 32128); at least the tokenizer's ids. */
  vocabSize?: number;
  dtype?: 'F32' | 'F16' | 'BF16';
  /** T5WriteOptions.maxShardBytes. */
  maxShardBytes?: number;
}

/**
 * Writes the tokenizer (a project-trained Unigram tokenizer.json of T5 v1.1's size, 32100 ids, over
 * a general word-frequency table: common words and person names whole, as in the real vocabulary)
 * and the T5EncoderModel of a preset.
 */
export function writeT5Part(out: string, spec: T5PartSpec, seed: number): T5Config {
  const ids = writeT5TokenizerDir(path.join(out, spec.tokenizer), t5TrainingWords(), T5_PIECES);
  const cfg: T5Config = {
    ...spec.shape,
    // T5 v1.1 rounds the vocabulary up to a multiple of 128 (32100 ids -> 32128).
    vocabSize: Math.max(spec.vocabSize ?? 0, Math.ceil(ids / 128) * 128),
    numBuckets: 32,
    maxDistance: 128,
    layerNormEps: 1e-6,
    padTokenId: 0,
    eosTokenId: 1,
  };
  writeT5Encoder(path.join(out, spec.encoder), cfg, { seed, ...(spec.dtype ? { dtype: spec.dtype } : {}), ...(spec.maxShardBytes ? { maxShardBytes: spec.maxShardBytes } : {}) });
  return cfg;
}
