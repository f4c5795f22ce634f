/**
 * The one activation-extraction primitive: prompts -> the residual rows of their real tokens after
 * a block, with each prompt's row offsets, token ids and positions. collect, select, grow, the
 * eraser's gate (classify, agreement), serve's token scores and the tests all read activations
 * through it, so "which positions are real" and "how long a row runs" are decided once, here.
 *
 * Real tokens, as the family frames them: everything from the first content token (after the
 * tokenizer's leading framing tokens: CLIP's BOS; T5 has none) up to and including the end token
 * (CLIP EOS, T5 `</s>`); never padding.
 *
 * Row length: a causal tower (CLIP) never lets a position see later ones, so running a batch
 * padded only to its longest prompt gives exactly the rows of the fully padded run. A
 * bidirectional tower run without an attention mask (T5 as FLUX.1 and SD3 call it) lets every
 * position attend to every pad, so a real token's state depends on the framed length (measured on
 * flux-tiny: per-token cosine 0.03-0.13 between the rows of a 16-token run and of the 512-token
 * run); its rows therefore run at the part's framed length (the pipeline's max_sequence_length),
 * exactly as the pipeline computes them.
 */
import type { EncoderPart } from './text-encoder.js';

export interface RowOptions {
  /** Prompts per encoder call (default 32). */
  batch?: number;
  /** Also the leading framing tokens (CLIP's BOS); default false. */
  bos?: boolean;
  /** The end token (EOS / `</s>`); default true. */
  eos?: boolean;
  /** Also the padding positions; rows then run at the full framed length. Default false. */
  pad?: boolean;
}

/** Rows of n prompts, prompt after prompt. */
export interface TokenRows {
  n: number;
  d: number;
  x: Float32Array; // [rows, D]
  offsets: Int32Array; // [n + 1]: prompt r owns rows offsets[r] .. offsets[r+1]
  tokenIds: Int32Array; // [rows]
  positions: Int32Array; // [rows] position in the framed row
  lengths: Int32Array; // [n] framed tokens up to and including the end token (CLIP: BOS included)
  truncated: Int32Array; // [n] content tokens cut to fit the framed length
}

/** The length a batch's rows run at (see the module comment): the longest prompt for a causal tower, else the framed length. */
export function runLength(part: EncoderPart, lengths: ArrayLike<number>, pad = false): number {
  return part.encoder.causal && !pad ? Math.max(...Array.from(lengths)) : part.tokenizer.maxLength;
}

/** A text's real token ids without the end token: what it contributes inside a prompt. */
export function contentIds(part: EncoderPart, text: string): Int32Array {
  const f = part.tokenizer.frame(text);
  const lead = part.tokenizer.leadingSpecials;
  return f.ids.slice(lead, Math.max(lead, f.length - 1));
}

/** Rows of `prompts` after block `layer`, batch by batch (each batch's TokenRows numbers its own prompts from 0). */
export async function* tokenRowBatches(part: EncoderPart, prompts: readonly string[], layer: number, opts: RowOptions = {}): AsyncGenerator<TokenRows> {
  const size = opts.batch ?? 32;
  for (let s = 0; s < prompts.length; s += size) yield await batchRows(part, prompts.slice(s, s + size), layer, opts);
}

/** Rows of every prompt after block `layer`, in one TokenRows. */
export async function tokenRows(part: EncoderPart, prompts: readonly string[], layer: number, opts: RowOptions = {}): Promise<TokenRows> {
  const parts: TokenRows[] = [];
  for await (const b of tokenRowBatches(part, prompts, layer, opts)) parts.push(b);
  return concatRows(parts, part.config.hiddenSize);
}

async function batchRows(part: EncoderPart, prompts: readonly string[], layer: number, opts: RowOptions): Promise<TokenRows> {
  const { tokenizer, encoder } = part;
  const D = part.config.hiddenSize;
  const tok = tokenizer.batch([...prompts]);
  const { n, maxLength: L } = tok;
  const t = runLength(part, tok.lengths, opts.pad);
  const ids = new Int32Array(n * t);
  for (let r = 0; r < n; r++) ids.set(tok.ids.subarray(r * L, r * L + t), r * t);
  const h = await encoder.layerOutput({ ids, n, t }, layer); // [n, t, D]
  const first = opts.bos ? 0 : tokenizer.leadingSpecials;
  const keep: number[] = []; // flat (r * t + p) of the kept positions
  const offsets = new Int32Array(n + 1);
  for (let r = 0; r < n; r++) {
    const len = tok.lengths[r]!;
    for (let p = first; p < (opts.pad ? t : len); p++) if (p !== len - 1 || opts.eos !== false) keep.push(r * t + p);
    offsets[r + 1] = keep.length;
  }
  const x = new Float32Array(keep.length * D);
  keep.forEach((q, i) => x.set(h.subarray(q * D, (q + 1) * D), i * D));
  return {
    n, d: D, x, offsets,
    tokenIds: Int32Array.from(keep, (q) => ids[q]!),
    positions: Int32Array.from(keep, (q) => q % t),
    lengths: tok.lengths, truncated: tok.truncated,
  };
}

/** One TokenRows of several batches' rows, prompts renumbered in order. */
export function concatRows(parts: TokenRows[], D: number): TokenRows {
  const n = parts.reduce((a, p) => a + p.n, 0);
  const rows = parts.reduce((a, p) => a + p.tokenIds.length, 0);
  const out: TokenRows = {
    n, d: D, x: new Float32Array(rows * D), offsets: new Int32Array(n + 1), tokenIds: new Int32Array(rows),
    positions: new Int32Array(rows), lengths: new Int32Array(n), truncated: new Int32Array(n),
  };
  let r = 0;
  let o = 0;
  for (const p of parts) {
    out.x.set(p.x, o * D);
    out.tokenIds.set(p.tokenIds, o);
    out.positions.set(p.positions, o);
    out.lengths.set(p.lengths, r);
    out.truncated.set(p.truncated, r);
    for (let i = 1; i <= p.n; i++) out.offsets[r + i] = o + p.offsets[i]!;
    r += p.n;
    o += p.tokenIds.length;
  }
  return out;
}
