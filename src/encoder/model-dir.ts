/**
 * Model directories: a diffusers pipeline (model_index.json naming its text_encoder / tokenizer
 * components) or a bare Hugging Face text-encoder directory (config.json, model*.safetensors,
 * tokenizer files beside them). Resolving reads only JSON; loading builds the encoder parts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { configError, ItdError } from '../errors.js';
import type { Checkpoint } from '../io/safetensors.js';

/** Where one encoder part's files are, before anything is loaded. */
export interface PartSource {
  /** diffusers component name ('text_encoder', 'text_encoder_2', ...); 'text_encoder' for a bare model. */
  name: string;
  modelDir: string;
  encoderDir: string; // config.json + weights
  tokenizerDir: string;
  /** Module-path prefix of hookpoints: 'text_encoder_2.' inside a pipeline, '' for a bare model. */
  modulePrefix: string;
  /** Architecture named by model_index.json or config.json 'architectures' (e.g. CLIPTextModelWithProjection). */
  architecture: string;
  /** The pipeline's default framed length for this part when it is not fixed by the model (T5: max_sequence_length). */
  maxLength?: number;
}

export interface ModelLayout {
  kind: 'diffusers' | 'transformers';
  dir: string;
  /** model_index.json _class_name (e.g. StableDiffusionXLPipeline), or the bare model's architecture. */
  pipeline: string;
  /** Text-encoder parts in diffusers' order (text_encoder, text_encoder_2, ...). */
  parts: PartSource[];
  /** model_index.json (pipeline config attributes such as force_zeros_for_empty_prompt); {} for a bare model. */
  config: Record<string, unknown>;
}

/** A diffusers text-encoder component and the tokenizer component that frames prompts for it. */
export interface PartSlot {
  encoder: string;
  tokenizer: string;
  /** Default framed length (FLUX.1's T5: 512, SD3's: 256); CLIP parts frame to 77 by their tokenizer. */
  maxLength?: number;
}

function readJsonObject(file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ItdError('format', `${file}: cannot read JSON: ${(e as Error).message}`, { file, cause: e });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ItdError('format', `${file}: expected a JSON object`, { file });
  return v as Record<string, unknown>;
}

/** model_index.json's [library, class] entry for a component, or undefined when it is absent or null. */
function componentClass(index: Record<string, unknown>, key: string, file: string): string | undefined {
  const v = index[key];
  if (v === undefined || v === null || (Array.isArray(v) && v[1] === null)) return undefined;
  if (!Array.isArray(v) || typeof v[1] !== 'string') throw configError(file, key, `must be a [library, class] pair, got ${JSON.stringify(v)}`);
  return v[1];
}

/** The bare directory's architecture, from config.json (CLIPTextModel when unnamed, as older exports are). */
function bareArchitecture(configPath: string): string {
  const archs = readJsonObject(configPath)['architectures'];
  return Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : 'CLIPTextModel';
}

/**
 * Lays a directory out into encoder parts; `slotsOf(pipeline)` gives the components a pipeline
 * class needs (pipelines.ts), so every missing piece is reported by name before any weight is read.
 */
export function layoutModelDir(dir: string, slotsOf: (pipeline: string) => readonly PartSlot[]): ModelLayout {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new ItdError('not_found', `${dir}: model directory not found`, { file: dir });
  const indexPath = path.join(dir, 'model_index.json');
  if (fs.existsSync(indexPath)) {
    const index = readJsonObject(indexPath);
    const pipeline = typeof index['_class_name'] === 'string' ? index['_class_name'] : 'StableDiffusionPipeline';
    const parts = slotsOf(pipeline).map(({ encoder, tokenizer, maxLength }): PartSource => {
      for (const [key, what] of [[encoder, 'text encoder'], [tokenizer, 'tokenizer']] as const) {
        if (!fs.existsSync(path.join(dir, key))) {
          throw new ItdError('not_found', `${dir}: ${pipeline} directory lacks ${key}/ (its ${what})`, { file: path.join(dir, key), field: key, hint: `a ${pipeline} needs ${slotsOf(pipeline).map((s) => `${s.encoder}/ and ${s.tokenizer}/`).join(', ')}` });
        }
      }
      const encoderDir = path.join(dir, encoder);
      const configPath = path.join(encoderDir, 'config.json');
      const named = componentClass(index, encoder, indexPath) ?? (fs.existsSync(configPath) ? bareArchitecture(configPath) : 'CLIPTextModel');
      return { name: encoder, modelDir: dir, encoderDir, tokenizerDir: path.join(dir, tokenizer), modulePrefix: `${encoder}.`, architecture: named, ...(maxLength ? { maxLength } : {}) };
    });
    return { kind: 'diffusers', dir, pipeline, parts, config: index };
  }
  const configPath = path.join(dir, 'config.json');
  if (fs.existsSync(configPath)) {
    const architecture = bareArchitecture(configPath);
    return { kind: 'transformers', dir, pipeline: architecture, parts: [{ name: 'text_encoder', modelDir: dir, encoderDir: dir, tokenizerDir: dir, modulePrefix: '', architecture }], config: {} };
  }
  throw new ItdError('not_found', `${dir}: neither a diffusers directory (model_index.json) nor a Hugging Face model directory (config.json)`, { file: dir });
}

/**
 * sha256 over config.json and, for every tensor, its name, dtype, shape and first 4 KiB of data:
 * cheap (no full read of the weights) and different for any two checkpoints that differ in practice.
 */
export function modelIdentity(configPath: string, ckpt: Checkpoint): string {
  const h = crypto.createHash('sha256');
  h.update(JSON.stringify(JSON.parse(fs.readFileSync(configPath, 'utf8'))));
  const fds = new Map<string, number>();
  try {
    for (const name of [...ckpt.names()].sort()) {
      const info = ckpt.info(name);
      h.update(`${name}|${info.dtype}|${info.shape.join(',')}|`);
      let fd = fds.get(info.file);
      if (fd === undefined) fds.set(info.file, (fd = fs.openSync(info.file, 'r')));
      const buf = Buffer.alloc(Math.min(4096, info.end - info.begin));
      fs.readSync(fd, buf, 0, buf.length, info.begin);
      h.update(buf);
    }
  } finally {
    for (const fd of fds.values()) fs.closeSync(fd);
  }
  return h.digest('hex').slice(0, 16);
}
