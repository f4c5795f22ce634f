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
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { bundledNeutralPrompts, bundledTemplates } from '../src/select/data.js';
import { neutralSlices } from '../src/select/create.js';
import { benchModel, CACHE, ITD_CLI, machine } from './common.js';

const SEEN = ['Adam Driver', 'Adriana Lima', 'Amber Heard', 'Amy Adams', 'Andrew Garfield', 'Angelina Jolie', 'Anjelica Huston', 'Anna Faris', 'Anna Kendrick', 'Anne Hathaway'];
const SEEN_RETAINED = ['Aaron Paul', 'Alec Baldwin', 'Amanda Seyfried', 'Amy Poehler', 'Andy Samberg'];
/** Invented for this benchmark; none occurs in ../shared/data (checked with grep when written). */
const UNSEEN = ['Marlon Tessaro', 'Ingrid Valcourt', 'Dmitri Halloway', 'Priya Ashcombe', 'Keanu Rendell', 'Solene Marchetti', 'Olwen Trevanion', 'Rafael Okonkwo', 'Yuki Brannigan', 'Astrid Lindqvist'];
const UNSEEN_RETAINED = ['Tobias Oduya', 'Bianca Castellano', 'Viktor Kovacs', 'Aurelie Bellweather', 'Sunniva Haldane'];

const latents = process.env['ITD_BENCH_LATENTS'] ?? '16384';
const variants = (process.env['ITD_BENCH_VARIANTS'] ?? 'sink-0,nosink-0').split(',');
// `npm run bench:erase -- sdxl` (or sdxl-tiny): the same on the synthetic SDXL pipeline, SAE on text_encoder_2 at its default depth.
const preset = process.argv[2] ?? 'sd1';
if (preset !== 'sd1' && preset !== 'sdxl' && preset !== 'sdxl-tiny') throw new Error(`bench:erase: preset must be sd1, sdxl or sdxl-tiny, got ${preset}`);

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
console.log(`bench:erase — ${machine()} — ${new Date().toISOString().slice(0, 10)}`);
for (const v of variants) {
  const m = /^(sink|nosink)-(\d+)$/.exec(v);
  if (!m) throw new Error(`ITD_BENCH_VARIANTS: '${v}' must be sink-SEED or nosink-SEED`);
  const model = benchModel(preset, Number(m[2]), m[1] === 'sink');
  const dir = path.join(CACHE, `erase-${preset === 'sd1' ? '' : `${preset}-`}${v}-${latents}`);
  fs.mkdirSync(dir, { recursive: true });
  const neutral = path.join(dir, 'neutral-eval.txt');
  fs.writeFileSync(neutral, neutralSlices(bundledNeutralPrompts()).evaluate.join('\n') + '\n');
  const sets = [
    { set: 'create', targets: SEEN, retained: SEEN_RETAINED, sae: undefined as string | undefined },
    { set: 'zero-shot', targets: UNSEEN, retained: UNSEEN_RETAINED, sae: path.join(dir, 'create', 'sae') },
  ];
  for (const s of sets) {
    const out = path.join(dir, s.set);
    const t0 = performance.now();
    if (!fs.existsSync(path.join(out, 'eraser.json'))) {
      itd('eraser', 'create', '--model', model, ...names(s.targets, '--concept'), ...names(s.retained, '--retain-concept'), '--latents', latents,
        ...(process.env['ITD_BENCH_TOKENS'] ? ['--tokens', process.env['ITD_BENCH_TOKENS']] : []), ...(s.sae ? ['--sae', s.sae] : []), '--out', out);
      fs.writeFileSync(path.join(out, 'seconds.txt'), `${((performance.now() - t0) / 1000).toFixed(0)}\n`);
    }
    const report = path.join(out, 'report');
    // create writes out/sae when it trains one or grows latents for the new names (--sae ... --no-grow does not).
    const saeUsed = fs.existsSync(path.join(out, 'sae', 'sae.safetensors')) ? path.join(out, 'sae') : s.sae!;
    itd('bench', 'erase', '--model', model, '--sae', saeUsed, '--eraser', path.join(out, 'eraser.json'),
      '--targets', conceptCsv(path.join(out, 'targets.csv'), s.targets, all), '--retained', conceptCsv(path.join(out, 'retained.csv'), s.retained, all),
      '--neutral', neutral, '--neutral-count', '1000', '--eval-templates', evalIdx, '--out', report);
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
