/**
 * PNDM (Liu et al. 2022) in its PLMS form (skip_prk_steps=true, as Stable Diffusion configs set it):
 * a 4th-order linear multistep method on the noise prediction.
 *
 * Timesteps: the spaced schedule d_0 > d_1 > ... > d_{n-1} with d_1 repeated, [d_0, d_1, d_1, d_2, ...]:
 * the second model call at d_1 is the corrector of the first (n + 1 UNet calls for n steps).
 *
 * Combined noise e' from the history ets (newest last):
 *   1 entry, first call:  e' = e                 (remember x)
 *   1 entry, second call: e' = (e + e_1) / 2     (restart from the remembered x)
 *   2 entries: (3 e_1 - e_2) / 2;  3: (23 e_1 - 16 e_2 + 5 e_3) / 12;  4: (55 e_1 - 59 e_2 + 37 e_3 - 9 e_4) / 24
 * Update (PNDM eq. 9), a = alphas_cumprod, b = 1 - a, from t to t' = t - N/n:
 *   x' = sqrt(a_t'/a_t) x - (a_t' - a_t) e' / (a_t sqrt(b_t') + sqrt(a_t b_t a_t'))
 * v_prediction is turned into noise first: e = sqrt(a_t) v + sqrt(b_t) x.
 */
import { spacedTimesteps } from './config.js';
import { BaseScheduler, lincomb } from './scheduler.js';

export class PndmScheduler extends BaseScheduler {
  readonly name = 'pndm' as const;
  private ets: Float32Array[] = [];
  private counter = 0;
  private curSample: Float32Array | undefined;

  setTimesteps(n: number): void {
    const d = spacedTimesteps(this.config, n);
    this.timesteps = n === 1 ? d : [d[0]!, d[1]!, ...d.slice(1)];
    this.numInferenceSteps = n;
    this.ets = [];
    this.counter = 0;
    this.curSample = undefined;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    this.requireTimesteps();
    const ratio = Math.floor(this.config.numTrainTimesteps / this.numInferenceSteps);
    let t = timestep;
    let prevT = t - ratio;
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(modelOutput);
    } else {
      prevT = t;
      t = t + ratio;
    }
    const e = this.ets;
    let eps: Float32Array;
    let x = sample;
    if (e.length === 1 && this.counter === 0) {
      eps = modelOutput;
      this.curSample = sample;
    } else if (e.length === 1 && this.counter === 1) {
      eps = lincomb([0.5, 0.5], [modelOutput, e[0]!]);
      x = this.curSample!;
      this.curSample = undefined;
    } else if (e.length === 2) {
      eps = lincomb([3 / 2, -1 / 2], [e[1]!, e[0]!]);
    } else if (e.length === 3) {
      eps = lincomb([23 / 12, -16 / 12, 5 / 12], [e[2]!, e[1]!, e[0]!]);
    } else {
      eps = lincomb([55 / 24, -59 / 24, 37 / 24, -9 / 24], [e[3]!, e[2]!, e[1]!, e[0]!]);
    }
    this.counter++;
    return this.prevSample(x, t, prevT, eps);
  }

  private prevSample(x: Float32Array, t: number, prevT: number, modelOutput: Float32Array): Float32Array {
    const aT = this.alphaAt(t);
    const aPrev = this.alphaAt(prevT);
    const bT = 1 - aT;
    const bPrev = 1 - aPrev;
    const eps = this.config.predictionType === 'v_prediction' ? lincomb([Math.sqrt(aT), Math.sqrt(bT)], [modelOutput, x]) : modelOutput;
    const sampleCoeff = Math.sqrt(aPrev / aT);
    const denom = aT * Math.sqrt(bPrev) + Math.sqrt(aT * bT * aPrev);
    return lincomb([sampleCoeff, -(aPrev - aT) / denom], [x, eps]);
  }
}
