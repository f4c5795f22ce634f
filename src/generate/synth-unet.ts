/**
 * Synthetic Stable Diffusion pipelines for tests, demos and benchmarks: random ONNX graphs with
 * the I/O names, dtypes and shapes of real exports, next to a (synthetic or given) text encoder.
 *
 * UNet (sample [B,4,h,w], timestep [1], encoder_hidden_states [B,77,D] -> out_sample [B,4,h,w]):
 *   e   = W_t [sin(t f); cos(t f)]                      timestep embedding, [C]
 *   h   = SiLU(conv3x3(x) + e);  h += conv3x3(SiLU(h))  (depth times)
 *   h  += softmax(q k^T / sqrt(dk)) v                   cross-attention: q from h, k and v from the text
 *   out = x + g conv3x3(SiLU(h))                         near-identity, so sampling stays bounded
 * SDXL UNets also take text_embeds [B,P] and time_ids [B,6]: a = W_p text_embeds + W_i time_ids/1000
 * joins the timestep embedding (per sample), as SDXL's added conditioning does.
 * VAE decoder (latent_sample [B,4,h,w] -> sample [B,3,8h,8w]): tanh(DepthToSpace_8(conv3x3(z))).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describeConditioning } from '../encoder/index.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { Graph, type ElemType } from '../onnx/graph.js';
import { synthModel, type Preset as ClipPreset } from '../synth/clip.js';
import { Rng } from '../util/rng.js';
import { DEFAULT_SCALING_FACTOR, LATENT_CHANNELS, TIME_IDS, VAE_FACTOR } from './layout.js';
import { ItdError } from '../errors.js';

export type UnetPreset = 'tiny' | 'heavy';

interface UnetShape {
  channels: number; // C
  depth: number; // residual conv blocks
  attnDim: number; // dk
  freqs: number; // timestep embedding frequencies
}

/** tiny: milliseconds per call; heavy: >= 100 ms per call at 512x512 with guidance on 2 cores. */
export const UNET_PRESETS: Record<UnetPreset, UnetShape> = {
  tiny: { channels: 8, depth: 1, attnDim: 8, freqs: 4 },
  heavy: { channels: 128, depth: 5, attnDim: 64, freqs: 32 },
};

export interface SynthUnetOptions {
  preset: UnetPreset;
  seed: number;
  /** Text width D. */
  hiddenSize: number;
  /** SDXL: text_embeds width P (adds the text_embeds and time_ids inputs); 0 or absent: SD1.x/SD2.x. */
  pooledSize?: number;
  tokens?: number; // 77
  /** int64 [1] like optimum exports (default), or float [1] like diffusers' own export script. */
  timestepType?: 'int64' | 'float32' | 'float16';
  /** float16 sample / encoder_hidden_states / out_sample, as fp16 exports have. */
  dtype?: 'float32' | 'float16';
}

/** Random weights ~ N(0, 1/fan_in) (unit-variance activations). */
function weights(g: Graph, rng: Rng, dims: number[], fanIn: number, gain = 1): string {
  const data = rng.fillNormal(new Float32Array(dims.reduce((a, b) => a * b, 1)), gain / Math.sqrt(fanIn));
  return g.initializer(`w${dims.join('x')}_${rng.u32()}`, { type: 'float32', dims, data });
}

const silu = (g: Graph, x: string) => g.op('Mul', [x, g.op('Sigmoid', [x])]);

function conv3x3(g: Graph, rng: Rng, x: string, cin: number, cout: number, gain = 1): string {
  return g.op('Conv', [x, weights(g, rng, [cout, cin, 3, 3], cin * 9, gain)], { pads: [1, 1, 1, 1] });
}

/** In float16 exports inputs are cast to float32 on entry and the output back on exit. */
function castIn(g: Graph, x: string, type: ElemType): string {
  return type === 'float32' ? x : g.op('Cast', [x], { to: 1 });
}

export function synthUnetGraph(opts: SynthUnetOptions): Uint8Array {
  const s = UNET_PRESETS[opts.preset];
  if (!s) throw new ItdError('usage', `unknown UNet preset '${opts.preset}' (expected ${Object.keys(UNET_PRESETS).join(', ')})`, { field: 'preset' });
  const dtype = opts.dtype ?? 'float32';
  const tType = opts.timestepType ?? 'int64';
  const D = opts.hiddenSize;
  const T = opts.tokens ?? 77;
  const C = s.channels;
  const rng = new Rng(opts.seed);
  const g = new Graph('synthetic_unet');
  const sample = castIn(g, g.input('sample', dtype, ['batch', LATENT_CHANNELS, 'height', 'width']), dtype);
  const t = g.op('Cast', [g.input('timestep', tType, [1])], { to: 1 }); // [1]
  const ctx = castIn(g, g.input('encoder_hidden_states', dtype, ['batch', T, D]), dtype);

  // Timestep embedding [1, C, 1, 1]; frequencies 1000^(-i/F) as in sinusoidal embeddings.
  const freqs = g.constF(Array.from({ length: s.freqs }, (_, i) => 1000 ** (-i / s.freqs)), [s.freqs]);
  const arg = g.op('Mul', [t, freqs]);
  const emb = g.op('Concat', [g.op('Sin', [arg]), g.op('Cos', [arg])], { axis: 0 });
  const temb = g.op('MatMul', [g.op('Unsqueeze', [emb, g.constI64([0])]), weights(g, rng, [2 * s.freqs, C], 2 * s.freqs)]);
  let tembMap = g.op('Reshape', [temb, g.constI64([1, C, 1, 1])]);
  const P = opts.pooledSize ?? 0;
  if (P > 0) {
    const te = castIn(g, g.input('text_embeds', dtype, ['batch', P]), dtype);
    const ids = g.op('Mul', [castIn(g, g.input('time_ids', dtype, ['batch', TIME_IDS]), dtype), g.constF(1e-3)]);
    const a = g.op('Add', [g.op('MatMul', [te, weights(g, rng, [P, C], P)]), g.op('MatMul', [ids, weights(g, rng, [TIME_IDS, C], TIME_IDS)])]);
    tembMap = g.op('Add', [tembMap, g.op('Unsqueeze', [a, g.constI64([2, 3])])]); // [B, C, 1, 1]
  }

  let h = silu(g, g.op('Add', [conv3x3(g, rng, sample, LATENT_CHANNELS, C), tembMap]));
  for (let i = 0; i < s.depth; i++) h = g.op('Add', [h, conv3x3(g, rng, silu(g, h), C, C, 0.5)]);

  // Cross-attention: queries from the C x hw feature map, keys/values from the text tokens.
  const flat = g.op('Transpose', [g.op('Reshape', [h, g.constI64([0, C, -1])])], { perm: [0, 2, 1] }); // [B, hw, C]
  const q = g.op('MatMul', [flat, weights(g, rng, [C, s.attnDim], C)]);
  const k = g.op('MatMul', [ctx, weights(g, rng, [D, s.attnDim], D)]); // [B, T, dk]
  const v = g.op('MatMul', [ctx, weights(g, rng, [D, C], D)]); // [B, T, C]
  const scores = g.op('Mul', [g.op('MatMul', [q, g.op('Transpose', [k], { perm: [0, 2, 1] })]), g.constF(1 / Math.sqrt(s.attnDim))]);
  const attn = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), v]); // [B, hw, C]
  const attnMap = g.op('Reshape', [g.op('Transpose', [attn], { perm: [0, 2, 1] }), g.op('Shape', [h])]);
  h = g.op('Add', [h, attnMap]);

  const out = g.op('Add', [sample, conv3x3(g, rng, silu(g, h), C, LATENT_CHANNELS, 0.1)]);
  const final = dtype === 'float32' ? out : g.op('Cast', [out], { to: 10 });
  g.output(final, dtype, ['batch', LATENT_CHANNELS, 'height', 'width'], 'out_sample');
  return g.toModel();
}

export function synthVaeGraph(seed: number, dtype: 'float32' | 'float16' = 'float32'): Uint8Array {
  const rng = new Rng(seed);
  const g = new Graph('synthetic_vae_decoder');
  const z = castIn(g, g.input('latent_sample', dtype, ['batch', LATENT_CHANNELS, 'height', 'width']), dtype);
  const blocks = conv3x3(g, rng, z, LATENT_CHANNELS, 3 * VAE_FACTOR * VAE_FACTOR, 2);
  const img = g.op('Tanh', [g.op('DepthToSpace', [blocks], { blocksize: VAE_FACTOR, mode: 'CRD' })]);
  g.output(dtype === 'float32' ? img : g.op('Cast', [img], { to: 10 }), dtype, ['batch', 3, 'image_height', 'image_width'], 'sample');
  return g.toModel();
}

/** Stable Diffusion 1.x's scheduler_config.json. */
export const SD1_SCHEDULER_CONFIG = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
};

/** SDXL base 1.0's scheduler_config.json (EulerDiscrete, leading spacing). */
export const SDXL_SCHEDULER_CONFIG = {
  _class_name: 'EulerDiscreteScheduler',
  _diffusers_version: '0.19.0.dev0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  interpolation_type: 'linear',
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
  trained_betas: null,
  use_karras_sigmas: false,
};

/** SDXL's VAE scaling factor (its vae/config.json). */
export const SDXL_SCALING_FACTOR = 0.13025;

export interface SynthPipelineOptions extends Omit<SynthUnetOptions, 'hiddenSize' | 'pooledSize'> {
  out: string;
  /** A directory holding the text encoders + tokenizers to use (copied into `out` if elsewhere); default: a synthetic one. */
  textModelDir?: string;
  /** Preset of the synthetic text encoder when textModelDir is absent (default tiny). */
  clipPreset?: ClipPreset;
}

/** Writes a complete pipeline directory: text encoder + tokenizer, unet/, vae_decoder/, scheduler/, model_index.json. */
export function synthPipeline(opts: SynthPipelineOptions): void {
  const { out } = opts;
  fs.mkdirSync(out, { recursive: true });
  if (opts.textModelDir === undefined) synthModel({ out, preset: opts.clipPreset ?? 'tiny', seed: opts.seed });
  else if (path.resolve(opts.textModelDir) !== path.resolve(out)) {
    const text = opts.textModelDir;
    const subs = fs.readdirSync(text).filter((d) => /^(text_encoder|tokenizer)(_\d+)?$/.test(d));
    for (const sub of subs) fs.cpSync(path.join(text, sub), path.join(out, sub), { recursive: true });
    if (fs.existsSync(path.join(text, 'model_index.json'))) fs.copyFileSync(path.join(text, 'model_index.json'), path.join(out, 'model_index.json'));
  }
  const indexPath = path.join(out, 'model_index.json');
  if (!fs.existsSync(indexPath)) writeJsonAtomic(indexPath, { _class_name: 'StableDiffusionPipeline' });
  const text = describeConditioning(out);
  const xl = text.pooledWidth > 0;
  const scheduler = xl ? SDXL_SCHEDULER_CONFIG : SD1_SCHEDULER_CONFIG;
  for (const sub of ['unet', 'vae_decoder', 'scheduler']) fs.mkdirSync(path.join(out, sub), { recursive: true });
  writeFileAtomic(path.join(out, 'unet', 'model.onnx'), synthUnetGraph({ ...opts, hiddenSize: text.width, pooledSize: text.pooledWidth }));
  writeJsonAtomic(path.join(out, 'unet', 'config.json'), { _class_name: 'UNet2DConditionModel', sample_size: text.defaultSize / VAE_FACTOR, in_channels: LATENT_CHANNELS });
  writeFileAtomic(path.join(out, 'vae_decoder', 'model.onnx'), synthVaeGraph(opts.seed + 1, opts.dtype));
  writeJsonAtomic(path.join(out, 'vae_decoder', 'config.json'), { _class_name: 'AutoencoderKL', latent_channels: LATENT_CHANNELS, scaling_factor: xl ? SDXL_SCALING_FACTOR : DEFAULT_SCALING_FACTOR });
  writeJsonAtomic(path.join(out, 'scheduler', 'scheduler_config.json'), scheduler);
  const index = fs.existsSync(indexPath) ? (JSON.parse(fs.readFileSync(indexPath, 'utf8')) as Record<string, unknown>) : {};
  writeJsonAtomic(indexPath, {
    _class_name: 'StableDiffusionPipeline',
    text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    ...index,
    unet: ['diffusers', 'OnnxRuntimeModel'],
    vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
    scheduler: ['diffusers', scheduler._class_name],
  });
}
