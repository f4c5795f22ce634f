export * from './config.js';
export * from './encoder.js';
export * from './load.js';
export { WEIGHT_MODES, type WeightMode } from './linear.js';
export { T5WeightReader, type T5BlockWeights } from './weights.js';
