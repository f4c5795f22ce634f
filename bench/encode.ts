/**
 * bench:encode — synthetic text encoders, 77 tokens: ms/prompt and effective GFLOP/s at batch 1
 * and 32, against the engine's own sgemm rate (and numpy's) measured in the same run, and peak RSS
 * against the weights' f32 bytes.
 *
 *   npm run bench:encode                 CLIP-L-size (sd1): one tower, last_hidden_state
 *   npm run bench:encode -- sdxl         full SDXL conditioning: CLIP-L + bigG (with projection),
 *                                        prompt_embeds [N, 77, 2048] + pooled_prompt_embeds
 * ITD_BENCH_REPS=b1,b32 sets the repetitions (best of; default 10,3 for sd1 and 5,1 for sdxl).
 */
import fs from 'node:fs';
import path from 'node:path';
import { asClipPart, encodeConditioning, loadTextConditioning } from '../src/encoder/index.js';
import type { ClipTextConfig } from '../src/encoder/clip/config.js';
import { benchModel, machine, numpyGemmRate, ortGemmRate, peakRssMiB, table, timeBest } from './common.js';

/** Multiply-adds x2 of a full forward over n sequences of t tokens (the projection is negligible). */
function forwardFlops(c: ClipTextConfig, n: number, t: number): number {
  const D = c.hiddenSize;
  const perBlock = 2 * n * t * (4 * D * D + 2 * D * c.intermediateSize) + 2 * 2 * n * t * t * D;
  return perBlock * c.numLayers;
}

const preset = process.argv[2] ?? 'sd1';
if (preset !== 'sd1' && preset !== 'sdxl') throw new Error(`bench:encode: preset must be sd1 or sdxl, got ${preset}`);
const [reps1, reps32] = (process.env['ITD_BENCH_REPS'] ?? (preset === 'sdxl' ? '5,1' : '10,3')).split(',').map(Number);
const dir = benchModel(preset);
const t0 = performance.now();
const text = await loadTextConditioning(dir);
const loadMs = performance.now() - t0;
const rssAfterLoad = peakRssMiB();
const configs = text.parts.map((p) => asClipPart(p).config);
const weightMiB = text.parts.reduce((s, p) => s + 4 * fs.readdirSync(p.encoderDir).filter((f) => f.endsWith('.safetensors')).reduce((b, f) => b + fs.statSync(path.join(p.encoderDir, f)).size / 4, 0), 0) / 2 ** 20;
const prompts = Array.from({ length: 32 }, (_, i) => `a photo of a person number ${i} standing in a field of flowers`);
const run = (n: number) => () => encodeConditioning(text, prompts.slice(0, n), { batch: n });
const rows: (string | number)[][] = [['batch', 'ms/prompt', 'GFLOP/s', 'vs ORT sgemm']];
const wide = configs[configs.length - 1]!;
const [K, N] = [wide.hiddenSize, wide.intermediateSize];
const ortRate = await ortGemmRate(2464, K, N);
const npRate = numpyGemmRate(2464, K, N);
const results: Record<string, number> = {};
await run(1)(); // warm-up (first runs allocate)
for (const n of [1, 32]) {
  const ms = await timeBest(run(n), n === 1 ? reps1! : reps32!);
  const rate = configs.reduce((f, c) => f + forwardFlops(c, n, 77), 0) / (ms / 1e3) / 1e9;
  results[`b${n}`] = ms / n;
  rows.push([n, ms / n, rate, `${((rate / ortRate) * 100).toFixed(0)}%`]);
}
const peak = peakRssMiB();
console.log(`bench:encode ${preset} — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
for (const [i, c] of configs.entries()) console.log(`${text.parts[i]!.name}: ${c.architecture} D=${c.hiddenSize}, ${c.numLayers} layers, MLP ${c.intermediateSize}, ${c.hiddenAct}`);
console.log(`load ${loadMs.toFixed(0)} ms, RSS after load ${rssAfterLoad.toFixed(0)} MiB, weights ${weightMiB.toFixed(0)} MiB as f32`);
console.log(`sgemm 2464x${K}x${N}: onnxruntime ${ortRate.toFixed(1)} GFLOP/s${npRate ? `, numpy ${npRate.toFixed(1)} GFLOP/s` : ' (numpy not available)'}`);
console.log(table(rows));
console.log(`peak RSS ${peak.toFixed(0)} MiB = ${(peak / weightMiB).toFixed(2)}x the f32 weights`);
if (preset === 'sd1') console.log(`targets: batch-32 rate >= 60% of ORT sgemm: ${rows[2]![3]}; batch 1 < 400 ms: ${results['b1']!.toFixed(0)} ms; load < 3 s: ${(loadMs / 1e3).toFixed(2)} s; peak RSS < 1024 MiB`);
else console.log(`targets: batch-1 rate >= 80% of ORT sgemm: ${rows[1]![3]}; peak RSS <= 1.3x f32 weights: ${(peak / weightMiB).toFixed(2)}x`);
await text.release();
