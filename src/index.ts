/** itd's public library API: one export per ItD step (see README "Layout"). */
export { ClipTokenizer } from './tokenizer/index.js';
export { loadTextModel, encodePrompts, ClipTextEncoder, resolveModelDir, type TextModel, type EncodeOptions, type PromptEncoding } from './encoder/index.js';
export { loadTextConditioning, encodeConditioning, conditioningTensors, type TextConditioning, type TextEncoder, type EncoderPart, type PipelineEmbeds } from './encoder/index.js';
export { collectActivations, type CollectOptions, type ActivationManifest } from './collect/collect.js';
export { openActivations, type ActivationSet } from './collect/dataset.js';
export { ActivationManifestSchema } from './collect/manifest.js';
export { SaeConfigSchema, type SaeConfig } from './sae/cfg.js';
export { Sae, loadSae, saveSae, saeIdentity } from './sae/index.js';
export { checkSaeForModel } from './sae/compat.js';
export { buildEraser, addConcept, removeConcept, expandConcept, promptCodes, topFeatures } from './select/select.js';
export { createEraser, type CreateOptions, type CreateSummary } from './select/create.js';
export { growSae } from './select/grow.js';
export { tokenFeatures, explainLatent } from './select/interpret.js';
export { loadEraser, saveEraser, erasedLatents, eraserId, EraserSchema, type EraserSpec } from './select/eraser-file.js';
export {
  ConceptEraser, Gate, classifyJointly, encodeErased, erasedConditioner, loadEraserSet, writeEraserSet, EraserSetSchema,
  type Classified, type ClassifyOptions, type Decision, type EraseResult, type ErasedEncoding, type JointDecision, type TokenScore,
} from './erase/index.js';
export { calibrateThreshold, auroc, rocCurve } from './classify/calibrate.js';
export { calibrateEraser } from './classify/calibrate-eraser.js';
export { fitSae } from './train/fit.js';
export { evaluateText } from './evaluate/text.js';
export { Checkpoint, SafetensorsFile, writeSafetensors } from './io/safetensors.js';
export { synthModel } from './synth/clip.js';
export { cachedModelDir, defaultCacheDir as hubCacheDir } from './download/cache.js';
export { downloadRepo, type DownloadOptions, type DownloadResult } from './download/repo.js';
export { ItdError, type ItdErrorCode, type ItdErrorDetails } from './errors.js';
