/**
 * bench:generate — one 512x512 image with guidance through a synthetic 'heavy' UNet (>= 100 ms per
 * call) and a CLIP-L-size synthetic text encoder: where the time goes per denoising step, and the
 * pipeline's own overhead beyond the UNet and VAE sessions (target <= 5% per step), plus peak RSS.
 *
 *   npm run bench:generate [-- --steps 10 --scheduler pndm]
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { StableDiffusionPipeline } from '../src/generate/pipeline.js';
import { synthPipeline } from '../src/generate/synth-unet.js';
import { encodePng } from '../src/io/png.js';
import { benchModel, CACHE, machine, peakRssMiB, table } from './common.js';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '10' }, scheduler: { type: 'string', default: 'pndm' } } });
const steps = Number(values.steps);
const scheduler = values.scheduler!;

const dir = path.join(CACHE, 'generate-heavy');
if (!fs.existsSync(path.join(dir, 'unet', 'model.onnx'))) synthPipeline({ out: dir, preset: 'heavy', seed: 0, textModelDir: benchModel('sd1') });

const t0 = performance.now();
const pipe = await StableDiffusionPipeline.load(dir);
const loadMs = performance.now() - t0;
const request = { prompts: ['a watercolor painting of a lighthouse at dawn'], steps, scheduler, guidance: 7.5, seed: 0, width: 512, height: 512 };

await pipe.generate({ ...request, steps: 2 }); // warm-up: first runs allocate and tune
const w0 = performance.now();
const res = await pipe.generate(request);
const p0 = performance.now();
const png = encodePng(res.images[0]!, { prompt: request.prompts[0]! });
const pngMs = performance.now() - p0;
const wallMs = p0 - w0;
const tm = res.timings;
const calls = tm.unetCalls;
const sessionMs = tm.unetMs + tm.vaeMs;
const overheadMs = wallMs - tm.textMs - sessionMs;

const rows: (string | number)[][] = [
  ['stage', 'total ms', 'ms/step', '% of UNet'],
  ['text encoding (2 prompts)', tm.textMs, tm.textMs / calls, (100 * tm.textMs) / tm.unetMs],
  [`UNet session (${calls} calls, batch ${tm.unetBatch})`, tm.unetMs, tm.unetMs / calls, 100],
  ['loop: scaling + guidance + scheduler', tm.loopMs, tm.loopMs / calls, (100 * tm.loopMs) / tm.unetMs],
  ['VAE session', tm.vaeMs, tm.vaeMs / calls, (100 * tm.vaeMs) / tm.unetMs],
  ['decoder output -> RGB', tm.postMs, tm.postMs / calls, (100 * tm.postMs) / tm.unetMs],
  ['PNG encode', pngMs, pngMs / calls, (100 * pngMs) / tm.unetMs],
];
console.log(`bench:generate — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
console.log(`pipeline: synthetic heavy UNet + sd1-size text encoder, ${request.width}x${request.height}, ${scheduler} ${steps} steps, guidance ${request.guidance}; load ${loadMs.toFixed(0)} ms; PNG ${(png.length / 1024).toFixed(0)} KiB`);
console.log(table(rows));
console.log(`wall ${wallMs.toFixed(0)} ms for generate(); overhead beyond text encoding + UNet + VAE sessions: ${overheadMs.toFixed(1)} ms = ${((100 * overheadMs) / sessionMs).toFixed(2)}% of session time`);
console.log(`per-step overhead (loop work / UNet time): ${((100 * tm.loopMs) / tm.unetMs).toFixed(2)}% (target <= 5%); UNet ${(tm.unetMs / calls).toFixed(0)} ms/call (preset target >= 100 ms)`);
console.log(`peak RSS ${peakRssMiB().toFixed(0)} MiB`);
await pipe.release();
