/**
 * The T5 tokenizer as FLUX.1 (`tokenizer_2/`) and SD3 (`tokenizer_3/`) ship it: a SentencePiece
 * Unigram model in Hugging Face's `tokenizer.json`, run by Hugging Face's own Rust `tokenizers`
 * library (the npm `tokenizers` binding), which is what diffusers loads (T5TokenizerFast). Its ids
 * therefore equal the fast tokenizer's by construction, including how it breaks ties between
 * equal-score pieces (where the sentencepiece library differs on ~0.1 % of prompts).
 *
 * Framing as diffusers calls it (padding="max_length", truncation=True, add_special_tokens=True):
 * the pieces, truncated to max_length - 1, then `</s>`, then `<pad>` up to max_length.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer } from 'tokenizers';
import { ItdError } from '../errors.js';
import type { Batch, Framed } from './clip.js';
import { SyncEncoder } from './sync-tokenizers.js';

/** The pipelines' default max_sequence_length (FluxPipeline; StableDiffusion3Pipeline uses 256). */
export const T5_DEFAULT_MAX_LENGTH = 512;

const DEFAULT_PAD = '<pad>';
const DEFAULT_EOS = '</s>';

export class T5Tokenizer {
  /** T5 has no BOS: position 0 is the first piece. */
  readonly leadingSpecials = 0;
  /** SentencePiece keeps case: `▁Adam` and `▁adam` are different pieces. */
  readonly caseSensitive = true;
  private constructor(
    private readonly tok: Tokenizer,
    private readonly sync: SyncEncoder,
    readonly padId: number,
    readonly eosId: number,
    /** Framed row length: the pipeline's max_sequence_length. */
    readonly maxLength: number,
  ) {}

  /**
   * Reads `tokenizer.json` (required) and `tokenizer_config.json` (optional) from a directory;
   * maxLength (max_sequence_length) may not exceed the config's model_max_length (512 for T5 v1.1).
   */
  static fromDir(dir: string, maxLength = T5_DEFAULT_MAX_LENGTH): T5Tokenizer {
    const file = path.join(dir, 'tokenizer.json');
    if (!fs.existsSync(file)) {
      const hint = fs.existsSync(path.join(dir, 'spiece.model')) ? 'only spiece.model is there; itd reads the fast tokenizer (tokenizer.json), as diffusers does' : undefined;
      throw new ItdError('not_found', `${dir}: missing tokenizer.json (T5TokenizerFast)`, { file, hint });
    }
    const text = fs.readFileSync(file, 'utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new ItdError('format', `${file}: not valid JSON: ${(e as Error).message}`, { file, cause: e });
    }
    checkUnigram(json, file);
    const cfgFile = path.join(dir, 'tokenizer_config.json');
    const cfg = readTokenizerConfig(cfgFile);
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new ItdError('usage', `max_sequence_length must be an integer >= 2, got ${maxLength}`, { field: 'max_sequence_length' });
    if (cfg.maxLength !== undefined && maxLength > cfg.maxLength) {
      throw new ItdError('usage', `max_sequence_length ${maxLength} exceeds the tokenizer's model_max_length ${cfg.maxLength} (${cfgFile})`, { file: cfgFile, field: 'model_max_length' });
    }
    let tok: Tokenizer;
    try {
      tok = Tokenizer.fromString(text);
    } catch (e) {
      throw new ItdError('format', `${file}: the tokenizers library rejected it: ${(e as Error).message}`, { file, cause: e });
    }
    const idOf = (token: string, field: string) => {
      const id = tok.tokenToId(token);
      if (id === null || id === undefined) throw new ItdError('format', `${file}: ${field} '${token}' is not in the vocabulary`, { file, field });
      return id;
    };
    return new T5Tokenizer(tok, new SyncEncoder(text, file), idOf(cfg.pad ?? DEFAULT_PAD, 'pad_token'), idOf(cfg.eos ?? DEFAULT_EOS, 'eos_token'), maxLength);
  }

  /** Ids including added tokens (T5 v1.1: 32100, below the model's vocab_size 32128). */
  get vocabSize(): number {
    return this.tok.getVocabSize(true);
  }

  /** Unigram piece ids of each prompt, without `</s>`. */
  pieces(prompts: readonly string[]): number[][] {
    return this.sync.encodeBatch(prompts);
  }

  /** Content ids of a text (no `</s>`). */
  encode(text: string): number[] {
    return this.pieces([text])[0]!;
  }

  /** The piece string of each id (`▁` marks a word start). */
  tokenStrings(ids: ArrayLike<number>): string[] {
    return Array.from(ids, (id) => this.tok.idToToken(id) ?? `<${id}>`);
  }

  /** The Metaspace decoder's text: pieces joined, `▁` -> space, `<pad>` and `</s>` dropped. */
  decode(ids: ArrayLike<number>): string {
    const kept = Array.from(ids).filter((id) => id !== this.padId && id !== this.eosId);
    return this.tokenStrings(kept).join('').replaceAll('\u2581', ' ').replace(/^ /, '');
  }

  frame(text: string): Framed {
    const b = this.batch([text]);
    return { ids: b.ids, length: b.lengths[0]!, truncated: b.truncated[0]! };
  }

  /** Prompts framed as diffusers does: pieces[:maxLength-1] + `</s>` + `<pad>`... */
  batch(texts: readonly string[]): Batch {
    const L = this.maxLength;
    const n = texts.length;
    const ids = new Int32Array(n * L).fill(this.padId);
    const lengths = new Int32Array(n);
    const truncated = new Int32Array(n);
    this.pieces(texts).forEach((p, r) => {
      const keep = Math.min(p.length, L - 1);
      ids.set(p.slice(0, keep), r * L);
      ids[r * L + keep] = this.eosId;
      lengths[r] = keep + 1;
      truncated[r] = p.length - keep;
    });
    return { n, maxLength: L, ids, lengths, truncated };
  }

  /** Stops the encoding worker (it never keeps the process alive; this frees it early). */
  close(): Promise<void> {
    return this.sync.close();
  }
}

/** The checks that make the JS framing equal the tokenizer.json pipeline: a Unigram model, `$A </s>` post-processing. */
function checkUnigram(json: unknown, file: string): void {
  const o = json as { model?: { type?: unknown }; post_processor?: unknown };
  const type = o?.model?.type;
  if (type !== 'Unigram') {
    throw new ItdError('unsupported', `${file}: model.type is ${JSON.stringify(type)}; a T5 tokenizer.json must be a SentencePiece Unigram model ("Unigram")`, {
      file,
      field: 'model.type',
      hint: 'FLUX.1 and SD3 ship it as tokenizer_2/ and tokenizer_3/ tokenizer.json',
    });
  }
  const single = (o.post_processor as { type?: string; single?: unknown[] } | null | undefined)?.single;
  const ok = Array.isArray(single) && single.length === 2 && JSON.stringify(single[1]).includes('"SpecialToken"') && JSON.stringify(single[0]).includes('"Sequence"');
  if (!ok) {
    throw new ItdError('unsupported', `${file}: post_processor.single must be T5's template "$A </s>"`, { file, field: 'post_processor.single' });
  }
}

function readTokenizerConfig(file: string): { pad?: string; eos?: string; maxLength?: number } {
  if (!fs.existsSync(file)) return {};
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new ItdError('config', `${file}: not valid JSON: ${(e as Error).message}`, { file, cause: e });
  }
  // Special tokens are strings or AddedToken dicts ({ content: ... }).
  const token = (k: string) => {
    const v = o[k];
    return typeof v === 'string' ? v : typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : undefined;
  };
  const max = o['model_max_length'];
  // HF writes a huge sentinel (1e30) when there is no limit.
  const maxLength = typeof max === 'number' && Number.isInteger(max) && max > 0 && max < 1e9 ? max : undefined;
  const out: { pad?: string; eos?: string; maxLength?: number } = {};
  const pad = token('pad_token');
  const eos = token('eos_token');
  if (pad !== undefined) out.pad = pad;
  if (eos !== undefined) out.eos = eos;
  if (maxLength !== undefined) out.maxLength = maxLength;
  return out;
}
