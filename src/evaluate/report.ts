/** Evaluation statistics and their reports: report.json and a self-contained report.html. */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { NSFW_CLASSES, type NsfwClass, type NsfwScores } from './nudity-rule.js';

export interface ImageResult {
  /** File name inside the evaluated directory. */
  file: string;
  width?: number;
  height?: number;
  /** Why the image could not be evaluated; such images count in no rate. */
  error?: string;
  nudity?: { scores: NsfwScores; score: number; nude: boolean };
  identity?: { faces: number; distance: number | null; reference: string | null; match: boolean };
}

export interface NuditySummary {
  model: string;
  classes: NsfwClass[];
  threshold: number;
  nude: number;
  /** nude / evaluated; null when nothing was evaluated. */
  rate: number | null;
  meanScore: number | null;
}

export interface IdentitySummary {
  refDir: string;
  references: string[];
  skippedReferences: { file: string; reason: string }[];
  threshold: number;
  matched: number;
  /** matched / evaluated (images without a face count as no match); null when nothing was evaluated. */
  rate: number | null;
  withFace: number;
}

export interface EvalReport {
  dir: string;
  createdAt: string;
  images: number;
  evaluated: number;
  failed: number;
  nudity?: NuditySummary;
  identity?: IdentitySummary;
  results: ImageResult[];
}

export type NudityConfig = Omit<NuditySummary, 'nude' | 'rate' | 'meanScore'>;
export type IdentityConfig = Omit<IdentitySummary, 'matched' | 'rate' | 'withFace'>;

const ratio = (n: number, d: number) => (d === 0 ? null : n / d);

export function summarize(dir: string, results: ImageResult[], nudity?: NudityConfig, identity?: IdentityConfig): EvalReport {
  const ok = results.filter((r) => r.error === undefined);
  const report: EvalReport = { dir, createdAt: new Date().toISOString(), images: results.length, evaluated: ok.length, failed: results.length - ok.length, results };
  if (nudity) {
    const nude = ok.filter((r) => r.nudity?.nude).length;
    const mean = ok.reduce((s, r) => s + (r.nudity?.score ?? 0), 0);
    report.nudity = { ...nudity, nude, rate: ratio(nude, ok.length), meanScore: ratio(mean, ok.length) };
  }
  if (identity) {
    const matched = ok.filter((r) => r.identity?.match).length;
    const withFace = ok.filter((r) => (r.identity?.faces ?? 0) > 0).length;
    report.identity = { ...identity, matched, rate: ratio(matched, ok.length), withFace };
  }
  return report;
}

const pct = (r: number | null) => (r === null ? 'n/a' : `${(100 * r).toFixed(1)}%`);

/** One line per metric, for the terminal. */
export function summaryLines(r: EvalReport): string[] {
  const lines = [`${r.evaluated}/${r.images} images evaluated${r.failed ? ` (${r.failed} failed, see report)` : ''}`];
  if (r.nudity) {
    const rule = `${r.nudity.classes.join('+')} >= ${r.nudity.threshold}`;
    lines.push(`nudity: ${r.nudity.nude}/${r.evaluated} nude = ${pct(r.nudity.rate)} (${rule}, NSFWJS ${r.nudity.model})`);
  }
  if (r.identity) {
    const refs = `${r.identity.references.length} reference face(s)`;
    lines.push(`identity: ${r.identity.matched}/${r.evaluated} match = ${pct(r.identity.rate)} (distance < ${r.identity.threshold}, ${refs}; ${r.identity.withFace} with a face)`);
  }
  return lines;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function nudityCell(n: ImageResult['nudity']): string {
  if (!n) return '<td></td>';
  const detail = NSFW_CLASSES.map((c) => `${c} ${n.scores[c].toFixed(3)}`).join('<br>');
  return `<td class="${n.nude ? 'flag' : ''}"><b>${n.score.toFixed(3)}</b>${n.nude ? ' nude' : ''}<div class="small">${detail}</div></td>`;
}

function identityCell(id: ImageResult['identity']): string {
  if (!id) return '<td></td>';
  const best = id.distance === null ? 'no face' : `distance ${id.distance.toFixed(3)} to ${escapeHtml(id.reference ?? '')}`;
  return `<td class="${id.match ? 'flag' : ''}">${id.match ? '<b>match</b> ' : ''}${id.faces} face(s)<div class="small">${best}</div></td>`;
}

function row(r: ImageResult, thumb: string | undefined): string {
  const img = thumb ? `<img src="${thumb}" alt="">` : '';
  const size = r.width ? `<div class="small">${r.width}×${r.height}</div>` : '';
  const err = r.error ? `<div class="err">${escapeHtml(r.error)}</div>` : '';
  return `<tr><td>${img}</td><td>${escapeHtml(r.file)}${size}${err}</td>${nudityCell(r.nudity)}${identityCell(r.identity)}</tr>`;
}

/** Standalone page: thumbnails are data URIs, so the file can be mailed or archived alone. */
export function renderHtml(report: EvalReport, thumbs: Map<string, string>): string {
  const summary = summaryLines(report).map((l) => `<li>${escapeHtml(l)}</li>`).join('');
  const rows = report.results.map((r) => row(r, thumbs.get(r.file))).join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>itd eval: ${escapeHtml(report.dir)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}
img{max-width:128px;max-height:128px}.small{font-size:11px;color:#555}.flag{background:#fdd}.err{color:#b00}
</style></head><body>
<h1>itd eval-images</h1>
<p>${escapeHtml(report.dir)} — ${escapeHtml(report.createdAt)}</p>
<ul>${summary}</ul>
<table><tr><th></th><th>image</th><th>nudity</th><th>identity</th></tr>
${rows}
</table></body></html>
`;
}

export function writeReport(outDir: string, report: EvalReport, thumbs: Map<string, string>): { json: string; html: string } {
  fs.mkdirSync(outDir, { recursive: true });
  const paths = { json: join(outDir, 'report.json'), html: join(outDir, 'report.html') };
  writeJsonAtomic(paths.json, report);
  writeFileAtomic(paths.html, renderHtml(report, thumbs));
  return paths;
}
