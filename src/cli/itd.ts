/** ItD commands: features, explain, eraser build/add/remove/show/calibrate, classify. */
import fs from 'node:fs';
import path from 'node:path';
import { calibrateEraser, type CalibrationGoal, type PerConceptRule } from '../classify/calibrate-eraser.js';
import { hookpointPart, loadTextConditioning, type TextModel } from '../encoder/index.js';
import { classifyJointly, ConceptEraser, isEraserSet, loadEraserSet, writeEraserSet } from '../erase/index.js';
import type { ScoreStat } from '../erase/gate.js';
import { readConceptRows, readPrompts } from '../io/prompts.js';
import { checkSaeForModel } from '../sae/compat.js';
import { loadSae, saeIdentity, type Sae } from '../sae/index.js';
import { conceptThreshold, erasedLatents, eraserId, loadEraser, perConceptGate, saveEraser, type EraserSpec } from '../select/eraser-file.js';
import { explainLatent, tokenFeatures } from '../select/interpret.js';
import { addConcept, buildEraser, DEFAULT_TEMPLATES, expandConcept, removeConcept, type SelectSpan } from '../select/select.js';
import { addConceptsGrown, createEraser, CREATE_DEFAULTS, MIN_NEUTRAL, type CreateSummary, type OldLatents } from '../select/create.js';
import { stderrProgress } from '../io/progress.js';
import { bool, BUILD_FLAGS, int, layerIndex, list, NO_CANONICAL_FLAG, num, optStr, str, UsageError, type CommandSpec, type Flags } from './args.js';
import { ENCODER_FLAG, itdPart, PROMPT_FLAGS, promptsFrom, T5_FLAGS, t5Options, warnIfTruncated } from './encoder.js';

/** Concepts from a file: a CSV with a class/concept/artist column groups prompts; otherwise one concept named after the file. */
export function readConcepts(file: string): { name: string; prompts: string[] }[] {
  const labelled = path.extname(file).toLowerCase() === '.csv' ? readConceptRows(file) : undefined;
  if (!labelled) return [{ name: path.basename(file, path.extname(file)), prompts: readPrompts(file) }];
  const groups = new Map<string, string[]>();
  for (const { name, prompt } of labelled) groups.set(name, [...(groups.get(name) ?? []), prompt]);
  return [...groups].map(([name, prompts]) => ({ name, prompts }));
}

function templatesFrom(flags: Flags): string[] {
  const f = optStr(flags, 'templates');
  return f ? readPrompts(f) : DEFAULT_TEMPLATES;
}

interface Loaded { model: TextModel; sae: Sae; saeId: string }

/** The SAE and the encoder part it was trained on (--encoder picks one explicitly). */
async function loadPair(flags: Flags): Promise<Loaded> {
  const saePath = str(flags, 'sae');
  const sae = loadSae(saePath);
  const model = await itdPart(flags, sae.cfg.hookpoint);
  checkSaeForModel(sae, model, saePath);
  return { model, sae, saeId: saeIdentity(saePath) };
}

/** --layer (negative counts from the last block), else the SAE's layer, else ItD's relative depth in this tower. */
function layerOf(flags: Flags, { model, sae }: Loaded): number {
  return optStr(flags, 'layer') !== undefined ? layerIndex(flags, 'layer', model.config.numLayers) : (sae.cfg.layer ?? model.defaultLayer);
}

const MODEL_SAE = {
  model: { type: 'string', help: 'model directory' },
  sae: { type: 'string', help: 'SAE directory (sae.safetensors + cfg.json)' },
  ...ENCODER_FLAG,
} as const;

const features: CommandSpec = {
  name: 'features',
  usage: 'features --model DIR --sae SAE_DIR (--prompt P | --prompts FILE) [--top 8] [--json]',
  flags: { ...MODEL_SAE, ...PROMPT_FLAGS, top: { type: 'string', default: '8', help: 'latents per token' }, layer: { type: 'string', help: "hook layer (default: the SAE's)" }, json: { type: 'boolean', help: 'print JSON' } },
  async run(flags) {
    const pair = await loadPair(flags);
    const { model, sae } = pair;
    const prompts = promptsFrom(flags);
    warnIfTruncated(model.tokenizer, prompts);
    const out = [];
    for (const prompt of prompts) out.push({ prompt, tokens: await tokenFeatures(model, sae, layerOf(flags, pair), prompt, int(flags, 'top', 1)) });
    if (bool(flags, 'json')) return void process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    for (const p of out) {
      process.stdout.write(`${p.prompt}\n`);
      for (const t of p.tokens) {
        process.stdout.write(`  ${String(t.position).padStart(2)} ${t.token.padEnd(14)} ${t.latents.map((l) => `${l.latent}:${l.value.toFixed(2)}`).join('  ')}\n`);
      }
    }
  },
};

const explain: CommandSpec = {
  name: 'explain',
  usage: 'explain --sae SAE_DIR --acts ACTS_DIR --latent N [--top 20] [--json]',
  flags: {
    sae: MODEL_SAE.sae, acts: { type: 'string', help: 'collection directory (itd collect)' },
    latent: { type: 'string', help: 'latent id' }, top: { type: 'string', default: '20', help: 'examples' }, json: { type: 'boolean', help: 'print JSON' },
  },
  async run(flags) {
    const sae = loadSae(str(flags, 'sae'));
    const acts = str(flags, 'acts');
    const ex = await explainLatent(sae, acts, int(flags, 'latent'), int(flags, 'top', 1));
    const tokenizer = await tokenizerOfCollection(acts);
    const rows = ex.map((e) => ({ ...e, token: tokenizer ? tokenizer.tokenStrings([e.tokenId])[0]! : `#${e.tokenId}` }));
    if (bool(flags, 'json')) return void process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    for (const r of rows) process.stdout.write(`${r.value.toFixed(3).padStart(9)}  ${r.token.padEnd(14)} ${r.prompt}\n`);
  },
};

/** The collection's tokenizer when its model directory is still there (for readable tokens). */
async function tokenizerOfCollection(acts: string) {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(acts, 'manifest.json'), 'utf8')) as { model?: { dir?: string }; hookpoint?: string };
    const { ClipTokenizer } = await import('../tokenizer/index.js');
    const { resolvePart } = await import('../encoder/index.js');
    return m.model?.dir ? ClipTokenizer.fromDir(resolvePart(m.model.dir, hookpointPart(m.hookpoint)).tokenizerDir) : undefined;
  } catch {
    return undefined;
  }
}

function targetsFrom(flags: Flags, templates: string[]): { name: string; prompts: string[] }[] {
  const targets = [...list(flags, 'target').flatMap(readConcepts), ...list(flags, 'concept').map((c) => ({ name: c, prompts: expandConcept(c, templates) }))];
  if (targets.length === 0) throw new UsageError('give at least one --target FILE or --concept NAME');
  return targets;
}

function retainFrom(flags: Flags): string[] {
  return list(flags, 'retain').flatMap((f) => readPrompts(f));
}

/** Calibrates on target vs other prompts (defaults: the eraser's own) and prints the result; returns the updated spec. */
async function calibrate(eraser: ConceptEraser, goal: CalibrationGoal, force: boolean, target?: string[], other?: string[], perConcept?: PerConceptRule): Promise<EraserSpec> {
  const { spec, choice: c, warnings } = await calibrateEraser(eraser, goal, { ...(target ? { target } : {}), ...(other ? { other } : {}), progress: true, force, ...(perConcept ? { perConcept } : {}) });
  process.stdout.write(`calibrated on ${spec.calibration!.nTarget} target / ${spec.calibration!.nOther} other prompts: threshold ${c.threshold.toExponential(4)}  AUROC ${c.auroc.toFixed(4)}  TPR ${c.tpr.toFixed(4)}  FPR ${c.fpr.toFixed(4)}\n`);
  if (perConceptGate(spec)) for (const k of spec.concepts) process.stdout.write(`  ${k.name.padEnd(24)} own threshold ${(conceptThreshold(spec, k) ?? NaN).toExponential(4)}\n`);
  for (const w of warnings) process.stderr.write(`WARNING: ${w}\n`);
  return spec;
}

const FORCE_FLAG = { force: { type: 'boolean', help: 'keep a degenerate threshold (<= 0, erasing most prompts, AUROC < 0.6) instead of refusing it' } } as const;
const warnStderr = (m: string) => void process.stderr.write(`warning: ${m}\n`);

/** The flag's value when it is one of `values` (undefined when unset). */
function choice<T extends string>(flags: Flags, name: string, values: readonly T[]): T | undefined {
  const v = optStr(flags, name);
  if (v !== undefined && !(values as readonly string[]).includes(v)) throw new UsageError(`--${name} must be ${values.slice(0, -1).join(', ')} or ${values.at(-1)}`);
  return v as T | undefined;
}

const statFrom = (flags: Flags) => choice<ScoreStat>(flags, 'score-stat', ['mean', 'max']);
const spanFrom = (flags: Flags) => choice<SelectSpan>(flags, 'span', ['prompt', 'name']);

function wantFrom(flags: Flags): CalibrationGoal {
  if (optStr(flags, 'recall') !== undefined && optStr(flags, 'fpr') !== undefined) throw new UsageError('give --recall or --fpr, not both');
  if (optStr(flags, 'fpr') === undefined) return { recall: optStr(flags, 'recall') !== undefined ? num(flags, 'recall') : 1 };
  const confidence = optStr(flags, 'confidence') !== undefined ? num(flags, 'confidence') : 0;
  return { fpr: num(flags, 'fpr'), ...(confidence > 0 ? { confidence } : {}) };
}

const PER_CONCEPT_RULES: readonly PerConceptRule[] = ['none', 'target', 'neutral'];
function perConceptFrom(flags: Flags): PerConceptRule | undefined {
  const v = optStr(flags, 'per-concept');
  if (v !== undefined && !PER_CONCEPT_RULES.includes(v as PerConceptRule)) throw new UsageError(`--per-concept must be ${PER_CONCEPT_RULES.join(', ')}`);
  return v as PerConceptRule | undefined;
}

const CALIBRATION_FLAGS = {
  'per-concept': { type: 'string', help: "thresholds: none (one over the union of features, official), target (each concept's score over its own features, normalised by its median on its own prompts; one threshold on the largest, calibrated jointly) or neutral (normalised by its own FPR/C threshold on the other prompts)" },
  confidence: { type: 'string', help: 'with --fpr: choose the threshold so the FPR bound holds with this confidence (exact binomial), e.g. 0.95' },
} as const;

const build: CommandSpec = {
  name: 'eraser build',
  usage: 'eraser build --model DIR --sae SAE_DIR (--target FILE | --concept NAME)... --retain FILE... --out ERASER.json [--k-sel 128] [--scale -8] [--mode official|residual]',
  flags: {
    ...MODEL_SAE,
    target: { type: 'string', multiple: true, help: 'target prompts: CSV with class+prompt columns (one concept per class) or a prompt file (one concept)' },
    concept: { type: 'string', multiple: true, help: 'a concept name, expanded through the templates' },
    retain: { type: 'string', multiple: true, help: 'prompts whose features must be kept' },
    templates: { type: 'string', help: 'file of templates with {} for --concept (default: 5 built-in)' },
    ...BUILD_FLAGS,
    layer: { type: 'string', help: "hook layer (default: the SAE's cfg layer, else ItD's relative depth: 8 of 12, 21 of SDXL's 32)" },
    recall: { type: 'string', help: 'calibrate for this recall on the targets (default 1.0, as the official code)' },
    fpr: { type: 'string', help: 'calibrate for this false-positive rate on the retain prompts instead' },
    'allow-empty': { type: 'boolean', help: 'keep concepts whose features all belong to retain prompts (warn instead of fail)' },
    'score-stat': { type: 'string', help: 'per-prompt score over tokens: mean (official, the default) or max' },
    span: { type: 'string', help: "tokens that select a --concept's features: prompt (official, the default) or name (from the name's first token on)" },
    ...FORCE_FLAG,
    out: { type: 'string', help: 'output ERASER.json' },
  },
  async run(flags) {
    const out = str(flags, 'out');
    const mode = str(flags, 'mode');
    if (mode !== 'official' && mode !== 'residual') throw new UsageError('--mode must be official or residual');
    const templates = templatesFrom(flags);
    const targets = targetsFrom(flags, templates);
    const retain = retainFrom(flags);
    if (retain.length === 0) process.stderr.write('warning: no --retain prompts: nothing protects unrelated features, and calibration needs them\n');
    const pair = await loadPair(flags);
    const { model, sae, saeId } = pair;
    warnIfTruncated(model.tokenizer, [...targets.flatMap((t) => t.prompts), ...retain]);
    let spec = await buildEraser(model, sae, {
      targets, retain, kSel: int(flags, 'k-sel', 1), scale: num(flags, 'scale'), mode, layer: layerOf(flags, pair), templates, saeId, allowEmpty: bool(flags, 'allow-empty'), warn: warnStderr,
      ...(statFrom(flags) ? { scoreStat: statFrom(flags)! } : {}), ...(spanFrom(flags) ? { span: spanFrom(flags)! } : {}),
    });
    if (retain.length > 0) {
      const eraser = await ConceptEraser.load({ model, sae, eraser: spec, saeId });
      spec = await calibrate(eraser, wantFrom(flags), bool(flags, 'force'), undefined, retain);
    }
    saveEraser(out, spec);
    process.stdout.write(`wrote ${out}: ${spec.concepts.length} concept(s), ${erasedLatents(spec).length} latents, id ${eraserId(spec)}\n`);
  },
};

const ERASER_FLAG = { eraser: { type: 'string', help: 'ERASER.json' } } as const;

const add: CommandSpec = {
  name: 'eraser add',
  usage: 'eraser add --model DIR --sae SAE_DIR --eraser ERASER.json (--target FILE | --concept NAME)...',
  flags: {
    ...MODEL_SAE, ...ERASER_FLAG, target: build.flags['target']!, concept: build.flags['concept']!, templates: build.flags['templates']!, 'allow-empty': build.flags['allow-empty']!,
    'no-grow': { type: 'boolean', help: "select among the SAE's latents only (the official rule; weak for names the SAE never saw)" },
    'sae-out': { type: 'string', help: "where the SAE grown for the new concepts goes (default: ERASER-sae/ beside the eraser; the SAE given is never overwritten unless it is that directory)" },
    neutral: { type: 'string', help: "captions, split as eraser create splits them: the grown latents never fire on the selection slice, an FPR-calibrated eraser is recalibrated on the calibration slice (default: the bundled COCO captions)" },
  },
  async run(flags) {
    const file = str(flags, 'eraser');
    let spec = loadEraser(file);
    const { model, sae, saeId } = await loadPair(flags);
    await (await ConceptEraser.load({ model, sae, eraser: spec, saeId })).release(); // checks compatibility before editing
    const targets = targetsFrom(flags, spec.templates);
    warnIfTruncated(model.tokenizer, targets.flatMap((t) => t.prompts));
    const names = targets.map((t) => `'${t.name}'`).join(', ');
    if (bool(flags, 'no-grow')) {
      for (const t of targets) spec = await addConcept(spec, model, sae, t.name, t.prompts, bool(flags, 'allow-empty'));
      saveEraser(file, spec);
      process.stdout.write(`updated ${file}: ${spec.concepts.length} concept(s); run 'itd eraser calibrate' to refresh the threshold\n`);
      // A per-concept gate has no threshold for the new concepts until then: they never fire alone.
      if (perConceptGate(spec)) process.stderr.write(`warning: ${names} get their own threshold only at the next 'itd eraser calibrate'; until then they erase nothing\n`);
      return;
    }
    const saeOut = optStr(flags, 'sae-out') ?? defaultGrownSaeDir(file);
    const r = await addConceptsGrown(model, sae, spec, { concepts: targets, saeOut, ...(optStr(flags, 'neutral') ? { neutral: readPrompts(str(flags, 'neutral')) } : {}), progress: stderrProgress });
    saveEraser(file, r.spec);
    const c = r.spec.calibration;
    process.stdout.write(`updated ${file}: ${r.spec.concepts.length} concept(s); ${r.grown.length} latents grown for ${names} into ${saeOut} (every other latent unchanged)\n` +
      (r.recalibrated && c ? `recalibrated for FPR ${c.target} on ${c.nOther} captions: threshold ${r.spec.threshold!.toExponential(3)}, calibration FPR ${c.fpr.toFixed(3)} / TPR ${c.tpr.toFixed(3)}\n` : '') +
      `use it with: itd encode --model ${str(flags, 'model')} --sae ${saeOut} --eraser ${file} --prompt ...\n`);
    for (const w of r.warnings) process.stderr.write(`WARNING: ${w}\n`);
    if (!r.recalibrated) process.stderr.write(`warning: the threshold was calibrated without ${names}: run 'itd eraser calibrate --sae ${saeOut} --retain CAPTIONS.txt --fpr 0.01' to bound its FPR again\n`);
  },
};

/**
 * ERASER-sae/ beside the eraser: named after it, so a later add grows it in place, and never the
 * SAE it came from (other erasers built on that SAE keep its identity).
 */
function defaultGrownSaeDir(eraserFile: string): string {
  return eraserFile.replace(/\.json$/i, '') + '-sae';
}

const remove: CommandSpec = {
  name: 'eraser remove',
  usage: 'eraser remove --eraser ERASER.json --concept NAME...',
  flags: { ...ERASER_FLAG, concept: { type: 'string', multiple: true, help: 'concept to remove' } },
  async run(flags) {
    const file = str(flags, 'eraser');
    let spec = loadEraser(file);
    const names = list(flags, 'concept');
    if (names.length === 0) throw new UsageError('give at least one --concept');
    for (const n of names) spec = removeConcept(spec, n);
    saveEraser(file, spec);
    process.stdout.write(`updated ${file}: ${spec.concepts.length} concept(s) left\n`);
  },
};

const show: CommandSpec = {
  name: 'eraser show',
  usage: 'eraser show --eraser ERASER.json [--json]',
  flags: { ...ERASER_FLAG, json: { type: 'boolean', help: 'print JSON' } },
  async run(flags) {
    const spec = loadEraser(str(flags, 'eraser'));
    if (bool(flags, 'json')) return void process.stdout.write(`${JSON.stringify(spec, null, 2)}\n`);
    const c = spec.calibration;
    process.stdout.write(`eraser ${eraserId(spec)}  model ${spec.modelId}  sae ${spec.saeId}  layer ${spec.layer}  mode ${spec.mode}  scale ${spec.scale}  K_sel ${spec.kSel}\n`);
    process.stdout.write(`threshold ${spec.threshold ?? 'none (uncalibrated)'}${c ? `  (${c.method} ${c.target}: AUROC ${c.auroc.toFixed(4)} TPR ${c.tpr.toFixed(4)} FPR ${c.fpr.toFixed(4)} on ${c.nTarget}/${c.nOther} prompts${c.stale ? '; STALE: concepts changed since' : ''})` : ''}\n`);
    process.stdout.write(`gate activation threshold ${spec.activationThreshold.toFixed(4)}; ${erasedLatents(spec).length} latents; ${spec.retain.prompts.length} retain prompts\n`);
    for (const k of spec.concepts) {
      const top = k.features.slice(0, 8).map((f) => `${f.latent}(${f.max.toFixed(2)})`).join(' ');
      process.stdout.write(`  ${k.name.padEnd(24)} ${String(k.features.length).padStart(4)} features, ${k.removedByRetain.length} kept for retain  ${top}\n`);
    }
  },
};

const calibrateCmd: CommandSpec = {
  name: 'eraser calibrate',
  usage: 'eraser calibrate --model DIR --sae SAE_DIR --eraser ERASER.json [--target FILE] [--retain FILE] [--recall 1.0 | --fpr 0.01]',
  flags: {
    ...MODEL_SAE, ...ERASER_FLAG,
    target: { type: 'string', multiple: true, help: "target prompts (default: the eraser's concept prompts)" },
    retain: { type: 'string', multiple: true, help: "non-target prompts (default: the eraser's retain prompts)" },
    recall: build.flags['recall']!, fpr: build.flags['fpr']!, ...CALIBRATION_FLAGS, ...FORCE_FLAG,
  },
  async run(flags) {
    const file = str(flags, 'eraser');
    const { model, sae, saeId } = await loadPair(flags);
    const eraser = await ConceptEraser.load({ model, sae, eraser: file, saeId });
    const target = list(flags, 'target').length ? list(flags, 'target').flatMap(readConcepts).flatMap((c) => c.prompts) : undefined;
    const retain = list(flags, 'retain').length ? retainFrom(flags) : undefined;
    warnIfTruncated(model.tokenizer, [...(target ?? []), ...(retain ?? [])]);
    saveEraser(file, await calibrate(eraser, wantFrom(flags), bool(flags, 'force'), target, retain, perConceptFrom(flags)));
    process.stdout.write(`updated ${file}\n`);
  },
};

const classify: CommandSpec = {
  name: 'classify',
  usage: 'classify --model DIR (--sae SAE_DIR --eraser ERASER.json | --eraser ERASER_SET.json) (--prompt P | --prompts FILE) [--json]',
  flags: { ...MODEL_SAE, ...ERASER_FLAG, ...PROMPT_FLAGS, ...NO_CANONICAL_FLAG, json: { type: 'boolean', help: 'print JSON lines' } },
  async run(flags) {
    const prompts = promptsFrom(flags);
    const file = str(flags, 'eraser');
    if (isEraserSet(file)) return classifySet(flags, file, prompts);
    const { model, sae, saeId } = await loadPair(flags);
    warnIfTruncated(model.tokenizer, prompts);
    const eraser = await ConceptEraser.load({ model, sae, eraser: file, saeId, canonical: !bool(flags, 'no-canonical') });
    const decisions = await eraser.classify(prompts, { progress: prompts.length > 64 });
    for (const d of decisions) {
      if (bool(flags, 'json')) process.stdout.write(`${JSON.stringify(d)}\n`);
      else process.stdout.write(`${d.erased ? 'ERASE' : 'pass '}  ${d.score.toExponential(3)}  ${d.concepts.join(', ').padEnd(20)}  ${d.prompt}${d.canonical !== undefined ? `  (as ${JSON.stringify(d.canonical)})` : ''}\n`);
    }
  },
};

/** An eraser set: erased iff any encoder's score crosses its own threshold; every part's decision is reported. */
async function classifySet(flags: Flags, file: string, prompts: string[]): Promise<void> {
  const text = await loadTextConditioning(str(flags, 'model'), t5Options(flags));
  const erasers = await loadEraserSet(file, text, !bool(flags, 'no-canonical'));
  const joint = await classifyJointly(erasers, prompts, { progress: prompts.length > 64 });
  prompts.forEach((prompt, i) => {
    const parts = erasers.map((e, k) => ({ encoder: e.model.name, ...joint.parts[k]![i]! }));
    const erased = joint.erased[i] === 1;
    if (bool(flags, 'json')) return void process.stdout.write(`${JSON.stringify({ prompt, erased, parts: parts.map(({ prompt: _p, ...d }) => d) })}\n`);
    const scores = parts.map((p) => `${p.encoder} ${p.score.toExponential(3)}${p.erased ? '*' : ''}`).join('  ');
    process.stdout.write(`${erased ? 'ERASE' : 'pass '}  ${scores}  ${[...new Set(parts.flatMap((p) => p.concepts))].join(', ').padEnd(20)}  ${prompt}\n`);
  });
}

const join: CommandSpec = {
  name: 'eraser join',
  usage: 'eraser join --out ERASER_SET.json --part ERASER.json=SAE_DIR --part ERASER2.json=SAE2_DIR [--model DIR]',
  flags: {
    out: { type: 'string', help: 'output ERASER_SET.json' },
    part: { type: 'string', multiple: true, help: 'ERASER.json=SAE_DIR of one encoder' },
    model: { type: 'string', help: 'model directory: check every part against it before writing' },
    ...T5_FLAGS,
  },
  async run(flags) {
    const parts = list(flags, 'part').map((p) => {
      const [eraser, sae, ...rest] = p.split('=');
      if (!eraser || !sae || rest.length > 0) throw new UsageError(`--part '${p}' must be ERASER.json=SAE_DIR`);
      return { eraser, sae };
    });
    if (parts.length === 0) throw new UsageError('give at least one --part ERASER.json=SAE_DIR');
    const out = str(flags, 'out');
    writeEraserSet(out, parts);
    const model = optStr(flags, 'model');
    if (model) {
      try {
        const erasers = await loadEraserSet(out, await loadTextConditioning(model, t5Options(flags)));
        process.stdout.write(`checked against ${model}: ${erasers.map((e) => `${e.model.name} (layer ${e.spec.layer}, ${e.spec.concepts.length} concepts)`).join(', ')}\n`);
      } catch (e) {
        fs.rmSync(out, { force: true });
        throw e;
      }
    }
    process.stdout.write(`wrote ${out}: ${parts.length} part(s)\n`);
  },
};

const create: CommandSpec = {
  name: 'eraser create',
  usage: 'eraser create --model DIR --concept NAME... [--retain-concept NAME...] [--sae SAE_DIR] [--fpr 0.01] --out OUT_DIR',
  flags: {
    model: MODEL_SAE.model,
    ...ENCODER_FLAG,
    sae: { type: 'string', help: 'reuse this SAE (zero-shot: nothing is trained; one latent per name token is grown, existing latents frozen, into OUT_DIR/sae); default: train one into OUT_DIR/sae' },
    'no-grow': { type: 'boolean', help: 'select among the SAE latents only, grow none (with --sae, OUT_DIR/sae is then not written)' },
    'old-latents': { type: 'string', default: CREATE_DEFAULTS.oldLatents, help: "with grown latents, the SAE's own latents selected for the concept: edit (deactivated when the gate erases; the gate scores the grown ones), gate (also scored: the plain ItD rule) or drop" },
    concept: { type: 'string', multiple: true, help: 'a concept to erase (a name: person, artist, object)' },
    'retain-concept': { type: 'string', multiple: true, help: 'a concept that must survive (its features are never erased)' },
    neutral: { type: 'string', help: `unrelated prompts, at least ${MIN_NEUTRAL} (default: the bundled COCO captions)` },
    templates: { type: 'string', help: 'JSON {"build": [...], "heldout": [...]} of {}-templates (default: the bundled set)' },
    fpr: { type: 'string', default: String(CREATE_DEFAULTS.fpr), help: 'target false-positive rate on neutral prompts' },
    confidence: { type: 'string', default: String(CREATE_DEFAULTS.confidence), help: 'the FPR bound holds with this confidence on fresh captions (exact binomial; 0: the plain quantile of the calibration captions)' },
    'per-concept': { type: 'string', default: CREATE_DEFAULTS.perConcept, help: CALIBRATION_FLAGS['per-concept'].help },
    'k-sel': { type: 'string', default: String(CREATE_DEFAULTS.kSel), help: 'features per prompt' },
    'max-neutral-rate': { type: 'string', default: String(CREATE_DEFAULTS.maxNeutralRate), help: 'never select a latent in the top-K_sel of more than this share of neutral prompts (0: the official any-use rule)' },
    'score-stat': { type: 'string', default: CREATE_DEFAULTS.scoreStat, help: 'per-prompt score over tokens: max or mean (official)' },
    span: { type: 'string', default: CREATE_DEFAULTS.span, help: "tokens that select a concept's features: name (from the name's first token on) or prompt (official)" },
    scale: { type: 'string', default: String(CREATE_DEFAULTS.scale), help: 'multiplier of the selected latents (the official ItD rule: -8; create edits grown latents only and defaults to -16, measured in BENCHMARKS.md)' },
    mode: { type: 'string', default: CREATE_DEFAULTS.mode, help: 'official or residual' },
    layer: { type: 'string', help: "hook layer (default: the SAE's, else ItD's relative depth: 8 of 12 blocks)" },
    latents: { type: 'string', default: String(CREATE_DEFAULTS.latents), help: 'SAE latents (when training)' },
    k: { type: 'string', default: String(CREATE_DEFAULTS.k), help: 'SAE active latents per token (when training)' },
    tokens: { type: 'string', help: 'training tokens upper bound (default: 64 per latent, stopping once the loss flattens)' },
    oversample: { type: 'string', default: String(CREATE_DEFAULTS.oversample), help: 'repeats of the concept prompts in the SAE training data' },
    seed: { type: 'string', default: String(CREATE_DEFAULTS.seed), help: 'SAE training seed' },
    ...FORCE_FLAG,
    out: { type: 'string', help: 'output directory: eraser.json, summary.json, sae/' },
  },
  async run(flags) {
    const out = str(flags, 'out');
    const concepts = list(flags, 'concept');
    if (concepts.length === 0) throw new UsageError('give at least one --concept NAME');
    const mode = str(flags, 'mode');
    if (mode !== 'official' && mode !== 'residual') throw new UsageError('--mode must be official or residual');
    const saePath = optStr(flags, 'sae');
    const sae = saePath ? { sae: loadSae(saePath), id: saeIdentity(saePath) } : undefined;
    const model = await itdPart(flags, sae?.sae.cfg.hookpoint);
    const layer = optStr(flags, 'layer') === undefined ? model.defaultLayer : layerIndex(flags, 'layer', model.config.numLayers);
    const tf = optStr(flags, 'templates');
    fs.mkdirSync(out, { recursive: true });
    const { spec, summary } = await createEraser(model, {
      concepts, retainConcepts: list(flags, 'retain-concept'), out,
      ...(sae ? { sae, layer: sae.sae.cfg.layer ?? layer } : { layer }),
      ...(optStr(flags, 'neutral') ? { neutral: readPrompts(str(flags, 'neutral')) } : {}),
      ...(tf ? { templates: JSON.parse(fs.readFileSync(tf, 'utf8')) } : {}),
      fpr: num(flags, 'fpr'), confidence: num(flags, 'confidence'), perConcept: perConceptFrom(flags)!, kSel: int(flags, 'k-sel', 1), maxNeutralRate: num(flags, 'max-neutral-rate'), scoreStat: statFrom(flags)!, span: spanFrom(flags)!,
      scale: num(flags, 'scale'), mode, latents: int(flags, 'latents', 1), k: int(flags, 'k', 1), oversample: int(flags, 'oversample', 1), seed: int(flags, 'seed'),
      ...(optStr(flags, 'tokens') ? { tokens: int(flags, 'tokens', 1) } : {}),
      grow: !bool(flags, 'no-grow'), oldLatents: choice<OldLatents>(flags, 'old-latents', ['edit', 'gate', 'drop'])!, force: bool(flags, 'force'), progress: stderrProgress, log: (l) => void process.stderr.write(`${l}\n`),
    });
    const file = path.join(out, 'eraser.json');
    saveEraser(file, spec);
    fs.writeFileSync(path.join(out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    const saeOut = summary.sae.trained || summary.sae.grown > 0 ? path.join(out, 'sae') : saePath!;
    process.stdout.write(`${createReport(summary)}\nwrote ${file}${saeOut !== saePath ? ` and ${saeOut}` : ''}; use it with: itd encode --model ${str(flags, 'model')} --sae ${saeOut} --eraser ${file} --prompt ...\n`);
  },
};

/** The quality summary `eraser create` prints. */
export function createReport(s: CreateSummary): string {
  const f = (x: number) => x.toFixed(3);
  const sae = s.sae.trained
    ? `SAE ${s.sae.id}: trained ${s.sae.steps} steps / ${s.sae.tokens} tokens${s.sae.converged ? ' (converged)' : ' (budget reached)'}, FVU ${f(s.sae.fvu!)}, dead ${(100 * s.sae.deadFraction!).toFixed(1)}%`
    : `SAE ${s.sae.id}: reused (zero-shot)`;
  const grown = s.sae.grown ? `; ${s.sae.grown} latents grown for the concepts' name tokens (the others frozen)` : '';
  const lines = [
    sae + grown,
    ...s.concepts.map((c) => `  ${c.name.padEnd(24)} ${String(c.features).padStart(4)} features kept${c.editOnly ? ` (+${c.editOnly} edit-only)` : ''} (${c.removedByRetain} retained-concept, ${c.removedAsCommon} common-neutral removed)  ` +
      `${s.calibration.perConcept !== 'none' ? `own threshold ${c.threshold > 0 && s.threshold > Number.MIN_VALUE ? c.threshold.toExponential(3) : 'any firing'}  ` : ''}held-out TPR ${f(c.heldoutTpr)}`),
    `threshold ${s.threshold.toExponential(3)}${s.threshold === Number.MIN_VALUE ? ' (the smallest positive: a prompt is erased iff one of its concept\'s selected latents fires)' : ''}${s.calibration.perConcept !== 'none' ? ` on each concept's score / its norm (per-concept: ${s.calibration.perConcept})` : ''}: calibration FPR ${f(s.calibration.fpr)} / TPR ${f(s.calibration.tpr)} on ${s.calibration.neutral} neutral prompts`,
    `guarantee: ${s.calibration.guarantee}`,
    `held-out: TPR ${f(s.heldout.tpr)} on ${s.heldout.targetPrompts} template variants not built from, FPR ${f(s.heldout.fprNeutral)} on ${s.heldout.neutralPrompts} neutral prompts` +
      `${s.heldout.fprRetained !== null ? `, FPR ${f(s.heldout.fprRetained)} on retained concepts` : ''}, AUROC ${s.heldout.auroc.toFixed(4)}`,
    ...s.warnings.map((w) => `WARNING: ${w}`),
    `done in ${s.seconds.toFixed(0)} s`,
  ];
  return lines.join('\n');
}

export const itdCommands = [features, explain, build, add, remove, show, calibrateCmd, create, classify, join];
