export * from './config.js';
export * from './encoder.js';
export * from './load.js';
export { ClipWeightReader } from './weights.js';
export type { BlockWeights, EmbeddingWeights, FinalNormWeights } from './weights.js';
export type { EncoderBackend } from './native.js';
