/** Operations: liveness, readiness, Prometheus metrics, the OpenAPI document, server info. */
import type { FastifyInstance } from 'fastify';
import type { ServeContext } from '../context.js';
import { unavailable } from '../errors.js';
import { METRICS_CONTENT_TYPE } from '../metrics.js';
import { openApiDocument, type DocRoute } from '../openapi.js';

export type ServeState = 'loading' | 'ready' | 'closing' | 'failed';

export interface OpsDeps {
  state(): ServeState;
  routes: DocRoute[];
  auth: boolean;
}

const PUBLIC = { public: true };

export function opsRoutes(app: FastifyInstance, ctx: ServeContext, deps: OpsDeps): void {
  app.get('/healthz', { config: PUBLIC, schema: { summary: 'liveness: the process answers', tags: ['ops'] } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { config: PUBLIC, schema: { summary: 'readiness: models loaded, not shutting down (503 otherwise)', tags: ['ops'] } }, async () => {
    if (deps.state() !== 'ready') throw unavailable('not_ready', `the server is ${deps.state()}`);
    return { status: 'ready', eraser: ctx.eraser().id };
  });

  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['ops'], produces: [METRICS_CONTENT_TYPE] } }, async (_req, reply) =>
    reply.type(METRICS_CONTENT_TYPE).send(ctx.metrics.registry.text()));

  let doc: Record<string, unknown> | undefined; // routes are all registered by the first request
  app.get('/openapi.json', { config: PUBLIC, schema: { summary: 'this document', tags: ['ops'] } }, async () =>
    (doc ??= openApiDocument(deps.routes, { title: 'itd serve: Interpret-then-Deactivate concept erasure', version: '1' })));

  app.get('/v1/info', { schema: { summary: 'model, eraser, limits and optional features of this server', tags: ['ops'] } }, async () => {
    const e = ctx.eraser();
    return {
      model: e.model.id, hiddenSize: e.model.config.hiddenSize, eraser: e.id, layer: e.spec.layer, saeLatents: e.sae.n,
      explain: ctx.actsDir !== undefined, generate: ctx.pipeline() !== undefined, auth: deps.auth, limits: { ...ctx.limits, maxBatch: ctx.batcher.maxBatch },
    };
  });
}
