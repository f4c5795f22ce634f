/** Loads a Hugging Face T5EncoderModel directory (config.json + model*.safetensors, possibly sharded). */
import fs from 'node:fs';
import path from 'node:path';
import { ItdError } from '../../errors.js';
import { Checkpoint } from '../../io/safetensors.js';
import { modelIdentity } from '../model-dir.js';
import { readT5Config, type T5Config } from './config.js';
import { T5Encoder, type T5EncoderOptions } from './encoder.js';
import { T5WeightReader } from './weights.js';

export interface LoadedT5 {
  dir: string;
  config: T5Config;
  encoder: T5Encoder;
  /** Short hash identifying these weights (as modelIdentity for CLIP). */
  id: string;
}

export async function loadT5Encoder(dir: string, opts: T5EncoderOptions = {}): Promise<LoadedT5> {
  const configPath = path.join(dir, 'config.json');
  if (!fs.existsSync(configPath)) throw new ItdError('not_found', `${dir}: missing config.json (T5Config)`, { file: configPath });
  const config = readT5Config(configPath);
  const ckpt = Checkpoint.open(dir, ['model']);
  const reader = new T5WeightReader(ckpt, config, dir);
  try {
    const id = modelIdentity(configPath, ckpt);
    return { dir, config, encoder: await T5Encoder.create(config, reader, opts), id };
  } finally {
    reader.close();
  }
}
