/**
 * Stable Diffusion pipeline directories in the diffusers ONNX layout, inspected and validated
 * without building any session (cheap: configs plus the ONNX graphs' input/output declarations).
 *
 *   DIR/model_index.json
 *   DIR/text_encoder/{config.json, model.safetensors}   PyTorch-layout CLIP text model (itd runs it)
 *   DIR/tokenizer/{vocab.json, merges.txt, ...}
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
 */
import fs from 'node:fs';
import path from 'node:path';
import { readClipConfig } from '../encoder/clip/config.js';
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
  output: ValueSignature; // out_sample [B, 4, h, w]
}

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
  /** The text encoder's hidden size D (text_encoder/config.json). */
  textHiddenSize: number;
}

const FLOATS: readonly OnnxElemType[] = ['float32', 'float16'];
const TIMESTEP_TYPES: readonly OnnxElemType[] = ['int64', 'int32', 'float32', 'float16'];

function readJson(file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${file}: expected a JSON object`);
  return v as Record<string, unknown>;
}

const fmtDims = (v: ValueSignature) => `[${v.dims.map((d) => d ?? '?').join(', ')}]`;

/** The named value, or the only one when the export used another name. */
function pick(list: ValueSignature[], name: string, file: string, what: string): ValueSignature {
  const v = list.find((x) => x.name === name) ?? (list.length === 1 ? list[0] : undefined);
  if (!v) throw new Error(`${file}: no ${what} named '${name}' (it has ${list.map((x) => `'${x.name}'`).join(', ') || 'none'})`);
  return v;
}

function expectValue(v: ValueSignature, file: string, types: readonly OnnxElemType[], rank: number | readonly number[]): void {
  if (!types.includes(v.type)) throw new Error(`${file}: '${v.name}' is ${v.type}; itd supports ${types.join(' or ')}`);
  const ranks = typeof rank === 'number' ? [rank] : rank;
  if (!ranks.includes(v.dims.length)) throw new Error(`${file}: '${v.name}' has shape ${fmtDims(v)}; expected rank ${ranks.join(' or ')}`);
}

function expectChannels(v: ValueSignature, file: string, channels: number, why: string): void {
  const c = v.dims[1];
  if (typeof c === 'number' && c !== channels) throw new Error(`${file}: '${v.name}' has ${c} channels ${fmtDims(v)}; ${why}`);
}

export function inspectUnet(file: string, textHiddenSize: number): UnetIo {
  const sig = readOnnxSignature(file);
  const names = ['sample', 'timestep', 'encoder_hidden_states'];
  const missing = names.filter((n) => !sig.inputs.some((i) => i.name === n));
  if (missing.length > 0) {
    throw new Error(`${file}: UNet inputs are ${sig.inputs.map((i) => `'${i.name}'`).join(', ')}; expected sample, timestep, encoder_hidden_states (a diffusers/optimum SD1.x/SD2.x export)`);
  }
  const extra = sig.inputs.filter((i) => !names.includes(i.name));
  if (extra.length > 0) {
    throw new Error(`${file}: UNet has extra inputs ${extra.map((i) => `'${i.name}'`).join(', ')} (SDXL and other conditioned UNets are not supported; SD1.x/SD2.x UNets take sample, timestep, encoder_hidden_states)`);
  }
  const get = (n: string) => sig.inputs.find((i) => i.name === n)!;
  const io: UnetIo = { file, sample: get('sample'), timestep: get('timestep'), hidden: get('encoder_hidden_states'), output: pick(sig.outputs, 'out_sample', file, 'output') };
  expectValue(io.sample, file, FLOATS, 4);
  expectValue(io.output, file, FLOATS, 4);
  expectValue(io.hidden, file, FLOATS, 3);
  expectValue(io.timestep, file, TIMESTEP_TYPES, [0, 1]);
  expectChannels(io.sample, file, LATENT_CHANNELS, `itd generates ${LATENT_CHANNELS}-channel SD1.x/SD2.x latents (9 channels is an inpainting UNet)`);
  const width = io.hidden.dims[2];
  if (typeof width === 'number' && width !== textHiddenSize) {
    throw new Error(
      `${file}: encoder_hidden_states width is ${width} but the text encoder's hidden size is ${textHiddenSize}: ` +
        `the UNet and text_encoder/ come from different models (SD1.x uses 768, SD2.x 1024)`,
    );
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
      if (typeof sf !== 'number' || !(sf > 0)) throw new Error(`${cfgPath}: scaling_factor must be a positive number, got ${JSON.stringify(sf)}`);
      io.scalingFactor = sf;
    }
    const lc = cfg['latent_channels'];
    if (lc !== undefined && lc !== LATENT_CHANNELS) throw new Error(`${cfgPath}: latent_channels is ${JSON.stringify(lc)}; SD1.x/SD2.x VAEs have ${LATENT_CHANNELS}`);
  }
  return io;
}

/** Checks every component of a pipeline directory; throws one clear error for the first problem. */
export function inspectPipeline(dir: string): PipelineLayout {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: pipeline directory not found`);
  const need: [string, string][] = [
    ['model_index.json', 'the diffusers pipeline index'],
    ['text_encoder/config.json', 'the CLIP text encoder (PyTorch layout: config.json + model.safetensors)'],
    ['tokenizer', 'the CLIP tokenizer'],
    ['unet/model.onnx', 'the ONNX UNet'],
    ['vae_decoder/model.onnx', 'the ONNX VAE decoder'],
    ['scheduler/scheduler_config.json', 'the scheduler config'],
  ];
  const missing = need.filter(([p]) => !fs.existsSync(path.join(dir, p)));
  if (missing.length > 0) {
    throw new Error(`${dir}: not a complete Stable Diffusion ONNX pipeline; missing ${missing.map(([p, what]) => `${p} (${what})`).join(', ')}. See src/generate/layout.ts for how to assemble one.`);
  }
  const textHiddenSize = readClipConfig(path.join(dir, 'text_encoder', 'config.json')).hiddenSize;
  const schedulerConfigPath = path.join(dir, 'scheduler', 'scheduler_config.json');
  const schedulerConfig = readJson(schedulerConfigPath);
  return {
    dir,
    unet: inspectUnet(path.join(dir, 'unet', 'model.onnx'), textHiddenSize),
    vae: inspectVae(path.join(dir, 'vae_decoder')),
    schedulerConfig,
    schedulerConfigPath,
    defaultScheduler: schedulerForClass(schedulerConfig['_class_name']),
    textHiddenSize,
  };
}
