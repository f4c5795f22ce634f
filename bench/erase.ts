/**
 * bench:erase — ItD end to end with defaults only, on CLIP-L-size synthetic models with and
 * without the attention sink (ITD_BENCH_VARIANTS, default "sink-0,nosink-0"; add e.g. "sink-1"
 * for another seed):
 *   create     `itd eraser create` for 10 celebrities from ../shared (5 retained): collects the
 *              bundled neutral captions + build-template prompts, trains the SAE, selects, calibrates;
 *   zero-shot  `itd eraser create --sae` (nothing retrained; latents grown for the new names, the
 *              SAE's own frozen) for 10 invented names the SAE never saw (5 invented names
 *              retained), names that appear nowhere in ../shared/data;
 * then `itd bench erase` on the bundled held-out templates (never used to select or calibrate)
 * and the bundled neutral evaluation slice (never used to select or calibrate). Stages are cached
 * in .cache/bench/erase-*; a summary table is printed at the end.
 *
 *   ITD_BENCH_LATENTS (16384), ITD_BENCH_TOKENS (unset: the default budget, stopping at convergence)
 *   `npm run bench:erase -- sdxl` (or sdxl-tiny): the SDXL synthetic pipeline, SAE on text_encoder_2
 *   `npm run bench:erase -- flux-tiny` (or flux): the FLUX.1 synthetic pipeline, SAE on the T5
 *              (text_encoder_2) at its default depth, framed at max_sequence_length 512 as FluxPipeline
 *              runs it; also measures where the concept sits: the gate's AUROC (held-out targets vs
 *              neutral captions) on the real tokens and on the padding rows, and the share of the
 *              edit's squared norm that lands on padding. ITD_BENCH_MAX_SEQ frames the T5 shorter
 *              (FluxPipeline's max_sequence_length; 512 by default as FLUX.1-dev).
 *              Also Acc_e again with 3 length-matched control names per target among the
 *              candidates (T5 names vary in piece count; see matchedIdentification).
 *   ITD_BENCH_SETS (create,zero-shot): which of the two concept sets run.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { bundledNeutralPrompts, bundledTemplates } from '../src/select/data.js';
import { neutralSlices } from '../src/select/create.js';
import { benchModel, CACHE, ITD_CLI, machine } from './common.js';
import { auroc } from '../src/classify/calibrate.js';
import { encodePrompts, loadTextModel, tokenRowBatches } from '../src/encoder/index.js';
import { censusNames } from '../src/tokenizer/index.js';
import { ConceptEraser, Gate } from '../src/erase/index.js';
import { loadSae } from '../src/sae/index.js';
import { erasedLatents, loadEraser } from '../src/select/eraser-file.js';
import type { Preset } from '../src/synth/clip.js';

const SEEN = ['Adam Driver', 'Adriana Lima', 'Amber Heard', 'Amy Adams', 'Andrew Garfield', 'Angelina Jolie', 'Anjelica Huston', 'Anna Faris', 'Anna Kendrick', 'Anne Hathaway'];
const SEEN_RETAINED = ['Aaron Paul', 'Alec Baldwin', 'Amanda Seyfried', 'Amy Poehler', 'Andy Samberg'];
/** Invented for this benchmark; none occurs in ../shared/data (checked with grep when written). */
const UNSEEN = ['Marlon Tessaro', 'Ingrid Valcourt', 'Dmitri Halloway', 'Priya Ashcombe', 'Keanu Rendell', 'Solene Marchetti', 'Olwen Trevanion', 'Rafael Okonkwo', 'Yuki Brannigan', 'Astrid Lindqvist'];
const UNSEEN_RETAINED = ['Tobias Oduya', 'Bianca Castellano', 'Viktor Kovacs', 'Aurelie Bellweather', 'Sunniva Haldane'];

const latents = process.env['ITD_BENCH_LATENTS'] ?? '16384';
// `npm run bench:erase -- sdxl` (or sdxl-tiny): the same on the synthetic SDXL pipeline, SAE on text_encoder_2 at its default depth.
const preset = process.argv[2] ?? 'sd1';
if (!['sd1', 'sdxl', 'sdxl-tiny', 'flux', 'flux-tiny'].includes(preset)) throw new Error(`bench:erase: preset must be sd1, sdxl, sdxl-tiny, flux or flux-tiny, got ${preset}`);
const flux = preset.startsWith('flux');
// The attention sink is CLIP's; FLUX's ItD part is the T5, so one variant.
const variants = (process.env['ITD_BENCH_VARIANTS'] ?? (flux ? 'sink-0' : 'sink-0,nosink-0')).split(',');
const maxSeq = flux && process.env['ITD_BENCH_MAX_SEQ'] ? Number(process.env['ITD_BENCH_MAX_SEQ']) : undefined;
const seqFlags = maxSeq ? ['--max-sequence-length', String(maxSeq)] : [];
const runSets = (process.env['ITD_BENCH_SETS'] ?? 'create,zero-shot').split(',');

function itd(...args: string[]): void {
  console.log(`$ itd ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [...ITD_CLI, ...args], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`itd ${args.slice(0, 2).join(' ')} failed`);
}

const csvField = (s: string) => `"${s.replaceAll('"', '""')}"`;
/** class,prompt rows over the build then held-out templates (bench erase groups them back by template). */
function conceptCsv(file: string, names: string[], templates: string[]): string {
  fs.writeFileSync(file, ['class,prompt', ...names.flatMap((n) => templates.map((t) => `${csvField(n)},${csvField(t.replaceAll('{}', n))}`))].join('\n') + '\n');
  return file;
}

const T = bundledTemplates();
const all = [...T.build, ...T.heldout];
const evalIdx = T.heldout.map((_, i) => T.build.length + i).join(',');
const names = (xs: string[], flag: string) => xs.flatMap((x) => [flag, x]);
const rows: { variant: string; set: string; r: Record<string, number>; s: Record<string, unknown> }[] = [];
const paddingRows: ({ variant: string; set: string } & Awaited<ReturnType<typeof paddingShare>>)[] = [];

/**
 * Where the concept sits in the T5's framed rows: per prompt, the gate's score (mean over rows of
 * the mean squared edit) on its real tokens and on its padding rows, the AUROC of each (held-out
 * target prompts vs neutral captions), and the share of an erased prompt's edit on the padding.
 */
async function paddingShare(modelDir: string, saeDir: string, eraserFile: string, names: string[], templates: string[], neutral: string[]) {
  const part = await loadTextModel(modelDir, { encoder: 'text_encoder_2', ...(maxSeq ? { maxSequenceLength: maxSeq } : {}) });
  const spec = loadEraser(eraserFile);
  const gate = await Gate.create(loadSae(saeDir), erasedLatents(spec), spec.activationThreshold, spec.scale);
  const scores = async (prompts: string[]) => {
    const real: number[] = [];
    const pad: number[] = [];
    const share: number[] = []; // of the squared edit: padding rows / all rows
    for await (const b of tokenRowBatches(part, prompts, spec.layer, { pad: true, batch: 8 })) {
      const acts = await gate.activations(b.x, b.tokenIds.length);
      for (let r = 0; r < b.n; r++) {
        const [o, e, len] = [b.offsets[r]!, b.offsets[r + 1]!, b.lengths[r]!];
        real.push(gate.score(acts, o, o + len));
        pad.push(gate.score(acts, o + len, e));
        const total = real.at(-1)! * len + pad.at(-1)! * (e - o - len);
        if (total > 0) share.push((pad.at(-1)! * (e - o - len)) / total);
      }
    }
    return { real, pad, share };
  };
  const target = await scores(names.flatMap((n) => templates.map((t) => t.replaceAll('{}', n))));
  const other = await scores(neutral);
  const padShare = target.share.length ? target.share.reduce((a, c) => a + c, 0) / target.share.length : 0;
  await gate.release();
  await part.encoder.release();
  return { aurocReal: auroc(target.real, other.real), aurocPad: auroc(target.pad, other.pad), padShare };
}
/**
 * Acc_e's identification test compares [L, D] embeddings position by position, so a name whose
 * piece count no other candidate shares stays nearest its own unerased embedding (every other
 * candidate, the filler too, has the rest of the template shifted), erased or not. Controls: the
 * same test with 3 more candidates per target, census names ("First Last", in rank order) of the
 * target's piece count sharing none of its pieces and used by no set of this bench.
 */
async function matchedIdentification(modelDir: string, saeDir: string, eraserFile: string, targets: string[], others: string[], templates: string[]) {
  const part = await loadTextModel(modelDir, { encoder: 'text_encoder_2', ...(maxSeq ? { maxSequenceLength: maxSeq } : {}) });
  const eraser = await ConceptEraser.load({ model: part, sae: saeDir, eraser: eraserFile });
  const pieces = (s: string) => part.tokenizer.encode(s);
  const census = censusNames();
  const used = new Set([...SEEN, ...SEEN_RETAINED, ...UNSEEN, ...UNSEEN_RETAINED]);
  let [plain, matched] = [0, 0];
  for (const c of targets) {
    const own = pieces(c);
    const controls: string[] = [];
    for (let i = 0; controls.length < 3 && i < census.last.length; i++) {
      const m = `${census.first_female[i % census.first_female.length]} ${census.last[i]}`;
      const p = pieces(m);
      if (!used.has(m) && p.length === own.length && !p.some((x) => own.includes(x))) controls.push(m);
    }
    const candidates = [c, ...others.filter((x) => x !== c), 'a person', ...controls];
    const prompts = templates.flatMap((t) => candidates.map((x) => t.replaceAll('{}', x)));
    const ref = await encodePrompts(part, prompts);
    const out = await eraser.encode(templates.map((t) => t.replaceAll('{}', c)));
    const L = ref.t * ref.d;
    templates.forEach((_, ti) => {
      const e = out.lastHiddenState.subarray(ti * L, (ti + 1) * L);
      const d = candidates.map((_, k) => {
        const r = ref.lastHiddenState.subarray((ti * candidates.length + k) * L, (ti * candidates.length + k + 1) * L);
        return e.reduce((s, v, i) => s + (v - r[i]!) ** 2, 0);
      });
      const nearest = (n: number) => d.slice(0, n).indexOf(Math.min(...d.slice(0, n)));
      plain += nearest(candidates.length - controls.length) === 0 ? 1 : 0;
      matched += nearest(candidates.length) === 0 ? 1 : 0;
    });
  }
  await eraser.release();
  return { accE: plain / (targets.length * templates.length), accEMatched: matched / (targets.length * templates.length) };
}
const matchedRows: { variant: string; set: string; accE: number; accEMatched: number }[] = [];

console.log(`bench:erase — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
for (const v of variants) {
  const m = /^(sink|nosink)-(\d+)$/.exec(v);
  if (!m) throw new Error(`ITD_BENCH_VARIANTS: '${v}' must be sink-SEED or nosink-SEED`);
  const model = benchModel(preset as Preset, Number(m[2]), m[1] === 'sink');
  const dir = path.join(CACHE, `erase-${preset === 'sd1' ? '' : `${preset}-`}${maxSeq ? `${maxSeq}-` : ''}${v}-${latents}`);
  fs.mkdirSync(dir, { recursive: true });
  const neutral = path.join(dir, 'neutral-eval.txt');
  fs.writeFileSync(neutral, neutralSlices(bundledNeutralPrompts()).evaluate.join('\n') + '\n');
  const sets = [
    { set: 'create', targets: SEEN, retained: SEEN_RETAINED, sae: undefined as string | undefined },
    { set: 'zero-shot', targets: UNSEEN, retained: UNSEEN_RETAINED, sae: path.join(dir, 'create', 'sae') },
  ];
  for (const s of sets.filter((x) => runSets.includes(x.set))) {
    const out = path.join(dir, s.set);
    const t0 = performance.now();
    if (!fs.existsSync(path.join(out, 'eraser.json'))) {
      itd('eraser', 'create', '--model', model, ...seqFlags, ...names(s.targets, '--concept'), ...names(s.retained, '--retain-concept'), '--latents', latents,
        ...(process.env['ITD_BENCH_TOKENS'] ? ['--tokens', process.env['ITD_BENCH_TOKENS']] : []), ...(s.sae ? ['--sae', s.sae] : []), '--out', out);
      fs.writeFileSync(path.join(out, 'seconds.txt'), `${((performance.now() - t0) / 1000).toFixed(0)}\n`);
    }
    const report = path.join(out, 'report');
    // create writes out/sae when it trains one or grows latents for the new names (--sae ... --no-grow does not).
    const saeUsed = fs.existsSync(path.join(out, 'sae', 'sae.safetensors')) ? path.join(out, 'sae') : s.sae!;
    itd('bench', 'erase', '--model', model, ...seqFlags, '--sae', saeUsed, '--eraser', path.join(out, 'eraser.json'),
      '--targets', conceptCsv(path.join(out, 'targets.csv'), s.targets, all), '--retained', conceptCsv(path.join(out, 'retained.csv'), s.retained, all),
      '--neutral', neutral, '--neutral-count', '1000', '--eval-templates', evalIdx, '--out', report);
    if (flux) matchedRows.push({ variant: v, set: s.set, ...(await matchedIdentification(model, saeUsed, path.join(out, 'eraser.json'), s.targets, [...s.targets, ...s.retained], T.heldout)) });
    if (flux) paddingRows.push({ variant: v, set: s.set, ...(await paddingShare(model, saeUsed, path.join(out, 'eraser.json'), s.targets, T.heldout, fs.readFileSync(neutral, 'utf8').trim().split('\n').slice(0, 300))) });
    rows.push({ variant: v, set: s.set, r: JSON.parse(fs.readFileSync(path.join(report, 'report.json'), 'utf8')), s: JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) });
  }
}

const f = (x: unknown, d = 3) => (typeof x === 'number' ? x.toFixed(d) : String(x));
console.log('\n| model | concepts | SAE FVU / dead | Acc_e | Acc_r | H_o | AUROC | TPR | FPR neutral | FPR retained | drift (passed) | latency erased/plain | create s |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const { variant, set, r, s } of rows) {
  const sae = (s['sae'] ?? {}) as { fvu?: number; deadFraction?: number };
  const lat = r['latency'] as unknown as { ratio: number };
  console.log(`| ${variant} | ${set} | ${sae.fvu !== undefined ? `${f(sae.fvu)} / ${f(100 * sae.deadFraction!, 1)}%` : 'reused'} | ${f(r['accE'])} | ${f(r['accR'])} | ${f(r['hO'])} | ${f(r['auroc'], 4)} | ${f(r['tpr'])} | ${f(r['fprNeutral'])} | ${f(r['fprRetained'])} | ${f(r['neutralDriftPassed'])} | ${f(lat.ratio, 2)}x | ${f(s['seconds'], 0)} |`);
}

if (paddingRows.length > 0) {
  console.log('\n| model | concepts | gate AUROC, real tokens | gate AUROC, padding rows | edit share on padding |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const p of paddingRows) console.log(`| ${p.variant} | ${p.set} | ${f(p.aurocReal, 4)} | ${f(p.aurocPad, 4)} | ${f(p.padShare)} |`);
}

if (matchedRows.length > 0) {
  console.log('\n| model | concepts | Acc_e (bench erase\'s candidates) | Acc_e with 3 length-matched control names per target |');
  console.log('| --- | --- | --- | --- |');
  for (const m of matchedRows) console.log(`| ${m.variant} | ${m.set} | ${f(m.accE)} | ${f(m.accEMatched)} |`);
}
