/**
 * Image files for evaluation: listing, reading to RGB and box downscaling for report thumbnails.
 * Decoding goes through sharp (libvips: PNG, JPEG, WebP, ...), an optional dependency like the rest
 * of the eval-images stack; without it PNG still reads through ../io/png.ts and other formats are an
 * 'unsupported' error naming the install command. Either way transparency is composited over
 * white, as io/png.ts does.
 */
import * as fs from 'node:fs';
import { extname, join } from 'node:path';
import type Sharp from 'sharp';
import { ItdError } from '../errors.js';
import { decodePng, ImageFormatError, isPng, type RgbImage } from '../io/png.js';
import { optionalImport } from './tf.js';

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp']);

/** PNG, JPEG and WebP files directly inside `dir` (not recursive), sorted by name. */
export function listImages(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase()))
    .map((e) => join(dir, e.name))
    .sort();
}

let sharp: Promise<typeof Sharp | undefined> | undefined;

function loadSharp(): Promise<typeof Sharp | undefined> {
  sharp ??= optionalImport('sharp', () => import('sharp')).then((m) => m.default, () => undefined);
  return sharp;
}

/** An image file as 8-bit RGB. */
export async function readImage(path: string): Promise<RgbImage> {
  const bytes = fs.readFileSync(path);
  const lib = await loadSharp();
  if (!lib) {
    if (isPng(bytes)) return decodePng(bytes);
    throw new ItdError('unsupported', `${path}: only PNG can be read without the optional package sharp`, { file: path, hint: 'npm i sharp@0.35.5' });
  }
  try {
    const { data, info } = await lib(bytes).flatten({ background: '#ffffff' }).toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (e) {
    throw new ImageFormatError(`not a readable PNG, JPEG or WebP image (${(e as Error).message})`);
  }
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
