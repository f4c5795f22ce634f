/** What route modules share: limits, the batcher, metrics, and the loaded eraser. */
import type { FastifyReply } from 'fastify';
import type { ConceptEraser } from '../erase/index.js';
import type { Batcher } from './batcher.js';
import type { EncodeCache } from './encode-cache.js';
import type { ServeMetrics } from './metrics.js';
import type { TokenScorer } from './token-scores.js';

/** Prompts -> SD conditioning (last_hidden_state [n, 77, D]); the shape of src/generate's Conditioner. */
export type ImageConditioner = (prompts: string[]) => Promise<{ embeddings: Float32Array; erased?: Uint8Array }>;

export interface ImageOptions {
  /** true: through the eraser's gate; false: the original model. */
  erase: boolean;
  /** The server's live eraser (concept edits apply at once): the pipeline must condition with it. */
  condition: ImageConditioner;
  seed?: number;
  steps?: number;
  guidance?: number;
  width?: number;
  height?: number;
  negativePrompt?: string;
}

/** Text-to-image behind /v1/generate; wired by the host (src/generate). One PNG per prompt. */
export interface ImagePipeline {
  generate(prompts: string[], opts: ImageOptions): Promise<{ png: Uint8Array }[]>;
  release?(): Promise<void>;
}

export interface Limits {
  maxPrompts: number;
  /** Per list (target, retain) of /v1/calibrate. */
  maxCalibratePrompts: number;
  timeoutMs: number;
}

export interface ServeContext {
  readonly limits: Limits;
  readonly batcher: Batcher;
  readonly metrics: ServeMetrics;
  readonly tokenScorer: TokenScorer;
  /** /v1/encode results by eraser, policy and token ids; undefined when off. Cleared on eraser edits. */
  readonly encodeCache: EncodeCache | undefined;
  /** Fixed at start: requests never name files. */
  readonly eraserPath: string;
  readonly actsDir: string | undefined;
  /** The active eraser (throws 503 before it is loaded). */
  eraser(): ConceptEraser;
  pipeline(): ImagePipeline | undefined;
  /** Aborts at the request's deadline or when its client disconnects (queued work is then dropped). */
  deadline(reply: FastifyReply): AbortSignal;
}
