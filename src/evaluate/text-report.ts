/**
 * JSON + one self-contained HTML page for `itd bench erase` and `itd demo`: the run's metadata, the
 * metrics, two plots (gate-score histogram, ROC), a per-concept table and example prompts with the
 * gate's decision.
 *
 * The plots are own SVG, not a plotting library: the maintained ones that render SVG without a
 * browser (vega + vega-lite) are 25 MB / 75 packages and take ~0.5 s to import for a histogram and
 * a polyline; the ones with smaller footprints (Observable Plot, chartist) need a DOM. What a plot
 * needs is here once: linear scales with round ticks (niceTicks), labelled axes and a legend.
 */
import path from 'node:path';
import fs from 'node:fs';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import type { AttackResult } from './attack.js';
import type { TextEvalResult } from './text.js';

export function metricsTable(r: TextEvalResult): string {
  const w = Math.max(...metricRows(r).map((x) => x[0].length));
  return metricRows(r).map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

function metricRows(r: TextEvalResult): [string, string][] {
  return [
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

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

const COLORS = { target: '#d62728', retained: '#1f77b4', neutral: '#7f7f7f' } as const;

const CSS = `body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 10px;text-align:left;vertical-align:top}
th{background:#eee}tr:nth-child(even) td{background:#f7f7f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.9em;word-break:break-all}figure{display:inline-block;margin:.5em 1em .5em 0}figcaption{font-size:.85em;color:#555;max-width:460px}
.erase{color:#b00;font-weight:600}.pass{color:#070}.muted{color:#888}`;

function page(r: TextEvalResult, meta: Record<string, unknown>, attack?: AttackResult): string {
  const title = meta['demo'] ? 'itd demo — text-space erasure report' : 'itd bench erase — text-space erasure report';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${CSS}</style></head><body>
<h1>${esc(title)}</h1>
<h2>Run</h2>${metaTable(meta, r.threshold)}
<h2>Metrics</h2>${table(['metric', 'value'], metricRows(r).map(([k, v]) => [esc(k), esc(v)]), [1])}
<h2>Gate scores</h2>
<figure>${histogram(r)}<figcaption>How many prompts of each group reach each gate score (log scale; a score of 0 is drawn at the left edge). Prompts right of the dashed threshold are erased.</figcaption></figure>
<figure>${roc(r)}<figcaption>ROC of the gate score, target prompts against neutral prompts, with the calibrated threshold's operating point.</figcaption></figure>
<h2>Concepts</h2>${conceptTable(r)}
<h2>Example prompts</h2>${exampleTable(r)}
${attack ? attackSection(attack) : ''}
</body></html>\n`;
}

function table(head: string[], rows: string[][], numeric: number[] = []): string {
  const th = head.map((h) => `<th>${esc(h)}</th>`).join('');
  const tr = rows.map((cells) => `<tr>${cells.map((c, i) => `<td${numeric.includes(i) ? ' class="n"' : ''}>${c}</td>`).join('')}</tr>`).join('');
  return `<table><thead><tr>${th}</tr></thead><tbody>${tr}</tbody></table>`;
}

function metaTable(meta: Record<string, unknown>, threshold: number): string {
  const show = (v: unknown) => (Array.isArray(v) ? v.join(', ') : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));
  const rows = Object.entries({ ...meta, threshold: threshold.toExponential(4) }).map(([k, v]) => [esc(k), `<code>${esc(show(v))}</code>`]);
  return table(['field', 'value'], rows);
}

function conceptTable(r: TextEvalResult): string {
  const rows = r.concepts.map((c) => [
    esc(c.name),
    `<span style="color:${COLORS[c.role]}">${c.role}</span>`,
    c.role === 'target' ? `${c.features}` : '<span class="muted">—</span>',
    c.role === 'target' ? `${c.keptForRetain}` : '<span class="muted">—</span>',
    c.meanScore.toExponential(3),
    `${c.erased} / ${c.prompts}`,
    `${c.identified} / ${c.prompts}${c.role === 'target' ? (c.identified === 0 ? ' <span class="pass">(erased)</span>' : ' <span class="erase">(still identified)</span>') : c.identified === c.prompts ? ' <span class="pass">(kept)</span>' : ' <span class="erase">(damaged)</span>'}`,
  ]);
  return table(['concept', 'role', 'features erased', 'kept for retain', 'mean gate score', 'prompts erased', 'still identified'], rows, [2, 3, 4, 5]);
}

function exampleTable(r: TextEvalResult): string {
  const rows = r.examples.map((e) => [
    `<span style="color:${COLORS[e.role]}">${e.role}</span>`,
    esc(e.concept ?? '—'),
    esc(e.prompt),
    e.score.toExponential(3),
    e.erased ? '<span class="erase">ERASE</span>' : '<span class="pass">pass</span>',
    e.fired.length ? esc(e.fired.join(', ')) : '<span class="muted">—</span>',
    e.identified === null ? '<span class="muted">—</span>' : e.identified ? 'yes' : 'no',
  ]);
  return table(['group', 'concept', 'prompt', 'gate score', 'decision', 'fired', 'still identified'], rows, [3]);
}

// ---------------------------------------------------------------------------------------------
// SVG plots

const W = 460;
const H = 300;
const M = { left: 56, right: 16, top: 30, bottom: 44 };

interface Scale {
  (v: number): number;
  ticks: number[];
}

/** Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  const raw = (hi - lo) / count || 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

function scale(lo: number, hi: number, from: number, to: number): Scale {
  const f = ((v: number) => from + ((v - lo) / (hi - lo || 1)) * (to - from)) as Scale;
  f.ticks = niceTicks(lo, hi);
  return f;
}

function axes(x: Scale, y: Scale, xLabel: string, yLabel: string, fmt: (v: number) => string = String): string {
  const x0 = M.left;
  const y0 = H - M.bottom;
  const xt = x.ticks.map((t) => `<line x1="${x(t)}" x2="${x(t)}" y1="${y0}" y2="${y0 + 5}" stroke="#444"/><text x="${x(t)}" y="${y0 + 17}" text-anchor="middle">${fmt(t)}</text>`);
  const yt = y.ticks.map((t) => `<line x1="${x0 - 5}" x2="${W - M.right}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/><text x="${x0 - 8}" y="${y(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  return `<g font-size="11" fill="#333">${yt.join('')}${xt.join('')}
<line x1="${x0}" x2="${W - M.right}" y1="${y0}" y2="${y0}" stroke="#444"/><line x1="${x0}" x2="${x0}" y1="${M.top}" y2="${y0}" stroke="#444"/>
<text x="${(x0 + W - M.right) / 2}" y="${H - 8}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>
<text transform="translate(14 ${(M.top + y0) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text></g>`;
}

type LegendItem = { label: string; color: string; mark?: 'box' | 'dash' | 'dot' };

function legend(items: LegendItem[]): string {
  let x = M.left;
  return `<g font-size="11">${items.map((it) => {
    const at = x;
    x += 30 + it.label.length * 6; // ~6 px per character at 11 px
    return item(it, at);
  }).join('')}</g>`;
}

function item(it: LegendItem, x: number): string {
  const mark = it.mark === 'dash' ? `<line x1="${x}" x2="${x + 14}" y1="12" y2="12" stroke="${it.color}" stroke-width="2" stroke-dasharray="4 3"/>`
    : it.mark === 'dot' ? `<circle cx="${x + 7}" cy="12" r="4.5" fill="${it.color}"/>`
    : `<rect x="${x}" y="6" width="14" height="12" fill="${it.color}" fill-opacity="0.6"/>`;
  return `${mark}<text x="${x + 19}" y="16">${esc(it.label)}</text>`;
}

function svg(label: string, body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="${esc(label)}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui,sans-serif">${body}</svg>`;
}

const FLOOR = 1e-12;

function histogram(r: TextEvalResult): string {
  const lg = (v: number) => Math.log10(Math.max(v, FLOOR));
  const groups = (['neutral', 'retained', 'target'] as const).map((g) => ({ g, values: r.scores[g].map(lg) }));
  const all = groups.flatMap((s) => s.values).concat(lg(r.threshold));
  const [lo, hi] = [Math.floor(Math.min(...all)), Math.ceil(Math.max(...all) + 1e-9)];
  const bins = 30;
  const width = (hi - lo) / bins;
  const counts = groups.map((s) => {
    const c = new Array<number>(bins).fill(0);
    for (const v of s.values) c[Math.min(bins - 1, Math.floor((v - lo) / width))]!++;
    return c;
  });
  const x = scale(lo, hi, M.left, W - M.right);
  const y = scale(0, Math.max(1, ...counts.flat()), H - M.bottom, M.top);
  const bars = groups.map((s, gi) => counts[gi]!.map((c, i) => (c === 0 ? '' :
    `<rect x="${x(lo + i * width).toFixed(1)}" y="${y(c).toFixed(1)}" width="${(x(lo + width) - x(lo)).toFixed(1)}" height="${(y(0) - y(c)).toFixed(1)}" fill="${COLORS[s.g]}" fill-opacity="0.45"><title>${s.g}: ${c}</title></rect>`)).join(''));
  const tx = x(lg(r.threshold)).toFixed(1);
  const body = `${axes(x, y, 'log10 gate score', 'prompts')}${bars.join('')}
<line x1="${tx}" x2="${tx}" y1="${M.top}" y2="${H - M.bottom}" stroke="#000" stroke-width="1.5" stroke-dasharray="4 3"/>
${legend([{ label: `target (${r.scores.target.length})`, color: COLORS.target }, { label: `retained (${r.scores.retained.length})`, color: COLORS.retained }, { label: `neutral (${r.scores.neutral.length})`, color: COLORS.neutral }, { label: 'threshold', color: '#000', mark: 'dash' }])}`;
  return svg('histogram of gate scores by prompt group', body);
}

function roc(r: TextEvalResult): string {
  const x = scale(0, 1, M.left, W - M.right);
  const y = scale(0, 1, H - M.bottom, M.top);
  const pts = r.roc.map(([f, t]) => `${x(f).toFixed(1)},${y(t).toFixed(1)}`).join(' ');
  const body = `${axes(x, y, 'false-positive rate (neutral prompts erased)', 'true-positive rate (targets erased)', (v) => v.toFixed(1))}
<line x1="${x(0)}" y1="${y(0)}" x2="${x(1)}" y2="${y(1)}" stroke="#aaa" stroke-dasharray="3 3"/>
<polyline fill="none" stroke="${COLORS.target}" stroke-width="2" points="${pts}"/>
<circle cx="${x(r.fprNeutral).toFixed(1)}" cy="${y(r.tpr).toFixed(1)}" r="4.5" fill="#000"><title>threshold: FPR ${r.fprNeutral.toFixed(3)}, TPR ${r.tpr.toFixed(3)}</title></circle>
${legend([{ label: `gate (AUROC ${r.auroc.toFixed(3)})`, color: COLORS.target }, { label: 'chance', color: '#aaa', mark: 'dash' }, { label: 'threshold', color: '#000', mark: 'dot' }])}`;
  return svg('ROC curve of the gate, targets against neutral prompts', body);
}

/** The gate-evasion table: recall on disguised target prompts at the threshold, canonical-form defence off / on. */
function attackSection(a: AttackResult): string {
  const clean = a.rows[0]!.recallAfter;
  const rows = a.rows.map((x) => [esc(x.family), String(x.prompts), x.recallBefore.toFixed(3), x.recallAfter.toFixed(3), clean > 0 ? (x.recallAfter / clean).toFixed(3) : '-']);
  rows.push(['neutral FPR', String(a.neutral.prompts), a.neutral.fprBefore.toFixed(4), a.neutral.fprAfter.toFixed(4), `change ${(a.neutral.fprAfter - a.neutral.fprBefore).toFixed(4)}`]);
  return `<h2>Gate evasion</h2><p>Disguised target prompts at threshold ${a.threshold.toExponential(3)}: recall with the canonical-form defence off (before) and on (after).</p>` +
    table(['disguise family', 'prompts', 'recall before', 'recall after', 'after / clean'], rows, [1, 2, 3, 4]);
}
