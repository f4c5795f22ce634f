/**
 * Training to convergence and judging the result. A fixed one-pass default undertrains wide SAEs
 * badly (16384 latents on 184k tokens: 45 steps, FVU 0.67), so runs without an explicit token
 * count get a budget scaled to the SAE's width and stop early once the loss has flattened.
 */
import type { ActivationSet } from '../collect/dataset.js';
import type { ProgressFactory } from '../io/progress.js';
import type { Sae } from '../sae/index.js';
import { TRAIN_DEFAULTS, type TrainConfig } from './config.js';
import { Trainer, type StepStats, type TrainerOptions } from './trainer.js';

/** Tokens per latent in the default budget (16384 latents: ~1M tokens, the order sparsify uses per 16k). */
export const TOKENS_PER_LATENT = 64;
/** Below this many tokens per latent a run is too short for its width, whatever its loss says. */
export const MIN_TOKENS_PER_LATENT = 16;

/** Fewest optimiser steps in a default budget (small data with a large batch is still trained). */
export const MIN_STEPS = 300;

/** The default token budget for `latents` latents on `rows` rows at `batch` rows a step: at least one pass. */
export function defaultTokenBudget(latents: number, rows: number, batch: number): number {
  return Math.max(rows, TOKENS_PER_LATENT * latents, MIN_STEPS * Math.min(batch, rows));
}

/**
 * Plateau detector over the per-step training FVU: the mean over each window of `window` steps
 * must improve on the previous window's by at least `tol` (relative), or `patience` windows in a
 * row without that count as converged. Windows inside the warm-up never count.
 */
export class Convergence {
  private sum = 0;
  private n = 0;
  private prev = Infinity;
  private flat = 0;
  constructor(readonly window = 25, readonly tol = 0.005, readonly patience = 2, readonly warmupSteps = 0) {}

  /** Feeds one step; true once the loss has stopped improving. */
  observe(step: number, fvu: number): boolean {
    this.sum += fvu;
    this.n++;
    if (this.n < this.window) return false;
    const mean = this.sum / this.n;
    this.sum = 0;
    this.n = 0;
    if (step <= this.warmupSteps) {
      this.prev = mean;
      return false;
    }
    this.flat = this.prev - mean < this.tol * this.prev ? this.flat + 1 : 0;
    this.prev = mean;
    return this.flat >= this.patience;
  }
}

export interface SaeQuality {
  fvu: number;
  deadFraction: number;
  tokens: number;
  latents: number;
}

/** FVU above this: reconstructions too poor for features to mean much. */
export const MAX_USABLE_FVU = 0.3;
/** Dead fraction above this: most of the dictionary never fires. */
export const MAX_USABLE_DEAD = 0.5;

/** Human-readable problems with a trained SAE (empty when it looks usable), each with what to do. */
export function saeWarnings(q: SaeQuality): string[] {
  const w: string[] = [];
  if (!(q.fvu <= MAX_USABLE_FVU)) {
    w.push(`FVU ${q.fvu.toFixed(3)} > ${MAX_USABLE_FVU}: the SAE reconstructs its data poorly and its features are unreliable; train longer (--tokens), or use fewer --latents`);
  }
  if (q.deadFraction > MAX_USABLE_DEAD) {
    w.push(`${(100 * q.deadFraction).toFixed(1)}% of latents are dead: the dictionary is too wide for this data; collect more prompts or use fewer --latents`);
  }
  if (q.tokens < MIN_TOKENS_PER_LATENT * q.latents) {
    w.push(`the run saw ${q.tokens} tokens, under ${MIN_TOKENS_PER_LATENT} per latent for ${q.latents} latents: too short for this width; leave --tokens unset or give at least ${MIN_TOKENS_PER_LATENT * q.latents}`);
  }
  return w;
}

export interface FitOptions extends TrainerOptions {
  /** Called every `logEvery` steps with the window's mean FVU. */
  onLog?: (line: { step: number; tokens: number; fvu: number; deadFraction: number }) => void;
  progress?: ProgressFactory;
}

export interface FitResult {
  sae: Sae;
  steps: number;
  tokens: number;
  fvu: number; // mean training FVU of the last window
  deadFraction: number;
  converged: boolean;
}

/**
 * Trains a fresh SAE on `data`: `cfg.tokens` (default: the width-scaled budget) is an upper bound,
 * the run stops at the loss plateau. The caller releases the returned SAE.
 */
export async function fitSae(data: ActivationSet, cfg: Partial<TrainConfig> & Pick<TrainConfig, 'latents' | 'k'>, opts: FitOptions = {}): Promise<FitResult> {
  const tr = await Trainer.start(data, { ...cfg, tokens: cfg.tokens ?? defaultTokenBudget(cfg.latents, data.rows, cfg.batch ?? TRAIN_DEFAULTS.batch) }, opts);
  const conv = new Convergence(25, 0.005, 2, tr.cfg.warmupSteps);
  const bar = opts.progress?.({ label: 'train SAE', total: tr.totalSteps * tr.cfg.batch, unit: 'tokens' });
  let last: StepStats | undefined;
  let win = { sum: 0, n: 0 };
  let fvu = NaN;
  let converged = false;
  try {
    while (tr.step < tr.totalSteps && !converged) {
      last = await tr.trainStep();
      win = { sum: win.sum + last.fvu, n: win.n + 1 };
      converged = conv.observe(last.step, last.fvu);
      bar?.tick(tr.cfg.batch);
      if (last.step % tr.cfg.logEvery === 0 || converged || tr.step === tr.totalSteps) {
        fvu = win.sum / win.n;
        win = { sum: 0, n: 0 };
        opts.onLog?.({ step: last.step, tokens: last.tokens, fvu, deadFraction: last.deadFraction });
      }
    }
  } finally {
    bar?.done();
    await tr.releaseSessions();
  }
  return { sae: tr.sae, steps: tr.step, tokens: tr.tokens, fvu, deadFraction: last?.deadFraction ?? 0, converged };
}
