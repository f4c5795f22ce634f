/**
 * Pipeline-level text conditioning: a model directory = named encoder parts + the recipe that
 * combines their outputs into the UNet's inputs under diffusers' names, `prompt_embeds`
 * [n, T, W] and `pooled_prompt_embeds` [n, P] (only for pipelines whose UNet takes it).
 *
 *   StableDiffusionPipeline (SD1.x/SD2.x) and bare models: one part; prompt_embeds =
 *     last_hidden_state, or with clip_skip k final_layer_norm(hidden_states[-(k+1)]).
 *   StableDiffusionXLPipeline: text_encoder (CLIP-L) + text_encoder_2 (bigG with projection);
 *     prompt_embeds = concat(hidden_states[-(k+2)] of each, last axis) (k = clip_skip, 0 when
 *     unset: the penultimate block, no final LayerNorm); pooled_prompt_embeds = text_encoder_2's
 *     text_embeds. Both tokenizers frame the same prompt (prompt_2 = prompt).
 *
 *   FluxPipeline and StableDiffusion3Pipeline: CLIP + T5 (their recipes below).
 */
import { ItdError } from '../errors.js';
import type { TensorIn } from '../io/safetensors.js';
import { loadPart, partShape, type PartLoadOptions, type PartShape } from './families.js';
import { layoutModelDir, type ModelLayout, type PartSlot, type PartSource } from './model-dir.js';
import { encodePrompts, type PromptEncoding } from './prompts.js';
import { hookpointPart, type EditFn, type EncoderPart } from './text-encoder.js';

/** The UNet's text inputs, row-major. */
export interface PipelineEmbeds {
  n: number;
  seq: number; // T
  width: number; // W
  promptEmbeds: Float32Array; // [n, T, W]
  pooledWidth: number; // P, 0 when the pipeline has no pooled input
  pooledPromptEmbeds: Float32Array | undefined; // [n, P]
}

export interface ConditioningRecipe {
  /** The encoder/tokenizer components, in the order diffusers runs them. */
  readonly slots: readonly PartSlot[];
  /** The part ItD edits unless told otherwise: the widest tower. */
  readonly defaultPart: string;
  /** Image size (pixels) diffusers defaults to when the UNet config does not say (sample_size x 8). */
  readonly defaultSize: number;
  /** force_zeros_for_empty_prompt when model_index.json does not say (diffusers' constructor default). */
  readonly forceZerosDefault: boolean;
  /** prompt_embeds width and pooled_prompt_embeds width (0: none) from the parts' shapes. */
  embedShape(shapes: readonly PartShape[]): { width: number; pooledWidth: number };
  /** hidden_states indices each part must return for combine, per part in slot order. */
  hiddenStates(parts: readonly EncoderPart[], clipSkip: number): number[][];
  /** prompt_embeds (+ pooled_prompt_embeds) from every part's encoding (same prompts, slot order). */
  combine(parts: readonly EncoderPart[], outs: readonly PromptEncoding[], clipSkip: number): Promise<PipelineEmbeds>;
}

const SINGLE: ConditioningRecipe = {
  slots: [{ encoder: 'text_encoder', tokenizer: 'tokenizer' }],
  defaultPart: 'text_encoder',
  defaultSize: 512,
  forceZerosDefault: false,
  embedShape: ([s]) => ({ width: s!.hiddenSize, pooledWidth: 0 }),
  hiddenStates: (parts, clipSkip) => [clipSkip > 0 ? [parts[0]!.encoder.numLayers - clipSkip] : []],
  async combine(parts, [o], clipSkip) {
    const { n, t, d } = o!;
    // diffusers' StableDiffusionPipeline: clip_skip takes hidden_states[-(k+1)] and applies final_layer_norm.
    const h = clipSkip > 0 ? await parts[0]!.encoder.finalNorm(o!.hiddenStates.get(parts[0]!.encoder.numLayers - clipSkip)!, { ids: o!.inputIds, n, t }) : o!.lastHiddenState;
    return { n, seq: t, width: d, promptEmbeds: h, pooledWidth: 0, pooledPromptEmbeds: undefined };
  },
};

const SDXL: ConditioningRecipe = {
  slots: [{ encoder: 'text_encoder', tokenizer: 'tokenizer' }, { encoder: 'text_encoder_2', tokenizer: 'tokenizer_2' }],
  defaultPart: 'text_encoder_2',
  defaultSize: 1024,
  forceZerosDefault: true,
  embedShape: (shapes) => ({ width: shapes.reduce((w, s) => w + s.hiddenSize, 0), pooledWidth: shapes[shapes.length - 1]!.pooledSize }),
  hiddenStates: (parts, clipSkip) => parts.map((p) => [p.encoder.numLayers - 1 - clipSkip]),
  async combine(parts, outs, clipSkip) {
    const { n, t } = outs[0]!;
    const states = outs.map((o, i) => ({ d: o.d, h: o.hiddenStates.get(parts[i]!.encoder.numLayers - 1 - clipSkip)! }));
    const width = states.reduce((w, s) => w + s.d, 0);
    const last = outs[outs.length - 1]!;
    return { n, seq: t, width, promptEmbeds: concatLastAxis(n * t, states, width), pooledWidth: last.p, pooledPromptEmbeds: last.pooler };
  },
};

/**
 * FluxPipeline: text_encoder (CLIP-L, CLIPTextModel) + text_encoder_2 (T5 v1.1, max_sequence_length
 * 512 by default; FLUX.1-schnell is run with 256). prompt_embeds = T5 last_hidden_state [n, L, 4096],
 * computed from the ids alone (no attention mask: padding is attended); pooled_prompt_embeds = CLIP's
 * pooler_output [n, 768]. FLUX has no clip_skip.
 */
const FLUX: ConditioningRecipe = {
  slots: [{ encoder: 'text_encoder', tokenizer: 'tokenizer' }, { encoder: 'text_encoder_2', tokenizer: 'tokenizer_2', maxLength: 512 }],
  defaultPart: 'text_encoder_2',
  defaultSize: 1024,
  forceZerosDefault: false,
  embedShape: ([clip, t5]) => ({ width: t5!.hiddenSize, pooledWidth: clip!.pooledSize }),
  hiddenStates(parts, clipSkip) {
    if (clipSkip > 0) throw new ItdError('usage', 'FluxPipeline has no clip_skip', { field: 'clip-skip' });
    return parts.map(() => []);
  },
  async combine(_parts, [clip, t5]) {
    return { n: t5!.n, seq: t5!.t, width: t5!.d, promptEmbeds: t5!.lastHiddenState, pooledWidth: clip!.p, pooledPromptEmbeds: clip!.pooler };
  },
};

/**
 * StableDiffusion3Pipeline: CLIP-L and CLIP-G (both with projection) + T5 (text_encoder_3,
 * max_sequence_length 256). As diffusers' encode_prompt: the CLIP towers' hidden_states[-(k+2)]
 * (k = clip_skip) concatenated [n, 77, 768 + 1280], zero-padded on the last axis to T5's width,
 * then followed on the sequence axis by T5's last_hidden_state: [n, 77 + 256, 4096];
 * pooled_prompt_embeds = concat(CLIP-L, CLIP-G text_embeds) [n, 2048].
 */
const SD3: ConditioningRecipe = {
  slots: [
    { encoder: 'text_encoder', tokenizer: 'tokenizer' },
    { encoder: 'text_encoder_2', tokenizer: 'tokenizer_2' },
    { encoder: 'text_encoder_3', tokenizer: 'tokenizer_3', maxLength: 256 },
  ],
  defaultPart: 'text_encoder_3',
  defaultSize: 1024,
  forceZerosDefault: false,
  embedShape: ([l, g, t5]) => ({ width: t5!.hiddenSize, pooledWidth: l!.pooledSize + g!.pooledSize }),
  hiddenStates: (parts, clipSkip) => parts.map((p, i) => (i < 2 ? [p.encoder.numLayers - 1 - clipSkip] : [])),
  async combine(parts, [l, g, t5], clipSkip) {
    const { n, t } = l!;
    const width = t5!.d;
    const clip = [l!, g!].map((o, i) => ({ d: o.d, h: o.hiddenStates.get(parts[i]!.encoder.numLayers - 1 - clipSkip)! }));
    if (l!.d + g!.d > width) {
      throw new ItdError('mismatch', `${parts[2]!.encoderDir}: T5 width ${width} is narrower than the CLIP towers' ${l!.d} + ${g!.d}`, { file: parts[2]!.encoderDir, field: 'd_model' });
    }
    const seq = t + t5!.t;
    const promptEmbeds = new Float32Array(n * seq * width);
    const clipRows = concatLastAxis(n * t, clip, width); // zero-padded to T5's width
    for (let r = 0; r < n; r++) {
      promptEmbeds.set(clipRows.subarray(r * t * width, (r + 1) * t * width), r * seq * width);
      promptEmbeds.set(t5!.lastHiddenState.subarray(r * t5!.t * width, (r + 1) * t5!.t * width), (r * seq + t) * width);
    }
    const pooled = concatLastAxis(n, [{ d: l!.p, h: l!.pooler }, { d: g!.p, h: g!.pooler }], l!.p + g!.p);
    return { n, seq, width, promptEmbeds, pooledWidth: l!.p + g!.p, pooledPromptEmbeds: pooled };
  },
};

/** rows x (d_1 + d_2 + ...) from row-major [rows, d_k] blocks, zero-filled up to `width`. */
function concatLastAxis(rows: number, states: readonly { d: number; h: Float32Array }[], width: number): Float32Array {
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    let o = r * width;
    for (const { d, h } of states) {
      out.set(h.subarray(r * d, (r + 1) * d), o);
      o += d;
    }
  }
  return out;
}

const RECIPES: Record<string, ConditioningRecipe> = {
  StableDiffusionPipeline: SINGLE,
  StableDiffusionXLPipeline: SDXL,
  FluxPipeline: FLUX,
  StableDiffusion3Pipeline: SD3,
};

/** The recipe of a pipeline class; bare models and other single-encoder pipelines use the SD recipe. */
export function recipeFor(pipeline: string): ConditioningRecipe {
  return RECIPES[pipeline] ?? SINGLE;
}

/** What a pipeline's UNet will be fed, from JSON files only (checked before any weight is loaded). */
export interface ConditioningShape {
  pipeline: string;
  width: number; // prompt_embeds [n, T, width]
  pooledWidth: number; // pooled_prompt_embeds [n, pooledWidth]; 0: the UNet takes none
  /** diffusers' force_zeros_for_empty_prompt: an absent negative prompt is all-zero conditioning. */
  forceZeros: boolean;
  defaultSize: number;
}

export function describeConditioning(dir: string): ConditioningShape {
  const layout = resolveModelDir(dir);
  const recipe = recipeFor(layout.pipeline);
  const fz = layout.config['force_zeros_for_empty_prompt'];
  if (fz !== undefined && typeof fz !== 'boolean') throw new ItdError('config', `${dir}/model_index.json: field 'force_zeros_for_empty_prompt' must be true or false`, { file: `${dir}/model_index.json`, field: 'force_zeros_for_empty_prompt' });
  return { pipeline: layout.pipeline, ...recipe.embedShape(layout.parts.map(partShape)), forceZeros: fz ?? recipe.forceZerosDefault, defaultSize: recipe.defaultSize };
}

export interface TextConditioning {
  readonly layout: ModelLayout;
  readonly recipe: ConditioningRecipe;
  /** Slot order. */
  readonly parts: readonly EncoderPart[];
  /** The part ItD works on unless --encoder says otherwise. */
  readonly defaultPart: EncoderPart;
  release(): Promise<void>;
}

/** The directory's layout with the parts its pipeline class needs (reads JSON only). */
export function resolveModelDir(dir: string): ModelLayout {
  return layoutModelDir(dir, (p) => recipeFor(p).slots);
}

export async function loadTextConditioning(dir: string, opts: PartLoadOptions = {}): Promise<TextConditioning> {
  const layout = resolveModelDir(dir);
  const recipe = recipeFor(layout.pipeline);
  const parts: EncoderPart[] = [];
  for (const src of layout.parts) parts.push(await loadPart(src, opts));
  const defaultPart = pickPart(parts, recipe.defaultPart, undefined, layout);
  return { layout, recipe, parts, defaultPart, release: async () => { await Promise.all(parts.map((p) => p.encoder.release())); } };
}

export interface PartChoice {
  /** `--encoder`: the part's 1-based number ('1', '2') or component name ('text_encoder_2'); default: the recipe's. */
  encoder?: string | undefined;
}

/** Loads only the chosen encoder part of a model directory (what every ItD step works on). */
export async function loadTextModel(dir: string, opts: PartLoadOptions & PartChoice = {}): Promise<EncoderPart> {
  return loadPart(resolvePart(dir, opts.encoder), opts);
}

/**
 * The part an ItD step works on, given `--encoder` (if any) and the hookpoint its SAE or eraser
 * was trained on (if any): the hookpoint's part when --encoder is absent, else the pipeline's
 * default; an --encoder that contradicts the hookpoint, or a hookpoint naming a part the
 * directory lacks, is an error naming both.
 */
export function resolveItdPart(dir: string, encoder: string | undefined, hookpoint: string | undefined, what = 'the SAE'): PartSource {
  const layout = resolveModelDir(dir);
  const trained = hookpointPart(hookpoint);
  if (trained !== undefined && !layout.parts.some((p) => p.name === trained)) {
    throw new ItdError('mismatch', `${what} was trained on ${trained} (hookpoint ${hookpoint}), which ${dir} (${layout.pipeline}) does not have; its encoders are ${layout.parts.map((p) => p.name).join(', ')}`, { file: dir, field: 'hookpoint' });
  }
  const part = pickPart(layout.parts, trained ?? recipeFor(layout.pipeline).defaultPart, encoder, layout);
  if (trained !== undefined && part.name !== trained) {
    throw new ItdError('mismatch', `--encoder ${encoder} selects ${part.name}, but ${what} was trained on ${trained} (hookpoint ${hookpoint})`, { field: 'encoder', hint: `drop --encoder or pass --encoder ${layout.parts.findIndex((p) => p.name === trained) + 1}` });
  }
  return part;
}

/** Where the chosen part's files are (reads JSON only). */
export function resolvePart(dir: string, encoder?: string): PartSource {
  const layout = resolveModelDir(dir);
  return pickPart(layout.parts, recipeFor(layout.pipeline).defaultPart, encoder, layout);
}

/** The part (loaded or not) that an `--encoder` value names. */
export function pickPart<T extends { name: string }>(parts: readonly T[], defaultName: string, which: string | undefined, layout: ModelLayout): T {
  const want = which ?? defaultName;
  const byNumber = /^[1-9]$/.test(want) ? parts[Number(want) - 1] : undefined;
  const part = byNumber ?? parts.find((p) => p.name === want) ?? (which === undefined ? parts[0] : undefined);
  if (!part) {
    const choices = parts.map((p, i) => `${i + 1} (${p.name})`).join(', ');
    throw new ItdError('usage', `--encoder ${which}: ${layout.dir} (${layout.pipeline}) has encoder ${choices}`, { field: 'encoder', hint: `pass --encoder ${parts.map((_, i) => i + 1).join('|')}` });
  }
  return part;
}

export interface ConditioningOptions {
  batch?: number;
  /** diffusers' clip_skip (0 or undefined: the pipeline's default layer). */
  clipSkip?: number;
  /** Extra hidden_states to return, per part name. */
  hiddenStates?: ReadonlyMap<string, readonly number[]>;
  /** Edits of the residual stream, per part name (an eraser's deactivation). */
  edits?: ReadonlyMap<string, { layer: number; fn: EditFn }>;
  progress?: boolean;
}

export interface ConditioningEncoding {
  embeds: PipelineEmbeds;
  /** Every part's own encoding, in slot order (input_ids, last_hidden_state, pooled, hidden states). */
  parts: PromptEncoding[];
}

/** Runs every part on the prompts and combines them as the pipeline does. */
export async function encodeConditioning(cond: TextConditioning, prompts: string[], opts: ConditioningOptions = {}): Promise<ConditioningEncoding> {
  const clipSkip = opts.clipSkip ?? 0;
  const maxSkip = Math.min(...cond.parts.map((p) => p.encoder.numLayers)) - 1;
  if (!Number.isInteger(clipSkip) || clipSkip < 0 || clipSkip >= maxSkip) {
    throw new ItdError('usage', `clip_skip ${clipSkip} must be an integer in 0..${maxSkip - 1}`, { field: 'clip-skip' });
  }
  const need = cond.recipe.hiddenStates(cond.parts, clipSkip);
  const parts: PromptEncoding[] = [];
  for (const [i, part] of cond.parts.entries()) {
    const hs = [...new Set([...need[i]!, ...(opts.hiddenStates?.get(part.name) ?? [])])];
    const edit = opts.edits?.get(part.name);
    parts.push(await encodePrompts(part, prompts, { hiddenStates: hs, ...(opts.batch ? { batch: opts.batch } : {}), ...(edit ? { edit } : {}), ...(opts.progress ? { progress: true } : {}) }));
  }
  return { embeds: await cond.recipe.combine(cond.parts, parts, clipSkip), parts };
}

/**
 * An encoding under diffusers' names, as `itd encode` writes it. One part: input_ids,
 * last_hidden_state, pooler_output, hidden_states.{i}; several: input_ids_{k}, hidden_states_{k}.{i}
 * (k = 1-based part number). Always prompt_embeds, and pooled_prompt_embeds where the UNet takes it.
 * Only the hidden states in `requested` are written (the recipe's own are in prompt_embeds).
 */
export function conditioningTensors(enc: ConditioningEncoding, requested: ReadonlyMap<string, readonly number[]>, names: readonly string[]): Record<string, TensorIn> {
  const { embeds, parts } = enc;
  const out: Record<string, TensorIn> = {};
  const single = parts.length === 1;
  parts.forEach((r, k) => {
    const suffix = single ? '' : `_${k + 1}`;
    out[`input_ids${suffix}`] = { dtype: 'I32', shape: [r.n, r.t], data: r.inputIds };
    if (single) {
      out['last_hidden_state'] = { dtype: 'F32', shape: [r.n, r.t, r.d], data: r.lastHiddenState };
      out['pooler_output'] = { dtype: 'F32', shape: [r.n, r.p], data: r.pooler };
    }
    for (const i of requested.get(names[k]!) ?? []) out[`hidden_states${suffix}.${i}`] = { dtype: 'F32', shape: [r.n, r.t, r.d], data: r.hiddenStates.get(i)! };
  });
  out['prompt_embeds'] = { dtype: 'F32', shape: [embeds.n, embeds.seq, embeds.width], data: embeds.promptEmbeds };
  if (embeds.pooledPromptEmbeds) out['pooled_prompt_embeds'] = { dtype: 'F32', shape: [embeds.n, embeds.pooledWidth], data: embeds.pooledPromptEmbeds };
  return out;
}
