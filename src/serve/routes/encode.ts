/** POST /v1/encode: erased SD conditioning, micro-batched across requests. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { GatePolicy } from '../../erase/index.js';
import type { BatchKind } from '../batcher.js';
import type { ServeContext } from '../context.js';
import { EncodeCache, type EncodedPrompt } from '../encode-cache.js';
import { encodeSafetensors } from '../safetensors-body.js';
import { base64, checkCount, checkEraserId, perDistinct, promptsBody, requireThreshold } from './common.js';

interface EncodeBody {
  prompts: string[];
  policy?: GatePolicy;
  eraser?: string;
}

const POLICIES: GatePolicy[] = ['gate', 'always', 'never'];

/** One batch kind per policy (a batch runs one eraser.encode call, so one policy). */
function encodeKind(ctx: ServeContext, policy: GatePolicy): BatchKind<string, EncodedPrompt> {
  return {
    name: `encode-${policy}`,
    batchable: true,
    run: (batch) => perDistinct(batch, async (prompts) => {
      const eraser = ctx.eraser();
      const r = await eraser.encode(prompts, { policy, batch: prompts.length });
      const row = r.t * r.d;
      return prompts.map((_, i) => ({
        last: r.lastHiddenState.subarray(i * row, (i + 1) * row),
        pooler: r.pooler.subarray(i * r.p, (i + 1) * r.p), // pooled width: D, or projection_dim (SDXL tower 2)
        erased: r.erased[i] === 1,
        score: r.scores[i]!,
        concepts: r.concepts[i]!,
        truncated: r.truncated[i]!,
        eraser: eraser.id,
      }));
    }),
  };
}

function wantsBinary(req: FastifyRequest): boolean {
  return (req.headers.accept ?? '').includes('application/octet-stream');
}

function concat(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.reduce((a, r) => a + r.length, 0));
  rows.reduce((at, r) => (out.set(r, at), at + r.length), 0);
  return out;
}

/** safetensors: last_hidden_state F32 [N,T,D] (T: 77 for CLIP, max_sequence_length for T5), pooler_output F32 [N,P], erased U8 [N], score F32 [N]. */
function binaryBody(rows: EncodedPrompt[], t: number, d: number): Uint8Array {
  const n = rows.length;
  return encodeSafetensors({
    last_hidden_state: { dtype: 'F32', shape: [n, t, d], data: concat(rows.map((r) => r.last)) },
    pooler_output: { dtype: 'F32', shape: [n, rows[0]!.pooler.length], data: concat(rows.map((r) => r.pooler)) },
    erased: { dtype: 'U8', shape: [n], data: Uint8Array.from(rows, (r) => (r.erased ? 1 : 0)) },
    score: { dtype: 'F32', shape: [n], data: Float32Array.from(rows, (r) => r.score) },
  }, {
    eraser: rows[0]!.eraser,
    concepts: JSON.stringify(rows.map((r) => r.concepts)),
    truncated: JSON.stringify(rows.map((r) => r.truncated)),
  });
}

/**
 * Rows for `prompts`: cache hits at once, the misses through the batcher (then cached). When a
 * concept edit lands between the lookup and the computation, the hits belong to the old eraser:
 * then every prompt is recomputed, so one reply never mixes two erasers.
 */
async function rowsFor(ctx: ServeContext, kind: BatchKind<string, EncodedPrompt>, policy: GatePolicy, prompts: string[], signal: AbortSignal): Promise<EncodedPrompt[]> {
  const cache = ctx.encodeCache;
  if (!cache) return ctx.batcher.submit(kind, prompts, signal);
  // Refused before tokenizing: under overload a rejection must stay cheap (the price: a request of cached prompts is refused too).
  const refused = ctx.batcher.refusal(prompts.length);
  if (refused) throw refused;
  const eraser = ctx.eraser();
  const tokens = prompts.map((p) => EncodeCache.tokens(eraser.model, p));
  const rows = tokens.map((t) => cache.get(eraser.id, policy, t));
  const missing = prompts.flatMap((_, i) => (rows[i] ? [] : [i]));
  ctx.metrics.cacheLookups.inc({ result: 'hit' }, prompts.length - missing.length);
  ctx.metrics.cacheLookups.inc({ result: 'miss' }, missing.length);
  if (missing.length === 0) return rows as EncodedPrompt[];
  const computed = await ctx.batcher.submit(kind, missing.map((i) => prompts[i]!), signal);
  computed.forEach((row, j) => cache.set(policy, tokens[missing[j]!]!, row));
  if (missing.length < prompts.length && computed[0]!.eraser !== eraser.id) return ctx.batcher.submit(kind, prompts, signal);
  missing.forEach((i, j) => (rows[i] = computed[j]));
  return rows as EncodedPrompt[];
}

export function encodeRoutes(app: FastifyInstance, ctx: ServeContext): void {
  const kinds = Object.fromEntries(POLICIES.map((p) => [p, encodeKind(ctx, p)])) as Record<GatePolicy, BatchKind<string, EncodedPrompt>>;
  app.post<{ Body: EncodeBody }>('/v1/encode', {
    config: { queued: true },
    schema: {
      summary: 'erased conditioning (last_hidden_state, pooler_output) per prompt',
      description: 'JSON: tensors as base64 little-endian float32 per prompt. With Accept: application/octet-stream: one safetensors body ' +
        '(last_hidden_state F32 [N,T,D] with T = 77 (CLIP) or max_sequence_length (T5), pooler_output F32 [N,P] (empty for T5), erased U8 [N], score F32 [N]; metadata: eraser, concepts, truncated).',
      tags: ['erase'],
      produces: ['application/json', 'application/octet-stream'],
      body: promptsBody(ctx.limits.maxPrompts, {
        policy: { type: 'string', enum: POLICIES, description: "gate (default): erase prompts whose score reaches the threshold; always; never" },
      }),
    },
  }, async (req, reply) => {
    const { prompts, policy = 'gate' } = req.body;
    checkCount(prompts, ctx.limits.maxPrompts);
    checkEraserId(ctx, req.body.eraser);
    requireThreshold(ctx, policy);
    const { model } = ctx.eraser();
    const rows = await rowsFor(ctx, kinds[policy], policy, prompts, ctx.deadline(reply));
    ctx.metrics.gate('encode', rows.map((r) => r.erased));
    const d = model.config.hiddenSize;
    const t = rows[0]!.last.length / d;
    if (wantsBinary(req)) {
      const body = binaryBody(rows, t, d);
      return reply.type('application/octet-stream').send(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    }
    return {
      eraser: rows[0]!.eraser,
      dtype: 'float32',
      byteOrder: 'little',
      shape: { last_hidden_state: [t, d], pooler_output: [d] },
      results: rows.map((r, i) => ({
        prompt: prompts[i], erased: r.erased, score: r.score, concepts: r.concepts, truncated: r.truncated,
        last_hidden_state: base64(r.last), pooler_output: base64(r.pooler),
      })),
    };
  });
}
