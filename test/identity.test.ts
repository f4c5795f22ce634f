/**
 * Identity that holds: a model's id changes with any byte of any tensor, config or tokenizer file
 * (and an eraser built for the old model is refused for the new one); an SAE's id with any byte of
 * its weights. Ids are stable across loads and directory moves, and served from the stat-keyed cache.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadTextModel } from '../src/encoder/index.js';
import { ConceptEraser } from '../src/erase/index.js';
import type { ItdError } from '../src/errors.js';
import { cachedSha256File, itdCacheDir, sha256File } from '../src/io/hash.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { Sae, saeIdentity, saveSae } from '../src/sae/index.js';
import { buildEraser } from '../src/select/select.js';
import { exemplarSae, tinyModel, tmpDir } from './helpers.js';

process.env['ITD_CACHE_DIR'] = tmpDir('itd-cache-');

function copyModel(): string {
  const dir = path.join(tmpDir(), 'model');
  fs.cpSync(tinyModel(), dir, { recursive: true });
  return dir;
}

/** XORs one byte at `offset` of `file` (offset < 0: from the end). */
function flipByte(file: string, offset: number): void {
  const size = fs.statSync(file).size;
  const at = offset < 0 ? size + offset : offset;
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, at);
  b[0]! ^= 0x01;
  fs.writeSync(fd, b, 0, 1, at);
  fs.closeSync(fd);
}

test('model id: stable across loads and moves; any tensor byte, config or tokenizer file changes it', async () => {
  const dir = copyModel();
  const base = (await loadTextModel(dir)).id;
  assert.match(base, /^[0-9a-f]{16}$/);
  assert.equal((await loadTextModel(dir)).id, base);
  const moved = path.join(tmpDir(), 'elsewhere');
  fs.cpSync(dir, moved, { recursive: true });
  assert.equal((await loadTextModel(moved)).id, base, 'the id depends on content, not on where the model lives');

  const seen = new Set([base]);
  const changed = async (what: string, edit: (d: string) => void) => {
    const d = copyModel();
    edit(d);
    const id = (await loadTextModel(d)).id;
    assert.ok(!seen.has(id), `${what} must change the model id`);
    seen.add(id);
  };
  const weights = (d: string) => path.join(d, 'text_encoder', 'model.safetensors');
  // Deep in a tensor: far past the first 4 KiB of every tensor (the old identity's blind spot).
  await changed('a byte deep in a tensor', (d) => {
    const st = SafetensorsFile.open(weights(d));
    const info = st.info('text_model.encoder.layers.5.mlp.fc1.weight');
    st.close();
    assert.ok(info.end - info.begin > 8192);
    flipByte(weights(d), info.begin + 6000);
  });
  await changed('the last byte of the weights', (d) => flipByte(weights(d), -1));
  await changed('a merges.txt edit', (d) => {
    const f = path.join(d, 'tokenizer', 'merges.txt');
    fs.writeFileSync(f, fs.readFileSync(f, 'utf8').trimEnd().split('\n').slice(0, -1).join('\n') + '\n');
  });
  await changed('a vocab.json edit', (d) => {
    const f = path.join(d, 'tokenizer', 'vocab.json');
    fs.writeFileSync(f, `${fs.readFileSync(f, 'utf8')} `);
  });
  await changed('a tokenizer_config.json edit', (d) => {
    const f = path.join(d, 'tokenizer', 'tokenizer_config.json');
    const c = JSON.parse(fs.readFileSync(f, 'utf8'));
    fs.writeFileSync(f, JSON.stringify({ ...c, model_max_length: 76 }));
  });
  await changed('a config.json edit', (d) => {
    const f = path.join(d, 'text_encoder', 'config.json');
    const c = JSON.parse(fs.readFileSync(f, 'utf8'));
    fs.writeFileSync(f, JSON.stringify({ ...c, layer_norm_eps: 1e-6 }));
  });
});

test('an eraser built for a model is refused (mismatch) once one weight byte changes', async () => {
  const dir = copyModel();
  const model = await loadTextModel(dir);
  const sae = await exemplarSae(model, ['a photo of a zebra', 'a zebra in a field', 'a photo of a dog'], 8, 4);
  const spec = { ...(await buildEraser(model, sae, { targets: [{ name: 'zebra', prompts: ['a photo of a zebra'] }], retain: ['a photo of a dog'], kSel: 4, scale: -8, mode: 'official', layer: 8, saeId: 's' })), threshold: 0 };
  await ConceptEraser.load({ model, sae, eraser: spec }); // accepted for its own model
  const weights = path.join(dir, 'text_encoder', 'model.safetensors');
  const st = SafetensorsFile.open(weights);
  const info = st.info('text_model.encoder.layers.11.self_attn.v_proj.weight');
  st.close();
  flipByte(weights, info.end - 2); // a low mantissa byte: the weights still load, only the id can tell
  const changed = await loadTextModel(dir);
  assert.notEqual(changed.id, model.id);
  await assert.rejects(ConceptEraser.load({ model: changed, sae, eraser: spec }), (e: ItdError) => e.code === 'mismatch' && /built for model/.test(e.message));
});

test('SAE id covers every byte of the weights; file digests are cached by stat and re-hashed on change', async () => {
  const dir = tmpDir();
  saveSae(dir, Sae.random({ d: 16, n: 64, k: 4, seed: 3 }));
  const file = path.join(dir, 'sae.safetensors');
  const before = saeIdentity(dir);
  assert.equal(before, sha256File(file).slice(0, 16));
  flipByte(file, -3);
  assert.notEqual(saeIdentity(dir), before);

  // A file older than the racy window is cached; a cached digest is served without reading the file.
  const old = path.join(tmpDir(), 'old.bin');
  fs.writeFileSync(old, Buffer.alloc(100_000, 7));
  const past = new Date(Date.now() - 60_000);
  fs.utimesSync(old, past, past);
  const digest = sha256File(old);
  // ctime is "now" after utimes, so the file is still racy: hashed, not cached.
  assert.equal(cachedSha256File(old), digest);
  const entries = () => (fs.existsSync(path.join(itdCacheDir(), 'sha256')) ? fs.readdirSync(path.join(itdCacheDir(), 'sha256')) : []);
  const n0 = entries().length;
  assert.equal(cachedSha256File(old), digest);
  assert.equal(entries().length, n0, 'a file changed within the racy window is never cached');

  await new Promise((r) => setTimeout(r, 2100)); // out of the racy window
  assert.equal(cachedSha256File(old), digest);
  assert.equal(entries().length, n0 + 1, 'the digest of a settled file is cached');
  // The cached entry is what later calls return (proved by planting a marker digest under the same key).
  const entry = path.join(itdCacheDir(), 'sha256', entries().find((e) => JSON.parse(fs.readFileSync(path.join(itdCacheDir(), 'sha256', e), 'utf8')).sha256 === digest)!);
  const marker = 'f'.repeat(64);
  fs.writeFileSync(entry, JSON.stringify({ ...JSON.parse(fs.readFileSync(entry, 'utf8')), sha256: marker }));
  assert.equal(cachedSha256File(old), marker);
  // Any write changes the stat key: the file is hashed again, whatever the cache holds.
  flipByte(old, 50_000);
  assert.equal(cachedSha256File(old), sha256File(old));
  assert.notEqual(sha256File(old), digest);

  // The cache stays bounded: past 1024 entries the least recently used half is dropped.
  const cacheDir = path.join(itdCacheDir(), 'sha256');
  const past2 = new Date(Date.now() - 3_600_000);
  for (let i = 0; i < 1100; i++) {
    const f = path.join(cacheDir, `dummy-${i}.json`);
    fs.writeFileSync(f, '{}');
    fs.utimesSync(f, past2, past2);
  }
  cachedSha256File(old); // racy again after the flip: no write yet
  await new Promise((r) => setTimeout(r, 2100));
  assert.equal(cachedSha256File(old), sha256File(old));
  const left = entries();
  assert.ok(left.length <= 513, `${left.length} entries`);
  assert.ok(left.some((e) => !e.startsWith('dummy-')), 'the entry just written is kept');
});
