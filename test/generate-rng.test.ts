import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Mt19937, TorchGenerator } from '../src/generate/torch-rng.js';
import { REPO_ROOT } from './helpers.js';

interface Call {
  shape: number[];
  n: number;
  values?: number[];
  first?: number[];
  last?: number[];
  sum?: number;
  sumsq?: number;
}
interface Case {
  seed: number;
  calls: Call[];
}

/** torch.randn reference values written by test/fixtures/torch/make_reference.py. */
const ref = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'test/fixtures/torch/randn.json'), 'utf8')) as { torch: string; cases: Case[] };

/** float32 transcendentals (AVX2 log/sin/cos approximations in torch) differ by a few ulp. */
const TOL = 2e-6;

function near(actual: ArrayLike<number>, expected: number[], offset: number, what: string): void {
  expected.forEach((e, i) => assert.ok(Math.abs(actual[offset + i]! - e) <= TOL, `${what}[${offset + i}]: ${actual[offset + i]} vs torch ${e}`));
}

test('MT19937 matches the reference sequence (seed 5489: 3499211612, 581869302, ...)', () => {
  const mt = new Mt19937(5489);
  assert.deepEqual([mt.next(), mt.next(), mt.next()], [3499211612, 581869302, 3890346734]);
  const m2 = new Mt19937(5489);
  for (let i = 0; i < 9999; i++) m2.next();
  assert.equal(m2.next(), 4123659995); // the C++ standard's check value for mt19937
});

test('TorchGenerator.randn equals torch.randn for every fixture case (scalar, vectorised, tail, cached sample)', () => {
  assert.ok(ref.cases.length >= 40);
  for (const c of ref.cases) {
    const g = new TorchGenerator(c.seed);
    c.calls.forEach((call, k) => {
      const what = `seed ${c.seed} call ${k} shape [${call.shape}]`;
      const v = g.randn(call.shape);
      assert.equal(v.length, call.n, what);
      if (call.values) near(v, call.values, 0, what);
      else {
        near(v, call.first!, 0, what);
        near(v, call.last!, v.length - call.last!.length, what);
        let s = 0;
        let s2 = 0;
        for (const x of v) {
          s += x;
          s2 += x * x;
        }
        assert.ok(Math.abs(s - call.sum!) < 1e-3 && Math.abs(s2 - call.sumsq!) < 1e-3, `${what}: sums ${s}, ${s2} vs ${call.sum}, ${call.sumsq}`);
      }
    });
  }
});

test('torch.manual_seed(0); torch.randn(5) gives the well-known values', () => {
  const v = new TorchGenerator(0).randn([5]);
  near(v, [1.5409961, -0.2934289, -2.1787894, 0.5684313, -1.0845224], 0, 'randn(5)');
});

test('manualSeed resets the engine and the cached Box-Muller sample; only the low 32 bits of a seed matter', () => {
  const g = new TorchGenerator(3);
  const a = g.randn([3]);
  g.randn([7]);
  g.manualSeed(3);
  assert.deepEqual(g.randn([3]), a);
  assert.deepEqual(new TorchGenerator(2 ** 32 + 9).randn([20]), new TorchGenerator(9).randn([20]));
  assert.throws(() => new TorchGenerator(-1), /seed must be an integer/);
  assert.throws(() => new TorchGenerator(1.5), /seed must be an integer/);
});
