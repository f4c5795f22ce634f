/**
 * PNG (RGB, 8 bits per channel) with text metadata, and a decoder for the same subset (tests,
 * reading back generation parameters).
 *
 * File: signature, IHDR, one tEXt (Latin-1) or iTXt (UTF-8) chunk per key, IDAT (zlib of the rows,
 * each prefixed by its filter type; the encoder uses Paeth), IEND. Chunk = length (u32 BE), type,
 * data, CRC-32 of type + data (polynomial 0xEDB88320).
 */
import zlib from 'node:zlib';
import type { RgbImage } from './image.js';

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
const BPP = 3; // bytes per pixel: RGB8

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** tEXt when the value is Latin-1, else iTXt (uncompressed UTF-8). Keywords: 1-79 Latin-1 chars. */
function textChunk(key: string, value: string): Buffer {
  if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(key)) throw new Error(`PNG text keyword ${JSON.stringify(key)} must be 1-79 printable Latin-1 characters`);
  if (/^[\x01-\xff]*$/.test(value)) return chunk('tEXt', Buffer.from(`${key}\0${value}`, 'latin1'));
  return chunk('iTXt', Buffer.concat([Buffer.from(`${key}\0\0\0\0\0`, 'latin1'), Buffer.from(value, 'utf8')]));
}

/** Paeth predictor: whichever of left, up, up-left is closest to left + up - upLeft. */
function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

export function encodePng(img: RgbImage, text: Record<string, string> = {}): Buffer {
  const { width, height, data } = img;
  if (!(width > 0 && height > 0) || data.length !== width * height * BPP) throw new Error(`PNG: ${data.length} bytes do not make a ${width}x${height} RGB image`);
  const stride = width * BPP;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    const o = y * (stride + 1);
    raw[o] = 4; // Paeth
    for (let i = 0; i < stride; i++) {
      const p = y * stride + i;
      const a = i >= BPP ? data[p - BPP]! : 0;
      const b = y > 0 ? data[p - stride]! : 0;
      const c = i >= BPP && y > 0 ? data[p - stride - BPP]! : 0;
      raw[o + 1 + i] = (data[p]! - paeth(a, b, c)) & 0xff;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, adaptive filtering, no interlace
  return Buffer.concat([
    SIGNATURE,
    chunk('IHDR', ihdr),
    ...Object.entries(text).map(([k, v]) => textChunk(k, v)),
    chunk('IDAT', zlib.deflateSync(raw, { level: 6 })),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

export interface DecodedPng extends RgbImage {
  text: Record<string, string>;
}

/** Decodes 8-bit RGB, non-interlaced PNGs (what encodePng writes); checks every CRC. */
export function decodePng(bytes: Uint8Array): DecodedPng {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 8 || !buf.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG file (bad signature)');
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  const text: Record<string, string> = {};
  for (let p = 8; p < buf.length; ) {
    if (p + 12 > buf.length) throw new Error('PNG: truncated chunk');
    const len = buf.readUInt32BE(p);
    const type = buf.toString('latin1', p + 4, p + 8);
    const data = buf.subarray(p + 8, p + 8 + len);
    if (p + 12 + len > buf.length) throw new Error(`PNG: truncated ${type} chunk`);
    if (crc32(buf.subarray(p + 4, p + 8 + len)) !== buf.readUInt32BE(p + 8 + len)) throw new Error(`PNG: CRC mismatch in ${type} chunk`);
    p += 12 + len;
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (data[8] !== 8 || data[9] !== 2 || data[12] !== 0) throw new Error(`PNG: only 8-bit RGB non-interlaced images are supported (bit depth ${data[8]}, colour type ${data[9]}, interlace ${data[12]})`);
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'tEXt' || type === 'iTXt') Object.assign(text, parseText(type, data));
    else if (type === 'IEND') break;
  }
  if (width === 0) throw new Error('PNG: no IHDR chunk');
  return { width, height, data: unfilter(zlib.inflateSync(Buffer.concat(idat)), width, height), text };
}

function parseText(type: string, data: Buffer): Record<string, string> {
  const nul = data.indexOf(0);
  const key = data.toString('latin1', 0, nul);
  if (type === 'tEXt') return { [key]: data.toString('latin1', nul + 1) };
  if (data[nul + 1] !== 0) throw new Error(`PNG: compressed iTXt '${key}' is not supported`);
  const lang = data.indexOf(0, nul + 3);
  const translated = data.indexOf(0, lang + 1);
  return { [key]: data.toString('utf8', translated + 1) };
}

/** Reverses the per-row filters (None, Sub, Up, Average, Paeth). */
function unfilter(raw: Buffer, width: number, height: number): Uint8Array {
  const stride = width * BPP;
  if (raw.length !== (stride + 1) * height) throw new Error(`PNG: image data is ${raw.length} bytes, expected ${(stride + 1) * height}`);
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)]!;
    for (let i = 0; i < stride; i++) {
      const p = y * stride + i;
      const a = i >= BPP ? out[p - BPP]! : 0;
      const b = y > 0 ? out[p - stride]! : 0;
      const c = i >= BPP && y > 0 ? out[p - stride - BPP]! : 0;
      const pred = f === 0 ? 0 : f === 1 ? a : f === 2 ? b : f === 3 ? (a + b) >>> 1 : f === 4 ? paeth(a, b, c) : -1;
      if (pred < 0) throw new Error(`PNG: unknown filter type ${f} in row ${y}`);
      out[p] = (raw[y * (stride + 1) + 1 + i]! + pred) & 0xff;
    }
  }
  return out;
}
