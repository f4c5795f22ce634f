/**
 * SAE evaluation on an activation set: FVU = sum ||x_hat - x||^2 / sum ||x - mean(x)||^2, L0, and
 * per-latent firing counts (dead = never fired on the set), plus the firing-frequency histogram SVG.
 */
import type { ActivationSet } from '../collect/dataset.js';
import type { Sae } from '../sae/index.js';
import type { Kernels } from './kernels.js';
import { defaultKernels } from './native.js';
import { codesFromTopK } from './trainer.js';
import { ItdError } from '../errors.js';

export interface EvalResult {
  rows: number;
  fvu: number;
  /** Mean active latents per row. */
  l0: number;
  /** Share of latents that never fired on these rows. */
  deadFraction: number;
  /** Rows on which each latent fired [n]. */
  counts: Float64Array;
  /** FVU of the first prefixRows rows (asked for in the options): what maxRows = prefixRows gives, bit for bit. */
  prefixFvu?: number;
}

export interface EvalOptions {
  /** Rows read from the start of the set (default: all, up to 2^20). */
  maxRows?: number;
  chunkRows?: number;
  /** Also report the FVU of the first this many rows (a multiple of chunkRows keeps the full result unchanged). */
  prefixRows?: number;
  kernels?: Kernels;
}

export async function evaluateSae(sae: Sae, set: ActivationSet, opts: EvalOptions = {}): Promise<EvalResult> {
  if (set.d !== sae.d) throw new ItdError('mismatch', `${set.path}: activations have D=${set.d} but the SAE has d_in=${sae.d}`, { file: set.path, field: 'd_in' });
  const kernels = opts.kernels ?? defaultKernels();
  const rows = Math.min(set.rows, opts.maxRows ?? 1 << 20);
  const chunk = opts.chunkRows ?? 4096;
  const D = sae.d;
  const counts = new Float64Array(sae.n);
  const sum = new Float64Array(D);
  let sumSq = 0;
  let sqErr = 0;
  let active = 0;
  const prefix = Math.min(opts.prefixRows ?? 0, rows);
  let prefixFvu: number | undefined;
  // One scratch for every chunk: fresh 10+ MB buffers per chunk cost page faults.
  const rowErrAll = new Float64Array(Math.min(chunk, rows));
  const scratchAll = new Float32Array(Math.min(chunk, rows) * D);
  for (let r0 = 0; r0 < rows; ) {
    const B = Math.min(chunk, rows - r0, r0 < prefix ? prefix - r0 : Infinity);
    const x = set.readRange(r0, B);
    const codes = await encodeCodes(sae, x, B, kernels);
    const rowErr = rowErrAll.subarray(0, B);
    const scratch = scratchAll.subarray(0, B * D);
    await kernels.decode({ B, D, x, bPre: sae.bPre, wDec: sae.wDec, ...codes, gScale: 0, xc: scratch, g: scratch, rowErr });
    for (const e of rowErr) sqErr += e;
    for (const j of codes.lat) counts[j]!++;
    active += codes.lat.length;
    const s = kernels.colStats(x, B, D);
    for (let t = 0; t < D; t++) sum[t]! += s.sum[t]!;
    sumSq += s.sumSq;
    r0 += B;
    if (r0 === prefix) prefixFvu = fvuOf(sqErr, sum, sumSq, r0);
  }
  const dead = counts.reduce((a, c) => a + (c === 0 ? 1 : 0), 0);
  return { rows, fvu: fvuOf(sqErr, sum, sumSq, rows), l0: active / rows, deadFraction: dead / sae.n, counts, ...(prefixFvu !== undefined ? { prefixFvu } : {}) };
}

/** sum ||x_hat - x||^2 over the variance sum x^2 - sum_t (sum x_t)^2 / rows; NaN for constant rows. */
function fvuOf(sqErr: number, sum: Float64Array, sumSq: number, rows: number): number {
  let centre = 0;
  for (const v of sum) centre += v * v;
  const variance = sumSq - centre / rows;
  return variance > 0 ? sqErr / variance : NaN;
}

/** Codes of x [B, D]: the fused native TopK when available (no [B, n] buffer), else Sae.encode. */
async function encodeCodes(sae: Sae, x: Float32Array, B: number, kernels: Kernels) {
  if (kernels.encodeTopK && sae.activation === 'topk') {
    const values = new Float32Array(B * sae.k);
    const indices = new Int32Array(B * sae.k);
    await kernels.encodeTopK({ B, D: sae.d, n: sae.n, k: sae.k, x, bPre: sae.bPre, wEnc: sae.wEnc, bEnc: sae.bEnc, values, indices });
    return codesFromTopK(values, indices, B, sae.k);
  }
  const c = await sae.encode(x, B);
  return codesFromTopK(c.values, c.indices, B, c.k);
}

/**
 * Histogram of log10(firing frequency) in half-decade bins, with never-fired latents as a separate
 * bar on the left, as an SVG document.
 */
export function firingHistogramSvg(counts: Float64Array, rows: number, title: string): string {
  const logs = [...counts].filter((c) => c > 0).map((c) => Math.log10(c / rows));
  const lo = Math.floor(logs.reduce((m, l) => Math.min(m, l), -1) * 2) / 2;
  const bins = Math.round(-lo * 2) || 1;
  const hist = new Array<number>(bins).fill(0);
  for (const l of logs) hist[Math.min(bins - 1, Math.floor((l - lo) * 2))]!++;
  const bars = [counts.length - logs.length, ...hist];
  const labels = ['dead', ...hist.map((_, i) => (lo + i / 2).toFixed(1))];
  const W = 640, H = 320, left = 56, bottom = 48, top = 32;
  const bw = (W - left - 16) / bars.length;
  const max = bars.reduce((m, v) => Math.max(m, v), 1);
  const y = (v: number) => H - bottom - ((H - bottom - top) * v) / max;
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const rects = bars.map((v, i) => {
    const x = left + i * bw;
    const fill = i === 0 ? '#c0392b' : '#2e86c1';
    return `<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(H - bottom - y(v)).toFixed(1)}" fill="${fill}"><title>${labels[i]}: ${v}</title></rect>` +
      `<text x="${(x + bw / 2).toFixed(1)}" y="${H - bottom + 14}" font-size="10" text-anchor="middle">${labels[i]}</text>`;
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" font-size="13" text-anchor="middle">${esc(title)}</text>`,
    `<line x1="${left}" y1="${H - bottom}" x2="${W - 16}" y2="${H - bottom}" stroke="black"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${H - bottom}" stroke="black"/>`,
    `<text x="${left - 6}" y="${top + 4}" font-size="10" text-anchor="end">${max}</text>`,
    `<text x="${left - 6}" y="${H - bottom}" font-size="10" text-anchor="end">0</text>`,
    `<text x="${W / 2}" y="${H - 12}" font-size="11" text-anchor="middle">log10 firing frequency (bin start)</text>`,
    `<text x="14" y="${H / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 14 ${H / 2})">latents</text>`,
    ...rects,
    '</svg>',
    '',
  ].join('\n');
}
