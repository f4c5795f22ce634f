/** Stable Diffusion generation on onnxruntime: pipeline, schedulers, torch-compatible seeds, PNG. */
export { textConditioner, type Conditioner, type Conditioning } from './conditioning.js';
export { contactSheet, sideBySide, toRgb, type RgbImage, type SheetEntry } from './image.js';
export { inspectPipeline, type PipelineLayout } from './layout.js';
export { readOnnxSignature, type OnnxSignature, type ValueSignature } from './onnx-signature.js';
export {
  DEFAULTS,
  guide,
  resolveRequest,
  StableDiffusionPipeline,
  type GeneratedImage,
  type GenerateRequest,
  type GenerateResult,
  type LoadOptions,
  type ResolvedRequest,
  type Timings,
} from './pipeline.js';
export { crc32, decodePng, encodePng, type DecodedPng } from '../io/png.js';
export { createScheduler, SCHEDULER_NAMES, type Scheduler, type SchedulerName } from './schedulers/index.js';
export { synthPipeline, synthUnetGraph, synthVaeGraph, type SynthPipelineOptions, type UnetPreset } from './synth-unet.js';
export { Mt19937, TorchGenerator } from './torch-rng.js';
