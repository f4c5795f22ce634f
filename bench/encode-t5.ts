/**
 * bench:encode:t5 — the T5 v1.1 encoder of the synthetic FLUX.1 models at 512 tokens (FLUX.1-dev's
 * max_sequence_length), batch 1: ms per prompt, effective GFLOP/s against onnxruntime's own sgemm
 * measured in the same run, load time and peak RSS per weight mode (f32 exact, int8 MatMulNBits)
 * against the bytes the weights take in that mode, and int8's worst per-token cosine to f32.
 * Each (model, mode) runs in its own process so that peak RSS is its own (loading included).
 *
 *   npm run bench:encode:t5                       # flux (T5-base size) and flux-xxl2 (XXL shapes, 2 blocks)
 *   npm run bench:encode:t5 -- flux-xxl --model /tmp/itd-flux-xxl --modes int8 --reps 0 --f32-blocks 6
 *
 * Presets are generated into .cache/bench unless --model names an existing FLUX.1 directory (the
 * 24-block flux-xxl is 10 GB: generate it where there is room, `itd synth-model --preset flux-xxl`).
 * --reps N: timed runs after the first (0: the first run is the time). --f32-blocks K: the f32
 * reference for the cosine runs K blocks per process, each process handing its residual to the
 * next, so that a model whose f32 weights do not fit (T5-XXL: 18 GiB) is still compared with f32
 * end to end; its row's peak RSS is the largest stage's.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadT5Encoder, readT5Config, T5Encoder, T5WeightReader, type T5Config, type WeightMode } from '../src/encoder/t5/index.js';
import { Checkpoint } from '../src/io/safetensors.js';
import { minRowCosine } from '../src/util/cosine.js';
import { maxAbsDiff } from '../test/helpers.js';
import type { Preset } from '../src/synth/clip.js';
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

/** The bench's 512-token prompt: 472 ids then padding (id 0), as a padded FLUX.1 prompt looks. */
const IDS = Int32Array.from({ length: T }, (_, i) => (i < T - 40 ? 2 + ((i * 7919) % 2000) : 0));

async function child(dir: string, mode: WeightMode, outFile: string, reps: number): Promise<void> {
  const t0 = performance.now();
  const { encoder, config } = await loadT5Encoder(dir, { weights: mode });
  const loadMs = performance.now() - t0;
  const rssLoad = peakRssMiB();
  const run = () => encoder.encode({ ids: IDS, n: 1, t: T });
  const t1 = performance.now();
  const first = await run();
  const firstMs = performance.now() - t1;
  fs.writeFileSync(outFile, first.lastHiddenState);
  const ms = reps > 0 ? await timeBest(run, reps) : firstMs;
  const ckpt = Checkpoint.open(dir, ['model']);
  const embeddingBytes = ckpt.info('shared.weight').dtype === 'F32' ? 4 : 2; // kept as stored
  ckpt.close();
  console.log(JSON.stringify({ loadMs, rssLoad, ms, peak: peakRssMiB(), weights: weightBytes(config, mode, embeddingBytes) / MiB }));
  await encoder.release();
}

/** Reads blocks from+i as block i: an encoder made of a slice of the checkpoint's blocks. */
class BlockRange extends T5WeightReader {
  constructor(ckpt: Checkpoint, cfg: T5Config, source: string, private readonly from: number) {
    super(ckpt, cfg, source);
  }

  override block(i: number): ReturnType<T5WeightReader['block']> {
    return super.block(this.from + i);
  }
}

/**
 * One f32 stage: blocks [from, to) on the residual in `inFile` (from 0: the embedding of IDS), the
 * final norm after the last block; writes the result to `outFile`.
 */
async function stage(dir: string, from: number, to: number, inFile: string, outFile: string): Promise<void> {
  const cfg = readT5Config(path.join(dir, 'config.json'));
  const t0 = performance.now();
  const reader = new BlockRange(Checkpoint.open(dir, ['model']), cfg, dir, from);
  const encoder = await T5Encoder.create({ ...cfg, numLayers: to - from }, reader);
  reader.close();
  const loadMs = performance.now() - t0;
  const rssLoad = peakRssMiB();
  const t1 = performance.now();
  const batch = { ids: IDS, n: 1, t: T };
  let h = from === 0 ? encoder.embed(batch) : readF32File(inFile);
  h = await encoder.runBlocks(h, 1, T, 0, to - from);
  if (to === cfg.numLayers) h = await encoder.finalNorm(h, batch);
  const ms = performance.now() - t1;
  fs.writeFileSync(outFile, h);
  console.log(JSON.stringify({ loadMs, rssLoad, ms, peak: peakRssMiB() }));
  await encoder.release();
}

/** Times, and peak RSS at the end of loading (rssLoad) and overall (peak), MiB. */
type Measured = { loadMs: number; rssLoad: number; ms: number; peak: number };

function spawnChild(args: string[], what: string): Measured & { weights?: number } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, ...args], { encoding: 'utf8', env: process.env });
  if (r.status !== 0) throw new Error(`${what}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Measured & { weights?: number };
}

/** The f32 output by stages of `k` blocks: summed load and encode times, the largest stage's peak. */
function stagedF32(dir: string, cfg: T5Config, k: number, tmp: string): Measured & { out: string } {
  const total = { loadMs: 0, rssLoad: 0, ms: 0, peak: 0 };
  let prev = '-';
  for (let from = 0; from < cfg.numLayers; from += k) {
    const to = Math.min(cfg.numLayers, from + k);
    const out = path.join(tmp, `stage-${to}.bin`);
    const m = spawnChild(['--stage', dir, String(from), String(to), prev, out], `f32 blocks ${from}..${to - 1}`);
    console.error(`f32 blocks ${from}..${to - 1}: load ${(m.loadMs / 1e3).toFixed(1)} s, ${m.ms.toFixed(0)} ms, peak ${m.peak.toFixed(0)} MiB`);
    total.loadMs += m.loadMs;
    total.ms += m.ms;
    total.rssLoad = Math.max(total.rssLoad, m.rssLoad);
    total.peak = Math.max(total.peak, m.peak);
    prev = out;
  }
  return { ...total, out: prev };
}

function readF32File(file: string): Float32Array {
  const buf = fs.readFileSync(file);
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
}

if (process.argv[2] === '--child') {
  await child(process.argv[3]!, process.argv[4] as WeightMode, process.argv[5]!, Number(process.argv[6]));
  process.exit(0);
}
if (process.argv[2] === '--stage') {
  const [dir, from, to, inFile, outFile] = process.argv.slice(3) as [string, string, string, string, string];
  await stage(dir, Number(from), Number(to), inFile, outFile);
  process.exit(0);
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { model: { type: 'string' }, modes: { type: 'string', default: 'f32,int8' }, reps: { type: 'string', default: '2' }, 'f32-blocks': { type: 'string' } },
});
const presets = (positionals.length ? positionals : ['flux', 'flux-xxl2']) as Preset[];
if (values.model && presets.length !== 1) throw new Error('--model names the directory of exactly one preset');
const modes = values.modes.split(',') as WeightMode[];
const reps = Number(values.reps);
const stageBlocks = values['f32-blocks'] ? Number(values['f32-blocks']) : undefined;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'itd-bench-t5-'));
const rows: (string | number)[][] = [['model', 'weights', 'load s', 'ms/prompt', 'GFLOP/s', 'vs sgemm', 'weights MiB', 'peak RSS after load MiB', 'peak RSS MiB', 'peak / weights', 'min cos vs f32']];
for (const preset of presets) {
  const dir = path.join(values.model ?? benchModel(preset), 'text_encoder_2');
  const cfg = readT5Config(path.join(dir, 'config.json'));
  const sgemm = await ortGemmRate(T, cfg.hiddenSize, cfg.dFf);
  const label = `${preset} (D=${cfg.hiddenSize}, ${cfg.numLayers} blocks)`;
  const rate = (ms: number) => flops(cfg, T) / (ms / 1e3) / 1e9;
  let reference: Float32Array | undefined;
  if (stageBlocks) {
    const m = stagedF32(dir, cfg, stageBlocks, tmp);
    reference = readF32File(m.out);
    rows.push([label, `f32 (${stageBlocks} blocks/process)`, m.loadMs / 1e3, m.ms, rate(m.ms), `${((rate(m.ms) / sgemm) * 100).toFixed(0)}%`, '-', m.rssLoad, m.peak, '-', '-']);
  }
  for (const mode of modes) {
    const file = path.join(tmp, `${preset}-${mode}.bin`);
    const m = spawnChild(['--child', dir, mode, file, String(reps)], `${preset} ${mode}`);
    const out = readF32File(file);
    if (mode === 'f32' && reference) console.error(`${preset}: staged f32 vs one-process f32, max |diff| ${maxAbsDiff(reference, out)}`);
    if (mode === 'f32') reference ??= out;
    const cos = mode === 'int8' && reference ? minRowCosine(reference, out, cfg.hiddenSize).toFixed(5) : '-';
    rows.push([label, mode, m.loadMs / 1e3, m.ms, rate(m.ms), `${((rate(m.ms) / sgemm) * 100).toFixed(0)}%`, m.weights!, m.rssLoad, m.peak, (m.peak / m.weights!).toFixed(2), cos]);
  }
  console.error(`${preset}: ORT sgemm ${T}x${cfg.hiddenSize}x${cfg.dFf} ${sgemm.toFixed(1)} GFLOP/s`);
}
console.log(`bench:encode:t5 — ${machine()} — ${new Date().toISOString().slice(0, 10)} — ${T} tokens, batch 1, ITD_THREADS=${process.env['ITD_THREADS'] ?? 'all'}, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
console.log(table(rows));
fs.rmSync(tmp, { recursive: true, force: true });
