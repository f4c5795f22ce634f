import assert from 'node:assert/strict';
import { test } from 'node:test';
import zlib from 'node:zlib';
import { contactSheet, sideBySide, toRgb, type RgbImage } from '../src/generate/image.js';
import { crc32, decodePng, encodePng } from '../src/generate/png.js';
import { Rng } from '../src/util/rng.js';

function randomImage(width: number, height: number, seed: number): RgbImage {
  const rng = new Rng(seed);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
  return { width, height, data };
}

test('CRC-32 matches the standard check values', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.equal(crc32(new TextEncoder().encode('IEND')), 0xae426082);
});

test('PNG round trip keeps pixels and text chunks (Latin-1 as tEXt, other text as iTXt)', () => {
  const img = randomImage(37, 23, 1);
  const text = { prompt: 'a photo of an astronaut, café', seed: '42', steps: '30', scheduler: 'pndm', eraser: 'nudity.json#abcd', guidance: '7.5', note: '東京 ✓' };
  const png = encodePng(img, text);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.ok(png.includes(Buffer.from('tEXtprompt\0', 'latin1')));
  assert.ok(png.includes(Buffer.from('iTXtnote\0', 'latin1')));
  const back = decodePng(png);
  assert.equal(back.width, 37);
  assert.equal(back.height, 23);
  assert.deepEqual(back.data, img.data);
  assert.deepEqual(back.text, text);
});

test('the decoder undoes every filter type and rejects corrupt files', () => {
  // Hand-made IDAT for a 2x4 image with rows filtered None (0), Sub (1), Up (2), Average (3); Paeth (4) is what
  // the encoder writes, covered by the round trip above.
  const rows = Buffer.from([0, 1, 2, 3, 4, 5, 6, 1, 10, 20, 30, 5, 5, 5, 2, 1, 1, 1, 1, 1, 1, 3, 2, 4, 6, 9, 9, 9]);
  const png = encodePng({ width: 2, height: 4, data: new Uint8Array(24) });
  const idatAt = png.indexOf('IDAT') - 4;
  const len = png.readUInt32BE(idatAt);
  const body = zlib.deflateSync(rows);
  const chunk = Buffer.alloc(12 + body.length);
  chunk.writeUInt32BE(body.length, 0);
  chunk.write('IDAT', 4, 'latin1');
  body.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + body.length)), 8 + body.length);
  const patched = Buffer.concat([png.subarray(0, idatAt), chunk, png.subarray(idatAt + 12 + len)]);
  assert.deepEqual([...decodePng(patched).data], [
    1, 2, 3, 4, 5, 6, // None
    10, 20, 30, 15, 25, 35, // Sub: + left pixel
    11, 21, 31, 16, 26, 36, // Up: + pixel above
    2 + 5, 4 + 10, 6 + 15, 9 + 11, 9 + 20, 9 + 28, // Average: + floor((left + up) / 2)
  ]);

  const bad = Buffer.from(encodePng(randomImage(4, 4, 2)));
  bad[bad.indexOf('IDAT') + 6]! ^= 0xff;
  assert.throws(() => decodePng(bad), /CRC mismatch in IDAT/);
  assert.throws(() => decodePng(Buffer.from('not a png')), /bad signature/);
  assert.throws(() => encodePng({ width: 2, height: 2, data: new Uint8Array(11) }), /do not make a 2x2 RGB image/);
});

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
