/**
 * DDIM (Song et al. 2021), deterministic (eta = 0). With a = alphas_cumprod, b = 1 - a and
 * t' = t - N/n (a_t' from alphaAt for t' < 0):
 *   epsilon:      x0 = (x - sqrt(b_t) e) / sqrt(a_t),          e  = model output
 *   v_prediction: x0 = sqrt(a_t) x - sqrt(b_t) v,              e  = sqrt(a_t) v + sqrt(b_t) x
 *   x0 optionally clamped to [-r, r] (clip_sample);  x' = sqrt(a_t') x0 + sqrt(1 - a_t') e
 */
import { spacedTimesteps } from './config.js';
import { BaseScheduler } from './scheduler.js';

export class DdimScheduler extends BaseScheduler {
  readonly name = 'ddim' as const;

  setTimesteps(n: number): void {
    this.timesteps = spacedTimesteps(this.config, n);
    this.numInferenceSteps = n;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array): Float32Array {
    this.requireTimesteps();
    const aT = this.alphaAt(t);
    const aPrev = this.alphaAt(t - Math.floor(this.config.numTrainTimesteps / this.numInferenceSteps));
    const sa = Math.sqrt(aT);
    const sb = Math.sqrt(1 - aT);
    const v = this.config.predictionType === 'v_prediction';
    const clip = this.config.clipSample ? this.config.clipSampleRange : Infinity;
    const cx0 = Math.sqrt(aPrev);
    const ceps = Math.sqrt(1 - aPrev);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) {
      const x = sample[i]!;
      const m = modelOutput[i]!;
      const x0 = v ? sa * x - sb * m : (x - sb * m) / sa;
      const eps = v ? sa * m + sb * x : m;
      out[i] = cx0 * Math.min(clip, Math.max(-clip, x0)) + ceps * eps;
    }
    return out;
  }
}
