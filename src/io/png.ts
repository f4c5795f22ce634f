/**
 * PNG without native modules. The encoder writes 8-bit RGB with text metadata (generation
 * parameters); the decoder reads every PNG flavour (all colour types, bit depths 1-16, palette,
 * Adam7 interlacing) to 8-bit RGB plus its text chunks, checking every CRC.
 *
 * File: signature, IHDR, chunks, IEND. Chunk = length (u32 BE), type, data, CRC-32 of type + data
 * (polynomial 0xEDB88320). IDAT holds the zlib stream of the rows, each prefixed by its filter type.
 */
import { deflateSync, inflateSync } from 'node:zlib';
import { ItdError } from '../errors.js';

/** 8-bit RGB, rows top to bottom, pixels interleaved (HWC). */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array; // [H, W, 3]
}

/** A decoded PNG: transparency (alpha channels, palette tRNS) composited over white, and its text. */
export interface DecodedPng extends RgbImage {
  text: Record<string, string>;
}

export class ImageFormatError extends Error {
  override name = 'ImageFormatError';
}

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
const BPP = 3; // bytes per pixel the encoder writes: RGB8

export const isPng = (bytes: Uint8Array): boolean => bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b);

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

/** Paeth predictor: whichever of left, up, up-left is closest to left + up - upLeft. */
function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// ---- encoder ----

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
  if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(key)) throw new ItdError('usage', `PNG text keyword ${JSON.stringify(key)} must be 1-79 printable Latin-1 characters`, { field: 'text' });
  if (/^[\x01-\xff]*$/.test(value)) return chunk('tEXt', Buffer.from(`${key}\0${value}`, 'latin1'));
  return chunk('iTXt', Buffer.concat([Buffer.from(`${key}\0\0\0\0\0`, 'latin1'), Buffer.from(value, 'utf8')]));
}

/** 8-bit RGB, every row Paeth-filtered, one text chunk per key of `text`. */
export function encodePng(img: RgbImage, text: Record<string, string> = {}): Buffer {
  const { width, height, data } = img;
  if (!(width > 0 && height > 0) || data.length !== width * height * BPP) throw new ItdError('usage', `PNG: ${data.length} bytes do not make a ${width}x${height} RGB image`, { field: 'data' });
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
    chunk('IDAT', deflateSync(raw, { level: 6 })),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

// ---- decoder ----

interface Header {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  interlaced: boolean;
}

interface Chunks {
  header: Header;
  palette?: Uint8Array;
  paletteAlpha?: Uint8Array;
  idat: Buffer;
  text: Record<string, string>;
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

export function decodePng(bytes: Uint8Array): DecodedPng {
  if (!isPng(bytes)) throw new ImageFormatError('not a PNG file (bad signature)');
  const png = readChunks(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return { width: png.header.width, height: png.header.height, data: decodePixels(png), text: png.text };
}

function readChunks(buf: Buffer): Chunks {
  let header: Header | undefined;
  let palette: Uint8Array | undefined;
  let paletteAlpha: Uint8Array | undefined;
  const idat: Buffer[] = [];
  const text: Record<string, string> = {};
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
    else if (type === 'tEXt' || type === 'iTXt') Object.assign(text, parseText(type, data));
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  if (!header) throw new ImageFormatError('PNG without IHDR');
  if (header.colorType === 3 && !palette) throw new ImageFormatError('palette PNG without PLTE');
  return { header, palette, paletteAlpha: header.colorType === 3 ? paletteAlpha : undefined, idat: Buffer.concat(idat), text };
}

function parseHeader(d: Buffer): Header {
  const h = { width: d.readUInt32BE(0), height: d.readUInt32BE(4), depth: d[8]!, colorType: d[9]!, interlaced: d[12] === 1 };
  const depths: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
  if (!depths[h.colorType]?.includes(h.depth)) throw new ImageFormatError(`unsupported PNG colour type ${h.colorType} / depth ${h.depth}`);
  // The bound keeps a hostile header from requesting gigabytes.
  if (h.width === 0 || h.height === 0 || h.width * h.height > 1 << 28) throw new ImageFormatError(`unsupported PNG size ${h.width}x${h.height}`);
  return h;
}

/**
 * tEXt: keyword NUL Latin-1 text. iTXt: keyword NUL compression flag, method, language NUL,
 * translated keyword NUL, UTF-8 text. Text is optional metadata, so malformed or compressed
 * entries are skipped rather than failing the image.
 */
function parseText(type: string, data: Buffer): Record<string, string> {
  const nul = data.indexOf(0);
  if (nul < 1) return {};
  const key = data.toString('latin1', 0, nul);
  if (type === 'tEXt') return { [key]: data.toString('latin1', nul + 1) };
  const lang = data.indexOf(0, nul + 3);
  const translated = lang < 0 ? -1 : data.indexOf(0, lang + 1);
  if (data[nul + 1] !== 0 || translated < 0) return {};
  return { [key]: data.toString('utf8', translated + 1) };
}

function decodePixels({ header, palette, paletteAlpha, idat }: Chunks): Uint8Array {
  const raw = inflate(idat);
  const out = new Uint8Array(header.width * header.height * 3);
  const toRgb = pixelConverter(header, palette, paletteAlpha);
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
        toRgb(samples, out, 3 * ((y0 + y * dy) * header.width + x0 + x * dx));
      }
    }
  }
  return out;
}

function inflate(data: Buffer): Buffer {
  try {
    return inflateSync(data);
  } catch (e) {
    throw new ImageFormatError(`corrupt PNG image data (${(e as Error).message})`);
  }
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
