/** JSON + self-contained HTML (inline SVG plots) for `itd bench erase`. */
import path from 'node:path';
import fs from 'node:fs';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { attackTable, type AttackResult } from './attack.js';
import type { TextEvalResult } from './text.js';

export function metricsTable(r: TextEvalResult): string {
  const rows: [string, string][] = [
    ['Acc_e (erased concepts still identified, lower is better)', r.accE.toFixed(4)],
    ['Acc_r (retained concepts identified)', r.accR.toFixed(4)],
    ['H_o', r.hO.toFixed(4)],
    ['gate AUROC (targets vs neutral)', r.auroc.toFixed(4)],
    ['TPR on target prompts', r.tpr.toFixed(4)],
    ['FPR on neutral prompts', r.fprNeutral.toFixed(4)],
    ['FPR on retained-concept prompts', r.fprRetained.toFixed(4)],
    ['neutral drift ||E\'-E||/||E|| (all)', r.neutralDrift.toExponential(3)],
    ['neutral drift (prompts the gate passed)', r.neutralDriftPassed.toExponential(3)],
    ['latency batch 1: plain / erased ms', `${r.latency.plainMs.toFixed(1)} / ${r.latency.erasedMs.toFixed(1)} (x${r.latency.ratio.toFixed(3)})`],
    ['gate vs exact TopK on selected latents: precision / recall', `${r.gateAgreement.precision.toFixed(3)} / ${r.gateAgreement.recall.toFixed(3)}`],
    ['prompts: target / retained / neutral', `${r.counts.targetPrompts} / ${r.counts.retainedPrompts} / ${r.counts.neutralPrompts}`],
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

/** `attack`: the gate-evasion table (`evaluateAttack`), when it was measured. */
export function writeTextReport(dir: string, r: TextEvalResult, meta: Record<string, unknown>, attack?: AttackResult): { json: string; html: string } {
  fs.mkdirSync(dir, { recursive: true });
  const json = path.join(dir, 'report.json');
  const html = path.join(dir, 'report.html');
  writeJsonAtomic(json, { ...meta, ...r, ...(attack ? { attack } : {}) });
  writeFileAtomic(html, page(r, meta, attack));
  return { json, html };
}

function page(r: TextEvalResult, meta: Record<string, unknown>, attack?: AttackResult): string {
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const rows = metricsTable(r).split('\n').map((l) => `<tr><td>${esc(l.slice(0, l.lastIndexOf('  ')).trim())}</td><td>${esc(l.slice(l.lastIndexOf('  ')).trim())}</td></tr>`);
  return `<!doctype html><html><head><meta charset="utf-8"><title>itd bench erase</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:960px}td{padding:2px 12px}table{border-collapse:collapse}tr:nth-child(odd){background:#f4f4f4}figure{display:inline-block;margin:1em}</style></head><body>
<h1>itd — text-space erasure report</h1><p style="word-break:break-all;font-size:small">${esc(JSON.stringify(meta))}</p><table>${rows.join('')}</table>
<figure>${histogram(r)}<figcaption>log10 gate score (a score of 0 is drawn at -12): targets (red), retained concepts (blue), neutral (grey); threshold dashed</figcaption></figure>
<figure>${roc(r.roc)}<figcaption>ROC, targets vs neutral (AUROC ${r.auroc.toFixed(4)})</figcaption></figure>
${attack ? `<h2>Gate evasion: disguised target prompts at threshold ${attack.threshold.toExponential(3)}, canonical-form defence off / on</h2><table>${attackTable(attack).split('\n').map((l) => `<tr>${l.split(/ {2,}/).map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('')}</table>` : ''}
</body></html>\n`;
}

const W = 420;
const H = 260;
const PAD = 30;

function histogram(r: TextEvalResult): string {
  const lg = (x: number) => Math.log10(Math.max(x, 1e-12));
  const sets: [number[], string][] = [[r.scores.neutral, '#888'], [r.scores.retained, '#36c'], [r.scores.target, '#d33']];
  const all = sets.flatMap(([s]) => s.map(lg)).concat(lg(r.threshold));
  const [lo, hi] = [Math.min(...all), Math.max(...all) + 1e-9];
  const bins = 40;
  const x = (v: number) => PAD + ((v - lo) / (hi - lo)) * (W - 2 * PAD);
  const bars = sets.map(([s, color]) => {
    const counts = new Array<number>(bins).fill(0);
    for (const v of s) counts[Math.min(bins - 1, Math.floor(((lg(v) - lo) / (hi - lo)) * bins))]!++;
    const top = Math.max(1, ...counts);
    return counts.map((c, i) => {
      const h = (c / top) * (H - 2 * PAD);
      return c ? `<rect x="${x(lo + (i * (hi - lo)) / bins).toFixed(1)}" y="${(H - PAD - h).toFixed(1)}" width="${((W - 2 * PAD) / bins).toFixed(1)}" height="${h.toFixed(1)}" fill="${color}" fill-opacity="0.45"/>` : '';
    }).join('');
  });
  const tx = x(lg(r.threshold)).toFixed(1);
  return svg(`${bars.join('')}<line x1="${tx}" x2="${tx}" y1="${PAD}" y2="${H - PAD}" stroke="#000" stroke-dasharray="4"/>${axis(lo.toFixed(1), hi.toFixed(1))}`);
}

function roc(points: [number, number][]): string {
  const p = (f: number, t: number) => `${(PAD + f * (W - 2 * PAD)).toFixed(1)},${(H - PAD - t * (H - 2 * PAD)).toFixed(1)}`;
  return svg(`<polyline fill="none" stroke="#d33" stroke-width="2" points="${points.map(([f, t]) => p(f, t)).join(' ')}"/><line x1="${PAD}" y1="${H - PAD}" x2="${W - PAD}" y2="${PAD}" stroke="#aaa" stroke-dasharray="3"/>${axis('FPR 0', '1')}`);
}

function axis(left: string, right: string): string {
  return `<line x1="${PAD}" x2="${W - PAD}" y1="${H - PAD}" y2="${H - PAD}" stroke="#000"/><text x="${PAD}" y="${H - 8}" font-size="11">${left}</text><text x="${W - PAD - 20}" y="${H - 8}" font-size="11">${right}</text>`;
}

function svg(body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${body}</svg>`;
}
