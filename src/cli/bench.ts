/** `itd bench erase`: build (or take) an eraser, then the text-space evaluation report; `itd bench attack`: gate evasion. */
import { ConceptEraser } from '../erase/index.js';
import { attackTable, evaluateAttack, type AttackTarget } from '../evaluate/attack.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { conceptsFromRows, evaluateText, type ConceptSet } from '../evaluate/text.js';
import { metricsTable, writeTextReport } from '../evaluate/text-report.js';
import { readConceptRows, readPrompts } from '../io/prompts.js';
import { loadEraser, saveEraser, type EraseMode } from '../select/eraser-file.js';
import { buildEraser } from '../select/select.js';
import { calibrateEraser } from '../classify/calibrate-eraser.js';
import { checkSaeForModel } from '../sae/compat.js';
import { loadSae, saeIdentity } from '../sae/index.js';
import { warnIfTruncated } from './encoder.js';
import { BUILD_FLAGS, int, num, optStr, str, UsageError, type CommandSpec } from './args.js';
import { ENCODER_FLAG, itdPart } from './encoder.js';
import fs from 'node:fs';
import path from 'node:path';
import { ItdError } from '../errors.js';

function rowsOf(file: string): { name: string; prompt: string }[] {
  const rows = readConceptRows(file);
  if (!rows) throw new ItdError('format', `${file}: needs a class (or concept/artist/name) column and a prompt column`, { file, field: 'prompt' });
  return rows;
}

function indices(spec: string, n: number, flag: string): number[] {
  const idx = spec.split(',').map(Number);
  for (const i of idx) if (!Number.isInteger(i) || i < 0 || i >= n) throw new UsageError(`--${flag}: '${spec}' must list template indices in 0..${n - 1}`);
  return idx;
}

const pick = (cs: ConceptSet[], ts: number[]) => cs.flatMap((c) => ts.flatMap((t) => (c.prompts[t] !== undefined ? [c.prompts[t]!] : [])));

export const benchErase: CommandSpec = {
  name: 'bench erase',
  usage: 'bench erase --model DIR --sae SAE_DIR --targets CSV --retained CSV --neutral FILE --out REPORT_DIR [--eraser E.json]',
  flags: {
    model: { type: 'string', help: 'model directory' },
    sae: { type: 'string', help: 'SAE directory' },
    ...ENCODER_FLAG,
    eraser: { type: 'string', help: 'use this eraser instead of building one from the build templates' },
    targets: { type: 'string', help: 'CSV (class, prompt) of the concepts to erase' },
    retained: { type: 'string', help: 'CSV (class, prompt) of the concepts to keep' },
    neutral: { type: 'string', help: 'unrelated prompts (e.g. COCO captions)' },
    'neutral-count': { type: 'string', default: '500', help: 'neutral prompts for evaluation (the next slice of the same size calibrates with --fpr)' },
    'retain-neutral': { type: 'string', default: '0', help: 'also retain this many neutral prompts (a third slice, after the evaluation and calibration ones): features that unrelated prompts use are never erased' },
    filler: { type: 'string', default: 'a person', help: 'neutral stand-in for a concept in the identification test' },
    'build-templates': { type: 'string', default: '0,1,2', help: 'template indices used to build and calibrate' },
    'eval-templates': { type: 'string', default: '3,4', help: 'held-out template indices used to evaluate' },
    ...BUILD_FLAGS,
    recall: { type: 'string', help: 'calibrate for this recall on build targets (default 1.0)' },
    fpr: { type: 'string', help: 'calibrate for this FPR on a held-apart neutral slice instead' },
    out: { type: 'string', help: 'report directory (report.json, report.html, eraser.json)' },
  },
  async run(flags) {
    const out = str(flags, 'out');
    const mode = str(flags, 'mode') as EraseMode;
    if (mode !== 'official' && mode !== 'residual') throw new UsageError('--mode must be official or residual');
    const targetRows = rowsOf(str(flags, 'targets'));
    const retainedRows = rowsOf(str(flags, 'retained'));
    const { concepts, templates } = conceptsFromRows([...targetRows, ...retainedRows]);
    const targetNames = new Set(targetRows.map((r) => r.name));
    const targets = concepts.filter((c) => targetNames.has(c.name));
    const retained = concepts.filter((c) => !targetNames.has(c.name));
    const buildT = indices(str(flags, 'build-templates'), templates.length, 'build-templates');
    const evalT = indices(str(flags, 'eval-templates'), templates.length, 'eval-templates');
    const count = int(flags, 'neutral-count', 1);
    const neutralAll = readPrompts(str(flags, 'neutral'));
    // Slices: evaluation [0, count), FPR calibration [count, 2 count), retained [2 count, 2 count + nRetain).
    const nRetain = int(flags, 'retain-neutral', 0);
    const useFpr = optStr(flags, 'fpr') !== undefined;
    const needed = nRetain > 0 ? 2 * count + nRetain : useFpr ? 2 * count : count;
    if (neutralAll.length < needed) {
      const flag = nRetain > 0 ? `--retain-neutral ${nRetain}` : useFpr ? `--fpr with --neutral-count ${count}` : `--neutral-count ${count}`;
      throw new UsageError(`${flag}: ${str(flags, 'neutral')} has ${neutralAll.length} prompts, needs ${needed} (in order: ${count} to evaluate` +
        `${needed > count ? `, ${count} for calibration` : ''}${nRetain > 0 ? `, ${nRetain} to retain` : ''})`);
    }
    const neutral = neutralAll.slice(0, count);
    const calibNeutral = neutralAll.slice(count, 2 * count);
    const retainNeutral = neutralAll.slice(2 * count, needed);
    const saePath = str(flags, 'sae');
    const [sae, saeId] = [loadSae(saePath), saeIdentity(saePath)];
    const model = await itdPart(flags, sae.cfg.hookpoint);
    checkSaeForModel(sae, model, saePath);
    warnIfTruncated(model.tokenizer, [...concepts.flatMap((c) => c.prompts), ...neutralAll.slice(0, needed)]);
    const given = optStr(flags, 'eraser');
    let spec = given ? loadEraser(given) : await buildEraser(model, sae, {
      targets: targets.map((c) => ({ name: c.name, prompts: pick([c], buildT) })),
      retain: [...pick(retained, buildT), ...retainNeutral], kSel: int(flags, 'k-sel', 1), scale: num(flags, 'scale'), mode, layer: sae.cfg.layer ?? model.defaultLayer, saeId, allowEmpty: true,
    });
    const eraser = await ConceptEraser.load({ model, sae, eraser: spec, saeId });
    if (!given) {
      await eraser.update(spec);
      // Concepts left without features cannot be erased; they are reported, not calibrated on.
      const erasable = new Set(spec.concepts.filter((c) => c.features.length > 0).map((c) => c.name));
      ({ spec } = await calibrateEraser(eraser, useFpr ? { fpr: num(flags, 'fpr') } : { recall: optStr(flags, 'recall') ? num(flags, 'recall') : 1 }, {
        target: pick(targets.filter((c) => erasable.has(c.name)), buildT), other: useFpr ? calibNeutral : pick(retained, buildT), progress: true,
      }));
      await eraser.update(spec);
      fs.mkdirSync(out, { recursive: true });
      saveEraser(path.join(out, 'eraser.json'), spec);
    }
    const r = await evaluateText(eraser, { targets, retained, templates, evalTemplates: evalT, filler: str(flags, 'filler'), neutral });
    const meta = { model: model.dir, modelId: model.id, sae: saePath, saeId, eraserId: eraser.id, latents: sae.n, k: sae.k, kSel: spec.kSel, scale: spec.scale, mode: spec.mode, buildTemplates: buildT, evalTemplates: evalT, date: new Date().toISOString() };
    const attack = await evaluateAttack(eraser, { targets: targets.map((c) => ({ name: c.name, prompts: pick([c], evalT) })), neutral });
    const files = writeTextReport(out, r, meta, attack);
    process.stdout.write(`${metricsTable(r)}\n\ngate evasion (defence off = before, on = after):\n${attackTable(attack)}\nwrote ${files.json} and ${files.html}\n`);
  },
};

/** Target prompts grouped by concept, in file order. */
function attackTargets(file: string): AttackTarget[] {
  const byName = new Map<string, string[]>();
  for (const r of rowsOf(file)) byName.set(r.name, [...(byName.get(r.name) ?? []), r.prompt]);
  return [...byName].map(([name, prompts]) => ({ name, prompts }));
}

export const benchAttack: CommandSpec = {
  name: 'bench attack',
  usage: 'bench attack --model DIR --sae SAE_DIR --eraser E.json --targets CSV --neutral FILE [--neutral-count N] [--out attack.json]',
  flags: {
    model: { type: 'string', help: 'model directory' },
    sae: { type: 'string', help: 'SAE directory' },
    eraser: { type: 'string', help: 'calibrated ERASER.json' },
    targets: { type: 'string', help: "CSV (class, prompt) of the eraser's concepts; prompts that name their class are disguised" },
    neutral: { type: 'string', help: 'unrelated prompts (e.g. COCO captions) for the FPR' },
    'neutral-count': { type: 'string', default: '2000', help: 'use the first N neutral prompts' },
    out: { type: 'string', help: 'also write the result as JSON here' },
  },
  async run(flags) {
    const saePath = str(flags, 'sae');
    const eraser = await ConceptEraser.load({ model: str(flags, 'model'), sae: saePath, eraser: str(flags, 'eraser'), saeId: saeIdentity(saePath) });
    const neutral = readPrompts(str(flags, 'neutral')).slice(0, int(flags, 'neutral-count', 1));
    const a = await evaluateAttack(eraser, { targets: attackTargets(str(flags, 'targets')), neutral });
    await eraser.release();
    process.stdout.write(`gate evasion at threshold ${a.threshold.toExponential(3)} (defence off = before, on = after):\n${attackTable(a)}\n`);
    const out = optStr(flags, 'out');
    if (out) {
      writeJsonAtomic(out, a);
      process.stdout.write(`wrote ${out}\n`);
    }
  },
};

export const benchCommands = [benchErase, benchAttack];
