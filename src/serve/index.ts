export { createServer, DEFAULTS } from './server.js';
export type { Server, ServeOptions } from './server.js';
export type { ImageOptions, ImagePipeline } from './context.js';
export { Batcher, DeadlineError, QueueFullError } from './batcher.js';
export type { BatchKind, BatcherOptions } from './batcher.js';
export { tokenMatches, isLoopback } from './auth.js';
export { encodeSafetensors } from './safetensors-body.js';
