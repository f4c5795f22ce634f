/** `itd serve`: the HTTP API and playground over one model, SAE and eraser. */
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { bool, int, list, NO_CANONICAL_FLAG, optStr, str, UsageError, type CommandSpec, type Flags } from './args.js';
import { loadPart, resolveItdPart } from '../encoder/index.js';
import { ENCODER_FLAG, t5Options } from './encoder.js';
import { loadSae, saeIdentity } from '../sae/index.js';
import { isLoopback, parseToken } from '../serve/auth.js';
import type { ImagePipeline } from '../serve/context.js';
import { createServer, DEFAULTS, type Server, type ServeOptions } from '../serve/server.js';
import { ItdError } from '../errors.js';

/** Hooks the host CLI provides (image generation lives in another module). */
export interface ServeDeps {
  loadPipeline?(pipelineDir: string): Promise<ImagePipeline>;
}

const FLAGS = {
  model: { type: 'string', help: 'model directory' },
  sae: { type: 'string', help: 'SAE directory (sae.safetensors + cfg.json)' },
  ...ENCODER_FLAG,
  eraser: { type: 'string', help: 'ERASER.json (concept edits rewrite it atomically)' },
  pipeline: { type: 'string', help: 'Stable Diffusion pipeline directory: enables POST /v1/generate' },
  acts: { type: 'string', help: 'activation collection (itd collect): enables GET /v1/explain' },
  host: { type: 'string', default: '127.0.0.1', help: 'bind address (beyond loopback needs --token-file)' },
  port: { type: 'string', default: '8080', help: 'port (0: any free port)' },
  'token-file': { type: 'string', help: 'file whose first line is the bearer token clients must send' },
  'max-batch': { type: 'string', default: String(DEFAULTS.maxBatch), help: 'prompts per encoder batch (1: no micro-batching)' },
  'max-wait-ms': { type: 'string', default: String(DEFAULTS.maxWaitMs), help: 'how long a prompt may wait for others to fill its batch' },
  'max-queue': { type: 'string', default: String(DEFAULTS.maxQueue), help: 'prompts waiting before requests get 429' },
  'max-prompts': { type: 'string', default: String(DEFAULTS.maxPrompts), help: 'prompts per request (more: 413)' },
  'timeout-ms': { type: 'string', default: String(DEFAULTS.timeoutMs), help: 'per-request deadline (503 while queued, 504 while computing)' },
  'refusal-pace-ms': { type: 'string', default: String(DEFAULTS.refusalPaceMs), help: 'hold a refused (429) request this long before answering (0: at once)' },
  'cache-mib': { type: 'string', default: String(DEFAULTS.cacheMiB), help: 'encode cache size in MiB (0: off)' },
  'allowed-host': { type: 'string', multiple: true, help: 'host name to answer besides loopback ones when there is no token (e.g. a hosts-file alias)' },
  cors: { type: 'string', help: 'allow cross-origin requests from this one origin' },
  log: { type: 'boolean', help: 'log every request (JSON lines on stdout)' },
  ...NO_CANONICAL_FLAG,
} as const;

function tokenFrom(flags: Flags, host: string): string | undefined {
  const file = optStr(flags, 'token-file');
  if (!file) {
    if (!isLoopback(host)) throw new UsageError(`binding ${host} (beyond loopback) requires --token-file`);
    return undefined;
  }
  return parseToken(fs.readFileSync(file, 'utf8'), file);
}

/** Server options from flags; `later` defers the model loading until the server listens. */
function options(flags: Flags, deps: ServeDeps, later: <T>(load: () => T | Promise<T>) => Promise<T>): ServeOptions {
  const host = str(flags, 'host');
  const token = tokenFrom(flags, host);
  const [modelDir, saeDir, eraserPath] = [str(flags, 'model'), str(flags, 'sae'), str(flags, 'eraser')];
  if (!fs.existsSync(eraserPath)) throw new ItdError('not_found', `${eraserPath}: eraser file not found`, { file: eraserPath, field: 'eraser' });
  const pipelineDir = optStr(flags, 'pipeline');
  if (pipelineDir && !deps.loadPipeline) throw new UsageError('--pipeline is not available in this build (no pipeline loader wired into serve)');
  const sae = later(() => loadSae(saeDir));
  const encoder = optStr(flags, 'encoder');
  const partOptions = t5Options(flags);
  return {
    // The encoder part the SAE was trained on (or --encoder's, which must agree with it).
    model: later(async () => loadPart(resolveItdPart(modelDir, encoder, (await sae).cfg.hookpoint), partOptions)),
    sae,
    saeId: later(() => saeIdentity(saeDir)),
    pipeline: pipelineDir ? later(() => deps.loadPipeline!(pipelineDir)) : undefined,
    eraserPath,
    canonical: !bool(flags, 'no-canonical'),
    actsDir: optStr(flags, 'acts'),
    maxBatch: int(flags, 'max-batch', 1), maxWaitMs: int(flags, 'max-wait-ms', 0), maxQueue: int(flags, 'max-queue', 1),
    maxPrompts: int(flags, 'max-prompts', 1), timeoutMs: int(flags, 'timeout-ms', 1), cacheMiB: int(flags, 'cache-mib', 0), refusalPaceMs: int(flags, 'refusal-pace-ms', 0),
    cors: optStr(flags, 'cors'), allowedHosts: list(flags, 'allowed-host'), token, requireAuth: !isLoopback(host),
    logger: bool(flags, 'log') ? { level: 'info' } : { level: 'warn' },
  };
}

/** Resolves once SIGTERM/SIGINT has drained the server; a second signal exits at once, a stuck drain after the timeout. */
function stopOnSignal(server: Server, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    let signals = 0;
    const stop = (sig: string) => {
      if (++signals > 1) process.exit(130);
      process.stderr.write(`itd serve: ${sig}: finishing in-flight requests\n`);
      setTimeout(() => process.exit(1), timeoutMs + 10_000).unref();
      void server.close().then(resolve);
    };
    process.on('SIGTERM', stop).on('SIGINT', stop);
  });
}

/** The addresses the socket is actually bound to (the real port for --port 0, 0.0.0.0 as itself rather than Fastify's 127.0.0.1 stand-in). */
function boundUrls(server: Server): string {
  const url = (a: string | AddressInfo) => (typeof a === 'string' ? a : `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`); // a string: a pipe path
  return server.app.addresses().map(url).join(' and ');
}

async function serve(flags: Flags, deps: ServeDeps): Promise<void> {
  // Loading starts once the server listens: /healthz answers and /readyz says 503 until the models are in.
  let listening!: () => void;
  const listened = new Promise<void>((resolve) => (listening = resolve));
  const opts = options(flags, deps, (load) => listened.then(load));
  const server = await createServer(opts);
  await server.app.listen({ host: str(flags, 'host'), port: int(flags, 'port', 0) });
  const address = boundUrls(server);
  listening();
  process.stderr.write(`itd serve: listening on ${address}${opts.token ? ' (bearer token required)' : ''}; loading models...\n`);
  const stopped = stopOnSignal(server, opts.timeoutMs!);
  try {
    await server.ready;
  } catch (e) {
    await server.close();
    throw e;
  }
  process.stderr.write(`itd serve: ready at ${address}\n`);
  await stopped;
  process.stderr.write('itd serve: stopped\n');
}

export function serveSpec(deps: ServeDeps = {}): CommandSpec {
  return {
    name: 'serve',
    usage: 'serve --model DIR --sae SAE_DIR --eraser ERASER.json [--pipeline DIR] [--acts DIR] [--host 127.0.0.1] [--port 8080] [--token-file F] ' +
      '[--max-batch 16] [--max-wait-ms 10] [--max-queue 256] [--max-prompts 64] [--timeout-ms 30000] [--cache-mib 64] [--allowed-host NAME] [--cors ORIGIN] [--log]',
    flags: FLAGS,
    run: (flags) => serve(flags, deps),
  };
}

export const serveCommand: CommandSpec = serveSpec();
