/**
 * The eraser file (ERASER.json): everything needed to deactivate a set of concepts with one SAE
 * on one model — the selected latents per concept, the scale and mode of the edit, and the
 * classifier threshold with how it was calibrated. Editable without retraining anything.
 */
import crypto from 'node:crypto';
import { configError, ItdError } from '../errors.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { readJsonFile } from '../io/files.js';
import { checkFile } from '../io/schema.js';
import { Type, type Static } from '../io/typebox.js';

const Latent = Type.Integer({ minimum: 0, description: 'SAE latent index' });

export const EraseModeSchema = Type.Union([Type.Literal('official'), Type.Literal('residual')]);
export type EraseMode = Static<typeof EraseModeSchema>;

export const FeatureStatSchema = Type.Object({
  latent: Latent,
  max: Type.Number({ description: "max activation over the concept's prompts and tokens" }),
  mean: Type.Number({ description: "mean over the concept's prompts of the per-prompt max" }),
  prompts: Type.Integer({ minimum: 0, description: "how many of the concept's prompts put it in their top-K_sel" }),
});
export type FeatureStat = Static<typeof FeatureStatSchema>;

export const ConceptEntrySchema = Type.Object({
  name: Type.String({ minLength: 1, description: 'concept name (well-formed Unicode, not only white space)' }),
  prompts: Type.Array(Type.String()),
  features: Type.Array(FeatureStatSchema),
  removedByRetain: Type.Array(Type.Object({ latent: Latent, retainPrompts: Type.Array(Type.Integer({ minimum: 0 })) }), {
    description: "latents the concept's prompts selected that retain prompts also use (not erased)",
  }),
  removedAsCommon: Type.Optional(Type.Array(Latent, { description: "latents the concept's prompts selected that are common in the neutral corpus (not erased)" })),
  editOnly: Type.Optional(Type.Array(FeatureStatSchema, {
    description: "itd-eraser/2: latents erased with `features` when the gate erases a prompt, but not scored by the gate (eraser create: the SAE's own latents selected for a concept that also has grown ones)",
  })),
  scoreNorm: Type.Optional(Type.Number({
    exclusiveMinimum: 0,
    description: "per-concept gate (itd-eraser/2): the concept's own score over its own features is divided by scoreNorm and the prompt's score is the largest such ratio, so its own threshold is threshold * scoreNorm; absent on every concept: one score over the union of features (itd-eraser/1, the official rule)",
  })),
});
export type ConceptEntry = Static<typeof ConceptEntrySchema>;

export const CalibrationSchema = Type.Object({
  method: Type.Union([Type.Literal('recall'), Type.Literal('fpr'), Type.Literal('manual')]),
  target: Type.Number({ description: 'the recall or FPR asked for' }),
  auroc: Type.Number(),
  tpr: Type.Number(),
  fpr: Type.Number(),
  nTarget: Type.Integer({ minimum: 0 }),
  nOther: Type.Integer({ minimum: 0 }),
  date: Type.String(),
  stale: Type.Optional(Type.Boolean({ description: 'set when concepts changed after calibration' })),
  confidence: Type.Optional(Type.Number({ description: "FPR goals with a confidence: the bound's level" })),
  guaranteed: Type.Optional(Type.Boolean({ description: 'whether the other prompts were enough to prove the FPR bound' })),
});
export type Calibration = Static<typeof CalibrationSchema>;

/** itd-eraser/2 only adds ConceptEntry.scoreNorm (per-concept thresholds) and editOnly; files without them stay /1. */
export const EraserFormatSchema = Type.Union([Type.Literal('itd-eraser/1'), Type.Literal('itd-eraser/2')]);
export type EraserFormat = Static<typeof EraserFormatSchema>;

/**
 * eraser.json (format itd-eraser/1 or /2). Fields are read by name and unknown ones are kept, so a new
 * optional setting is one `Type.Optional(...)` line here.
 */
export const EraserSchema = Type.Object({
  format: EraserFormatSchema,
  modelId: Type.String(),
  saeId: Type.String(),
  layer: Type.Integer({ minimum: 0, description: 'encoder.layers[layer] output is edited (hidden_states[layer+1])' }),
  kSel: Type.Integer({ minimum: 1, description: 'features selected per prompt (K_sel)' }),
  scale: Type.Number({ description: 'multiplier applied to the selected latents (official: -8)' }),
  mode: EraseModeSchema,
  threshold: Type.Union([Type.Number(), Type.Null()], { description: 'erase a prompt iff its score >= threshold; null before calibration' }),
  calibration: Type.Union([CalibrationSchema, Type.Null()]),
  activationThreshold: Type.Number({ description: "gate: a selected latent counts as active on a token when its pre-activation exceeds this" }),
  concepts: Type.Array(ConceptEntrySchema),
  retain: Type.Object({ prompts: Type.Array(Type.String()), top: Type.Array(Type.Array(Latent)) }, { description: "each retain prompt's top-K_sel latents" }),
  templates: Type.Array(Type.String()),
  scoreStat: Type.Optional(Type.Union([Type.Literal('mean'), Type.Literal('max')], { description: "how per-token scores combine into a prompt's score; absent: 'mean' (the official rule)" })),
  neutral: Type.Optional(Type.Object({ prompts: Type.Integer({ minimum: 0 }), maxRate: Type.Number(), common: Type.Array(Latent) }, {
    description: 'specificity against a neutral corpus: latents in the top-K_sel of more than maxRate of `prompts` neutral prompts are never selected (`common`)',
  })),
  span: Type.Optional(Type.Union([Type.Literal('prompt'), Type.Literal('name')], { description: "'name': features were read from the concept name's first token on (absent: every token)" })),
});
export type EraserSpec = Static<typeof EraserSchema>;

/** Union of the latents an erased prompt has deactivated (every concept's features and editOnly), ascending. */
export function erasedLatents(spec: EraserSpec): Int32Array {
  return sortedUnion(spec.concepts.flatMap((c) => [...c.features, ...(c.editOnly ?? [])]));
}

/** Union of the latents the gate scores (every concept's features), ascending. */
export function scoredLatents(spec: EraserSpec): Int32Array {
  return sortedUnion(spec.concepts.flatMap((c) => c.features));
}

function sortedUnion(features: FeatureStat[]): Int32Array {
  return Int32Array.from([...new Set(features.map((f) => f.latent))].sort((a, b) => a - b));
}

/** True when the eraser has per-concept thresholds (see ConceptEntry.scoreNorm). */
export function perConceptGate(spec: EraserSpec): boolean {
  return spec.concepts.some((c) => c.scoreNorm !== undefined);
}

/** True when the file needs itd-eraser/2: per-concept thresholds or edit-only latents. */
function needsV2(spec: EraserSpec): boolean {
  return perConceptGate(spec) || spec.concepts.some((c) => c.editOnly !== undefined);
}

/** The concept's own threshold (null before calibration); without per-concept thresholds, the shared one. */
export function conceptThreshold(spec: EraserSpec, c: ConceptEntry): number | null {
  return spec.threshold === null ? null : spec.threshold * (perConceptGate(spec) ? (c.scoreNorm ?? Infinity) : 1);
}

/** Content hash of the settings that change behaviour (what `generate` records as the eraser id). */
export function eraserId(spec: EraserSpec): string {
  const scored = scoredLatents(spec);
  const edited = erasedLatents(spec);
  const key = { m: spec.modelId, s: spec.saeId, l: spec.layer, sc: spec.scale, mo: spec.mode, th: spec.threshold, a: spec.activationThreshold, f: [...scored], ...(spec.scoreStat ? { st: spec.scoreStat } : {}),
    ...(edited.length > scored.length ? { e: [...edited] } : {}),
    ...(perConceptGate(spec) ? { no: spec.concepts.map((c) => c.scoreNorm ?? null) } : {}) };
  return crypto.createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 12);
}

export function saveEraser(path: string, spec: EraserSpec): void {
  const out: EraserSpec = { ...spec, format: needsV2(spec) ? 'itd-eraser/2' : 'itd-eraser/1' };
  validateEraser(out, path);
  writeJsonAtomic(path, out);
}

export function loadEraser(path: string): EraserSpec {
  return validateEraser(readJsonFile(path, 'eraser'), path);
}

/** Lone surrogates (what String.prototype.isWellFormed rejects; ES2024, beyond this lib target): with /u a valid pair is one code point, never \p{Cs}. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Why `name` cannot name a concept, or undefined: it must be well-formed Unicode (a lone surrogate
 * has no UTF-8 form, so no URL or file could name it again: the concept could never be removed)
 * with something besides white space.
 */
export function conceptNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `must be a string, got ${typeof name}`;
  if (LONE_SURROGATE.test(name)) return `${JSON.stringify(name)} is not well-formed Unicode (it holds a lone surrogate)`;
  if (name.trim() === '') return 'must not be empty or white space only';
  return undefined;
}

/** Throws a usage ItdError (field `name`) for a name conceptNameProblem refuses. */
export function checkConceptName(name: string): void {
  const problem = conceptNameProblem(name);
  if (problem) throw new ItdError('usage', `concept name ${problem}`, { field: 'name' });
}

export function validateEraser(raw: unknown, source: string): EraserSpec {
  const spec = checkFile(EraserSchema, raw, source, { format: 'not an itd eraser?' });
  spec.concepts.forEach((c, i) => {
    const problem = conceptNameProblem(c.name); // lone surrogates: beyond what a JSON Schema can say
    if (problem) throw configError(source, `concepts[${i}].name`, problem);
    if (c.scoreNorm !== undefined && spec.format === 'itd-eraser/1') throw configError(source, `concepts[${i}].scoreNorm`, "per-concept thresholds need format 'itd-eraser/2'");
    if (c.editOnly !== undefined && spec.format === 'itd-eraser/1') throw configError(source, `concepts[${i}].editOnly`, "edit-only latents need format 'itd-eraser/2'");
  });
  return spec;
}
