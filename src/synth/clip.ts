/**
 * Synthetic CLIP text models: complete diffusers-layout directories with deterministic random
 * weights at realistic scales, so every loader and numeric path runs without downloading anything.
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.js';
import { writeSafetensors, type DType, type TensorIn } from '../io/safetensors.js';
import { toHfConfig, type ClipTextConfig } from '../encoder/config.js';
import { ClipTokenizer, FALLBACK_CORPUS, trainBpe } from '../tokenizer/index.js';
import { Rng } from '../util/rng.js';

export type Preset = 'tiny' | 'sd1' | 'sd2';

/** Merges of the project-owned fallback vocabulary (used when no CLIP vocabulary is given). */
const FALLBACK_MERGES = 2000;

interface PresetSpec {
  shape: Pick<ClipTextConfig, 'hiddenSize' | 'numLayers' | 'numHeads' | 'intermediateSize' | 'hiddenAct'>;
  padToken: string; // SD1.x pads with <|endoftext|>, SD2.x with "!"
}

export const PRESETS: Record<Preset, PresetSpec> = {
  tiny: { shape: { hiddenSize: 64, numLayers: 12, numHeads: 4, intermediateSize: 256, hiddenAct: 'quick_gelu' }, padToken: '<|endoftext|>' },
  sd1: { shape: { hiddenSize: 768, numLayers: 12, numHeads: 12, intermediateSize: 3072, hiddenAct: 'quick_gelu' }, padToken: '<|endoftext|>' },
  sd2: { shape: { hiddenSize: 1024, numLayers: 23, numHeads: 16, intermediateSize: 4096, hiddenAct: 'gelu' }, padToken: '!' },
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

export function synthModel(opts: SynthOptions): { config: ClipTextConfig; tokenizer: ClipTokenizer } {
  const spec = PRESETS[opts.preset];
  if (!spec) throw new Error(`unknown preset '${opts.preset}' (expected ${Object.keys(PRESETS).join(', ')})`);
  const tokenizer = opts.vocab
    ? ClipTokenizer.fromBpeGz(opts.vocab, { padToken: spec.padToken })
    : ClipTokenizer.fromMerges(trainBpe(FALLBACK_CORPUS, FALLBACK_MERGES), { padToken: spec.padToken });
  const config: ClipTextConfig = {
    ...spec.shape,
    vocabSize: tokenizer.vocabSize,
    maxPositions: 77,
    layerNormEps: 1e-5,
    bosTokenId: tokenizer.bosId,
    eosTokenId: tokenizer.eosId,
    padTokenId: tokenizer.padId,
    projectionDim: spec.shape.hiddenSize,
  };
  const te = path.join(opts.out, 'text_encoder');
  fs.mkdirSync(te, { recursive: true });
  tokenizer.save(path.join(opts.out, 'tokenizer'));
  writeJsonAtomic(path.join(te, 'config.json'), toHfConfig(config));
  const file = opts.dtype === 'f16' ? 'model.fp16.safetensors' : 'model.safetensors';
  writeSafetensors(path.join(te, file), randomClipWeights(config, opts.seed, opts.dtype === 'f16' ? 'F16' : 'F32', !opts.noSink), { format: 'pt' });
  writeJsonAtomic(path.join(opts.out, 'model_index.json'), {
    _class_name: 'StableDiffusionPipeline',
    _diffusers_version: '0.30.0',
    text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
  });
  return { config, tokenizer };
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
export function randomClipWeights(cfg: ClipTextConfig, seed: number, dtype: DType = 'F32', sink = true): Record<string, TensorIn> {
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
  if (sink) tensor(out, 'embeddings.token_embedding.weight')[cfg.bosTokenId * D + sinkDim]! += SINK_ACTIVATION;
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
