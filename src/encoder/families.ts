/**
 * The registry of text-encoder families: Hugging Face architecture name -> loader of one
 * EncoderPart. A new family (src/encoder/<family>/) registers its architectures here.
 */
import { ItdError } from '../errors.js';
import type { SessionOptions } from '../onnx/session.js';
import { loadClipPart } from './clip/load.js';
import type { PartSource } from './model-dir.js';
import { loadT5Part } from './t5/load.js';
import type { EncoderPart, PromptTokenizer } from './text-encoder.js';
import { ClipTokenizer, T5Tokenizer, T5_DEFAULT_MAX_LENGTH } from '../tokenizer/index.js';

export interface PartLoadOptions extends SessionOptions {
  /** T5 parts: framed row length (diffusers' max_sequence_length); default the pipeline's. */
  maxSequenceLength?: number;
  /** T5 parts: 'f32' (exact) or 'int8' (block-quantised weights, ~3.5x less memory). */
  weights?: 'f32' | 'int8';
}

export type PartLoader = (src: PartSource, opts: PartLoadOptions) => Promise<EncoderPart>;

const FAMILIES: Record<string, PartLoader> = {
  CLIPTextModel: loadClipPart,
  CLIPTextModelWithProjection: loadClipPart,
  T5EncoderModel: loadT5Part,
};

export function loadPart(src: PartSource, opts: PartLoadOptions = {}): Promise<EncoderPart> {
  const loader = FAMILIES[src.architecture];
  if (!loader) {
    throw new ItdError('unsupported', `${src.encoderDir}: text encoder architecture ${src.architecture} is not supported (itd runs ${Object.keys(FAMILIES).join(', ')})`, { file: src.encoderDir, field: 'architectures' });
  }
  return loader(src, opts);
}

/** Only the part's tokenizer, as its family frames prompts (no weights are read). */
export function loadPartTokenizer(src: PartSource, opts: Pick<PartLoadOptions, 'maxSequenceLength'> = {}): PromptTokenizer {
  if (src.architecture === 'T5EncoderModel') return T5Tokenizer.fromDir(src.tokenizerDir, opts.maxSequenceLength ?? src.maxLength ?? T5_DEFAULT_MAX_LENGTH);
  return ClipTokenizer.fromDir(src.tokenizerDir);
}
