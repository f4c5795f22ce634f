/** Image plumbing: decoder output -> 8-bit RGB, side-by-side composition, the batch contact sheet. */
import type { RgbImage } from '../io/png.js';
import { roundHalfEven } from './schedulers/config.js';
import { ItdError } from '../errors.js';

export type { RgbImage };

/**
 * VAE output [3, H, W] in about [-1, 1] -> RGB bytes, as diffusers post-processes:
 * round(clamp(x / 2 + 0.5, 0, 1) * 255) in float32, numpy rounding (halves to even).
 */
export function toRgb(chw: Float32Array, width: number, height: number): RgbImage {
  const plane = width * height;
  if (chw.length !== 3 * plane) throw new ItdError('format', `decoder output has ${chw.length} values, expected 3 x ${height} x ${width}`, { field: 'vae_decoder output' });
  const f = Math.fround;
  const data = new Uint8Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < plane; p++) {
      const v = Math.min(1, Math.max(0, f(f(chw[c * plane + p]! / 2) + 0.5)));
      data[p * 3 + c] = roundHalfEven(f(v * 255));
    }
  }
  return { width, height, data };
}

/** Images placed left to right on a white background, `gap` pixels apart, top-aligned. */
export function sideBySide(images: readonly RgbImage[], gap = 8): RgbImage {
  const width = images.reduce((w, im) => w + im.width, 0) + gap * (images.length - 1);
  const height = Math.max(...images.map((im) => im.height));
  const data = new Uint8Array(width * height * 3).fill(255);
  let x0 = 0;
  for (const im of images) {
    for (let y = 0; y < im.height; y++) {
      data.set(im.data.subarray(y * im.width * 3, (y + 1) * im.width * 3), (y * width + x0) * 3);
    }
    x0 += im.width + gap;
  }
  return { width, height, data };
}

export interface SheetEntry {
  file: string; // relative to the sheet
  prompt: string;
  caption: string;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A self-contained HTML contact sheet of the batch's images. */
export function contactSheet(title: string, entries: readonly SheetEntry[]): string {
  const cells = entries.map(
    (e) =>
      `<figure><a href="${escapeHtml(encodeURI(e.file))}"><img src="${escapeHtml(encodeURI(e.file))}" loading="lazy" alt="${escapeHtml(e.prompt)}"></a>` +
      `<figcaption><b>${escapeHtml(e.prompt)}</b><br>${escapeHtml(e.caption)}</figcaption></figure>`,
  );
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:16px;background:#fafafa}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:16px}
figure{margin:0;background:#fff;padding:8px;border:1px solid #ddd}
img{width:100%;height:auto;display:block}
figcaption{margin-top:6px;word-wrap:break-word;color:#333}
</style></head><body>
<h1>${escapeHtml(title)}</h1>
<main>
${cells.join('\n')}
</main>
</body></html>
`;
}
