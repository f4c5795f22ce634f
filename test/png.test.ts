// src/io/png.ts: CRC-32, the RGB8 + text encoder, and the full decoder against ImageMagick-made fixtures.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import zlib from 'node:zlib';
import { crc32, decodePng, encodePng, ImageFormatError, type RgbImage } from '../src/io/png.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'images');

function noise(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  let s = seed;
  for (let i = 0; i < data.length; i++) data[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  return { width, height, data };
}

/** Pixels of a binary PPM (P6, maxval 255) as ImageMagick wrote it. */
function readPpm(path: string): RgbImage {
  const buf = fs.readFileSync(path);
  const m = /^P6\s+(\d+)\s+(\d+)\s+255\s/.exec(buf.toString('latin1', 0, 32))!;
  return { width: Number(m[1]), height: Number(m[2]), data: buf.subarray(m[0].length) };
}

function pngChunk(type: string, body: Uint8Array): Buffer {
  const chunk = Buffer.alloc(12 + body.length);
  chunk.writeUInt32BE(body.length, 0);
  chunk.write(type, 4, 'latin1');
  chunk.set(body, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + body.length)), 8 + body.length);
  return chunk;
}

/** `png` with `chunks` in place of its IDAT chunk. */
function replaceIdat(png: Buffer, ...chunks: Buffer[]): Buffer {
  const at = png.indexOf('IDAT') - 4;
  return Buffer.concat([png.subarray(0, at), ...chunks, png.subarray(at + 12 + png.readUInt32BE(at))]);
}

test('CRC-32 matches the standard check values', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.equal(crc32(new TextEncoder().encode('IEND')), 0xae426082);
});

test('PNG round trip keeps pixels and text chunks (Latin-1 as tEXt, other text as iTXt)', () => {
  const img = noise(37, 23, 1);
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

  const plain = noise(37, 21, 3);
  assert.deepEqual(decodePng(encodePng(plain)), { width: 37, height: 21, data: plain.data, text: {} });
});

test('compressed iTXt is skipped, not fatal: text is optional metadata', () => {
  const png = encodePng(noise(2, 2, 4), { seed: '1' });
  const zipped = pngChunk('iTXt', Buffer.concat([Buffer.from('zipped\0\x01\0\0\0', 'latin1'), zlib.deflateSync('hi')]));
  const idat = png.subarray(png.indexOf('IDAT') - 4, png.indexOf('IEND') - 4);
  assert.deepEqual(decodePng(replaceIdat(png, zipped, idat)).text, { seed: '1' });
});

test('the decoder undoes every filter type and rejects corrupt files', () => {
  // Hand-made IDAT for a 2x4 image with rows filtered None (0), Sub (1), Up (2), Average (3); Paeth (4) is what
  // the encoder writes, covered by the round trip above.
  const rows = Buffer.from([0, 1, 2, 3, 4, 5, 6, 1, 10, 20, 30, 5, 5, 5, 2, 1, 1, 1, 1, 1, 1, 3, 2, 4, 6, 9, 9, 9]);
  const patched = replaceIdat(encodePng({ width: 2, height: 4, data: new Uint8Array(24) }), pngChunk('IDAT', zlib.deflateSync(rows)));
  assert.deepEqual([...decodePng(patched).data], [
    1, 2, 3, 4, 5, 6, // None
    10, 20, 30, 15, 25, 35, // Sub: + left pixel
    11, 21, 31, 16, 26, 36, // Up: + pixel above
    2 + 5, 4 + 10, 6 + 15, 9 + 11, 9 + 20, 9 + 28, // Average: + floor((left + up) / 2)
  ]);

  const bad = Buffer.from(encodePng(noise(4, 4, 2)));
  bad[bad.indexOf('IDAT') + 6]! ^= 0xff;
  assert.throws(() => decodePng(bad), /bad CRC in IDAT/);
  const badHeader = Buffer.from(encodePng(noise(2, 2, 5)));
  badHeader[20]! ^= 1; // inside IHDR
  assert.throws(() => decodePng(badHeader), /bad CRC in IHDR/);
  const truncated = Buffer.from(encodePng(noise(40, 40, 2)));
  assert.throws(() => decodePng(truncated.subarray(0, truncated.length - 40)), ImageFormatError);
  assert.throws(() => decodePng(Buffer.from('not a png')), /bad signature/);
  assert.throws(() => encodePng({ width: 2, height: 2, data: new Uint8Array(11) }), /do not make a 2x2 RGB image/);
});

test('decodePng matches ImageMagick on every PNG flavour (grey 1/4/8, palette ± tRNS, RGB(A) 8/16, Adam7)', () => {
  const pngs = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.png'));
  assert.ok(pngs.length >= 10);
  for (const f of pngs) {
    const got = decodePng(fs.readFileSync(join(FIXTURES, f)));
    const want = readPpm(join(FIXTURES, f.replace(/\.png$/, '.ppm')));
    assert.deepEqual([got.width, got.height], [want.width, want.height], f);
    let worst = 0;
    for (let i = 0; i < want.data.length; i++) worst = Math.max(worst, Math.abs(got.data[i]! - want.data[i]!));
    // Rounding of 16-bit samples and of alpha compositing may differ by one level.
    assert.ok(worst <= 1, `${f}: off by ${worst}`);
  }
});
