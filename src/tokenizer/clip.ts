/**
 * CLIP byte-level BPE tokenizer with Stable Diffusion framing, matching OpenAI's
 * clip/simple_tokenizer.py and Hugging Face's (slow) CLIPTokenizer.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ItdError } from '../errors.js';
import { readInputFile, readJsonFile, readJsonIntEntries, readTextFile } from '../io/files.js';
import { cleanText, preTokenize } from './normalize.js';

export interface TokenizerOptions {
  padToken: string;
  maxLength: number;
  bosToken: string;
  eosToken: string;
  unkToken: string;
}

export interface Framed {
  /** [maxLength]: BOS, content, EOS, then padding. */
  ids: Int32Array;
  /** Real tokens including BOS and EOS. */
  length: number;
  /** Content tokens dropped to fit maxLength; 0 if none. */
  truncated: number;
}

export interface Batch {
  /** [n, maxLength] row-major. */
  ids: Int32Array;
  lengths: Int32Array;
  truncated: Int32Array;
  n: number;
  maxLength: number;
}

export const SOT_TOKEN = '<|startoftext|>';
export const EOT_TOKEN = '<|endoftext|>';
/** CLIP keeps 49152 - 256 - 2 merges; OpenAI and HF both slice the merge file to this. */
export const CLIP_NUM_MERGES = 48894;
export const END_OF_WORD = '</w>';

/** SD1.x framing: pad with <|endoftext|>, 77 positions. */
export const DEFAULT_OPTIONS: Readonly<TokenizerOptions> = {
  padToken: EOT_TOKEN,
  maxLength: 77,
  bosToken: SOT_TOKEN,
  eosToken: EOT_TOKEN,
  unkToken: EOT_TOKEN,
};

/** The files of a Hugging Face CLIPTokenizer directory that fromDir reads (a model's identity hashes them). */
export const HF_TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

/** HF configs of other tokenizers carry "infinite" lengths like 1e30; CLIP's is 77. */
const MAX_SANE_LENGTH = 1e6;
/** Bounds memory for long-running services; OpenAI's cache is unbounded. */
const CACHE_LIMIT = 100_000;

/**
 * GPT-2's reversible map from bytes to printable characters, in Python's dict order
 * (printable Latin-1 bytes first, mapped to themselves; the other 68 to U+0100 upwards).
 * That order is the order of the first 256 vocabulary entries.
 */
export function bytesToUnicode(): Map<number, string> {
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  const map = new Map<number, string>();
  for (let b = 0; b < 256; b++) if (printable(b)) map.set(b, String.fromCharCode(b));
  let n = 0;
  for (let b = 0; b < 256; b++) if (!printable(b)) map.set(b, String.fromCharCode(256 + n++));
  return map;
}

const BYTE_MAP = bytesToUnicode();
/** Byte-unicode characters in vocabulary order. */
const BYTE_ORDER: readonly string[] = [...BYTE_MAP.values()];
const CHAR_TO_BYTE = new Map<string, number>([...BYTE_MAP].map(([b, c]) => [c, b]));

/** The byte-level form BPE works on: each UTF-8 byte as its printable stand-in. */
export function byteEncode(word: string): string {
  let out = '';
  for (const b of Buffer.from(word, 'utf8')) out += BYTE_MAP.get(b)!;
  return out;
}

/** Inverse of byteEncode; characters outside the byte alphabet (added tokens) keep their UTF-8 bytes. */
function byteDecode(text: string): Uint8Array {
  const bytes: number[] = [];
  for (const c of text) {
    const b = CHAR_TO_BYTE.get(c);
    if (b !== undefined) bytes.push(b);
    else bytes.push(...Buffer.from(c, 'utf8'));
  }
  return Uint8Array.from(bytes);
}

/** The initial symbols of a byte-encoded word: one per byte, the last carrying `</w>`. */
export function wordSymbols(encoded: string): string[] {
  const symbols = encoded.split('');
  symbols[symbols.length - 1] += END_OF_WORD;
  return symbols;
}

/** Merges every non-overlapping (first, second) occurrence, left to right. */
export function mergePair(symbols: string[], first: string, second: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < symbols.length; ) {
    if (i < symbols.length - 1 && symbols[i] === first && symbols[i + 1] === second) {
      out.push(first + second);
      i += 2;
    } else {
      out.push(symbols[i++]!);
    }
  }
  return out;
}

const pairKey = (a: string, b: string): string => `${a} ${b}`;
/** Inverse of pairKey for keys parseMerges made (neither side holds whitespace). */
const splitPairKey = (key: string): [string, string] => {
  const sp = key.indexOf(' ');
  return [key.slice(0, sp), key.slice(sp + 1)];
};

/** OpenAI's bpe(): repeatedly merge the lowest-ranked adjacent pair. */
function bpe(encoded: string, ranks: Map<string, number>): string[] {
  let symbols = wordSymbols(encoded);
  while (symbols.length > 1) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i < symbols.length - 1; i++) {
      const rank = ranks.get(pairKey(symbols[i]!, symbols[i + 1]!));
      if (rank !== undefined && rank < bestRank) [best, bestRank] = [i, rank];
    }
    if (best < 0) break;
    symbols = mergePair(symbols, symbols[best]!, symbols[best + 1]!);
  }
  return symbols;
}

interface Vocab {
  /** id -> token; holes where an HF vocab.json skips ids. */
  tokens: (string | undefined)[];
  encoder: Map<string, number>;
  /** Merges in rank order, each as its pairKey "left right" (the form merges.txt holds them in). */
  merges: string[];
}

/** OpenAI's scheme: bytes, bytes + `</w>`, one token per merge, then the two specials. */
function vocabFromMerges(merges: [string, string][]): Vocab {
  const tokens = [...BYTE_ORDER, ...BYTE_ORDER.map((c) => c + END_OF_WORD), ...merges.map(([a, b]) => a + b)];
  tokens.push(SOT_TOKEN, EOT_TOKEN);
  // Like Python's dict(zip(vocab, ids)), a repeated string keeps its last id.
  return { tokens, encoder: new Map(tokens.map((t, id) => [t, id])), merges: merges.map(([a, b]) => pairKey(a, b)) };
}

/**
 * Merge lines as pair keys: `line.trim().split(/\s+/)` must give two parts, as in OpenAI's and HF's
 * readers. When the text holds no whitespace but spaces and newlines (every real merges file), a
 * line with one inner space is its own key, taken without trimming, splitting or re-joining.
 */
function parseMerges(lines: string[], source: string, firstLineNo: number): string[] {
  const plain = !/[^\S \n]/.test(lines.join('\n'));
  const merges: string[] = [];
  lines.forEach((raw, i) => {
    const sp = raw.indexOf(' ');
    if (plain && sp > 0 && sp < raw.length - 1 && raw.indexOf(' ', sp + 1) < 0) {
      merges.push(raw);
      return;
    }
    const line = raw.trim();
    if (line === '') return;
    const parts = line.split(/\s+/);
    if (parts.length !== 2) throw new ItdError('format', `${source}:${firstLineNo + i}: expected "left right", got ${JSON.stringify(raw)}`, { file: source, field: 'merges' });
    merges.push(pairKey(parts[0]!, parts[1]!));
  });
  return merges;
}

/** Largest id a vocabulary may hold: ids travel as int32 (input_ids tensors), so larger ones would wrap. */
const MAX_TOKEN_ID = 2 ** 31 - 1;

function vocabFromJson(entries: Map<string, unknown> | undefined, path: string, merges: string[]): Vocab {
  if (entries === undefined) throw new ItdError('format', `vocab.json ${path} must be an object mapping token -> id`, { file: path });
  const encoder = new Map<string, number>();
  const tokens: (string | undefined)[] = [];
  for (const [token, id] of entries) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_TOKEN_ID) {
      throw new ItdError('format', `${path}: id of token ${JSON.stringify(token)} is ${JSON.stringify(id)}, expected an integer in [0, ${MAX_TOKEN_ID}] (int32)`, {
        file: path, field: token,
      });
    }
    encoder.set(token, id);
    tokens[id] = token;
  }
  return { tokens, encoder, merges };
}

/** A special token in an HF config: "text", {"content": "text", ...}, or null/absent. */
function tokenContent(value: unknown, key: string, file: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  throw new ItdError('config', `${file}: ${key} must be a string or {"content": string}, got ${JSON.stringify(value)}`, { file, field: key });
}

function readOptionalObject(path: string): Record<string, unknown> {
  if (!existsSync(path)) return {};
  const json = readJsonFile(path, basename(path));
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new ItdError('format', `${path} must contain a JSON object`, { file: path });
  return json as Record<string, unknown>;
}

const SPECIAL_KEYS = [
  ['bosToken', 'bos_token'],
  ['eosToken', 'eos_token'],
  ['unkToken', 'unk_token'],
  ['padToken', 'pad_token'],
] as const;

/** Options of an HF tokenizer dir; special_tokens_map.json wins over tokenizer_config.json, as in transformers. */
function readDirOptions(dir: string): Partial<TokenizerOptions> {
  const configPath = join(dir, 'tokenizer_config.json');
  const mapPath = join(dir, 'special_tokens_map.json');
  const config = readOptionalObject(configPath);
  const map = readOptionalObject(mapPath);
  const opts: Partial<TokenizerOptions> = {};
  for (const [opt, key] of SPECIAL_KEYS) {
    const token = tokenContent(map[key], key, mapPath) ?? tokenContent(config[key], key, configPath);
    if (token !== undefined) opts[opt] = token;
  }
  const length = config['model_max_length'];
  if (length !== undefined && length !== null) {
    if (typeof length !== 'number') throw new ItdError('config', `${configPath}: model_max_length must be a number`, { file: configPath, field: 'model_max_length' });
    if (Number.isFinite(length) && length <= MAX_SANE_LENGTH) opts.maxLength = length;
  }
  return opts;
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export class ClipTokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  readonly maxLength: number;
  /** BOS comes first in every framed row. */
  readonly leadingSpecials = 1;
  /** CLIP's cleaning lowercases every prompt. */
  readonly caseSensitive = false;
  readonly options: Readonly<TokenizerOptions>;
  private readonly tokens: (string | undefined)[];
  private readonly encoder: Map<string, number>;
  private readonly merges: string[];
  private readonly ranks = new Map<string, number>();
  /** HF never splits its special tokens: they are cut out of the raw text first. */
  private readonly specialRe: RegExp;
  private readonly specialIds: Set<number>;
  private readonly cache = new Map<string, number[]>();

  private constructor(vocab: Vocab, opts: Partial<TokenizerOptions>, source: string) {
    this.options = { ...DEFAULT_OPTIONS, ...opts };
    const { maxLength } = this.options;
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new ItdError('usage', `${source}: maxLength must be an integer >= 2, got ${maxLength}`, { field: 'maxLength' });
    this.tokens = vocab.tokens;
    this.encoder = vocab.encoder;
    this.merges = vocab.merges;
    vocab.merges.forEach((key, rank) => this.ranks.set(key, rank));
    const idOf = (name: string, token: string): number => {
      const id = this.encoder.get(token);
      if (id === undefined) throw new ItdError('config', `${source}: ${name} ${JSON.stringify(token)} is not in the vocabulary`, { file: source, field: name });
      return id;
    };
    this.vocabSize = vocab.tokens.length;
    this.maxLength = maxLength;
    this.bosId = idOf('bos token', this.options.bosToken);
    this.eosId = idOf('eos token', this.options.eosToken);
    this.unkId = idOf('unk token', this.options.unkToken);
    this.padId = idOf('pad token', this.options.padToken);
    this.specialIds = new Set([this.bosId, this.eosId, this.unkId, this.padId]);
    const specials = [...new Set([this.options.bosToken, this.options.eosToken, this.options.unkToken, this.options.padToken])];
    specials.sort((a, b) => b.length - a.length); // longest first at a shared start
    this.specialRe = new RegExp(specials.map(escapeRegExp).join('|'), 'g');
  }

  static fromHfFiles(vocabJsonPath: string, mergesPath: string, opts: Partial<TokenizerOptions> = {}): ClipTokenizer {
    const lines = readTextFile(mergesPath, 'merges.txt').split('\n');
    // HF skips line 1 (the "#version" header) and keeps at most CLIP's merge count.
    const skip = lines[0]?.startsWith('#version') ? 1 : 0;
    const merges = parseMerges(lines.slice(skip), mergesPath, skip + 1).slice(0, CLIP_NUM_MERGES);
    const vocab = vocabFromJson(readJsonIntEntries(vocabJsonPath, 'vocab.json'), vocabJsonPath, merges);
    return new ClipTokenizer(vocab, opts, vocabJsonPath);
  }

  /** OpenAI's bpe_simple_vocab_16e6.txt.gz: header line, then merges of which CLIP uses 48894. */
  static fromBpeGz(path: string, opts: Partial<TokenizerOptions> = {}): ClipTokenizer {
    const gz = readInputFile(path, 'BPE merges file (.txt.gz)');
    let text: string;
    try {
      text = gunzipSync(gz).toString('utf8');
    } catch (err) {
      throw new ItdError('format', `${path} is not a gzip file: ${(err as Error).message}`, { file: path, cause: err });
    }
    const lines = text.split('\n').slice(1, 1 + CLIP_NUM_MERGES);
    return new ClipTokenizer(vocabFromMerges(parseMerges(lines, path, 2).map(splitPairKey)), opts, path);
  }

  /** A Hugging Face tokenizer directory (vocab.json, merges.txt, optional tokenizer_config.json / special_tokens_map.json). */
  static fromDir(dir: string): ClipTokenizer {
    for (const file of ['vocab.json', 'merges.txt']) {
      if (!existsSync(join(dir, file))) throw new ItdError('not_found', `tokenizer dir ${dir} has no ${file} (expected a Hugging Face CLIPTokenizer directory)`, { file: join(dir, file), hint: 'expected a Hugging Face CLIPTokenizer directory' });
    }
    return ClipTokenizer.fromHfFiles(join(dir, 'vocab.json'), join(dir, 'merges.txt'), readDirOptions(dir));
  }

  /** Vocabulary built from a merge list the way OpenAI builds it (ids 0..511 bytes, then merges, then BOS, EOS). */
  static fromMerges(merges: [string, string][], opts: Partial<TokenizerOptions> = {}): ClipTokenizer {
    return new ClipTokenizer(vocabFromMerges(merges.map(([a, b]) => [a, b])), opts, 'merge list');
  }

  /**
   * Content ids, without BOS/EOS. Special-token strings in the raw text map straight to
   * their ids, as in HF (with SD2's pad "!", every "!" becomes id 0); the text between them
   * is cleaned and tokenized as OpenAI does.
   */
  encode(text: string): number[] {
    const ids: number[] = [];
    let start = 0;
    for (const m of text.matchAll(this.specialRe)) {
      this.encodeChunk(text.slice(start, m.index), ids);
      ids.push(this.encoder.get(m[0])!);
      start = m.index! + m[0].length;
    }
    this.encodeChunk(text.slice(start), ids);
    return ids;
  }

  private encodeChunk(chunk: string, out: number[]): void {
    if (chunk === '') return;
    for (const word of preTokenize(cleanText(chunk))) {
      for (const id of this.wordIds(word)) out.push(id);
    }
  }

  private wordIds(word: string): number[] {
    const cached = this.cache.get(word);
    if (cached !== undefined) return cached;
    let ids: number[];
    // OpenAI seeds its cache with the two specials, so they bypass BPE.
    const special = word === SOT_TOKEN || word === EOT_TOKEN ? this.encoder.get(word) : undefined;
    if (special !== undefined) ids = [special];
    else ids = bpe(byteEncode(word), this.ranks).map((s) => this.encoder.get(s) ?? this.unkId);
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, ids);
    return ids;
  }

  private token(id: number): string {
    const token = Number.isInteger(id) ? this.tokens[id] : undefined;
    if (token === undefined) throw new RangeError(`token id ${id} is not in the vocabulary (size ${this.vocabSize})`);
    return token;
  }

  /** Text of the ids without specials; `</w>` ends a word. Invalid UTF-8 becomes U+FFFD. */
  decode(ids: ArrayLike<number>): string {
    const parts: string[] = [];
    for (const id of Array.from(ids)) {
      const token = this.token(id);
      if (!this.specialIds.has(id)) parts.push(token);
    }
    return new TextDecoder().decode(byteDecode(parts.join(''))).replaceAll(END_OF_WORD, ' ').trim();
  }

  /** One readable string per id ("photo</w>" -> "photo"); partial UTF-8 shows as <0xNN> bytes. */
  tokenStrings(ids: ArrayLike<number>): string[] {
    return Array.from(ids, (id) => {
      const token = this.token(id);
      if (this.specialIds.has(id)) return token;
      const body = token.endsWith(END_OF_WORD) ? token.slice(0, -END_OF_WORD.length) : token;
      const bytes = byteDecode(body);
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        return Array.from(bytes, (b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`).join('');
      }
    });
  }

  /** [BOS] + content + [EOS], padded to maxLength; overlong content is cut so EOS stays last. */
  frame(text: string): Framed {
    const ids = new Int32Array(this.maxLength);
    const { length, truncated } = this.frameInto(this.encode(text), ids);
    return { ids, length, truncated };
  }

  batch(texts: string[]): Batch {
    const n = texts.length;
    const ids = new Int32Array(n * this.maxLength);
    const lengths = new Int32Array(n);
    const truncated = new Int32Array(n);
    texts.forEach((text, i) => {
      const row = ids.subarray(i * this.maxLength, (i + 1) * this.maxLength);
      const framed = this.frameInto(this.encode(text), row);
      lengths[i] = framed.length;
      truncated[i] = framed.truncated;
    });
    return { ids, lengths, truncated, n, maxLength: this.maxLength };
  }

  private frameInto(content: number[], row: Int32Array): { length: number; truncated: number } {
    const room = this.maxLength - 2;
    const kept = Math.min(content.length, room);
    row.fill(this.padId);
    row[0] = this.bosId;
    for (let i = 0; i < kept; i++) row[i + 1] = content[i]!;
    row[kept + 1] = this.eosId;
    return { length: kept + 2, truncated: content.length - kept };
  }

  /** Writes a Hugging Face CLIPTokenizer directory that fromDir (and transformers) can load. */
  save(dir: string): void {
    mkdirSync(dir, { recursive: true });
    const vocab: Record<string, number> = Object.create(null); // a token may be "__proto__"
    for (const [token, id] of this.encoder) vocab[token] = id;
    writeFileSync(join(dir, 'vocab.json'), JSON.stringify(vocab));
    const merges = this.merges.map((key) => `${key}\n`).join('');
    writeFileSync(join(dir, 'merges.txt'), `#version: 0.2\n${merges}`);
    const { bosToken, eosToken, unkToken, padToken } = this.options;
    const specials = { bos_token: bosToken, eos_token: eosToken, unk_token: unkToken, pad_token: padToken };
    const config = {
      tokenizer_class: 'CLIPTokenizer',
      model_max_length: this.maxLength,
      do_lower_case: true,
      errors: 'replace',
      add_prefix_space: false,
      ...specials,
    };
    writeFileSync(join(dir, 'tokenizer_config.json'), `${JSON.stringify(config, null, 2)}\n`);
    writeFileSync(join(dir, 'special_tokens_map.json'), `${JSON.stringify(specials, null, 2)}\n`);
  }
}
