/** POST /v1/generate: images through the eraser (and the original beside them when asked). */
import type { FastifyInstance } from 'fastify';
import { erasedConditioner } from '../../erase/index.js';
import type { ImageOptions, ServeContext } from '../context.js';
import { ApiError } from '../errors.js';
import { base64, checkCount, MAX_PROMPT_CHARS, requireThreshold } from './common.js';

/** Each image is seconds of compute: a small per-request cap regardless of --max-prompts. */
const MAX_IMAGE_PROMPTS = 4;

interface GenerateBody extends Omit<ImageOptions, 'erase' | 'condition'> {
  prompts: string[];
  compare?: boolean;
}

export function generateRoutes(app: FastifyInstance, ctx: ServeContext): void {
  app.post<{ Body: GenerateBody }>('/v1/generate', {
    schema: {
      summary: 'text-to-image through the eraser (needs a pipeline: 501 otherwise)',
      description: 'results[i]: prompt, erased (PNG, base64, conditioned through the eraser) and, with compare, original (same seed, no eraser).',
      tags: ['generate'],
      body: {
        type: 'object',
        required: ['prompts'],
        additionalProperties: false,
        properties: {
          prompts: { type: 'array', minItems: 1, items: { type: 'string', maxLength: MAX_PROMPT_CHARS }, description: `1..${MAX_IMAGE_PROMPTS} prompts` },
          compare: { type: 'boolean', description: 'also generate without the eraser, same seed' },
          seed: { type: 'integer', minimum: 0, maximum: 2 ** 53 - 1 },
          steps: { type: 'integer', minimum: 1, maximum: 150 },
          guidance: { type: 'number', minimum: 0, maximum: 30 },
          width: { type: 'integer', minimum: 64, maximum: 1024, multipleOf: 8 },
          height: { type: 'integer', minimum: 64, maximum: 1024, multipleOf: 8 },
          negativePrompt: { type: 'string', maxLength: MAX_PROMPT_CHARS },
        },
      },
    },
  }, async (req, reply) => {
    const pipe = ctx.pipeline();
    if (!pipe) throw new ApiError(501, 'no_pipeline', 'image generation is off: start the server with --pipeline DIR');
    const { prompts, compare = false, ...opts } = req.body;
    checkCount(prompts, MAX_IMAGE_PROMPTS);
    requireThreshold(ctx, 'gate');
    const signal = ctx.deadline(reply);
    // Runs inside an exclusive task, so it calls the eraser directly (the batcher is busy with this task).
    // The eraser edits its part of the pipeline's encoders (SDXL: the other tower runs plain, pooled from the edited run).
    const run = (erase: boolean) => ctx.batcher.exclusive(() => {
      const condition = erasedConditioner(pipe.text, ctx.eraser(), { policy: erase ? 'gate' : 'never' });
      return pipe.generate(prompts, { ...opts, erase, condition });
    }, signal);
    const erased = await run(true);
    const original = compare ? await run(false) : undefined;
    return {
      eraser: ctx.eraser().id,
      results: prompts.map((prompt, i) => ({ prompt, erased: base64(erased[i]!.png), ...(original ? { original: base64(original[i]!.png) } : {}) })),
    };
  });
}
