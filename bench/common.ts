/** Benchmark helpers: cached synthetic models and activations, GEMM baselines measured in the same run, RSS. */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Graph } from '../src/onnx/graph.js';
import { createSession, f32 } from '../src/onnx/session.js';
import { readCsv } from '../src/io/prompts.js';
import type { Preset } from '../src/synth/clip.js';
import { Rng } from '../src/util/rng.js';

export const ROOT = path.resolve(import.meta.dirname, '..');
/** argv prefix that runs the `itd` CLI from the sources. */
export const ITD_CLI = ['--import', 'tsx', path.join(ROOT, 'src', 'cli', 'bin.ts')];
export const CACHE = path.join(ROOT, '.cache', 'bench');
export const CLIP_VOCAB = path.resolve(ROOT, '..', 'shared', 'data', 'clip', 'bpe_simple_vocab_16e6.txt.gz');
export const PROMPT_DATA = path.resolve(ROOT, '..', 'shared', 'data', 'prompts');

/** Exits (successfully) when the shared prompt sets are missing: `bench` names the benchmark skipped. */
export function requirePromptData(bench: string): void {
  if (fs.existsSync(PROMPT_DATA)) return;
  console.log(`${bench} skipped: ${PROMPT_DATA} not found (the shared prompt sets are needed)`);
  process.exit(0);
}

/** One column of a CSV in the shared prompt sets. */
export function promptColumn(file: string, name: string): string[] {
  const { header, rows } = readCsv(path.join(PROMPT_DATA, file));
  return rows.map((r) => r[header.indexOf(name)]!);
}

/** A synthetic model written once by the CLI in a child process (keeps this process's RSS honest). */
export function benchModel(preset: Preset, seed = 0, sink = true): string {
  const dir = path.join(CACHE, `${preset}-${seed}${sink ? '' : '-nosink'}`);
  if (!fs.existsSync(path.join(dir, 'model_index.json'))) {
    const vocab = fs.existsSync(CLIP_VOCAB) ? ['--vocab', CLIP_VOCAB] : [];
    const r = spawnSync(process.execPath, [...ITD_CLI, 'synth-model', '--out', dir, '--preset', preset, '--seed', String(seed), '--force', ...vocab, ...(sink ? [] : ['--no-sink'])], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`synth-model failed for ${preset}`);
  }
  return dir;
}

export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  return `${cpu}, ${os.availableParallelism()} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`;
}

export function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

export async function timeBest(fn: () => Promise<unknown> | unknown, reps: number): Promise<number> {
  return (await timeBestCpu(fn, reps)).ms;
}

/**
 * A rate measured both ways: GFLOP/s by wall clock, and GFLOP per CPU-second of all its threads
 * together (= per busy core; what each core gives when no other job shares it).
 */
export interface Rate {
  wall: number;
  cpu: number;
}

/** Best-of-`reps` wall time of fn, with the process CPU time (user+sys) of that same rep; ms. */
export async function timeBestCpu(fn: () => Promise<unknown> | unknown, reps: number): Promise<{ ms: number; cpuMs: number }> {
  let best = { ms: Infinity, cpuMs: Infinity };
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    if (ms < best.ms) best = { ms, cpuMs: (c.user + c.system) / 1e3 };
  }
  return best;
}

/** onnxruntime's own sgemm rate (GFLOP/s) for [m,k] @ [k,n] with a constant (prepacked) B. */
export async function ortGemmRate(m: number, k: number, n: number): Promise<number> {
  return (await ortGemm(m, k, n)).wall;
}

export async function ortGemm(m: number, k: number, n: number): Promise<Rate> {
  const g = new Graph('gemm');
  const a = g.input('a', 'float32', [m, k]);
  const w = g.initializer('w', { type: 'float32', dims: [k, n], data: new Float32Array(k * n).fill(0.01) });
  g.output(g.op('MatMul', [a, w]), 'float32', [m, n], 'y');
  const s = await createSession(g.toModel());
  const x = f32(new Float32Array(m * k).fill(0.5), [m, k]);
  await s.run({ a: x });
  const { ms, cpuMs } = await timeBestCpu(() => s.run({ a: x }), 5);
  await s.release();
  const flop = 2 * m * k * n;
  return { wall: flop / (ms / 1e3) / 1e9, cpu: flop / (cpuMs / 1e3) / 1e9 };
}

/** numpy's sgemm rate for the same shape, or undefined when python3/numpy are missing. */
export function numpyGemmRate(m: number, k: number, n: number): number | undefined {
  return numpyGemm(m, k, n)?.wall;
}

export function numpyGemm(m: number, k: number, n: number): Rate | undefined {
  const code = `import numpy as np, time
a=np.random.rand(${m},${k}).astype(np.float32); b=np.random.rand(${k},${n}).astype(np.float32)
a@b; best=(1e9,1e9)
for _ in range(5):
  t=time.perf_counter(); c=time.process_time(); a@b; best=min(best,(time.perf_counter()-t,time.process_time()-c))
f=2*${m}*${k}*${n}/1e9
print(f/best[0], f/max(best[1],1e-9))`;
  try {
    const [wall, cpu] = execFileSync('python3', ['-c', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split(' ').map(Number);
    return { wall: wall!, cpu: cpu! };
  } catch {
    return undefined;
  }
}

/** The best of each engine's sgemm over the model's own shape and a large square one. */
export async function bestSgemm(m: number, k: number, n: number): Promise<{ ort: Rate; numpy: Rate | undefined }> {
  const shapes: [number, number, number][] = [[m, k, n], [2048, 2048, 2048]];
  const best = (rates: Rate[]): Rate => ({ wall: Math.max(...rates.map((r) => r.wall)), cpu: Math.max(...rates.map((r) => r.cpu)) });
  const ort: Rate[] = [];
  for (const [a, b, c] of shapes) ort.push(await ortGemm(a, b, c));
  const np = shapes.map(([a, b, c]) => numpyGemm(a, b, c)).filter((r): r is Rate => r !== undefined);
  return { ort: best(ort), numpy: np.length ? best(np) : undefined };
}

/**
 * The machine's float32 FMA peak on `threads` threads (bench/fma_peak.c, compiled here with
 * -march=native: register-only vector FMA chains): wall = all threads by the clock, cpu = per
 * CPU-second (one core's peak). Undefined without a C compiler.
 */
export function fmaPeak(threads: number): (Rate & { bits: number }) | undefined {
  const exe = path.join(CACHE, 'fma_peak');
  try {
    fs.mkdirSync(CACHE, { recursive: true });
    execFileSync('cc', ['-O2', '-march=native', '-pthread', path.join(ROOT, 'bench', 'fma_peak.c'), '-o', exe], { stdio: 'ignore' });
    const [wall, cpu, bits] = execFileSync(exe, [String(threads)], { encoding: 'utf8' }).trim().split(' ').map(Number);
    return { wall: wall!, cpu: cpu! / threads, bits: bits! };
  } catch {
    return undefined;
  }
}

/** Wall seconds, CPU seconds (user+sys) and peak RSS of a whole child process, via python's rusage of children. */
export function wholeProcess(argv: string[], env: NodeJS.ProcessEnv = process.env): { wall: number; cpu: number; rssMiB: number } {
  const code = `import resource, subprocess, sys, time
t = time.perf_counter(); r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
w = time.perf_counter() - t; u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.returncode, w, u.ru_utime + u.ru_stime, u.ru_maxrss)`;
  const [rc, wall, cpu, rss] = execFileSync('python3', ['-c', code, ...argv], { encoding: 'utf8', env }).trim().split(' ').map(Number);
  if (rc !== 0) throw new Error(`${argv.join(' ')} exited with ${rc}`);
  return { wall: wall!, cpu: cpu!, rssMiB: rss! / 1024 };
}

/** The 1, 5 and 15 minute load averages, for the record next to every timing. */
export function load(): string {
  return os.loadavg().map((l) => l.toFixed(2)).join(' ');
}

export function table(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? c.toFixed(c >= 100 ? 0 : 2) : c)));
  const widths = cells[0]!.map((_, j) => Math.max(...cells.map((r) => r[j]!.length)));
  return cells.map((r) => r.map((c, j) => c.padEnd(widths[j]!)).join('  ')).join('\n');
}

/**
 * Planted-dictionary activations [rows, D]: each row a sparse non-negative mix of 4 of `hidden`
 * random directions (norm ~1, weights U(1, 4)), plus N(0, 0.05^2) noise and an offset of 0.5.
 */
export function plantedActivations(rows: number, D: number, hidden: number, seed = 7): Float32Array {
  const rng = new Rng(seed);
  const dirs = rng.fillNormal(new Float32Array(hidden * D), 1 / Math.sqrt(D));
  const x = rng.fillNormal(new Float32Array(rows * D), 0.05);
  for (let i = 0; i < rows; i++) {
    for (let s = 0; s < 4; s++) {
      const h = rng.int(hidden);
      const a = 1 + 3 * rng.uniform();
      for (let t = 0; t < D; t++) x[i * D + t]! += a * dirs[h * D + t]!;
    }
    for (let t = 0; t < D; t++) x[i * D + t]! += 0.5;
  }
  return x;
}
