/**
 * bench:encode — synthetic text encoders, 77 tokens, every ratio against baselines measured in
 * the same run (so a shared machine's load cancels where it can; the load average is printed):
 *
 * - in-process: load, ms/prompt and GFLOP/s at batch 1 and 32, by wall clock and per CPU-second,
 *   as a fraction of the machine's FMA peak (bench/fma_peak.c) and of numpy's and onnxruntime's
 *   best sgemm; peak RSS against the weights' f32 bytes. The blocks run where the library puts
 *   them (the addon's C blocks where built; ITD_ENCODER=onnxruntime for the graphs); with the C
 *   blocks, batch 32 also runs on the onnxruntime graphs in the same process for their ratio.
 * - whole process (sd1): the compiled CLI (`node dist/cli/bin.js encode`, as users run it; needs
 *   `npm run build`) on 1 and 64 prompts, against bench/clip_f32_numpy.py (a plain numpy/OpenBLAS
 *   float32 forward) on the same 64 prompts' ids: wall, CPU (user+sys), peak RSS, speed-up. The
 *   1-prompt CPU time (best of 3) and the 64-prompt ratios (itd and numpy alternating, best of
 *   ITD_BENCH_WHOLE_REPS=2 each) are printed on their own lines.
 *
 *   npm run bench:encode                 CLIP-L-size (sd1): one tower, last_hidden_state
 *   npm run bench:encode -- sdxl         full SDXL conditioning: CLIP-L + bigG (with projection),
 *                                        prompt_embeds [N, 77, 2048] + pooled_prompt_embeds
 * ITD_BENCH_REPS=b1,b32 sets the repetitions (best of; default 5,2 for sd1 and 3,1 for sdxl).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { asClipPart, encodeConditioning, loadPartTokenizer, loadTextConditioning, resolvePart } from '../src/encoder/index.js';
import type { ClipTextConfig } from '../src/encoder/clip/config.js';
import { defaultThreads } from '../src/onnx/session.js';
import { benchModel, bestSgemm, fmaPeak, load, machine, peakRssMiB, ROOT, table, timeBestCpu, wholeProcess, type Rate } from './common.js';

/** Multiply-adds x2 of a full forward over n sequences of t tokens (the projection is negligible). */
function forwardFlops(c: ClipTextConfig, n: number, t: number): number {
  const D = c.hiddenSize;
  const perBlock = 2 * n * t * (4 * D * D + 2 * D * c.intermediateSize) + 2 * 2 * n * t * t * D;
  return perBlock * c.numLayers;
}

const preset = process.argv[2] ?? 'sd1';
if (preset !== 'sd1' && preset !== 'sdxl') throw new Error(`bench:encode: preset must be sd1 or sdxl, got ${preset}`);
const [reps1, reps32] = (process.env['ITD_BENCH_REPS'] ?? (preset === 'sdxl' ? '3,1' : '5,2')).split(',').map(Number);
const dir = benchModel(preset);
const loadStart = load();
const prompts = Array.from({ length: 64 }, (_, i) => `a photo of a person number ${i} standing in a field of flowers`);
const whole = preset === 'sd1' ? wholeProcessRuns(dir, prompts) : undefined;

const t0 = performance.now();
const text = await loadTextConditioning(dir);
const loadMs = performance.now() - t0;
const rssAfterLoad = peakRssMiB();
const configs = text.parts.map((p) => asClipPart(p).config);
const weightMiB = text.parts.reduce((s, p) => s + 4 * fs.readdirSync(p.encoderDir).filter((f) => f.endsWith('.safetensors')).reduce((b, f) => b + fs.statSync(path.join(p.encoderDir, f)).size / 4, 0), 0) / 2 ** 20;
const run = (n: number) => () => encodeConditioning(text, prompts.slice(0, n), { batch: n });
await run(1)(); // warm-up: the first run builds the sessions
const firstRunMs = performance.now() - t0 - loadMs;
/** Best-of-`reps` timing of `fn` encoding n prompts, with its GFLOP/s by wall clock and per CPU-second. */
async function measure(n: number, fn: () => Promise<unknown>, reps: number): Promise<{ n: number; ms: number; rate: Rate }> {
  const { ms, cpuMs } = await timeBestCpu(fn, reps);
  const flop = configs.reduce((f, c) => f + forwardFlops(c, n, 77), 0);
  return { n, ms, rate: { wall: flop / (ms / 1e3) / 1e9, cpu: flop / (cpuMs / 1e3) / 1e9 } };
}
const measured = [await measure(1, run(1), reps1!), await measure(32, run(32), reps32!)];
const peak = peakRssMiB();
const backend = asClipPart(text.parts[0]!).encoder.backend;
await text.release();
// The same batch-32 run on the onnxruntime graphs, for the ratio between the two backends.
let ortRun: { ms: number; rate: Rate } | undefined;
if (backend === 'native') {
  const ortText = await loadTextConditioning(dir, { backend: 'onnxruntime' });
  const runOrt = () => encodeConditioning(ortText, prompts.slice(0, 32), { batch: 32 });
  await runOrt();
  ortRun = await measure(32, runOrt, reps32!);
  await ortText.release();
}

const threads = defaultThreads();
const wide = configs[configs.length - 1]!;
const sgemm = await bestSgemm(2464, wide.hiddenSize, wide.intermediateSize);
const fma = fmaPeak(threads);
const loadEnd = load();

console.log(`bench:encode ${preset} — ${machine()} — ${new Date().toISOString()} — ${threads} threads — load average ${loadStart} (start), ${loadEnd} (end)`);
for (const [i, c] of configs.entries()) console.log(`${text.parts[i]!.name}: ${c.architecture} D=${c.hiddenSize}, ${c.numLayers} layers, MLP ${c.intermediateSize}, ${c.hiddenAct}`);
console.log(`CLIP blocks on: ${backend}`);
console.log(`load ${loadMs.toFixed(0)} ms (+ ${firstRunMs.toFixed(0)} ms first batch-1 run, which packs the weights / builds the sessions), RSS after load ${rssAfterLoad.toFixed(0)} MiB, weights ${weightMiB.toFixed(0)} MiB as f32`);
const fmt = (r: Rate | undefined) => (r ? `${r.wall.toFixed(1)} GFLOP/s wall, ${r.cpu.toFixed(1)} per CPU-s` : 'n/a');
console.log(`FMA peak (${fma ? `${fma.bits}-bit vectors, ` : ''}${threads} threads): ${fmt(fma)}${fma ? ` (x${threads} cores = ${(fma.cpu * threads).toFixed(0)} GFLOP/s when idle)` : ' (no C compiler)'}`);
console.log(`best sgemm (2464x${wide.hiddenSize}x${wide.intermediateSize} or 2048^3): onnxruntime ${fmt(sgemm.ort)}; numpy ${fmt(sgemm.numpy)}`);
const frac = (r: Rate, base: Rate | undefined) => (base ? `${((r.wall / base.wall) * 100).toFixed(0)}% / ${((r.cpu / base.cpu) * 100).toFixed(0)}%` : 'n/a');
const rows: (string | number)[][] = [['batch', 'ms/prompt', 'GFLOP/s wall', 'per CPU-s', 'of FMA peak', 'of numpy sgemm', 'of ORT sgemm']];
for (const m of measured) rows.push([m.n, m.ms / m.n, m.rate.wall, m.rate.cpu, frac(m.rate, fma), frac(m.rate, sgemm.numpy), frac(m.rate, sgemm.ort)]);
if (ortRun) rows.push(['32 (onnxruntime graphs)', ortRun.ms / 32, ortRun.rate.wall, ortRun.rate.cpu, frac(ortRun.rate, fma), frac(ortRun.rate, sgemm.numpy), frac(ortRun.rate, sgemm.ort)]);
console.log(table(rows));
console.log('(fractions: wall clock / per CPU-second, each against the same-run baseline measured the same way)');
if (ortRun) console.log(`batch 32: ${backend} blocks ${(ortRun.ms / measured[1]!.ms).toFixed(2)}x faster than the onnxruntime graphs (same run)`);
console.log(`peak RSS ${peak.toFixed(0)} MiB = ${(peak / weightMiB).toFixed(2)}x the f32 weights`);
if (whole) {
  console.log(`whole process, ${threads} threads (load average before: ${whole.load}):`);
  console.log(table([
    ['run', 'wall s', 'CPU s', 'peak RSS MiB'],
    ['itd encode, 1 prompt', whole.one.wall, whole.one.cpu, whole.one.rssMiB],
    ['itd encode, 64 prompts', whole.itd.wall, whole.itd.cpu, whole.itd.rssMiB],
    ...(whole.numpy ? [['numpy f32 reference, 64 prompts', whole.numpy.wall, whole.numpy.cpu, whole.numpy.rssMiB]] : []),
  ]));
  console.log(`itd encode of 1 prompt: ${whole.one.cpu.toFixed(2)} s CPU (user+sys; runs: ${whole.ones.map((r) => r.cpu.toFixed(2)).join(', ')} s), ${whole.one.wall.toFixed(2)} s wall (target < 1 s CPU)`);
  if (whole.numpy) console.log(`itd encode of 64 prompts is ${(whole.numpy.wall / whole.itd.wall).toFixed(2)}x faster than numpy by wall clock, ${(whole.numpy.cpu / whole.itd.cpu).toFixed(2)}x by CPU time (target >= 2x)`);
}
const b32 = measured[1]!;
if (preset === 'sd1') console.log(`targets: 64-prompt itd encode >= 2x numpy (above); 1-prompt itd encode < 1 s CPU: ${whole ? whole.one.cpu.toFixed(2) : '?'} s; batch-32 >= 75% of FMA peak: ${frac(b32.rate, fma)}`);
else console.log(`targets: batch-1 rate >= 80% of ORT sgemm: ${frac(measured[0]!.rate, sgemm.ort)}; peak RSS <= 1.3x f32 weights: ${(peak / weightMiB).toFixed(2)}x`);

/** The least wall and the least CPU time of the runs (each may come from a different run), the largest RSS. */
function bestOf(runs: ReturnType<typeof wholeProcess>[]): ReturnType<typeof wholeProcess> | undefined {
  if (runs.length === 0) return undefined;
  return { wall: Math.min(...runs.map((r) => r.wall)), cpu: Math.min(...runs.map((r) => r.cpu)), rssMiB: Math.max(...runs.map((r) => r.rssMiB)) };
}

/** `itd encode` (compiled CLI) of 1 and 64 prompts and the numpy float32 reference on the same 64 prompts, each a fresh process. */
function wholeProcessRuns(model: string, texts: string[]) {
  const cli = path.join(ROOT, 'dist', 'cli', 'bin.js');
  if (!fs.existsSync(cli)) throw new Error(`bench:encode: ${cli} missing; run \`npm run build\` first (the whole-process runs time the compiled CLI)`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'itd-bench-encode-'));
  try {
    const before = load();
    const promptFile = path.join(tmp, 'prompts.txt');
    fs.writeFileSync(promptFile, texts.join('\n') + '\n');
    const itd = (args: string[]) => wholeProcess([process.execPath, cli, 'encode', '--model', model, '--out', path.join(tmp, 'out.safetensors'), '--batch', '32', ...args]);
    // Three 1-prompt runs: the target is on CPU time, so the one with the least CPU stands (all three are printed).
    const ones = [0, 1, 2].map(() => itd(['--prompt', texts[0]!]));
    const one = ones.reduce((a, b) => (b.cpu < a.cpu ? b : a));
    // The reference gets the ids itd frames (tokenizing is not part of what it is timed on).
    const tok = loadPartTokenizer(resolvePart(model)).batch(texts);
    const ids = path.join(tmp, 'ids.json');
    fs.writeFileSync(ids, JSON.stringify(Array.from({ length: tok.n }, (_, r) => Array.from(tok.ids.subarray(r * 77, r * 77 + 77)))));
    const ref = ['python3', path.join(ROOT, 'bench', 'clip_f32_numpy.py'), path.join(model, 'text_encoder'), ids, path.join(tmp, 'ref.npy')];
    const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
    // itd and numpy alternate (ITD_BENCH_WHOLE_REPS times, default 2) so that load from other jobs hits both alike; the best of each stands.
    const alls: ReturnType<typeof wholeProcess>[] = [];
    const refs: ReturnType<typeof wholeProcess>[] = [];
    for (let r = 0; r < Number(process.env['ITD_BENCH_WHOLE_REPS'] ?? 2); r++) {
      alls.push(itd(['--prompts', promptFile]));
      if (hasNumpy) refs.push(wholeProcess(ref));
    }
    return { load: before, one, ones, itd: bestOf(alls)!, numpy: bestOf(refs) };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
