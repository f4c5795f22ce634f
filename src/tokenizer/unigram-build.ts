/**
 * Project-made SentencePiece Unigram tokenizers in the layout FLUX.1/SD3 ship (`tokenizer.json`,
 * `tokenizer_config.json`, `special_tokens_map.json`), for synthetic models and tests: no real
 * vocabulary can be downloaded here, and the `tokenizers` npm binding exposes no Unigram trainer.
 *
 * The vocabulary is "trained" by one counting pass rather than SentencePiece's EM: every substring
 * (up to MAX_PIECE characters) of the corpus's `▁`-prefixed words is a candidate, the most frequent
 * are kept and scored log(count / total), the unigram log-probability EM would start from. Viterbi
 * segmentation over these scores then behaves like a real Unigram model (frequent words whole,
 * rare words in pieces). The normalizer is NFKC plus T5's run-of-spaces collapse (real files carry
 * SentencePiece's precompiled nmt_nfkc charsmap, which the same library reads).
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.js';

const MAX_PIECE = 8;
const SPACE = '\u2581'; // ▁, SentencePiece's word-start marker
const SPECIALS = ['<pad>', '</s>', '<unk>'] as const; // ids 0, 1, 2 as in T5
/** Characters always in the vocabulary (so ordinary prompts never hit <unk>). */
const ALPHABET = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).filter((c) => c !== ' ');

/** Unigram pieces with log-probability scores, most probable first; at most `size` pieces. */
export function unigramVocab(corpus: readonly string[], size: number): [string, number][] {
  const counts = new Map<string, number>();
  for (const line of corpus) {
    for (const word of line.normalize('NFKC').split(/\s+/).filter(Boolean)) {
      const w = SPACE + word;
      for (let i = 0; i < w.length; i++) {
        for (let j = i + 1; j <= Math.min(w.length, i + MAX_PIECE); j++) counts.set(w.slice(i, j), (counts.get(w.slice(i, j)) ?? 0) + 1);
      }
    }
  }
  const base = new Set([SPACE, ...ALPHABET, ...[...counts.keys()].filter((p) => [...p].length === 1)]);
  const multi = [...counts].filter(([p, c]) => !base.has(p) && c >= 2).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const kept: [string, number][] = [...[...base].map((p): [string, number] => [p, counts.get(p) ?? 1]), ...multi.slice(0, Math.max(0, size - base.size))];
  const total = kept.reduce((s, [, c]) => s + c, 0);
  return kept.map(([p, c]): [string, number] => [p, Math.log(c / total)]).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
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
export function writeT5TokenizerDir(dir: string, corpus: readonly string[], size: number, modelMaxLength = 512): number {
  fs.mkdirSync(dir, { recursive: true });
  const json = t5TokenizerJson(unigramVocab(corpus, size));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  const extra = (json['added_tokens'] as { content: string }[]).slice(SPECIALS.length).map((t) => t.content);
  const specials = { eos_token: '</s>', pad_token: '<pad>', unk_token: '<unk>', additional_special_tokens: extra };
  writeJsonAtomic(path.join(dir, 'special_tokens_map.json'), specials);
  writeJsonAtomic(path.join(dir, 'tokenizer_config.json'), { ...specials, model_max_length: modelMaxLength, extra_ids: extra.length, legacy: true, tokenizer_class: 'T5Tokenizer' });
  return (json['model'] as { vocab: unknown[] }).vocab.length;
}
