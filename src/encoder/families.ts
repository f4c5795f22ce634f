/**
 * The registry of text-encoder families: Hugging Face architecture name -> loader of one
 * EncoderPart. A new family (src/encoder/<family>/) registers its architectures here.
 */
import { ItdError } from '../errors.js';
import type { SessionOptions } from '../onnx/session.js';
import path from 'node:path';
import { readClipConfig } from './clip/config.js';
import { loadClipPart } from './clip/load.js';
import type { EncoderBackend } from './clip/native.js';
import type { PartSource } from './model-dir.js';
import { readT5Config } from './t5/config.js';
import { loadT5Part } from './t5/load.js';
import type { EncoderPart, PromptTokenizer } from './text-encoder.js';
import { ClipTokenizer, T5Tokenizer, T5_DEFAULT_MAX_LENGTH } from '../tokenizer/index.js';

/** A part's sizes from its config.json alone (no weights read): what pipeline checks need before loading. */
export interface PartShape {
  hiddenSize: number;
  numLayers: number;
  pooledSize: number; // 0 when the architecture has no pooled output
}

export interface PartLoadOptions extends SessionOptions {
  /** CLIP parts: where the blocks run, 'native' (the addon's C forward, default where built) or 'onnxruntime'; default ITD_ENCODER. */
  backend?: EncoderBackend;
  /** T5 parts: framed row length (diffusers' max_sequence_length); default the pipeline's. */
  maxSequenceLength?: number;
  /** T5 parts: 'f32' (exact) or 'int8' (block-quantised weights, ~3.5x less memory). */
  weights?: 'f32' | 'int8';
}

export interface Family {
  load(src: PartSource, opts: PartLoadOptions): Promise<EncoderPart>;
  shape(src: PartSource): PartShape;
}

const CLIP: Family = {
  load: loadClipPart,
  shape(src) {
    const c = readClipConfig(path.join(src.encoderDir, 'config.json'), src.architecture);
    return { hiddenSize: c.hiddenSize, numLayers: c.numLayers, pooledSize: c.architecture === 'CLIPTextModelWithProjection' ? c.projectionDim! : c.hiddenSize };
  },
};

const T5: Family = {
  load: loadT5Part,
  shape(src) {
    const c = readT5Config(path.join(src.encoderDir, 'config.json'));
    return { hiddenSize: c.hiddenSize, numLayers: c.numLayers, pooledSize: 0 };
  },
};

const FAMILIES: Record<string, Family> = {
  CLIPTextModel: CLIP,
  CLIPTextModelWithProjection: CLIP,
  T5EncoderModel: T5,
};

function familyOf(src: PartSource): Family {
  const family = FAMILIES[src.architecture];
  if (!family) {
    throw new ItdError('unsupported', `${src.encoderDir}: text encoder architecture ${src.architecture} is not supported (itd runs ${Object.keys(FAMILIES).join(', ')})`, { file: src.encoderDir, field: 'architectures' });
  }
  return family;
}

export function loadPart(src: PartSource, opts: PartLoadOptions = {}): Promise<EncoderPart> {
  return familyOf(src).load(src, opts);
}

export function partShape(src: PartSource): PartShape {
  return familyOf(src).shape(src);
}

/** Only the part's tokenizer, as its family frames prompts (no weights are read). */
export function loadPartTokenizer(src: PartSource, opts: Pick<PartLoadOptions, 'maxSequenceLength'> = {}): PromptTokenizer {
  if (src.architecture === 'T5EncoderModel') return T5Tokenizer.fromDir(src.tokenizerDir, opts.maxSequenceLength ?? src.maxLength ?? T5_DEFAULT_MAX_LENGTH);
  return ClipTokenizer.fromDir(src.tokenizerDir);
}
