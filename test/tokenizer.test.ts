import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ClipTokenizer,
  FALLBACK_CORPUS,
  bytesToUnicode,
  cleanText,
  fallbackTokenizer,
  htmlUnescape,
  preTokenize,
  trainBpe,
} from '../src/tokenizer/index.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BPE_GZ = join(ROOT, '..', 'shared', 'data', 'clip', 'bpe_simple_vocab_16e6.txt.gz');
const GOLDEN = join(ROOT, 'test', 'fixtures', 'tokenizer', 'golden.json');
const SKIP_REAL = existsSync(BPE_GZ) ? false : `real CLIP vocabulary not found at ${BPE_GZ}`;

interface GoldenCase {
  text: string;
  cleaned: string;
  ids: number[];
  truncated: number;
  framed?: number[];
}

let realTokenizer: ClipTokenizer | undefined;
const clip = (): ClipTokenizer => (realTokenizer ??= ClipTokenizer.fromBpeGz(BPE_GZ));
const golden = (): GoldenCase[] => (JSON.parse(readFileSync(GOLDEN, 'utf8')) as { cases: GoldenCase[] }).cases;

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'itd-tokenizer-'));
  tempDirs.push(dir);
  return dir;
}
after(() => tempDirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

const writeJson = (path: string, value: unknown): void => writeFileSync(path, JSON.stringify(value));
const readJsonFile = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;

/** The framing rule stated independently: BOS, at most maxLength-2 content ids, EOS, padding. */
function expectedRow(ids: number[], t: ClipTokenizer): number[] {
  const row = [t.bosId, ...ids.slice(0, t.maxLength - 2), t.eosId];
  while (row.length < t.maxLength) row.push(t.padId);
  return row;
}

describe('cleanText: ftfy-like fixes, html.unescape x2, whitespace, lowercase', () => {
  const cases: [string, string][] = [
    ['\u201cHi\u201d \u2018there\u2019 it\u2019s', '"hi" \'there\' it\'s'],
    ['\ufb01ne \ufb02ow o\ufb03ce \u0132sselmeer', 'fine flow office ijsselmeer'],
    ['\uff2c\uff2f\uff35\uff24\u3000\uff11\uff12\uff01', 'loud 12!'],
    ['\uff76\uff9e\uff72\uff84\uff9e', '\u30ac\u30a4\u30c9'], // halfwidth kana + dakuten compose to ガイド
    ['cafe\u0301', 'caf\u00e9'], // NFC
    ['a\x00b\x07c\x7fd\ufeffe\u206af', 'abcdef'],
    ['\x1b[31;1mred\x1b[0m text', 'red text'],
    ['\x93smart\x94 \x80 \x85', '"smart" \u20ac \u2026'], // C1 controls read as Windows-1252
    ['  a \t b\r\n\nc\u00a0d\u2003e\u3000f  ', 'a b c d e f'],
    ['fish &amp; chips &lt;3 &#39;x&#39; &#x2764; &eacute;t&eacute;', 'fish & chips <3 \'x\' \u2764 \u00e9t\u00e9'],
    ['&EACUTE;COLE &hellip; don&rsquo;t', '\u00e9cole \u2026 don\'t'], // ftfy: all-caps names, then uncurling
    ['x &amp;amp;amp;amp;', 'x &'], // ftfy unescapes to a fixed point when no '<' is present
    ['x <b> &amp;amp;amp;', 'x <b> &amp;'], // with '<' only html.unescape's two passes apply
    ['&notit; &ampx &#0; &#128; &#x110000;', '\u00acit; &x \ufffd \u20ac \ufffd'],
    ['ΟΔΟΣ', 'οδος'],
    ['', ''],
  ];
  for (const [input, expected] of cases) {
    test(JSON.stringify(input), () => assert.equal(cleanText(input), expected));
  }

  test('htmlUnescape follows Python html.unescape for unknown and legacy names', () => {
    assert.equal(htmlUnescape('&unknown; &amp &copy2024 &#65;&#x42;&#X43'), '&unknown; & \u00a92024 ABC');
  });
});

describe('preTokenize (CLIP regex)', () => {
  test('digits are single tokens, letters and punctuation group', () => {
    assert.deepEqual(preTokenize('abc123 !?x'), ['abc', '1', '2', '3', '!?', 'x']);
  });
  test('contractions split before letters; IGNORECASE folds long s', () => {
    assert.deepEqual(preTokenize("don't it's we're i'll it'\u017f"), ['don', "'t", 'it', "'s", 'we', "'re", 'i', "'ll", 'it', "'\u017f"]);
  });
  test('special token literals and U+0345, which the regex module matches with no branch', () => {
    assert.deepEqual(preTokenize('<|startoftext|>a<|endoftext|>'), ['<|startoftext|>', 'a', '<|endoftext|>']);
    assert.deepEqual(preTokenize('a\u0345b'), ['a', 'b']);
  });
});

describe('real CLIP vocabulary', { skip: SKIP_REAL }, () => {
  test('OpenAI vocabulary layout: 49408 ids, BOS 49406, EOS 49407, SD1 pad = EOS', () => {
    const t = clip();
    assert.equal(t.vocabSize, 49408);
    assert.equal(t.bosId, 49406);
    assert.equal(t.eosId, 49407);
    assert.equal(t.padId, 49407);
    assert.equal(t.maxLength, 77);
    // "a</w>" is byte 'a' (index 64 among printable bytes) + 256.
    assert.deepEqual(t.encode('a'), [320]);
  });

  test('published example: "a photo of a cat"', () => {
    const { ids, length, truncated } = clip().frame('a photo of a cat');
    assert.deepEqual(Array.from(ids.slice(0, 7)), [49406, 320, 1125, 539, 320, 2368, 49407]);
    assert.ok(ids.slice(7).every((id) => id === 49407));
    assert.equal(length, 7);
    assert.equal(truncated, 0);
  });

  test('golden ids from the independent Python reference', () => {
    const t = clip();
    const cases = golden();
    assert.ok(cases.length >= 40);
    for (const c of cases) {
      const label = JSON.stringify(c.text);
      assert.equal(cleanText(c.text), c.cleaned, `cleaned ${label}`);
      assert.deepEqual(t.encode(c.text), c.ids, `ids ${label}`);
      const framed = t.frame(c.text);
      assert.deepEqual(Array.from(framed.ids), c.framed ?? expectedRow(c.ids, t), `framed ${label}`);
      assert.equal(framed.truncated, c.truncated, `truncated ${label}`);
      assert.equal(framed.length, Math.min(c.ids.length, 75) + 2, `length ${label}`);
    }
    assert.ok(cases.some((c) => c.truncated > 0), 'golden set covers truncation');
  });

  test('truncation keeps exactly 77 ids with EOS last and reports the dropped count', () => {
    const t = clip();
    const text = Array.from({ length: 100 }, (_, i) => `word${i}`).join(' ');
    const content = t.encode(text);
    const framed = t.frame(text);
    assert.equal(framed.ids.length, 77);
    assert.equal(framed.ids[76], t.eosId);
    assert.equal(framed.length, 77);
    assert.equal(framed.truncated, content.length - 75);
    assert.deepEqual(Array.from(framed.ids.slice(1, 76)), content.slice(0, 75));
    // Exactly 75 content tokens fit without truncation.
    const fits = t.decode(content.slice(0, 75));
    assert.equal(t.frame(fits).truncated, 0);
  });

  test('batch rows equal frame()', () => {
    const t = clip();
    const texts = ['a photo of a cat', '', golden().at(-1)!.text];
    const b = t.batch(texts);
    assert.equal(b.n, 3);
    assert.equal(b.ids.length, 3 * 77);
    texts.forEach((text, i) => {
      const f = t.frame(text);
      assert.deepEqual(b.ids.subarray(i * 77, (i + 1) * 77), f.ids);
      assert.equal(b.lengths[i], f.length);
      assert.equal(b.truncated[i], f.truncated);
    });
    assert.equal(b.lengths[1], 2);
  });

  test('decode inverts encode up to pre-token spacing; tokenStrings are readable', () => {
    const t = clip();
    for (const c of golden()) {
      const words = preTokenize(c.cleaned).filter((w) => w !== '<|startoftext|>' && w !== '<|endoftext|>');
      assert.equal(t.decode(c.ids), words.join(' '), JSON.stringify(c.text));
    }
    for (const text of ['a photo of a cat', 'café naïve zoë', '東京タワー 🐱👍🏽']) {
      assert.equal(t.decode(t.frame(text).ids), text);
    }
    assert.deepEqual(t.tokenStrings(t.frame('A photo of a cat').ids.slice(0, 7)), [
      '<|startoftext|>', 'a', 'photo', 'of', 'a', 'cat', '<|endoftext|>',
    ]);
    // 東 is one token; 京 is split mid-character, so its pieces show as bytes.
    assert.deepEqual(t.tokenStrings(t.encode('東京')), ['東', '<0xE4><0xBA>', '<0xAC>']);
    assert.throws(() => t.decode([49408]), RangeError);
  });

  test('save() then fromDir() gives identical ids (HF vocab.json/merges.txt)', () => {
    const t = clip();
    const dir = tempDir();
    t.save(dir);
    assert.ok(readFileSync(join(dir, 'merges.txt'), 'utf8').startsWith('#version: 0.2\n'));
    assert.equal(Object.keys(readJsonFile(join(dir, 'vocab.json'))).length, 49408);
    assert.equal(readJsonFile(join(dir, 'tokenizer_config.json'))['tokenizer_class'], 'CLIPTokenizer');
    const loaded = ClipTokenizer.fromDir(dir);
    assert.deepEqual([loaded.vocabSize, loaded.bosId, loaded.eosId, loaded.padId], [49408, 49406, 49407, 49407]);
    for (const c of golden()) assert.deepEqual(loaded.encode(c.text), c.ids, JSON.stringify(c.text));
  });

  test('SD2 tokenizer dir: pad "!" (id 0) from special_tokens_map.json overrides the config', () => {
    const dir = tempDir();
    clip().save(dir);
    const configPath = join(dir, 'tokenizer_config.json');
    writeJson(configPath, { ...readJsonFile(configPath), pad_token: '<|endoftext|>' });
    writeJson(join(dir, 'special_tokens_map.json'), {
      bos_token: { content: '<|startoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
      eos_token: { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
      unk_token: { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
      pad_token: '!',
    });
    const sd2 = ClipTokenizer.fromDir(dir);
    assert.equal(sd2.padId, 0);
    const framed = sd2.frame('a photo of a cat');
    assert.deepEqual(Array.from(framed.ids.slice(0, 8)), [49406, 320, 1125, 539, 320, 2368, 49407, 0]);
    assert.ok(framed.ids.slice(7).every((id) => id === 0));
    // Like HF's CLIPTokenizer, a special token is never split: "!" maps to its own id 0 ...
    assert.deepEqual(sd2.encode('cat!'), [2368, 0]);
    // ... whereas with SD1 files "!" is ordinary text ("!</w>" = 256).
    assert.deepEqual(clip().encode('cat!'), [2368, 256]);
  });
});

describe('HF tokenizer directories (fallback vocabulary)', () => {
  const saved = (): string => {
    const dir = tempDir();
    fallbackTokenizer().save(dir);
    return dir;
  };

  test('pad token as a string or {"content"} object; huge model_max_length means 77', () => {
    const dir = saved();
    const configPath = join(dir, 'tokenizer_config.json');
    unlinkSync(join(dir, 'special_tokens_map.json'));
    writeJson(configPath, { ...readJsonFile(configPath), pad_token: '!', model_max_length: 1e30 });
    let t = ClipTokenizer.fromDir(dir);
    assert.equal(t.padId, 0);
    assert.equal(t.maxLength, 77);
    writeJson(configPath, { ...readJsonFile(configPath), pad_token: { __type: 'AddedToken', content: '!' }, model_max_length: 32 });
    t = ClipTokenizer.fromDir(dir);
    assert.equal(t.padId, 0);
    assert.equal(t.maxLength, 32);
    assert.equal(t.frame('a photo of a cat').ids.length, 32);
  });

  test('save() then fromDir() round trip', () => {
    const t = fallbackTokenizer();
    const loaded = ClipTokenizer.fromDir(saved());
    assert.deepEqual([loaded.vocabSize, loaded.bosId, loaded.eosId, loaded.padId, loaded.maxLength], [t.vocabSize, t.bosId, t.eosId, t.padId, t.maxLength]);
    for (const text of [...FALLBACK_CORPUS.slice(0, 20), 'Zoë & 東京 🐱!', "it's 2077"]) {
      assert.deepEqual(loaded.frame(text), t.frame(text));
    }
  });

  test('missing or invalid files give errors naming the file', () => {
    const noVocab = saved();
    unlinkSync(join(noVocab, 'vocab.json'));
    assert.throws(() => ClipTokenizer.fromDir(noVocab), /vocab\.json/);
    const noMerges = saved();
    unlinkSync(join(noMerges, 'merges.txt'));
    assert.throws(() => ClipTokenizer.fromDir(noMerges), /merges\.txt/);
    const badConfig = saved();
    writeFileSync(join(badConfig, 'tokenizer_config.json'), '{ not json');
    assert.throws(() => ClipTokenizer.fromDir(badConfig), /tokenizer_config\.json.*invalid JSON/);
    const badPad = saved();
    writeJson(join(badPad, 'special_tokens_map.json'), { pad_token: { id: 3 } });
    assert.throws(() => ClipTokenizer.fromDir(badPad), /special_tokens_map\.json: pad_token/);
    const unknownPad = saved();
    writeJson(join(unknownPad, 'special_tokens_map.json'), { pad_token: '<pad>' });
    assert.throws(() => ClipTokenizer.fromDir(unknownPad), /pad token "<pad>" is not in the vocabulary/);
    const badMerges = saved();
    writeFileSync(join(badMerges, 'merges.txt'), '#version: 0.2\na b\nc d e\n');
    assert.throws(() => ClipTokenizer.fromDir(badMerges), /merges\.txt:3/);
    assert.throws(() => ClipTokenizer.fromDir(join(noVocab, 'nope')), /vocab\.json/);
    assert.throws(() => ClipTokenizer.fromBpeGz(join(noVocab, 'missing.txt.gz')), /missing\.txt\.gz/);
  });
});

describe('trainBpe and the fallback tokenizer', () => {
  test('deterministic and independent of corpus order', () => {
    const merges = trainBpe(FALLBACK_CORPUS, 300);
    assert.equal(merges.length, 300);
    assert.deepEqual(trainBpe(FALLBACK_CORPUS, 300), merges);
    assert.deepEqual(trainBpe([...FALLBACK_CORPUS].reverse(), 300), merges);
  });

  test('most frequent pair first, ties lexicographic, stops when words are whole', () => {
    assert.deepEqual(trainBpe(['cd ab', 'ab cd'], 10), [['a', 'b</w>'], ['c', 'd</w>']]);
    assert.deepEqual(trainBpe(['xy xy xy ab'], 1), [['x', 'y</w>']]);
  });

  test('fallback vocabulary follows the OpenAI layout and covers the corpus', () => {
    const t = fallbackTokenizer();
    const merges = trainBpe(FALLBACK_CORPUS, 2000);
    assert.ok(FALLBACK_CORPUS.length >= 150);
    assert.equal(t.vocabSize, 512 + merges.length + 2);
    assert.deepEqual([t.bosId, t.eosId, t.padId], [t.vocabSize - 2, t.vocabSize - 1, t.vocabSize - 1]);
    assert.equal(fallbackTokenizer(), t, 'memoised');
    assert.deepEqual(t.tokenStrings(t.encode('a photo of an astronaut riding a horse')), ['a', 'photo', 'of', 'an', 'astronaut', 'riding', 'a', 'horse']);
    const text = 'a watercolor painting of a lighthouse';
    assert.equal(t.decode(t.frame(text).ids), text);
    // Unseen characters still encode through the 256 byte tokens.
    assert.equal(t.decode(t.encode('Zoë 東京 🐱')), 'zoë 東京 🐱');
  });

  test('fromMerges: bytes, bytes + </w>, merges, then BOS/EOS', () => {
    const order = [...bytesToUnicode().values()];
    assert.equal(order[0], '!');
    assert.equal(order.length, 256);
    const t = ClipTokenizer.fromMerges([['c', 'a'], ['ca', 't</w>']]);
    assert.equal(t.vocabSize, 516);
    assert.deepEqual(t.encode('cat'), [513]);
    assert.deepEqual(t.encode('!'), [256]);
    assert.deepEqual(t.tokenStrings([0, 256, 512, 513, 514]), ['!', '!', 'ca', 'cat', '<|startoftext|>']);
  });
});
