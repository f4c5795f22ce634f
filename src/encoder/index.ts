export * from './text-encoder.js';
export * from './clip/index.js';
export * from './model-dir.js';
export * from './families.js';
export * from './pipelines.js';
export * from './prompts.js';
/** One encoder part: what collect, train, select, erase, classify and serve work on. */
export type { EncoderPart as TextModel } from './text-encoder.js';
export * from './t5/index.js';
export * from './token-rows.js';
