/**
 * bench:attack — gate evasion on a tiny synthetic model in a few minutes: synthesize a tiny CLIP
 * text encoder (with OpenAI's BPE vocabulary when ../shared has it), collect activations of the
 * celebrity build templates (oversampled) and COCO 0..15k, train a small TopK SAE, run
 * `itd bench erase` (eraser for the 50 target celebrities, 100 retained, calibrated at FPR 0.01 on a
 * COCO slice; its report carries the evasion table), then `itd bench attack` on every target prompt
 * with 2000 fresh COCO captions (27000..29000) for the FPR. Stages are cached in .cache/bench/attack.
 *
 *   ITD_BENCH_PRESET (tiny; sd1 for the CLIP-L size), ITD_BENCH_LATENTS (4096), ITD_BENCH_TOKENS (600000),
 *   ITD_BENCH_COLLECT_TOKENS (300000), ITD_BENCH_KSEL (16)
 */
import fs from 'node:fs';
import path from 'node:path';
import { benchAttack, benchErase } from '../src/cli/bench.js';
import { parseFlags } from '../src/cli/args.js';
import { collectActivations } from '../src/collect/collect.js';
import { loadTextModel } from '../src/encoder/index.js';
import { synthModel } from '../src/synth/clip.js';
import { trainCommand } from '../src/cli/train-run.js';
import { CACHE, CLIP_VOCAB, machine, PROMPT_DATA, promptColumn, requirePromptData } from './common.js';

requirePromptData('bench:attack');
const DATA = PROMPT_DATA;
const latents = process.env['ITD_BENCH_LATENTS'] ?? '4096';
const tokens = process.env['ITD_BENCH_TOKENS'] ?? '600000';
const kSel = process.env['ITD_BENCH_KSEL'] ?? '16';
const preset = process.env['ITD_BENCH_PRESET'] ?? 'tiny';
if (preset !== 'tiny' && preset !== 'sd1') throw new Error(`ITD_BENCH_PRESET must be tiny or sd1, got '${preset}'`);
const collectTokens = Number(process.env['ITD_BENCH_COLLECT_TOKENS'] ?? '300000');
const dir = path.join(CACHE, `attack-${preset}`);
fs.mkdirSync(dir, { recursive: true });

const col = promptColumn;
const writeList = (name: string, prompts: string[]) => {
  const file = path.join(dir, name);
  fs.writeFileSync(file, prompts.join('\n'));
  return file;
};

const modelDir = path.join(dir, 'model');
if (!fs.existsSync(path.join(modelDir, 'model_index.json'))) synthModel({ out: modelDir, preset, seed: 0, ...(fs.existsSync(CLIP_VOCAB) ? { vocab: CLIP_VOCAB } : {}) });
const acts = path.join(dir, 'acts');
if (!fs.existsSync(path.join(acts, 'manifest.json'))) {
  // Build templates only (0-2 of 5); evaluation templates 3-4 stay unseen, as in bench:erase.
  const buildOnly = (file: string) => col(file, 'prompt').filter((_, i) => i % 5 < 3);
  const concepts = [...buildOnly('celebrity_target.csv'), ...buildOnly('celebrity_remain.csv')];
  const prompts = [...Array.from({ length: 10 }, () => concepts).flat(), ...col('coco_30k.csv', 'prompt').slice(0, 15000)];
  await collectActivations(await loadTextModel(modelDir), { out: acts, layer: 8, prompts, maxTokens: collectTokens });
}
const sae = path.join(dir, `sae-${latents}`);
if (!fs.existsSync(path.join(sae, 'sae.safetensors'))) {
  await trainCommand({ acts, latents, k: '16', out: sae, tokens, batch: '1024', seed: '0' });
}
const coco = col('coco_30k.csv', 'prompt');
const neutral = writeList('neutral.txt', coco.slice(25000, 26500));
const fresh = writeList('neutral-attack.txt', coco.slice(27000, 29000));
const report = path.join(dir, `report-${latents}-k${kSel}`);
const run = (cmd: typeof benchErase, argv: string[]) => cmd.run(parseFlags(cmd, argv).flags, []);

console.log(`bench:attack — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
await run(benchErase, ['--model', modelDir, '--sae', sae, '--targets', path.join(DATA, 'celebrity_target.csv'), '--retained', path.join(DATA, 'celebrity_remain.csv'),
  '--neutral', neutral, '--neutral-count', '500', '--retain-neutral', '500', '--fpr', '0.01', '--k-sel', kSel, '--out', report]);
console.log('\nbench attack: every target prompt (all 5 templates), 2000 fresh COCO captions');
await run(benchAttack, ['--model', modelDir, '--sae', sae, '--eraser', path.join(report, 'eraser.json'), '--targets', path.join(DATA, 'celebrity_target.csv'),
  '--neutral', fresh, '--out', path.join(report, 'attack.json')]);
