import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { memoryActivations, openActivations } from '../src/collect/dataset.js';
import { writeJsonAtomic } from '../src/io/atomic.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { loadSae } from '../src/sae/index.js';
import { main } from '../src/cli/index.js';
import { trainCommand } from '../src/cli/train-run.js';
import { defaultKernels, geometricMedian, geometricMedianJs, jsKernels, nativeIsas, nativeKernels, Trainer, type TrainConfig } from '../src/train/index.js';
import { evaluateSae } from '../src/train/eval.js';
import { Rng } from '../src/util/rng.js';
import { deadPid, treeSnapshot, withEnv } from './helpers.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'itd-train-'));

/** Rows = non-negative mixes of `active` of H hidden unit directions + noise + an offset. */
function sparseData(rows: number, D: number, H: number, seed = 11, active = 3): Float32Array {
  const rng = new Rng(seed);
  const dirs = rng.fillNormal(new Float32Array(H * D), 1);
  for (let h = 0; h < H; h++) {
    let s = 0;
    for (let t = 0; t < D; t++) s += dirs[h * D + t]! ** 2;
    for (let t = 0; t < D; t++) dirs[h * D + t]! /= Math.sqrt(s);
  }
  const x = rng.fillNormal(new Float32Array(rows * D), 0.02);
  for (let i = 0; i < rows; i++) {
    for (let s = 0; s < active; s++) {
      const h = rng.int(H);
      const a = 0.5 + 2 * rng.uniform();
      for (let t = 0; t < D; t++) x[i * D + t]! += a * dirs[h * D + t]!;
    }
    for (let t = 0; t < D; t++) x[i * D + t]! += 0.3;
  }
  return x;
}

type Cfg = Partial<TrainConfig> & Pick<TrainConfig, 'latents' | 'k'>;

async function run(x: Float32Array, D: number, cfg: Cfg, steps: number): Promise<Trainer> {
  const tr = Trainer.create(memoryActivations(x, D), cfg);
  for (let s = 0; s < steps; s++) await tr.trainStep();
  return tr;
}

// ---------------------------------------------------------------------------------------------
// Gradient check: the sparse backward against central finite differences of a float64 reference.

interface Params { wEnc: Float64Array; bEnc: Float64Array; wDec: Float64Array; bPre: Float64Array }

/** Reference forward in float64: codes, x_hat and pre-activations. */
function refForward(p: Params, x: Float32Array, B: number, D: number, n: number, k: number) {
  const pre = new Float64Array(B * n);
  const xHat = new Float64Array(B * D);
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < n; j++) {
      let s = p.bEnc[j]!;
      for (let t = 0; t < D; t++) s += p.wEnc[j * D + t]! * (x[b * D + t]! - p.bPre[t]!);
      pre[b * n + j] = s;
    }
    const top = Array.from({ length: n }, (_, j) => j).sort((a, c) => pre[b * n + c]! - pre[b * n + a]!).slice(0, k);
    for (let t = 0; t < D; t++) xHat[b * D + t] = p.bPre[t]!;
    for (const j of top) {
      const z = Math.max(0, pre[b * n + j]!);
      for (let t = 0; t < D; t++) xHat[b * D + t]! += z * p.wDec[j * D + t]!;
    }
  }
  return { pre, xHat };
}

function variance(m: ArrayLike<number>, B: number, D: number): number {
  let v = 0;
  for (let t = 0; t < D; t++) {
    let mean = 0;
    for (let b = 0; b < B; b++) mean += m[b * D + t]! / B;
    for (let b = 0; b < B; b++) v += (m[b * D + t]! - mean) ** 2;
  }
  return v;
}

/** FVU + auxCoef ||e_hat - r||^2 / V_r with r and V_r held fixed (the residual is a constant in AuxK). */
function refLoss(p: Params, x: Float32Array, B: number, D: number, n: number, k: number, dead: number[], kAux: number, auxCoef: number, r: Float64Array, vR: number): number {
  const { pre, xHat } = refForward(p, x, B, D, n, k);
  let sq = 0;
  for (let i = 0; i < B * D; i++) sq += (xHat[i]! - x[i]!) ** 2;
  let aux = 0;
  for (let b = 0; b < B; b++) {
    const top = [...dead].sort((a, c) => pre[b * n + c]! - pre[b * n + a]!).slice(0, kAux);
    for (let t = 0; t < D; t++) {
      let e = 0;
      for (const j of top) e += Math.max(0, pre[b * n + j]!) * p.wDec[j * D + t]!;
      aux += (e - r[b * D + t]!) ** 2;
    }
  }
  return sq / variance(x, B, D) + (dead.length ? (auxCoef * aux) / vR : 0);
}

test('sparse backward matches finite differences (main loss and AuxK)', async () => {
  const [D, n, k, B, kAux] = [8, 24, 3, 10, 2];
  const x = sparseData(B, D, 12, 3);
  const tr = Trainer.create(memoryActivations(x, D), { latents: n, k, batch: B, kAux, auxCoef: 0.5 });
  const rng = new Rng(21);
  rng.fillNormal(tr.sae.bEnc, 0.2);
  rng.fillNormal(tr.sae.wEnc, 0.4);
  const dead = [1, 4, 7, 11, 19];
  const g = await tr.gradients(x, B, Int32Array.from(dead));
  const p: Params = { wEnc: Float64Array.from(tr.sae.wEnc), bEnc: Float64Array.from(tr.sae.bEnc), wDec: Float64Array.from(tr.sae.wDec), bPre: Float64Array.from(tr.sae.bPre) };
  const { xHat } = refForward(p, x, B, D, n, k);
  const r = Float64Array.from(xHat, (v, i) => x[i]! - v);
  const vR = variance(r, B, D);
  const loss = () => refLoss(p, x, B, D, n, k, dead, kAux, 0.5, r, vR);
  assert.ok(Math.abs(g.loss - loss()) < 1e-4 * loss(), `loss ${g.loss} vs ${loss()}`);
  const eps = 1e-4;
  let checked = 0;
  for (const name of ['wEnc', 'bEnc', 'wDec', 'bPre'] as const) {
    for (let i = 0; i < p[name].length; i++) {
      const orig = p[name][i]!;
      p[name][i] = orig + eps;
      const up = loss();
      p[name][i] = orig - eps;
      const down = loss();
      p[name][i] = orig;
      const fd = (up - down) / (2 * eps);
      const got = g[name][i]!;
      assert.ok(Math.abs(fd - got) <= 2e-3 * Math.max(1, Math.abs(fd)), `${name}[${i}]: analytic ${got} vs finite difference ${fd}`);
      if (fd !== 0) checked++;
    }
  }
  assert.ok(checked > 100, `only ${checked} non-zero gradient entries checked`);
  await tr.release();
});

test('FVU falls on synthetic sparse data and decoder rows stay unit-norm', async () => {
  const D = 24;
  const x = sparseData(4096, D, 48);
  const tr = Trainer.create(memoryActivations(x, D), { latents: 128, k: 4, batch: 256, tokens: 256 * 80, lr: 4e-3 });
  const first = await tr.trainStep();
  let last = first;
  for (let s = 1; s < 80; s++) last = await tr.trainStep();
  assert.ok(last.fvu < 0.5 * first.fvu, `fvu ${first.fvu} -> ${last.fvu}`);
  for (let j = 0; j < 128; j++) {
    let s = 0;
    for (let t = 0; t < D; t++) s += tr.sae.wDec[j * D + t]! ** 2;
    assert.ok(Math.abs(Math.sqrt(s) - 1) < 1e-5, `row ${j} norm ${Math.sqrt(s)}`);
  }
  await tr.release();
});

/** Latents [0, half) start "dead": tiny encoder rows and a small positive bias keep them out of the TopK. */
async function deadFractionAfter(auxCoef: number): Promise<{ start: number; end: number }> {
  const D = 16;
  const n = 64;
  const x = sparseData(4096, D, 64, 5, 4);
  const tr = Trainer.create(memoryActivations(x, D), { latents: n, k: 4, batch: 256, tokens: 256 * 120, deadTokens: 512, auxCoef, lr: 4e-3 });
  for (let j = 0; j < n / 2; j++) {
    for (let t = 0; t < D; t++) tr.sae.wEnc[j * D + t]! *= 0.01;
    tr.sae.bEnc[j] = 0.01;
  }
  let start = 0;
  let end = 0;
  for (let s = 0; s < 120; s++) {
    const st = await tr.trainStep();
    if (s === 3) start = st.deadFraction;
    end = st.deadFraction;
  }
  await tr.release();
  return { start, end };
}

test('AuxK revives dead latents; without it they stay dead', async () => {
  const withAux = await deadFractionAfter(1 / 32);
  const without = await deadFractionAfter(0);
  assert.ok(withAux.start >= 0.45, `forced-dead share at start ${withAux.start}`);
  assert.ok(without.end >= 0.45, `without AuxK the dead share should stay: ${without.end}`);
  assert.ok(withAux.end < 0.5 * withAux.start, `AuxK should revive: ${withAux.start} -> ${withAux.end}`);
});

test('the dead window is counted in tokens, not steps', async () => {
  const D = 8;
  const x = sparseData(1024, D, 16);
  const firstDeadStep = async (batch: number) => {
    const tr = Trainer.create(memoryActivations(x, D), { latents: 32, k: 2, batch, tokens: batch * 12, deadTokens: 400, auxCoef: 0 });
    tr.sae.bEnc[0] = -1e4; // latent 0 can never fire
    for (let s = 1; s <= 12; s++) {
      const st = await tr.trainStep();
      if (st.deadFraction > 0) {
        await tr.release();
        return s;
      }
    }
    await tr.release();
    return -1;
  };
  // Dead once 400 tokens passed without firing: after 8 steps of 50 (step 9), 4 steps of 100 (step 5).
  assert.equal(await firstDeadStep(50), 9);
  assert.equal(await firstDeadStep(100), 5);
});

test('same seed gives identical weights; another seed does not', async () => {
  const D = 16;
  const x = sparseData(2048, D, 32);
  const cfg = { latents: 64, k: 4, batch: 128, tokens: 128 * 6, seed: 3 };
  const [a, b, c] = [await run(x, D, cfg, 6), await run(x, D, cfg, 6), await run(x, D, { ...cfg, seed: 4 }, 6)];
  assert.deepEqual(a.sae.wEnc, b.sae.wEnc);
  assert.deepEqual(a.sae.wDec, b.sae.wDec);
  assert.deepEqual(a.sae.bPre, b.sae.bPre);
  assert.notDeepEqual(a.sae.wEnc, c.sae.wEnc);
  for (const t of [a, b, c]) await t.release();
});

test('resuming from a checkpoint ends bit-identical to an uninterrupted run (across epochs, with AuxK)', async () => {
  const D = 16;
  const x = sparseData(700, D, 32);
  const cfg = { latents: 64, k: 4, batch: 128, tokens: 128 * 14, seed: 9, deadTokens: 256 };
  const full = await run(x, D, cfg, 14);
  const part = await run(x, D, cfg, 5);
  const file = path.join(tmp(), 'checkpoint', 'state.safetensors');
  part.saveCheckpoint(file);
  await part.release();
  const resumed = Trainer.resume(file, memoryActivations(x, D));
  while (resumed.step < 14) await resumed.trainStep();
  for (const key of ['wEnc', 'bEnc', 'wDec', 'bPre'] as const) assert.deepEqual(resumed.sae[key], full.sae[key], key);
  assert.deepEqual(resumed.sinceFired, full.sinceFired);
  await full.release();
  await resumed.release();
});

test('native kernels give the same weights for any thread count', async (t) => {
  if (!nativeKernels()) {
    t.skip('native addon not built');
    return;
  }
  const D = 24;
  const x = sparseData(2048, D, 40);
  const cfg = { latents: 700, k: 5, batch: 300, tokens: 1200, seed: 2 };
  const [a, b] = [await withThreads('1', () => run(x, D, cfg, 4)), await withThreads('3', () => run(x, D, cfg, 4))];
  for (const key of ['wEnc', 'bEnc', 'wDec', 'bPre'] as const) assert.deepEqual(a.sae[key], b.sae[key], key);
  await a.release();
  await b.release();
});

/** Runs f with ITD_THREADS set (the native kernels read it per call), then restores it. */
const withThreads = <T>(threads: string, f: () => Promise<T>): Promise<T> => withEnv('ITD_THREADS', threads, f);

test('JS and native kernels agree', async (t) => {
  const native = nativeKernels();
  if (!native) {
    t.skip('native addon not built');
    return;
  }
  const D = 20;
  const x = sparseData(1024, D, 40);
  const cfg = { latents: 300, k: 5, batch: 200, deadTokens: 200 };
  const runWith = async (kernels: typeof jsKernels) => {
    const tr = Trainer.create(memoryActivations(x, D), cfg, { kernels });
    for (let j = 0; j < 100; j++) tr.sae.bEnc[j] = -2;
    for (let s = 0; s < 4; s++) await tr.trainStep();
    return tr;
  };
  const [a, b] = [await runWith(jsKernels), await runWith(native)];
  for (const key of ['wEnc', 'bEnc', 'wDec', 'bPre'] as const) {
    let worst = 0;
    a.sae[key].forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b.sae[key][i]!))));
    assert.ok(worst < 1e-4, `${key} differs by ${worst}`);
  }
  await a.release();
  await b.release();
});

test('every ISA build of the native kernels trains to the same weights (AVX-512 = AVX2 bit for bit)', async (t) => {
  const isas = nativeIsas();
  if (!isas.includes('avx2')) {
    t.skip(`needs the AVX2 build to compare against; this CPU runs: ${isas.join(', ') || 'no native addon'}`);
    return;
  }
  // Odd sizes (D = 37, 301 latents) leave partial tiles and vector tails; dead latents switch AuxK on.
  const D = 37;
  const x = sparseData(1024, D, 40);
  const cfg = { latents: 301, k: 5, batch: 200, deadTokens: 200 };
  const runIsa = async (isa: string) => {
    const tr = Trainer.create(memoryActivations(x, D), cfg, { kernels: nativeKernels(isa) });
    for (let j = 0; j < 100; j++) tr.sae.bEnc[j] = -2;
    let aux = 0;
    for (let s = 0; s < 4; s++) aux += (await tr.trainStep()).auxLoss;
    assert.ok(aux > 0, `${isa}: AuxK never ran`);
    return tr;
  };
  const ref = await runIsa('avx2');
  for (const isa of isas.filter((i) => i !== 'avx2')) {
    const tr = await runIsa(isa);
    for (const key of ['wEnc', 'bEnc', 'wDec', 'bPre'] as const) {
      // The generic build has no FMA, so its roundings differ; the FMA builds must agree exactly.
      if (isa === 'avx512') assert.deepEqual(tr.sae[key], ref.sae[key], `${isa} ${key}`);
      else tr.sae[key].forEach((v, i) => assert.ok(Math.abs(v - ref.sae[key][i]!) < 1e-4, `${isa} ${key}[${i}]`));
    }
    await tr.release();
  }
  await ref.release();
  if (!isas.includes('avx512')) t.skip(`the AVX-512 build was not run: this CPU lacks AVX-512F/VL (runs ${isas.join(', ')})`);
});

test('ITD_NATIVE_ISA names the build; one this CPU cannot run is refused', (t) => {
  const isas = nativeIsas();
  if (isas.length === 0) {
    t.skip('native addon not built');
    return;
  }
  assert.equal(nativeKernels()?.isa, process.env['ITD_NATIVE_ISA'] || isas[0]);
  assert.equal(nativeKernels('generic')?.isa, 'generic');
  assert.throws(() => nativeKernels('avx1024'), /ITD_NATIVE_ISA=avx1024: this CPU runs only/);
});

test('native fused encoder TopK equals the onnxruntime encoder on odd sizes', async (t) => {
  const native = nativeKernels();
  if (!native?.encodeTopK) {
    t.skip('native addon not built');
    return;
  }
  const [B, D, n, k] = [37, 20, 333, 7];
  const { Sae } = await import('../src/sae/index.js');
  const sae = Sae.random({ d: D, n, k, seed: 3 });
  new Rng(4).fillNormal(sae.bEnc, 0.3);
  new Rng(5).fillNormal(sae.bPre, 0.3);
  const x = new Rng(6).fillNormal(new Float32Array(B * D), 1);
  const values = new Float32Array(B * k);
  const indices = new Int32Array(B * k);
  await native.encodeTopK({ B, D, n, k, x, bPre: sae.bPre, wEnc: sae.wEnc, bEnc: sae.bEnc, values, indices });
  const ref = await sae.encode(x, B);
  assert.deepEqual(indices, ref.indices);
  values.forEach((v, i) => assert.ok(Math.abs(v - ref.values[i]!) < 1e-4));
  await assert.rejects(async () => native.encodeTopK!({ B, D, n, k, x, bPre: sae.bPre, wEnc: sae.wEnc, bEnc: sae.bEnc, values: values.subarray(1), indices }), /values has/);
  await sae.release();
});

test('native fused encoder TopK is the exact top k (ties by index) on every ISA and thread count', async (t) => {
  const isas = nativeIsas();
  if (isas.length === 0) {
    t.skip('native addon not built');
    return;
  }
  // Small integers make every pre-activation exact in any summation order; latents repeat with period
  // 37, so the k best of a row are ties that only the index orders. D spans several K chunks of the
  // tiles, n several latent blocks (the threads share their gates), B partial panels.
  const [B, D, n, k, period] = [45, 300, 2000, 9, 37];
  const rng = new Rng(11);
  const ints = (len: number, span: number) => Float32Array.from({ length: len }, () => rng.int(2 * span + 1) - span);
  const [x, w, b0, bPre] = [ints(B * D, 2), ints(period * D, 2), ints(period, 40), new Float32Array(D)];
  const wEnc = Float32Array.from({ length: n * D }, (_, i) => w[i % (period * D)]!);
  const bEnc = Float32Array.from({ length: n }, (_, j) => b0[j % period]!);
  const want = { values: new Float32Array(B * k), indices: new Int32Array(B * k) };
  for (let b = 0; b < B; b++) {
    const pre = Array.from({ length: n }, (_, j) => {
      let s = bEnc[j]!;
      for (let i = 0; i < D; i++) s += x[b * D + i]! * wEnc[j * D + i]!;
      return { v: s, j };
    });
    pre.sort((p, q) => q.v - p.v || p.j - q.j);
    pre.slice(0, k).forEach((p, s) => {
      want.values[b * k + s] = Math.max(p.v, 0);
      want.indices[b * k + s] = p.j;
    });
  }
  for (const isa of isas) {
    for (const threads of ['1', '2', '3', '4']) {
      const got = { values: new Float32Array(B * k), indices: new Int32Array(B * k) };
      await withThreads(threads, () => nativeKernels(isa)!.encodeTopK!({ B, D, n, k, x, bPre, wEnc, bEnc, ...got }) as Promise<void>);
      assert.deepEqual(got, want, `${isa}, ${threads} threads`);
    }
  }
});

test('geometricMedian: the native loop gives the JS bits for any thread count; a row on the median is skipped', { skip: !nativeKernels() && 'native addon not built' }, async () => {
  const same = (a: Float64Array, b: Float64Array, what: string) => assert.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), what);
  // Odd sizes: a tail of rows past the 4-row groups, dimensions not a multiple of a vector.
  const [N, D] = [1001, 37];
  const x = new Rng(12).fillNormal(new Float32Array(N * D), 1);
  for (let i = 0; i < N * D; i += 3) x[i] = x[i]! * 4 + 1; // skewed, so the median is not the mean
  const want = withEnv('ITD_NATIVE', '0', async () => geometricMedian(x, D));
  for (const threads of ['1', '2', '3']) same(await withThreads(threads, async () => geometricMedian(x, D)), await want, `${threads} threads`);
  same(await want, geometricMedianJs(x, D), 'ITD_NATIVE=0 runs the JS loop');
  // Pairs r, -r and a zero row: the mean is exactly 0 and the zero row sits on it (distance 0).
  const r = new Rng(13).fillNormal(new Float32Array(8 * D), 1);
  const sym = new Float32Array(17 * D);
  for (let i = 0; i < 8; i++) {
    sym.set(r.subarray(i * D, (i + 1) * D), 2 * i * D);
    sym.set(r.subarray(i * D, (i + 1) * D).map((v) => -v), (2 * i + 1) * D);
  }
  const y = geometricMedian(sym, D);
  same(y, geometricMedianJs(sym, D), 'symmetric set');
  assert.ok(y.every((v) => v === 0), 'the median of a symmetric set is 0');
});

test('native AuxK equals the onnxruntime AuxK graph on odd sizes, for any thread count', async (t) => {
  const native = nativeKernels();
  if (!native?.auxK) {
    t.skip('native addon not built');
    return;
  }
  // B > 512 walks the GEMMs' K in two chunks; no size is a multiple of the 6 x 16 tile.
  const [B, D, m, k] = [601, 21, 29, 9];
  const rng = new Rng(8);
  const arr = (len: number, s = 1) => rng.fillNormal(new Float32Array(len), s);
  const fixed = { xc: arr(B * D), g: arr(B * D, 0.1), we: arr(m * D, 0.3), be: arr(m, 0.3), wd: arr(m * D, 0.3), rScale: -3, cAux: 0.02 };
  const runNative = (threads: string) => withThreads(threads, async () => {
    const out = { dWe: new Float32Array(m * D), dBe: new Float32Array(m), dWd: new Float32Array(m * D), sqErr: new Float64Array(1) };
    await native.auxK!({ B, D, m, k, ...fixed, ...out });
    return out;
  });
  const [a, b] = [await runNative('1'), await runNative('3')];
  for (const key of ['dWe', 'dBe', 'dWd', 'sqErr'] as const) assert.deepEqual(a[key], b[key], key);
  const { auxKGraph } = await import('../src/train/graphs.js');
  const { createSession, f32, i64 } = await import('../src/onnx/session.js');
  const s = await createSession(auxKGraph(D));
  const o = await s.run({
    xc: f32(fixed.xc, [B, D]), g: f32(fixed.g, [B, D]), we: f32(fixed.we, [m, D]), be: f32(fixed.be, [m]), wd: f32(fixed.wd, [m, D]),
    r_scale: f32(Float32Array.of(fixed.rScale), [1]), c_aux: f32(Float32Array.of(fixed.cAux), [1]), k: i64(BigInt64Array.of(BigInt(k)), [1]),
  });
  const close = (got: ArrayLike<number>, want: ArrayLike<number>, name: string) => {
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < want.length; i++) {
      worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      scale = Math.max(scale, Math.abs(want[i]!));
    }
    assert.ok(scale > 0 && worst <= 1e-4 * scale, `${name}: off by ${worst} (scale ${scale})`);
  };
  close(a.dWe, o['d_we']!.data as Float32Array, 'd_we');
  close(a.dBe, o['d_be']!.data as Float32Array, 'd_be');
  close(a.dWd, o['d_wd']!.data as Float32Array, 'd_wd');
  close(a.sqErr, o['sq_err']!.data as Float32Array, 'sq_err');
  await s.release();
  await assert.rejects(async () => native.auxK!({ B, D, m, k: m + 1, ...fixed, ...a }), /1 <= k <= m/);
});

// ---------------------------------------------------------------------------------------------
// Data and CLI.

function writeActs(file: string, x: Float32Array, D: number): void {
  writeSafetensors(file, { activations: { dtype: 'F32', shape: [x.length / D, D], data: x } });
}

function writeActsDir(dir: string, x: Float32Array, D: number, shardRows: number, extra: Record<string, unknown> = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  const rows = x.length / D;
  const shards = [];
  for (let s = 0; s * shardRows < rows; s++) {
    const file = `shard-${String(s).padStart(5, '0')}.safetensors`;
    const r = Math.min(shardRows, rows - s * shardRows);
    const n = Int32Array.from({ length: r }, (_, i) => i);
    writeSafetensors(path.join(dir, file), {
      activations: { dtype: 'F16', shape: [r, D], data: x.subarray(s * shardRows * D, (s * shardRows + r) * D) },
      prompt_index: { dtype: 'I32', shape: [r], data: n }, position: { dtype: 'I32', shape: [r], data: n }, token_id: { dtype: 'I32', shape: [r], data: n },
    });
    shards.push({ file, rows: r, sha256: crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, file))).digest('hex') });
  }
  writeJsonAtomic(path.join(dir, 'manifest.json'), {
    format: 'itd-activations/1', model: { id: '0123456789abcdef', dir: '/models/x' }, layer: 8, hookpoint: 'text_model.encoder.layers.8',
    d: D, dtype: 'F16', exclude: ['bos', 'pad'], prompts: ['a'], rows, complete: true, shards, ...extra,
  });
}

test('activation sets: manifest dirs (F16 shards) read back, bad data gives errors naming file and row', async () => {
  const D = 8;
  const x = sparseData(100, D, 8);
  const dir = path.join(tmp(), 'acts');
  writeActsDir(dir, x, D, 40);
  const set = openActivations(dir, { cacheBytes: 0 });
  assert.equal(set.rows, 100);
  assert.equal(set.layer, 8);
  assert.equal(set.modelId, '0123456789abcdef');
  const want = [99, 0, 41, 40, 41, 79, 80];
  const rows = set.readRows(want);
  for (const [i, r] of want.entries()) {
    for (let t = 0; t < D; t++) assert.ok(Math.abs(rows[i * D + t]! - x[r * D + t]!) < 2e-2);
  }
  assert.deepEqual(await set.readRowsAsync(want), rows);
  set.close();
  // Loaded whole (the F16 shards decoded, off the JS thread): the same rows; a plain F32 file is read in place.
  const whole = openActivations(dir);
  await whole.preload();
  assert.deepEqual(whole.readRows(want), rows);
  whole.close();
  const f32File = path.join(tmp(), 'f32.safetensors');
  writeActs(f32File, x, D);
  const f32 = openActivations(f32File);
  await f32.preload();
  assert.deepEqual(f32.readRange(0, 100), x);
  f32.close();

  fs.appendFileSync(path.join(dir, 'shard-00001.safetensors'), 'x');
  const corrupt = openActivations(dir, { cacheBytes: 0 });
  corrupt.readRange(0, 10); // shard 0 is fine
  assert.throws(() => corrupt.readRange(50, 2), (e: Error) => e.message.includes('shard-00001.safetensors') && /sha256/.test(e.message));
  fs.rmSync(path.join(dir, 'shard-00002.safetensors'));
  assert.throws(() => openActivations(dir), (e: Error) => e.message.includes('shard-00002.safetensors') && /missing/.test(e.message));

  const bad = Float32Array.from(x);
  bad[37 * D + 3] = NaN;
  const file = path.join(tmp(), 'nan.safetensors');
  writeActs(file, bad, D);
  assert.throws(() => openActivations(file).readRange(0, 100), (e: Error) => e.message.includes(file) && /row 37/.test(e.message));
  await assert.rejects(openActivations(file, { cacheBytes: 0 }).readRowsAsync([5, 37]), (e: Error) => e.message.includes(file) && /row 37/.test(e.message));
  await assert.rejects(openActivations(file).preload(), (e: Error) => e.message.includes(file) && /row 37/.test(e.message));
  const empty = path.join(tmp(), 'empty.safetensors');
  writeSafetensors(empty, { activations: { dtype: 'F32', shape: [0, D], data: new Float32Array(0) } });
  assert.throws(() => openActivations(empty), (e: Error) => e.message.includes(empty) && /empty/.test(e.message));
  const noActs = path.join(tmp(), 'other.safetensors');
  writeSafetensors(noActs, { foo: { dtype: 'F32', shape: [2], data: new Float32Array(2) } });
  assert.throws(() => openActivations(noActs), (e: Error) => e.message.includes(noActs) && /"activations"/.test(e.message));
});

test('resume refuses activations of another D or model', async () => {
  const x = sparseData(256, 8, 8);
  const tr = await run(x, 8, { latents: 16, k: 2, batch: 64 }, 1);
  const file = path.join(tmp(), 'state.safetensors');
  tr.saveCheckpoint(file);
  await tr.release();
  assert.throws(() => Trainer.resume(file, memoryActivations(sparseData(256, 4, 8), 4)), /D=4.*D=8/);
  const dirA = path.join(tmp(), 'a');
  writeActsDir(dirA, x, 8, 256);
  const trA = Trainer.create(openActivations(dirA), { latents: 16, k: 2, batch: 64 });
  trA.saveCheckpoint(file);
  await trA.release();
  const dirB = path.join(tmp(), 'b');
  writeActsDir(dirB, x, 8, 256, { layer: 9, hookpoint: 'text_model.encoder.layers.9' });
  assert.throws(() => Trainer.resume(file, openActivations(dirB)), /different model\/layer/);
});

test('trainCommand trains on a plain activations file, logs, checkpoints, refuses a used --out', async () => {
  const D = 16;
  const root = tmp();
  const acts = path.join(root, 'acts.safetensors');
  writeActs(acts, sparseData(2048, D, 32), D);
  const evalFile = path.join(root, 'eval.safetensors');
  writeActs(evalFile, sparseData(4096 + 512, D, 32, 12), D); // more rows than a log line scores
  const out = path.join(root, 'sae');
  const args = { acts, out, latents: '64', k: '4', batch: '128', tokens: '2048', 'log-every': '4', 'eval-shard': evalFile };
  process.env['ITD_QUIET'] = '1';
  await trainCommand(args);
  const sae = loadSae(out);
  assert.equal(sae.n, 64);
  const training = sae.cfg.training as Record<string, unknown>;
  assert.equal(training['steps'], 16);
  assert.ok(typeof (training['eval'] as Record<string, number>)['fvu'] === 'number');
  const log = fs.readFileSync(path.join(out, 'train_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(log.length, 4);
  for (const key of ['step', 'tokens', 'fvu', 'l0', 'dead_fraction', 'aux_loss', 'tokens_per_s', 'eval_fvu']) assert.ok(key in log[0], key);
  // The last line's eval_fvu comes from the final evaluation's first 4096 rows: what scoring those alone gives.
  const evalSet = openActivations(evalFile);
  assert.equal(log.at(-1).eval_fvu, (await evaluateSae(sae, evalSet, { maxRows: 4096 })).fvu);
  assert.equal((training['eval'] as Record<string, number>)['rows'], 4096 + 512);
  assert.equal((training['eval'] as Record<string, number>)['fvu'], (await evaluateSae(sae, evalSet)).fvu);
  evalSet.close();
  assert.ok(fs.existsSync(path.join(out, 'checkpoint', 'state.safetensors')));
  await assert.rejects(trainCommand(args), /not empty.*--resume.*--force/);
  await trainCommand({ ...args, force: true });
  await assert.rejects(trainCommand({ ...args, out: path.join(root, 'x'), latents: 'many' }), /--latents must be an integer/);
});

/** Runs `itd train` in a child process; resolves with its exit code. Interrupts once `interruptAt` is logged. */
function trainChild(args: string[], interruptAt?: string): Promise<number> {
  const code = `import { trainCommand } from ${JSON.stringify(path.join(import.meta.dirname, '..', 'src', 'cli', 'train-run.ts'))};
const a = process.argv.slice(1); const o = {}; for (let i = 0; i < a.length; i++) { const k = a[i].slice(2); if (a[i + 1] === undefined || a[i + 1].startsWith('--')) o[k] = true; else o[k] = a[++i]; }
await trainCommand(o);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, '--', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ITD_QUIET: '1' } });
  let err = '';
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    if (interruptAt && err.includes(interruptAt)) {
      interruptAt = undefined;
      child.kill('SIGINT');
    }
  });
  return new Promise((resolve) => child.on('exit', (c) => resolve(c ?? -1)));
}

test('Ctrl-C checkpoints after the step; --resume ends bit-identical to an uninterrupted run', async () => {
  const D = 16;
  const root = tmp();
  const acts = path.join(root, 'acts.safetensors');
  writeActs(acts, sparseData(3000, D, 32), D);
  const common = ['--acts', acts, '--latents', '64', '--k', '4', '--batch', '100', '--tokens', '40000', '--log-every', '1', '--seed', '5'];
  assert.equal(await trainChild([...common, '--out', path.join(root, 'full')]), 0);
  assert.equal(await trainChild([...common, '--out', path.join(root, 'cut')], 'step 30 '), 130);
  assert.ok(!fs.existsSync(path.join(root, 'cut', 'sae.safetensors')));
  assert.equal(await trainChild([...common, '--out', path.join(root, 'cut'), '--resume']), 0);
  const a = loadSae(path.join(root, 'full'));
  const b = loadSae(path.join(root, 'cut'));
  assert.deepEqual(b.wEnc, a.wEnc);
  assert.deepEqual(b.wDec, a.wDec);
  assert.deepEqual(b.bPre, a.bPre);
});

test('BatchTopK: k*B activations per batch, learned threshold used at inference', async () => {
  const D = 16;
  const x = sparseData(4096, D, 32);
  const tr = Trainer.create(memoryActivations(x, D), { latents: 64, k: 4, batch: 256, tokens: 256 * 40, activation: 'batchtopk', lr: 4e-3 });
  const first = await tr.trainStep();
  let last = first;
  for (let s = 1; s < 40; s++) last = await tr.trainStep();
  assert.ok(last.l0 <= 4 + 1e-9 && last.l0 > 3, `l0 ${last.l0}`);
  assert.ok(last.fvu < 0.6 * first.fvu, `fvu ${first.fvu} -> ${last.fvu}`);
  const thr = tr.sae.threshold!;
  assert.ok(Number.isFinite(thr) && thr > 0, `threshold ${thr}`);
  const dir = tmp();
  const { saveSae } = await import('../src/sae/index.js');
  saveSae(dir, tr.sae);
  const sae = loadSae(dir);
  assert.equal(sae.activation, 'batchtopk');
  assert.equal(sae.threshold, thr);
  const codes = await sae.encode(x.subarray(0, 512 * D), 512);
  let active = 0;
  for (const v of codes.values) {
    if (v > 0) {
      active++;
      assert.ok(v > thr);
    }
  }
  assert.ok(active / 512 > 1 && active / 512 < 12, `inference L0 ${active / 512}`);
  await sae.release();
  await tr.release();
});

test('sae info and sae eval report the SAE and write the firing histogram', async () => {
  const { saeEvalCommand, saeInfoCommand } = await import('../src/cli/train-run.js');
  const D = 16;
  const root = tmp();
  const acts = path.join(root, 'acts.safetensors');
  writeActs(acts, sparseData(1024, D, 32), D);
  const out = path.join(root, 'sae');
  process.env['ITD_QUIET'] = '1';
  await trainCommand({ acts, out, latents: '64', k: '4', batch: '128' });
  const printed: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => (printed.push(s), true)) as typeof process.stdout.write;
  try {
    await saeInfoCommand({}, [out]);
    await saeEvalCommand({ sae: out, acts, svg: path.join(root, 'freq.svg') });
  } finally {
    process.stdout.write = write;
  }
  const text = printed.join('');
  assert.match(text, /identity\s+[0-9a-f]{16}/);
  assert.match(text, /latents 64 {2}k 4/);
  assert.match(text, /fvu 0\.\d+/);
  assert.match(text, /dead \d+\.\d+%/);
  const kernels = defaultKernels();
  assert.ok(text.includes(`kernels ${kernels.isa ? `native (${kernels.isa})` : 'js'}\n`), text);
  if (kernels.isa) assert.ok(text.includes(`isa: "${kernels.isa}"`), 'train records the ISA in cfg.json');
  const svg = fs.readFileSync(path.join(root, 'freq.svg'), 'utf8');
  assert.match(svg, /^<svg/);
  assert.match(svg, /dead: \d+/);
});

test('--resume of a finished run changes nothing; a run killed before saving its SAE keeps the logged stats', async () => {
  const D = 16;
  const root = tmp();
  const acts = path.join(root, 'acts.safetensors');
  writeActs(acts, sparseData(1024, D, 32), D);
  const out = path.join(root, 'sae');
  const args = { acts, out, latents: '64', k: '4', batch: '128', tokens: '1024', 'log-every': '2' };
  process.env['ITD_QUIET'] = '1';
  await trainCommand(args);
  const before = treeSnapshot(out);
  await trainCommand({ ...args, resume: true });
  assert.deepEqual(treeSnapshot(out), before, 'no file rewritten, no log line appended');
  // Through the CLI's parser: --resume alone takes every setting from the checkpoint (no flag default
  // stands in for an untyped flag); a flag that contradicts the checkpoint is refused.
  assert.equal(await main(['train', '--acts', acts, '--out', out, '--resume']), 0);
  assert.deepEqual(treeSnapshot(out), before);
  assert.equal(await main(['train', '--acts', acts, '--out', out, '--resume', '--latents', '32']), 1);

  // Killed after the last checkpoint, before sae.safetensors/cfg.json: --resume saves the same SAE and stats.
  const cfgBefore = JSON.parse(before['cfg.json']!.bytes.toString()) as { training: Record<string, unknown> };
  fs.rmSync(path.join(out, 'sae.safetensors'));
  fs.rmSync(path.join(out, 'cfg.json'));
  await trainCommand({ ...args, resume: true });
  assert.deepEqual(fs.readFileSync(path.join(out, 'sae.safetensors')), before['sae.safetensors']!.bytes);
  const cfgAfter = JSON.parse(fs.readFileSync(path.join(out, 'cfg.json'), 'utf8')) as { training: Record<string, unknown> };
  for (const key of ['fvu', 'l0', 'aux_loss', 'steps', 'tokens']) assert.equal(cfgAfter.training[key], cfgBefore.training[key], key);
});

test('train removes temp files of killed runs (dead PIDs) in --out and its checkpoint dir', async () => {
  const D = 16;
  const root = tmp();
  const acts = path.join(root, 'acts.safetensors');
  writeActs(acts, sparseData(512, D, 32), D);
  const out = path.join(root, 'sae');
  const args = { acts, out, latents: '32', k: '4', batch: '128', tokens: '1024', 'checkpoint-every': '2' };
  process.env['ITD_QUIET'] = '1';
  await trainCommand({ ...args, tokens: '256' });
  const dead = deadPid();
  const stale = [path.join(out, `sae.safetensors.tmp-${dead}`), path.join(out, 'checkpoint', `state.safetensors.tmp-${dead}`)];
  for (const f of stale) fs.writeFileSync(f, 'half a file');
  await trainCommand({ ...args, force: true });
  for (const f of stale) assert.ok(!fs.existsSync(f), `${f} removed`);
  assert.equal(loadSae(out).n, 32);
});
