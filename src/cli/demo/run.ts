/**
 * `itd demo`: the whole method end to end on the embedded synthetic model, with the demo's own
 * prompts — synthesize, collect, train an SAE, build an eraser, calibrate, encode and classify
 * held-out prompts, and write the text-space report.
 */
import fs from 'node:fs';
import path from 'node:path';
import { calibrateEraser } from '../../classify/calibrate-eraser.js';
import { collectActivations } from '../../collect/collect.js';
import { loadTextModel } from '../../encoder/index.js';
import { ConceptEraser } from '../../erase/index.js';
import { evaluateText } from '../../evaluate/text.js';
import { metricsTable, writeTextReport } from '../../evaluate/text-report.js';
import { loadSae, saeIdentity } from '../../sae/index.js';
import { saveEraser } from '../../select/eraser-file.js';
import { buildEraser } from '../../select/select.js';
import { synthModel } from '../../synth/clip.js';
import { trainCommand } from '../train-run.js';
import { DEMO_ADJECTIVES, DEMO_BUILD_TEMPLATES, DEMO_EVAL_TEMPLATES, DEMO_EXTRA_SUBJECTS, DEMO_NEUTRAL, DEMO_RETAINED, DEMO_TARGETS, DEMO_TEMPLATES, fill } from './data.js';

/** sd1: the tiny CLIP tower; sdxl: the sdxl-tiny pipeline, ItD on text_encoder_2 (the wide tower). */
export type DemoFamily = 'sd1' | 'sdxl';
export const DEMO_FAMILIES: readonly DemoFamily[] = ['sd1', 'sdxl'];

export interface DemoOptions {
  out: string;
  family: DemoFamily;
  seed: number;
  latents: number;
  k: number;
  kSel: number;
  tokens: number;
}

export const DEMO_DEFAULTS: Omit<DemoOptions, 'out'> = { family: 'sd1', seed: 0, latents: 2048, k: 16, kSel: 16, tokens: 400_000 };

function step(i: number, what: string): void {
  process.stdout.write(`\n[${i}/7] ${what}\n`);
}

/**
 * SAE training prompts: build templates for the labelled subjects, every template for the extra
 * ones, each with every adjective, and the neutral set (held-out templates never seen in training).
 */
function trainingPrompts(): string[] {
  const withAdj = (subjects: string[], templates: number[]) =>
    subjects.flatMap((s) => DEMO_ADJECTIVES.flatMap((a) => templates.map((t) => fill(DEMO_TEMPLATES[t]!, `${a} ${s}`.trim()))));
  const all = DEMO_TEMPLATES.map((_, i) => i);
  return [...withAdj([...DEMO_TARGETS, ...DEMO_RETAINED], DEMO_BUILD_TEMPLATES), ...withAdj(DEMO_EXTRA_SUBJECTS, all), ...DEMO_NEUTRAL];
}

const concept = (name: string) => ({ name, prompts: DEMO_TEMPLATES.map((t) => fill(t, name)) });
const buildPrompts = (name: string) => DEMO_BUILD_TEMPLATES.map((t) => fill(DEMO_TEMPLATES[t]!, name));

export async function runDemo(opts: DemoOptions): Promise<void> {
  const t0 = performance.now();
  fs.mkdirSync(opts.out, { recursive: true });
  const dirs = { model: path.join(opts.out, 'model'), acts: path.join(opts.out, 'acts'), sae: path.join(opts.out, 'sae'), report: path.join(opts.out, 'report') };
  for (const d of [dirs.acts, dirs.sae]) fs.rmSync(d, { recursive: true, force: true });

  const preset = opts.family === 'sdxl' ? 'sdxl-tiny' : 'tiny';
  step(1, `synthesize a ${preset} text model (seed ${opts.seed}) -> ${dirs.model}`);
  synthModel({ out: dirs.model, preset, seed: opts.seed });
  const model = await loadTextModel(dirs.model); // SDXL: text_encoder_2
  const LAYER = model.defaultLayer;

  const train = trainingPrompts();
  step(2, `collect the output of ${model.hookpoint(LAYER)} for ${train.length} prompts -> ${dirs.acts}`);
  const m = await collectActivations(model, { out: dirs.acts, layer: LAYER, prompts: train });
  process.stdout.write(`${m.rows} token activations (BOS and padding excluded)\n`);

  step(3, `train a TopK SAE (${opts.latents} latents, k=${opts.k}, ${opts.tokens} tokens) -> ${dirs.sae}`);
  await trainCommand({ acts: dirs.acts, latents: String(opts.latents), k: String(opts.k), out: dirs.sae, tokens: String(opts.tokens), batch: '1024', seed: String(opts.seed) });
  const sae = loadSae(dirs.sae);
  const saeId = saeIdentity(dirs.sae);

  step(4, `interpret + select: erase ${DEMO_TARGETS.join(', ')}; keep ${DEMO_RETAINED.join(', ')} (K_sel ${opts.kSel})`);
  let spec = await buildEraser(model, sae, {
    targets: DEMO_TARGETS.map((name) => ({ name, prompts: buildPrompts(name) })),
    retain: DEMO_RETAINED.flatMap(buildPrompts), kSel: opts.kSel, scale: -8, mode: 'official', layer: LAYER, saeId,
  });
  for (const c of spec.concepts) process.stdout.write(`  ${c.name.padEnd(12)} ${c.features.length} features (${c.removedByRetain.length} shared with retained concepts, kept)\n`);

  step(5, 'calibrate the gate (recall 1 on the build prompts, as the official code)');
  const eraser = await ConceptEraser.load({ model, sae, eraser: spec, saeId });
  const { spec: calibrated, choice: c } = await calibrateEraser(eraser, { recall: 1 });
  spec = calibrated;
  await eraser.update(spec);
  saveEraser(path.join(opts.out, 'eraser.json'), spec);
  process.stdout.write(`threshold ${c.threshold.toExponential(3)}  build AUROC ${c.auroc.toFixed(3)}  TPR ${c.tpr.toFixed(3)}  FPR ${c.fpr.toFixed(3)} -> ${path.join(opts.out, 'eraser.json')}\n`);

  step(6, 'deactivate + classify held-out prompts');
  const heldOut = [...DEMO_EVAL_TEMPLATES.map((t) => fill(DEMO_TEMPLATES[t]!, DEMO_TARGETS[0]!)), fill(DEMO_TEMPLATES[DEMO_EVAL_TEMPLATES[0]!]!, DEMO_RETAINED[0]!), DEMO_NEUTRAL[0]!];
  const enc = await eraser.encode(heldOut);
  heldOut.forEach((p, i) => process.stdout.write(`  ${enc.erased[i] ? 'ERASE' : 'pass '}  score ${enc.scores[i]!.toExponential(2)}  ${enc.concepts[i]!.join(',').padEnd(10)}  ${p}\n`));

  step(7, 'text-space evaluation on held-out templates');
  const r = await evaluateText(eraser, {
    targets: DEMO_TARGETS.map(concept), retained: DEMO_RETAINED.map(concept), templates: DEMO_TEMPLATES,
    evalTemplates: DEMO_EVAL_TEMPLATES, filler: 'thing', neutral: DEMO_NEUTRAL, latencyReps: 5,
  });
  const files = writeTextReport(dirs.report, r, { demo: true, modelId: model.id, saeId, eraserId: eraser.id, latents: opts.latents, k: opts.k, kSel: opts.kSel });
  process.stdout.write(`${metricsTable(r)}\n\nreport: ${files.html}\ndone in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  await eraser.release();
}
