/**
 * DPM-Solver++(2M) (Lu et al. 2022), diffusers' DPMSolverMultistepScheduler with
 * algorithm_type dpmsolver++, solver_type midpoint, final sigma 0.
 *
 * Schedule (N train steps, n inference steps; the n+1-point grids drop their final 0):
 *   linspace: round(linspace(0, N-1, n+1)) reversed;  leading: (0..n) * (N div (n+1)) reversed + offset;
 *   trailing: round(arange(N, 0, -N/n)) - 1;  sigma_i = interp(t_i, train sigmas).
 *   Karras: sigmas re-spaced between train sigma[0] and sigma[N-1], t_i = round(sigmaToT(sigma_i)).
 * Per step, with alpha = 1/sqrt(sigma^2+1), sigma_t = sigma alpha, lambda = ln alpha - ln sigma_t:
 *   m = x0 prediction (epsilon: (x - sigma_t e)/alpha; v: alpha x - sigma_t v)
 *   h = lambda_{i+1} - lambda_i
 *   1st order (first step, last step, solver_order 1): x' = (sigma_{i+1}/sigma_i) x - alpha_{i+1} (e^-h - 1) m
 *   2nd order: r = (lambda_i - lambda_{i-1}) / h, D1 = (m - m_prev) / r,
 *              x' = (sigma_{i+1}/sigma_i) x - alpha_{i+1} (e^-h - 1) (m + D1 / 2)
 * (sigmas here are the VP sigma_t; at the final sigma 0, lambda = inf and x' = m.)
 */
import { interpIndex, karrasSigmas, npArange, npLinspace, roundHalfEven, sigmaToT } from './config.js';
import { SigmaScheduler } from './sigma.js';
import { ItdError } from '../../errors.js';

export class DpmSolverScheduler extends SigmaScheduler {
  readonly name = 'dpm++2m' as const;
  private prevX0: Float32Array | undefined;
  private lowerOrderNums = 0;

  setTimesteps(n: number): void {
    const N = this.config.numTrainTimesteps;
    if (!Number.isInteger(n) || n < 1 || n > N) throw new ItdError('usage', `number of inference steps must be an integer in 1..${N}, got ${n}`, { field: 'steps' });
    let ts: number[];
    let sig: number[];
    if (this.config.useKarrasSigmas) {
      sig = karrasSigmas(this.trainSigmas[0]!, this.trainSigmas[N - 1]!, n);
      ts = sig.map((s) => roundHalfEven(sigmaToT(s, this.logSigmas)));
    } else {
      ts = this.spaced(n);
      sig = ts.map((t) => interpIndex(t, this.trainSigmas));
    }
    this.setSchedule(ts, sig);
    this.prevX0 = undefined;
    this.lowerOrderNums = 0;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array): Float32Array {
    const i = this.indexOf(t);
    const last = i === this.timesteps.length - 1;
    const x0 = this.predictX0(modelOutput, sample, this.sigmas[i]!);
    const secondOrder = this.config.solverOrder === 2 && this.lowerOrderNums >= 1 && !last;
    const out = secondOrder ? this.secondOrder(i, x0, this.prevX0!, sample) : this.firstOrder(i, x0, sample);
    this.prevX0 = x0;
    this.lowerOrderNums = Math.min(this.lowerOrderNums + 1, this.config.solverOrder);
    this.advance();
    return out;
  }

  /** epsilon/v -> x0 in the VP parametrisation (overrides the EDM form used by Euler). */
  protected override predictX0(modelOutput: Float32Array, sample: Float32Array, s: number): Float32Array {
    const { alpha, sigma } = vp(s);
    const out = new Float32Array(sample.length);
    if (this.config.predictionType === 'epsilon') {
      for (let k = 0; k < out.length; k++) out[k] = (sample[k]! - sigma * modelOutput[k]!) / alpha;
    } else {
      for (let k = 0; k < out.length; k++) out[k] = alpha * sample[k]! - sigma * modelOutput[k]!;
    }
    return out;
  }

  private firstOrder(i: number, x0: Float32Array, x: Float32Array): Float32Array {
    const t = vp(this.sigmas[i + 1]!);
    const s = vp(this.sigmas[i]!);
    const h = t.lambda - s.lambda;
    const cx = t.sigma / s.sigma;
    const cm = -t.alpha * (Math.exp(-h) - 1);
    const out = new Float32Array(x.length);
    for (let k = 0; k < out.length; k++) out[k] = cx * x[k]! + cm * x0[k]!;
    return out;
  }

  private secondOrder(i: number, m0: Float32Array, m1: Float32Array, x: Float32Array): Float32Array {
    const t = vp(this.sigmas[i + 1]!);
    const s0 = vp(this.sigmas[i]!);
    const s1 = vp(this.sigmas[i - 1]!);
    const h = t.lambda - s0.lambda;
    const r0 = (s0.lambda - s1.lambda) / h;
    const cx = t.sigma / s0.sigma;
    const cm = -t.alpha * (Math.exp(-h) - 1);
    const out = new Float32Array(x.length);
    for (let k = 0; k < out.length; k++) {
      const d1 = (m0[k]! - m1[k]!) / r0;
      out[k] = cx * x[k]! + cm * m0[k]! + 0.5 * cm * d1;
    }
    return out;
  }

  private spaced(n: number): number[] {
    const { numTrainTimesteps: N, timestepSpacing, stepsOffset } = this.config;
    switch (timestepSpacing) {
      case 'linspace':
        return npLinspace(0, N - 1, n + 1).map(roundHalfEven).reverse().slice(0, n);
      case 'leading': {
        const ratio = Math.floor(N / (n + 1));
        return Array.from({ length: n }, (_, k) => (n - k) * ratio + stepsOffset);
      }
      case 'trailing':
        return npArange(N, 0, -N / n).map((v) => roundHalfEven(v) - 1);
    }
  }
}

/** VP coefficients of a sigma: alpha = 1/sqrt(s^2+1), sigma_t = s alpha, lambda = ln alpha - ln sigma_t. */
function vp(s: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = 1 / Math.sqrt(s * s + 1);
  const sigma = s * alpha;
  return { alpha, sigma, lambda: Math.log(alpha) - Math.log(sigma) };
}
