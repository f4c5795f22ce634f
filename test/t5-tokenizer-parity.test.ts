/**
 * T5 token ids against the reference: Hugging Face's fast tokenizer (the Rust `tokenizers` library,
 * what diffusers' T5TokenizerFast runs) on the same tokenizer.json, configured as diffusers calls it
 * (padding="max_length", truncation=True, add_special_tokens=True), on every prompt of ../shared/data.
 * itd's path (T5Tokenizer.batch: pieces from a worker, framed in JS) must give exactly its ids,
 * `</s>`, padding and truncation included.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { Tokenizer } from 'tokenizers';
import { readPrompts } from '../src/io/prompts.js';
import { T5_PIECES, T5Tokenizer, t5TrainingWords, writeT5TokenizerDir } from '../src/tokenizer/index.js';
import { SHARED_DATA, tmpDir } from './helpers.js';

// The synthetic presets' tokenizer_2 / tokenizer_3 (T5 v1.1's 32100 ids, trained on the general word table).
const dir = path.join(tmpDir(), 'tokenizer_2');
writeT5TokenizerDir(dir, t5TrainingWords(), T5_PIECES);
const json = fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8');

const FILES = fs.existsSync(path.join(SHARED_DATA, 'prompts')) ? fs.readdirSync(path.join(SHARED_DATA, 'prompts')).filter((f) => f.endsWith('.csv')).sort() : [];
const PROMPTS = FILES.flatMap((f) => readPrompts(path.join(SHARED_DATA, 'prompts', f), { replaceInvalidUtf8: true }));

/** The reference ids [n, L] of `prompts`, framed at maxLength by the library itself. */
async function reference(prompts: string[], maxLength: number): Promise<Int32Array> {
  const ref = Tokenizer.fromString(json);
  ref.setTruncation(maxLength);
  ref.setPadding({ maxLength, padId: 0, padToken: '<pad>' });
  const out = new Int32Array(prompts.length * maxLength);
  const chunk = 4096;
  for (let s = 0; s < prompts.length; s += chunk) {
    (await ref.encodeBatch(prompts.slice(s, s + chunk))).forEach((e, r) => {
      const ids = e.getIds();
      assert.equal(ids.length, maxLength);
      out.set(ids, (s + r) * maxLength);
    });
  }
  return out;
}

for (const maxLength of [64]) {
  test(`ids equal the fast tokenizer's on every prompt of ../shared/data (max_sequence_length ${maxLength})`, { skip: PROMPTS.length === 0 && 'no ../shared/data' }, async () => {
    assert.ok(PROMPTS.length > 50000, `${PROMPTS.length} prompts in ${FILES.join(', ')}`);
    const tok = T5Tokenizer.fromDir(dir, maxLength);
    after(() => tok.close());
    const got = tok.batch(PROMPTS);
    const want = await reference(PROMPTS, maxLength);
    let firstBad = -1;
    for (let i = 0; i < want.length && firstBad < 0; i++) if (got.ids[i] !== want[i]) firstBad = Math.floor(i / maxLength);
    assert.equal(firstBad, -1, firstBad < 0 ? '' : `prompt ${firstBad} ${JSON.stringify(PROMPTS[firstBad])}`);
    // Truncation is counted as the library cuts: the prompts whose rows end in </s> at the last position without padding.
    const cut = got.truncated.reduce((a, c) => a + (c > 0 ? 1 : 0), 0);
    assert.ok(cut > 1000, `${cut} truncated`);
    for (let r = 0; r < got.n; r++) {
      const len = got.lengths[r]!;
      assert.equal(want[r * maxLength + len - 1], 1, `prompt ${r}: </s> at ${len - 1}`);
      if (len < maxLength) assert.equal(want[r * maxLength + len], 0);
      if (got.truncated[r]! > 0) assert.equal(len, maxLength);
    }
  });
}
