/**
 * Synthetic CLIP text models: complete diffusers-layout directories with deterministic random
 * weights at realistic scales, so every loader and numeric path runs without downloading anything.
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.js';
import { writeSafetensors, type DType, type TensorIn } from '../io/safetensors.js';
import { toHfConfig, type ClipTextConfig } from '../encoder/clip/config.js';
import { ClipTokenizer, FALLBACK_CORPUS, trainBpe } from '../tokenizer/index.js';
import { ItdError } from '../errors.js';
import { Rng } from '../util/rng.js';
import type { T5Config } from '../encoder/t5/config.js';
import { writeT5Part, type T5PartSpec } from './t5.js';

export type Preset = 'tiny' | 'sd1' | 'sd2' | 'sdxl' | 'sdxl-tiny' | 'flux-tiny' | 'flux' | 'flux-xxl2' | 'flux-xxl' | 'sd3-tiny';

/** Merges of the project-owned fallback vocabulary (used when no CLIP vocabulary is given). */
const FALLBACK_MERGES = 2000;

type Shape = Pick<ClipTextConfig, 'hiddenSize' | 'numLayers' | 'numHeads' | 'intermediateSize' | 'hiddenAct'>;

/** One text encoder of a preset, written as diffusers components `encoder`/ and `tokenizer`/. */
interface PartSpec {
  encoder: string;
  tokenizer: string;
  shape: Shape;
  padToken: string; // SD1.x pads with <|endoftext|>, SD2.x and SDXL's tokenizer_2 with "!"
  /** CLIPTextModelWithProjection's projection_dim (SDXL's text_encoder_2). */
  projectionDim?: number;
}

interface PresetSpec {
  pipeline: 'StableDiffusionPipeline' | 'StableDiffusionXLPipeline' | 'FluxPipeline' | 'StableDiffusion3Pipeline';
  parts: PartSpec[];
  /** FLUX.1 / SD3: the T5 component, after the CLIP parts. */
  t5?: T5PartSpec;
  /**
   * Write the special-token ids the released SD/SDXL text-encoder configs carry (bos 0, eos 2,
   * pad 1: CLIP's legacy values) instead of the tokenizer's, so pooling must use HF's argmax rule.
   */
  legacyIds?: boolean;
}

const CLIP_L: Shape = { hiddenSize: 768, numLayers: 12, numHeads: 12, intermediateSize: 3072, hiddenAct: 'quick_gelu' };
const EOT = '<|endoftext|>';
const CLIP_TINY: Shape = { hiddenSize: 64, numLayers: 12, numHeads: 4, intermediateSize: 256, hiddenAct: 'quick_gelu' };
const T5_TINY = { hiddenSize: 64, dKv: 16, dFf: 128, numLayers: 8, numHeads: 4 };
/** google/t5-v1_1-xxl's encoder (FLUX.1's text_encoder_2, SD3's text_encoder_3). */
const T5_XXL = { hiddenSize: 4096, dKv: 64, dFf: 10240, numLayers: 24, numHeads: 64 };
const flux = (clip: Shape, t5: Omit<T5PartSpec, 'encoder' | 'tokenizer'>): PresetSpec => ({
  pipeline: 'FluxPipeline',
  legacyIds: true,
  parts: [{ encoder: 'text_encoder', tokenizer: 'tokenizer', shape: clip, padToken: EOT }],
  t5: { encoder: 'text_encoder_2', tokenizer: 'tokenizer_2', ...t5 },
});
const one = (shape: Shape, padToken: string): PresetSpec => ({ pipeline: 'StableDiffusionPipeline', parts: [{ encoder: 'text_encoder', tokenizer: 'tokenizer', shape, padToken }] });

export const PRESETS: Record<Preset, PresetSpec> = {
  tiny: one(CLIP_TINY, EOT),
  sd1: one(CLIP_L, EOT),
  sd2: one({ hiddenSize: 1024, numLayers: 23, numHeads: 16, intermediateSize: 4096, hiddenAct: 'gelu' }, '!'),
  // SDXL: CLIP ViT-L + OpenCLIP ViT-bigG (1280, 32 layers, 20 heads, MLP 5120, exact gelu, projection 1280).
  sdxl: {
    pipeline: 'StableDiffusionXLPipeline',
    legacyIds: true,
    parts: [
      { encoder: 'text_encoder', tokenizer: 'tokenizer', shape: CLIP_L, padToken: EOT },
      { encoder: 'text_encoder_2', tokenizer: 'tokenizer_2', shape: { hiddenSize: 1280, numLayers: 32, numHeads: 20, intermediateSize: 5120, hiddenAct: 'gelu' }, padToken: '!', projectionDim: 1280 },
    ],
  },
  // Widths, depths and the projection all differ between the towers, so any size mix-up fails loudly.
  'sdxl-tiny': {
    pipeline: 'StableDiffusionXLPipeline',
    legacyIds: true,
    parts: [
      { encoder: 'text_encoder', tokenizer: 'tokenizer', shape: { hiddenSize: 48, numLayers: 12, numHeads: 4, intermediateSize: 192, hiddenAct: 'quick_gelu' }, padToken: EOT },
      { encoder: 'text_encoder_2', tokenizer: 'tokenizer_2', shape: { hiddenSize: 64, numLayers: 32, numHeads: 4, intermediateSize: 256, hiddenAct: 'gelu' }, padToken: '!', projectionDim: 80 },
    ],
  },
  // FLUX.1: CLIP-L (pooled only) + T5 v1.1 (text_encoder_2). flux: T5-base size (768, 12 blocks,
  // d_ff 2048) for benchmarks; flux-xxl: T5-XXL itself (4096, 64 heads, d_ff 10240, 24 blocks:
  // 4.76 B parameters), bf16 in two shards of <= 5 GB as FLUX.1 ships text_encoder_2/ (9.5 GB);
  // flux-xxl2: the same shapes with 2 blocks (in 500 MB shards, so that it is sharded too).
  'flux-tiny': flux(CLIP_TINY, { shape: T5_TINY }),
  flux: flux(CLIP_L, { shape: { hiddenSize: 768, dKv: 64, dFf: 2048, numLayers: 12, numHeads: 12 }, vocabSize: 32128 }),
  'flux-xxl2': flux(CLIP_L, { shape: { ...T5_XXL, numLayers: 2 }, vocabSize: 32128, dtype: 'BF16', maxShardBytes: 500e6 }),
  'flux-xxl': flux(CLIP_L, { shape: T5_XXL, vocabSize: 32128, dtype: 'BF16', maxShardBytes: 5e9 }),
  // SD3: CLIP-L and CLIP-G with projections + T5 (text_encoder_3), T5 wider than both CLIPs together.
  'sd3-tiny': {
    pipeline: 'StableDiffusion3Pipeline',
    legacyIds: true,
    parts: [
      { encoder: 'text_encoder', tokenizer: 'tokenizer', shape: { hiddenSize: 48, numLayers: 12, numHeads: 4, intermediateSize: 192, hiddenAct: 'quick_gelu' }, padToken: EOT, projectionDim: 48 },
      // Shallower than SDXL-tiny's 32-block bigG: the float64 reference's exact gelu is slow.
      { encoder: 'text_encoder_2', tokenizer: 'tokenizer_2', shape: { hiddenSize: 64, numLayers: 6, numHeads: 4, intermediateSize: 128, hiddenAct: 'gelu' }, padToken: '!', projectionDim: 80 },
    ],
    t5: { encoder: 'text_encoder_3', tokenizer: 'tokenizer_3', shape: { ...T5_TINY, hiddenSize: 128, dKv: 32 } },
  },
};

export interface SynthOptions {
  out: string;
  preset: Preset;
  seed: number;
  dtype?: 'f32' | 'f16';
  /** OpenAI's bpe_simple_vocab_16e6.txt.gz; without it a small project-owned vocabulary is used. */
  vocab?: string;
  /** Leave out the attention sink (plain random attention: a harder, still valid CLIPTextModel). */
  noSink?: boolean;
}

export interface SynthPart {
  name: string;
  config: ClipTextConfig;
  tokenizer: ClipTokenizer;
}

/** Writes the preset's diffusers directory; returns its CLIP parts (the first is text_encoder) and its T5 config, if any. */
export function synthModel(opts: SynthOptions): { config: ClipTextConfig; tokenizer: ClipTokenizer; parts: SynthPart[]; t5?: T5Config } {
  const spec = PRESETS[opts.preset];
  if (!spec) throw new ItdError('usage', `unknown preset '${opts.preset}' (expected ${Object.keys(PRESETS).join(', ')})`, { field: 'preset' });
  const merges = opts.vocab ? undefined : trainBpe(FALLBACK_CORPUS, FALLBACK_MERGES);
  const parts = spec.parts.map((p, i): SynthPart => {
    const tokenizer = merges ? ClipTokenizer.fromMerges(merges, { padToken: p.padToken }) : ClipTokenizer.fromBpeGz(opts.vocab!, { padToken: p.padToken });
    const config: ClipTextConfig = {
      architecture: p.projectionDim === undefined ? 'CLIPTextModel' : 'CLIPTextModelWithProjection',
      ...p.shape,
      vocabSize: tokenizer.vocabSize,
      maxPositions: 77,
      layerNormEps: 1e-5,
      bosTokenId: spec.legacyIds ? 0 : tokenizer.bosId,
      eosTokenId: spec.legacyIds ? 2 : tokenizer.eosId,
      padTokenId: spec.legacyIds ? 1 : tokenizer.padId,
      projectionDim: p.projectionDim ?? p.shape.hiddenSize,
    };
    const te = path.join(opts.out, p.encoder);
    fs.mkdirSync(te, { recursive: true });
    tokenizer.save(path.join(opts.out, p.tokenizer));
    writeJsonAtomic(path.join(te, 'config.json'), toHfConfig(config));
    const file = opts.dtype === 'f16' ? 'model.fp16.safetensors' : 'model.safetensors';
    // Each tower gets its own stream (seed + i) so the two are unrelated, as in SDXL.
    writeSafetensors(path.join(te, file), randomClipWeights(config, opts.seed + i, opts.dtype === 'f16' ? 'F16' : 'F32', tokenizer.bosId, !opts.noSink), { format: 'pt' });
    return { name: p.encoder, config, tokenizer };
  });
  const t5 = spec.t5 ? writeT5Part(opts.out, { ...(opts.dtype === 'f16' ? { dtype: 'F16' as const } : {}), ...spec.t5 }, opts.seed + parts.length) : undefined;
  const components = Object.fromEntries(spec.parts.flatMap((p, i) => [[p.encoder, ['transformers', parts[i]!.config.architecture]], [p.tokenizer, ['transformers', 'CLIPTokenizer']]]));
  if (spec.t5) Object.assign(components, { [spec.t5.encoder]: ['transformers', 'T5EncoderModel'], [spec.t5.tokenizer]: ['transformers', 'T5TokenizerFast'] });
  writeJsonAtomic(path.join(opts.out, 'model_index.json'), {
    _class_name: spec.pipeline,
    _diffusers_version: '0.30.0',
    ...(spec.pipeline === 'StableDiffusionXLPipeline' ? { force_zeros_for_empty_prompt: true } : {}),
    ...components,
  });
  return { config: parts[0]!.config, tokenizer: parts[0]!.tokenizer, parts, ...(t5 ? { t5 } : {}) };
}

/**
 * Hugging Face-named tensors: projections ~N(0, 0.02), LayerNorm weights ~1, biases small; the two
 * projections that write into the residual stream (out_proj, fc2) use GPT-2's scaled init
 * N(0, 0.02 / sqrt(2 L)).
 *
 * Random attention is near-uniform, which would turn every token's residual into an average of its
 * prefix (at block 8 token identity then explains under half the variance). Trained CLIP text
 * encoders instead park most attention on BOS, which carries a massive activation in a few
 * dimensions (Sun et al. 2024, "Massive activations"). The synthetic weights reproduce that sink:
 * BOS's embedding gets SINK_ACTIVATION in one dimension s, and every head's key weights read s
 * along a random direction u_h that its query bias also points to, so each query's logit for BOS
 * is ~U(1.5, 4) above the others (after ten tokens BOS takes ~30-85 % of a head's attention; the
 * rest still mixes context: at CLIP-L size token + position then explain 89 % of block 8).
 */
export function randomClipWeights(cfg: ClipTextConfig, seed: number, dtype: DType = 'F32', bosId = cfg.bosTokenId, sink = true): Record<string, TensorIn> {
  const rng = new Rng(seed);
  const { hiddenSize: D, intermediateSize: I } = cfg;
  const residualStd = 0.02 / Math.sqrt(2 * cfg.numLayers);
  const out: Record<string, TensorIn> = {};
  const put = (name: string, shape: number[], std: number, mean = 0) => {
    const data = rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1)), std, mean);
    out[`text_model.${name}`] = { dtype, shape, data };
  };
  put('embeddings.token_embedding.weight', [cfg.vocabSize, D], 0.02);
  put('embeddings.position_embedding.weight', [cfg.maxPositions, D], 0.01);
  const sinkDim = rng.int(D);
  if (sink) tensor(out, 'embeddings.token_embedding.weight')[bosId * D + sinkDim]! += SINK_ACTIVATION;
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `encoder.layers.${i}.`;
    put(`${p}layer_norm1.weight`, [D], 0.02, 1);
    put(`${p}layer_norm1.bias`, [D], 0.01);
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      put(`${p}self_attn.${proj}.weight`, [D, D], proj === 'out_proj' ? residualStd : 0.02);
      put(`${p}self_attn.${proj}.bias`, [D], 0.01);
    }
    if (sink) addSink(rng, cfg, sinkDim, tensor(out, `${p}self_attn.k_proj.weight`), tensor(out, `${p}self_attn.q_proj.bias`));
    put(`${p}layer_norm2.weight`, [D], 0.02, 1);
    put(`${p}layer_norm2.bias`, [D], 0.01);
    put(`${p}mlp.fc1.weight`, [I, D], 0.02);
    put(`${p}mlp.fc1.bias`, [I], 0.01);
    put(`${p}mlp.fc2.weight`, [D, I], residualStd);
    put(`${p}mlp.fc2.bias`, [D], 0.01);
  }
  put('final_layer_norm.weight', [D], 0.02, 1);
  put('final_layer_norm.bias', [D], 0.01);
  if (cfg.architecture === 'CLIPTextModelWithProjection') {
    // Outside text_model, as in HF; transformers initialises it N(0, D^-1/2).
    const shape = [cfg.projectionDim!, D];
    out['text_projection.weight'] = { dtype, shape, data: rng.fillNormal(new Float32Array(shape[0]! * D), D ** -0.5) };
  }
  return out;
}

/** BOS's activation in the sink dimension (other entries are ~0.02; LayerNorm then maps BOS to ~sqrt(D) e_s). */
const SINK_ACTIVATION = 40;
/** Query-bias magnitude along u_h; the key weight is sized from it to give the wanted logit. */
const SINK_QUERY = 3;

function tensor(weights: Record<string, TensorIn>, name: string): Float32Array {
  return weights[`text_model.${name}`]!.data as Float32Array;
}

/**
 * Per head h (rows h*dh..(h+1)*dh of the projections): k_proj.weight[:, s] += a_h u_h and
 * q_proj.bias += SINK_QUERY u_h, so q_i . k_BOS / sqrt(dh) ~ SINK_QUERY a_h sqrt(D) / sqrt(dh) = L_h
 * (LayerNorm puts ~sqrt(D) in BOS's dimension s) while other keys read s at ~N(0, 1).
 */
function addSink(rng: Rng, cfg: ClipTextConfig, s: number, kWeight: Float32Array, qBias: Float32Array): void {
  const D = cfg.hiddenSize;
  const dh = D / cfg.numHeads;
  for (let h = 0; h < cfg.numHeads; h++) {
    const u = rng.fillNormal(new Float32Array(dh), 1);
    const norm = Math.hypot(...u);
    const logit = 1.5 + 2.5 * rng.uniform();
    const a = (logit * Math.sqrt(dh)) / (SINK_QUERY * Math.sqrt(D));
    for (let e = 0; e < dh; e++) {
      const o = h * dh + e;
      kWeight[o * D + s]! += (a * u[e]!) / norm;
      qBias[o]! += (SINK_QUERY * u[e]!) / norm;
    }
  }
}
