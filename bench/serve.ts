/**
 * bench:serve — `itd serve` under bounded loopback load, CLIP-L-size synthetic model.
 *
 *   1. POST /v1/encode (one prompt per request, safetensors replies) at 1, 8 and 64 concurrent
 *      clients for LEVEL_S each, with micro-batching (max-batch 16) and without (max-batch 1):
 *      throughput, p50, p99, and the batching the server did (from its /metrics);
 *   2. goodput under overload, in prompts (default limits: max-queue 256 prompts, 30 s deadline):
 *      the sustainable prompts/s (2 closed-loop clients, 16-prompt requests), the burst
 *      (3 and 64 closed-loop clients sending 64-prompt requests for BURST_S, retrying at once on
 *      429), then an open loop at 2x the sustainable prompts/s for SOAK_S: goodput (prompts
 *      answered 200 inside the window) over the sustainable rate, 5xx count, server RSS sampled;
 *   3. the encode cache: 8 clients, one prompt per request, 30 % of them repeats of a hot set
 *      (the empty negative prompt among them), cache on vs off: throughput gain; hit-path latency.
 *
 * Each server runs in a child process (this file with --server), so the load generator and the
 * server do not share an event loop. Only 127.0.0.1 traffic, bounded in count and time.
 * Semantics do not matter here: the SAE is random and the threshold erases about half the prompts.
 * `--short` (or BENCH_SERVE_SHORT=1): shorter levels and soak, for a quick run; BENCH_SERVE_SECTIONS=2,3 runs only those (burst: only the burst of section 2).
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

const SHORT = process.argv.includes('--short') || process.env['BENCH_SERVE_SHORT'] === '1';
const env = (name: string, full: number, short: number) => Number(process.env[name] ?? (SHORT ? short : full));
const LEVEL_S = env('BENCH_SERVE_LEVEL_S', 30, 8);
const BURST_S = env('BENCH_SERVE_BURST_S', 10, 10);
const SOAK_S = env('BENCH_SERVE_SOAK_S', 120, 30);
/** Seconds of load before a measuring window opens (the queue fills, the first batches finish). */
const LEAD_S = env('BENCH_SERVE_LEAD_S', 10, 6);
const MAX_QUEUE = 64;
const REQ_PROMPTS = 16;
const REPEAT = 0.3;

const SUBJECTS = ['a zebra', 'a lighthouse', 'a dog', 'a bowl of fruit', 'a red car', 'a volcano', 'a city street', 'a mountain lake'];
const PROMPTS = SUBJECTS.flatMap((s) => [`a photo of ${s}`, `a painting of ${s} at dusk`, `${s} in the rain, highly detailed`, `an old photograph of ${s}`]);
/** A prompt no other request sends (the cache cannot help). */
const unique = (k: number) => `${PROMPTS[k % PROMPTS.length]}, variant ${k}`;

interface ServerConfig {
  model: string;
  maxBatch: number;
  maxQueue: number;
  cacheMiB: number;
  refusalPaceMs?: number;
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
  const server = await createServer({ model, sae, eraserPath, maxBatch: cfg.maxBatch, maxQueue: cfg.maxQueue, maxPrompts: Math.min(DEFAULTS.maxPrompts, cfg.maxQueue), cacheMiB: cfg.cacheMiB, ...(cfg.refusalPaceMs !== undefined ? { refusalPaceMs: cfg.refusalPaceMs } : {}), web: false });
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

async function post(url: string, prompts: string[]): Promise<number> {
  const res = await fetch(`${url}/v1/encode`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/octet-stream' }, body: JSON.stringify({ prompts }) });
  await res.arrayBuffer();
  return res.status;
}

/** One answered request: HTTP status ('error' for a socket error), prompts sent, ms from the run's start to the answer. */
interface Outcome {
  status: string;
  prompts: number;
  sentAt: number;
  at: number;
}

/**
 * Drives /v1/encode for `seconds` with request bodies from `prompts(k)`: closed loop (`clients`
 * each send the next request when the last is answered; a 429 is retried at once, as a naive
 * client would) or open loop (`rps` requests per second on a clock, whatever the replies).
 */
async function drive(url: string, seconds: number, prompts: (k: number) => string[], load: { clients: number } | { rps: number }): Promise<Outcome[]> {
  const out: Outcome[] = [];
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  let k = 0;
  const one = async () => {
    const body = prompts(k++);
    const sentAt = now();
    const status = await post(url, body).then(String, () => 'error');
    out.push({ status, prompts: body.length, sentAt, at: now() });
  };
  if ('clients' in load) {
    await Promise.all(Array.from({ length: load.clients }, async () => {
      while (now() < seconds * 1e3) await one();
    }));
  } else {
    const sent: Promise<void>[] = [];
    for (let i = 0; i < load.rps * seconds; i++) {
      await new Promise((r) => setTimeout(r, (i * 1e3) / load.rps - now()));
      sent.push(one());
    }
    await Promise.all(sent);
  }
  return out;
}

/** Prompts answered 200 per second inside [from, from + seconds). */
function goodput(outcomes: Outcome[], from: number, seconds: number): number {
  const inWindow = outcomes.filter((o) => o.status === '200' && o.at >= from * 1e3 && o.at < (from + seconds) * 1e3);
  return inWindow.reduce((a, o) => a + o.prompts, 0) / seconds;
}

const statusCount = (outcomes: Outcome[], f: (status: string) => boolean) => outcomes.filter((o) => f(o.status)).length;
const is5xx = (s: string) => s.startsWith('5');

/** Waits until the server's queue is empty and one more request goes through (the load's leftovers are done). */
async function settle(url: string): Promise<void> {
  while (/^itd_queue_depth [1-9]/m.test(await (await fetch(`${url}/metrics`)).text())) await new Promise((r) => setTimeout(r, 200));
  await post(url, [PROMPTS[0]!]);
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

/** Section 1: one-prompt requests, micro-batched vs not, at 1, 8 and 64 clients. */
async function levels(model: string): Promise<Map<string, Level>> {
  const configs = [['unbatched', 1], ['micro-batched', 16]] as const;
  const servers = await Promise.all(configs.map(([, maxBatch]) => startServer({ model, maxBatch, maxQueue: MAX_QUEUE, cacheMiB: 0 })));
  for (const s of servers) {
    await load(s.url, 4, 3); // warm-up
    await settle(s.url);
  }
  // Levels interleave the two servers so that drift in the machine's load hits both alike.
  const rows: (string | number)[][] = [['serving', 'clients', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'mean batch', 'encoder ms/prompt']];
  const out = new Map<string, Level>();
  for (const c of [1, 8, 64]) {
    for (const [i, [name, maxBatch]] of configs.entries()) {
      const { level, row } = await measure(`${name} (max-batch ${maxBatch})`, servers[i]!, c);
      out.set(`${name}-${c}`, level);
      rows.push(row);
    }
  }
  await Promise.all(servers.map(stopServer));
  console.log(`1. POST /v1/encode, 1 prompt per request, safetensors replies, cache off; ${LEVEL_S} s per level, max-queue ${MAX_QUEUE}`);
  console.log(table(rows));
  const [un64, mb64, mb8] = [out.get('unbatched-64')!, out.get('micro-batched-64')!, out.get('micro-batched-8')!];
  const ratio = mb64.rate / un64.rate;
  // Batching only saves per-call overhead: when encoder time per prompt does not fall with the batch size, throughput cannot rise more.
  console.log(`encoder ms/prompt at 64 clients: ${un64.msPerPrompt.toFixed(0)} in batches of 1, ${mb64.msPerPrompt.toFixed(0)} micro-batched: ` +
    `the compute bound on the batching speed-up on this machine is ${(un64.msPerPrompt / mb64.msPerPrompt).toFixed(2)}x`);
  console.log(`targets: 64 clients micro-batched >= 3x unbatched: ${ratio.toFixed(2)}x ${verdict(ratio >= 3)}; p99 at 8 clients < 1500 ms: ${mb8.p99.toFixed(0)} ms ${verdict(mb8.p99 < 1500)}`);
  return out;
}

const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
const batchOf = (n: number) => (k: number) => Array.from({ length: n }, (_, j) => unique(k * n + j));

/**
 * The burst: 3 vs 64 closed-loop clients sending 64-prompt requests for BURST_S on the
 * tiny model (a 64-prompt request takes ~12 s on the CLIP-L-size one, longer than the burst).
 */
async function burst(): Promise<string> {
  const s = await startServer({ model: benchModel('tiny'), maxBatch: 16, maxQueue: DEFAULTS.maxQueue, cacheMiB: 0, refusalPaceMs: Number(process.env['BENCH_SERVE_PACE_MS'] ?? DEFAULTS.refusalPaceMs) });
  await drive(s.url, 2, batchOf(64), { clients: 1 }); // warm-up
  await settle(s.url);
  const out: string[] = [];
  for (const clients of [3, 64]) {
    const before = await batchStats(s.url);
    const b = await drive(s.url, BURST_S, batchOf(64), { clients });
    const after = await batchStats(s.url);
    const done = b.filter((o) => o.at <= BURST_S * 1e3);
    out.push(`${clients} clients: ${statusCount(done, (x) => x === '200')} requests OK in ${BURST_S} s (${statusCount(b, (x) => x === '429')} x 429, ${statusCount(b, is5xx)} x 5xx; ` +
      `encoder busy ${(after.seconds - before.seconds).toFixed(1)} s, ${((1e3 * (after.seconds - before.seconds)) / (after.prompts - before.prompts)).toFixed(1)} ms/prompt)`);
    await settle(s.url);
  }
  await stopServer(s);
  return out.join('; ');
}

/** Section 2: sustainable prompts/s, the 64-client burst, and 2x the sustainable rate over a soak with RSS sampled. */
async function overload(model: string, bursts: string): Promise<boolean> {
  const s = await startServer({ model, maxBatch: 16, maxQueue: DEFAULTS.maxQueue, cacheMiB: 0 });
  await drive(s.url, 3, batchOf(4), { clients: 2 }); // warm-up
  await settle(s.url);
  // Two clients keep the encoder busy (one request runs while the other waits) without meeting the admission limits.
  const closed = await drive(s.url, LEAD_S + LEVEL_S, batchOf(REQ_PROMPTS), { clients: 2 });
  const sustainable = goodput(closed, LEAD_S, LEVEL_S);
  await settle(s.url);
  const rps = (2 * sustainable) / REQ_PROMPTS;
  const rss: number[] = [await rssMiB(s.url)];
  const sampler = setInterval(() => void rssMiB(s.url).then((v) => rss.push(v)), 2000);
  const over = await drive(s.url, LEAD_S + SOAK_S, batchOf(REQ_PROMPTS), { rps });
  clearInterval(sampler);
  await settle(s.url);
  rss.push(await rssMiB(s.url));
  await stopServer(s);
  const served = goodput(over, LEAD_S, SOAK_S);
  const ratio = served / sustainable;
  const fiveXx = statusCount(over, is5xx);
  const okLatency = over.filter((o) => o.status === '200').map((o) => o.at - o.sentAt).sort((a, b) => a - b);
  const quarter = Math.max(1, rss.length >> 2);
  const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
  const [early, late] = [mean(rss.slice(1, 1 + quarter)), mean(rss.slice(-quarter))];
  console.log(`\n2. goodput under overload (max-queue ${DEFAULTS.maxQueue} prompts, timeout ${DEFAULTS.timeoutMs} ms, cache off, every prompt distinct)`);
  console.log(`sustainable: ${sustainable.toFixed(2)} prompts/s (2 closed-loop clients, ${REQ_PROMPTS}-prompt requests, ${LEVEL_S} s window after ${LEAD_S} s of lead)`);
  console.log(`burst (tiny model), 64-prompt requests, closed loop retrying at once on 429: ${bursts}`);
  console.log(`2x: open loop at ${rps.toFixed(3)} req/s x ${REQ_PROMPTS} prompts = ${(2 * sustainable).toFixed(2)} prompts/s for ${LEAD_S} + ${SOAK_S} s: ` +
    `${served.toFixed(2)} prompts/s answered 200 in the ${SOAK_S} s window = ${(100 * ratio).toFixed(1)} % of sustainable; ` +
    `${statusCount(over, (x) => x === '200')} OK, ${statusCount(over, (x) => x === '429')} x 429, ${fiveXx} x 5xx, ${statusCount(over, (x) => x === 'error')} socket errors; ` +
    `OK latency p50 ${okLatency[okLatency.length >> 1]?.toFixed(0)} ms, max ${okLatency.at(-1)?.toFixed(0)} ms`);
  console.log(`server RSS over the soak (${rss.length} samples, MiB): start ${rss[0]!.toFixed(0)}, max ${Math.max(...rss).toFixed(0)}, end ${rss.at(-1)!.toFixed(0)}; ` +
    `mean of the first quarter ${early.toFixed(0)}, of the last ${late.toFixed(0)} (${(((late - early) / early) * 100).toFixed(1)} %)`);
  const flat = late <= early * 1.05;
  console.log(`targets: goodput at 2x >= 80 % of sustainable: ${verdict(ratio >= 0.8)}; no 5xx: ${verdict(fiveXx === 0)}; RSS flat (last quarter within 5 % of the first): ${verdict(flat)}`);
  return ratio >= 0.8 && fiveXx === 0 && flat;
}

/** ms of `n` sequential one-prompt requests from `prompt(i)`: p50 and p99. */
async function latency(url: string, n: number, prompt: (i: number) => string): Promise<{ p50: number; p99: number }> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    if ((await post(url, [prompt(i)])) !== 200) throw new Error('latency probe failed');
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return { p50: ms[n >> 1]!, p99: ms[Math.min(n - 1, Math.floor(n * 0.99))]! };
}

/** Section 3: cache on vs off at a 30 % repeat rate; hit vs miss latency. */
async function cache(model: string): Promise<void> {
  const hot = ['', ...PROMPTS.slice(0, 7)]; // the empty negative prompt and a few popular prompts
  // Deterministic mix: 3 in every 10 requests repeat a hot prompt, the rest are new.
  const mix = (k: number) => [k % 10 < REPEAT * 10 ? hot[k % hot.length]! : unique(1e6 + k)];
  const rows: (string | number)[][] = [['encode cache', 'req/s', 'hit rate']];
  const rates: number[] = [];
  for (const cacheMiB of [0, DEFAULTS.cacheMiB]) {
    const s = await startServer({ model, maxBatch: 16, maxQueue: MAX_QUEUE, cacheMiB });
    await drive(s.url, 3, (k) => [unique(2e6 + k)], { clients: 4 }); // warm-up
    for (const p of hot) await post(s.url, [p]); // steady state: the hot prompts have been seen before
    await settle(s.url);
    const before = await (await fetch(`${s.url}/metrics`)).text();
    const r = await drive(s.url, LEAD_S + LEVEL_S, mix, { clients: 8 });
    const after = await (await fetch(`${s.url}/metrics`)).text();
    const hits = (t: string) => Number(/^itd_encode_cache_lookups_total\{result="hit"\} (\S+)/m.exec(t)?.[1] ?? 0);
    const lookups = (t: string) => hits(t) + Number(/^itd_encode_cache_lookups_total\{result="miss"\} (\S+)/m.exec(t)?.[1] ?? 0);
    rates.push(goodput(r, LEAD_S, LEVEL_S));
    rows.push([cacheMiB ? `on (${cacheMiB} MiB)` : 'off', rates.at(-1)!, cacheMiB ? (hits(after) - hits(before)) / Math.max(1, lookups(after) - lookups(before)) : 0]);
    await settle(s.url);
    if (cacheMiB) {
      const hit = await latency(s.url, 50, (i) => hot[i % hot.length]!);
      const miss = await latency(s.url, 10, (i) => unique(3e6 + i));
      console.log(`\n3. encode cache: 8 closed-loop clients, 1 prompt per request, ${REPEAT * 100} % repeats of ${hot.length} hot prompts (incl. ""), ${LEVEL_S} s window after ${LEAD_S} s`);
      console.log(table(rows));
      console.log(`throughput gain with the cache: ${(rates[1]! / rates[0]!).toFixed(2)}x; sequential latency: hit p50 ${hit.p50.toFixed(1)} ms (p99 ${hit.p99.toFixed(1)}), ` +
        `miss p50 ${miss.p50.toFixed(0)} ms: a hit costs ${((100 * hit.p50) / miss.p50).toFixed(1)} % of a miss`);
    }
    await stopServer(s);
  }
}

async function main(): Promise<void> {
  const model = benchModel('sd1');
  console.log(`bench:serve${SHORT ? ' --short' : ''} — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
  console.log('model: synthetic sd1 (768 wide, 12 layers), random SAE 4096 latents');
  const sections = (process.env['BENCH_SERVE_SECTIONS'] ?? '1,2,3').split(',');
  if (sections.includes('1')) await levels(model);
  if (sections.includes('2')) await overload(model, await burst());
  else if (sections.includes('burst')) console.log(`burst (tiny model), 64-prompt requests, closed loop retrying at once on 429: ${await burst()}`);
  if (sections.includes('3')) await cache(model);
}

if (process.argv[2] === '--server') await serveChild(JSON.parse(process.argv[3]!) as ServerConfig);
else await main();
