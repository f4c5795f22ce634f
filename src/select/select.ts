/**
 * Interpret + select (ItD): a prompt's features are the top-K_sel latents by their maximum
 * activation over the prompt's tokens (BOS excluded, EOS kept, padding never seen). A concept's
 * features are the union over its prompts, minus every latent some retain prompt selects; the
 * eraser erases the union over concepts.
 */
import { ItdError } from '../errors.js';
import { Progress, type ProgressFactory } from '../io/progress.js';
import { concatRows, contentIds, tokenRowBatches, type TextModel, type TokenRows } from '../encoder/index.js';
import type { Sae } from '../sae/index.js';
import type { ScoreStat } from '../erase/gate.js';
import { checkConceptName, type ConceptEntry, type EraseMode, type EraserSpec, type FeatureStat } from './eraser-file.js';

/** Per-token SAE codes of one prompt's real tokens (CLIP: positions 1..len-1; T5: 0..len-1). */
export interface PromptCodes {
  prompt: string;
  tokens: number[]; // token ids of the real tokens
  indices: Int32Array; // [tokens, k] active latents per token
  values: Float32Array; // [tokens, k]
  k: number;
  /** First row that counts for selection (default 0); see conceptSpans. */
  from?: number;
}

/** Where a concept's features are read: every token (official) or from the name's first token on. */
export type SelectSpan = 'prompt' | 'name';

/**
 * Restricts each prompt's codes to the rows from the concept name's first token on. The encoder
 * is causal, so tokens before the name carry nothing of the concept: their latents are the
 * template's and would only be selected by accident. Prompts not containing the name keep every row.
 */
export function conceptSpans(codes: PromptCodes[], nameIds: ArrayLike<number>): PromptCodes[] {
  const first = (toks: number[]) => {
    for (let i = 0; i + nameIds.length <= toks.length; i++) {
      let ok = true;
      for (let j = 0; j < nameIds.length && ok; j++) ok = toks[i + j] === nameIds[j];
      if (ok) return i;
    }
    return 0;
  };
  return nameIds.length === 0 ? codes : codes.map((c) => ({ ...c, from: first(c.tokens) }));
}

/** The name's token ids as they appear inside a prompt (no BOS/EOS). */
export function nameTokens(model: TextModel, name: string): Int32Array {
  return contentIds(model, name);
}

/** Block-`layer` rows of prompts' real tokens (the encoder's one extraction primitive), computed once and shared (growing, selection). */
export type LayerRows = TokenRows & { prompts: string[] };

/** The rows of every prompt, batch by batch (progress per batch). */
export async function layerRows(model: TextModel, layer: number, prompts: string[], batch = 32, progress?: { factory: ProgressFactory; label: string }): Promise<LayerRows> {
  const bar = progress?.factory({ label: progress.label, total: prompts.length, unit: 'prompts' });
  const parts: TokenRows[] = [];
  for await (const b of tokenRowBatches(model, prompts, layer, { batch })) {
    parts.push(b);
    bar?.tick(b.n);
  }
  bar?.done();
  return { ...concatRows(parts, model.config.hiddenSize), prompts };
}

/** SAE codes of every prompt's rows (one SAE call per `batch` prompts). */
export async function rowCodes(sae: Sae, rows: LayerRows, batch = 32): Promise<PromptCodes[]> {
  if (sae.d !== rows.d) throw new ItdError('mismatch', `SAE input width ${sae.d} does not match the model's hidden size ${rows.d}`, { field: 'sae' });
  const out: PromptCodes[] = [];
  for (let s = 0; s < rows.prompts.length; s += batch) {
    const e = Math.min(s + batch, rows.prompts.length);
    const [a, b] = [rows.offsets[s]!, rows.offsets[e]!];
    const z = await sae.encode(rows.x.subarray(a * rows.d, b * rows.d), b - a);
    const k = z.k;
    for (let p = s; p < e; p++) {
      const [from, to] = [rows.offsets[p]! - a, rows.offsets[p + 1]! - a];
      out.push({ prompt: rows.prompts[p]!, tokens: Array.from(rows.tokenIds.subarray(rows.offsets[p]!, rows.offsets[p + 1]!)), indices: z.indices.slice(from * k, to * k), values: z.values.slice(from * k, to * k), k });
    }
  }
  return out;
}

/** Runs blocks 0..layer on each prompt and SAE-encodes its real tokens. */
export async function promptCodes(model: TextModel, sae: Sae, layer: number, prompts: string[], batch = 32, label?: string): Promise<PromptCodes[]> {
  if (sae.d !== model.config.hiddenSize) throw new ItdError('mismatch', `SAE input width ${sae.d} does not match the model's hidden size ${model.config.hiddenSize}`, { field: 'sae' });
  const progress = label ? { factory: (o: Parameters<ProgressFactory>[0]) => new Progress(o), label } : undefined;
  return rowCodes(sae, await layerRows(model, layer, prompts, batch, progress), batch);
}

/** Latent -> max activation over the prompt's tokens. */
export function maxOverTokens(c: PromptCodes): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = (c.from ?? 0) * c.k; i < c.indices.length; i++) {
    const v = c.values[i]!;
    if (v <= 0) continue; // ReLU zeros are not firing
    const l = c.indices[i]!;
    if (v > (m.get(l) ?? 0)) m.set(l, v);
  }
  return m;
}

/** The prompt's top-K_sel latents by max activation (ties broken by lower latent id). */
export function topFeatures(c: PromptCodes, kSel: number): { latent: number; max: number }[] {
  return [...maxOverTokens(c)]
    .map(([latent, max]) => ({ latent, max }))
    .sort((a, b) => b.max - a.max || a.latent - b.latent)
    .slice(0, kSel);
}

/**
 * Latents in the top-K_sel of more than `maxRate` of these prompts' lists: what a neutral corpus
 * uses too often for the latent to stand for any one concept (maxRate 0: any use, the official rule).
 */
export function commonLatents(top: number[][], maxRate: number): number[] {
  const uses = new Map<number, number>();
  for (const t of top) for (const l of t) uses.set(l, (uses.get(l) ?? 0) + 1);
  const limit = maxRate * top.length;
  return [...uses].filter(([, u]) => u > limit).map(([l]) => l).sort((a, b) => a - b);
}

/**
 * Concept features: union over its prompts' top-K_sel, minus the retain set and minus `common`
 * (latents a neutral corpus uses too often); with statistics.
 */
export function conceptEntry(name: string, codes: PromptCodes[], kSel: number, retainTop: number[][], common: ReadonlySet<number> = new Set()): ConceptEntry {
  const retainBy = new Map<number, number[]>();
  retainTop.forEach((top, i) => top.forEach((l) => retainBy.set(l, [...(retainBy.get(l) ?? []), i])));
  const stats = new Map<number, { max: number; sum: number; prompts: number }>();
  for (const c of codes) {
    for (const { latent, max } of topFeatures(c, kSel)) {
      const s = stats.get(latent) ?? { max: 0, sum: 0, prompts: 0 };
      stats.set(latent, { max: Math.max(s.max, max), sum: s.sum + max, prompts: s.prompts + 1 });
    }
  }
  const features: FeatureStat[] = [];
  const removedByRetain: ConceptEntry['removedByRetain'] = [];
  const removedAsCommon: number[] = [];
  for (const [latent, s] of [...stats].sort((a, b) => b[1].max - a[1].max)) {
    const takers = retainBy.get(latent);
    if (takers) removedByRetain.push({ latent, retainPrompts: takers });
    else if (common.has(latent)) removedAsCommon.push(latent);
    else features.push({ latent, max: s.max, mean: s.sum / s.prompts, prompts: s.prompts });
  }
  return { name, prompts: codes.map((c) => c.prompt), features, removedByRetain, ...(common.size > 0 ? { removedAsCommon } : {}) };
}

/** Throws when retain subtraction left a concept with nothing to erase, naming who took its latents. */
export function assertNotEmpty(c: ConceptEntry, retainPrompts: string[]): void {
  if (c.features.length > 0) return;
  const takers = [...new Set(c.removedByRetain.flatMap((r) => r.retainPrompts))].slice(0, 5).map((i) => JSON.stringify(retainPrompts[i]));
  const common = c.removedAsCommon?.length ?? 0;
  throw new ItdError('quality', `concept '${c.name}' has no features left after selection: ${c.removedByRetain.length} of its latents are also used by retain prompts` +
    `${takers.length ? ` (e.g. ${takers.join(', ')})` : ''}${common ? ` and ${common} are common in the neutral corpus` : ''}`, {
    field: c.name,
    hint: 'use fewer/other retain prompts, a larger --k-sel, a higher --max-neutral-rate, or an SAE trained with this concept (itd eraser create without --sae)',
  });
}

export const DEFAULT_TEMPLATES = [
  'a photo of {}',
  'a portrait of {}',
  'an image of {}',
  'a painting of {}',
  '{} in a picture',
];

/** Expands a bare concept name through "{}"-templates. */
export function expandConcept(name: string, templates: string[] = DEFAULT_TEMPLATES): string[] {
  for (const t of templates) if (!t.includes('{}')) throw new Error(`template '${t}' has no {} placeholder`);
  return templates.map((t) => t.replaceAll('{}', name));
}

export interface BuildOptions {
  targets: { name: string; prompts: string[] }[];
  retain: string[];
  kSel: number;
  scale: number;
  mode: EraseMode;
  layer: number;
  templates?: string[];
  saeId: string;
  /** Keep concepts whose features all went to retain prompts (with a warning) instead of failing. */
  allowEmpty?: boolean;
  /** Specificity against neutral prompts: their common latents are never selected (see commonLatents); `rows`: their block outputs, when already computed. */
  neutral?: { prompts: string[]; maxRate: number; rows?: LayerRows };
  scoreStat?: ScoreStat;
  /** Which tokens of a concept's prompts select its features (default 'prompt', the official rule). */
  span?: SelectSpan;
  /** Warnings (e.g. a concept left empty under allowEmpty); default: none printed. */
  warn?: (message: string) => void;
}

/** Builds an uncalibrated eraser (threshold null) from target concepts and retain prompts. */
export async function buildEraser(model: TextModel, sae: Sae, opts: BuildOptions): Promise<EraserSpec> {
  if (opts.targets.length === 0) throw new ItdError('usage', 'eraser build: no target concepts given');
  if (!Number.isFinite(opts.scale)) throw new Error(`eraser build: scale must be a finite number, got ${opts.scale}`);
  if (!Number.isInteger(opts.kSel) || opts.kSel < 1) throw new Error(`eraser build: --k-sel must be a positive integer, got ${opts.kSel}`);
  for (const t of opts.targets) {
    checkConceptName(t.name);
    if (t.prompts.length === 0) throw new Error(`eraser build: concept '${t.name}' has no prompts`);
  }
  const retainCodes = await promptCodes(model, sae, opts.layer, opts.retain, 32, opts.retain.length > 64 ? 'retain' : undefined);
  const retainTop = retainCodes.map((c) => topFeatures(c, opts.kSel).map((f) => f.latent));
  const neutralCodes = !opts.neutral ? [] : opts.neutral.rows ? await rowCodes(sae, opts.neutral.rows) : await promptCodes(model, sae, opts.layer, opts.neutral.prompts, 32);
  const common = opts.neutral ? commonLatents(neutralCodes.map((c) => topFeatures(c, opts.kSel).map((f) => f.latent)), opts.neutral.maxRate) : [];
  const concepts: ConceptEntry[] = [];
  const targetCodes: PromptCodes[][] = [];
  for (const t of opts.targets) {
    const codes = await promptCodes(model, sae, opts.layer, t.prompts);
    targetCodes.push(opts.span === 'name' ? conceptSpans(codes, nameTokens(model, t.name)) : codes);
    const entry = conceptEntry(t.name, targetCodes.at(-1)!, opts.kSel, retainTop, new Set(common));
    if (opts.allowEmpty && entry.features.length === 0) opts.warn?.(`concept '${t.name}' has no features left after retain subtraction`);
    else assertNotEmpty(entry, opts.retain);
    concepts.push(entry);
  }
  return {
    format: 'itd-eraser/1',
    modelId: model.id,
    saeId: opts.saeId,
    layer: opts.layer,
    kSel: opts.kSel,
    scale: opts.scale,
    mode: opts.mode,
    threshold: null,
    calibration: null,
    activationThreshold: estimateActivationThreshold(sae, [...retainCodes, ...neutralCodes, ...targetCodes.flat()]),
    concepts,
    retain: { prompts: opts.retain, top: retainTop },
    templates: opts.templates ?? DEFAULT_TEMPLATES,
    ...(opts.scoreStat ? { scoreStat: opts.scoreStat } : {}),
    ...(opts.span === 'name' ? { span: 'name' as const } : {}),
    ...(opts.neutral ? { neutral: { prompts: opts.neutral.prompts.length, maxRate: opts.neutral.maxRate, common } } : {}),
  };
}

/**
 * The gate's activation threshold tau. BatchTopK SAEs have one. For TopK SAEs, a latent is active
 * when it ranks in its token's top k, i.e. when it exceeds that token's k-th largest value; tau is
 * the median of those k-th values over the build prompts' tokens, a per-SAE stand-in for it.
 */
export function estimateActivationThreshold(sae: Sae, codes: PromptCodes[]): number {
  if (sae.activation === 'batchtopk' && sae.threshold !== undefined) return sae.threshold;
  const kth: number[] = [];
  for (const c of codes) for (let r = 0; r < c.tokens.length; r++) kth.push(c.values[r * c.k + c.k - 1]!);
  if (kth.length === 0) throw new Error('cannot estimate the gate threshold: no tokens');
  kth.sort((a, b) => a - b);
  return Math.max(0, kth[kth.length >> 1]!);
}

/** Adds (or replaces) a concept in an existing eraser, reusing its stored retain sets. */
export async function addConcept(spec: EraserSpec, model: TextModel, sae: Sae, name: string, prompts: string[], allowEmpty = false): Promise<EraserSpec> {
  checkConceptName(name);
  const codes = await promptCodes(model, sae, spec.layer, prompts);
  const entry = conceptEntry(name, spec.span === 'name' ? conceptSpans(codes, nameTokens(model, name)) : codes, spec.kSel, spec.retain.top, new Set(spec.neutral?.common ?? []));
  if (!allowEmpty) assertNotEmpty(entry, spec.retain.prompts);
  return markStale({ ...spec, concepts: [...spec.concepts.filter((c) => c.name !== name), entry] });
}

export function removeConcept(spec: EraserSpec, name: string): EraserSpec {
  if (!spec.concepts.some((c) => c.name === name)) {
    throw new Error(`eraser has no concept '${name}' (it has: ${spec.concepts.map((c) => c.name).join(', ')})`);
  }
  return markStale({ ...spec, concepts: spec.concepts.filter((c) => c.name !== name) });
}

/** Edits keep the threshold usable but flag it: rerun `eraser calibrate` to restore its guarantee. */
function markStale(spec: EraserSpec): EraserSpec {
  return spec.calibration ? { ...spec, calibration: { ...spec.calibration, stale: true } } : spec;
}
