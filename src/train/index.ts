export { resolveTrainConfig, totalSteps, TRAIN_DEFAULTS, TrainConfigSchema } from './config.js';
export type { ResolvedTrainConfig, TrainConfig } from './config.js';
export { CHECKPOINT_FILE, Trainer, codesFromTopK, geometricMedian, geometricMedianJs } from './trainer.js';
export type { Codes, Gradients, PhaseTimes, StepStats, TrainerOptions } from './trainer.js';
export { jsKernels, LATENT_CHUNK } from './kernels.js';
export type { Kernels } from './kernels.js';
export { defaultKernels, kernelsLabel, nativeIsas, nativeKernels } from './native.js';
export { evaluateSae, firingHistogramSvg } from './eval.js';
export type { EvalOptions, EvalResult } from './eval.js';
