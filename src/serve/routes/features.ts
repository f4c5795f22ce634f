/** The feature explorer: GET /v1/features (per-token top latents) and GET /v1/explain (latent -> top tokens). */
import type { FastifyInstance } from 'fastify';
import { explainLatent, tokenFeatures } from '../../select/interpret.js';
import type { ServeContext } from '../context.js';
import { ApiError } from '../errors.js';
import { conceptsByLatent, intParam, MAX_PROMPT_CHARS } from './common.js';

function topOf(raw: string | undefined, dflt: number, max: number): number {
  const top = raw === undefined ? dflt : Number(raw);
  if (top < 1 || top > max) throw new ApiError(400, 'invalid_request', `top must be in 1..${max}, got ${top}`);
  return top;
}

export function featureRoutes(app: FastifyInstance, ctx: ServeContext): void {
  app.get<{ Querystring: { prompt: string; top?: string } }>('/v1/features', {
    schema: {
      summary: 'per token of a prompt, the SAE latents that fire most',
      tags: ['interpret'],
      querystring: {
        type: 'object',
        required: ['prompt'],
        properties: { prompt: { type: 'string', minLength: 1, maxLength: MAX_PROMPT_CHARS, description: 'the prompt' }, top: intParam('latents per token, 1..64 (default 8)') },
      },
    },
  }, async (req, reply) => {
    const top = topOf(req.query.top, 8, 64);
    const { model, sae, spec } = ctx.eraser();
    const tokens = await ctx.batcher.exclusive(() => tokenFeatures(model, sae, spec.layer, req.query.prompt, top), ctx.deadline(reply));
    const concepts = conceptsByLatent(ctx);
    return {
      prompt: req.query.prompt,
      layer: spec.layer,
      tokens: tokens.map((t) => ({ ...t, latents: t.latents.map((l) => ({ ...l, concepts: concepts.get(l.latent) ?? [] })) })),
    };
  });

  app.get<{ Querystring: { latent: string; top?: string } }>('/v1/explain', {
    schema: {
      summary: 'the collected tokens that fire a latent most (needs --acts)',
      tags: ['interpret'],
      querystring: { type: 'object', required: ['latent'], properties: { latent: intParam('latent id'), top: intParam('examples, 1..200 (default 20)') } },
    },
  }, async (req, reply) => {
    const acts = ctx.actsDir;
    if (!acts) throw new ApiError(404, 'no_activations', 'this server has no activation collection: start it with --acts ACTS_DIR to explain latents');
    const { model, sae } = ctx.eraser();
    const latent = Number(req.query.latent);
    if (latent >= sae.n) throw new ApiError(400, 'invalid_request', `latent ${latent} is outside the SAE's 0..${sae.n - 1}`);
    const top = topOf(req.query.top, 20, 200);
    const examples = await ctx.batcher.exclusive(() => explainLatent(sae, acts, latent, top), ctx.deadline(reply));
    const token = (id: number) => {
      try {
        return model.tokenizer.tokenStrings([id])[0]!;
      } catch {
        return `#${id}`; // collected with another vocabulary
      }
    };
    return { latent, concepts: conceptsByLatent(ctx).get(latent) ?? [], examples: examples.map((e) => ({ ...e, token: token(e.tokenId) })) };
  });
}
