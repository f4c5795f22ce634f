/**
 * The HTTP server: a thin Fastify layer over ConceptEraser. Requests are validated by schema (no
 * type coercion), model work goes through one micro-batcher, every error is {error: {code,
 * message}}, and close() drains: new requests get 503, in-flight ones finish, then models are released.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TextModel } from '../encoder/index.js';
import { ConceptEraser, erasedPartIndex } from '../erase/index.js';
import type { Sae } from '../sae/index.js';
import { bearerToken, hostAllowed, originAllowed, tokenMatches } from './auth.js';
import { Batcher, QueueFullError } from './batcher.js';
import type { ImagePipeline, ServeContext } from './context.js';
import { EncodeCache } from './encode-cache.js';
import { ItdError } from '../errors.js';
import { ApiError, clientErrorHandler, sendError, unavailable } from './errors.js';
import { ServeMetrics } from './metrics.js';
import { collectRoutes } from './openapi.js';
import { classifyRoutes } from './routes/classify.js';
import { conceptRoutes } from './routes/concepts.js';
import { encodeRoutes } from './routes/encode.js';
import { featureRoutes } from './routes/features.js';
import { generateRoutes } from './routes/generate.js';
import { opsRoutes, type ServeState } from './routes/ops.js';
import { webRoutes } from './routes/web.js';

type Loadable<T> = T | Promise<T>;

export interface ServeOptions {
  /** Loaded objects or their loading promises (the server answers /healthz and 503s meanwhile). */
  model: Loadable<TextModel>;
  sae: Loadable<Sae>;
  /** Checked against the eraser's saeId when given. */
  saeId?: Loadable<string>;
  /** The eraser file: loaded at start, rewritten atomically by concept edits. */
  eraserPath: string;
  /** Score the canonical form of prompts too (disguise defence; default true). */
  canonical?: boolean;
  /** Activation collection for /v1/explain. */
  actsDir?: string;
  pipeline?: Loadable<ImagePipeline>;
  maxBatch?: number;
  maxWaitMs?: number;
  maxQueue?: number;
  maxPrompts?: number;
  maxCalibratePrompts?: number;
  timeoutMs?: number;
  /** Encode cache size in MiB (default 64; 0: off). */
  cacheMiB?: number;
  /**
   * How long a refused (429) request is held before its answer (default 1000 ms, within the
   * Retry-After of >= 1 s it carries; 0: answer at once). A client that retries without backoff then
   * costs a timer, not a core: unpaced, 64 such clients spend the CPU the encoder needs on 429s.
   */
  refusalPaceMs?: number;
  /** Request body limit in bytes (default 1 MiB). */
  bodyLimit?: number;
  /** Allow this one origin (CORS is off otherwise). */
  cors?: string;
  /** Host names answered besides loopback ones when there is no token (DNS-rebinding guard; default none). */
  allowedHosts?: string[];
  /** Bearer token; when set every route but /, assets, health and the OpenAPI document needs it. */
  token?: string;
  /** Refuse to start without a token (the CLI sets it when binding beyond loopback). */
  requireAuth?: boolean;
  /** Serve the playground at / (default true). */
  web?: boolean;
  logger?: boolean | Record<string, unknown>;
}

export interface Server {
  app: FastifyInstance;
  /** Resolves once models and eraser are loaded; rejects when loading fails. */
  ready: Promise<void>;
  /** Graceful: 503 to new requests, finish in-flight ones, release what the server loaded. */
  close(): Promise<void>;
}

export const DEFAULTS = { maxBatch: 16, maxWaitMs: 10, maxQueue: 256, maxPrompts: 64, maxCalibratePrompts: 1024, timeoutMs: 30_000, bodyLimit: 1 << 20, cacheMiB: 64, refusalPaceMs: 1000 } as const;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** JSON bodies must be valid UTF-8 (the default parser would silently substitute U+FFFD). */
function parseJson(_req: FastifyRequest, body: Buffer, done: (err: Error | null, value?: unknown) => void): void {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    return done(new ApiError(400, 'invalid_utf8', 'the request body is not valid UTF-8'));
  }
  try {
    done(null, JSON.parse(text));
  } catch (e) {
    done(new ApiError(400, 'invalid_json', `malformed JSON: ${(e as Error).message}`));
  }
}

/** Route flags: `public` needs no token; `queued` routes send prompts to the batcher (admission is checked before the body is read). */
interface RouteFlags {
  public?: boolean;
  queued?: boolean;
}
const flags = (req: FastifyRequest) => req.routeOptions.config as RouteFlags;

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Share of the request deadline that the estimated queueing and computing may take. The rest is
 * room for the estimate's error on a machine whose load drifts (an admitted request that times out
 * is wasted work and a 5xx); much less would let the encoder idle between admitted requests when a
 * deadline holds only a few requests' worth of work.
 */
const ADMIT_SHARE = 0.75;

type Resolved = ServeOptions & typeof DEFAULTS;

/** Resolves after `ms`, or as soon as the client goes away. */
function pace(reply: FastifyReply, ms: number): Promise<void> {
  if (!(ms > 0)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => (clearTimeout(timer), reply.raw.off('close', done), resolve());
    const timer = setTimeout(done, ms);
    reply.raw.once('close', done);
  });
}

/** What loading and shutdown change while requests run. */
interface Live {
  state: ServeState;
  eraser?: ConceptEraser;
  pipeline?: ImagePipeline;
}

function makeContext(o: Resolved, live: Live): ServeContext {
  const encodeCache = o.cacheMiB > 0 ? new EncodeCache(o.cacheMiB * 2 ** 20) : undefined;
  const metrics = new ServeMetrics(() => batcher.depth, () => encodeCache?.bytes ?? 0);
  const batcher = new Batcher({
    maxBatch: o.maxBatch, maxWaitMs: o.maxWaitMs, maxQueue: o.maxQueue, budgetMs: ADMIT_SHARE * o.timeoutMs,
    onBatch: (kind, size, ms) => (metrics.batchSize.observe(size, { kind }), metrics.batchSeconds.observe(ms / 1e3, { kind })),
  });
  return {
    limits: { maxPrompts: o.maxPrompts, maxCalibratePrompts: o.maxCalibratePrompts, timeoutMs: o.timeoutMs },
    batcher, metrics, encodeCache, eraserPath: o.eraserPath, actsDir: o.actsDir,
    eraser: () => {
      if (!live.eraser) throw unavailable('not_ready', `models are not loaded (the server is ${live.state})`);
      return live.eraser;
    },
    pipeline: () => live.pipeline,
    deadline: (reply) => {
      const gone = new AbortController();
      reply.raw.once('close', () => reply.raw.writableFinished || gone.abort());
      return AbortSignal.any([AbortSignal.timeout(o.timeoutMs), gone.signal]);
    },
  };
}

/** Body parsing, error format, CORS, shutdown and auth gates, security headers, request metrics. */
function installHttp(app: FastifyInstance, o: Resolved, live: Live, { metrics, batcher }: ServeContext): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, parseJson);
  app.setErrorHandler(async (err, req, reply) => {
    if (err instanceof QueueFullError) await pace(reply, o.refusalPaceMs);
    return sendError(err, req, reply);
  });
  app.setNotFoundHandler((req, reply) => sendError(new ApiError(404, 'not_found', `no route ${req.method} ${req.url.split('?')[0]}`), req, reply));
  const allowedHosts = new Set((o.allowedHosts ?? []).map((h) => h.toLowerCase()));
  app.addHook('onRequest', async (req, reply) => {
    const { host, origin } = req.headers;
    if (!o.token && !hostAllowed(host, allowedHosts)) {
      throw new ApiError(403, 'host_not_allowed', `Host ${JSON.stringify(host ?? '')} is not a loopback name or an allowed host (--allowed-host)`);
    }
    if (origin !== undefined && !SAFE_METHODS.has(req.method) && !originAllowed(origin, host, o.cors)) {
      throw new ApiError(403, 'origin_not_allowed', `cross-origin ${req.method} from ${JSON.stringify(origin)} refused (allow one origin with --cors)`);
    }
    if (o.cors && origin === o.cors) reply.header('access-control-allow-origin', o.cors).header('vary', 'Origin').header('access-control-expose-headers', 'retry-after');
    if (live.state === 'closing') throw unavailable('shutting_down', 'the server is shutting down');
    if (o.token && !flags(req).public) {
      const given = bearerToken(req.headers.authorization);
      if (given === undefined || !tokenMatches(given, o.token)) throw new ApiError(401, 'unauthorized', 'missing or wrong bearer token', { 'www-authenticate': 'Bearer' });
    }
    // Cheap early refusal: when not even one more prompt would be admitted, skip parsing and validating the body.
    const refused = flags(req).queued ? batcher.refusal(1) : undefined;
    if (refused) throw refused;
  });
  app.addHook('onSend', async (_req, reply: FastifyReply) => {
    reply.header('x-content-type-options', 'nosniff');
    if (live.state === 'closing') reply.header('connection', 'close'); // lets keep-alive sockets end so close() can finish
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, method: req.method, status: String(reply.statusCode) });
    metrics.latency.observe(reply.elapsedTime / 1e3, { route });
  });
  if (o.cors) {
    app.options('/*', { config: { public: true }, schema: { hide: true } }, async (_req, reply) =>
      reply.code(204).header('access-control-allow-methods', 'GET, POST, DELETE').header('access-control-allow-headers', 'authorization, content-type, accept').header('access-control-max-age', '600').send());
  }
}

async function load(o: Resolved, live: Live): Promise<void> {
  const [model, sae, saeId, pipeline] = await Promise.all([o.model, o.sae, o.saeId, o.pipeline]);
  live.eraser = await ConceptEraser.load({ model, sae, eraser: o.eraserPath, ...(saeId ? { saeId } : {}), canonical: o.canonical ?? true });
  if (pipeline) erasedPartIndex(pipeline.text, live.eraser); // the eraser's encoder must be one of the pipeline's: refused at start, not per image
  // Everything a forward needs is made now, not in the first request. onnxruntime-node runs a
  // session on the main thread: one session per block hands the event loop back between blocks,
  // so health checks and new requests are answered during a long encode (the addon's C blocks run
  // off the main thread, and are packed here).
  const { encoder } = live.eraser.model;
  await encoder.prepare?.(Array.from({ length: encoder.numLayers }, (_, i) => i));
  live.pipeline = pipeline;
  if (live.state === 'loading') live.state = 'ready';
}

export async function createServer(opts: ServeOptions): Promise<Server> {
  const o = { ...DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as Resolved;
  if (o.requireAuth && !o.token) throw new ItdError('usage', 'a token is required (binding beyond loopback needs --token-file)', { field: 'token' });
  if (o.maxPrompts > o.maxQueue) throw new ItdError('usage', `maxPrompts (${o.maxPrompts}) must not exceed maxQueue (${o.maxQueue})`, { field: 'maxPrompts' });
  // Imported here, not at the top: fastify's ~0.3 s load would otherwise slow every `itd` command.
  const { default: Fastify } = await import('fastify');
  const app = Fastify({
    logger: o.logger ?? false,
    bodyLimit: o.bodyLimit,
    return503OnClosing: false, // our own 503 carries Retry-After and the error format
    routerOptions: { maxParamLength: 500 },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
    frameworkErrors: (err, req, reply) => void sendError(err, req, reply),
    clientErrorHandler,
  });
  const live: Live = { state: 'loading' };
  const ctx = makeContext(o, live);
  installHttp(app, o, live, ctx);
  const routes = collectRoutes(app);
  opsRoutes(app, ctx, { state: () => live.state, routes, auth: o.token !== undefined });
  for (const register of [encodeRoutes, classifyRoutes, conceptRoutes, featureRoutes, generateRoutes]) register(app, ctx);
  if (o.web !== false) await webRoutes(app);
  await app.ready();

  const ready = load(o, live);
  ready.catch(() => {
    if (live.state === 'loading') live.state = 'failed';
  });
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= (async () => {
    live.state = 'closing';
    await app.close();
    await ready.catch(() => undefined);
    await live.eraser?.release();
    await live.pipeline?.release?.();
  })());
  return { app, ready, close };
}
