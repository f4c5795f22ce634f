/**
 * diffusers scheduler configuration (scheduler/scheduler_config.json) and the noise-schedule math
 * shared by every scheduler. Arrays that diffusers keeps in float32 torch tensors (betas,
 * alphas_cumprod, sigmas) are rounded to float32 here too, so schedules match to the last bit
 * or so; per-element sample math runs in float64 and is stored as float32.
 */
import { ItdError } from '../../errors.js';

export type SchedulerName = 'pndm' | 'ddim' | 'euler' | 'euler-a' | 'dpm++2m';
export const SCHEDULER_NAMES: readonly SchedulerName[] = ['pndm', 'ddim', 'euler', 'euler-a', 'dpm++2m'];

/** diffusers class name -> itd scheduler name. */
export const SCHEDULER_CLASSES: Readonly<Record<string, SchedulerName>> = {
  PNDMScheduler: 'pndm',
  DDIMScheduler: 'ddim',
  EulerDiscreteScheduler: 'euler',
  EulerAncestralDiscreteScheduler: 'euler-a',
  DPMSolverMultistepScheduler: 'dpm++2m',
};

export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';
export type PredictionType = 'epsilon' | 'v_prediction';

export interface SchedulerConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: 'linear' | 'scaled_linear';
  trainedBetas?: number[];
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
  predictionType: PredictionType;
  /** PNDM/DDIM: alpha_cumprod "before" step 0 is 1 (else alphas_cumprod[0]). */
  setAlphaToOne: boolean;
  /** Euler/DPM++: Karras et al. sigma spacing, sigma_i = (smax^(1/7) + i/(n-1) (smin^(1/7) - smax^(1/7)))^7. */
  useKarrasSigmas: boolean;
  /** DDIM: clamp the predicted x0 to [-clipSampleRange, clipSampleRange]. */
  clipSample: boolean;
  clipSampleRange: number;
  /** DPM-Solver++: 1 or 2 (with a zero final sigma the last step is always first order). */
  solverOrder: number;
}

/** Class defaults that differ between schedulers (diffusers __init__ signatures). */
const CLASS_DEFAULTS: Record<SchedulerName, Partial<Record<string, unknown>>> = {
  pndm: { timestep_spacing: 'leading', set_alpha_to_one: false, skip_prk_steps: false },
  ddim: { timestep_spacing: 'leading', set_alpha_to_one: true, clip_sample: true },
  euler: { timestep_spacing: 'linspace' },
  'euler-a': { timestep_spacing: 'linspace' },
  'dpm++2m': { timestep_spacing: 'linspace' },
};

/** Schedulers that implement Karras sigma spacing. */
export const KARRAS_SCHEDULERS: readonly SchedulerName[] = ['euler', 'dpm++2m'];

/** Settings that change a scheduler's math in ways itd does not reproduce: [key, harmless value, what, schedulers that read it]. */
const UNSUPPORTED: [string, unknown, string, readonly SchedulerName[]][] = [
  ['rescale_betas_zero_snr', false, 'zero terminal SNR rescaling', ['ddim', 'euler', 'euler-a', 'dpm++2m']],
  ['thresholding', false, 'dynamic thresholding', ['ddim', 'dpm++2m']],
  ['use_exponential_sigmas', false, 'exponential sigmas', ['euler', 'dpm++2m']],
  ['use_beta_sigmas', false, 'beta sigmas', ['euler', 'dpm++2m']],
  ['final_sigmas_type', 'zero', 'a sigma_min final sigma', ['euler', 'dpm++2m']],
  ['interpolation_type', 'linear', 'log-linear sigma interpolation', ['euler']],
  ['timestep_type', 'discrete', 'continuous timesteps', ['euler']],
  ['algorithm_type', 'dpmsolver++', 'another DPM-Solver variant', ['dpm++2m']],
  ['solver_type', 'midpoint', 'the heun second-order update', ['dpm++2m']],
  ['euler_at_final', false, 'euler_at_final', ['dpm++2m']],
  ['use_lu_lambdas', false, 'Lu lambdas', ['dpm++2m']],
  ['variance_type', null, 'learned variance', ['dpm++2m']],
];

/**
 * Reads a scheduler_config.json object for scheduler `name`: fields absent from the file take the
 * class's defaults (as `XScheduler.from_config(cfg)` does); settings this implementation does not
 * reproduce are errors naming the field, never silently ignored.
 */
export function parseSchedulerConfig(raw: unknown, name: SchedulerName, source: string): SchedulerConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ItdError('format', `${source}: expected a JSON object`, { file: source });
  const o = { ...CLASS_DEFAULTS[name], ...(raw as Record<string, unknown>) };
  const get = <T>(key: string, dflt: T, ok: (v: unknown) => boolean, want: string): T => {
    const v = o[key];
    if (v === undefined || v === null) return dflt;
    if (!ok(v)) throw new ItdError('config', `${source}: ${key} must be ${want}, got ${JSON.stringify(v)}`, { file: source, field: key });
    return v as T;
  };
  const num = (key: string, dflt: number) => get(key, dflt, (v) => typeof v === 'number' && Number.isFinite(v), 'a number');
  const int = (key: string, dflt: number) => get(key, dflt, (v) => Number.isInteger(v) && (v as number) >= 0, 'a non-negative integer');
  const bool = (key: string, dflt: boolean) => get(key, dflt, (v) => typeof v === 'boolean', 'true or false');
  const oneOf = <T extends string>(key: string, dflt: T, values: readonly T[]) =>
    get(key, dflt, (v) => values.includes(v as T), `one of ${values.join(', ')} (others are not implemented by itd)`);

  const cfg: SchedulerConfig = {
    numTrainTimesteps: int('num_train_timesteps', 1000),
    betaStart: num('beta_start', 0.0001),
    betaEnd: num('beta_end', 0.02),
    betaSchedule: oneOf('beta_schedule', 'linear', ['linear', 'scaled_linear'] as const),
    timestepSpacing: oneOf('timestep_spacing', 'leading', ['leading', 'trailing', 'linspace'] as const),
    stepsOffset: int('steps_offset', 0),
    predictionType: oneOf('prediction_type', 'epsilon', ['epsilon', 'v_prediction'] as const),
    setAlphaToOne: bool('set_alpha_to_one', false),
    useKarrasSigmas: KARRAS_SCHEDULERS.includes(name) && bool('use_karras_sigmas', false),
    clipSample: bool('clip_sample', false),
    clipSampleRange: num('clip_sample_range', 1),
    solverOrder: get('solver_order', 2, (v) => v === 1 || v === 2, '1 or 2'),
  };
  const trained = o['trained_betas'];
  if (trained !== undefined && trained !== null) {
    if (!Array.isArray(trained) || trained.length !== cfg.numTrainTimesteps || !trained.every((b) => typeof b === 'number')) {
      throw new ItdError('config', `${source}: trained_betas must be an array of ${cfg.numTrainTimesteps} numbers`, { file: source, field: 'trained_betas' });
    }
    cfg.trainedBetas = trained as number[];
  }
  if (cfg.numTrainTimesteps < 2) throw new ItdError('config', `${source}: num_train_timesteps must be at least 2`, { file: source, field: 'num_train_timesteps' });
  if (name === 'pndm' && o['skip_prk_steps'] !== true) {
    throw new ItdError('unsupported', `${source}: PNDM with skip_prk_steps=false (Runge-Kutta warm-up) is not implemented; Stable Diffusion configs set skip_prk_steps=true`, { file: source, field: 'skip_prk_steps' });
  }
  for (const [key, fine, what, names] of UNSUPPORTED) {
    const v = o[key];
    if (names.includes(name) && v !== undefined && v !== null && v !== fine) {
      throw new ItdError('unsupported', `${source}: ${key}=${JSON.stringify(v)} is not supported by itd's ${name} scheduler (${what} is not implemented)`, { file: source, field: key });
    }
  }
  return cfg;
}

/** float32 rounding, as torch float32 tensors store values. */
export const f32 = Math.fround;

/** torch.linspace(start, end, n, dtype=float32): float32 step, filled from both ends. */
export function torchLinspaceF32(start: number, end: number, n: number): Float64Array {
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (n - 1));
  const half = Math.floor(n / 2);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = i < half ? f32(s + f32(step * i)) : f32(e - f32(step * (n - i - 1)));
  return out;
}

/**
 * alphas_cumprod[t] = prod_{s<=t} (1 - beta_s), with
 *   linear:        beta = linspace(beta_start, beta_end, N)
 *   scaled_linear: beta = linspace(sqrt(beta_start), sqrt(beta_end), N)^2   (Stable Diffusion)
 * torch.cumprod accumulates float32 inputs in float64 and rounds each output to float32.
 */
export function alphasCumprod(cfg: SchedulerConfig): Float64Array {
  const n = cfg.numTrainTimesteps;
  let betas: Float64Array;
  if (cfg.trainedBetas) betas = Float64Array.from(cfg.trainedBetas, f32);
  else if (cfg.betaSchedule === 'linear') betas = torchLinspaceF32(cfg.betaStart, cfg.betaEnd, n);
  else betas = torchLinspaceF32(Math.sqrt(cfg.betaStart), Math.sqrt(cfg.betaEnd), n).map((b) => f32(b * b));
  const out = new Float64Array(n);
  let acc = 1;
  for (let t = 0; t < n; t++) {
    acc *= f32(1 - betas[t]!);
    out[t] = f32(acc);
  }
  return out;
}

/** sigma_t = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t]), in float32 as diffusers computes it. */
export function trainSigmas(alphasCumprod: Float64Array): Float64Array {
  return alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

/** numpy's round() for |x| < 2^31: halves go to the even neighbour (Math.round sends them up). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && (r & 1) === 1 ? r - 1 : r;
}

/** np.linspace(start, stop, num): i * step + start, the last value exactly stop. */
export function npLinspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  return Array.from({ length: num }, (_, i) => (i === num - 1 ? stop : i * step + start));
}

/** np.arange(start, stop, step) for floats: length ceil((stop-start)/step), values start + i*delta. */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start; // numpy fills with the rounded first increment
  return Array.from({ length: len }, (_, i) => start + i * delta);
}

/**
 * Inference timesteps in descending order, diffusers' three spacings (N train steps, n inference):
 *   linspace: round(linspace(0, N-1, n))                  reversed
 *   leading:  (0..n-1) * (N div n) + steps_offset          reversed
 *   trailing: round(arange(N, 0, -N/n)) - 1
 * `round` false keeps linspace values fractional (Euler's float32 timesteps).
 */
export function spacedTimesteps(cfg: SchedulerConfig, n: number, round = true): number[] {
  const N = cfg.numTrainTimesteps;
  if (!Number.isInteger(n) || n < 1 || n > N) throw new ItdError('usage', `number of inference steps must be an integer in 1..${N}, got ${n}`, { field: 'steps' });
  switch (cfg.timestepSpacing) {
    case 'linspace':
      return npLinspace(0, N - 1, n)
        .map((t) => (round ? roundHalfEven(t) : f32(t)))
        .reverse();
    case 'leading': {
      const ratio = Math.floor(N / n);
      return Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + cfg.stepsOffset);
    }
    case 'trailing':
      return npArange(N, 0, -N / n).map((t) => roundHalfEven(t) - 1);
  }
}

/** np.interp(x, [0, 1, ..., len-1], ys) for x inside the range. */
export function interpIndex(x: number, ys: ArrayLike<number>): number {
  const last = ys.length - 1;
  if (x <= 0) return ys[0]!;
  if (x >= last) return ys[last]!;
  const i = Math.floor(x);
  return ys[i]! + (x - i) * (ys[i + 1]! - ys[i]!);
}

/**
 * Fractional train timestep whose sigma is `sigma`: linear interpolation in log sigma between the
 * two neighbouring train sigmas (diffusers' _sigma_to_t; logSigmas ascending, float32).
 */
export function sigmaToT(sigma: number, logSigmas: Float64Array): number {
  const ls = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (ls >= logSigmas[i]!) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low]!;
  const hi = logSigmas[low + 1]!;
  const w = Math.min(1, Math.max(0, (lo - ls) / (lo - hi)));
  return (1 - w) * low + w * (low + 1);
}

/** Karras et al. (2022) sigmas, rho = 7: (smax^(1/rho) + ramp_i (smin^(1/rho) - smax^(1/rho)))^rho, ramp = linspace(0, 1, n). */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7;
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return npLinspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}
