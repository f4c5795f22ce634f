/** Loads a CLIP text-encoder part (CLIPTextModel or CLIPTextModelWithProjection) with its CLIP BPE tokenizer. */
import path from 'node:path';
import { ItdError } from '../../errors.js';
import { ClipTokenizer } from '../../tokenizer/index.js';
import { modelIdentity, textModelFiles, type PartSource } from '../model-dir.js';
import { itdDefaultLayer, type EncoderPart } from '../text-encoder.js';
import { readClipConfig, type ClipTextConfig } from './config.js';
import { ClipTextEncoder, type ClipEncoderOptions } from './encoder.js';
import { ClipWeightReader, openTextEncoderWeights } from './weights.js';

export type ClipPart = EncoderPart<ClipTextConfig> & { readonly encoder: ClipTextEncoder; readonly tokenizer: ClipTokenizer };

export async function loadClipPart(src: PartSource, opts: ClipEncoderOptions = {}): Promise<ClipPart> {
  const configPath = path.join(src.encoderDir, 'config.json');
  const config = readClipConfig(configPath, src.architecture);
  if (config.architecture !== src.architecture && src.modulePrefix !== '') {
    throw new ItdError('mismatch', `${configPath}: architectures says ${config.architecture}, but model_index.json names ${src.name} a ${src.architecture}`, { file: configPath, field: 'architectures' });
  }
  const tokenizer = ClipTokenizer.fromDir(src.tokenizerDir);
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new ItdError('mismatch', `${src.tokenizerDir}: tokenizer has ${tokenizer.vocabSize} ids but ${configPath} says vocab_size ${config.vocabSize}`, { file: configPath, field: 'vocab_size' });
  }
  const ckpt = openTextEncoderWeights(src.encoderDir);
  try {
    const reader = new ClipWeightReader(ckpt, config, src.encoderDir);
    const id = modelIdentity(textModelFiles(configPath, ckpt, src.tokenizerDir));
    const encoder = await ClipTextEncoder.create(config, reader, opts);
    const prefix = src.modulePrefix;
    return {
      name: src.name, dir: src.modelDir, encoderDir: src.encoderDir, tokenizerDir: src.tokenizerDir,
      config, tokenizer, encoder, id,
      defaultLayer: itdDefaultLayer(config.numLayers),
      hookpoint: (layer) => `${prefix}text_model.encoder.layers.${layer}`,
    };
  } finally {
    ckpt.close();
  }
}

/** The part as a CLIP part (for CLIP-only tools: FLOP counts, the float64 reference); throws for other families. */
export function asClipPart(part: EncoderPart): ClipPart {
  if (!(part.encoder instanceof ClipTextEncoder)) {
    throw new ItdError('unsupported', `${part.encoderDir}: ${part.encoder.architecture} is not a CLIP text tower`, { file: part.encoderDir });
  }
  return part as ClipPart;
}
