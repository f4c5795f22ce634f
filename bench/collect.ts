/**
 * bench:collect — prompts/s collecting the output of block 8 (blocks 0..8 only, batches padded to
 * their longest prompt) vs a full 77-token, 12-block encode of the same prompts, same run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { collectActivations } from '../src/collect/collect.js';
import { encodePrompts, loadTextModel } from '../src/encoder/index.js';
import { readPrompts } from '../src/io/prompts.js';
import { FALLBACK_CORPUS } from '../src/tokenizer/index.js';
import { benchModel, machine, peakRssMiB, ROOT } from './common.js';

const coco = path.resolve(ROOT, '..', 'shared', 'data', 'prompts', 'coco_30k.csv');
const n = Number(process.env['ITD_BENCH_PROMPTS'] ?? 256);
const source = fs.existsSync(coco) ? readPrompts(coco) : FALLBACK_CORPUS;
const prompts = Array.from({ length: n }, (_, i) => source[i % source.length]!);
const model = await loadTextModel(benchModel('sd1'));
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'itd-bench-collect-'));
process.env['ITD_QUIET'] = '1';

await encodePrompts(model, prompts.slice(0, 32), { batch: 32 }); // warm-up
let t = performance.now();
await encodePrompts(model, prompts, { batch: 32 });
const fullS = (performance.now() - t) / 1e3;
t = performance.now();
const m = await collectActivations(model, { out, layer: 8, prompts, batch: 32, force: true });
const collectS = (performance.now() - t) / 1e3;
fs.rmSync(out, { recursive: true, force: true });

console.log(`bench:collect — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
console.log(`${n} prompts (${fs.existsSync(coco) ? 'COCO captions' : 'built-in corpus'}), synthetic sd1 model, batch 32`);
console.log(`full 77-token 12-block encode: ${(n / fullS).toFixed(1)} prompts/s`);
console.log(`collect layer 8 (${m.rows} rows, ${(m.rows / collectS).toFixed(0)} tokens/s): ${(n / collectS).toFixed(1)} prompts/s`);
console.log(`speed-up ${(fullS / collectS).toFixed(2)}x (target >= 2.5x); peak RSS ${peakRssMiB().toFixed(0)} MiB`);
