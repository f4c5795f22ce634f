/** What route modules share: limits, the batcher, metrics, and the loaded eraser. */
import type { FastifyReply } from 'fastify';
import type { TextConditioning } from '../encoder/index.js';
import type { ConceptEraser } from '../erase/index.js';
import type { Conditioner } from '../generate/index.js';
import type { Batcher } from './batcher.js';
import type { EncodeCache } from './encode-cache.js';
import type { ServeMetrics } from './metrics.js';

export interface ImageOptions {
  /** true: through the eraser's gate; false: the original model. */
  erase: boolean;
  /**
   * The server's live eraser on the pipeline's text encoders (concept edits apply at once): the
   * pipeline must condition with it. Gives prompt_embeds (+ pooled_prompt_embeds for SDXL).
   */
  condition: Conditioner;
  seed?: number;
  steps?: number;
  guidance?: number;
  width?: number;
  height?: number;
  negativePrompt?: string;
}

/** Text-to-image behind /v1/generate; wired by the host (src/generate). One PNG per prompt. */
export interface ImagePipeline {
  /** The pipeline's text encoders; the eraser's part must be one of them (same name and weights). */
  readonly text: TextConditioning;
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
