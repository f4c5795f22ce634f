/**
 * Image files for evaluation: listing, reading to RGB (PNG via ../io/png.ts) and box downscaling
 * for report thumbnails. JPEG is recognised but not decoded (no pure-JS decoder is a dependency yet).
 */
import * as fs from 'node:fs';
import { extname, join } from 'node:path';
import { decodePng, ImageFormatError, isPng, type RgbImage } from '../io/png.js';

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
  if (isPng(bytes)) return decodePng(bytes);
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    throw new ImageFormatError('JPEG is not supported (no JPEG decoder installed); convert it to PNG');
  }
  throw new ImageFormatError('not a PNG or JPEG file');
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
