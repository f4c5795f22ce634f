/** Commands over the tokenizer and text encoder: synth-model, tokenize, encode. */
import path from 'node:path';
import { encodePrompts, loadTextModel } from '../encoder/index.js';
import { ConceptEraser } from '../erase/index.js';
import { readPrompts } from '../io/prompts.js';
import { loadSae, saeIdentity } from '../sae/index.js';
import { writeSafetensors, type TensorIn } from '../io/safetensors.js';
import { PRESETS, synthModel, type Preset } from '../synth/clip.js';
import { ClipTokenizer } from '../tokenizer/index.js';
import { resolveModelDir } from '../encoder/index.js';
import { int, list, optStr, str, UsageError, type CommandSpec, type Flags } from './args.js';

/** Prompts from repeated --prompt flags and/or --prompts files (.txt, .csv with a prompt column, .json). */
export function promptsFrom(flags: Flags): string[] {
  const prompts = [...list(flags, 'prompt'), ...list(flags, 'prompts').flatMap((f) => readPrompts(f))];
  if (prompts.length === 0) throw new UsageError('give at least one --prompt or a --prompts FILE');
  return prompts;
}

export const PROMPT_FLAGS = {
  prompt: { type: 'string', multiple: true, help: 'a prompt' },
  prompts: { type: 'string', multiple: true, help: 'prompt file: .txt (one per line), .csv (prompt column) or .json' },
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

function warnTruncated(prompts: string[], truncated: ArrayLike<number>): void {
  for (let i = 0; i < prompts.length; i++) {
    if (truncated[i]! > 0) process.stderr.write(`warning: prompt ${i} truncated to 77 tokens (${truncated[i]} tokens dropped): ${prompts[i]!.slice(0, 60)}…\n`);
  }
}

const synth: CommandSpec = {
  name: 'synth-model',
  summary: 'write a synthetic diffusers-layout model with deterministic random weights',
  usage: 'synth-model --out DIR [--preset tiny|sd1|sd2] [--seed N] [--dtype f32|f16] [--vocab bpe_simple_vocab_16e6.txt.gz] [--no-sink]',
  flags: {
    out: { type: 'string', help: 'output directory' },
    preset: { type: 'string', default: 'tiny', help: `size preset: ${Object.keys(PRESETS).join(', ')}` },
    seed: { type: 'string', default: '0', help: 'random seed' },
    dtype: { type: 'string', default: 'f32', help: 'weight dtype: f32 or f16 (model.fp16.safetensors)' },
    vocab: { type: 'string', help: "OpenAI CLIP's bpe_simple_vocab_16e6.txt.gz (default: a small built-in vocabulary)" },
    'no-sink': { type: 'boolean', help: 'no attention sink on BOS (plain random attention; token identity is much weaker)' },
  },
  async run(flags) {
    const preset = str(flags, 'preset');
    if (!(preset in PRESETS)) throw new UsageError(`--preset must be one of ${Object.keys(PRESETS).join(', ')}`);
    const dtype = str(flags, 'dtype');
    if (dtype !== 'f32' && dtype !== 'f16') throw new UsageError('--dtype must be f32 or f16');
    const vocab = optStr(flags, 'vocab');
    const { config } = synthModel({ out: str(flags, 'out'), preset: preset as Preset, seed: int(flags, 'seed'), dtype, noSink: flags['no-sink'] === true, ...(vocab ? { vocab } : {}) });
    process.stdout.write(`wrote ${str(flags, 'out')}: ${preset} CLIP text encoder (D=${config.hiddenSize}, ${config.numLayers} layers, vocab ${config.vocabSize})\n`);
  },
};

const tokenize: CommandSpec = {
  name: 'tokenize',
  summary: 'print the 77 token ids of each prompt as JSON',
  usage: 'tokenize --model DIR (--prompt P ... | --prompts FILE)',
  flags: { model: { type: 'string', help: 'model directory (diffusers or Hugging Face CLIP)' }, ...PROMPT_FLAGS },
  async run(flags) {
    const prompts = promptsFrom(flags);
    const tokenizer = ClipTokenizer.fromDir(resolveModelDir(str(flags, 'model')).tokenizerDir);
    const framed = prompts.map((p) => tokenizer.frame(p));
    warnTruncated(prompts, framed.map((f) => f.truncated));
    process.stdout.write(`${JSON.stringify(framed.map((f) => Array.from(f.ids)))}\n`);
  },
};

const encode: CommandSpec = {
  name: 'encode',
  summary: 'encode prompts to conditioning (safetensors: input_ids, last_hidden_state, pooler_output, hidden_states.i)',
  usage: 'encode --model DIR (--prompt P ... | --prompts FILE) --out OUT.safetensors [--hidden-states all|0,8,12] [--batch N]',
  flags: {
    model: { type: 'string', help: 'model directory' },
    ...PROMPT_FLAGS,
    out: { type: 'string', help: 'output .safetensors file' },
    'hidden-states': { type: 'string', help: "Hugging Face hidden_states to save: 'all' or indices (0 = embeddings, i = output of encoder.layers[i-1])" },
    batch: { type: 'string', default: '16', help: 'prompts per encoder call' },
    eraser: { type: 'string', help: 'ERASER.json: erase its concepts (adds erased U8 [N] and score F32 [N]); needs --sae' },
    sae: { type: 'string', help: 'SAE directory the eraser was built with' },
    policy: { type: 'string', default: 'gate', help: 'with --eraser: gate (erase iff score >= threshold), always, never' },
  },
  async run(flags) {
    const prompts = promptsFrom(flags);
    const out = str(flags, 'out');
    if (path.extname(out) !== '.safetensors') throw new UsageError('--out must end in .safetensors');
    const model = await loadTextModel(str(flags, 'model'));
    const progress = prompts.length > 16;
    const batch = int(flags, 'batch', 1);
    const eraserPath = optStr(flags, 'eraser');
    if (eraserPath) {
      const policy = str(flags, 'policy');
      if (policy !== 'gate' && policy !== 'always' && policy !== 'never') throw new UsageError('--policy must be gate, always or never');
      if (optStr(flags, 'hidden-states')) throw new UsageError('--hidden-states cannot be combined with --eraser');
      const saePath = str(flags, 'sae');
      const eraser = await ConceptEraser.load({ model, sae: loadSae(saePath), eraser: eraserPath, saeId: saeIdentity(saePath) });
      const r = await eraser.encode(prompts, { batch, policy, progress });
      warnTruncated(prompts, r.truncated);
      writeSafetensors(out, {
        ...encodingTensors(r),
        erased: { dtype: 'U8', shape: [r.n], data: r.erased },
        score: { dtype: 'F32', shape: [r.n], data: r.scores },
      }, { model_id: model.id, eraser_id: eraser.id });
      process.stdout.write(`wrote ${out}: ${r.n} prompt(s), ${r.erased.reduce((a, b) => a + b, 0)} erased\n`);
      return;
    }
    const hs = parseHiddenStates(optStr(flags, 'hidden-states'), model.config.numLayers);
    const r = await encodePrompts(model, prompts, { batch, ...(hs ? { hiddenStates: hs } : {}), progress });
    warnTruncated(prompts, r.truncated);
    writeSafetensors(out, encodingTensors(r), { model_id: model.id });
    process.stdout.write(`wrote ${out}: ${r.n} prompt(s), D=${r.d}\n`);
  },
};

export function encodingTensors(r: Awaited<ReturnType<typeof encodePrompts>>): Record<string, TensorIn> {
  const t: Record<string, TensorIn> = {
    input_ids: { dtype: 'I32', shape: [r.n, r.t], data: r.inputIds },
    last_hidden_state: { dtype: 'F32', shape: [r.n, r.t, r.d], data: r.lastHiddenState },
    pooler_output: { dtype: 'F32', shape: [r.n, r.d], data: r.pooler },
  };
  for (const [i, h] of r.hiddenStates) t[`hidden_states.${i}`] = { dtype: 'F32', shape: [r.n, r.t, r.d], data: h };
  return t;
}

export const encoderCommands = [synth, tokenize, encode];
