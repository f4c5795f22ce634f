/**
 * bench:erase — the ItD method end to end on a CLIP-L-size synthetic model: collect >= 300k tokens
 * from ../shared/data prompts (COCO, DiffusionDB, concept build templates; never the held-out
 * evaluation templates or neutral prompts), train a 16384-latent TopK SAE, build an eraser for the
 * 50 target celebrities (100 retained), and run `itd bench erase`. Each stage is cached in
 * .cache/bench, so reruns only redo what is missing.
 *
 *   ITD_BENCH_LATENTS (16384), ITD_BENCH_TOKENS (1.2M), ITD_BENCH_KSEL (32), ITD_BENCH_OVERSAMPLE (10),
 *   ITD_BENCH_COLLECT_TOKENS (300000), ITD_BENCH_RETAIN_NEUTRAL (1000 COCO captions retained)
 *
 * `npm run bench:erase -- sdxl` (or sdxl-tiny) runs the same on the synthetic SDXL pipeline with
 * the SAE on text_encoder_2 at ItD's default depth (block 21 of 32).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { readCsv } from '../src/io/prompts.js';
import { benchModel, CACHE, machine, ROOT } from './common.js';

const DATA = path.resolve(ROOT, '..', 'shared', 'data', 'prompts');
if (!fs.existsSync(DATA)) {
  console.log(`bench:erase skipped: ${DATA} not found (the shared prompt sets are needed)`);
  process.exit(0);
}
const latents = process.env['ITD_BENCH_LATENTS'] ?? '16384';
const kSel = process.env['ITD_BENCH_KSEL'] ?? '32';
const retainNeutral = process.env['ITD_BENCH_RETAIN_NEUTRAL'] ?? '1000';
const preset = process.argv[2] ?? 'sd1';
if (preset !== 'sd1' && preset !== 'sdxl' && preset !== 'sdxl-tiny') throw new Error(`bench:erase: preset must be sd1, sdxl or sdxl-tiny, got ${preset}`);
const dir = path.join(CACHE, preset === 'sd1' ? 'erase' : `erase-${preset}`);
fs.mkdirSync(dir, { recursive: true });

function itd(...args: string[]): void {
  console.log(`$ itd ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'itd.js'), ...args], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`itd ${args[0]} failed`);
}

function writeList(file: string, prompts: string[]): string {
  fs.writeFileSync(file, prompts.join('\n'));
  return file;
}

const col = (file: string, name: string) => {
  const { header, rows } = readCsv(path.join(DATA, file));
  return rows.map((r) => r[header.indexOf(name)]!);
};
const model = benchModel(preset);
// Training prompts: the concept sets' build templates (0-2 only; 3-4 are held out for evaluation),
// repeated ITD_BENCH_OVERSAMPLE times so that the rare name tokens are not drowned by 20k
// captions (ItD's own SAE saw only concept prompts), then COCO 0..15k (the evaluation's neutral
// slice is 25k..) and DiffusionDB. Concept prompts come first so --max-tokens never cuts them.
const buildOnly = (file: string) => col(file, 'prompt').filter((_, i) => i % 5 < 3);
const oversample = Number(process.env['ITD_BENCH_OVERSAMPLE'] ?? '10');
if (!Number.isInteger(oversample) || oversample < 1) throw new Error(`ITD_BENCH_OVERSAMPLE must be an integer >= 1, got '${process.env['ITD_BENCH_OVERSAMPLE']}'`);
const concepts = [...buildOnly('celebrity_target.csv'), ...buildOnly('celebrity_remain.csv')];
const train = writeList(path.join(dir, 'train_prompts.txt'), [
  ...Array.from({ length: oversample }, () => concepts).flat(),
  ...col('coco_30k.csv', 'prompt').slice(0, 15000),
  ...col('diffusiondb_8k.csv', 'prompt'),
].map((p) => p.replace(/\s+/g, ' ').trim()).filter((p) => p.length > 0));
const maxTokens = process.env['ITD_BENCH_COLLECT_TOKENS'] ?? '300000';
const neutral = writeList(path.join(dir, 'neutral.txt'), col('coco_30k.csv', 'prompt').slice(25000, 27000));
const acts = path.join(dir, 'acts');
if (!fs.existsSync(path.join(acts, 'manifest.json')) || !JSON.parse(fs.readFileSync(path.join(acts, 'manifest.json'), 'utf8')).complete) {
  // No --layer: ItD's relative depth in the default tower (SD1: block 8; SDXL: text_encoder_2 block 21).
  itd('collect', '--model', model, '--prompts', train, '--out', acts, '--dtype', 'f16', '--max-tokens', maxTokens);
}
const sae = path.join(dir, `sae-${latents}`);
if (!fs.existsSync(path.join(sae, 'sae.safetensors'))) {
  const tokens = process.env['ITD_BENCH_TOKENS'];
  itd('train', '--acts', acts, '--latents', latents, '--k', '32', '--out', sae, '--batch', '1024', '--lr', '4e-4', '--tokens', tokens ?? '1200000', ...(fs.existsSync(path.join(sae, 'checkpoint')) ? ['--resume'] : []));
}
console.log(`bench:erase ${preset} — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
itd('bench', 'erase', '--model', model, '--sae', sae, '--targets', path.join(DATA, 'celebrity_target.csv'), '--retained', path.join(DATA, 'celebrity_remain.csv'),
  '--neutral', neutral, '--neutral-count', '500', '--retain-neutral', retainNeutral, '--fpr', '0.01', '--k-sel', kSel, '--out', path.join(dir, `report-${latents}-k${kSel}`));
