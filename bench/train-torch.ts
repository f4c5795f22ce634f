/**
 * Whole-process SAE training race (`npm run bench:train:torch`): `itd train` against a PyTorch CPU
 * TopK trainer (bench/torch_sae.py, the same recipe) on the same planted-dictionary activations,
 * the same resolved hyper-parameters, token budget and thread count. Each side is one process from
 * start to exit: reading the safetensors data, b_pre init, training, writing the SAE, and scoring
 * the held-out set. Both SAEs are then scored again here by one evaluator (itd's evaluateSae), so
 * the FVU comparison does not depend on either side's own scoring.
 *
 * Prints the wall and CPU seconds of each side (CPU seconds are steadier when other jobs share the
 * cores), the ratio torch / itd (target >= 3 at equal or better held-out FVU) and the load average
 * around each run. Sizes: BENCH_LATENTS (16384), BENCH_K (32), BENCH_BATCH (1024), BENCH_TOKENS (524288:
 * 512 steps), BENCH_ROWS (131072 training rows; 16384 more are held out), BENCH_HIDDEN (planted
 * directions, latents / 8), BENCH_THREADS (all cores). A dictionary as wide as the SAE, or 128 steps
 * of 4096, leaves both trainers near FVU 0.7 in this budget: nothing learnt to compare.
 * PyTorch is a benchmark-only dependency (`apt-get install -y python3-torch`; with OpenBLAS as the
 * system BLAS, `libopenblas0-pthread`): without it the bench prints a skip line and exits 0.
 * The data is cached in .cache/bench; the compiled CLI (dist/) runs when it is newer than src/.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openActivations } from '../src/collect/dataset.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { loadSae } from '../src/sae/index.js';
import { resolveTrainConfig, type ResolvedTrainConfig } from '../src/train/config.js';
import { evaluateSae } from '../src/train/eval.js';
import { CACHE, ITD_CLI, machine, plantedActivations, ROOT } from './common.js';

const D = 768;
const n = Number(process.env['BENCH_LATENTS'] ?? 16384);
const k = Number(process.env['BENCH_K'] ?? 32);
const batch = Number(process.env['BENCH_BATCH'] ?? 1024);
const tokens = Number(process.env['BENCH_TOKENS'] ?? 2 ** 19);
const rows = Number(process.env['BENCH_ROWS'] ?? 2 ** 17);
const heldRows = 16384;
const hidden = Number(process.env['BENCH_HIDDEN'] ?? n / 8);
const threads = Number(process.env['BENCH_THREADS'] ?? os.availableParallelism());
const seed = 0;

interface Run { wall: number; cpu: number; stdout: string; stderr: string; load: [number, number] }

/** The first python3 that imports torch (BENCH_TORCH_PYTHON, the one on PATH, Debian's), or undefined. */
function torchPython(): string | undefined {
  const candidates = [process.env['BENCH_TORCH_PYTHON'], 'python3', '/usr/bin/python3'].filter((p): p is string => !!p);
  return candidates.find((py) => spawnSync(py, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0);
}

/** Train and held-out files of the planted-dictionary set (`hidden` planted directions), written once. */
function plantedFiles(): { train: string; heldout: string } {
  const dir = path.join(CACHE, `planted-d${D}-h${hidden}-r${rows}`);
  const files = { train: path.join(dir, 'train.safetensors'), heldout: path.join(dir, 'heldout.safetensors') };
  if (fs.existsSync(files.train) && fs.existsSync(files.heldout)) return files;
  fs.mkdirSync(dir, { recursive: true });
  const x = plantedActivations(rows + heldRows, D, hidden);
  const write = (file: string, r0: number, r: number) =>
    writeSafetensors(file, { activations: { dtype: 'F32', shape: [r, D], data: x.subarray(r0 * D, (r0 + r) * D) } });
  write(files.heldout, rows, heldRows);
  write(files.train, 0, rows);
  return files;
}

/** Runs a command to exit; bash's `times` reports the CPU seconds of all its threads. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): Run {
  const before = os.loadavg()[0]!;
  const t = performance.now();
  const r = spawnSync('bash', ['-c', '"$@"; s=$?; times; exit $s', 'bash', cmd, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 << 20 });
  const wall = (performance.now() - t) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr.slice(-4000)}`);
  const lines = r.stdout.trimEnd().split('\n');
  // The last line of `times` is the children's user and system time: "0m12.345s 0m0.678s".
  const cpu = lines.at(-1)!.split(' ').map((v) => {
    const m = /^(\d+)m([\d.]+)s$/.exec(v);
    return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
  }).reduce((a, b) => a + b, 0);
  return { wall, cpu, stdout: lines.slice(0, -2).join('\n'), stderr: r.stderr, load: [before, os.loadavg()[0]!] };
}

/** The CLI: compiled (dist/) when it is newer than every TypeScript source, else through tsx. */
function itdCli(): { argv: string[]; label: string } {
  const bin = path.join(ROOT, 'dist', 'cli', 'bin.js');
  const newest = (dir: string): number => fs.readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
    const p = path.join(dir, e.name);
    return Math.max(m, e.isDirectory() ? newest(p) : e.name.endsWith('.ts') ? fs.statSync(p).mtimeMs : 0);
  }, 0);
  if (fs.existsSync(bin) && fs.statSync(bin).mtimeMs >= newest(path.join(ROOT, 'src'))) return { argv: [bin], label: 'dist/cli/bin.js' };
  return { argv: ITD_CLI, label: 'src/cli/bin.ts through tsx (dist/ is missing or older than src/: npm run build for the compiled CLI)' };
}

function runItd(cfg: ResolvedTrainConfig, files: { train: string; heldout: string }, out: string): Run {
  const cli = itdCli();
  console.log(`itd: ${cli.label}`);
  const steps = Math.ceil(cfg.tokens / cfg.batch);
  return timed(process.execPath, [...cli.argv, 'train', '--acts', files.train, '--eval-shard', files.heldout, '--out', out, '--force',
    '--latents', String(cfg.latents), '--k', String(cfg.k), '--batch', String(cfg.batch), '--tokens', String(cfg.tokens), '--seed', String(cfg.seed),
    '--lr', String(cfg.lr), '--k-aux', String(cfg.kAux), '--dead-tokens', String(cfg.deadTokens),
    // One log line and one checkpoint, at the end: the torch side scores and saves once too.
    '--log-every', String(steps), '--checkpoint-every', String(steps)], { ITD_THREADS: String(threads) });
}

function runTorch(py: string, cfg: ResolvedTrainConfig, files: { train: string; heldout: string }, out: string): Run {
  const flags: Record<string, number | string> = {
    train: files.train, heldout: files.heldout, out, latents: cfg.latents, k: cfg.k, batch: cfg.batch, tokens: cfg.tokens,
    lr: cfg.lr, warmup: cfg.warmupSteps, 'k-aux': cfg.kAux, 'dead-tokens': cfg.deadTokens, 'aux-coef': cfg.auxCoef, eps: cfg.adamEps,
    'median-sample': cfg.medianSample, seed: cfg.seed, threads,
  };
  const args = Object.entries(flags).flatMap(([key, v]) => [`--${key}`, String(v)]);
  const env = { OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
  return timed(py, [path.join(ROOT, 'bench', 'torch_sae.py'), ...args], env);
}

async function heldoutFvu(dir: string, heldout: string): Promise<number> {
  const sae = loadSae(dir);
  const set = openActivations(heldout);
  try {
    return (await evaluateSae(sae, set)).fvu;
  } finally {
    set.close();
    await sae.release();
  }
}

/** The BLAS library torch's process maps after a product (reference BLAS makes the race meaningless). */
function torchBlas(py: string): string {
  const code = 'import torch\ntorch.ones(64, 64) @ torch.ones(64, 64)\nprint(" ".join(sorted({l.split()[-1].split("/")[-1] for l in open("/proc/self/maps") if "blas" in l})))';
  return spawnSync(py, ['-c', code], { encoding: 'utf8' }).stdout.trim();
}

async function main(): Promise<void> {
  const py = torchPython();
  if (!py) {
    console.log('bench:train:torch skipped: install python3-torch (apt-get install -y python3-torch) for the PyTorch trainer it races');
    return;
  }
  process.env['ITD_THREADS'] = String(threads);
  const cfg = resolveTrainConfig({ latents: n, k, batch, tokens, seed }, rows, D);
  console.log(`bench:train:torch ${machine()}; load average ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);
  console.log(`D=${D} n=${n} k=${k} batch=${batch} tokens=${tokens} (${Math.ceil(tokens / batch)} steps) on ${rows} rows (+${heldRows} held out) of ${hidden} planted directions, ${threads} threads; ` +
    `lr ${cfg.lr.toExponential(3)}, warm-up ${cfg.warmupSteps} steps, kAux ${cfg.kAux}, dead after ${cfg.deadTokens} tokens, b_pre from ${cfg.medianSample} rows`);
  const files = plantedFiles();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'itd-bench-torch-'));
  try {
    const itd = runItd(cfg, files, path.join(scratch, 'itd'));
    const itdFvu = await heldoutFvu(path.join(scratch, 'itd'), files.heldout);
    console.log(`itd:   ${itd.wall.toFixed(1)} s wall, ${itd.cpu.toFixed(1)} s cpu (load ${itd.load.map((v) => v.toFixed(1)).join(' -> ')}); ${itd.stderr.trimEnd().split('\n').filter((l) => l.startsWith('saved')).join('')}`);
    const torch = runTorch(py, cfg, files, path.join(scratch, 'torch'));
    const rep = JSON.parse(torch.stdout.split('\n').find((l) => l.startsWith('{'))!) as Record<string, number | string>;
    const torchFvu = await heldoutFvu(path.join(scratch, 'torch'), files.heldout);
    const num = (key: string) => Number(rep[key]).toFixed(key.endsWith('_s') ? 1 : 4);
    const blas = torchBlas(py);
    if (!/openblas|mkl/i.test(blas)) console.log(`WARNING: torch ran on ${blas || 'an unknown BLAS'}, not OpenBLAS/MKL: the race is meaningless (apt-get install -y libopenblas0-pthread)`);
    console.log(`torch: ${torch.wall.toFixed(1)} s wall, ${torch.cpu.toFixed(1)} s cpu (load ${torch.load.map((v) => v.toFixed(1)).join(' -> ')}); PyTorch ${rep['torch']} (${py}, BLAS ${blas}), ` +
      `load ${num('load_s')} s, train ${num('train_s')} s, save + eval ${num('save_eval_s')} s; its own held-out FVU ${num('heldout_fvu')}, last-step FVU ${num('train_fvu')}, dead ${num('dead_fraction')}`);
    const rel = (itdFvu - torchFvu) / torchFvu;
    const verdict = rel <= 0 ? 'better or equal' : rel < 0.01 ? 'equal within 1%' : 'WORSE';
    console.log(`held-out FVU (one evaluator, ${heldRows} rows): itd ${itdFvu.toFixed(5)}, torch ${torchFvu.toFixed(5)} (itd ${(100 * rel).toFixed(2)}%: ${verdict})`);
    console.log(`ratio torch / itd, whole process: ${(torch.wall / itd.wall).toFixed(2)}x wall, ${(torch.cpu / itd.cpu).toFixed(2)}x cpu; target >= 3x at equal or better held-out FVU`);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
