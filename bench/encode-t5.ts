/**
 * bench:encode:t5 — the T5 v1.1 encoder of the synthetic FLUX.1 models at 512 tokens (FLUX.1-dev's
 * max_sequence_length), batch 1: ms per prompt, effective GFLOP/s against onnxruntime's own sgemm
 * measured in the same run, load time and peak RSS per weight mode (f32 exact, int8 MatMulNBits)
 * against the bytes the weights take in that mode, and int8's worst per-token cosine to f32.
 * Models: `flux` (T5-base size: 768, 12 blocks) and `flux-xxl2` (T5-XXL shapes, 2 blocks, bf16,
 * sharded). Each (model, mode) runs in its own process so that peak RSS is its own.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadT5Encoder, readT5Config, type T5Config, type WeightMode } from '../src/encoder/t5/index.js';
import { Checkpoint } from '../src/io/safetensors.js';
import { minRowCosine } from '../src/util/cosine.js';
import { benchModel, machine, ortGemmRate, peakRssMiB, table, timeBest } from './common.js';

const T = 512;
const MiB = 2 ** 20;

/** Multiply-adds x2 of one forward over t tokens. */
function flops(c: T5Config, t: number): number {
  const inner = c.numHeads * c.dKv;
  return c.numLayers * (2 * t * (4 * c.hiddenSize * inner + 3 * c.hiddenSize * c.dFf) + 2 * 2 * t * t * inner);
}

/** Bytes the weights take in a mode: blocks at 4 (f32) or 1 + 4/32 (int8 codes + block scales) bytes per weight, the embedding as stored. */
function weightBytes(c: T5Config, mode: WeightMode, embeddingBytesPerValue: number): number {
  const perBlock = 4 * c.hiddenSize * c.numHeads * c.dKv + 3 * c.hiddenSize * c.dFf;
  return c.numLayers * perBlock * (mode === 'f32' ? 4 : 1 + 4 / 32) + c.vocabSize * c.hiddenSize * embeddingBytesPerValue;
}

async function child(dir: string, mode: WeightMode, outFile: string): Promise<void> {
  const t0 = performance.now();
  const { encoder, config } = await loadT5Encoder(dir, { weights: mode });
  const loadMs = performance.now() - t0;
  const rssLoad = peakRssMiB();
  const ids = Int32Array.from({ length: T }, (_, i) => (i < T - 40 ? 2 + ((i * 7919) % 2000) : 0));
  const run = () => encoder.encode({ ids, n: 1, t: T });
  const first = await run();
  fs.writeFileSync(outFile, first.lastHiddenState);
  const ms = await timeBest(run, 2);
  const ckpt = Checkpoint.open(dir, ['model']);
  const embeddingBytes = ckpt.info('shared.weight').dtype === 'F32' ? 4 : 2; // kept as stored
  ckpt.close();
  console.log(JSON.stringify({ loadMs, rssLoad, ms, peak: peakRssMiB(), weights: weightBytes(config, mode, embeddingBytes) / MiB }));
  await encoder.release();
}

if (process.argv[2] === '--child') {
  await child(process.argv[3]!, process.argv[4] as WeightMode, process.argv[5]!);
  process.exit(0);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'itd-bench-t5-'));
const rows: (string | number)[][] = [['model', 'weights', 'load s', 'ms/prompt', 'GFLOP/s', 'vs sgemm', 'weights MiB', 'peak RSS MiB', 'peak / weights', 'min cos vs f32']];
for (const preset of ['flux', 'flux-xxl2'] as const) {
  const dir = path.join(benchModel(preset), 'text_encoder_2');
  const cfg = readT5Config(path.join(dir, 'config.json'));
  const sgemm = await ortGemmRate(T, cfg.hiddenSize, cfg.dFf);
  const outs: Partial<Record<WeightMode, Float32Array>> = {};
  for (const mode of ['f32', 'int8'] as const) {
    const file = path.join(tmp, `${preset}-${mode}.bin`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--child', dir, mode, file], { encoding: 'utf8', env: process.env });
    if (r.status !== 0) throw new Error(`${preset} ${mode}: ${r.stderr}`);
    const m = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { loadMs: number; ms: number; peak: number; weights: number };
    const buf = fs.readFileSync(file);
    outs[mode] = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    const rate = flops(cfg, T) / (m.ms / 1e3) / 1e9;
    const cos = mode === 'int8' ? minRowCosine(outs.f32!, outs.int8!, cfg.hiddenSize).toFixed(5) : '-';
    rows.push([`${preset} (D=${cfg.hiddenSize}, ${cfg.numLayers} blocks)`, mode, m.loadMs / 1e3, m.ms, rate, `${((rate / sgemm) * 100).toFixed(0)}%`, m.weights, m.peak, (m.peak / m.weights).toFixed(2), cos]);
  }
  console.error(`${preset}: ORT sgemm ${T}x${cfg.hiddenSize}x${cfg.dFf} ${sgemm.toFixed(1)} GFLOP/s`);
}
console.log(`bench:encode:t5 — ${machine()} — ${new Date().toISOString().slice(0, 10)} — ${T} tokens, batch 1, ITD_THREADS=${process.env['ITD_THREADS'] ?? 'all'}`);
console.log(table(rows));
fs.rmSync(tmp, { recursive: true, force: true });

