/**
 * bench:collect — prompts/s collecting the output of block 8 (blocks 0..8 only, batches padded to
 * their longest prompt), in the same run as (a) the encoder alone on exactly those batches
 * (layerOutput(8): the encoder's batch throughput for this work, so collect's own overhead shows)
 * and (b) a full 77-token, 12-block encode of the same prompts. Prints the load average.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { collectActivations } from '../src/collect/collect.js';
import { encodePrompts, loadTextModel } from '../src/encoder/index.js';
import { readPrompts } from '../src/io/prompts.js';
import { FALLBACK_CORPUS } from '../src/tokenizer/index.js';
import { benchModel, load, machine, peakRssMiB, ROOT } from './common.js';

const coco = path.resolve(ROOT, '..', 'shared', 'data', 'prompts', 'coco_30k.csv');
const n = Number(process.env['ITD_BENCH_PROMPTS'] ?? 256);
const layer = 8;
const batch = 32;
const source = fs.existsSync(coco) ? readPrompts(coco) : FALLBACK_CORPUS;
const prompts = Array.from({ length: n }, (_, i) => source[i % source.length]!);
const model = await loadTextModel(benchModel('sd1'));
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'itd-bench-collect-'));
const loadStart = load();

const seconds = async (fn: () => Promise<unknown>) => {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1e3;
};
// The batches collect runs: rows framed and cut to the batch's longest prompt.
const batches = Array.from({ length: Math.ceil(n / batch) }, (_, b) => {
  const rows = prompts.slice(b * batch, (b + 1) * batch).map((p) => model.tokenizer.frame(p));
  const t = Math.max(...rows.map((f) => f.length));
  const ids = new Int32Array(rows.length * t);
  rows.forEach((f, r) => ids.set(f.ids.subarray(0, t), r * t));
  return { ids, n: rows.length, t };
});
await model.encoder.layerOutput(batches[0]!, layer); // warm-up: builds the span sessions for 0..8 and 9..11
await encodePrompts(model, prompts.slice(0, batch), { batch });
const fullS = await seconds(() => encodePrompts(model, prompts, { batch }));
const encoderS = await seconds(async () => {
  for (const b of batches) await model.encoder.layerOutput(b, layer);
});
let rows = 0;
const collectS = await seconds(async () => {
  rows = (await collectActivations(model, { out, layer, prompts, batch, force: true, progress: () => ({ tick() {}, done() {} }) })).rows;
});
fs.rmSync(out, { recursive: true, force: true });
await model.encoder.release();

console.log(`bench:collect — ${machine()} — ${new Date().toISOString()} — load average ${loadStart} (start), ${load()} (end)`);
console.log(`${n} prompts (${fs.existsSync(coco) ? 'COCO captions' : 'built-in corpus'}), synthetic sd1 model, batch ${batch}, mean padded length ${(batches.reduce((s, b) => s + b.t, 0) / batches.length).toFixed(1)} tokens`);
console.log(`full 77-token 12-block encode:          ${(n / fullS).toFixed(1)} prompts/s`);
console.log(`encoder alone, blocks 0..${layer} on collect's batches: ${(n / encoderS).toFixed(1)} prompts/s`);
console.log(`collect layer ${layer} (${rows} rows, ${(rows / collectS).toFixed(0)} tokens/s):    ${(n / collectS).toFixed(1)} prompts/s`);
console.log(`collect vs full encode ${(fullS / collectS).toFixed(2)}x (target >= 2.5x); collect / encoder alone ${(encoderS / collectS).toFixed(2)} (1 = no overhead); peak RSS ${peakRssMiB().toFixed(0)} MiB`);
