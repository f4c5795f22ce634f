/**
 * Training hyper-parameters, kept apart from the mechanism (as sparsify does). `resolveTrainConfig`
 * turns user overrides into a complete config once the data size and width are known; the resolved
 * config is what checkpoints and cfg.json record.
 */
import { Type, type Static } from '../io/typebox.js';
import { configError } from '../errors.js';
import { checkFile } from '../io/schema.js';

const int = (minimum: number, description: string, extra: { maximum?: number; default?: number } = {}) => Type.Integer({ minimum, description, ...extra });
const beta = (description: string, dflt: number) => Type.Number({ minimum: 0, exclusiveMaximum: 1, description, default: dflt });

/**
 * The training config (what `itd train`'s flags set, checkpoints store and cfg.json's `training`
 * records), one TypeBox schema: its descriptions are the CLI help, its defaults TRAIN_DEFAULTS.
 * Optional fields default from the data size and width (resolveTrainConfig).
 */
export const TrainConfigSchema = Type.Object({
  latents: int(1, 'number of latents'),
  k: int(1, 'active latents per token (per token on average for batchtopk)'),
  activation: Type.Union([Type.Literal('topk'), Type.Literal('batchtopk')], { default: 'topk', description: 'topk, or batchtopk (learns an inference threshold)' }),
  tokens: Type.Optional(int(1, 'training tokens; more than the data cycles epochs (default: every row once)')),
  batch: int(1, 'tokens per step', { default: 4096 }),
  seed: int(0, 'random seed (same seed, same machine: bit-identical weights)', { maximum: 2 ** 32 - 1, default: 0 }),
  lr: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'learning rate (default 2e-4 / sqrt(latents / 2^14), sparsify\'s scaling)' })),
  warmupSteps: Type.Optional(int(0, 'linear warm-up steps (default min(1000, 5% of the run))')),
  adamBeta1: beta('Adam beta1', 0.9),
  adamBeta2: beta('Adam beta2', 0.999),
  adamEps: Type.Number({ exclusiveMinimum: 0, description: 'Adam epsilon', default: 6.25e-10 }),
  auxCoef: Type.Number({ minimum: 0, description: 'AuxK loss coefficient (OpenAI: 1/32)', default: 1 / 32 }),
  kAux: Type.Optional(int(1, 'AuxK latents per token (default min(256, D/2))')),
  deadTokens: Type.Optional(int(1, 'a latent is dead after this many tokens without firing (default min(10M, tokens/4))')),
  medianSample: int(1, 'rows sampled for the geometric-median b_pre init', { default: 32768 }),
  // dictionary_learning uses 0.999 over 100k+ steps; runs here are often a few hundred steps, so the window is ~10 steps.
  thresholdBeta: beta('BatchTopK threshold EMA: thr <- beta thr + (1 - beta) min(selected activation)', 0.9),
  forwardChunk: int(1, 'rows per encoder onnxruntime run (bounds the [rows, n] buffer)', { default: 1024 }),
  logEvery: int(1, 'steps between log lines', { default: 50 }),
  checkpointEvery: int(1, 'steps between checkpoints', { default: 500 }),
});
export type TrainConfig = Static<typeof TrainConfigSchema>;
export type ResolvedTrainConfig = Required<TrainConfig>;

/** A config field's description and default, as the CLI's help shows them. */
export function trainFieldDoc(field: keyof TrainConfig): { help: string; default?: string } {
  const s = TrainConfigSchema.properties[field] as { description?: string; default?: unknown };
  return { help: s.description ?? field, ...(s.default !== undefined ? { default: String(s.default) } : {}) };
}

/** The schema's defaults: every field but the required ones and those resolved from the data. */
export const TRAIN_DEFAULTS = Object.fromEntries(Object.entries(TrainConfigSchema.properties).flatMap(([k, v]) => {
  const d = (v as { default?: unknown }).default;
  return d === undefined ? [] : [[k, d]];
})) as Omit<TrainConfig, 'latents' | 'k'>;

/** The SAE size `itd train` builds unless told otherwise (the official ItD SAE's: 16384 latents, k 32). */
export const SAE_SIZE_DEFAULTS: Pick<TrainConfig, 'latents' | 'k'> = { latents: 16384, k: 32 };

const MAX_DEAD_TOKENS = 10_000_000;
const MAX_WARMUP = 1000;

/**
 * Fills every default from the data (rows, D) and checks types and ranges; errors name `source`
 * (the flags, or the checkpoint a config was read from) and the field.
 */
export function resolveTrainConfig(
  cfg: Partial<TrainConfig> & Pick<TrainConfig, 'latents' | 'k'>, rows: number, D: number, source = 'train config',
): ResolvedTrainConfig {
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw configError(source, '(top level)', `must be an object, got ${JSON.stringify(cfg)}`);
  const c = { ...TRAIN_DEFAULTS, ...stripUndefined(cfg), latents: cfg.latents, k: cfg.k };
  const batch = Math.min(c.batch, rows);
  const tokens = c.tokens ?? rows;
  const steps = Math.max(1, Math.ceil(tokens / batch));
  const out: ResolvedTrainConfig = {
    ...c,
    batch,
    tokens,
    lr: c.lr ?? 2e-4 / Math.sqrt(c.latents / 2 ** 14),
    warmupSteps: c.warmupSteps ?? Math.min(MAX_WARMUP, Math.floor(0.05 * steps)),
    kAux: c.kAux ?? Math.min(256, Math.floor(D / 2)),
    deadTokens: c.deadTokens ?? Math.min(MAX_DEAD_TOKENS, Math.floor(tokens / 4)),
  };
  checkFile(Type.Required(TrainConfigSchema), out, source);
  // Bounds that depend on another field.
  for (const name of ['k', 'kAux'] as const) {
    if (out[name] > out.latents) throw configError(source, name, `must be an integer in [1, ${out.latents}] (at most latents), got ${out[name]}`);
  }
  return out;
}

export function totalSteps(cfg: ResolvedTrainConfig): number {
  return Math.max(1, Math.ceil(cfg.tokens / cfg.batch));
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
