import assert from 'node:assert/strict';
import { test } from 'node:test';
import { contactSheet, sideBySide, toRgb, type RgbImage } from '../src/generate/image.js';
import { Rng } from '../src/util/rng.js';

function randomImage(width: number, height: number, seed: number): RgbImage {
  const rng = new Rng(seed);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
  return { width, height, data };
}

test('decoder output -> RGB rounds clamp(x/2 + 0.5) * 255 like diffusers, channels interleaved', () => {
  // [3, 1, 2]: R = (-1, 1), G = (0, 2), B = (-3, 0.5)
  const img = toRgb(Float32Array.of(-1, 1, 0, 2, -3, 0.5), 2, 1);
  assert.deepEqual([...img.data], [0, 128, 0, 255, 255, 191]); // 0.5*255 = 127.5 -> 128 (even), 0.75*255 = 191.25
});

test('side-by-side composition and the contact sheet', () => {
  const a = randomImage(3, 2, 3);
  const b = randomImage(4, 3, 4);
  const c = sideBySide([a, b], 2);
  assert.equal(c.width, 9);
  assert.equal(c.height, 3);
  assert.deepEqual([...c.data.subarray(0, 9)], [...a.data.subarray(0, 9)]); // a's first row
  assert.deepEqual([...c.data.subarray(9, 15)], [255, 255, 255, 255, 255, 255]); // gap
  assert.deepEqual([...c.data.subarray(15, 27)], [...b.data.subarray(0, 12)]); // b's first row
  assert.deepEqual([...c.data.subarray(2 * 27, 2 * 27 + 9)], Array(9).fill(255)); // below a
  const html = contactSheet('run <1>', [{ file: '0000.png', prompt: 'a "cat" & <dog>', caption: 'seed 0' }]);
  assert.match(html, /<img src="0000\.png"/);
  assert.match(html, /a &#34;cat&#34; &#38; &#60;dog&#62;/);
  assert.doesNotMatch(html, /<dog>/);
});
