/**
 * Schedulers in sigma (noise-to-signal) parametrisation, x_t = x0 + sigma_t e with
 * sigma_t = sqrt(b_t / a_t): Euler, Euler ancestral and DPM-Solver++. They walk a sigma table
 * [sigma_0 > ... > sigma_{n-1}, 0] with a step index found from the first timestep they are given.
 */
import { f32, trainSigmas, type SchedulerConfig } from './config.js';
import { BaseScheduler } from './scheduler.js';
import { ItdError } from '../../errors.js';

export abstract class SigmaScheduler extends BaseScheduler {
  /** n + 1 sigmas (float32 values), the last one 0. */
  sigmas: number[] = [];
  private stepIndex: number | undefined;
  /** Train sigmas (float32) and their float32 logs, ascending in t. */
  protected readonly trainSigmas: Float64Array;
  protected readonly logSigmas: Float64Array;

  constructor(config: SchedulerConfig) {
    super(config);
    this.trainSigmas = trainSigmas(this.alphasCumprod);
    this.logSigmas = this.trainSigmas.map((s) => f32(Math.log(s)));
  }

  /** Installs a schedule and resets the step index. */
  protected setSchedule(timesteps: number[], sigmas: number[]): void {
    this.timesteps = timesteps;
    this.sigmas = [...sigmas, 0].map(f32);
    this.numInferenceSteps = timesteps.length;
    this.stepIndex = undefined;
  }

  /**
   * Index of t in the schedule: looked up on first use (the second match when t repeats, as
   * diffusers does for img2img-style restarts), then advanced by one per step.
   */
  protected indexOf(t: number): number {
    this.requireTimesteps();
    if (this.stepIndex === undefined) {
      const hits = this.timesteps.flatMap((s, i) => (s === t ? [i] : []));
      if (hits.length === 0) throw new ItdError('usage', `${this.name}: timestep ${t} is not one of this schedule's timesteps`, { field: 'timestep' });
      this.stepIndex = hits[hits.length > 1 ? 1 : 0]!;
    }
    return this.stepIndex;
  }

  protected advance(): void {
    this.stepIndex = this.stepIndex! + 1;
  }

  /**
   * x0 from the model output at sigma s:
   *   epsilon:      x0 = x - s e
   *   v_prediction: x0 = -s / sqrt(s^2 + 1) v + x / (s^2 + 1)
   */
  protected predictX0(modelOutput: Float32Array, sample: Float32Array, s: number): Float32Array {
    const out = new Float32Array(sample.length);
    if (this.config.predictionType === 'epsilon') {
      for (let i = 0; i < out.length; i++) out[i] = sample[i]! - s * modelOutput[i]!;
    } else {
      const cv = -s / Math.sqrt(s * s + 1);
      const cx = 1 / (s * s + 1);
      for (let i = 0; i < out.length; i++) out[i] = cv * modelOutput[i]! + cx * sample[i]!;
    }
    return out;
  }
}
