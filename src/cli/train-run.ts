/**
 * `itd train`, `itd sae info`, `itd sae eval` over parsed flags (src/cli/args.ts). The training
 * flags carry no defaults of their own: what is not given is filled by the library's config
 * (TRAIN_DEFAULTS, SAE_SIZE_DEFAULTS), so --resume compares only what the user typed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { bool, int, num, optStr, str, UsageError, type Flags } from './args.js';
import { openActivations, type ActivationSet } from '../collect/dataset.js';
import { ItdError } from '../errors.js';
import { removeStaleTemps, writeFileAtomic } from '../io/atomic.js';
import { Progress } from '../io/progress.js';
import { openTensorFile } from '../io/tensor-file.js';
import { loadSae, saeIdentity, saeWeightsPath, saveSaeConfig, saveSaeWeightsAsync, SAE_CONFIG, SAE_WEIGHTS } from '../sae/index.js';
import { SAE_SIZE_DEFAULTS, TRAIN_DEFAULTS, type TrainConfig } from '../train/config.js';
import { evaluateSae, firingHistogramSvg } from '../train/eval.js';
import { defaultKernels, kernelsLabel } from '../train/native.js';
import { Convergence, defaultTokenBudget, saeWarnings } from '../train/fit.js';
import { CHECKPOINT_FILE, Trainer, type StepStats } from '../train/trainer.js';

const LOG_FILE = 'train_log.jsonl';
const CHECKPOINT_DIR = 'checkpoint';
/** Rows of the eval set scored at each log step (the full set, up to 2^20 rows, at the end). */
const LOG_EVAL_ROWS = 4096;

/** An integer flag when given (undefined: the library's default). */
const optInt = (flags: Flags, name: string, min = 0): number | undefined => (optStr(flags, name) === undefined ? undefined : int(flags, name, min));

/** Flags that fix the run; on --resume they must agree with the checkpoint. */
function configFromFlags(flags: Flags): Partial<TrainConfig> {
  const c: Partial<TrainConfig> = {
    latents: optInt(flags, 'latents', 1),
    k: optInt(flags, 'k', 1),
    activation: bool(flags, 'batch-topk') ? 'batchtopk' : undefined,
    tokens: optInt(flags, 'tokens', 1),
    batch: optInt(flags, 'batch', 1),
    seed: optInt(flags, 'seed'),
    lr: optStr(flags, 'lr') === undefined ? undefined : num(flags, 'lr'),
    kAux: optInt(flags, 'k-aux', 1),
    deadTokens: optInt(flags, 'dead-tokens', 1),
    logEvery: optInt(flags, 'log-every', 1),
    checkpointEvery: optInt(flags, 'checkpoint-every', 1),
  };
  return Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined));
}

/** Refuses to clobber a previous run unless --resume or --force; --force removes only itd's own files. */
function prepareOut(out: string, resume: boolean, force: boolean): void {
  for (const dir of [out, path.join(out, CHECKPOINT_DIR)]) removeStaleTemps(dir); // left by a killed run
  const entries = fs.existsSync(out) ? fs.readdirSync(out) : [];
  if (resume) {
    if (!fs.existsSync(path.join(out, CHECKPOINT_DIR, CHECKPOINT_FILE))) {
      throw new ItdError('not_found', `${out}: --resume but no ${CHECKPOINT_DIR}/${CHECKPOINT_FILE} there`, { file: path.join(out, CHECKPOINT_DIR, CHECKPOINT_FILE), field: 'resume', hint: 'drop --resume to start a new run' });
    }
    return;
  }
  if (entries.length > 0 && !force) {
    throw new ItdError('usage', `${out}: directory is not empty (holds ${entries.slice(0, 4).join(', ')}${entries.length > 4 ? ', ...' : ''}); use --resume to continue its run or --force to overwrite`, { file: out, field: 'out' });
  }
  for (const f of [SAE_WEIGHTS, SAE_CONFIG, LOG_FILE, CHECKPOINT_DIR]) fs.rmSync(path.join(out, f), { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
}

async function openTrainer(acts: ActivationSet, out: string, flags: Flags): Promise<Trainer> {
  const cfg = configFromFlags(flags);
  if (!bool(flags, 'resume')) {
    const size = { ...SAE_SIZE_DEFAULTS, ...cfg };
    return Trainer.start(acts, { ...size, tokens: cfg.tokens ?? defaultTokenBudget(size.latents, acts.rows, cfg.batch ?? TRAIN_DEFAULTS.batch) });
  }
  const tr = Trainer.resume(path.join(out, CHECKPOINT_DIR, CHECKPOINT_FILE), acts);
  for (const [key, v] of Object.entries(cfg)) {
    if (key === 'logEvery' || key === 'checkpointEvery') continue;
    if (tr.cfg[key as keyof TrainConfig] !== v) {
      throw new ItdError('mismatch', `--resume: ${key} is ${JSON.stringify(tr.cfg[key as keyof TrainConfig])} in ${out}'s checkpoint but ${JSON.stringify(v)} was given`, { file: out, field: key, hint: 'drop the flag (a resumed run keeps its checkpoint\'s settings)' });
    }
  }
  return tr;
}

/** What cfg.json's training summary records of the last log window. */
interface FinalStats { fvu: number; l0: number; aux_loss: number; dead_fraction?: number }

/** The last line of train_log.jsonl, if any. */
function lastLogLine(logPath: string): FinalStats | undefined {
  if (!fs.existsSync(logPath)) return undefined;
  const lines = fs.readFileSync(logPath, 'utf8').trimEnd().split('\n');
  try {
    return JSON.parse(lines.at(-1)!) as FinalStats;
  } catch {
    return undefined; // a line cut by the kill: no stats to recover
  }
}

/** Running means of the step stats between two log lines. */
class Window {
  private sums = { fvu: 0, l0: 0, auxLoss: 0 };
  private count = 0;
  private start = performance.now();
  private tokens = 0;

  add(s: StepStats, batch: number): void {
    this.sums.fvu += s.fvu;
    this.sums.l0 += s.l0;
    this.sums.auxLoss += s.auxLoss;
    this.count++;
    this.tokens += batch;
  }

  flush(): { fvu: number; l0: number; aux_loss: number; tokens_per_s: number } {
    const c = Math.max(1, this.count);
    const secs = (performance.now() - this.start) / 1000;
    const r = { fvu: this.sums.fvu / c, l0: this.sums.l0 / c, aux_loss: this.sums.auxLoss / c, tokens_per_s: secs > 0 ? this.tokens / secs : 0 };
    this.sums = { fvu: 0, l0: 0, auxLoss: 0 };
    this.count = 0;
    this.tokens = 0;
    this.start = performance.now();
    return r;
  }
}

/** itd train --acts ACTS_DIR --latents N --k K --out SAE_DIR [...]: see the module docs of src/train. */
export async function trainCommand(flags: Flags): Promise<void> {
  const out = str(flags, 'out');
  const acts = openActivations(str(flags, 'acts'));
  const evalPath = optStr(flags, 'eval-shard');
  const evalSet = evalPath ? openActivations(evalPath) : undefined;
  if (evalSet && evalSet.d !== acts.d) throw new ItdError('mismatch', `${evalPath}: eval activations have D=${evalSet.d} but the training set has D=${acts.d}`, { file: evalPath, field: 'eval-shard' });
  if (acts.meta && !acts.meta.complete) process.stderr.write(`warning: ${acts.path}: collection incomplete; training on the ${acts.rows} rows of its finished shards\n`);
  prepareOut(out, bool(flags, 'resume'), bool(flags, 'force'));
  const tr = await openTrainer(acts, out, flags);
  if (tr.step >= tr.totalSteps && [SAE_WEIGHTS, SAE_CONFIG].every((f) => fs.existsSync(path.join(out, f)))) {
    // --resume of a finished run: the SAE, its stats, the log and the checkpoint all stay as they are.
    process.stderr.write(`${out}: this run already finished (step ${tr.step}/${tr.totalSteps}); nothing to do\n`);
    await tr.release();
    acts.close();
    evalSet?.close();
    return;
  }
  process.stderr.write(`kernels: ${kernelsLabel(tr.kernels)}\n`);
  const ckpt = path.join(out, CHECKPOINT_DIR, CHECKPOINT_FILE);
  const logPath = path.join(out, LOG_FILE);
  const { cfg } = tr;
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130); // a second Ctrl-C: the last checkpoint stays intact
    interrupted = true;
    process.stderr.write('\ninterrupt: finishing this step, then checkpointing (Ctrl-C again to abort without)\n');
  };
  process.on('SIGINT', onSigint);
  const bar = new Progress({ label: 'train', total: (tr.totalSteps - tr.step) * cfg.batch, unit: 'tokens' });
  const window = new Window();
  // Without --tokens the budget is an upper bound: stop once the loss has flattened.
  const conv = optStr(flags, 'tokens') === undefined && !bool(flags, 'resume') ? new Convergence(25, 0.005, 2, cfg.warmupSteps) : undefined;
  let converged = false;
  let last: ReturnType<Window['flush']> | undefined;
  let lastStats: StepStats | undefined;
  let checkpointed = tr.step;
  const logLine = (stats: StepStats, evalFvu: number | undefined) => {
    last = window.flush();
    const line = { step: tr.step, tokens: tr.tokens, ...last, dead_fraction: stats.deadFraction, lr: stats.lr, ...(evalFvu !== undefined ? { eval_fvu: evalFvu } : {}) };
    fs.appendFileSync(logPath, JSON.stringify(line) + '\n');
    process.stderr.write(`\nstep ${line.step} tokens ${line.tokens} fvu ${line.fvu.toFixed(4)} l0 ${line.l0.toFixed(1)} dead ${(100 * line.dead_fraction).toFixed(2)}% aux ${line.aux_loss.toFixed(4)} ${line.tokens_per_s.toFixed(0)} tok/s${evalFvu !== undefined ? ` eval_fvu ${evalFvu.toFixed(4)}` : ''}\n`);
  };
  try {
    while (tr.step < tr.totalSteps && !interrupted && !converged) {
      lastStats = await tr.trainStep();
      window.add(lastStats, cfg.batch);
      bar.tick(cfg.batch);
      converged = conv?.observe(tr.step, lastStats.fvu) ?? false;
      // The last step's line waits for the final evaluation, whose first LOG_EVAL_ROWS rows give its eval_fvu.
      if (tr.step === tr.totalSteps || converged) break;
      if (tr.step % cfg.logEvery === 0) logLine(lastStats, evalSet ? (await evaluateSae(tr.sae, evalSet, { maxRows: LOG_EVAL_ROWS, kernels: tr.kernels })).fvu : undefined);
      if (tr.step % cfg.checkpointEvery === 0) {
        tr.saveCheckpoint(ckpt);
        checkpointed = tr.step;
      }
    }
    // Nothing trains from here on: the checkpoint and the SAE's weights are written while the final evaluation computes.
    const stopped = interrupted; // a Ctrl-C from here on no longer stops the run
    const saving = Promise.all([
      tr.step === checkpointed && fs.existsSync(ckpt) ? undefined : tr.saveCheckpointAsync(ckpt),
      stopped ? undefined : saveSaeWeightsAsync(out, tr.sae),
    ]);
    saving.catch(() => undefined); // awaited below; an evaluation error must not leave it unhandled
    const lastStep = lastStats !== undefined && (tr.step === tr.totalSteps || converged);
    const evalResult = evalSet && (!stopped || lastStep) ? await evaluateSae(tr.sae, evalSet, { kernels: tr.kernels, prefixRows: LOG_EVAL_ROWS }) : undefined;
    if (lastStep) logLine(lastStats!, evalResult?.prefixFvu);
    await saving;
    bar.done();
    if (stopped) {
      process.stderr.write(`interrupted at step ${tr.step}/${tr.totalSteps}; checkpoint saved, continue with --resume\n`);
      process.exitCode = 130;
      return;
    }
    // A run killed after its last step but before saving the SAE resumes with no steps left: its final stats are the log's last line.
    const final: FinalStats = last ?? lastLogLine(logPath) ?? window.flush();
    tr.sae.cfg.training = {
      tokens: tr.tokens, steps: tr.step, batch: cfg.batch, fvu: final.fvu, l0: final.l0, dead_fraction: lastStats?.deadFraction ?? final.dead_fraction ?? 0,
      aux_loss: final.aux_loss, lr: cfg.lr, warmup_steps: cfg.warmupSteps, seed: cfg.seed, k_aux: cfg.kAux, aux_coef: cfg.auxCoef,
      dead_tokens: cfg.deadTokens, adam: { beta1: cfg.adamBeta1, beta2: cfg.adamBeta2, eps: cfg.adamEps }, b_pre_init: 'geometric_median',
      acts: path.resolve(acts.path), kernels: tr.kernels.name, ...(tr.kernels.isa ? { isa: tr.kernels.isa } : {}),
      ...(evalResult ? { eval: { path: path.resolve(evalSet!.path), rows: evalResult.rows, fvu: evalResult.fvu, l0: evalResult.l0, dead_fraction: evalResult.deadFraction } } : {}),
    };
    saveSaeConfig(out, tr.sae);
    if (converged) process.stderr.write(`converged after ${tr.step} steps (${tr.tokens} tokens): FVU improved < 0.5% per 25 steps\n`);
    process.stderr.write(`saved ${path.join(out, SAE_WEIGHTS)} (fvu ${final.fvu.toFixed(4)}${evalResult ? `, eval fvu ${evalResult.fvu.toFixed(4)}` : ''})\n`);
    const q = { fvu: evalResult?.fvu ?? final.fvu, deadFraction: evalResult?.deadFraction ?? lastStats?.deadFraction ?? 0, tokens: tr.tokens, latents: cfg.latents };
    for (const w of saeWarnings(q)) process.stderr.write(`warning: ${w}\n`);
  } finally {
    process.off('SIGINT', onSigint);
    await tr.release();
    acts.close();
    evalSet?.close();
  }
}

/** itd sae info SAE_DIR: config, tensor shapes, identity, training summary, decoder norms. */
export async function saeInfoCommand(flags: Flags, positionals: string[]): Promise<void> {
  const dir = positionals[0];
  if (!dir) throw new UsageError('missing SAE_DIR');
  const sae = loadSae(dir, { k: optInt(flags, 'k', 1) });
  const file = saeWeightsPath(dir);
  const st = openTensorFile(file);
  const tensors = st.names().map((nm) => `${nm} ${st.info(nm).dtype} ${JSON.stringify(st.info(nm).shape)}`);
  st.close();
  let lo = Infinity;
  let hi = 0;
  for (let j = 0; j < sae.n; j++) {
    let s = 0;
    for (let t = 0; t < sae.d; t++) s += sae.wDec[j * sae.d + t]! ** 2;
    lo = Math.min(lo, Math.sqrt(s));
    hi = Math.max(hi, Math.sqrt(s));
  }
  const { training, ...cfg } = sae.cfg;
  const lines = [
    `${file}`,
    `identity   ${saeIdentity(dir)}`,
    `d_in ${sae.d}  latents ${sae.n}  k ${sae.k}  activation ${sae.activation}${sae.threshold !== undefined ? `  threshold ${sae.threshold}` : ''}`,
    `hookpoint  ${cfg.hookpoint ?? '?'}  layer ${cfg.layer ?? '?'}  model ${cfg.model_id ?? '?'}`,
    `decoder row norms  min ${lo.toFixed(4)}  max ${hi.toFixed(4)}`,
    'tensors:',
    ...tensors.map((t) => `  ${t}`),
    ...(training ? ['training:', ...Object.entries(training).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`)] : []),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

/** itd sae eval --sae SAE_DIR --acts ACTS_DIR [--svg out.svg] [--max-rows N]: FVU, L0, dead %, firing histogram. */
export async function saeEvalCommand(flags: Flags): Promise<void> {
  const dir = str(flags, 'sae');
  const sae = loadSae(dir, { k: optInt(flags, 'k', 1) });
  const acts = openActivations(str(flags, 'acts'));
  try {
    const kernels = defaultKernels();
    const r = await evaluateSae(sae, acts, { maxRows: optInt(flags, 'max-rows', 1), kernels });
    process.stdout.write(
      `kernels ${kernelsLabel(kernels)}\nrows ${r.rows}\nfvu ${r.fvu.toFixed(6)}\nl0 ${r.l0.toFixed(2)}\ndead ${(100 * r.deadFraction).toFixed(2)}% (${Math.round(r.deadFraction * sae.n)} of ${sae.n} never fired)\n`,
    );
    const svg = optStr(flags, 'svg');
    if (svg) {
      writeFileAtomic(svg, firingHistogramSvg(r.counts, r.rows, `${path.basename(path.resolve(dir))}: firing frequency over ${r.rows} rows`));
      process.stdout.write(`histogram written to ${svg}\n`);
    }
  } finally {
    acts.close();
    await sae.release();
  }
}
