export { Sae, defaultConfig, encodeGraph, isThresholdActivation, normalizeRows } from './sae.js';
export type { SaeActivation, SaeConfig, SaeWeights, SparseCodes } from './sae.js';
export { loadSae, saveSae, saveSaeConfig, saveSaeWeightsAsync, saeIdentity, saeWeightsPath, SAE_CONFIG, SAE_WEIGHTS } from './io.js';
export type { LoadSaeOptions } from './io.js';
export type { SaeFormat } from './formats.js';
