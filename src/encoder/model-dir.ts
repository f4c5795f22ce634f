/**
 * Model directories: a diffusers pipeline (model_index.json naming its text_encoder / tokenizer
 * components) or a bare Hugging Face text-encoder directory (config.json, model*.safetensors,
 * tokenizer files beside them). Resolving reads only JSON; loading builds the encoder parts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { localModelDir } from '../download/cache.js';
import { configError, ItdError } from '../errors.js';
import { readJsonObject, statInput } from '../io/files.js';
import { filesIdentity } from '../io/hash.js';
import type { TensorFile } from '../io/tensor-file.js';
import { HF_TOKENIZER_FILES } from '../tokenizer/index.js';

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

/** model_index.json's [library, class] entry for a component, or undefined when it is absent or null. */
function componentClass(index: Record<string, unknown>, key: string, file: string): string | undefined {
  const v = index[key];
  if (v === undefined || v === null || (Array.isArray(v) && v[1] === null)) return undefined;
  if (!Array.isArray(v) || typeof v[1] !== 'string') throw configError(file, key, `must be a [library, class] pair, got ${JSON.stringify(v)}`);
  return v[1];
}

/** The bare directory's architecture, from config.json (CLIPTextModel when unnamed, as older exports are). */
function bareArchitecture(configPath: string): string {
  const archs = readJsonObject(configPath, 'text encoder config')['architectures'];
  return Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : 'CLIPTextModel';
}

/**
 * Lays a directory out into encoder parts; `slotsOf(pipeline)` gives the components a pipeline
 * class needs (pipelines.ts), so every missing piece is reported by name before any weight is read.
 */
export function layoutModelDir(dirOrRepo: string, slotsOf: (pipeline: string) => readonly PartSlot[]): ModelLayout {
  // A directory, or `org/name[@revision]` found offline in the Hugging Face hub cache.
  const dir = localModelDir(dirOrRepo, 'model directory');
  if (!statInput(dir, 'a model directory').isDirectory()) throw new ItdError('format', `${dir}: is a file, expected a model directory`, { file: dir });
  const indexPath = path.join(dir, 'model_index.json');
  if (fs.existsSync(indexPath)) {
    const index = readJsonObject(indexPath, 'diffusers model index');
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
 * The files that make a text encoder part what it is, by role: config.json, every weight file (the
 * shards and their index) and the tokenizer files present, each under its file name, so that a
 * diffusers pipeline and a bare transformers directory holding the same files share one id.
 */
/** Every tokenizer file a diffusers component may hold (CLIP BPE, HF fast tokenizer, SentencePiece). */
const TOKENIZER_FILES = [...HF_TOKENIZER_FILES, 'tokenizer.json', 'spiece.model'];

export function textModelFiles(configPath: string, ckpt: TensorFile, tokenizerDir: string): Record<string, string> {
  const files: Record<string, string> = { 'config.json': configPath };
  for (const f of new Set([ckpt.path, ...ckpt.names().map((n) => ckpt.info(n).file)])) files[`weights/${path.basename(f)}`] = f;
  for (const f of TOKENIZER_FILES) {
    const p = path.join(tokenizerDir, f);
    if (fs.existsSync(p)) files[`tokenizer/${f}`] = p;
  }
  return files;
}

/**
 * A part's identity (16 hex; recorded in activations, SAEs and erasers): sha256 over the roles and
 * full sha256 of `files` (role -> path). Full-file digests are cached by file stat in the itd cache
 * directory, so only the first load of new or changed weights pays for reading them.
 */
export function modelIdentity(files: Readonly<Record<string, string>>): string {
  return filesIdentity(files);
}
