import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { ItdError } from '../src/errors.js';
import { readPrompts } from '../src/io/prompts.js';
import { T5_PIECES, T5Tokenizer, generalWordCounts, t5TokenizerJson, t5TrainingWords, unigramVocab, writeT5TokenizerDir } from '../src/tokenizer/index.js';
import { SHARED_DATA, tmpDir } from './helpers.js';

// The synthetic presets' tokenizer (trained once per process).
const dir = path.join(tmpDir(), 'tokenizer_2');
const size = writeT5TokenizerDir(dir, t5TrainingWords(), T5_PIECES);
const tok = T5Tokenizer.fromDir(dir);
after(() => tok.close());

const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
const vocab = new Map<string, [number, number]>((json.model.vocab as [string, number][]).map(([p, s], id) => [p, [id, s]]));

/** Independent Viterbi over one ▁-prefixed word: the best total log-probability of any segmentation. */
function bestScore(word: string): number {
  const best = new Float64Array(word.length + 1).fill(-Infinity);
  best[0] = 0;
  for (let i = 0; i < word.length; i++) {
    if (best[i] === -Infinity) continue;
    for (let j = i + 1; j <= word.length; j++) {
      const v = vocab.get(word.slice(i, j));
      if (v) best[j] = Math.max(best[j]!, best[i]! + v[1]);
    }
  }
  return best[word.length]!;
}

test('layout: specials at 0..2, 100 extra ids at the end, Unigram model, `$A </s>` template', () => {
  assert.equal(size, 32100); // T5 v1.1's 32000 SentencePiece ids + 100 sentinels
  assert.equal(tok.padId, 0);
  assert.equal(tok.eosId, 1);
  assert.equal(tok.vocabSize, size);
  assert.deepEqual(json.model.vocab.slice(0, 3).map((v: [string, number]) => v[0]), ['<pad>', '</s>', '<unk>']);
  assert.equal(json.model.vocab.at(-1)[0], '<extra_id_0>');
  assert.equal(json.model.vocab.at(-100)[0], '<extra_id_99>');
  assert.equal(json.model.type, 'Unigram');
  // Scores are log-probabilities: the pieces' probabilities sum to 1.
  const pieces = unigramVocab(t5TrainingWords(), T5_PIECES);
  assert.ok(Math.abs(pieces.reduce((s, [, l]) => s + Math.exp(l), 0) - 1) < 1e-9);
  assert.equal(new Set(pieces.map(([p]) => p)).size, T5_PIECES);
});

test('vocabulary as the real T5 has it: common words and frequent person names are whole ▁pieces, rare and invented names split', () => {
  const strings = (p: string) => tok.tokenStrings(tok.encode(p));
  // Names of no benchmark set (census-frequent first names and surnames), common words, casing kept.
  assert.deepEqual(strings('Jennifer Taylor and Robert Miller walking a dog'), ['\u2581Jennifer', '\u2581Taylor', '\u2581and', '\u2581Robert', '\u2581Miller', '\u2581walking', '\u2581a', '\u2581dog']);
  assert.deepEqual(strings('portrait, detailed'), ['\u2581portrait', ',', '\u2581detailed']);
  // A made-up surname falls back to sub-word pieces that still spell it.
  const invented = strings('Quorvath');
  assert.ok(invented.length > 1 && invented.join('') === '\u2581Quorvath', invented.join(' '));
});

test('training: a word table of a few words yields whole words, their fragments and the alphabet, scored by use', () => {
  const table = new Map([['cat', 50], ['cats', 20], ['catalog', 3], ['dog', 40]]);
  const pieces = unigramVocab(table, 120);
  const ids = new Map(pieces.map(([p, s]) => [p, s]));
  for (const w of ['\u2581cat', '\u2581dog', '\u2581cats']) assert.ok(ids.has(w), w);
  for (const c of ['a', 'z', '~', '\u2581']) assert.ok(ids.has(c), c); // printable ASCII always kept
  assert.ok(ids.get('\u2581cat')! > ids.get('\u2581cats')!, 'more uses, higher score');
  assert.deepEqual(unigramVocab(table, 120), pieces); // deterministic (memoised per table and size)
  assert.deepEqual(unigramVocab(new Map(table), 120), pieces);
  // generalWordCounts: the table itself carries census names and both casings.
  const general = generalWordCounts();
  assert.ok(general.get('Smith')! > general.get('Hathaway')! && general.get('Hathaway')! > 1);
  assert.ok(general.get('Driver')! > 0 && general.get('driver')! > general.get('Driver')!);
});

test('segmentation is the Viterbi optimum of the Unigram scores on prompts of ../shared/data', () => {
  const files = ['coco_30k.csv', 'celebrity_target.csv', 'style_target.csv', 'i2p.csv', 'diffusiondb_8k.csv'].map((f) => path.join(SHARED_DATA, 'prompts', f));
  if (!files.every((f) => fs.existsSync(f))) return;
  // Every 25th prompt, restricted to the vocabulary's alphabet (no <unk>, whose fused score is the library's).
  const prompts = files.flatMap((f) => readPrompts(f).filter((_, i) => i % 25 === 0)).filter((p) => /^[\x21-\x7e\s]+$/.test(p));
  assert.ok(prompts.length > 1000, `${prompts.length} prompts`);
  const ids = tok.pieces(prompts);
  const score = new Map([...vocab.values()].map(([id, s]) => [id, s]));
  let words = 0;
  prompts.forEach((p, r) => {
    const expected = p.split(/\s+/).filter(Boolean).map((w) => bestScore('\u2581' + w));
    const got = ids[r]!.reduce((s, id) => s + score.get(id)!, 0);
    const want = expected.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(got - want) < 1e-6 * Math.max(1, Math.abs(want)), `prompt ${JSON.stringify(p)}: score ${got} vs optimum ${want}`);
    // The pieces spell the normalised prompt back.
    assert.equal(tok.tokenStrings(ids[r]!).join(''), expected.map((_, i) => '\u2581' + p.split(/\s+/).filter(Boolean)[i]).join(''));
    words += expected.length;
  });
  assert.ok(words > 10000);
});

test('framing as diffusers calls it (max_sequence_length 8): pieces + </s>, padded with <pad>; truncation keeps </s> and is reported', () => {
  const [cat] = tok.pieces(['a photo of a cat']);
  assert.deepEqual(tok.tokenStrings(cat!), ['\u2581a', '\u2581photo', '\u2581of', '\u2581a', '\u2581cat']);
  const long = 'a photo of a cat '.repeat(10);
  const short = T5Tokenizer.fromDir(dir, 8);
  after(() => short.close());
  const f = short.batch(['a photo of a cat', long, '']);
  assert.equal(f.maxLength, 8);
  assert.deepEqual([...f.ids.subarray(0, 8)], [...cat!, 1, 0, 0]);
  const longIds = tok.pieces([long])[0]!;
  assert.deepEqual([...f.ids.subarray(8, 16)], [...longIds.slice(0, 7), 1]);
  assert.deepEqual([...f.ids.subarray(16, 24)], [1, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...f.lengths], [6, 8, 1]);
  assert.deepEqual([...f.truncated], [0, longIds.length - 7, 0]);
  // Runs of spaces collapse (T5's normalizer), so spacing does not change ids.
  assert.deepEqual(tok.encode('a   photo  of a cat'), cat);
  assert.equal(tok.decode(f.ids.subarray(0, 8)), 'a photo of a cat');
  assert.equal(tok.frame('a photo of a cat').ids.length, 512);
});

test('errors: a tokenizer.json that is not Unigram, a missing file, a max length beyond model_max_length', () => {
  const bpe = path.join(tmpDir(), 'bpe');
  fs.mkdirSync(bpe);
  fs.writeFileSync(path.join(bpe, 'tokenizer.json'), JSON.stringify({ ...t5TokenizerJson([['a', -1]]), model: { type: 'BPE', vocab: {}, merges: [] } }));
  assert.throws(() => T5Tokenizer.fromDir(bpe), (e: unknown) => e instanceof ItdError && e.field === 'model.type' && /tokenizer\.json: model\.type is "BPE"; a T5 tokenizer\.json must be a SentencePiece Unigram model/.test(e.message));
  const empty = tmpDir();
  fs.writeFileSync(path.join(empty, 'spiece.model'), '');
  assert.throws(() => T5Tokenizer.fromDir(empty), /missing tokenizer\.json.*/);
  assert.throws(() => T5Tokenizer.fromDir(dir, 513), (e: unknown) => e instanceof ItdError && e.field === 'model_max_length' && /513 exceeds the tokenizer's model_max_length 512 \(.*tokenizer_config\.json\)/.test(e.message));
});
