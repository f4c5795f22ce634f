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
import { writeSafetensors, type DType, type TensorIn } from '../io/safetensors.js';
import { toHfT5Config, type T5Config } from '../encoder/t5/config.js';
import { T5_PIECES, t5TrainingWords, writeT5TokenizerDir } from '../tokenizer/index.js';
import { Rng } from '../util/rng.js';

export interface T5WriteOptions {
  seed: number;
  dtype?: DType; // F32 (default), F16 or BF16
  /** One shard per block (plus one for the embedding) with model.safetensors.index.json. */
  sharded?: boolean;
}

/** Writes config.json and the weights of `cfg` into `dir`; generates one shard at a time (peak ~ one block). */
export function writeT5Encoder(dir: string, cfg: T5Config, opts: T5WriteOptions): void {
  fs.mkdirSync(dir, { recursive: true });
  writeJsonAtomic(path.join(dir, 'config.json'), { ...toHfT5Config(cfg), torch_dtype: TORCH_DTYPE[opts.dtype ?? 'F32'] });
  const rng = new Rng(opts.seed);
  const dtype = opts.dtype ?? 'F32';
  const parts = [() => embeddingTensors(rng, cfg, dtype), ...Array.from({ length: cfg.numLayers }, (_, i) => () => blockTensors(rng, cfg, i, dtype))];
  if (!opts.sharded) {
    writeSafetensors(path.join(dir, 'model.safetensors'), Object.assign({}, ...parts.map((p) => p())), { format: 'pt' });
    return;
  }
  const weightMap: Record<string, string> = {};
  let total = 0;
  parts.forEach((make, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(parts.length).padStart(5, '0')}.safetensors`;
    const tensors = make();
    writeSafetensors(path.join(dir, file), tensors, { format: 'pt' });
    for (const [name, t] of Object.entries(tensors)) {
      weightMap[name] = file;
      total += t.data.length * (dtype === 'F32' ? 4 : 2);
    }
  });
  writeJsonAtomic(path.join(dir, 'model.safetensors.index.json'), { metadata: { total_size: total }, weight_map: weightMap });
}

const TORCH_DTYPE: Partial<Record<DType, string>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

function normal(rng: Rng, dtype: DType, shape: number[], std: number, mean = 0): TensorIn {
  return { dtype, shape, data: rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1)), std, mean) };
}

function embeddingTensors(rng: Rng, cfg: T5Config, dtype: DType): Record<string, TensorIn> {
  return {
    'shared.weight': normal(rng, dtype, [cfg.vocabSize, cfg.hiddenSize], 1),
    'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight': normal(rng, dtype, [cfg.numBuckets, cfg.numHeads], 1 / Math.sqrt(cfg.hiddenSize)),
    'encoder.final_layer_norm.weight': normal(rng, dtype, [cfg.hiddenSize], 0.1, 1),
  };
}

function blockTensors(rng: Rng, cfg: T5Config, i: number, dtype: DType): Record<string, TensorIn> {
  const { hiddenSize: D, dFf: F, dKv: dk, numHeads: H } = cfg;
  const inner = H * dk;
  const p = `encoder.block.${i}.layer.`;
  return {
    [`${p}0.layer_norm.weight`]: normal(rng, dtype, [D], 0.1, 1),
    [`${p}0.SelfAttention.q.weight`]: normal(rng, dtype, [inner, D], 1 / Math.sqrt(D * dk)),
    [`${p}0.SelfAttention.k.weight`]: normal(rng, dtype, [inner, D], 1 / Math.sqrt(D)),
    [`${p}0.SelfAttention.v.weight`]: normal(rng, dtype, [inner, D], 1 / Math.sqrt(D)),
    [`${p}0.SelfAttention.o.weight`]: normal(rng, dtype, [D, inner], 1 / Math.sqrt(inner)),
    [`${p}1.layer_norm.weight`]: normal(rng, dtype, [D], 0.1, 1),
    [`${p}1.DenseReluDense.wi_0.weight`]: normal(rng, dtype, [F, D], 1 / Math.sqrt(D)),
    [`${p}1.DenseReluDense.wi_1.weight`]: normal(rng, dtype, [F, D], 1 / Math.sqrt(D)),
    [`${p}1.DenseReluDense.wo.weight`]: normal(rng, dtype, [D, F], 1 / Math.sqrt(F)),
  };
}

/** A preset's T5 component: text_encoder_N/ + tokenizer_N/ of a FLUX.1 or SD3 directory. */
export interface T5PartSpec {
  encoder: string;
  tokenizer: string;
  shape: Pick<T5Config, 'hiddenSize' | 'dKv' | 'dFf' | 'numLayers' | 'numHeads'>;
  /** config.json vocab_size (T5 v1.1: 32128); at least the tokenizer's ids. */
  vocabSize?: number;
  dtype?: DType;
  sharded?: boolean;
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
  writeT5Encoder(path.join(out, spec.encoder), cfg, { seed, ...(spec.dtype ? { dtype: spec.dtype } : {}), ...(spec.sharded ? { sharded: true } : {}) });
  return cfg;
}
