/**
 * The registry of text-encoder families: Hugging Face architecture name -> loader of one
 * EncoderPart. A new family (src/encoder/<family>/) registers its architectures here.
 */
import { ItdError } from '../errors.js';
import type { SessionOptions } from '../onnx/session.js';
import path from 'node:path';
import { readClipConfig } from './clip/config.js';
import { loadClipPart } from './clip/load.js';
import type { PartSource } from './model-dir.js';
import type { EncoderPart } from './text-encoder.js';

/** A part's sizes from its config.json alone (no weights read): what pipeline checks need before loading. */
export interface PartShape {
  hiddenSize: number;
  numLayers: number;
  pooledSize: number; // 0 when the architecture has no pooled output
}

export interface Family {
  load(src: PartSource, opts: SessionOptions): Promise<EncoderPart>;
  shape(src: PartSource): PartShape;
}

const CLIP: Family = {
  load: loadClipPart,
  shape(src) {
    const c = readClipConfig(path.join(src.encoderDir, 'config.json'), src.architecture);
    return { hiddenSize: c.hiddenSize, numLayers: c.numLayers, pooledSize: c.architecture === 'CLIPTextModelWithProjection' ? c.projectionDim! : c.hiddenSize };
  },
};

const FAMILIES: Record<string, Family> = {
  CLIPTextModel: CLIP,
  CLIPTextModelWithProjection: CLIP,
};

function familyOf(src: PartSource): Family {
  const family = FAMILIES[src.architecture];
  if (!family) {
    throw new ItdError('unsupported', `${src.encoderDir}: text encoder architecture ${src.architecture} is not supported (itd runs ${Object.keys(FAMILIES).join(', ')})`, { file: src.encoderDir, field: 'architectures' });
  }
  return family;
}

export function loadPart(src: PartSource, opts: SessionOptions = {}): Promise<EncoderPart> {
  return familyOf(src).load(src, opts);
}

export function partShape(src: PartSource): PartShape {
  return familyOf(src).shape(src);
}
