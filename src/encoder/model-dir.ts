/**
 * Model directories: a diffusers pipeline (model_index.json, text_encoder/, tokenizer/) or a bare
 * Hugging Face CLIPTextModel directory (config.json, model*.safetensors, tokenizer files beside them).
 */
import fs from 'node:fs';
import path from 'node:path';
import { localModelDir } from '../download/cache.js';
import { ItdError } from '../errors.js';
import { statInput } from '../io/files.js';
import { filesIdentity } from '../io/hash.js';
import type { TensorFile } from '../io/tensor-file.js';
import type { SessionOptions } from '../onnx/session.js';
import { ClipTokenizer, HF_TOKENIZER_FILES } from '../tokenizer/index.js';
import { readClipConfig, type ClipTextConfig } from './config.js';
import { ClipTextEncoder } from './encoder.js';
import { ClipWeightReader, openTextEncoderWeights } from './weights.js';

export interface ModelPaths {
  kind: 'diffusers' | 'transformers';
  root: string; // the directory itself (a hub-cache snapshot for a repo id)
  textEncoderDir: string; // holds config.json + weights
  tokenizerDir: string; // holds vocab.json + merges.txt
}

export interface TextModel {
  dir: string;
  paths: ModelPaths;
  config: ClipTextConfig;
  tokenizer: ClipTokenizer;
  encoder: ClipTextEncoder;
  /** Short hash identifying these weights (recorded in activations, SAEs and erasers). */
  id: string;
}

/** `dirOrRepo`: a model directory, or `org/name[@revision]` found offline in the Hugging Face hub cache. */
export function resolveModelDir(dirOrRepo: string): ModelPaths {
  const dir = localModelDir(dirOrRepo, 'model directory');
  if (!statInput(dir, 'a model directory').isDirectory()) throw new ItdError('format', `${dir}: is a file, expected a model directory`, { file: dir });
  if (fs.existsSync(path.join(dir, 'model_index.json'))) {
    const te = path.join(dir, 'text_encoder');
    const tok = path.join(dir, 'tokenizer');
    for (const [p, what] of [[te, 'text_encoder/'], [tok, 'tokenizer/']] as const) {
      if (!fs.existsSync(p)) throw new Error(`${dir}: diffusers directory (has model_index.json) lacks ${what}`);
    }
    return { kind: 'diffusers', root: dir, textEncoderDir: te, tokenizerDir: tok };
  }
  if (fs.existsSync(path.join(dir, 'config.json'))) return { kind: 'transformers', root: dir, textEncoderDir: dir, tokenizerDir: dir };
  throw new Error(`${dir}: neither a diffusers directory (model_index.json) nor a Hugging Face model directory (config.json)`);
}

export async function loadTextModel(dir: string, opts: SessionOptions = {}): Promise<TextModel> {
  const paths = resolveModelDir(dir);
  const configPath = path.join(paths.textEncoderDir, 'config.json');
  if (!fs.existsSync(configPath)) throw new Error(`${paths.textEncoderDir}: missing config.json (CLIPTextConfig)`);
  const config = readClipConfig(configPath);
  const tokenizer = ClipTokenizer.fromDir(paths.tokenizerDir);
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new Error(`${paths.tokenizerDir}: tokenizer has ${tokenizer.vocabSize} ids but ${configPath} says vocab_size ${config.vocabSize}`);
  }
  const ckpt = openTextEncoderWeights(paths.textEncoderDir);
  const reader = new ClipWeightReader(ckpt, config, paths.textEncoderDir);
  try {
    const id = modelIdentity(textModelFiles(configPath, ckpt, paths.tokenizerDir));
    const encoder = await ClipTextEncoder.create(config, reader, opts);
    return { dir: paths.root, paths, config, tokenizer, encoder, id };
  } finally {
    reader.close();
  }
}

/**
 * The files that make a CLIP text model what it is, by role: config.json, every weight file (the
 * shards and their index) and the tokenizer files present, each under its file name, so that a
 * diffusers pipeline and a bare transformers directory holding the same files share one id.
 */
export function textModelFiles(configPath: string, ckpt: TensorFile, tokenizerDir: string): Record<string, string> {
  const files: Record<string, string> = { 'config.json': configPath };
  for (const f of new Set([ckpt.path, ...ckpt.names().map((n) => ckpt.info(n).file)])) files[`weights/${path.basename(f)}`] = f;
  for (const f of HF_TOKENIZER_FILES) {
    const p = path.join(tokenizerDir, f);
    if (fs.existsSync(p)) files[`tokenizer/${f}`] = p;
  }
  return files;
}

/**
 * A model's identity (16 hex; recorded in activations, SAEs and erasers): sha256 over the roles
 * and full sha256 of `files` (role -> path; a model with several text encoders prefixes the roles
 * of each). Full-file digests are cached by file stat in the itd cache directory, so only the first
 * load of new or changed weights pays for reading them.
 */
export function modelIdentity(files: Readonly<Record<string, string>>): string {
  return filesIdentity(files);
}
