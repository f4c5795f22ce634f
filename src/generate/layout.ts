/**
 * Stable Diffusion pipeline directories in the diffusers ONNX layout, inspected and validated
 * without building any session (cheap: configs plus the ONNX graphs' input/output declarations).
 *
 *   DIR/model_index.json
 *   DIR/text_encoder/{config.json, model.safetensors}   PyTorch-layout CLIP text model (itd runs it)
 *   DIR/tokenizer/{vocab.json, merges.txt, ...}
 *   DIR/text_encoder_2/, DIR/tokenizer_2/                SDXL only (CLIPTextModelWithProjection)
 *   DIR/unet/model.onnx (+ external weight files beside it)
 *   DIR/vae_decoder/model.onnx [+ config.json with scaling_factor]
 *   DIR/scheduler/scheduler_config.json
 *
 * Assembling one from the standard repositories (SD 1.5 shown; SD 1.4 and 2.x work the same way):
 *   1. text_encoder/, tokenizer/, scheduler/ and model_index.json from the diffusers repository:
 *        huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5 \
 *          --include "text_encoder/*" "tokenizer/*" "scheduler/*" model_index.json --local-dir DIR
 *      (itd runs the CLIP text encoder itself from config.json + model.safetensors, so an ONNX
 *      text_encoder/model.onnx is not needed and not used.)
 *   2. unet/ and vae_decoder/ from an ONNX export of the same model, each folder copied whole so
 *      the external-data file (unet/weights.pb, unet/model.onnx_data, ...) stays beside model.onnx:
 *        optimum-cli export onnx --model stable-diffusion-v1-5/stable-diffusion-v1-5 OUT/
 *        cp -r OUT/unet OUT/vae_decoder DIR/
 *      or the `onnx` revision some original repositories carry
 *      (huggingface-cli download CompVis/stable-diffusion-v1-4 --revision onnx --include "unet/*" "vae_decoder/*" --local-dir DIR).
 *   The UNet's encoder_hidden_states width must equal the text encoder's hidden_size (768 for
 *   SD1.x, 1024 for SD2.x); `itd generate` checks this before loading anything.
 *
 * SDXL (stabilityai/stable-diffusion-xl-base-1.0, optimum export) works the same way with
 * text_encoder_2/ and tokenizer_2/ added; its UNet also takes text_embeds [B, 1280] (the pooled
 * prompt embedding) and time_ids [B, 6] (original size, crop top-left, target size), and its
 * encoder_hidden_states are 2048 wide (768 + 1280). The refiner is not supported.
 */
import fs from 'node:fs';
import path from 'node:path';
import { localModelDir } from '../download/cache.js';
import { ItdError } from '../errors.js';
import { describeConditioning, type ConditioningShape } from '../encoder/index.js';
import { readJsonObject } from '../io/files.js';
import { readOnnxSignature, type OnnxElemType, type ValueSignature } from './onnx-signature.js';
import { schedulerForClass } from './schedulers/index.js';
import type { SchedulerName } from './schedulers/config.js';

/** SD latents have 4 channels; the VAE downsamples by 8. */
export const LATENT_CHANNELS = 4;
export const VAE_FACTOR = 8;
export const DEFAULT_SCALING_FACTOR = 0.18215;

export interface UnetIo {
  file: string;
  sample: ValueSignature; // [B, 4, h, w] float32|float16
  timestep: ValueSignature; // [] | [1] | [B]: int64|int32|float32|float16
  hidden: ValueSignature; // [B, T, D]
  /** SDXL's added conditioning: text_embeds [B, P] and time_ids [B, 6]. */
  added: { textEmbeds: ValueSignature; timeIds: ValueSignature } | undefined;
  output: ValueSignature; // out_sample [B, 4, h, w]
}

/** SDXL's micro-conditioning: time_ids = (original h, w, crop top, left, target h, w). */
export const TIME_IDS = 6;

export interface VaeIo {
  file: string;
  input: ValueSignature; // latent_sample [B, 4, h, w]
  output: ValueSignature; // sample [B, 3, 8h, 8w]
  scalingFactor: number;
}

export interface PipelineLayout {
  dir: string;
  unet: UnetIo;
  vae: VaeIo;
  /** Parsed scheduler_config.json, and the scheduler its _class_name names when itd implements it. */
  schedulerConfig: Record<string, unknown>;
  schedulerConfigPath: string;
  defaultScheduler: SchedulerName | undefined;
  /** The conditioning the text encoders produce (widths from their config.json files). */
  text: ConditioningShape;
  /** Image size when the request gives none: unet/config.json sample_size x 8, else the pipeline's (512 SD, 1024 SDXL). */
  defaultSize: number;
}

const FLOATS: readonly OnnxElemType[] = ['float32', 'float16'];
const TIMESTEP_TYPES: readonly OnnxElemType[] = ['int64', 'int32', 'float32', 'float16'];

/** A pipeline JSON file (model_index.json, scheduler and model configs): an object, strict UTF-8, no repeated keys. */
function readJson(file: string): Record<string, unknown> {
  return readJsonObject(file, 'pipeline config');
}

const fmtDims = (v: ValueSignature) => `[${v.dims.map((d) => d ?? '?').join(', ')}]`;

/** The named value, or the only one when the export used another name. */
function pick(list: ValueSignature[], name: string, file: string, what: string): ValueSignature {
  const v = list.find((x) => x.name === name) ?? (list.length === 1 ? list[0] : undefined);
  if (!v) throw new ItdError('format', `${file}: no ${what} named '${name}' (it has ${list.map((x) => `'${x.name}'`).join(', ') || 'none'})`, { file, field: name });
  return v;
}

function expectValue(v: ValueSignature, file: string, types: readonly OnnxElemType[], rank: number | readonly number[]): void {
  if (!types.includes(v.type)) throw new ItdError('unsupported', `${file}: '${v.name}' is ${v.type}; itd supports ${types.join(' or ')}`, { file, field: v.name });
  const ranks = typeof rank === 'number' ? [rank] : rank;
  if (!ranks.includes(v.dims.length)) throw new ItdError('format', `${file}: '${v.name}' has shape ${fmtDims(v)}; expected rank ${ranks.join(' or ')}`, { file, field: v.name });
}

function expectChannels(v: ValueSignature, file: string, channels: number, why: string): void {
  const c = v.dims[1];
  if (typeof c === 'number' && c !== channels) throw new ItdError('mismatch', `${file}: '${v.name}' has ${c} channels ${fmtDims(v)}; ${why}`, { file, field: v.name });
}

export function inspectUnet(file: string, text: ConditioningShape): UnetIo {
  const sig = readOnnxSignature(file);
  const added = text.pooledWidth > 0 ? ['text_embeds', 'time_ids'] : [];
  const names = ['sample', 'timestep', 'encoder_hidden_states', ...added];
  const missing = names.filter((n) => !sig.inputs.some((i) => i.name === n));
  if (missing.length > 0) {
    throw new ItdError('mismatch', `${file}: UNet inputs are ${sig.inputs.map((i) => `'${i.name}'`).join(', ')}; a ${text.pipeline} UNet takes ${names.join(', ')} (missing ${missing.join(', ')})`, { file, field: 'inputs' });
  }
  const extra = sig.inputs.filter((i) => !names.includes(i.name));
  if (extra.length > 0) {
    throw new ItdError('mismatch', `${file}: UNet has extra inputs ${extra.map((i) => `'${i.name}'`).join(', ')}, which a ${text.pipeline} does not feed (it takes ${names.join(', ')}; an SDXL UNet needs an SDXL directory with text_encoder_2/)`, { file, field: 'inputs' });
  }
  const get = (n: string) => sig.inputs.find((i) => i.name === n)!;
  const io: UnetIo = {
    file, sample: get('sample'), timestep: get('timestep'), hidden: get('encoder_hidden_states'),
    added: added.length > 0 ? { textEmbeds: get('text_embeds'), timeIds: get('time_ids') } : undefined,
    output: pick(sig.outputs, 'out_sample', file, 'output'),
  };
  expectValue(io.sample, file, FLOATS, 4);
  expectValue(io.output, file, FLOATS, 4);
  expectValue(io.hidden, file, FLOATS, 3);
  expectValue(io.timestep, file, TIMESTEP_TYPES, [0, 1]);
  expectChannels(io.sample, file, LATENT_CHANNELS, `itd generates ${LATENT_CHANNELS}-channel latents (9 channels is an inpainting UNet)`);
  const width = io.hidden.dims[2];
  if (typeof width === 'number' && width !== text.width) {
    throw new ItdError('mismatch',
      `${file}: encoder_hidden_states width is ${width} but the text encoder's hidden size is ${text.width}: ` +
        `the UNet and the text encoders come from different models (SD1.x uses 768, SD2.x 1024, SDXL 768 + 1280 = 2048)`, { file, field: 'encoder_hidden_states' });
  }
  if (io.added) {
    const { textEmbeds, timeIds } = io.added;
    expectValue(textEmbeds, file, FLOATS, 2);
    expectValue(timeIds, file, FLOATS, 2);
    const p = textEmbeds.dims[1];
    if (typeof p === 'number' && p !== text.pooledWidth) throw new ItdError('mismatch', `${file}: 'text_embeds' is ${p} wide but text_encoder_2's pooled output (projection_dim) is ${text.pooledWidth}`, { file, field: 'text_embeds' });
    const k = timeIds.dims[1];
    if (typeof k === 'number' && k !== TIME_IDS) throw new ItdError('format', `${file}: 'time_ids' has ${k} entries per sample; SDXL's micro-conditioning has ${TIME_IDS}`, { file, field: 'time_ids' });
  }
  return io;
}

export function inspectVae(dir: string): VaeIo {
  const file = path.join(dir, 'model.onnx');
  const sig = readOnnxSignature(file);
  const io: VaeIo = {
    file,
    input: pick(sig.inputs, 'latent_sample', file, 'input'),
    output: pick(sig.outputs, 'sample', file, 'output'),
    scalingFactor: DEFAULT_SCALING_FACTOR,
  };
  expectValue(io.input, file, FLOATS, 4);
  expectValue(io.output, file, FLOATS, 4);
  expectChannels(io.input, file, LATENT_CHANNELS, `expected ${LATENT_CHANNELS} latent channels`);
  expectChannels(io.output, file, 3, 'expected an RGB decoder (3 channels)');
  const cfgPath = path.join(dir, 'config.json');
  if (fs.existsSync(cfgPath)) {
    const cfg = readJson(cfgPath);
    const sf = cfg['scaling_factor'];
    if (sf !== undefined) {
      if (typeof sf !== 'number' || !(sf > 0)) throw new ItdError('config', `${cfgPath}: scaling_factor must be a positive number, got ${JSON.stringify(sf)}`, { file: cfgPath, field: 'scaling_factor' });
      io.scalingFactor = sf;
    }
    const lc = cfg['latent_channels'];
    if (lc !== undefined && lc !== LATENT_CHANNELS) throw new ItdError('config', `${cfgPath}: latent_channels is ${JSON.stringify(lc)}; SD1.x/SD2.x/SDXL VAEs have ${LATENT_CHANNELS}`, { file: cfgPath, field: 'latent_channels' });
  }
  return io;
}

/** diffusers' default image size: unet.config.sample_size x vae_scale_factor, when the export ships unet/config.json. */
function unetSampleSize(file: string): number | undefined {
  if (!fs.existsSync(file)) return undefined;
  const s = readJson(file)['sample_size'];
  if (s === undefined) return undefined;
  if (!Number.isInteger(s) || (s as number) < 1) throw new ItdError('config', `${file}: sample_size must be a positive integer, got ${JSON.stringify(s)}`, { file, field: 'sample_size' });
  return (s as number) * VAE_FACTOR;
}

/** Checks every component of a pipeline directory; throws one clear error for the first problem. */
/** `dirOrRepo`: a pipeline directory, or `org/name[@revision]` found offline in the Hugging Face hub cache. */
export function inspectPipeline(dirOrRepo: string): PipelineLayout {
  const dir = localModelDir(dirOrRepo, 'pipeline directory');
  if (!fs.statSync(dir).isDirectory()) throw new ItdError('not_found', `${dir}: pipeline directory not found (a file, not a directory)`, { file: dir });
  const need: [string, string][] = [
    ['model_index.json', 'the diffusers pipeline index'],
    ['unet/model.onnx', 'the ONNX UNet'],
    ['vae_decoder/model.onnx', 'the ONNX VAE decoder'],
    ['scheduler/scheduler_config.json', 'the scheduler config'],
  ];
  const missing = need.filter(([p]) => !fs.existsSync(path.join(dir, p)));
  if (missing.length > 0) {
    throw new ItdError('not_found', `${dir}: not a complete Stable Diffusion ONNX pipeline; missing ${missing.map(([p, what]) => `${p} (${what})`).join(', ')}. See src/generate/layout.ts for how to assemble one.`, { file: dir });
  }
  const text = describeConditioning(dir); // names any missing text_encoder*/tokenizer* component
  const schedulerConfigPath = path.join(dir, 'scheduler', 'scheduler_config.json');
  const schedulerConfig = readJson(schedulerConfigPath);
  return {
    dir,
    unet: inspectUnet(path.join(dir, 'unet', 'model.onnx'), text),
    vae: inspectVae(path.join(dir, 'vae_decoder')),
    schedulerConfig,
    schedulerConfigPath,
    defaultScheduler: schedulerForClass(schedulerConfig['_class_name']),
    text,
    defaultSize: unetSampleSize(path.join(dir, 'unet', 'config.json')) ?? text.defaultSize,
  };
}
