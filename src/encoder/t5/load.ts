/**
 * Loads a T5 v1.1 encoder part (T5EncoderModel: FLUX.1's text_encoder_2, SD3's text_encoder_3, or a
 * bare Hugging Face directory) with its SentencePiece Unigram tokenizer (tokenizer.json).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ItdError } from '../../errors.js';
import { Checkpoint } from '../../io/safetensors.js';
import { T5Tokenizer, T5_DEFAULT_MAX_LENGTH } from '../../tokenizer/index.js';
import type { PartLoadOptions } from '../families.js';
import { modelIdentity, textModelFiles, type PartSource } from '../model-dir.js';
import { itdDefaultLayer, type EncoderPart } from '../text-encoder.js';
import { readT5Config, type T5Config } from './config.js';
import { T5Encoder, type T5EncoderOptions } from './encoder.js';
import { T5WeightReader } from './weights.js';

export type T5Part = EncoderPart<T5Config> & { readonly encoder: T5Encoder; readonly tokenizer: T5Tokenizer };

/** A T5EncoderModel directory (config.json + model*.safetensors, possibly sharded). */
export async function loadT5Encoder(dir: string, opts: T5EncoderOptions = {}, tokenizerDir = dir): Promise<{ config: T5Config; encoder: T5Encoder; id: string }> {
  const configPath = path.join(dir, 'config.json');
  if (!fs.existsSync(configPath)) throw new ItdError('not_found', `${dir}: missing config.json (T5Config)`, { file: configPath });
  const config = readT5Config(configPath);
  const ckpt = Checkpoint.open(dir, ['model']);
  const reader = new T5WeightReader(ckpt, config, dir);
  try {
    const id = modelIdentity(textModelFiles(configPath, ckpt, tokenizerDir));
    return { config, encoder: await T5Encoder.create(config, reader, opts), id };
  } finally {
    reader.close();
  }
}

/**
 * The part's identity includes its framed length: T5 attends to the padding, so every state (and so
 * every activation, SAE and eraser made from them) depends on max_sequence_length.
 */
function framedIdentity(filesId: string, maxLength: number): string {
  return crypto.createHash('sha256').update(`${filesId}\0max_sequence_length=${maxLength}`).digest('hex').slice(0, 16);
}

/**
 * Rows are framed to max_sequence_length: opts.maxSequenceLength, else the pipeline's default
 * (FLUX.1 512, SD3 256: src.maxLength), else 512.
 */
export async function loadT5Part(src: PartSource, opts: PartLoadOptions = {}): Promise<T5Part> {
  const tokenizer = T5Tokenizer.fromDir(src.tokenizerDir, opts.maxSequenceLength ?? src.maxLength ?? T5_DEFAULT_MAX_LENGTH);
  try {
    const { config, encoder, id } = await loadT5Encoder(src.encoderDir, opts, src.tokenizerDir);
    if (tokenizer.vocabSize > config.vocabSize) {
      await encoder.release();
      const file = path.join(src.encoderDir, 'config.json');
      throw new ItdError('mismatch', `${src.tokenizerDir}: tokenizer has ${tokenizer.vocabSize} ids but ${file} says vocab_size ${config.vocabSize}`, { file, field: 'vocab_size' });
    }
    const prefix = src.modulePrefix;
    return {
      name: src.name, dir: src.modelDir, encoderDir: src.encoderDir, tokenizerDir: src.tokenizerDir,
      config, tokenizer, encoder, id: framedIdentity(id, tokenizer.maxLength),
      // ItD's relative depth (block 8 of CLIP-L's 12): T5-XXL's 24 blocks -> block 16.
      defaultLayer: itdDefaultLayer(config.numLayers),
      hookpoint: (layer) => `${prefix}encoder.block.${layer}`,
    };
  } catch (e) {
    await tokenizer.close();
    throw e;
  }
}
