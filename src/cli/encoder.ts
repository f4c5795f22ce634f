/** Commands over the tokenizer and text encoder: synth-model, tokenize, encode. */
import fs from 'node:fs';
import path from 'node:path';
import { conditioningTensors, encodeConditioning, loadPart, loadTextConditioning, pickPart, resolveItdPart, type PromptTokenizer, type TextConditioning, type TextModel } from '../encoder/index.js';
import { ConceptEraser, encodeErased, isEraserSet, loadEraserSet } from '../erase/index.js';
import { readPrompts } from '../io/prompts.js';
import { loadSae, saeIdentity } from '../sae/index.js';
import { writeSafetensors } from '../io/safetensors.js';
import { PRESETS, synthModel, type Preset } from '../synth/clip.js';
import { loadPartTokenizer, resolvePart, type PartLoadOptions } from '../encoder/index.js';
import { ItdError } from '../errors.js';
import { bool, int, list, NO_CANONICAL_FLAG, optStr, str, UsageError, type CommandSpec, type Flags } from './args.js';

/** Prompts from repeated --prompt flags and/or --prompts files (.txt, .csv with a prompt column, .json). */
export function promptsFrom(flags: Flags): string[] {
  const opts = { replaceInvalidUtf8: bool(flags, 'utf8-replace') };
  const prompts = [...list(flags, 'prompt'), ...list(flags, 'prompts').flatMap((f) => readPrompts(f, opts))];
  if (prompts.length === 0) throw new UsageError('give at least one --prompt or a --prompts FILE');
  return prompts;
}

/** Opt-in to read invalid UTF-8 in prompt files as U+FFFD (default: an error naming the line). */
export const UTF8_REPLACE_FLAG = { type: 'boolean', help: 'read invalid UTF-8 in prompt files as U+FFFD instead of failing' } as const;

export const PROMPT_FLAGS = {
  prompt: { type: 'string', multiple: true, help: 'a prompt' },
  prompts: { type: 'string', multiple: true, help: 'prompt file: .txt (one per line), .csv (prompt column) or .json' },
  'utf8-replace': UTF8_REPLACE_FLAG,
} as const;

/** "all" | "0,8,12" -> sorted indices within 0..L. */
export function parseHiddenStates(spec: string | undefined, numLayers: number): number[] | undefined {
  if (spec === undefined) return undefined;
  if (spec === 'all') return Array.from({ length: numLayers + 1 }, (_, i) => i);
  const idx = spec.split(',').map((s) => Number(s.trim()));
  for (const i of idx) {
    if (!Number.isInteger(i) || i < 0 || i > numLayers) throw new UsageError(`--hidden-states: '${spec}' must be 'all' or indices in 0..${numLayers}`);
  }
  return [...new Set(idx)].sort((a, b) => a - b);
}

/** One stderr warning per prompt longer than the framed window (CLIP 77, T5 max_sequence_length; the first few, then a count). */
export function warnTruncated(prompts: readonly string[], truncated: ArrayLike<number>, maxLength = 77): void {
  const long = prompts.flatMap((p, i) => (truncated[i]! > 0 ? [{ p, i, n: truncated[i]! }] : []));
  for (const { p, i, n } of long.slice(0, 5)) process.stderr.write(`warning: prompt ${i} truncated to ${maxLength} tokens (${n} tokens dropped): ${p.slice(0, 60)}…\n`);
  if (long.length > 5) process.stderr.write(`warning: ${long.length - 5} more prompt(s) truncated to ${maxLength} tokens\n`);
}

/** Tokenizes the prompts only to warn about truncation (commands whose library calls frame them later). */
export function warnIfTruncated(tokenizer: PromptTokenizer, prompts: readonly string[]): void {
  warnTruncated(prompts, tokenizer.batch([...prompts]).truncated, tokenizer.maxLength);
}

const synth: CommandSpec = {
  name: 'synth-model',
  usage: `synth-model --out DIR [--preset ${Object.keys(PRESETS).join('|')}] [--seed N] [--dtype f32|f16] [--vocab bpe_simple_vocab_16e6.txt.gz] [--no-sink] [--force]`,
  flags: {
    out: { type: 'string', help: 'output directory' },
    preset: { type: 'string', default: 'tiny', help: `size preset: ${Object.keys(PRESETS).join(', ')}` },
    seed: { type: 'string', default: '0', help: 'random seed' },
    dtype: { type: 'string', default: 'f32', help: 'weight dtype: f32 or f16 (model.fp16.safetensors)' },
    vocab: { type: 'string', help: "OpenAI CLIP's bpe_simple_vocab_16e6.txt.gz (default: a small built-in vocabulary)" },
    force: { type: 'boolean', help: 'overwrite a non-empty --out directory' },
    'no-sink': { type: 'boolean', help: 'no attention sink on BOS (plain random attention; token identity is much weaker)' },
  },
  async run(flags) {
    const out = str(flags, 'out');
    if (!bool(flags, 'force') && fs.existsSync(out) && fs.readdirSync(out).length > 0) {
      throw new ItdError('usage', `${out} exists and is not empty; synth-model would overwrite its files`, { file: out, field: '--out', hint: 'pass --force to overwrite, or choose another --out' });
    }
    const preset = str(flags, 'preset');
    if (!(preset in PRESETS)) throw new UsageError(`--preset must be one of ${Object.keys(PRESETS).join(', ')}`);
    const dtype = str(flags, 'dtype');
    if (dtype !== 'f32' && dtype !== 'f16') throw new UsageError('--dtype must be f32 or f16');
    const vocab = optStr(flags, 'vocab');
    const { parts, t5 } = synthModel({ out, preset: preset as Preset, seed: int(flags, 'seed'), dtype, noSink: bool(flags, 'no-sink'), ...(vocab ? { vocab } : {}) });
    const towers = parts.map(({ name, config: c }) => `${name}: ${c.architecture} D=${c.hiddenSize}, ${c.numLayers} layers, vocab ${c.vocabSize}`);
    if (t5) towers.push(`T5EncoderModel D=${t5.hiddenSize}, ${t5.numLayers} blocks, d_ff ${t5.dFf}, vocab ${t5.vocabSize}`);
    process.stdout.write(`wrote ${out}: ${preset} (${towers.join('; ')})\n`);
  },
};

/** T5 parts (FLUX.1, SD3): framed length and weight precision. */
export const T5_FLAGS = {
  'max-sequence-length': { type: 'string', help: "T5's max_sequence_length (default: FLUX.1 512, SD3 256; FLUX.1-schnell is run with 256)" },
  weights: { type: 'string', default: 'f32', help: 'T5 weights: f32 (exact) or int8 (block-quantised, ~3.5x less memory)' },
} as const;

export function t5Options(flags: Flags): PartLoadOptions {
  const weights = str(flags, 'weights');
  if (weights !== 'f32' && weights !== 'int8') throw new UsageError('--weights must be f32 or int8');
  const max = optStr(flags, 'max-sequence-length') === undefined ? undefined : int(flags, 'max-sequence-length', 2);
  return { weights, ...(max === undefined ? {} : { maxSequenceLength: max }) };
}

export const ENCODER_FLAG = {
  encoder: { type: 'string', help: "which text encoder: 1 or 2 for SDXL or FLUX.1 (2 is T5), 1..3 for SD3 (3 is T5), or a component name (default: the one the SAE was trained on, else the pipeline's main one: SDXL's wide tower, the T5)" },
  ...T5_FLAGS,
} as const;

/** Loads the encoder part an ItD command works on: --encoder, else the part `hookpoint` (the SAE's) names, else the pipeline's default. */
export async function itdPart(flags: Flags, hookpoint?: string): Promise<TextModel> {
  return loadPart(resolveItdPart(str(flags, 'model'), optStr(flags, 'encoder'), hookpoint), t5Options(flags));
}

const tokenize: CommandSpec = {
  name: 'tokenize',
  usage: 'tokenize --model DIR [--encoder 1|2|3] [--max-sequence-length N] (--prompt P ... | --prompts FILE)',
  flags: { model: { type: 'string', help: 'model directory (diffusers or Hugging Face CLIP / T5)' }, ...ENCODER_FLAG, ...PROMPT_FLAGS, ...T5_FLAGS },
  async run(flags) {
    const prompts = promptsFrom(flags);
    const tokenizer = loadPartTokenizer(resolvePart(str(flags, 'model'), optStr(flags, 'encoder')), t5Options(flags));
    const framed = prompts.map((p) => tokenizer.frame(p));
    warnTruncated(prompts, framed.map((f) => f.truncated), tokenizer.maxLength);
    process.stdout.write(`${JSON.stringify(framed.map((f) => Array.from(f.ids)))}\n`);
  },
};

const encode: CommandSpec = {
  name: 'encode',
  usage: 'encode --model DIR (--prompt P ... | --prompts FILE) --out OUT.safetensors [--hidden-states all|0,8,12] [--clip-skip N] [--batch N] [--max-sequence-length N] [--weights f32|int8]',
  flags: {
    model: { type: 'string', help: 'model directory' },
    ...PROMPT_FLAGS,
    out: { type: 'string', help: 'output .safetensors file' },
    'hidden-states': { type: 'string', help: "Hugging Face hidden_states to save (of every encoder): 'all' or indices (0 = embeddings, i = output of encoder.layers[i-1])" },
    'clip-skip': { type: 'string', help: "diffusers' clip_skip: prompt_embeds from N blocks before the pipeline's default layer" },
    batch: { type: 'string', default: '16', help: 'prompts per encoder call' },
    eraser: { type: 'string', help: 'ERASER.json (with --sae) or ERASER_SET.json: erase its concepts (adds erased U8 [N] and score F32 [N], or score_k per encoder k)' },
    ...ENCODER_FLAG,
    sae: { type: 'string', help: 'SAE directory the eraser was built with (not for an eraser set)' },
    policy: { type: 'string', default: 'gate', help: 'with --eraser: gate (erase iff score >= threshold), always, never' },
    ...NO_CANONICAL_FLAG,
  },
  async run(flags) {
    const prompts = promptsFrom(flags);
    const out = str(flags, 'out');
    if (path.extname(out) !== '.safetensors') throw new UsageError('--out must end in .safetensors');
    const progress = prompts.length > 16;
    const batch = int(flags, 'batch', 1);
    const eraserPath = optStr(flags, 'eraser');
    if (!eraserPath) return encodePipeline(flags, prompts, out, batch, progress);
    const policy = str(flags, 'policy');
    if (policy !== 'gate' && policy !== 'always' && policy !== 'never') throw new UsageError('--policy must be gate, always or never');
    if (optStr(flags, 'hidden-states')) throw new UsageError('--hidden-states cannot be combined with --eraser');
    const text = await loadTextConditioning(str(flags, 'model'), t5Options(flags));
    const erasers = await loadErasers(eraserPath, optStr(flags, 'sae'), optStr(flags, 'encoder'), text, !bool(flags, 'no-canonical'));
    const clipSkip = optStr(flags, 'clip-skip') === undefined ? 0 : int(flags, 'clip-skip', 0);
    const r = await encodeErased(text, erasers, prompts, { batch, policy, progress, clipSkip });
    r.parts.forEach((p) => warnTruncated(prompts, p.truncated, p.t));
    // One eraser: score [N]; several: score_k [N] per edited encoder k (1-based), the prompt erased iff any crossed its threshold.
    const scores = Object.fromEntries(r.erasures.map((e, i) => [erasers.length === 1 ? 'score' : `score_${text.parts.indexOf(erasers[i]!.model) + 1}`, { dtype: 'F32' as const, shape: [prompts.length], data: e.scores }]));
    writeSafetensors(out, {
      ...conditioningTensors(r, new Map(), text.parts.map((p) => p.name)),
      erased: { dtype: 'U8', shape: [prompts.length], data: r.erased },
      ...scores,
    }, { model_id: text.parts.map((p) => p.id).join(','), eraser_id: erasers.map((e) => e.id).join(','), encoder: erasers.map((e) => e.model.name).join(',') });
    process.stdout.write(`wrote ${out}: ${prompts.length} prompt(s), ${r.erased.reduce((a, b) => a + b, 0)} erased (eraser on ${erasers.map((e) => e.model.name).join(' + ')})\n`);
  },
};

/**
 * The erasers of --eraser: an eraser set (one eraser + SAE per encoder, no --sae), or one eraser
 * with its --sae, on the encoder that SAE was trained on (--encoder must agree).
 */
export async function loadErasers(eraserPath: string, saePath: string | undefined, encoder: string | undefined, text: TextConditioning, canonical = true): Promise<ConceptEraser[]> {
  if (isEraserSet(eraserPath)) {
    if (saePath) throw new UsageError(`${eraserPath} is an eraser set (its parts name their SAEs): drop --sae`);
    return loadEraserSet(eraserPath, text, canonical);
  }
  if (!saePath) throw new UsageError('--eraser needs --sae SAE_DIR (the SAE the eraser was built with)');
  const sae = loadSae(saePath);
  const model = pickPart(text.parts, resolveItdPart(text.layout.dir, encoder, sae.cfg.hookpoint).name, undefined, text.layout);
  return [await ConceptEraser.load({ model, sae, eraser: eraserPath, saeId: saeIdentity(saePath), canonical })];
}

/** Plain `itd encode`: every encoder part, combined into prompt_embeds as the pipeline does. */
async function encodePipeline(flags: Flags, prompts: string[], out: string, batch: number, progress: boolean): Promise<void> {
  const cond = await loadTextConditioning(str(flags, 'model'), t5Options(flags));
  const spec = optStr(flags, 'hidden-states');
  const requested = new Map(cond.parts.map((p) => [p.name, parseHiddenStates(spec, p.encoder.numLayers) ?? []]));
  const clipSkip = optStr(flags, 'clip-skip') === undefined ? 0 : int(flags, 'clip-skip', 0);
  const enc = await encodeConditioning(cond, prompts, { batch, clipSkip, hiddenStates: requested, progress });
  enc.parts.forEach((r) => warnTruncated(prompts, r.truncated, r.t));
  writeSafetensors(out, conditioningTensors(enc, requested, cond.parts.map((p) => p.name)), { model_id: cond.parts.map((p) => p.id).join(','), pipeline: cond.layout.pipeline });
  process.stdout.write(`wrote ${out}: ${prompts.length} prompt(s), prompt_embeds [${enc.embeds.n}, ${enc.embeds.seq}, ${enc.embeds.width}]${enc.embeds.pooledPromptEmbeds ? `, pooled_prompt_embeds [${enc.embeds.n}, ${enc.embeds.pooledWidth}]` : ''}\n`);
  await cond.release();
}

export const encoderCommands = [synth, tokenize, encode];
