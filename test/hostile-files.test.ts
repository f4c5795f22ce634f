/**
 * Files that lie: non-finite weights, repeated JSON keys, a FIFO/directory/device/symlink loop where
 * a file is expected, out-of-range token ids, mistyped config fields and invalid UTF-8 prompts all
 * fail with an ItdError naming the file (and field), never a hang, a wrap or a silent substitution.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadTextModel } from '../src/encoder/index.js';
import type { ItdError, ItdErrorCode } from '../src/errors.js';
import { readPrompts } from '../src/io/prompts.js';
import { Checkpoint, SafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import { duplicateJsonKey, readJsonFile, readJsonIntEntries } from '../src/io/files.js';
import { createSession } from '../src/onnx/session.js';
import { loadSae, saveSae } from '../src/sae/index.js';
import { loadEraser } from '../src/select/eraser-file.js';
import { openActivations } from '../src/collect/dataset.js';
import { Sae } from '../src/sae/index.js';
import { ClipTokenizer } from '../src/tokenizer/index.js';
import { ConceptEraser, readEraserSet } from '../src/erase/index.js';
import { buildEraser } from '../src/select/select.js';
import { exemplarSae, tinyModel, tmpDir } from './helpers.js';

function isItd(code: ItdErrorCode, file: string, field?: string, msg?: RegExp) {
  return (e: unknown): boolean => {
    const x = e as ItdError;
    assert.equal(x.name, 'ItdError', String(e));
    assert.equal(x.code, code, x.message);
    assert.equal(x.file, file, x.message);
    if (field !== undefined) assert.equal(x.field, field, x.message);
    assert.ok(x.message.includes(file), x.message);
    if (msg) assert.match(x.message, msg);
    return true;
  };
}

/** A copy of the tiny model whose text-encoder weights `edit` rewrites. */
function modelCopy(): { dir: string; weights: string } {
  const dir = path.join(tmpDir(), 'model');
  fs.cpSync(tinyModel(), dir, { recursive: true });
  return { dir, weights: path.join(dir, 'text_encoder', 'model.safetensors') };
}

/** Rewrites one float of tensor `name` in place (same size, so the header stays valid). */
function poke(file: string, name: string, index: number, value: number): void {
  const st = SafetensorsFile.open(file);
  const info = st.info(name);
  st.close();
  assert.equal(info.dtype, 'F32');
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(4);
  b.writeFloatLE(value);
  fs.writeSync(fd, b, 0, 4, info.begin + 4 * index);
  fs.closeSync(fd);
}

for (const value of [NaN, Infinity, -Infinity]) {
  test(`a ${value} deep in a model tensor is a 'numeric' error naming the file and tensor`, async () => {
    const { dir, weights } = modelCopy();
    const name = 'text_model.encoder.layers.7.mlp.fc2.weight';
    poke(weights, name, 1000, value);
    await assert.rejects(loadTextModel(dir), isItd('numeric', weights, name, new RegExp(`${value} at flat index 1000`)));
  });
}

test('a NaN in an SAE tensor (F16 on disk) is a numeric error naming the SAE file and tensor', () => {
  const dir = tmpDir();
  saveSae(dir, Sae.random({ d: 8, n: 16, k: 2, seed: 1 }));
  const file = path.join(dir, 'sae.safetensors');
  const st = SafetensorsFile.open(file);
  const t = Object.fromEntries(st.names().map((n) => [n, { dtype: 'F16' as const, shape: st.info(n).shape, data: st.readF32(n) }]));
  st.close();
  t['W_dec']!.data[37] = NaN;
  writeSafetensors(file, t);
  assert.throws(() => loadSae(dir), isItd('numeric', file, 'W_dec', /NaN at flat index 37/));
});

test('duplicate keys in a safetensors header (top level or inside an entry) are format errors', () => {
  const dir = tmpDir();
  const write = (header: string, data: number[]) => {
    const p = path.join(dir, `d${fs.readdirSync(dir).length}.safetensors`);
    const h = Buffer.from(header);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    fs.writeFileSync(p, Buffer.concat([len, h, Buffer.from(data)]));
    return p;
  };
  const e = (b: number) => `{"dtype":"U8","shape":[1],"data_offsets":[${b},${b + 1}]}`;
  const top = write(`{"a":${e(0)},"a":${e(0)}}`, [1]);
  assert.throws(() => SafetensorsFile.open(top), isItd('format', top, undefined, /repeats the key "a" in \(top level\)/));
  const escaped = write(`{"a":${e(0)},"\\u0061":${e(0)}}`, [1]); // the same key, spelled with an escape
  assert.throws(() => SafetensorsFile.open(escaped), isItd('format', escaped, undefined, /repeats the key "a"/));
  const inner = write(`{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, [1]);
  assert.throws(() => SafetensorsFile.open(inner), isItd('format', inner, undefined, /repeats the key "dtype" in \.a/));
  const ok = write(`{"a":${e(0)},"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, [1, 2]);
  assert.deepEqual(SafetensorsFile.open(ok).names(), ['a', 'b']);
});

test('duplicateJsonKey: only keys repeated within one object count (nested, arrays, escapes, strings holding braces)', () => {
  assert.equal(duplicateJsonKey('{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}'), undefined);
  assert.equal(duplicateJsonKey('{"s":"{\\"a\\":1,\\"a\\":2}","t":"}]"}'), undefined);
  assert.deepEqual(duplicateJsonKey('{"c":[{"x":1},{"y":1,"y":2}]}'), { key: 'y', path: '.c[1]' });
  assert.deepEqual(duplicateJsonKey('[1,{"k":{"z":0,"z":0}}]'), { key: 'z', path: '[1].k' });
  const cfg = path.join(tmpDir(), 'cfg.json');
  fs.writeFileSync(cfg, '{"k": 4, "k": 8}');
  assert.throws(() => readJsonFile(cfg, 'SAE config'), isItd('format', cfg, 'k'));
});

test('readJsonIntEntries (vocab.json): the fast scan agrees with JSON.parse, keeps file order, and refuses what readJsonFile refuses', () => {
  const file = path.join(tmpDir(), 'vocab.json');
  const read = (text: string) => {
    fs.writeFileSync(file, text);
    return readJsonIntEntries(file, 'vocab.json');
  };
  assert.deepEqual([...read(' {\n "a": 1 ,"b":20, "\\"" :3, "\\\\":4,"\\u0041":0, "0": 7 }\n')!], [['a', 1], ['b', 20], ['"', 3], ['\\', 4], ['A', 0], ['0', 7]]);
  assert.deepEqual([...read('{}')!], []);
  // Other number forms and values take the general path (JSON.parse); the tokenizer checks the values.
  assert.deepEqual([...read('{"a": 1.0, "b": -2, "c": 1e2, "d": "x", "e": {"f": 1}}')!], [['a', 1], ['b', -2], ['c', 100], ['d', 'x'], ['e', { f: 1 }]]);
  assert.equal(read('[1, 2]'), undefined);
  assert.equal(read('7'), undefined);
  assert.throws(() => read('{"a": 1, "a": 2}'), isItd('format', file, 'a', /repeats the key "a"/));
  for (const bad of ['{"a": 01}', '{"a": 1,}', '{"a": 1} x', '{"a\tb": 1}', '{"a": 1', '{"a', '{"\\x": 1}']) assert.throws(() => read(bad), isItd('format', file, undefined, /invalid JSON/), bad);
});

test('a directory, a FIFO or a device where a weight file is expected is a clear error, never a hang', () => {
  const dir = tmpDir();
  const asDir = path.join(dir, 'd.safetensors');
  fs.mkdirSync(asDir);
  assert.throws(() => SafetensorsFile.open(asDir), isItd('format', asDir, undefined, /is a directory/));
  const fifo = path.join(dir, 'fifo.safetensors');
  execFileSync('mkfifo', [fifo]);
  assert.throws(() => SafetensorsFile.open(fifo), isItd('format', fifo, undefined, /is a FIFO/));
  const dev = path.join(dir, 'dev.safetensors');
  fs.symlinkSync('/dev/zero', dev);
  assert.throws(() => SafetensorsFile.open(dev), isItd('format', dev, undefined, /is a character device/));
  // A model directory whose weights are a FIFO: the loader fails at once instead of blocking in open().
  const { dir: model, weights } = modelCopy();
  fs.rmSync(weights);
  execFileSync('mkfifo', [weights]);
  assert.throws(() => Checkpoint.open(path.dirname(weights), ['model']), isItd('format', weights, undefined, /FIFO/));
  const cfg = path.join(model, 'text_encoder', 'config.json');
  fs.rmSync(cfg);
  execFileSync('mkfifo', [cfg]);
  return assert.rejects(loadTextModel(model), isItd('format', cfg, undefined, /FIFO/));
});

test('a symlink loop is named as such (ELOOP): weights, SAE, model directory', async () => {
  const dir = tmpDir();
  const a = path.join(dir, 'a.safetensors');
  const b = path.join(dir, 'b.safetensors');
  fs.symlinkSync(b, a);
  fs.symlinkSync(a, b);
  assert.throws(() => SafetensorsFile.open(a), isItd('io', a, undefined, /symlink loop \(ELOOP\)/));
  assert.throws(() => Checkpoint.open(a), isItd('io', a, undefined, /ELOOP/));
  assert.throws(() => loadSae(a), isItd('io', a, undefined, /symlink loop/));
  const loopDir = path.join(dir, 'model');
  fs.symlinkSync(loopDir, loopDir);
  await assert.rejects(loadTextModel(loopDir), isItd('io', loopDir, undefined, /symlink loop \(ELOOP\)/));
});

test('vocab.json ids outside int32, negative or non-integer are errors, not a wrap', () => {
  const dir = tmpDir();
  const merges = path.join(dir, 'merges.txt');
  fs.writeFileSync(merges, '#version: 0.2\n');
  for (const id of [2 ** 31, 2 ** 32 + 5, -1, 1.5, '7']) {
    const vocab = path.join(dir, 'vocab.json');
    fs.writeFileSync(vocab, JSON.stringify({ '<|startoftext|>': 0, '<|endoftext|>': 1, a: id }));
    assert.throws(() => ClipTokenizer.fromHfFiles(vocab, merges), isItd('format', vocab, 'a', /expected an integer in \[0, 2147483647\]/));
  }
});

test("mistyped config fields name the file and field: SAE cfg.json, CLIP config.json, eraser, manifest", async () => {
  const sae = tmpDir();
  saveSae(sae, Sae.random({ d: 8, n: 16, k: 2, seed: 1 }));
  const cfg = path.join(sae, 'cfg.json');
  const good = JSON.parse(fs.readFileSync(cfg, 'utf8'));
  for (const [field, value] of [['layer', '8'], ['k', 2.5], ['activation', 7], ['hookpoint', 3], ['normalize_decoder', 'yes'], ['training', [1]]] as const) {
    fs.writeFileSync(cfg, JSON.stringify({ ...good, [field]: value }));
    assert.throws(() => loadSae(sae), isItd('config', cfg, field), `${field}: ${JSON.stringify(value)}`);
  }
  for (const text of ['[1, 2]', '"cfg"', 'null']) {
    fs.writeFileSync(cfg, text);
    assert.throws(() => loadSae(sae), isItd('config', cfg, '(top level)', /must be a JSON object/));
  }

  const { dir: model } = modelCopy();
  const clip = path.join(model, 'text_encoder', 'config.json');
  const clipGood = JSON.parse(fs.readFileSync(clip, 'utf8'));
  for (const [field, value] of [['num_hidden_layers', '12'], ['hidden_size', -1], ['layer_norm_eps', 'x'], ['text_config', 5], ['projection_dim', 'a']] as const) {
    fs.writeFileSync(clip, JSON.stringify({ ...clipGood, [field]: value }));
    await assert.rejects(loadTextModel(model), isItd('config', clip, field));
  }

  const eraser = path.join(tmpDir(), 'eraser.json');
  const base = { format: 'itd-eraser/1', modelId: 'm', saeId: 's', layer: 8, kSel: 4, scale: -8, mode: 'official', threshold: null, calibration: null, activationThreshold: 0, concepts: [], retain: { prompts: [], top: [] }, templates: [] };
  for (const [over, field] of [[{ layer: '8' }, 'layer'], [{ concepts: [null] }, 'concepts[0]'], [{ concepts: [{ name: 'x', prompts: [], removedByRetain: [], features: [{ latent: '3', max: 1, mean: 1, prompts: 1 }] }] }, 'concepts[0].features[0].latent'], [{ concepts: [{ name: 'x', features: [] }] }, 'concepts[0].prompts'], [{ templates: undefined }, 'templates'], [{ retain: 5 }, 'retain']] as const) {
    fs.writeFileSync(eraser, JSON.stringify({ ...base, ...over }));
    assert.throws(() => loadEraser(eraser), isItd('config', eraser, field));
  }
  fs.writeFileSync(eraser, '[]');
  assert.throws(() => loadEraser(eraser), isItd('config', eraser, '(top level)'));

  const acts = tmpDir();
  const manifest = path.join(acts, 'manifest.json');
  const m = { format: 'itd-activations/1', model: { id: 'x', dir: '/' }, layer: 8, d: 4, dtype: 'F32', rows: 1, complete: true, shards: [{ file: 'shard-00000.safetensors', rows: 1, sha256: 'ab' }] };
  for (const [over, field] of [[{ layer: '8' }, 'layer'], [{ d: '4' }, 'd'], [{ shards: [null] }, 'shards[0]'], [{ shards: [{ file: '../../etc/passwd', rows: 1, sha256: 'ab' }] }, 'shards[0].file'], [{ shards: [{ file: '..', rows: 1, sha256: 'ab' }] }, 'shards[0].file'], [{ dtype: 'F64' }, 'dtype'], [{ max_tokens: 0 }, 'max_tokens'], [{ complete: 'yes' }, 'complete']] as const) {
    fs.writeFileSync(manifest, JSON.stringify({ ...m, ...over }));
    assert.throws(() => openActivations(acts), isItd('config', manifest, field));
  }
});

test('invalid UTF-8 in a prompt file is an error naming the line; --utf8-replace reads it as U+FFFD', () => {
  const dir = tmpDir();
  const bad = Buffer.concat([Buffer.from('a cat\nnaïve\n'), Buffer.from([0x6e, 0x75, 0xc3, 0x64, 0x65, 0x0a]), Buffer.from('a dog\n')]);
  for (const ext of ['txt', 'csv', 'json']) {
    const file = path.join(dir, `p.${ext}`);
    const body = ext === 'txt' ? bad : ext === 'csv' ? Buffer.concat([Buffer.from('prompt\n'), bad]) : Buffer.concat([Buffer.from('[\n"x",\n"'), Buffer.from([0xff]), Buffer.from('"\n]')]);
    fs.writeFileSync(file, body);
    const line = ext === 'txt' ? 3 : ext === 'csv' ? 4 : 3;
    assert.throws(() => readPrompts(file), isItd('format', file, `line ${line}`, new RegExp(`line ${line}: invalid UTF-8`)));
    const replaced = readPrompts(file, { replaceInvalidUtf8: true });
    assert.ok(replaced.some((p) => p.includes('\uFFFD')), ext);
  }
  const txt = path.join(dir, 'p.txt');
  assert.deepEqual(readPrompts(txt, { replaceInvalidUtf8: true }), ['a cat', 'naïve', 'nu\uFFFDde', 'a dog']);
  // A BOM and valid multi-byte text are not errors.
  const ok = path.join(dir, 'ok.txt');
  fs.writeFileSync(ok, '\uFEFFnaïve 猫 🐈\n');
  assert.deepEqual(readPrompts(ok), ['naïve 猫 🐈']);
});

test('an ONNX model path that is a FIFO or a directory is refused before onnxruntime opens it', async () => {
  const dir = tmpDir();
  const fifo = path.join(dir, 'unet.onnx');
  execFileSync('mkfifo', [fifo]);
  await assert.rejects(createSession(fifo), isItd('format', fifo, undefined, /FIFO/));
  await assert.rejects(createSession(dir), isItd('format', dir, undefined, /directory/));
});

test('weights that are finite but overflow the gate fail closed (numeric error), never a silent pass', async () => {
  const model = await loadTextModel(tinyModel());
  const prompts = ['a photo of a zebra', 'a zebra in a field', 'a photo of a dog'];
  const sae = await exemplarSae(model, prompts, 8, 4);
  const spec = { ...(await buildEraser(model, sae, { targets: [{ name: 'zebra', prompts: prompts.slice(0, 2) }], retain: prompts.slice(2), kSel: 4, scale: -8, mode: 'official', layer: 8, saeId: 's' })), threshold: 0.5 };
  const huge = new Sae(sae.cfg, { wEnc: sae.wEnc.map((v) => v * 1e30), bEnc: sae.bEnc, wDec: sae.wDec.map((v) => v * 1e30), bPre: sae.bPre });
  const eraser = await ConceptEraser.load({ model, sae: huge, eraser: spec });
  await assert.rejects(eraser.encode(['a photo of a zebra']), (e: ItdError) => e.code === 'numeric' && /score is (NaN|Infinity)/.test(e.message));
  await eraser.release();
});

test('an eraser set with a repeated key, no parts or a part without its SAE names the file and field', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'set.json');
  const cases: [string, string | undefined, RegExp][] = [
    ['{"format": "itd-eraser-set/1", "parts": [], "parts": []}', undefined, /parts/],
    ['{"format": "itd-eraser-set/1", "parts": []}', 'parts', /at least 1|non-empty|item/],
    ['{"format": "itd-eraser-set/1", "parts": [{"eraser": "e.json"}]}', 'parts[0].sae', /string/],
    ['{"format": "itd-eraser/1", "parts": [{"eraser": "e.json", "sae": "s"}]}', 'format', /itd-eraser-set\/1/],
  ];
  for (const [json, field, msg] of cases) {
    fs.writeFileSync(file, json);
    assert.throws(() => readEraserSet(file), (e: unknown) => {
      const x = e as ItdError;
      assert.equal(x.name, 'ItdError', String(e));
      assert.equal(x.file, file, x.message);
      if (field !== undefined) assert.equal(x.field, field, x.message);
      assert.match(x.message, msg);
      return true;
    }, json);
  }
  fs.writeFileSync(file, '{"format": "itd-eraser-set/1", "parts": [{"eraser": "e.json", "sae": "sae2"}]}');
  assert.deepEqual(readEraserSet(file), [{ eraser: path.join(dir, 'e.json'), sae: path.join(dir, 'sae2') }]);
});
