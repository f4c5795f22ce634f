/**
 * Euler (Karras et al. 2022, Algorithm 2 without churn) and Euler ancestral (k-diffusion's
 * sample_euler_ancestral), as diffusers' EulerDiscreteScheduler / EulerAncestralDiscreteScheduler.
 *
 * Schedule: fractional timesteps from the spacing, sigma_i = interp(t_i, train sigmas); with Karras
 * sigmas the n sigmas are re-spaced between sigma(t_last) and sigma(t_0) and t_i = sigmaToT(sigma_i).
 * Model input: x / sqrt(sigma^2 + 1).  initNoiseSigma = max sigma (linspace, trailing) or
 * sqrt(max sigma^2 + 1) (leading).
 * Step from s = sigma_i to s' = sigma_{i+1}, with d = (x - x0) / s:
 *   Euler:           x' = x + d (s' - s)
 *   Euler ancestral: s_up = sqrt(s'^2 (s^2 - s'^2) / s^2), s_down = sqrt(s'^2 - s_up^2),
 *                    x' = x + d (s_down - s) + s_up z,  z = randn(x.shape) from the generator
 *                    (drawn on every step, the last one included, as diffusers does).
 */
import type { TorchGenerator } from '../torch-rng.js';
import { f32, interpIndex, karrasSigmas, sigmaToT, spacedTimesteps, type SchedulerConfig } from './config.js';
import { SigmaScheduler } from './sigma.js';
import { ItdError } from '../../errors.js';

export class EulerScheduler extends SigmaScheduler {
  readonly name: 'euler' | 'euler-a';

  constructor(config: SchedulerConfig, readonly ancestral: boolean) {
    super(config);
    this.name = ancestral ? 'euler-a' : 'euler';
  }

  setTimesteps(n: number): void {
    let ts = spacedTimesteps(this.config, n, false);
    let sig = ts.map((t) => interpIndex(t, this.trainSigmas));
    if (this.config.useKarrasSigmas) {
      sig = karrasSigmas(sig[sig.length - 1]!, sig[0]!, n);
      ts = sig.map((s) => sigmaToT(s, this.logSigmas));
    }
    this.setSchedule(ts.map(f32), sig);
    const max = Math.max(...this.sigmas);
    this.initNoiseSigma = this.config.timestepSpacing === 'leading' ? f32(Math.sqrt(f32(max * max) + 1)) : max;
  }

  override inputDivisor(t: number): number {
    const s = this.sigmas[this.indexOf(t)]!;
    return f32(Math.sqrt(f32(s * s) + 1));
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, rng?: TorchGenerator): Float32Array {
    const i = this.indexOf(t);
    const s = this.sigmas[i]!;
    const next = this.sigmas[i + 1]!;
    const x0 = this.predictX0(modelOutput, sample, s);
    let target = next;
    let noise: Float32Array | undefined;
    let up = 0;
    if (this.ancestral) {
      if (!rng) throw new ItdError('usage', 'euler-a: the ancestral step needs a random generator', { field: 'generator' });
      up = Math.sqrt((next * next * (s * s - next * next)) / (s * s));
      target = Math.sqrt(next * next - up * up);
      noise = rng.randn([sample.length]);
    }
    const dt = target - s;
    const out = x0; // reused: each x0[i] is read once, before out[i] is written
    for (let k = 0; k < out.length; k++) {
      const x = sample[k]!;
      out[k] = x + ((x - x0[k]!) / s) * dt + (noise ? noise[k]! * up : 0);
    }
    this.advance();
    return out;
  }
}
