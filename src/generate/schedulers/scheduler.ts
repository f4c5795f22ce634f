/** The scheduler interface the pipeline drives, and what the discrete schedulers share. */
import type { TorchGenerator } from '../torch-rng.js';
import { alphasCumprod, type SchedulerConfig, type SchedulerName } from './config.js';
import { ItdError } from '../../errors.js';

/**
 * diffusers' scheduler protocol:
 *   setTimesteps(n); x = randn * initNoiseSigma;
 *   for t of timesteps: eps = unet(scaleModelInput(x, t), t); x = step(eps, t, x, rng)
 * Samples are flat float32 arrays (any shape; the math is elementwise). `step` never modifies
 * its inputs (multistep schedulers keep references to earlier model outputs).
 */
export interface Scheduler {
  readonly name: SchedulerName;
  readonly config: SchedulerConfig;
  /** Timesteps the UNet sees, in order (fractional for Euler schedules). */
  readonly timesteps: readonly number[];
  readonly initNoiseSigma: number;
  setTimesteps(numInferenceSteps: number): void;
  /** d with scaleModelInput(x, t) = x / d (lets the caller fuse the scaling into a copy it makes anyway). */
  inputDivisor(t: number): number;
  scaleModelInput(sample: Float32Array, t: number): Float32Array;
  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: TorchGenerator): Float32Array;
}

export abstract class BaseScheduler implements Scheduler {
  abstract readonly name: SchedulerName;
  timesteps: number[] = [];
  initNoiseSigma = 1;
  /** alphas_cumprod[t], float32 values. */
  readonly alphasCumprod: Float64Array;
  protected numInferenceSteps = 0;

  constructor(readonly config: SchedulerConfig) {
    this.alphasCumprod = alphasCumprod(config);
  }

  abstract setTimesteps(numInferenceSteps: number): void;
  abstract step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: TorchGenerator): Float32Array;

  inputDivisor(_t: number): number {
    return 1;
  }

  scaleModelInput(sample: Float32Array, t: number): Float32Array {
    const d = this.inputDivisor(t);
    return d === 1 ? sample : sample.map((x) => x / d);
  }

  /** alphas_cumprod[t]; before step 0 (t < 0) it is 1 with set_alpha_to_one, else alphas_cumprod[0]. */
  protected alphaAt(t: number): number {
    if (t >= 0) return this.alphasCumprod[t]!;
    return this.config.setAlphaToOne ? 1 : this.alphasCumprod[0]!;
  }

  protected requireTimesteps(): void {
    if (this.timesteps.length === 0) throw new ItdError('usage', `${this.name}: call setTimesteps before stepping`);
  }
}

/** sum_k c_k a_k, elementwise, into a new array. */
export function lincomb(coeffs: readonly number[], arrays: readonly Float32Array[]): Float32Array {
  const n = arrays[0]!.length;
  for (const a of arrays) if (a.length !== n) throw new ItdError('internal', `scheduler: arrays of different lengths (${n} vs ${a.length})`);
  const out = new Float32Array(n);
  const k = arrays.length;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += coeffs[j]! * arrays[j]![i]!;
    out[i] = s;
  }
  return out;
}
