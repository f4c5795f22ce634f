/**
 * Project-made SentencePiece Unigram tokenizers in the layout FLUX.1/SD3 ship (`tokenizer.json`,
 * `tokenizer_config.json`, `special_tokens_map.json`), for synthetic models and tests: no real
 * vocabulary can be downloaded here, and the `tokenizers` npm binding exposes no Unigram trainer.
 *
 * Training is a hard-EM version of SentencePiece's: the seed pieces are the SEED_FACTOR x size
 * most frequent of a word-frequency table's (word-counts.ts) whole `▁word`s and their substrings
 * (up to SEED_PIECE characters), counted with the words' weights; each round segments every word with the current scores (Viterbi, weighted by the
 * word's count), keeps the pieces the segmentations use most and rescores them log(uses / total),
 * shrinking to `size` in the last round. As in a real Unigram model, frequent words end whole and
 * rare ones in sub-word pieces; the characters of the table and printable ASCII are always kept,
 * so ordinary prompts never hit <unk>. The normalizer is NFKC plus T5's run-of-spaces collapse
 * (real files carry SentencePiece's precompiled nmt_nfkc charsmap, which the same library reads).
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.js';

const MAX_PIECE = 16; // characters, as SentencePiece's max_piece_length default
const SEED_PIECE = 8; // longest substring seeded (whole words are seeded up to MAX_PIECE)
const SEED_FACTOR = 4; // seed pieces per final piece
const ROUNDS = 4;
/** Word types trained on, most frequent first (SentencePiece also trains on a sample; the tail only adds time). */
const MAX_WORDS = 50000;
const SPACE = '\u2581'; // ▁, SentencePiece's word-start marker
const SPECIALS = ['<pad>', '</s>', '<unk>'] as const; // ids 0, 1, 2 as in T5
/** T5 v1.1's SentencePiece model has 32000 ids, the 3 specials included (then 100 extra ids: 32100). */
export const T5_PIECES = 32000 - SPECIALS.length;
/** Characters always in the vocabulary (so ordinary prompts never hit <unk>). */
const ALPHABET = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).filter((c) => c !== ' ');

interface Trie {
  next: Map<string, Trie>;
  piece?: string;
  score?: number;
}

function buildTrie(scores: ReadonlyMap<string, number>): Trie {
  const root: Trie = { next: new Map() };
  for (const [piece, score] of scores) {
    let node = root;
    for (const ch of piece) {
      let child = node.next.get(ch);
      if (!child) node.next.set(ch, (child = { next: new Map() }));
      node = child;
    }
    node.piece = piece;
    node.score = score;
  }
  return root;
}

/** The pieces of the best-scoring segmentation of `chars` (one ▁word), or undefined if none spells it. */
function viterbi(root: Trie, chars: readonly string[]): string[] | undefined {
  const n = chars.length;
  const best = new Float64Array(n + 1).fill(-Infinity);
  const from: (Trie | undefined)[] = new Array(n + 1);
  const start = new Int32Array(n + 1);
  best[0] = 0;
  for (let j = 0; j < n; j++) {
    if (best[j] === -Infinity) continue;
    let node: Trie | undefined = root;
    for (let i = j; i < n && node; i++) {
      node = node.next.get(chars[i]!);
      if (node?.score !== undefined && best[j]! + node.score > best[i + 1]!) {
        best[i + 1] = best[j]! + node.score;
        from[i + 1] = node;
        start[i + 1] = j;
      }
    }
  }
  if (best[n] === -Infinity) return undefined;
  const out: string[] = [];
  for (let i = n; i > 0; i = start[i]!) out.push(from[i]!.piece!);
  return out.reverse();
}

const byCount = (a: [string, number], b: [string, number]) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/** The `k` most frequent pieces of `counts` not in `skip`; sorts only the entries at or above the k-th count (the seed table holds millions). */
function topPieces(counts: ReadonlyMap<string, number>, skip: ReadonlySet<string>, k: number): [string, number][] {
  if (k <= 0) return [];
  const values = Float64Array.from(counts.values()).sort();
  const cut = values[Math.max(0, values.length - k - skip.size)] ?? 0;
  const above: [string, number][] = [];
  for (const [p, c] of counts) if (c >= cut && !skip.has(p)) above.push([p, c]);
  return above.sort(byCount).slice(0, k);
}

function topWords(counts: ReadonlyMap<string, number>): [string, number][] {
  return [...counts].sort(byCount).slice(0, MAX_WORDS);
}

/** log(count / total) of each piece. */
function logProbs(counts: readonly [string, number][]): Map<string, number> {
  const total = counts.reduce((s, [, c]) => s + c, 0);
  return new Map(counts.map(([p, c]) => [p, Math.log(c / total)]));
}

const trained = new WeakMap<ReadonlyMap<string, number>, Map<number, [string, number][]>>();

/** Unigram pieces with log-probability scores, most probable first; exactly `size` pieces (fewer if the table has fewer). Memoised per table and size. */
export function unigramVocab(wordCounts: ReadonlyMap<string, number>, size: number): [string, number][] {
  const bySize = trained.get(wordCounts) ?? new Map<number, [string, number][]>();
  trained.set(wordCounts, bySize);
  const hit = bySize.get(size);
  if (hit) return hit;
  const pieces = trainUnigram(wordCounts, size);
  bySize.set(size, pieces);
  return pieces;
}

function trainUnigram(wordCounts: ReadonlyMap<string, number>, size: number): [string, number][] {
  const words: [string[], number][] = [];
  const seed = new Map<string, number>();
  for (const [w, c] of topWords(wordCounts)) {
    const text = SPACE + w.normalize('NFKC');
    const chars = [...text];
    if (!(c > 0) || chars.length < 2 || chars.lastIndexOf(SPACE) > 0 || /\s/.test(w)) continue;
    words.push([chars, c]);
    // Substrings by code unit where every character is one (nearly all words): no array joins.
    const unit = chars.length === text.length;
    const piece = (i: number, j: number) => (unit ? text.slice(i, j) : chars.slice(i, j).join(''));
    const n = chars.length;
    if (n <= MAX_PIECE) seed.set(text, (seed.get(text) ?? 0) + c);
    for (let i = 0; i < n; i++) {
      for (let j = i + 2; j <= Math.min(n, i + SEED_PIECE) && j - i < n; j++) {
        const p = piece(i, j);
        seed.set(p, (seed.get(p) ?? 0) + c);
      }
    }
  }
  const required = new Set([SPACE, ...ALPHABET]);
  for (const [chars] of words) for (const ch of chars) required.add(ch);
  const floor = words.reduce((m, [, c]) => Math.min(m, c), Infinity);
  const withRequired = (counts: ReadonlyMap<string, number>, pieces: [string, number][]) => logProbs([...pieces, ...[...required].map((p): [string, number] => [p, Math.max(floor, counts.get(p) ?? 0)])]);
  let pieces = topPieces(seed, required, SEED_FACTOR * size);
  let scores = withRequired(seed, pieces);
  for (let round = 1; round <= ROUNDS; round++) {
    const trie = buildTrie(scores);
    const uses = new Map<string, number>();
    for (const [chars, c] of words) for (const p of viterbi(trie, chars) ?? []) uses.set(p, (uses.get(p) ?? 0) + c);
    const keep = Math.max(size, Math.round(SEED_FACTOR * size * (1 - round / ROUNDS))) - required.size;
    const used = topPieces(uses, required, keep);
    // Too few pieces in use: the previous round's best unused ones fill up with the floor count (the size stays exact).
    const have = new Set(used.map(([p]) => p));
    pieces = [...used, ...pieces.filter(([p]) => !have.has(p)).slice(0, keep - used.length).map(([p]): [string, number] => [p, floor])];
    scores = withRequired(uses, pieces);
  }
  return [...scores].sort(byCount).slice(0, size);
}

/** A T5TokenizerFast tokenizer.json: specials at 0..2, the pieces, then `<extra_id_{extraIds-1..0}>`. */
export function t5TokenizerJson(pieces: readonly [string, number][], extraIds = 100): Record<string, unknown> {
  const extras = Array.from({ length: extraIds }, (_, i) => `<extra_id_${extraIds - 1 - i}>`);
  const vocab: [string, number][] = [...SPECIALS.map((s): [string, number] => [s, 0]), ...pieces, ...extras.map((s): [string, number] => [s, 0])];
  const added = (content: string, id: number) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const metaspace = { type: 'Metaspace', replacement: SPACE, prepend_scheme: 'always', split: true };
  const seq = (id: string) => ({ Sequence: { id, type_id: 0 } });
  const eos = { SpecialToken: { id: '</s>', type_id: 0 } };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...SPECIALS.map((s, i) => added(s, i)), ...extras.map((s, i) => added(s, SPECIALS.length + pieces.length + i))],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }] },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, metaspace] },
    post_processor: {
      type: 'TemplateProcessing',
      single: [seq('A'), eos],
      pair: [seq('A'), eos, seq('B'), eos],
      special_tokens: { '</s>': { id: '</s>', ids: [1], tokens: ['</s>'] } },
    },
    decoder: metaspace,
    model: { type: 'Unigram', unk_id: 2, vocab, byte_fallback: false },
  };
}

/** Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json; returns the number of ids. */
export function writeT5TokenizerDir(dir: string, wordCounts: ReadonlyMap<string, number>, size: number, modelMaxLength = 512): number {
  fs.mkdirSync(dir, { recursive: true });
  const json = t5TokenizerJson(unigramVocab(wordCounts, size));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  const extra = (json['added_tokens'] as { content: string }[]).slice(SPECIALS.length).map((t) => t.content);
  const specials = { eos_token: '</s>', pad_token: '<pad>', unk_token: '<unk>', additional_special_tokens: extra };
  writeJsonAtomic(path.join(dir, 'special_tokens_map.json'), specials);
  writeJsonAtomic(path.join(dir, 'tokenizer_config.json'), { ...specials, model_max_length: modelMaxLength, extra_ids: extra.length, legacy: true, tokenizer_class: 'T5Tokenizer' });
  return (json['model'] as { vocab: unknown[] }).vocab.length;
}
