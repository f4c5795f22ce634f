/**
 * bench:gate — batch-1 latency of erased encode (the gate passes the prompt) vs plain encode on a
 * CLIP-L-size synthetic model, with a 16384-latent and a 2^19-latent random SAE: the gate reads
 * only the selected latents' rows, so its cost must not grow with the SAE width (target <= 1.05x).
 */
import { loadTextModel } from '../src/encoder/index.js';
import { encodeLatency } from '../src/evaluate/text.js';
import { ConceptEraser } from '../src/erase/index.js';
import { Sae } from '../src/sae/index.js';
import type { EraserSpec } from '../src/select/eraser-file.js';
import { Rng } from '../src/util/rng.js';
import { benchModel, machine, peakRssMiB, table } from './common.js';

const model = await loadTextModel(benchModel('sd1'));
const D = model.config.hiddenSize;
const selected = Number(process.env['ITD_BENCH_SELECTED'] ?? 2048);
const prompts = ['a bowl of fruit on a wooden table', 'a man riding a bicycle down a city street', 'two dogs playing in the snow'];

/** tau as eraser build estimates it: the median over tokens of each token's k-th largest activation. */
async function activationThreshold(sae: Sae): Promise<number> {
  const kth: number[] = [];
  for (const p of prompts) {
    const f = model.tokenizer.frame(p);
    const h = await model.encoder.layerOutput({ ids: f.ids.subarray(0, f.length), n: 1, t: f.length }, 8);
    const z = await sae.encode(h.subarray(D), f.length - 1);
    for (let r = 0; r < f.length - 1; r++) kth.push(z.values[r * z.k + z.k - 1]!);
  }
  return kth.sort((a, b) => a - b)[kth.length >> 1]!;
}

function spec(n: number, tau: number): EraserSpec {
  const rng = new Rng(1);
  const latents = new Set<number>();
  while (latents.size < selected) latents.add(rng.int(n));
  return {
    format: 'itd-eraser/1', modelId: model.id, saeId: 'random', layer: 8, kSel: 128, scale: -8, mode: 'official',
    threshold: 1e30, calibration: null, activationThreshold: tau,
    concepts: [{ name: 'random', prompts: [], features: [...latents].map((latent) => ({ latent, max: 1, mean: 1, prompts: 1 })), removedByRetain: [] }],
    retain: { prompts: [], top: [] }, templates: [],
  };
}

const rows: (string | number)[][] = [['SAE latents', 'selected', 'plain ms', 'erased ms', 'ratio']];
for (const n of [16384, 1 << 19]) {
  const sae = Sae.random({ d: D, n, k: 32, seed: 2 });
  const eraser = await ConceptEraser.load({ model, sae, eraser: spec(n, await activationThreshold(sae)) });
  const lat = await encodeLatency(eraser, prompts, 16);
  if (lat.erasedRuns > 0) throw new Error('the gate should pass these prompts');
  rows.push([n, selected, lat.plainMs.toFixed(0), lat.erasedMs.toFixed(0), lat.ratio.toFixed(3)]);
  await eraser.release();
}
console.log(`bench:gate — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
console.log(table(rows));
console.log(`peak RSS ${peakRssMiB().toFixed(0)} MiB (the 2^19 SAE alone holds 3 GiB of weights)`);
