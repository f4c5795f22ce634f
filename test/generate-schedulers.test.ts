import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createScheduler, type Scheduler } from '../src/generate/schedulers/index.js';
import { karrasSigmas, roundHalfEven } from '../src/generate/schedulers/config.js';
import type { PndmScheduler } from '../src/generate/schedulers/pndm.js';
import type { BaseScheduler } from '../src/generate/schedulers/scheduler.js';
import type { SigmaScheduler } from '../src/generate/schedulers/sigma.js';
import { SD1_SCHEDULER_CONFIG } from '../src/generate/synth-unet.js';
import { TorchGenerator } from '../src/generate/torch-rng.js';

/**
 * A 4-step train schedule whose numbers are exact in float32:
 * betas [1/4, 1/2, 1/2, 3/4] -> alphas_cumprod a = [0.75, 0.375, 0.1875, 0.046875],
 * sigmas sqrt((1-a)/a) = [sqrt(1/3), sqrt(5/3), sqrt(13/3), sqrt(61/3)].
 */
const TINY = { num_train_timesteps: 4, trained_betas: [0.25, 0.5, 0.5, 0.75], skip_prk_steps: true, steps_offset: 0 };
const A = [0.75, 0.375, 0.1875, 0.046875];

const fill = (v: number, n = 6) => new Float32Array(n).fill(v);
const close = (a: number, b: number, tol = 1e-6, what = '') => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what} ${a} vs ${b}`);
const sd = (name: string, extra: Record<string, unknown> = {}, karras = false): Scheduler =>
  createScheduler(name, { ...SD1_SCHEDULER_CONFIG, ...extra }, 'test', { karras });

test('alphas_cumprod follows prod(1 - beta) for scaled_linear and linear betas', () => {
  for (const [schedule, betaAt] of [
    ['scaled_linear', (i: number) => (Math.sqrt(0.00085) + (i * (Math.sqrt(0.012) - Math.sqrt(0.00085))) / 999) ** 2],
    ['linear', (i: number) => 0.00085 + (i * (0.012 - 0.00085)) / 999],
  ] as const) {
    const ac = (sd('ddim', { beta_schedule: schedule }) as BaseScheduler).alphasCumprod;
    let prod = 1;
    for (let i = 0; i < 1000; i++) {
      prod *= 1 - betaAt(i);
      if ([0, 1, 500, 999].includes(i)) close(ac[i]!, prod, 2e-6, `${schedule} alphas_cumprod[${i}]`);
    }
  }
  // By hand: a_0 = 1 - beta_start exactly.
  close((sd('ddim') as BaseScheduler).alphasCumprod[0]!, 1 - 0.00085, 1e-7);
});

test('10-step timesteps under each spacing (N = 1000, steps_offset 1)', () => {
  const ts = (name: string, spacing: string) => {
    const s = sd(name, { timestep_spacing: spacing });
    s.setTimesteps(10);
    return s.timesteps;
  };
  const down = (from: number, step: number) => Array.from({ length: 10 }, (_, i) => from - i * step);
  assert.deepEqual(ts('ddim', 'leading'), down(901, 100)); // (0..9) * 100 + 1, reversed
  assert.deepEqual(ts('ddim', 'trailing'), down(999, 100)); // round(arange(1000, 0, -100)) - 1
  assert.deepEqual(ts('ddim', 'linspace'), down(999, 111)); // round(linspace(0, 999, 10)), reversed
  assert.deepEqual(ts('euler', 'linspace'), down(999, 111));
  // PNDM-PLMS repeats the second timestep (corrector call): 11 UNet calls for 10 steps.
  assert.deepEqual(ts('pndm', 'leading'), [901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  // DPM-Solver grids have n+1 points and drop the last: linspace(0, 999, 11) = 99.9 i, 499.5 -> 500 (half to even).
  assert.deepEqual(ts('dpm++2m', 'linspace'), [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
  assert.deepEqual(ts('dpm++2m', 'leading'), down(901, 90)); // (0..10) * (1000 div 11) + 1, reversed, last dropped
  // Half-way values round to even: arange(1000, 0, -62.5) has 937.5 -> 938, 812.5 -> 812.
  const s16 = sd('ddim', { timestep_spacing: 'trailing' });
  s16.setTimesteps(16);
  assert.deepEqual(s16.timesteps, [999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61]);
  // Euler keeps linspace timesteps fractional (float32): 999 - 999/29 = 964.5517...
  const e30 = sd('euler');
  e30.setTimesteps(30);
  assert.deepEqual(e30.timesteps.slice(0, 3), [999, Math.fround(964.5517241379), Math.fround(930.1034482759)]);
  assert.equal(roundHalfEven(2.5), 2);
  assert.equal(roundHalfEven(3.5), 4);
  assert.equal(roundHalfEven(-2.5), -2);
});

test('one DDIM step on constant arrays, computed by hand', () => {
  const s = createScheduler('ddim', { ...TINY, set_alpha_to_one: true, clip_sample: false }, 'tiny');
  s.setTimesteps(2);
  assert.deepEqual(s.timesteps, [2, 0]);
  // t = 2 -> 0: x0 = (1 - sqrt(1 - 0.1875) 0.5) / sqrt(0.1875) = 1.26856808
  //             x' = sqrt(0.75) x0 + sqrt(0.25) 0.5 = 1.34861218
  const x1 = s.step(fill(0.5), 2, fill(1));
  x1.forEach((v) => close(v, 1.3486121811, 1e-6, 'ddim x1'));
  // t = 0 -> -2: set_alpha_to_one gives a_prev = 1, so x' = x0 = (x - sqrt(0.25) e) / sqrt(0.75)
  const x2 = s.step(fill(0.2), 0, x1);
  close(x2[0]!, (1.3486121811 - 0.5 * 0.2) / Math.sqrt(0.75), 1e-6, 'ddim final');

  // v_prediction: x0 = sqrt(a) x - sqrt(b) v, e = sqrt(a) v + sqrt(b) x -> 0.54363471
  const v = createScheduler('ddim', { ...TINY, prediction_type: 'v_prediction', clip_sample: false }, 'tiny');
  v.setTimesteps(2);
  close(v.step(fill(0.5), 2, fill(1))[0]!, 0.54363471, 1e-6, 'ddim v');
  // clip_sample clamps x0 to [-1, 1]: x0 = 1.2686 -> 1, x' = sqrt(0.75) + 0.25
  const c = createScheduler('ddim', { ...TINY, clip_sample: true }, 'tiny');
  c.setTimesteps(2);
  close(c.step(fill(0.5), 2, fill(1))[0]!, Math.sqrt(0.75) + 0.25, 1e-6, 'ddim clip');
});

test('PNDM: the first step equals DDIM, the last leaves x unchanged, the multistep weights are PLMS', () => {
  const s = createScheduler('pndm', TINY, 'tiny');
  s.setTimesteps(2);
  assert.deepEqual(s.timesteps, [2, 0, 0]);
  close(s.step(fill(0.5), 2, fill(1))[0]!, 1.3486121811, 1e-6, 'pndm step 1');
  s.step(fill(0.5), 0, fill(1));
  // t = 0 -> -2: a_prev = alphas_cumprod[0] = a_t (set_alpha_to_one false): coefficient 1, no noise term.
  assert.deepEqual(s.step(fill(0.9), 0, fill(0.3)), fill(0.3));

  // Feeding x = 0 makes x' = -c(t, t') e', so the combined noise e' can be read back exactly.
  const p = sd('pndm') as PndmScheduler;
  p.setTimesteps(10);
  const ac = p.alphasCumprod;
  const coeff = (t: number, prev: number) => {
    const [at, ap] = [ac[t]!, ac[prev]!];
    return (ap - at) / (at * Math.sqrt(1 - ap) + Math.sqrt(at * (1 - at) * ap));
  };
  const outputs = [1, 3, 5, 7, 9, 11];
  // e' per call: e1; (e2 + e1)/2 at (901 -> 801); then AB2, AB3, AB4 on the history [1, 5, 7, 9, 11].
  const expected = [1, 2, (3 * 5 - 1) / 2, (23 * 7 - 16 * 5 + 5 * 1) / 12, (55 * 9 - 59 * 7 + 37 * 5 - 9 * 1) / 24, (55 * 11 - 59 * 9 + 37 * 7 - 9 * 5) / 24];
  const pairs = [[901, 801], [901, 801], [801, 701], [701, 601], [601, 501], [501, 401]];
  outputs.forEach((e, k) => {
    const out = p.step(fill(e), p.timesteps[k]!, fill(0));
    close(-out[0]! / coeff(pairs[k]![0]!, pairs[k]![1]!), expected[k]!, 1e-5, `pndm e' at call ${k}`);
  });
});

test('Euler: input scaling, init sigma and one step by hand; Euler ancestral draws its noise from the generator', () => {
  const s = createScheduler('euler', TINY, 'tiny') as SigmaScheduler;
  s.setTimesteps(2); // linspace(0, 3, 2) reversed: [3, 0]
  assert.deepEqual(s.timesteps, [3, 0]);
  close(s.initNoiseSigma, Math.sqrt(61 / 3), 1e-6, 'init sigma'); // linspace: max sigma
  close(s.inputDivisor(3), Math.sqrt(61 / 3 + 1), 1e-6, 'divisor');
  // x' = x + e (sigma_next - sigma) = 1 + 0.5 (sqrt(1/3) - sqrt(61/3)) = -0.96594974
  close(s.step(fill(0.5), 3, fill(1))[0]!, -0.9659497418, 1e-6, 'euler');
  // Leading spacing: init sigma = sqrt(max^2 + 1).
  const lead = createScheduler('euler', { ...TINY, timestep_spacing: 'leading' }, 'tiny');
  lead.setTimesteps(2);
  assert.deepEqual(lead.timesteps, [2, 0]);
  close(lead.initNoiseSigma, Math.sqrt(13 / 3 + 1), 1e-6, 'leading init sigma');

  const a = createScheduler('euler-a', TINY, 'tiny');
  a.setTimesteps(2);
  const [s0, s1] = [Math.sqrt(61 / 3), Math.sqrt(1 / 3)];
  const up = Math.sqrt((s1 ** 2 * (s0 ** 2 - s1 ** 2)) / s0 ** 2);
  const down = Math.sqrt(s1 ** 2 - up ** 2);
  const z = new TorchGenerator(11).randn([6]);
  const out = a.step(fill(0.5), 3, fill(1), new TorchGenerator(11));
  out.forEach((v, i) => close(v, 1 + 0.5 * (down - s0) + up * z[i]!, 1e-6, 'euler-a'));
  assert.throws(() => a.step(fill(0.5), 0, out), /needs a random generator/);
});

test('DPM-Solver++(2M): first and last steps are first order (DDIM-equivalent), the middle ones second order', () => {
  const s = createScheduler('dpm++2m', TINY, 'tiny');
  s.setTimesteps(2); // round(linspace(0, 3, 3)) = [0, 2, 3] reversed, last dropped: [3, 2]
  assert.deepEqual(s.timesteps, [3, 2]);
  // First order in the VP form is the DDIM update 3 -> 2: sqrt(a2) x0 + sqrt(1 - a2) e, x0 = (x - sqrt(1 - a3) e) / sqrt(a3).
  const x1 = s.step(fill(0.5), 3, fill(1));
  close(x1[0]!, 1.4744126999, 1e-5, 'dpm first');
  // Final step to sigma 0 returns the x0 prediction.
  close(s.step(fill(0.5), 2, fill(1))[0]!, (1 - Math.sqrt(1 - A[2]!) * 0.5) / Math.sqrt(A[2]!), 1e-5, 'dpm last');

  // Second order: x' = (st/s0) x - at (e^-h - 1) (m0 + (m0 - m1) / (2 r)), r = (l0 - l1) / h.
  const d = sd('dpm++2m') as SigmaScheduler;
  d.setTimesteps(3);
  const vp = (sig: number) => {
    const al = 1 / Math.sqrt(sig * sig + 1);
    return { al, st: sig * al, l: Math.log(al) - Math.log(sig * al) };
  };
  const [p0, p1, p2] = [vp(d.sigmas[0]!), vp(d.sigmas[1]!), vp(d.sigmas[2]!)];
  const x0a = (1 - p0.st * 0.3) / p0.al; // x = 1, e = 0.3 at step 0
  const xa = d.step(fill(0.3), d.timesteps[0]!, fill(1));
  const x0b = (xa[0]! - p1.st * -0.2) / p1.al; // e = -0.2 at step 1
  const h = p2.l - p1.l;
  const r = (p1.l - p0.l) / h;
  const want = (p2.st / p1.st) * xa[0]! - p2.al * (Math.exp(-h) - 1) * (x0b + (x0b - x0a) / (2 * r));
  close(d.step(fill(-0.2), d.timesteps[1]!, xa)[0]!, want, 1e-5, 'dpm second order');
});

test('Karras sigmas span [sigma_min, sigma_max] with rho = 7 and map back to their timesteps', () => {
  const k = karrasSigmas(0.03, 14.6, 5);
  close(k[0]!, 14.6, 1e-12);
  close(k[4]!, 0.03, 1e-12);
  close(k[2]!, ((14.6 ** (1 / 7) + 0.03 ** (1 / 7)) / 2) ** 7, 1e-12, 'midpoint');
  const e = sd('euler', {}, true) as SigmaScheduler;
  e.setTimesteps(8);
  const plain = sd('euler') as SigmaScheduler;
  plain.setTimesteps(8);
  close(e.sigmas[0]!, plain.sigmas[0]!, 1e-6, 'karras max');
  close(e.sigmas[7]!, plain.sigmas[7]!, 1e-6, 'karras min');
  assert.equal(e.sigmas[8], 0);
  const dpm = sd('dpm++2m', {}, true);
  dpm.setTimesteps(8);
  assert.equal(dpm.timesteps[0], 999);
  assert.ok(dpm.timesteps.every((t) => Number.isInteger(t)), 'DPM rounds Karras timesteps');
});

test('unknown schedulers and unsupported settings fail with the offending field named', () => {
  assert.throws(() => sd('heun'), /unknown scheduler 'heun'/);
  assert.throws(() => sd('ddim', { thresholding: true }), /thresholding=true is not supported/);
  assert.throws(() => sd('pndm', { skip_prk_steps: false }), /skip_prk_steps=false/);
  assert.throws(() => sd('ddim', {}, true), /Karras sigmas \(use_karras_sigmas\) apply to euler and dpm\+\+2m only, not ddim/);
  assert.doesNotThrow(() => sd('ddim', { use_karras_sigmas: true, final_sigmas_type: 'sigma_min' })); // fields DDIM does not read
  assert.throws(() => sd('euler', { prediction_type: 'sample' }), /prediction_type must be one of epsilon, v_prediction/);
  assert.throws(() => sd('euler', { beta_schedule: 'squaredcos_cap_v2' }), /beta_schedule must be one of/);
  assert.throws(() => sd('dpm++2m', { algorithm_type: 'sde-dpmsolver++' }), /algorithm_type/);
  assert.throws(() => sd('ddim').step(fill(0), 1, fill(0)), /call setTimesteps/);
  const s = sd('euler');
  s.setTimesteps(5);
  assert.throws(() => s.step(fill(0), 123, fill(0)), /timestep 123 is not one of/);
});
