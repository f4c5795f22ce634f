/**
 * bench:quantize:t5 — the int8 load's two loops on one T5-XXL wi_0-size matrix [10240, 4096] of
 * bf16 weights (N(0, 0.02^2)): bf16 -> f32 widening and MatMulNBits block quantisation
 * (quantize8), native addon (1 and 2 threads) against the JS fallback in the same run, each the
 * best of --reps; the native bytes are checked equal to the JS ones.
 *
 *   npm run bench:quantize:t5 [-- --rows 10240 --cols 4096 --reps 3]
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { quantize8Js } from '../src/encoder/t5/linear.js';
import { f32ArrayToBf16, widenHalfJs } from '../src/io/safetensors.js';
import { loadAddon } from '../src/util/addon.js';
import { Rng } from '../src/util/rng.js';
import { machine, table, timeBest } from './common.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '10240' }, cols: { type: 'string', default: '4096' }, reps: { type: 'string', default: '3' } } });
const [rows, cols, reps] = [Number(values.rows), Number(values.cols), Number(values.reps)];
const addon = loadAddon();
if (!addon?.quantize8 || !addon.bf16ToF32) {
  console.log('bench:quantize:t5 skipped: the native addon is not built (npm ci builds it)');
  process.exit(0);
}

const blocks = Math.ceil(cols / 32);
const bits = f32ArrayToBf16(new Rng(1).fillNormal(new Float32Array(rows * cols), 0.02));
const w = new Float32Array(rows * cols);
const out = { js: new Uint8Array(rows * blocks * 32), native: new Uint8Array(rows * blocks * 32) };
const scales = { js: new Float32Array(rows * blocks), native: new Float32Array(rows * blocks) };

/** Best ms of fn with ITD_THREADS=threads (the addon reads it per call). */
async function timed(threads: number, fn: () => void): Promise<number> {
  process.env['ITD_THREADS'] = String(threads);
  return timeBest(fn, reps);
}

const widenJs = await timed(1, () => widenHalfJs('BF16', bits, w));
const widen1 = await timed(1, () => addon.bf16ToF32!({ bits, out: w }));
const widen2 = await timed(2, () => addon.bf16ToF32!({ bits, out: w }));
const quantJs = await timed(1, () => quantize8Js(w, rows, cols, out.js, scales.js));
const quant1 = await timed(1, () => addon.quantize8!({ w, rows, cols, codes: out.native, scales: scales.native }));
const quant2 = await timed(2, () => addon.quantize8!({ w, rows, cols, codes: out.native, scales: scales.native }));
const same = Buffer.compare(out.js, out.native) === 0 && Buffer.compare(new Uint8Array(scales.js.buffer), new Uint8Array(scales.native.buffer)) === 0;

const ns = (ms: number) => (ms * 1e6) / (rows * cols);
console.log(`bench:quantize:t5 — ${machine()} — ${new Date().toISOString().slice(0, 16)} UTC — [${rows}, ${cols}] bf16, best of ${reps}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
console.log(table([
  ['loop', 'JS ms', 'native 1 thread ms', 'native 2 threads ms', 'JS ns/weight', 'native (2) ns/weight', 'JS / native 1', 'JS / native 2'],
  ['bf16 -> f32', widenJs, widen1, widen2, ns(widenJs), ns(widen2), (widenJs / widen1).toFixed(1), (widenJs / widen2).toFixed(1)],
  ['quantize8', quantJs, quant1, quant2, ns(quantJs), ns(quant2), (quantJs / quant1).toFixed(1), (quantJs / quant2).toFixed(1)],
]));
console.log(`native codes and scales identical to JS: ${same ? 'yes' : 'NO'}`);
if (!same) process.exitCode = 1;
