/**
 * bench:serve — `itd serve` under bounded loopback load (autocannon), CLIP-L-size synthetic model.
 *
 *   1. POST /v1/encode (one prompt per request, safetensors replies) at 1, 8 and 64 concurrent
 *      clients for BENCH_SERVE_LEVEL_S (30 s) each, with micro-batching (max-batch 16) and without
 *      (max-batch 1): throughput, p50, p99, and the batching the server did (from its /metrics);
 *   2. twice the sustainable rate for BENCH_SERVE_OVERLOAD_S (20 s), open loop (requests start on a
 *      clock, whatever the replies), on a server whose queue holds ~5 s of work: 429s counted, 5xx
 *      other than deliberate 503s must be zero, and a request must succeed afterwards;
 *   3. a soak of BENCH_SERVE_SOAK_S (60 s) at 8 clients with the server's RSS sampled via /metrics.
 *
 * Each server runs in a child process (this file with --server), so the load generator and the
 * server do not share an event loop. Only 127.0.0.1 traffic, bounded in count and time.
 * Semantics do not matter here: the SAE is random and the threshold erases about half the prompts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadTextModel } from '../src/encoder/index.js';
import { ConceptEraser } from '../src/erase/index.js';
import { Sae } from '../src/sae/index.js';
import { saveEraser } from '../src/select/eraser-file.js';
import { buildEraser } from '../src/select/select.js';
import { createServer, DEFAULTS } from '../src/serve/index.js';
import { benchModel, machine, table } from './common.js';

const env = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
const LEVEL_S = env('BENCH_SERVE_LEVEL_S', 30);
const OVERLOAD_S = env('BENCH_SERVE_OVERLOAD_S', 20);
const SOAK_S = env('BENCH_SERVE_SOAK_S', 60);
const MAX_QUEUE = 64;

const SUBJECTS = ['a zebra', 'a lighthouse', 'a dog', 'a bowl of fruit', 'a red car', 'a volcano', 'a city street', 'a mountain lake'];
const PROMPTS = SUBJECTS.flatMap((s) => [`a photo of ${s}`, `a painting of ${s} at dusk`, `${s} in the rain, highly detailed`, `an old photograph of ${s}`]);

interface ServerConfig {
  model: string;
  maxBatch: number;
  maxQueue: number;
}

/** Child mode: random SAE, a two-concept eraser thresholded at the median score, server on port 0. */
async function serveChild(cfg: ServerConfig): Promise<void> {
  const model = await loadTextModel(cfg.model);
  const sae = Sae.random({ d: model.config.hiddenSize, n: 4096, k: 32, seed: 1 });
  const spec = await buildEraser(model, sae, {
    targets: [{ name: 'zebra', prompts: PROMPTS.filter((p) => p.includes('zebra')) }, { name: 'volcano', prompts: PROMPTS.filter((p) => p.includes('volcano')) }],
    retain: PROMPTS.filter((p) => p.includes('dog') || p.includes('car')), kSel: 32, scale: -8, mode: 'official', layer: 8, saeId: 'bench', allowEmpty: true,
  });
  const probe = await ConceptEraser.load({ model, sae, eraser: spec });
  const scores = (await probe.classify(PROMPTS)).map((d) => d.score).sort((a, b) => a - b);
  await probe.release();
  const eraserPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'itd-bench-serve-')), 'eraser.json');
  saveEraser(eraserPath, { ...spec, threshold: scores[scores.length >> 1]! });
  const server = await createServer({ model, sae, eraserPath, maxBatch: cfg.maxBatch, maxQueue: cfg.maxQueue, maxPrompts: Math.min(DEFAULTS.maxPrompts, cfg.maxQueue), web: false });
  await server.ready;
  await server.app.listen({ host: '127.0.0.1', port: 0 });
  process.send!({ port: (server.app.server.address() as { port: number }).port });
  process.once('SIGTERM', () => void server.close().then(() => {
    fs.rmSync(path.dirname(eraserPath), { recursive: true, force: true });
    process.exit(0);
  }));
}

interface Running {
  child: ChildProcess;
  url: string;
}

async function startServer(cfg: ServerConfig): Promise<Running> {
  const child = fork(import.meta.filename, ['--server', JSON.stringify(cfg)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`server child exited with ${code}`)));
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

async function stopServer(s: Running): Promise<void> {
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

interface LoadResult {
  duration: number; // s
  latency: { p50: number; p99: number }; // ms
  '2xx': number;
  statusCodeStats: Record<string, { count: number }>;
  errors: number;
  timeouts: number;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<LoadResult>;
// autocannon ships no type declarations: import it untyped and describe the part used here.
const autocannon = ((await import('autocannon' as string)) as { default: Autocannon }).default;

/** Closed loop: each of `connections` clients sends its next request when the last one is answered. */
async function load(url: string, connections: number, seconds: number): Promise<LoadResult> {
  let i = 0;
  return autocannon({
    url: `${url}/v1/encode`, method: 'POST', connections, duration: seconds, timeout: 60,
    headers: { 'content-type': 'application/json', accept: 'application/octet-stream' },
    requests: [{ setupRequest: (req: Record<string, unknown>) => ({ ...req, body: JSON.stringify({ prompts: [PROMPTS[i++ % PROMPTS.length]] }) }) }],
  });
}

async function encodeOnce(url: string, prompt = PROMPTS[0]!): Promise<number> {
  const res = await fetch(`${url}/v1/encode`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/octet-stream' }, body: JSON.stringify({ prompts: [prompt] }) });
  await res.arrayBuffer();
  return res.status;
}

/**
 * Open loop: a request every 1/rps seconds for `seconds`, however slow the replies (autocannon's
 * rate limit caps in-flight requests at the rate, which would hide the queue bound). Status -> count.
 */
async function openLoop(url: string, rps: number, seconds: number): Promise<Map<string, number>> {
  const stats = new Map<string, number>();
  const bump = (k: string) => stats.set(k, (stats.get(k) ?? 0) + 1);
  const sent: Promise<void>[] = [];
  const t0 = performance.now();
  for (let k = 0; k < rps * seconds; k++) {
    await new Promise((r) => setTimeout(r, t0 + (k * 1000) / rps - performance.now()));
    sent.push(encodeOnce(url, PROMPTS[k % PROMPTS.length]).then((status) => void bump(String(status)), () => void bump('error')));
  }
  await Promise.all(sent);
  return stats;
}

/** Waits until the server's queue is empty and one more request goes through (the load's leftovers are done). */
async function settle(url: string): Promise<void> {
  while (/^itd_queue_depth [1-9]/m.test(await (await fetch(`${url}/metrics`)).text())) await new Promise((r) => setTimeout(r, 200));
  await encodeOnce(url);
}

/** Encoder batches so far, from /metrics: how many, prompts in them, seconds spent. */
async function batchStats(url: string): Promise<{ batches: number; prompts: number; seconds: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const sum = (series: string) => [...text.matchAll(new RegExp(`^${series}\\{kind="encode-[a-z]+"\\} (\\S+)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
  return { batches: sum('itd_batch_size_count'), prompts: sum('itd_batch_size_sum'), seconds: sum('itd_batch_duration_seconds_sum') };
}

async function rssMiB(url: string): Promise<number> {
  const m = /^process_resident_memory_bytes (\d+)/m.exec(await (await fetch(`${url}/metrics`)).text());
  return Number(m![1]) / 2 ** 20;
}

const count = (r: LoadResult, f: (code: number) => boolean) => Object.entries(r.statusCodeStats).reduce((a, [c, s]) => a + (f(Number(c)) ? s.count : 0), 0);

interface Level {
  rate: number; // 2xx per second
  p99: number;
  msPerPrompt: number; // encoder time per prompt, from the server's batch metrics
}

/** One closed-loop level: the client-side numbers and the server's batching during it. */
async function measure(name: string, s: Running, clients: number): Promise<{ level: Level; row: (string | number)[] }> {
  const before = await batchStats(s.url);
  const r = await load(s.url, clients, LEVEL_S);
  const after = await batchStats(s.url);
  await settle(s.url);
  const prompts = after.prompts - before.prompts;
  const level = { rate: r['2xx'] / r.duration, p99: r.latency.p99, msPerPrompt: (1e3 * (after.seconds - before.seconds)) / prompts };
  const row = [name, String(clients), level.rate, r.latency.p50, r.latency.p99, String(count(r, (x) => x >= 300) + r.errors), prompts / (after.batches - before.batches), level.msPerPrompt];
  return { level, row };
}

/** 2x the sustainable rate, open loop, on a server whose queue holds about 5 s of work. */
async function overload(model: string, sustainable: number) {
  const maxQueue = Math.max(16, Math.round(5 * sustainable));
  const s = await startServer({ model, maxBatch: 16, maxQueue });
  const rate = Math.max(1, Math.round(2 * sustainable));
  const over = await openLoop(s.url, rate, OVERLOAD_S);
  const of = (f: (code: string) => boolean) => [...over].reduce((a, [c, n]) => a + (f(c) ? n : 0), 0);
  await settle(s.url);
  const stats = {
    maxQueue, rate, ok: of((c) => c === '200'), tooMany: of((c) => c === '429'), deliberate503: of((c) => c === '503'),
    other5xx: of((c) => c >= '500' && c <= '599' && c !== '503'), errors: of((c) => c === 'error'), recovered: await encodeOnce(s.url),
  };
  return { s, stats };
}

/** Closed-loop load for SOAK_S with the server's RSS sampled every 2 s. */
async function soak(s: Running) {
  const rss: number[] = [await rssMiB(s.url)];
  const sampler = setInterval(() => void rssMiB(s.url).then((v) => rss.push(v)), 2000);
  const r = await load(s.url, 8, SOAK_S);
  clearInterval(sampler);
  rss.push(await rssMiB(s.url));
  return { rate: r['2xx'] / r.duration, rss };
}

async function main(): Promise<void> {
  const model = benchModel('sd1');
  const configs = [['unbatched', 1], ['micro-batched', 16]] as const;
  const servers = await Promise.all(configs.map(([, maxBatch]) => startServer({ model, maxBatch, maxQueue: MAX_QUEUE })));
  for (const s of servers) {
    await load(s.url, 4, 3); // warm-up
    await settle(s.url);
  }
  // Levels interleave the two servers so that drift in the machine's load hits both alike.
  const rows: (string | number)[][] = [['serving', 'clients', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'mean batch', 'encoder ms/prompt']];
  const levels = new Map<string, Level>();
  for (const c of [1, 8, 64]) {
    for (const [i, [name, maxBatch]] of configs.entries()) {
      const { level, row } = await measure(`${name} (max-batch ${maxBatch})`, servers[i]!, c);
      levels.set(`${name}-${c}`, level);
      rows.push(row);
    }
  }
  await Promise.all(servers.map(stopServer));
  console.log(`bench:serve — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
  console.log(`model: synthetic sd1 (768 wide, 12 layers), random SAE 4096 latents, POST /v1/encode, 1 prompt per request, safetensors replies; ${LEVEL_S} s per level, max-queue ${MAX_QUEUE}`);
  console.log(table(rows));

  const [un64, mb64, mb8] = [levels.get('unbatched-64')!, levels.get('micro-batched-64')!, levels.get('micro-batched-8')!];
  // The machine's capacity drifts with outside load: take the best micro-batched rate as sustainable, so that 2x exceeds it.
  const sustainable = Math.max(...[1, 8, 64].map((c) => levels.get(`micro-batched-${c}`)!.rate));
  const { s, stats: o } = await overload(model, sustainable);
  const soaked = await soak(s);
  await stopServer(s);
  const ratio = mb64.rate / un64.rate;
  console.log(`overload: open loop at ${o.rate} req/s (2x the best micro-batched rate) for ${OVERLOAD_S} s, max-queue ${o.maxQueue}: ${o.ok} ok, ${o.tooMany} 429, ` +
    `${o.deliberate503} 503, ${o.other5xx} other 5xx, ${o.errors} socket errors; a request after it: HTTP ${o.recovered}`);
  console.log(`soak: 8 clients for ${SOAK_S} s after the overload, ${soaked.rate.toFixed(2)} req/s, server RSS MiB start ${soaked.rss[0]!.toFixed(0)} ` +
    `max ${Math.max(...soaked.rss).toFixed(0)} end ${soaked.rss.at(-1)!.toFixed(0)} (${soaked.rss.length} samples)`);
  // Batching only saves per-call overhead: when encoder time per prompt does not fall with the batch size, throughput cannot rise more.
  console.log(`encoder ms/prompt at 64 clients: ${un64.msPerPrompt.toFixed(0)} in batches of 1, ${mb64.msPerPrompt.toFixed(0)} micro-batched: ` +
    `the compute bound on the batching speed-up on this machine is ${(un64.msPerPrompt / mb64.msPerPrompt).toFixed(2)}x`);
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  console.log(`targets: 64 clients micro-batched >= 3x unbatched: ${ratio.toFixed(2)}x ${verdict(ratio >= 3)}; p99 at 8 clients < 1500 ms: ${mb8.p99.toFixed(0)} ms ${verdict(mb8.p99 < 1500)}; ` +
    `no 5xx but deliberate 503s under overload: ${verdict(o.other5xx === 0)}; recovers after it: ${verdict(o.recovered === 200)}`);
}

if (process.argv[2] === '--server') await serveChild(JSON.parse(process.argv[3]!) as ServerConfig);
else await main();
