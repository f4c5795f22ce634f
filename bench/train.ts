/**
 * SAE training-step benchmark (`npm run bench:train`).
 *
 * Measures, at D=768, n=16384, k=32, B=4096 (override with BENCH_LATENTS, BENCH_BATCH, BENCH_STEPS):
 *   - the bare encoder GEMM (B x D) @ (D x n) in numpy (python3 subprocess) and in onnxruntime;
 *   - full training steps (forward, AuxK, backward, Adam, renorm) on synthetic sparse data, per phase;
 *   - the ratio numpy GEMM time / step time (targets >= 0.8 with no dead latent, >= 0.7 with 5 % dead),
 *     also in CPU seconds (steadier when other jobs share the cores), and peak RSS.
 * The native kernels run the widest ISA build this CPU has; ITD_NATIVE_ISA=avx2|avx512|generic forces one.
 * AuxK only runs once latents are dead, so steps are timed twice: with no dead latent and with
 * BENCH_DEAD (default 5%) of the latents forced dead. BENCH_JS_STEPS (default 2) steps are also timed
 * with the JS kernels (onnxruntime Gemm + TopK forward, plain-JS sparse passes), the fallback used
 * when the native addon is not built.
 */
import { execFileSync } from 'node:child_process';
import { memoryActivations } from '../src/collect/dataset.js';
import { Graph } from '../src/onnx/graph.js';
import { createSession, f32 } from '../src/onnx/session.js';
import { jsKernels, kernelsLabel, Trainer, type PhaseTimes } from '../src/train/index.js';
import { Rng } from '../src/util/rng.js';
import { plantedActivations } from './common.js';

const D = 768;
const n = Number(process.env['BENCH_LATENTS'] ?? 16384);
const B = Number(process.env['BENCH_BATCH'] ?? 4096);
const k = 32;
const steps = Number(process.env['BENCH_STEPS'] ?? 5);
const deadShare = Number(process.env['BENCH_DEAD'] ?? 0.05);
const jsSteps = Number(process.env['BENCH_JS_STEPS'] ?? 2);
const gemmFlops = 2 * B * D * n;

/** Best of 3 runs of the numpy GEMM: wall seconds, and CPU seconds of all its threads (steadier when the machine is shared). */
function numpyGemmSeconds(): { wall: number; cpu: number } | undefined {
  const py = `
import numpy as np, time
x = np.random.randn(${B}, ${D}).astype(np.float32); w = np.random.randn(${n}, ${D}).astype(np.float32)
x @ w.T
runs = []
for _ in range(3):
    t, c = time.perf_counter(), time.process_time()
    x @ w.T
    runs.append((time.perf_counter() - t, time.process_time() - c))
print(min(r[0] for r in runs), min(r[1] for r in runs))`;
  try {
    const [wall, cpu] = execFileSync('python3', ['-c', py], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split(' ').map(Number);
    return { wall: wall!, cpu: cpu! };
  } catch (e) {
    console.log(`numpy GEMM skipped (python3 with numpy not available: ${(e as Error).message.split('\n')[0]})`);
    return undefined;
  }
}

/** Best of 3 runs of Gemm(x, W^T) with W [n, D] as a graph input, as the trainer feeds it. */
async function ortGemmSeconds(): Promise<number> {
  const g = new Graph('gemm');
  const x = g.input('x', 'float32', [B, D]);
  const w = g.input('w', 'float32', [n, D]);
  g.output(g.op('ReduceMax', [g.op('Gemm', [x, w], { transB: 1 })], { keepdims: 0 }), 'float32', [], 'y');
  const s = await createSession(g.toModel());
  const rng = new Rng(1);
  const feeds = { x: f32(rng.fillNormal(new Float32Array(B * D), 1), [B, D]), w: f32(rng.fillNormal(new Float32Array(n * D), 1), [n, D]) };
  await s.run(feeds);
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    await s.run(feeds);
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  await s.release();
  return best;
}

async function timeSteps(tr: Trainer, label: string, forceDead: number, count = steps): Promise<{ wall: number; cpu: number }> {
  for (const key of Object.keys(tr.phases) as (keyof PhaseTimes)[]) tr.phases[key] = 0;
  let total = 0;
  const cpu0 = process.cpuUsage();
  for (let s = 0; s < count; s++) {
    // Latents [0, forceDead) look idle for longer than the dead window, so AuxK takes them.
    for (let j = 0; j < forceDead; j++) tr.sinceFired[j] = Number.MAX_SAFE_INTEGER;
    const t = performance.now();
    const st = await tr.trainStep();
    total += performance.now() - t;
    if (s === count - 1) console.log(`  last step: fvu ${st.fvu.toFixed(4)} l0 ${st.l0.toFixed(1)} dead ${(100 * st.deadFraction).toFixed(1)}% aux ${st.auxLoss.toFixed(4)}`);
  }
  const cpu = process.cpuUsage(cpu0);
  const per = total / count / 1000;
  const split = Object.entries(tr.phases).map(([k2, v]) => `${k2} ${(v / count).toFixed(0)}`).join(', ');
  console.log(`${label}: ${per.toFixed(3)} s/step, ${(B / per).toFixed(0)} tokens/s; per-step ms: ${split}; cpu ${((cpu.user + cpu.system) / 1e6 / count).toFixed(3)} s/step`);
  return { wall: per, cpu: (cpu.user + cpu.system) / 1e6 / count };
}

async function main(): Promise<void> {
  console.log(`bench:train D=${D} n=${n} k=${k} B=${B}, ${steps} timed steps`);
  const npBefore = numpyGemmSeconds();
  if (npBefore !== undefined) console.log(`numpy GEMM ${B}x${D} @ ${D}x${n}: ${npBefore.wall.toFixed(3)} s (${(gemmFlops / npBefore.wall / 1e9).toFixed(1)} GFLOP/s), cpu ${npBefore.cpu.toFixed(3)} s`);
  const ortSec = await ortGemmSeconds();
  console.log(`onnxruntime Gemm (W as input, transB): ${ortSec.toFixed(3)} s (${(gemmFlops / ortSec / 1e9).toFixed(1)} GFLOP/s)`);

  const data = memoryActivations(plantedActivations(B * (steps + 1), D, 2 * n), D, 'synthetic');
  let t = performance.now();
  // A dead window longer than the run: only the latents timeSteps forces dead are dead.
  const tr = Trainer.create(data, { latents: n, k, batch: B, tokens: B * (2 * steps + 1), medianSample: 8192, deadTokens: 1e12 });
  console.log(`init (geometric median of 8192 rows, tied init): ${((performance.now() - t) / 1000).toFixed(2)} s; kernels: ${kernelsLabel(tr.kernels)}`);
  t = performance.now();
  await tr.trainStep();
  console.log(`first step (session creation included): ${((performance.now() - t) / 1000).toFixed(2)} s`);

  const plain = await timeSteps(tr, 'step, no dead latents', 0);
  const dead = Math.round(deadShare * n);
  const withAux = await timeSteps(tr, `step, ${dead} dead latents (AuxK on)`, dead);
  // The machine may be shared: numpy is timed before and after the steps and the faster run counts.
  const npAfter = npBefore === undefined ? undefined : numpyGemmSeconds();
  if (npBefore !== undefined && npAfter !== undefined) {
    const np = { wall: Math.min(npBefore.wall, npAfter.wall), cpu: Math.min(npBefore.cpu, npAfter.cpu) };
    console.log(`numpy GEMM after the steps: ${npAfter.wall.toFixed(3)} s, cpu ${npAfter.cpu.toFixed(3)} s; using the best, ${np.wall.toFixed(3)} s, cpu ${np.cpu.toFixed(3)} s`);
    console.log(`ratio numpy GEMM / step: ${(np.wall / plain.wall).toFixed(2)} (no dead), ${(np.wall / withAux.wall).toFixed(2)} (AuxK on); targets >= 0.8, >= 0.7`);
    console.log(`ratio in CPU seconds: ${(np.cpu / plain.cpu).toFixed(2)} (no dead), ${(np.cpu / withAux.cpu).toFixed(2)} (AuxK on)`);
  }
  console.log(`ratio onnxruntime GEMM / step: ${(ortSec / plain.wall).toFixed(2)} (no dead)`);
  console.log(`peak RSS: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
  console.log(`1M tokens at this speed: ${((1e6 / B) * plain.wall / 60).toFixed(1)} min`);
  await tr.release();
  if (jsSteps > 0 && tr.kernels !== jsKernels) {
    const js = Trainer.create(data, { latents: n, k, batch: B, tokens: B * (jsSteps + 1), medianSample: 8192, deadTokens: 1e12 }, { kernels: jsKernels });
    await js.trainStep();
    const perJs = await timeSteps(js, 'step with the JS kernels (fallback), no dead latents', 0, jsSteps);
    console.log(`native kernels vs JS fallback: ${(perJs.wall / plain.wall).toFixed(2)}x faster`);
    await js.release();
  }
}

await main();
