/**
 * Model directories: a diffusers pipeline (model_index.json, text_encoder/, tokenizer/) or a bare
 * Hugging Face CLIPTextModel directory (config.json, model*.safetensors, tokenizer files beside them).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { localModelDir } from '../download/cache.js';
import { ItdError } from '../errors.js';
import { Checkpoint } from '../io/safetensors.js';
import type { SessionOptions } from '../onnx/session.js';
import { ClipTokenizer } from '../tokenizer/index.js';
import { readClipConfig, type ClipTextConfig } from './config.js';
import { ClipTextEncoder } from './encoder.js';
import { ClipWeightReader } from './weights.js';

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
  if (!fs.statSync(dir).isDirectory()) throw new ItdError('not_found', `${dir}: model directory not found (a file, not a directory)`, { file: dir });
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
  const ckpt = Checkpoint.open(paths.textEncoderDir, ['model']);
  const reader = new ClipWeightReader(ckpt, config, paths.textEncoderDir);
  try {
    const id = modelIdentity(configPath, ckpt);
    const encoder = await ClipTextEncoder.create(config, reader, opts);
    return { dir: paths.root, paths, config, tokenizer, encoder, id };
  } finally {
    reader.close();
  }
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
