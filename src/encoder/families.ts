/**
 * The registry of text-encoder families: Hugging Face architecture name -> loader of one
 * EncoderPart. A new family (src/encoder/<family>/) registers its architectures here.
 */
import { ItdError } from '../errors.js';
import type { SessionOptions } from '../onnx/session.js';
import { loadClipPart } from './clip/load.js';
import type { PartSource } from './model-dir.js';
import type { EncoderPart } from './text-encoder.js';

export type PartLoader = (src: PartSource, opts: SessionOptions) => Promise<EncoderPart>;

const FAMILIES: Record<string, PartLoader> = {
  CLIPTextModel: loadClipPart,
  CLIPTextModelWithProjection: loadClipPart,
};

export function loadPart(src: PartSource, opts: SessionOptions = {}): Promise<EncoderPart> {
  const loader = FAMILIES[src.architecture];
  if (!loader) {
    throw new ItdError('unsupported', `${src.encoderDir}: text encoder architecture ${src.architecture} is not supported (itd runs ${Object.keys(FAMILIES).join(', ')})`, { file: src.encoderDir, field: 'architectures' });
  }
  return loader(src, opts);
}
