import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeJsonAtomic } from '../src/io/atomic.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { loadSae, Sae, saeIdentity, saveSae } from '../src/sae/index.js';
import { memoryActivations } from '../src/collect/dataset.js';
import { Trainer } from '../src/train/index.js';
import { Rng } from '../src/util/rng.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'itd-sae-'));

/** Random SAE with non-zero biases (so b_pre and b_enc matter). */
function randomSae(d: number, n: number, k: number, seed = 1): Sae {
  const sae = Sae.random({ d, n, k, seed });
  const rng = new Rng(seed + 100);
  rng.fillNormal(sae.bEnc, 0.3);
  rng.fillNormal(sae.bPre, 0.5);
  rng.fillNormal(sae.wEnc, 0.3); // untie, so encoder and decoder mistakes cannot cancel
  return sae;
}

/** Plain-JS pre-activations [r, n] in float64. */
function refPre(sae: Sae, x: Float32Array, r: number): Float64Array {
  const { d, n } = sae;
  const pre = new Float64Array(r * n);
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < n; j++) {
      let s = sae.bEnc[j]!;
      for (let t = 0; t < d; t++) s += sae.wEnc[j * d + t]! * (x[i * d + t]! - sae.bPre[t]!);
      pre[i * n + j] = s;
    }
  }
  return pre;
}

test('encode matches a plain-JS TopK reference; decode matches the dense reconstruction', async () => {
  const [d, n, k, r] = [24, 96, 5, 7];
  const sae = randomSae(d, n, k);
  const x = new Rng(3).fillNormal(new Float32Array(r * d), 1);
  const codes = await sae.encode(x, r);
  assert.equal(codes.k, k);
  const pre = refPre(sae, x, r);
  for (let i = 0; i < r; i++) {
    const order = Array.from({ length: n }, (_, j) => j).sort((a, b) => pre[i * n + b]! - pre[i * n + a]!);
    for (let s = 0; s < k; s++) {
      assert.equal(codes.indices[i * k + s], order[s], `row ${i} slot ${s}`);
      assert.ok(Math.abs(codes.values[i * k + s]! - Math.max(0, pre[i * n + order[s]!]!)) < 1e-4);
    }
  }
  const xHat = sae.decode(codes.indices, codes.values, r, k);
  for (let i = 0; i < r; i++) {
    for (let t = 0; t < d; t++) {
      let s = sae.bPre[t]!;
      for (let q = 0; q < k; q++) s += codes.values[i * k + q]! * sae.wDec[codes.indices[i * k + q]! * d + t]!;
      assert.ok(Math.abs(xHat[i * d + t]! - s) < 1e-4);
    }
  }
  await sae.release();
});

test('batchtopk encode keeps exactly the latents above the threshold', async () => {
  const [d, n, r] = [16, 64, 5];
  const base = randomSae(d, n, 4);
  const sae = new Sae({ ...base.cfg, activation: 'batchtopk', threshold: 0.8 }, base);
  const x = new Rng(4).fillNormal(new Float32Array(r * d), 1);
  const codes = await sae.encode(x, r);
  const pre = refPre(sae, x, r);
  for (let i = 0; i < r; i++) {
    const above = new Set(Array.from({ length: n }, (_, j) => j).filter((j) => pre[i * n + j]! > 0.8));
    const got = new Set<number>();
    for (let s = 0; s < codes.k; s++) if (codes.values[i * codes.k + s]! > 0) got.add(codes.indices[i * codes.k + s]!);
    assert.deepEqual([...got].sort(), [...above].sort(), `row ${i}`);
  }
  await sae.release();
});

test('encodePre equals the chosen columns of the full pre-activations', async () => {
  const [d, n, r] = [32, 128, 6];
  const sae = randomSae(d, n, 8);
  const x = new Rng(5).fillNormal(new Float32Array(r * d), 1);
  const latents = Int32Array.of(5, 0, 127, 64, 5);
  const got = await sae.encodePre(x, r, latents);
  const pre = refPre(sae, x, r);
  for (let i = 0; i < r; i++) {
    latents.forEach((j, s) => assert.ok(Math.abs(got[i * latents.length + s]! - pre[i * n + j]!) < 1e-4));
  }
  await assert.rejects(sae.encodePre(x, r, Int32Array.of(n)), /latent 128 out of range/);
  await sae.release();
});

test('save/load round trip keeps weights, cfg and identity', async () => {
  const dir = tmp();
  const sae = randomSae(16, 64, 4);
  Object.assign(sae.cfg, { hookpoint: 'text_model.encoder.layers.8', layer: 8, model_id: 'abcdef0123456789' });
  saveSae(dir, sae);
  const back = loadSae(dir);
  assert.deepEqual(back.wEnc, sae.wEnc);
  assert.deepEqual(back.wDec, sae.wDec);
  assert.deepEqual(back.bEnc, sae.bEnc);
  assert.deepEqual(back.bPre, sae.bPre);
  assert.equal(back.cfg.layer, 8);
  assert.equal(back.k, 4);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'cfg.json'), 'utf8'));
  assert.equal(cfg.d_in, 16);
  assert.equal(cfg.num_latents, 64);
  assert.equal(cfg.multi_topk, false);
  const id = saeIdentity(dir);
  assert.match(id, /^[0-9a-f]{16}$/);
  sae.wDec[0]! += 1;
  saveSae(dir, sae);
  assert.notEqual(saeIdentity(dir), id);
});

test('OpenAI-layout files load (decoder.weight transposed; k from cfg.json or the option)', async () => {
  const dir = tmp();
  const [d, n] = [8, 32];
  const sae = randomSae(d, n, 3);
  const decT = new Float32Array(d * n);
  for (let j = 0; j < n; j++) for (let t = 0; t < d; t++) decT[t * n + j] = sae.wDec[j * d + t]!;
  const file = path.join(dir, 'ae.safetensors');
  writeSafetensors(file, {
    'encoder.weight': { dtype: 'F32', shape: [n, d], data: sae.wEnc },
    'decoder.weight': { dtype: 'F32', shape: [d, n], data: decT },
    pre_bias: { dtype: 'F32', shape: [d], data: sae.bPre },
    latent_bias: { dtype: 'F32', shape: [n], data: sae.bEnc },
  });
  assert.throws(() => loadSae(file), (e: Error) => e.message.includes(file) && /k unknown/.test(e.message));
  const back = loadSae(file, { k: 3 });
  assert.deepEqual(back.wDec, sae.wDec);
  assert.deepEqual(back.bPre, sae.bPre);
  const x = new Rng(9).fillNormal(new Float32Array(4 * d), 1);
  assert.deepEqual(await back.encode(x, 4), await sae.encode(x, 4));
  writeJsonAtomic(path.join(dir, 'cfg.json'), { k: 3 });
  assert.equal(loadSae(dir).k, 3);
  await back.release();
  await sae.release();
});

test('bad SAE files: errors name the file and the field', () => {
  const dir = tmp();
  const sae = randomSae(8, 16, 2);
  saveSae(dir, sae);
  const file = path.join(dir, 'sae.safetensors');
  writeJsonAtomic(path.join(dir, 'cfg.json'), { ...sae.cfg, d_in: 9 });
  assert.throws(() => loadSae(dir), (e: Error) => e.message.includes('cfg.json') && e.message.includes('"d_in"'));
  writeJsonAtomic(path.join(dir, 'cfg.json'), sae.cfg);
  writeSafetensors(file, {
    'encoder.weight': { dtype: 'F32', shape: [16, 8], data: sae.wEnc },
    'encoder.bias': { dtype: 'F32', shape: [16], data: sae.bEnc },
    W_dec: { dtype: 'F32', shape: [16, 8], data: sae.wDec },
    b_dec: { dtype: 'F32', shape: [4], data: sae.bPre.subarray(0, 4) },
  });
  assert.throws(() => loadSae(dir), (e: Error) => e.message.includes(file) && e.message.includes('"b_dec"') && /shape/.test(e.message));
  writeSafetensors(file, { 'encoder.weight': { dtype: 'F32', shape: [16, 8], data: sae.wEnc }, W_dec: { dtype: 'F32', shape: [16, 8], data: sae.wDec } });
  assert.throws(() => loadSae(dir), (e: Error) => e.message.includes(file) && e.message.includes('"encoder.bias"'));
  assert.throws(() => loadSae(path.join(dir, 'nope')), /not found/);
});

/** Writes the SAE and a batch for bench/sae_reference.py; returns its JSON output, or undefined without numpy. */
function runReference(file: string): Record<string, unknown> | undefined {
  try {
    execFileSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  return JSON.parse(execFileSync('python3', [path.join(import.meta.dirname, '..', 'bench', 'sae_reference.py'), file], { encoding: 'utf8' }));
}

test('encode, decode and the training loss (FVU + AuxK) agree with the numpy reference', async (t) => {
  const [d, n, k, B] = [16, 64, 4, 32];
  const sae = randomSae(d, n, k, 7);
  const x = new Rng(8).fillNormal(new Float32Array(B * d), 1);
  const dead = Int32Array.of(1, 5, 9, 20, 33, 40, 41, 63);
  const deadMask = new Uint8Array(n);
  for (const j of dead) deadMask[j] = 1;
  const file = path.join(tmp(), 'ref.safetensors');
  writeSafetensors(file, {
    W_enc: { dtype: 'F32', shape: [n, d], data: sae.wEnc }, b_enc: { dtype: 'F32', shape: [n], data: sae.bEnc },
    W_dec: { dtype: 'F32', shape: [n, d], data: sae.wDec }, b_pre: { dtype: 'F32', shape: [d], data: sae.bPre },
    x: { dtype: 'F32', shape: [B, d], data: x }, dead: { dtype: 'U8', shape: [n], data: deadMask },
  }, { k: String(k), k_aux: '3', aux_coef: String(1 / 32) });
  const ref = runReference(file);
  if (!ref) {
    t.skip('python3 with numpy not available');
    return;
  }
  const codes = await sae.encode(x, B);
  const refIdx = (ref['indices'] as number[][]).flat();
  const refVal = (ref['values'] as number[][]).flat();
  assert.deepEqual([...codes.indices], refIdx);
  refVal.forEach((v, i) => assert.ok(Math.abs(codes.values[i]! - v) < 1e-4));
  const xHat = sae.decode(codes.indices, codes.values, B, k);
  (ref['x_hat'] as number[][]).flat().forEach((v, i) => assert.ok(Math.abs(xHat[i]! - v) < 1e-4));
  const tr = Trainer.create(memoryActivations(x, d), { latents: n, k, kAux: 3, batch: B });
  for (const [name, arr] of [['wEnc', sae.wEnc], ['bEnc', sae.bEnc], ['wDec', sae.wDec], ['bPre', sae.bPre]] as const) tr.sae[name].set(arr);
  const g = await tr.gradients(x, B, dead);
  assert.ok(Math.abs(g.loss - (ref['loss'] as number)) < 1e-4 * Math.max(1, ref['loss'] as number), `loss ${g.loss} vs ${ref['loss']}`);
  const g0 = await tr.gradients(x, B);
  assert.ok(Math.abs(g0.loss - (ref['fvu'] as number)) < 1e-5, `fvu ${g0.loss} vs ${ref['fvu']}`);
  await tr.release();
  await sae.release();
});
