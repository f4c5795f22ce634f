/**
 * bench:encode — CLIP-L-size synthetic text encoder, 77 tokens: ms/prompt and effective GFLOP/s at
 * batch 1 and 32, against the engine's own sgemm rate (and numpy's) measured in the same run.
 */
import { asClipPart, loadTextModel } from '../src/encoder/index.js';
import type { ClipTextConfig } from '../src/encoder/clip/config.js';
import { benchModel, machine, numpyGemmRate, ortGemmRate, peakRssMiB, table, timeBest } from './common.js';

/** Multiply-adds x2 of a full forward over n sequences of t tokens. */
function forwardFlops(c: ClipTextConfig, n: number, t: number): number {
  const D = c.hiddenSize;
  const perBlock = 2 * n * t * (4 * D * D + 2 * D * c.intermediateSize) + 2 * 2 * n * t * t * D;
  return perBlock * c.numLayers;
}

const dir = benchModel('sd1');
const t0 = performance.now();
const model = asClipPart(await loadTextModel(dir));
const loadMs = performance.now() - t0;
const rssAfterLoad = peakRssMiB();
const prompts = Array.from({ length: 32 }, (_, i) => `a photo of a person number ${i} standing in a field of flowers`);
const tok = model.tokenizer.batch(prompts);
const run = (n: number) => () => model.encoder.encode({ ids: tok.ids.subarray(0, n * 77), n, t: 77 });
const rows: (string | number)[][] = [['batch', 'ms/prompt', 'GFLOP/s', 'vs ORT sgemm']];
const ortRate = await ortGemmRate(2464, 768, 3072);
const npRate = numpyGemmRate(2464, 768, 3072);
const results: Record<string, number> = {};
for (const n of [1, 32]) {
  await run(n)();
  const ms = await timeBest(run(n), n === 1 ? 10 : 3);
  const rate = forwardFlops(model.config, n, 77) / (ms / 1e3) / 1e9;
  results[`b${n}`] = ms / n;
  rows.push([n, ms / n, rate, `${((rate / ortRate) * 100).toFixed(0)}%`]);
}
console.log(`bench:encode — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
console.log(`model: synthetic sd1 (D=${model.config.hiddenSize}, ${model.config.numLayers} layers, vocab ${model.config.vocabSize}), load ${loadMs.toFixed(0)} ms, RSS after load ${rssAfterLoad.toFixed(0)} MiB`);
console.log(`sgemm 2464x768x3072: onnxruntime ${ortRate.toFixed(1)} GFLOP/s${npRate ? `, numpy ${npRate.toFixed(1)} GFLOP/s` : ' (numpy not available)'}`);
console.log(table(rows));
console.log(`peak RSS ${peakRssMiB().toFixed(0)} MiB`);
console.log(`targets: batch-32 rate >= 60% of ORT sgemm: ${rows[2]![3]}; batch 1 < 400 ms: ${results['b1']!.toFixed(0)} ms; load < 3 s: ${(loadMs / 1e3).toFixed(2)} s; peak RSS < 1024 MiB`);
await model.encoder.release();
