/**
 * POST /v1/classify: the gate's decision per prompt (micro-batched), with the prompt's top SAE
 * features and, for a single prompt, every token's share of the score and its top latents.
 */
import type { FastifyInstance } from 'fastify';
import type { Decision } from '../../erase/index.js';
import { tokenFeatures } from '../../select/interpret.js';
import { promptCodes, topFeatures } from '../../select/select.js';
import type { BatchKind } from '../batcher.js';
import type { ServeContext } from '../context.js';
import { checkCount, checkEraserId, conceptsByLatent, perDistinct, promptsBody } from './common.js';

interface ClassifyBody {
  prompts: string[];
  top?: number;
  eraser?: string;
}

interface Latent {
  latent: number;
  value: number;
  concepts: string[];
}

const label = (concepts: Map<number, string[]>) => (l: { latent: number; value: number }): Latent => ({ ...l, concepts: concepts.get(l.latent) ?? [] });

/** Prompt-level top latents (max over tokens) and, for one prompt, the per-token view. */
async function detail(ctx: ServeContext, prompts: string[], top: number) {
  const eraser = ctx.eraser();
  const { model, sae, spec } = eraser;
  const named = label(conceptsByLatent(ctx));
  const codes = await promptCodes(model, sae, spec.layer, prompts);
  const features = codes.map((c) => topFeatures(c, top).map(({ latent, max }) => named({ latent, value: max })));
  if (prompts.length !== 1) return { features, tokens: undefined };
  const [latents, scores] = [await tokenFeatures(model, sae, spec.layer, prompts[0]!, top), await eraser.tokenScores(prompts[0]!)];
  const tokens = scores.map((s, i) => ({ ...s, latents: latents[i]!.latents.map(named) }));
  return { features, tokens };
}

export function classifyRoutes(app: FastifyInstance, ctx: ServeContext): void {
  const kind: BatchKind<string, Decision> = { name: 'classify', batchable: true, run: (batch) => perDistinct(batch, (prompts) => ctx.eraser().classify(prompts, { batch: prompts.length })) };
  app.post<{ Body: ClassifyBody }>('/v1/classify', {
    config: { queued: true },
    schema: {
      summary: 'gate decision per prompt: score vs threshold, concepts fired, top features',
      description: 'results[i]: prompt, score, threshold, erased, concepts, conceptScores, canonical (the canonical form of a disguised prompt, when it decided), features (top latents by max activation over ' +
        'tokens, with the concepts erasing them). For a single prompt also tokens[]: position, token, score, share (of the gate score), latents.',
      tags: ['erase'],
      body: promptsBody(ctx.limits.maxPrompts, {
        top: { type: 'integer', minimum: 0, maximum: 64, description: 'top latents per prompt and token (default 8; 0: decisions only)' },
      }),
    },
  }, async (req, reply) => {
    const { prompts, top = 8 } = req.body;
    checkCount(prompts, ctx.limits.maxPrompts);
    checkEraserId(ctx, req.body.eraser);
    const signal = ctx.deadline(reply);
    const decisions = await ctx.batcher.submit(kind, prompts, signal);
    ctx.metrics.gate('classify', decisions.map((d) => d.erased));
    const more = top > 0 ? await ctx.batcher.exclusive(() => detail(ctx, prompts, top), signal) : undefined;
    return {
      eraser: ctx.eraser().id,
      threshold: ctx.eraser().spec.threshold,
      results: decisions.map((d, i) => ({ ...d, ...(more ? { features: more.features[i] } : {}), ...(more?.tokens ? { tokens: more.tokens } : {}) })),
    };
  });
}
