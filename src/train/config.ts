/**
 * Training hyper-parameters, kept apart from the mechanism (as sparsify does). `resolveTrainConfig`
 * turns user overrides into a complete config once the data size and width are known; the resolved
 * config is what checkpoints and cfg.json record.
 */
import { configError } from '../errors.js';
import type { SaeActivation } from '../sae/index.js';

export interface TrainConfig {
  /** Latents n. */
  latents: number;
  /** Active latents per row (per row on average for batchtopk). */
  k: number;
  activation: SaeActivation;
  /** Training tokens; default: every row once. More than the data cycles epochs. */
  tokens?: number;
  /** Rows per step. */
  batch: number;
  seed: number;
  /** Adam learning rate; default 2e-4 / sqrt(n / 2^14) (sparsify's scaling). */
  lr?: number;
  /** Linear warm-up steps; default min(1000, 5% of the run). */
  warmupSteps?: number;
  adamBeta1: number;
  adamBeta2: number;
  adamEps: number;
  /** AuxK loss coefficient (OpenAI: 1/32). */
  auxCoef: number;
  /** Dead latents used by AuxK per row; default min(256, D/2). */
  kAux?: number;
  /** A latent is dead after this many tokens without firing; default min(10M, tokens/4). */
  deadTokens?: number;
  /** Rows sampled for the geometric-median b_pre init. */
  medianSample: number;
  /**
   * BatchTopK threshold EMA: thr <- beta thr + (1 - beta) min(selected activation). dictionary_learning
   * uses 0.999 over 100k+ steps; runs here are often a few hundred steps, so the window is ~10 steps.
   */
  thresholdBeta: number;
  /** Rows per encoder onnxruntime run (bounds the [rows, n] buffer). */
  forwardChunk: number;
  logEvery: number;
  checkpointEvery: number;
}

export type ResolvedTrainConfig = Required<TrainConfig>;

export const TRAIN_DEFAULTS: Omit<TrainConfig, 'latents' | 'k'> = {
  activation: 'topk',
  batch: 4096,
  seed: 0,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamEps: 6.25e-10,
  auxCoef: 1 / 32,
  medianSample: 32768,
  thresholdBeta: 0.9,
  forwardChunk: 1024,
  logEvery: 50,
  checkpointEvery: 500,
};

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
  const int = (name: keyof TrainConfig, lo: number, hi = Number.MAX_SAFE_INTEGER) => {
    const v = out[name] as number;
    if (!Number.isInteger(v) || v < lo || v > hi) throw configError(source, name, `must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  };
  const pos = (name: keyof TrainConfig) => {
    const v = out[name] as number;
    if (!(Number.isFinite(v) && v > 0)) throw configError(source, name, `must be a positive number, got ${JSON.stringify(v)}`);
  };
  int('latents', 1);
  int('k', 1, out.latents);
  int('batch', 1);
  int('tokens', 1);
  int('seed', 0, 2 ** 32 - 1);
  int('warmupSteps', 0);
  int('kAux', 1, out.latents);
  int('deadTokens', 1);
  int('medianSample', 1);
  int('forwardChunk', 1);
  int('logEvery', 1);
  int('checkpointEvery', 1);
  pos('lr');
  pos('adamEps');
  for (const b of ['adamBeta1', 'adamBeta2', 'thresholdBeta'] as const) {
    if (!(typeof out[b] === 'number' && out[b] >= 0 && out[b] < 1)) throw configError(source, b, `must be a number in [0, 1), got ${JSON.stringify(out[b])}`);
  }
  if (!(typeof out.auxCoef === 'number' && out.auxCoef >= 0)) throw configError(source, 'auxCoef', `must be a number >= 0, got ${JSON.stringify(out.auxCoef)}`);
  if (out.activation !== 'topk' && out.activation !== 'batchtopk') {
    throw configError(source, 'activation', `must be "topk" or "batchtopk", got ${JSON.stringify(out.activation)}`);
  }
  return out;
}

export function totalSteps(cfg: ResolvedTrainConfig): number {
  return Math.max(1, Math.ceil(cfg.tokens / cfg.batch));
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
