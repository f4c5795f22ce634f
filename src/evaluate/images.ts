/**
 * Image I/O for evaluation without native modules: a complete PNG decoder (all colour types, bit
 * depths 1-16, Adam7 interlacing), a small PNG encoder for report thumbnails, and box downscaling.
 * JPEG is recognised but not decoded (no pure-JS decoder is a dependency yet).
 */
import * as fs from 'node:fs';
import { extname, join } from 'node:path';
import { deflateSync, inflateSync } from 'node:zlib';

/** 8-bit RGB, row-major; transparency (alpha channels, palette tRNS) is composited over white. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export class ImageFormatError extends Error {
  override name = 'ImageFormatError';
}

const PNG_SIGNATURE = Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]);
const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);

/** PNG and JPEG files directly inside `dir` (not recursive), sorted by name. */
export function listImages(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase()))
    .map((e) => join(dir, e.name))
    .sort();
}

export function readImage(path: string): RgbImage {
  const bytes = fs.readFileSync(path);
  if (bytes.subarray(0, 8).equals(PNG_SIGNATURE)) return decodePng(bytes);
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    throw new ImageFormatError('JPEG is not supported (no JPEG decoder installed); convert it to PNG');
  }
  throw new ImageFormatError('not a PNG or JPEG file');
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

interface Header {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  interlaced: boolean;
}

/** Samples per pixel by PNG colour type: grey, -, RGB, palette, grey+alpha, -, RGBA. */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

export function decodePng(bytes: Uint8Array): RgbImage {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!buf.subarray(0, 8).equals(PNG_SIGNATURE)) throw new ImageFormatError('not a PNG file');
  let header: Header | undefined;
  let palette: Uint8Array | undefined;
  let paletteAlpha: Uint8Array | undefined;
  const idat: Buffer[] = [];
  for (let off = 8; off + 12 <= buf.length; ) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    if (off + 12 + len > buf.length) throw new ImageFormatError(`truncated PNG (${type} chunk)`);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (crc32(buf.subarray(off + 4, off + 8 + len)) !== buf.readUInt32BE(off + 8 + len)) {
      throw new ImageFormatError(`corrupt PNG (bad CRC in ${type} chunk)`);
    }
    if (type === 'IHDR') header = parseHeader(data);
    else if (type === 'PLTE') palette = data;
    else if (type === 'tRNS') paletteAlpha = data;
    else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  if (!header) throw new ImageFormatError('PNG without IHDR');
  if (header.colorType === 3 && !palette) throw new ImageFormatError('palette PNG without PLTE');
  const raw = inflate(Buffer.concat(idat));
  const out = new Uint8Array(header.width * header.height * 3);
  const toRgb = pixelConverter(header, palette, header.colorType === 3 ? paletteAlpha : undefined);
  let pos = 0;
  for (const [x0, y0, dx, dy] of header.interlaced ? ADAM7 : ([[0, 0, 1, 1]] as const)) {
    const pw = Math.ceil((header.width - x0) / dx);
    const ph = Math.ceil((header.height - y0) / dy);
    if (pw <= 0 || ph <= 0) continue;
    const rows = unfilter(raw, pos, pw, ph, header);
    pos += ph * (1 + rowBytes(pw, header));
    const samples = new Array<number>(CHANNELS[header.colorType]!);
    for (let y = 0; y < ph; y++) {
      for (let x = 0; x < pw; x++) {
        readPixel(rows[y]!, x, header, samples);
        const o = 3 * ((y0 + y * dy) * header.width + x0 + x * dx);
        toRgb(samples, out, o);
      }
    }
  }
  return { width: header.width, height: header.height, data: out };
}

function inflate(data: Buffer): Buffer {
  try {
    return inflateSync(data);
  } catch (e) {
    throw new ImageFormatError(`corrupt PNG image data (${(e as Error).message})`);
  }
}

function parseHeader(d: Buffer): Header {
  const h = { width: d.readUInt32BE(0), height: d.readUInt32BE(4), depth: d[8]!, colorType: d[9]!, interlaced: d[12] === 1 };
  const depths: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
  if (!depths[h.colorType]?.includes(h.depth)) throw new ImageFormatError(`unsupported PNG colour type ${h.colorType} / depth ${h.depth}`);
  // The bound keeps a hostile header from requesting gigabytes.
  if (h.width === 0 || h.height === 0 || h.width * h.height > 1 << 28) throw new ImageFormatError(`unsupported PNG size ${h.width}x${h.height}`);
  return h;
}

const rowBytes = (pw: number, h: Header) => Math.ceil((pw * CHANNELS[h.colorType]! * h.depth) / 8);

/** Reverses the per-row filters of one pass; returns one slice per row (without the filter byte). */
function unfilter(raw: Buffer, start: number, pw: number, ph: number, h: Header): Uint8Array[] {
  const stride = rowBytes(pw, h);
  const bpp = Math.max(1, (CHANNELS[h.colorType]! * h.depth) >> 3);
  if (start + ph * (stride + 1) > raw.length) throw new ImageFormatError('truncated PNG image data');
  const rows: Uint8Array[] = [];
  let prev = new Uint8Array(stride);
  for (let y = 0; y < ph; y++) {
    const at = start + y * (stride + 1);
    const filter = raw[at]!;
    const row = Uint8Array.from(raw.subarray(at + 1, at + 1 + stride));
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? row[i - bpp]! : 0;
      const b = prev[i]!;
      const c = i >= bpp ? prev[i - bpp]! : 0;
      if (filter === 1) row[i] = row[i]! + a;
      else if (filter === 2) row[i] = row[i]! + b;
      else if (filter === 3) row[i] = row[i]! + ((a + b) >> 1);
      else if (filter === 4) row[i] = row[i]! + paeth(a, b, c);
      else if (filter !== 0) throw new ImageFormatError(`bad PNG filter type ${filter}`);
    }
    rows.push(row);
    prev = row;
  }
  return rows;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Fills `samples` with pixel x's samples scaled to 0-255 (palette indices are left as indices). */
function readPixel(row: Uint8Array, x: number, h: Header, samples: number[]): void {
  const n = samples.length;
  if (h.depth === 8) for (let s = 0; s < n; s++) samples[s] = row[x * n + s]!;
  else if (h.depth === 16) for (let s = 0; s < n; s++) samples[s] = Math.round(((row[2 * (x * n + s)]! << 8) | row[2 * (x * n + s) + 1]!) / 257);
  else {
    // Sub-byte depths only occur with one sample per pixel, packed from the most significant bit.
    const bit = x * h.depth;
    const v = (row[bit >> 3]! >> (8 - h.depth - (bit & 7))) & ((1 << h.depth) - 1);
    samples[0] = h.colorType === 3 ? v : Math.round((v * 255) / ((1 << h.depth) - 1));
  }
}

type PixelConverter = (samples: number[], out: Uint8Array, o: number) => void;

function pixelConverter(h: Header, palette?: Uint8Array, alpha?: Uint8Array): PixelConverter {
  const put = (out: Uint8Array, o: number, r: number, g: number, b: number, a: number) => {
    // Over white, so transparent areas look as they do in a viewer.
    out[o] = Math.round((r * a + 255 * (255 - a)) / 255);
    out[o + 1] = Math.round((g * a + 255 * (255 - a)) / 255);
    out[o + 2] = Math.round((b * a + 255 * (255 - a)) / 255);
  };
  switch (h.colorType) {
    case 0:
      return (s, out, o) => put(out, o, s[0]!, s[0]!, s[0]!, 255);
    case 2:
      return (s, out, o) => put(out, o, s[0]!, s[1]!, s[2]!, 255);
    case 3:
      return (s, out, o) => {
        const i = s[0]!;
        if (3 * i + 2 >= palette!.length) throw new ImageFormatError(`PNG palette index ${i} out of range`);
        put(out, o, palette![3 * i]!, palette![3 * i + 1]!, palette![3 * i + 2]!, alpha?.[i] ?? 255);
      };
    case 4:
      return (s, out, o) => put(out, o, s[0]!, s[0]!, s[0]!, s[1]!);
    default:
      return (s, out, o) => put(out, o, s[0]!, s[1]!, s[2]!, s[3]!);
  }
}

function chunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(body.length + 8);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), body.length + 4);
  return out;
}

/** 8-bit RGB PNG, each row with the "sub" filter (cheap and compresses photos better than none). */
export function encodePng(img: RgbImage): Buffer {
  const stride = img.width * 3;
  const raw = Buffer.alloc(img.height * (stride + 1));
  for (let y = 0; y < img.height; y++) {
    const at = y * (stride + 1);
    raw[at] = 1;
    for (let i = 0; i < stride; i++) {
      const v = img.data[y * stride + i]!;
      raw[at + 1 + i] = i >= 3 ? v - img.data[y * stride + i - 3]! : v;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(img.width, 0);
  ihdr.writeUInt32BE(img.height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([Buffer.from(PNG_SIGNATURE), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array())]);
}

/** Shrinks so the longer side is at most `maxSide`, averaging each source box; never enlarges. */
export function fitWithin(img: RgbImage, maxSide: number): RgbImage {
  const scale = Math.min(1, maxSide / Math.max(img.width, img.height));
  if (scale === 1) return img;
  const width = Math.max(1, Math.round(img.width * scale));
  const height = Math.max(1, Math.round(img.height * scale));
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const sy0 = Math.floor((y * img.height) / height);
    const sy1 = Math.max(sy0 + 1, Math.floor(((y + 1) * img.height) / height));
    for (let x = 0; x < width; x++) {
      const sx0 = Math.floor((x * img.width) / width);
      const sx1 = Math.max(sx0 + 1, Math.floor(((x + 1) * img.width) / width));
      const sum = [0, 0, 0];
      for (let sy = sy0; sy < sy1; sy++) {
        for (let sx = sx0; sx < sx1; sx++) for (let c = 0; c < 3; c++) sum[c]! += img.data[3 * (sy * img.width + sx) + c]!;
      }
      const n = (sy1 - sy0) * (sx1 - sx0);
      for (let c = 0; c < 3; c++) data[3 * (y * width + x) + c] = Math.round(sum[c]! / n);
    }
  }
  return { width, height, data };
}
