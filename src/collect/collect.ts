/**
 * Activation collection: the residual stream after encoder.layers[layer] (Hugging Face
 * hidden_states[layer+1]) for every kept token of every prompt, written as safetensors shards
 * plus manifest.json. Rows come from the encoder's extraction primitive (src/encoder/token-rows.ts):
 * only blocks 0..layer run; a causal tower's batch is padded only to its longest prompt (exact), a
 * T5 part's rows run at its max_sequence_length, as the pipeline runs them (padding is attended),
 * and only the kept positions are stored.
 *
 * Crash safety: shards and the manifest are written atomically; the manifest lists only finished
 * shards, each ending on a prompt boundary, so a killed run resumes from the last listed shard.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ItdError } from '../errors.js';
import { removeStaleTemps, writeJsonAtomic } from '../io/atomic.js';
import { sha256File } from '../io/hash.js';
import { stderrProgress, type ProgressFactory } from '../io/progress.js';
import { writeSafetensors } from '../io/safetensors.js';
import { tokenRowBatches, type TextModel } from '../encoder/index.js';
import { parseManifest, type ActivationManifest, type TokenKind } from './manifest.js';

export type { ActivationManifest, ShardEntry, TokenKind } from './manifest.js';
export const TOKEN_KINDS: readonly TokenKind[] = ['bos', 'eos', 'pad'];

export interface CollectOptions {
  out: string;
  layer: number;
  prompts: string[];
  /** Positions left out of the data (default bos + pad; EOS kept). */
  exclude?: TokenKind[];
  dtype?: 'F32' | 'F16';
  batch?: number;
  /** Rows per shard (shards end at batch boundaries, so they may be slightly larger). */
  shardRows?: number;
  /** Stop after this many rows. */
  maxTokens?: number;
  /** Overwrite an existing collection from another model/layer/prompt set. */
  force?: boolean;
  /** Progress bars (default: one on stderr). */
  progress?: ProgressFactory;
  /** Notes for the user (truncated prompts, a resumed run); the library itself never prints. */
  log?: (line: string) => void;
}

export async function collectActivations(model: TextModel, opts: CollectOptions): Promise<ActivationManifest> {
  const exclude = opts.exclude ?? ['bos', 'pad'];
  const batchSize = opts.batch ?? 32;
  const shardRows = opts.shardRows ?? 1 << 16;
  if (opts.prompts.length === 0) throw new Error('collect: no prompts given (the prompt files are empty)');
  const { encoder, tokenizer } = model;
  if (!Number.isInteger(opts.layer) || opts.layer < 0 || opts.layer >= encoder.numLayers) {
    throw new Error(`collect: --layer ${opts.layer} is outside 0..${encoder.numLayers - 1}`);
  }
  const manifest = startManifest(model, opts, exclude);
  if (manifest.complete) return manifest; // the same collection again: a no-op that rewrites nothing
  manifest.truncated_prompts = tokenizer.batch(opts.prompts).truncated.filter((c) => c > 0).length;
  if (manifest.truncated_prompts > 0) {
    opts.log?.(`collect: ${manifest.truncated_prompts} prompt(s) longer than ${tokenizer.maxLength} tokens were truncated (EOS kept)`);
  }

  const D = model.config.hiddenSize;
  const first = manifest.shards.at(-1)?.prompts?.[1] ?? 0;
  const bar = (opts.progress ?? stderrProgress)({ label: `collect layer ${opts.layer}`, total: opts.prompts.length, unit: 'prompts' });
  bar.tick(first);
  let pending: { acts: Float32Array[]; promptIndex: number[]; position: number[]; tokenId: number[]; start: number } = fresh(first);
  const flush = (end: number) => {
    if (pending.promptIndex.length > 0) writeShard(opts.out, manifest, pending, end, D);
    pending = fresh(end);
  };

  let next = first;
  const include = { batch: batchSize, bos: !exclude.includes('bos'), eos: !exclude.includes('eos'), pad: !exclude.includes('pad') };
  for await (const b of tokenRowBatches(model, opts.prompts.slice(first), opts.layer, include)) {
    const room = opts.maxTokens === undefined ? Infinity : opts.maxTokens - manifest.rows - pending.promptIndex.length;
    for (let r = 0; r < b.n; r++) {
      for (let i = b.offsets[r]!; i < b.offsets[r + 1]! && i < room; i++) {
        pending.acts.push(b.x.subarray(i * D, (i + 1) * D));
        pending.promptIndex.push(next + r);
        pending.position.push(b.positions[i]!);
        pending.tokenId.push(b.tokenIds[i]!);
      }
    }
    next += b.n;
    bar.tick(b.n);
    if (pending.promptIndex.length >= shardRows) flush(next);
    if (reachedLimit(manifest, pending, opts.maxTokens)) break;
  }
  flush(next);
  manifest.complete = true;
  writeJsonAtomic(path.join(opts.out, 'manifest.json'), manifest);
  bar.done();
  return manifest;
}

function fresh(start: number) {
  return { acts: [] as Float32Array[], promptIndex: [] as number[], position: [] as number[], tokenId: [] as number[], start };
}

function reachedLimit(m: ActivationManifest, pending: { promptIndex: number[] }, max?: number): boolean {
  return max !== undefined && m.rows + pending.promptIndex.length >= max;
}

function writeShard(
  out: string,
  manifest: ActivationManifest,
  pending: { acts: Float32Array[]; promptIndex: number[]; position: number[]; tokenId: number[]; start: number },
  end: number,
  D: number,
): void {
  const rows = pending.promptIndex.length;
  const acts = new Float32Array(rows * D); // [rows, D]
  pending.acts.forEach((a, i) => acts.set(a, i * D));
  const file = `shard-${String(manifest.shards.length).padStart(5, '0')}.safetensors`;
  const full = path.join(out, file);
  writeSafetensors(full, {
    activations: { dtype: manifest.dtype, shape: [rows, D], data: acts },
    prompt_index: { dtype: 'I32', shape: [rows], data: Int32Array.from(pending.promptIndex) },
    position: { dtype: 'I32', shape: [rows], data: Int32Array.from(pending.position) },
    token_id: { dtype: 'I32', shape: [rows], data: Int32Array.from(pending.tokenId) },
  }, { layer: String(manifest.layer), model_id: manifest.model.id });
  const sha256 = sha256File(full);
  manifest.shards.push({ file, rows, sha256, prompts: [pending.start, end] });
  manifest.rows += rows;
  writeJsonAtomic(path.join(out, 'manifest.json'), manifest);
}

/**
 * A fresh manifest, or the one of an earlier run with identical settings: complete (nothing to do)
 * or interrupted (resume after its last listed shard). Temp files of killed runs are removed first.
 */
function startManifest(model: TextModel, opts: CollectOptions, exclude: TokenKind[]): ActivationManifest {
  const dtype = opts.dtype ?? 'F32';
  const promptsSha = crypto.createHash('sha256').update(JSON.stringify(opts.prompts)).digest('hex');
  const manifestPath = path.join(opts.out, 'manifest.json');
  fs.mkdirSync(opts.out, { recursive: true });
  removeStaleTemps(opts.out);
  if (fs.existsSync(manifestPath) && !opts.force) {
        const old = parseManifest(manifestPath);
    const same = old.model?.id === model.id && old.layer === opts.layer && old.dtype === dtype &&
      old.prompts_sha256 === promptsSha && JSON.stringify(old.exclude) === JSON.stringify(exclude);
    if (!same) {
      throw new ItdError('mismatch', `${manifestPath}: holds activations of another model, layer, dtype, token mask or prompt set`, {
        file: manifestPath, hint: 'choose a new --out, or pass --force to overwrite',
      });
    }
    if (old.complete) {
      const limit = opts.maxTokens ?? null;
      if (old.max_tokens !== undefined && old.max_tokens !== limit) {
        throw new ItdError('mismatch', `${manifestPath}: a complete collection made with --max-tokens ${old.max_tokens ?? 'unlimited'}, ` +
          `not ${limit ?? 'unlimited'}`, { file: manifestPath, field: 'max_tokens', hint: 'choose a new --out, or pass --force to redo it' });
      }
      return old;
    }
    opts.log?.(`collect: resuming after ${old.shards.length} finished shard(s), ${old.rows} rows`);
    return old;
  }
  for (const f of fs.readdirSync(opts.out)) if (/^shard-\d+\.safetensors/.test(f)) fs.rmSync(path.join(opts.out, f));
  return {
    format: 'itd-activations/1',
    model: { id: model.id, dir: path.resolve(model.dir) },
    layer: opts.layer,
    hookpoint: model.hookpoint(opts.layer),
    d: model.config.hiddenSize,
    dtype,
    exclude,
    prompts: opts.prompts,
    prompts_sha256: promptsSha,
    rows: 0,
    complete: false,
    truncated_prompts: 0,
    max_tokens: opts.maxTokens ?? null,
    shards: [],
  };
}
