/**
 * The loading loops the native addon takes over from JS (T5 int8 block quantisation, f16 / bf16 ->
 * f32) give the same bytes as their JS definitions, on the shapes and values where rounding and
 * JS's number rules differ most: ties, a ragged last block, zero rows, huge, subnormal, NaN and Inf.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { quantize8, quantize8Js } from '../src/encoder/t5/linear.js';
import { bf16ArrayToF32, f16ArrayToF32, widenHalfJs } from '../src/io/safetensors.js';
import { loadAddon } from '../src/util/addon.js';
import { withEnv } from './helpers.js';

const addon = loadAddon();
const noNative = !addon?.quantize8 && 'native addon not built (or built before quantize8)';
const BLOCK = 32;

/** Deterministic uniform [0, 1) (mulberry32). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/**
 * rows x cols weights mixing the awkward cases: gaussian-ish values at magnitudes from 1e-42 to
 * 3e38, exact ties w = (k + 1/2) 2^e in blocks whose scale is exactly 2^e (max 127 2^e), the f32
 * values nearest to ties at other scales, zero blocks, -0, and a few NaN / Inf.
 */
function awkward(rows: number, cols: number, seed: number, specials: boolean): Float32Array {
  const r = rng(seed);
  const w = new Float32Array(rows * cols);
  const mags = [1, 1e-3, 3e38, 1e38, 1e-30, 1e-38, 1e-40, 1e-42, 0];
  for (let row = 0; row < rows; row++) {
    for (let b0 = 0; b0 < cols; b0 += BLOCK) {
      const b1 = Math.min(cols, b0 + BLOCK);
      const kind = r();
      const e = Math.floor(r() * 60) - 30;
      const max = Math.fround(127 * (1 + r()) * 2 ** e);
      const scale = Math.fround(max / 127);
      for (let i = row * cols + b0; i < row * cols + b1; i++) {
        const half = Math.floor(r() * 253) - 126 + 0.5;
        if (kind < 0.3) w[i] = half * 2 ** e; // ties at scale 2^e ...
        else if (kind < 0.55) w[i] = Math.fround(half * scale); // the f32 nearest a tie: an f32 quotient would round onto it
        else w[i] = (r() + r() + r() - 1.5) * mags[Math.floor(r() * mags.length)]!;
      }
      if (kind < 0.3) w[row * cols + b0] = 127 * 2 ** e * (r() < 0.5 ? -1 : 1); // ... which this max sets
      else if (kind < 0.55) w[row * cols + b0] = max;
      if (kind > 0.95) w.fill(r() < 0.5 ? 0 : -0, row * cols + b0, row * cols + b1);
      if (specials && kind > 0.9 && kind <= 0.95) w[row * cols + b0 + Math.floor(r() * (b1 - b0))] = [NaN, Infinity, -Infinity][Math.floor(r() * 3)]!;
    }
  }
  return w;
}

function both(w: Float32Array, rows: number, cols: number) {
  const n = rows * Math.ceil(cols / BLOCK);
  const js = { codes: new Uint8Array(n * BLOCK).fill(7), scales: new Float32Array(n).fill(7) };
  quantize8Js(w, rows, cols, js.codes, js.scales);
  const native = { codes: new Uint8Array(n * BLOCK).fill(7), scales: new Float32Array(n).fill(7) };
  addon!.quantize8!({ w, rows, cols, codes: native.codes, scales: native.scales });
  return { js, native };
}

/** Equal as bits (NaN scales included), first mismatch named. */
function sameBits(a: Uint8Array | Float32Array, b: Uint8Array | Float32Array, what: string): void {
  const [x, y] = [new Uint8Array(a.buffer, a.byteOffset, a.byteLength), new Uint8Array(b.buffer, b.byteOffset, b.byteLength)];
  assert.equal(x.length, y.length, `${what}: length`);
  const at = x.findIndex((v, i) => v !== y[i]);
  assert.equal(at, -1, `${what}: first differing byte ${at}`);
}

test('quantize8Js: scale max/127 rounded to f32, Math.round ties toward +Inf, tail padded with 128', () => {
  // One row, 35 inputs: a full block (max 127 -> scale 1) and a tail of 3 (max 2 -> scale f32(2/127)).
  const w = new Float32Array(35);
  w.set([127, -63.5, 63.5, 0.5, -0.5, -0, 1.4999999, -126.5]);
  w.set([2, -1, 0.5], 32);
  const codes = new Uint8Array(64);
  const scales = new Float32Array(2);
  quantize8Js(w, 1, 35, codes, scales);
  assert.deepEqual([...scales], [1, Math.fround(2 / 127)]);
  assert.deepEqual([...codes.subarray(0, 9)], [255, 65, 192, 129, 128, 128, 129, 2, 128]);
  const s = Math.fround(2 / 127);
  assert.deepEqual([...codes.subarray(32, 36)], [Math.round(2 / s) + 128, Math.round(-1 / s) + 128, Math.round(0.5 / s) + 128, 128]);
  assert.ok(codes.subarray(35).every((c) => c === 128), 'padding');
  // Blocks JS's number rules reach: NaN max -> scale 1 and codes modulo 256; an Inf max -> scale Inf.
  const odd = new Float32Array(64);
  odd.set([NaN, 300, -3.5], 0);
  odd.set([Infinity, 5, -Infinity], 32);
  const c2 = new Uint8Array(64);
  const s2 = new Float32Array(2);
  quantize8Js(odd, 1, 64, c2, s2);
  assert.deepEqual([...s2], [1, Infinity]);
  assert.deepEqual([...c2.subarray(0, 4)], [0, (300 + 128) % 256, 125, 128]);
  assert.deepEqual([...c2.subarray(32, 36)], [0, 128, 0, 128]);
});

test('native quantize8 gives the JS bytes and scales on awkward shapes and values', { skip: noNative }, () => {
  const shapes: [number, number][] = [[0, 37], [1, 1], [3, 31], [5, 32], [4, 33], [17, 100], [2, 4096 + 7], [40, 96]];
  for (const [i, [rows, cols]] of shapes.entries()) {
    for (const specials of [false, true]) {
      const w = awkward(rows, cols, 11 + i, specials);
      const { js, native } = both(w, rows, cols);
      sameBits(native.codes, js.codes, `codes ${rows}x${cols}${specials ? ' with NaN/Inf' : ''}`);
      sameBits(native.scales, js.scales, `scales ${rows}x${cols}${specials ? ' with NaN/Inf' : ''}`);
    }
  }
});

test('native quantize8: every tie of a scale-1 block and the JS rounding of near-ties', { skip: noNative }, () => {
  // The 254 half-integers -126.5 ... 126.5 (row 0), and each nudged 2^-17 away from zero (row 1) and
  // toward it (row 2); the last input of every block is 127, so every scale is exactly 1.
  const cols = 9 * BLOCK;
  const w = new Float32Array(3 * cols);
  const expected: number[][] = [[], [], []];
  const slots = Array.from({ length: cols }, (_, p) => p).filter((p) => p % BLOCK !== BLOCK - 1);
  for (let k = 0; k < 254; k++) {
    const h = k - 126.5;
    const d = Math.sign(h) * 2 ** -17;
    for (const [r, v, code] of [[0, h, Math.floor(h + 0.5)], [1, h + d, Math.round(h + d)], [2, h - d, Math.round(h - d)]] as const) {
      w[r * cols + slots[k]!] = v;
      expected[r]!.push(code + 128);
    }
  }
  for (let b = 0; b < 9; b++) for (let r = 0; r < 3; r++) w[r * cols + b * BLOCK + BLOCK - 1] = 127;
  const { js, native } = both(w, 3, cols);
  assert.deepEqual([...js.scales], new Array(27).fill(1));
  for (let r = 0; r < 3; r++) assert.deepEqual(slots.slice(0, 254).map((p) => js.codes[r * cols + p]), expected[r], `row ${r}`);
  sameBits(native.codes, js.codes, 'codes');
  assert.equal(expected[0]![126], 128); // -0.5 -> -0
  assert.equal(expected[0]![127], 129); // 0.5 -> 1
});

test('native quantize8 does not depend on the thread count; it checks the array sizes', { skip: noNative }, async () => {
  const [rows, cols] = [70, 300];
  const w = awkward(rows, cols, 5, true);
  const run = () => {
    const codes = new Uint8Array(rows * 10 * BLOCK);
    const scales = new Float32Array(rows * 10);
    addon!.quantize8!({ w, rows, cols, codes, scales });
    return { codes, scales };
  };
  const one = await withEnv('ITD_THREADS', '1', async () => run());
  const three = await withEnv('ITD_THREADS', '3', async () => run());
  sameBits(one.codes, three.codes, 'codes');
  sameBits(one.scales, three.scales, 'scales');
  assert.throws(() => addon!.quantize8!({ w, rows, cols, codes: new Uint8Array(rows * 10 * BLOCK - 1), scales: new Float32Array(rows * 10) }), /codes/);
  assert.throws(() => addon!.quantize8!({ w: w.subarray(1), rows, cols, codes: new Uint8Array(rows * 10 * BLOCK), scales: new Float32Array(rows * 10) }), /'w'/);
});

test('quantize8 picks the addon unless ITD_NATIVE=0, with the same result', async () => {
  const [rows, cols] = [9, 70];
  const w = awkward(rows, cols, 8, false);
  const a = new Uint8Array(rows * 3 * BLOCK);
  const b = new Uint8Array(rows * 3 * BLOCK);
  const sa = quantize8(w, rows, cols, a);
  const sb = await withEnv('ITD_NATIVE', '0', async () => quantize8(w, rows, cols, b));
  sameBits(a, b, 'codes');
  sameBits(sa, sb, 'scales');
  assert.equal(a[0]! + b[0]! > 0, true);
});

test('native f16 / bf16 -> f32 give the JS bits for all 65536 patterns (NaN included), any length', { skip: !addon?.f16ToF32 && 'native addon not built' }, () => {
  const all = new Uint16Array(3 * 65536 + 5).map((_, i) => (i * 40503) & 0xffff); // every pattern, and past one task's chunk
  for (const [dtype, widen] of [['F16', f16ArrayToF32], ['BF16', bf16ArrayToF32]] as const) {
    const js = new Float32Array(all.length);
    widenHalfJs(dtype, all, js);
    sameBits(widen(all), js, dtype);
    sameBits(widen(all.subarray(3, 3)), new Float32Array(0), `${dtype} empty`);
  }
  assert.equal(new Uint32Array(f16ArrayToF32(Uint16Array.of(0x7e01, 0xfc01)).buffer)[1], 0x7fc00000); // the JS table's canonical NaN
  assert.equal(bf16ArrayToF32(Uint16Array.of(0xc040))[0], -3);
});
