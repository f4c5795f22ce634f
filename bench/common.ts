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
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    best = Math.min(best, performance.now() - t0);
  }
  return best; // ms
}

/** onnxruntime's own sgemm rate (GFLOP/s) for [m,k] @ [k,n] with a constant (prepacked) B. */
export async function ortGemmRate(m: number, k: number, n: number): Promise<number> {
  const g = new Graph('gemm');
  const a = g.input('a', 'float32', [m, k]);
  const w = g.initializer('w', { type: 'float32', dims: [k, n], data: new Float32Array(k * n).fill(0.01) });
  g.output(g.op('MatMul', [a, w]), 'float32', [m, n], 'y');
  const s = await createSession(g.toModel());
  const x = f32(new Float32Array(m * k).fill(0.5), [m, k]);
  const ms = await timeBest(() => s.run({ a: x }), 5);
  await s.release();
  return (2 * m * k * n) / (ms / 1e3) / 1e9;
}

/** numpy's sgemm rate for the same shape, or undefined when python3/numpy are missing. */
export function numpyGemmRate(m: number, k: number, n: number): number | undefined {
  const code = `import numpy as np, time
a=np.random.rand(${m},${k}).astype(np.float32); b=np.random.rand(${k},${n}).astype(np.float32)
a@b; best=1e9
for _ in range(5):
  t=time.perf_counter(); a@b; best=min(best,time.perf_counter()-t)
print(2*${m}*${k}*${n}/best/1e9)`;
  try {
    return Number(execFileSync('python3', ['-c', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    return undefined;
  }
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
