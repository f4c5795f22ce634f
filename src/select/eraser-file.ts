/**
 * The eraser file (ERASER.json): everything needed to deactivate a set of concepts with one SAE
 * on one model — the selected latents per concept, the scale and mode of the edit, and the
 * classifier threshold with how it was calibrated. Editable without retraining anything.
 */
import crypto from 'node:crypto';
import { configError, ItdError } from '../errors.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { asObject, isJsonObject } from '../io/fields.js';
import { readJsonFile } from '../io/files.js';
import type { ScoreStat } from '../erase/gate.js';

export type EraseMode = 'official' | 'residual';

export interface FeatureStat {
  latent: number;
  max: number; // max activation over the concept's prompts and tokens
  mean: number; // mean over the concept's prompts of the per-prompt max
  prompts: number; // how many of the concept's prompts put it in their top-K_sel
}

export interface ConceptEntry {
  name: string;
  prompts: string[];
  features: FeatureStat[];
  /** Latents the concept's prompts selected that retain prompts also use (not erased). */
  removedByRetain: { latent: number; retainPrompts: number[] }[];
  /** Latents the concept's prompts selected that are common in the neutral corpus (not erased). */
  removedAsCommon?: number[];
  /**
   * Per-concept gate (format itd-eraser/2): this concept's own score (over its own features)
   * is divided by scoreNorm, the prompt's score is the largest such ratio, so the concept's own
   * threshold is threshold * scoreNorm. Absent on every concept: one score over the union of
   * features against one threshold (itd-eraser/1, the official rule).
   */
  scoreNorm?: number;
}

export interface Calibration {
  method: 'recall' | 'fpr' | 'manual';
  target: number; // the recall or FPR asked for
  auroc: number;
  tpr: number;
  fpr: number;
  nTarget: number;
  nOther: number;
  date: string;
  /** Set when concepts changed after calibration. */
  stale?: boolean;
  /** FPR goals with a confidence: the bound's level, and whether the other prompts were enough to prove it. */
  confidence?: number;
  guaranteed?: boolean;
}

/** itd-eraser/2 only adds ConceptEntry.scoreNorm (per-concept thresholds); files without it stay /1. */
export type EraserFormat = 'itd-eraser/1' | 'itd-eraser/2';

export interface EraserSpec {
  format: EraserFormat;
  modelId: string;
  saeId: string;
  layer: number; // encoder.layers[layer] output is edited (hidden_states[layer+1])
  kSel: number;
  scale: number; // multiplier applied to the selected latents (official: -8)
  mode: EraseMode;
  /** Erase a prompt iff its score >= threshold; null before calibration. */
  threshold: number | null;
  calibration: Calibration | null;
  /** Gate: a selected latent counts as active on a token when its pre-activation exceeds this. */
  activationThreshold: number;
  concepts: ConceptEntry[];
  retain: { prompts: string[]; top: number[][] }; // each retain prompt's top-K_sel latents
  templates: string[];
  /** How per-token scores combine into a prompt's score; absent: 'mean' (the official rule). */
  scoreStat?: ScoreStat;
  /**
   * Specificity against a neutral corpus (absent: the official rule only): latents in the
   * top-K_sel of more than maxRate of `prompts` neutral prompts are never selected (`common`).
   */
  neutral?: { prompts: number; maxRate: number; common: number[] };
  /** 'name': features were read from the concept name's first token on (absent: every token). */
  span?: 'prompt' | 'name';
}

/** Union of the concepts' latents, ascending. */
export function erasedLatents(spec: EraserSpec): Int32Array {
  const s = new Set<number>();
  for (const c of spec.concepts) for (const f of c.features) s.add(f.latent);
  return Int32Array.from([...s].sort((a, b) => a - b));
}

/** True when the eraser has per-concept thresholds (see ConceptEntry.scoreNorm). */
export function perConceptGate(spec: EraserSpec): boolean {
  return spec.concepts.some((c) => c.scoreNorm !== undefined);
}

/** The concept's own threshold (null before calibration); without per-concept thresholds, the shared one. */
export function conceptThreshold(spec: EraserSpec, c: ConceptEntry): number | null {
  return spec.threshold === null ? null : spec.threshold * (perConceptGate(spec) ? (c.scoreNorm ?? Infinity) : 1);
}

/** Content hash of the settings that change behaviour (what `generate` records as the eraser id). */
export function eraserId(spec: EraserSpec): string {
  const key = { m: spec.modelId, s: spec.saeId, l: spec.layer, sc: spec.scale, mo: spec.mode, th: spec.threshold, a: spec.activationThreshold, f: [...erasedLatents(spec)], ...(spec.scoreStat ? { st: spec.scoreStat } : {}),
    ...(perConceptGate(spec) ? { no: spec.concepts.map((c) => c.scoreNorm ?? null) } : {}) };
  return crypto.createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 12);
}

export function saveEraser(path: string, spec: EraserSpec): void {
  const out: EraserSpec = { ...spec, format: perConceptGate(spec) ? 'itd-eraser/2' : 'itd-eraser/1' };
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
  const o = asObject(raw, source, '') as Partial<EraserSpec>;
  const bad = (field: string, msg: string): never => {
    throw configError(source, field, msg);
  };
  if (o.format !== 'itd-eraser/1' && o.format !== 'itd-eraser/2') bad('format', "must be 'itd-eraser/1' or 'itd-eraser/2' (not an itd eraser?)");
  if (typeof o.modelId !== 'string') bad('modelId', `must be a string, got ${JSON.stringify(o.modelId)}`);
  if (typeof o.saeId !== 'string') bad('saeId', `must be a string, got ${JSON.stringify(o.saeId)}`);
  if (!Number.isInteger(o.layer) || o.layer! < 0) bad('layer', `must be a non-negative integer, got ${JSON.stringify(o.layer)}`);
  if (!Number.isInteger(o.kSel) || o.kSel! < 1) bad('kSel', `must be a positive integer, got ${JSON.stringify(o.kSel)}`);
  if (typeof o.scale !== 'number' || !Number.isFinite(o.scale)) bad('scale', `must be a finite number, got ${JSON.stringify(o.scale)}`);
  if (o.mode !== 'official' && o.mode !== 'residual') bad('mode', `must be 'official' or 'residual', got ${JSON.stringify(o.mode)}`);
  if (o.threshold !== null && (typeof o.threshold !== 'number' || !Number.isFinite(o.threshold))) bad('threshold', 'must be a finite number or null');
  if (typeof o.activationThreshold !== 'number' || !Number.isFinite(o.activationThreshold)) bad('activationThreshold', 'must be a finite number');
  if (!Array.isArray(o.concepts)) bad('concepts', 'must be an array');
  o.concepts!.forEach((c, i) => {
    const field = `concepts[${i}]`;
    if (!isJsonObject(c) || typeof c.name !== 'string' || !Array.isArray(c.features)) bad(field, 'needs a string name and a features array');
    const nameProblem = conceptNameProblem(c.name);
    if (nameProblem) bad(`${field}.name`, nameProblem);
    if (c.scoreNorm !== undefined && !(typeof c.scoreNorm === 'number' && c.scoreNorm > 0 && Number.isFinite(c.scoreNorm))) bad(`${field}.scoreNorm`, `must be a positive finite number, got ${JSON.stringify(c.scoreNorm)}`);
    if (c.scoreNorm !== undefined && o.format === 'itd-eraser/1') bad(`${field}.scoreNorm`, "per-concept thresholds need format 'itd-eraser/2'");
    c.features.forEach((f, j) => {
      if (!isJsonObject(f) || !Number.isInteger(f.latent) || f.latent < 0) bad(`${field}.features[${j}].latent`, `must be a non-negative integer, got ${JSON.stringify(isJsonObject(f) ? f.latent : f)}`);
    });
  });
  if (!isJsonObject(o.retain) || !Array.isArray(o.retain.prompts) || !Array.isArray(o.retain.top)) bad('retain', 'must hold prompts and top arrays');
  if (o.scoreStat !== undefined && o.scoreStat !== 'mean' && o.scoreStat !== 'max') bad('scoreStat', `must be 'mean' or 'max', got ${JSON.stringify(o.scoreStat)}`);
  if (o.span !== undefined && o.span !== 'prompt' && o.span !== 'name') bad('span', `must be 'prompt' or 'name', got ${JSON.stringify(o.span)}`);
  if (o.neutral !== undefined && (!isJsonObject(o.neutral) || !Number.isInteger(o.neutral.prompts) || typeof o.neutral.maxRate !== 'number' || !Array.isArray(o.neutral.common))) {
    bad('neutral', 'must hold prompts (integer), maxRate (number) and common (latent ids)');
  }
  return o as EraserSpec;
}
