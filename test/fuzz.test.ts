/**
 * Property-based tests (fast-check) over the parsers that take outside bytes: the safetensors
 * reader, the CLIP tokenizer and the prompt readers. Bounded (numRuns) so the file runs in a few
 * seconds; seeds are random per run and a failure prints the seed and the shrunk counterexample.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { ItdError } from '../src/errors.js';
import { duplicateJsonKey, parseJsonStrict } from '../src/io/files.js';
import { parseCsv, readPrompts } from '../src/io/prompts.js';
import { SafetensorsFile, writeSafetensors, type DType, type TensorIn } from '../src/io/safetensors.js';
import { ClipTokenizer } from '../src/tokenizer/index.js';
import { SHARED_DATA, tmpDir } from './helpers.js';

/** ITD_FUZZ_RUNS=5000 for a longer hunt; the default keeps the file fast. */
const RUNS = { numRuns: Number(process.env['ITD_FUZZ_RUNS']) || 150 };
const dir = tmpDir('itd-fuzz-');
let fileNo = 0;
const tmpFile = (ext: string, data: string | Uint8Array): string => {
  const p = path.join(dir, `f${fileNo++}${ext}`);
  fs.writeFileSync(p, data);
  return p;
};

/** Reads every tensor of a file in the dtype's natural way; the file must be closed either way. */
function readAll(file: string): void {
  const st = SafetensorsFile.open(file);
  try {
    for (const name of st.names()) {
      const { dtype } = st.info(name);
      if (dtype === 'F32' || dtype === 'F16' || dtype === 'BF16' || dtype === 'F64') st.readF32(name);
      else st.readI32(name);
    }
  } finally {
    st.close();
  }
}

/** Valid, or refused with an ItdError: never a TypeError, RangeError or any other crash. */
function validOrItdError(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ItdError)) throw e;
    assert.ok(e.file !== undefined, `an ItdError must name its file: ${e.message}`);
  }
}

const tensorArb = fc.oneof(
  fc.record({ dtype: fc.constant<DType>('F32'), shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }) }),
  fc.record({ dtype: fc.constantFrom<DType>('I32', 'U8', 'I8', 'I16', 'BOOL', 'F16'), shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 2 }) }),
).chain(({ dtype, shape }) => {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = dtype === 'F32' || dtype === 'F16'
    ? fc.array(fc.float({ noNaN: true, noDefaultInfinity: true, min: -60000, max: 60000 }), { minLength: n, maxLength: n })
    : fc.array(fc.integer({ min: 0, max: dtype === 'BOOL' ? 1 : 127 }), { minLength: n, maxLength: n });
  return values.map((v): TensorIn => {
    const data = dtype === 'F32' || dtype === 'F16' ? Float32Array.from(v) : dtype === 'I32' ? Int32Array.from(v)
      : dtype === 'I8' ? Int8Array.from(v) : dtype === 'I16' ? Int16Array.from(v) : Uint8Array.from(v);
    return { dtype, shape, data };
  });
});
const nameArb = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter((s) => s !== '__metadata__');

test('safetensors: any set of tensors and metadata round-trips exactly', () => {
  fc.assert(fc.property(fc.dictionary(nameArb, tensorArb, { maxKeys: 5 }), fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }), (tensors, metadata) => {
    const file = path.join(dir, `rt${fileNo++}.safetensors`);
    writeSafetensors(file, tensors, metadata);
    const st = SafetensorsFile.open(file);
    try {
      assert.deepEqual(st.names().sort(), Object.keys(tensors).sort());
      assert.deepEqual(st.metadata, Object.keys(metadata).length > 0 ? { ...metadata } : {});
      for (const [name, t] of Object.entries(tensors)) {
        assert.deepEqual(st.info(name).shape, t.shape);
        if (t.dtype === 'F32') assert.deepEqual(st.readF32(name), t.data);
        else if (t.dtype === 'F16') assert.equal(st.readF32(name).length, t.data.length);
        else assert.deepEqual([...st.readI32(name)], [...(t.data as Int32Array)]);
      }
    } finally {
      st.close();
    }
  }), RUNS);
});

test('safetensors: corrupted bytes of a valid file load or fail with an ItdError, never a crash', () => {
  const file = path.join(dir, 'base.safetensors');
  writeSafetensors(file, {
    a: { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    b: { dtype: 'I64', shape: [2], data: new BigInt64Array([1n, -2n]) },
    c: { dtype: 'BF16', shape: [1], data: new Float32Array([1]) },
  }, { k: 'v' });
  const base = fs.readFileSync(file);
  const edit = fc.record({ at: fc.nat({ max: base.length - 1 }), byte: fc.integer({ min: 0, max: 255 }) });
  fc.assert(fc.property(fc.array(edit, { minLength: 1, maxLength: 6 }), fc.nat({ max: base.length }), (edits, cut) => {
    const bytes = Buffer.from(base.subarray(0, Math.max(cut, base.length - 4)));
    for (const { at, byte } of edits) if (at < bytes.length) bytes[at] = byte;
    validOrItdError(() => readAll(tmpFile('.safetensors', bytes)));
  }), RUNS);
});

test('safetensors: arbitrary JSON headers load or fail with an ItdError, never a crash', () => {
  const entry = fc.record({
    dtype: fc.oneof(fc.constantFrom('F32', 'I64', 'U8', 'F16', 'BOOL', 'XX'), fc.anything()),
    shape: fc.oneof(fc.array(fc.integer({ min: -1, max: 3 }), { maxLength: 3 }), fc.anything()),
    data_offsets: fc.oneof(fc.tuple(fc.nat(16), fc.nat(16)), fc.anything()),
  }, { requiredKeys: [] });
  const header = fc.oneof(fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(entry, fc.anything()), { maxKeys: 4 }), fc.jsonValue());
  fc.assert(fc.property(header, fc.uint8Array({ maxLength: 24 }), (h, data) => {
    const text = Buffer.from(JSON.stringify(h) ?? 'null');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(text.length));
    validOrItdError(() => readAll(tmpFile('.safetensors', Buffer.concat([len, text, data]))));
  }), RUNS);
});

test('duplicateJsonKey: none in what JSON.stringify writes; found wherever a key is repeated', () => {
  fc.assert(fc.property(fc.jsonValue(), (v) => {
    assert.equal(duplicateJsonKey(JSON.stringify(v)), undefined);
  }), RUNS);
  const obj = fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 2 }), { minKeys: 1, maxKeys: 5 });
  fc.assert(fc.property(obj, fc.nat(), fc.jsonValue({ maxDepth: 1 }), fc.jsonValue({ maxDepth: 1 }), (o, pick, v, wrap) => {
    const keys = Object.keys(o);
    const key = keys[pick % keys.length]!;
    // The repeated key, written with the same escapes JSON.stringify uses, appended to the object.
    const text = `${JSON.stringify(o).slice(0, -1)},${JSON.stringify(key)}:${JSON.stringify(v)}}`;
    const nested = `{"outer":[${JSON.stringify(wrap)},${text}]}`;
    for (const t of [text, nested]) {
      assert.equal(duplicateJsonKey(t)?.key, key, t);
      assert.throws(() => parseJsonStrict(t, 'x.json', 'test'), (e: ItdError) => e.code === 'format' && e.field === key);
    }
  }), RUNS);
});

const clip = ClipTokenizer.fromBpeGz(path.join(SHARED_DATA, 'clip', 'bpe_simple_vocab_16e6.txt.gz'));

test('tokenizer: any Unicode text encodes to in-vocabulary ids and frames to BOS ... EOS within 77', () => {
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 120 }), (text) => {
    const ids = clip.encode(text);
    for (const id of ids) assert.ok(Number.isInteger(id) && id >= 0 && id < clip.vocabSize, `id ${id}`);
    const f = clip.frame(text);
    assert.equal(f.ids.length, 77);
    assert.equal(f.ids[0], clip.bosId);
    assert.equal(f.ids[f.length - 1], clip.eosId);
    assert.equal(f.length - 2 + f.truncated, ids.length);
    assert.equal(clip.tokenStrings(ids).length, ids.length);
    assert.deepEqual(clip.encode(text), ids, 'deterministic (the word cache changes nothing)');
  }), RUNS);
});

test('tokenizer: whitespace-separated words tokenize independently; plain words decode back', () => {
  const word = fc.stringMatching(/^[a-z]{1,10}$/); // CLIP splits digits into single tokens, so letters only
  fc.assert(fc.property(fc.array(word, { minLength: 1, maxLength: 8 }), fc.constantFrom(' ', '  ', '\t', '\n '), (words, sep) => {
    const ids = clip.encode(words.join(sep));
    assert.deepEqual(ids, words.flatMap((w) => clip.encode(w)));
    assert.equal(clip.decode(ids), words.join(' '));
  }), RUNS);
});

test('prompt readers: CSV written with RFC 4180 quoting parses back to the same records', () => {
  const field = fc.string({ unit: 'grapheme', maxLength: 8 });
  fc.assert(fc.property(fc.array(fc.array(field, { minLength: 1, maxLength: 4 }), { maxLength: 6 }), fc.constantFrom('\n', '\r\n'), (records, eol) => {
    const text = records.map((r) => r.map((f) => `"${f.replaceAll('"', '""')}"`).join(',')).join(eol);
    assert.deepEqual(parseCsv(text), records);
  }), RUNS);
});

test('prompt readers: .txt and .json prompts round-trip; arbitrary bytes give prompts or an error naming the file', () => {
  const line = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).filter((s) => !/[\r\n]/.test(s) && s.trim() !== '' && !s.startsWith('\uFEFF'));
  fc.assert(fc.property(fc.array(line, { minLength: 1, maxLength: 6 }), fc.constantFrom('\n', '\r\n'), (prompts, eol) => {
    assert.deepEqual(readPrompts(tmpFile('.txt', prompts.join(eol) + eol)), prompts);
    assert.deepEqual(readPrompts(tmpFile('.json', JSON.stringify(prompts))), prompts);
    const csv = `prompt${eol}${prompts.map((p) => `"${p.replaceAll('"', '""')}"`).join(eol)}`;
    assert.deepEqual(readPrompts(tmpFile('.csv', csv)), prompts);
  }), RUNS);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), fc.constantFrom('.txt', '.csv', '.json'), (bytes, ext) => {
    const file = tmpFile(ext, bytes);
    try {
      const prompts = readPrompts(file);
      for (const p of prompts) assert.equal(typeof p, 'string');
      assert.ok(!prompts.some((p) => p.includes('\uFFFD')) || Buffer.from(bytes).toString('utf8').includes('\uFFFD'), 'no silent replacement');
    } catch (e) {
      assert.ok(e instanceof Error && e.message.includes(file), `error names the file: ${(e as Error).message}`);
    }
  }), RUNS);
});
