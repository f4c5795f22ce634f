/**
 * Text-space evaluation of an eraser (`itd bench erase`): does the erased conditioning still
 * identify its concept, do retained concepts survive, does the gate separate targets from
 * neutral prompts, how far do neutral prompts drift, and what does erasure cost in latency.
 *
 * Identification: prompt t(c) (template t, concept c) counts as identified when its erased final
 * embedding E'(t(c)) ([T, D] flattened: 77 rows for CLIP, max_sequence_length for T5; what the denoiser sees) is closer (L2) to the unerased E(t(c))
 * than to E(t(c')) for every other concept c' and than to E(t(filler)).
 *   Acc_e = identified rate over erased concepts (lower is better); Acc_r = over retained ones;
 *   H_o = harmonic mean of (1 - Acc_e) and Acc_r.
 */
import { auroc, rate, rocCurve } from '../classify/calibrate.js';
import { encodePrompts, type TextModel } from '../encoder/index.js';
import { ConceptEraser, type EraseResult } from '../erase/index.js';
import { conceptThreshold } from '../select/eraser-file.js';
import { Graph } from '../onnx/graph.js';
import { createSession, f32, f32Data } from '../onnx/session.js';
import { ItdError } from '../errors.js';

export interface ConceptSet {
  name: string;
  /** Prompt per template index (undefined where the CSV had no such template for this concept). */
  prompts: string[];
}

export interface TextEvalOptions {
  targets: ConceptSet[]; // erased concepts
  retained: ConceptSet[]; // concepts that must survive
  templates: string[]; // "{}" templates, same order as ConceptSet.prompts
  evalTemplates: number[]; // held-out template indices
  filler: string; // neutral stand-in for a concept, e.g. "a person"
  neutral: string[]; // unrelated prompts (COCO / DiffusionDB)
  batch?: number;
  latencyReps?: number;
}

export interface TextEvalResult {
  accE: number;
  accR: number;
  hO: number;
  auroc: number; // targets (eval templates) vs neutral prompts
  tpr: number; // targets erased at the eraser's threshold
  fprNeutral: number; // neutral prompts erased
  fprRetained: number; // retained-concept prompts erased
  neutralDrift: number; // mean ||E' - E|| / ||E|| over neutral prompts
  neutralDriftPassed: number; // the same over neutral prompts the gate passed (must be 0)
  latency: { plainMs: number; erasedMs: number; ratio: number };
  /** Gate threshold vs exact TopK on the evaluation's target and neutral prompts. */
  gateAgreement: { precision: number; recall: number; exactPairs: number; gatePairs: number };
  threshold: number;
  scores: { target: number[]; retained: number[]; neutral: number[] };
  roc: [number, number][];
  counts: { targetPrompts: number; retainedPrompts: number; neutralPrompts: number };
  /** Per concept over the evaluation templates. */
  concepts: ConceptRow[];
  /** Every evaluated concept prompt and the first neutral ones, with the gate's decision. */
  examples: ExampleRow[];
}

export interface ConceptRow {
  name: string;
  role: 'target' | 'retained';
  /** Latents the eraser deactivates for it (targets), and its candidates kept because retain prompts use them. */
  features: number;
  keptForRetain: number;
  prompts: number;
  erased: number;
  /** Prompts whose (erased) conditioning is still nearest its own concept's. */
  identified: number;
  meanScore: number;
  /** The concept's own threshold (per-concept gate; else the shared one), null for retained concepts. */
  threshold: number | null;
}

export interface ExampleRow {
  role: 'target' | 'retained' | 'neutral';
  concept: string | null;
  prompt: string;
  score: number;
  erased: boolean;
  identified: boolean | null;
  /** The concepts that fired (reached their own threshold) and each eraser concept's own score. */
  fired: string[];
  conceptScores: Record<string, number>;
}

const NEUTRAL_EXAMPLES = 12;

function conceptRows(eraser: ConceptEraser, examples: ExampleRow[]): ConceptRow[] {
  const rows = new Map<string, ConceptRow>();
  for (const e of examples) {
    if (e.concept === null || e.role === 'neutral') continue;
    const spec = eraser.spec.concepts.find((k) => k.name === e.concept);
    const row = rows.get(e.concept) ?? {
      name: e.concept, role: e.role, features: spec?.features.length ?? 0, keptForRetain: spec?.removedByRetain.length ?? 0, prompts: 0, erased: 0, identified: 0, meanScore: 0,
      threshold: spec ? conceptThreshold(eraser.spec, spec) : null,
    };
    row.prompts++;
    row.erased += e.erased ? 1 : 0;
    row.identified += e.identified ? 1 : 0;
    row.meanScore += (e.score - row.meanScore) / row.prompts;
    rows.set(e.concept, row);
  }
  return [...rows.values()];
}

/** Prompt i's fired concepts and per-concept scores, from an erase result. */
function firing(eraser: ConceptEraser, r: EraseResult, i: number): { fired: string[]; conceptScores: Record<string, number> } {
  const C = eraser.spec.concepts.length;
  return { fired: r.concepts[i]!, conceptScores: Object.fromEntries(eraser.spec.concepts.map((c, j) => [c.name, r.conceptScores[i * C + j]!])) };
}

export async function evaluateText(eraser: ConceptEraser, opts: TextEvalOptions): Promise<TextEvalResult> {
  const model = eraser.model;
  const threshold = eraser.spec.threshold;
  if (threshold === null) throw new ItdError('config', 'bench erase: the eraser is not calibrated (run itd eraser calibrate)', { field: 'threshold', hint: 'run itd eraser calibrate' });
  const batch = opts.batch ?? 16;
  const ident = { target: [] as boolean[], retained: [] as boolean[] };
  const scores = { target: [] as number[], retained: [] as number[], neutral: [] as number[] };
  let erasedRetained = 0;
  let erasedTarget = 0;
  const examples: ExampleRow[] = [];
  for (const ti of opts.evalTemplates) {
    const template = opts.templates[ti]!;
    const targets = opts.targets.filter((c) => c.prompts[ti] !== undefined);
    const all = [...targets, ...opts.retained.filter((c) => c.prompts[ti] !== undefined)];
    const prompts = [...all.map((c) => c.prompts[ti]!), template.replaceAll('{}', opts.filler)];
    const ref = await encodePrompts(model, prompts, { batch }); // unerased references, filler last
    const out = await eraser.encode(prompts.slice(0, -1), { batch });
    const nearest = await nearestRows(out.lastHiddenState, all.length, ref.lastHiddenState, prompts.length, ref.t * ref.d);
    all.forEach((c, i) => {
      const isTarget = i < targets.length;
      (isTarget ? ident.target : ident.retained).push(nearest[i] === i);
      (isTarget ? scores.target : scores.retained).push(out.scores[i]!);
      if (out.erased[i]) isTarget ? erasedTarget++ : erasedRetained++;
      examples.push({ role: isTarget ? 'target' : 'retained', concept: c.name, prompt: prompts[i]!, score: out.scores[i]!, erased: out.erased[i] === 1, identified: nearest[i] === i, ...firing(eraser, out, i) });
    });
  }
  const plain = await encodePrompts(model, opts.neutral, { batch });
  const erased = await eraser.encode(opts.neutral, { batch, progress: opts.neutral.length > 64 });
  scores.neutral = [...erased.scores];
  // Every erased neutral prompt is an example (which concept fired is what a false positive needs explained).
  opts.neutral.forEach((prompt, i) => {
    if (i < NEUTRAL_EXAMPLES || erased.erased[i] === 1) examples.push({ role: 'neutral', concept: null, prompt, score: erased.scores[i]!, erased: erased.erased[i] === 1, identified: null, ...firing(eraser, erased, i) });
  });
  const drift = neutralDrift(plain.lastHiddenState, erased.lastHiddenState, erased.erased, plain.t * plain.d);
  const accE = mean(ident.target);
  const accR = mean(ident.retained);
  return {
    accE, accR, hO: harmonic(1 - accE, accR),
    auroc: auroc(scores.target, scores.neutral),
    tpr: erasedTarget / Math.max(1, scores.target.length),
    fprNeutral: rate(scores.neutral, threshold),
    fprRetained: erasedRetained / Math.max(1, scores.retained.length),
    neutralDrift: drift.all,
    neutralDriftPassed: drift.passed,
    latency: await passLatency(eraser, opts.neutral[0] ?? 'a photo', opts.latencyReps ?? 30),
    gateAgreement: await eraser.gateAgreement([...opts.targets.flatMap((c) => opts.evalTemplates.flatMap((t) => c.prompts[t] ?? [])), ...opts.neutral.slice(0, 100)]),
    threshold,
    scores,
    roc: rocCurve(scores.target, scores.neutral),
    counts: { targetPrompts: scores.target.length, retainedPrompts: scores.retained.length, neutralPrompts: opts.neutral.length },
    concepts: conceptRows(eraser, examples),
    examples,
  };
}

/**
 * For each of the n rows of x ([n, len]), the index of the nearest (L2) of the m rows of refs:
 * argmin_r ||r||^2 - 2 x.r, with the [n, m] dot products as one onnxruntime Gemm.
 */
async function nearestRows(x: Float32Array, n: number, refs: Float32Array, m: number, len: number): Promise<Int32Array> {
  const g = new Graph('nearest');
  g.output(g.op('Gemm', [g.input('x', 'float32', [n, len]), g.input('r', 'float32', [m, len])], { transB: 1 }), 'float32', [n, m], 'dot');
  const session = await createSession(g.toModel());
  const dot = f32Data((await session.run({ x: f32(x.subarray(0, n * len), [n, len]), r: f32(refs.subarray(0, m * len), [m, len]) }))['dot'], 'dot');
  await session.release();
  const norms = Float64Array.from({ length: m }, (_, r) => refs.subarray(r * len, (r + 1) * len).reduce((a, v) => a + v * v, 0));
  return Int32Array.from({ length: n }, (_, i) => {
    let best = 0;
    for (let r = 1; r < m; r++) if (norms[r]! - 2 * dot[i * m + r]! < norms[best]! - 2 * dot[i * m + best]!) best = r;
    return best;
  });
}

function neutralDrift(plain: Float32Array, erased: Float32Array, flags: Uint8Array, len: number): { all: number; passed: number } {
  let all = 0;
  let passed = 0;
  let nPassed = 0;
  for (let i = 0; i < flags.length; i++) {
    let num = 0;
    let den = 0;
    for (let e = i * len; e < (i + 1) * len; e++) {
      num += (erased[e]! - plain[e]!) ** 2;
      den += plain[e]! ** 2;
    }
    const d = Math.sqrt(num / den);
    all += d;
    if (!flags[i]) {
      passed += d;
      nPassed++;
    }
  }
  return { all: all / Math.max(1, flags.length), passed: passed / Math.max(1, nPassed) };
}

/**
 * Batch-1 latency of plain vs erased encode over `prompts`, `reps` rounds, interleaved and
 * alternating which goes first so load drift, GC and cache warmth hit both alike. `erasedRuns`
 * counts erased encodes that erased their prompt (0 when measuring the gate's pass-through cost).
 */
export async function encodeLatency(eraser: ConceptEraser, prompts: string[], reps: number): Promise<TextEvalResult['latency'] & { erasedRuns: number }> {
  const model: TextModel = eraser.model;
  const runs = { plain: [] as number[], erased: [] as number[] };
  let erasedRuns = 0;
  const time = async (kind: 'plain' | 'erased', prompt: string) => {
    const t = performance.now();
    if (kind === 'plain') await encodePrompts(model, [prompt]);
    else erasedRuns += (await eraser.encode([prompt])).erased[0]!;
    runs[kind].push(performance.now() - t);
  };
  for (const p of prompts) {
    await encodePrompts(model, [p]);
    await eraser.encode([p]);
  }
  for (let i = 0; i < reps; i++) {
    const order = i % 2 === 0 ? (['plain', 'erased'] as const) : (['erased', 'plain'] as const);
    for (const p of prompts) for (const kind of order) await time(kind, p);
  }
  const plainMs = median(runs.plain);
  const erasedMs = median(runs.erased);
  return { plainMs, erasedMs, ratio: erasedMs / plainMs, erasedRuns };
}

async function passLatency(eraser: ConceptEraser, prompt: string, reps: number): Promise<TextEvalResult['latency']> {
  const { plainMs, erasedMs, ratio } = await encodeLatency(eraser, [prompt], reps);
  return { plainMs, erasedMs, ratio };
}

function mean(xs: boolean[]): number {
  return xs.length === 0 ? 0 : xs.filter(Boolean).length / xs.length;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

function harmonic(a: number, b: number): number {
  return a + b === 0 ? 0 : (2 * a * b) / (a + b);
}

/** Groups a class/prompt CSV into concepts with per-template prompts; templates are the prompts with the name replaced by {}. */
export function conceptsFromRows(rows: { name: string; prompt: string }[]): { concepts: ConceptSet[]; templates: string[] } {
  const templates: string[] = [];
  const byName = new Map<string, string[]>();
  for (const { name, prompt } of rows) {
    if (!prompt.includes(name)) continue; // cannot be templated
    const t = prompt.replaceAll(name, '{}');
    let ti = templates.indexOf(t);
    if (ti < 0) ti = templates.push(t) - 1;
    const list = byName.get(name) ?? [];
    list[ti] = prompt;
    byName.set(name, list);
  }
  return { concepts: [...byName].map(([name, prompts]) => ({ name, prompts })), templates };
}
