import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { collectActivations, type ActivationManifest } from '../src/collect/collect.js';
import { openActivations } from '../src/collect/dataset.js';
import { loadTextModel } from '../src/encoder/index.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { maxAbsDiff, REPO_ROOT, tinyModel, tmpDir } from './helpers.js';

const PROMPTS = ['a photo of a cat', 'an oil painting of a lighthouse at dusk', 'x', 'two dogs playing in the snow, 35mm photo'];

function allRows(dir: string): { acts: Float32Array; prompt: number[]; pos: number[] } {
  const m = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as ActivationManifest;
  const parts = m.shards.map((s) => {
    const f = SafetensorsFile.open(path.join(dir, s.file));
    const r = { acts: f.readF32('activations'), prompt: [...f.readI32('prompt_index')], pos: [...f.readI32('position')] };
    f.close();
    return r;
  });
  const acts = new Float32Array(parts.reduce((a, p) => a + p.acts.length, 0));
  parts.reduce((o, p) => (acts.set(p.acts, o), o + p.acts.length), 0);
  return { acts, prompt: parts.flatMap((p) => p.prompt), pos: parts.flatMap((p) => p.pos) };
}

test('collect writes the layer output of every kept token (default: no BOS, no padding, EOS kept)', async () => {
  const model = await loadTextModel(tinyModel());
  const out = path.join(tmpDir(), 'acts');
  const m = await collectActivations(model, { out, layer: 8, prompts: PROMPTS, batch: 3 });
  const lengths = PROMPTS.map((p) => model.tokenizer.frame(p).length);
  assert.equal(m.rows, lengths.reduce((a, l) => a + l - 1, 0));
  assert.equal(m.complete, true);
  assert.equal(m.hookpoint, 'text_encoder.text_model.encoder.layers.8');
  assert.equal(m.model.id, model.id);
  const rows = allRows(out);
  assert.deepEqual(rows.pos.slice(0, lengths[0]! - 1), Array.from({ length: lengths[0]! - 1 }, (_, i) => i + 1));
  // Equal to hidden_states[9] of a full 77-token encode at the same positions.
  const tok = model.tokenizer.batch(PROMPTS);
  const full = await model.encoder.encode({ ids: tok.ids, n: PROMPTS.length, t: 77 }, { hiddenStates: [9] });
  const D = model.config.hiddenSize;
  const h9 = full.hiddenStates.get(9)!;
  rows.prompt.forEach((p, i) => {
    const want = h9.subarray((p * 77 + rows.pos[i]!) * D, (p * 77 + rows.pos[i]! + 1) * D);
    assert.ok(maxAbsDiff(rows.acts.subarray(i * D, (i + 1) * D), want) <= 1e-5);
  });
  // The training reader sees the same rows.
  const set = openActivations(out);
  assert.equal(set.rows, m.rows);
  assert.deepEqual(set.readRange(0, m.rows), rows.acts);
  set.close();
});

test('token masks, f16 storage and --max-tokens', async () => {
  const model = await loadTextModel(tinyModel());
  const lengths = PROMPTS.map((p) => model.tokenizer.frame(p).length);
  const noEos = await collectActivations(model, { out: path.join(tmpDir(), 'a'), layer: 3, prompts: PROMPTS, exclude: ['bos', 'eos', 'pad'] });
  assert.equal(noEos.rows, lengths.reduce((a, l) => a + l - 2, 0));
  const f16Dir = path.join(tmpDir(), 'b');
  const all = await collectActivations(model, { out: f16Dir, layer: 3, prompts: PROMPTS, exclude: [], dtype: 'F16' });
  assert.equal(all.rows, 77 * PROMPTS.length);
  const shard = SafetensorsFile.open(path.join(f16Dir, all.shards[0]!.file));
  assert.equal(shard.info('activations').dtype, 'F16');
  shard.close();
  const limited = await collectActivations(model, { out: path.join(tmpDir(), 'c'), layer: 3, prompts: PROMPTS, maxTokens: 7 });
  assert.equal(limited.rows, 7);
});

test('refuses empty prompt lists, bad layers, and a different existing collection', async () => {
  const model = await loadTextModel(tinyModel());
  const out = path.join(tmpDir(), 'acts');
  await assert.rejects(collectActivations(model, { out, layer: 8, prompts: [] }), /no prompts/);
  await assert.rejects(collectActivations(model, { out, layer: 12, prompts: PROMPTS }), /--layer 12 is outside 0\.\.11/);
  await collectActivations(model, { out, layer: 8, prompts: PROMPTS });
  await assert.rejects(collectActivations(model, { out, layer: 7, prompts: PROMPTS }), /another model, layer/);
  await assert.rejects(collectActivations(model, { out, layer: 8, prompts: PROMPTS }), /already complete/);
  const again = await collectActivations(model, { out, layer: 7, prompts: PROMPTS, force: true });
  assert.equal(again.layer, 7);
});

test('kill -9 mid-run, then resume: same shards as an uninterrupted run', async () => {
  const dir = tmpDir();
  const prompts = Array.from({ length: 400 }, (_, i) => `prompt number ${i} about a ${['cat', 'dog', 'tree', 'car'][i % 4]} in the ${['rain', 'sun'][i % 2]}`);
  const file = path.join(dir, 'prompts.txt');
  fs.writeFileSync(file, prompts.join('\n'));
  const model = tinyModel();
  const args = (out: string) => [path.join(REPO_ROOT, 'bin', 'itd.js'), 'collect', '--model', model, '--layer', '5', '--prompts', file, '--out', out, '--batch', '8', '--shard-rows', '200'];
  const run = (out: string, killWhen?: (m: ActivationManifest) => boolean) => new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, args(out), { stdio: 'ignore', env: { ...process.env, ITD_QUIET: '1' } });
    const poll = killWhen && setInterval(() => {
      try {
        const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8')) as ActivationManifest;
        if (killWhen(m)) child.kill('SIGKILL');
      } catch { /* not written yet */ }
    }, 20);
    child.on('exit', (code) => {
      if (poll) clearInterval(poll);
      resolve(code);
    });
  });
  const ref = path.join(dir, 'ref');
  assert.equal(await run(ref), 0);
  const cut = path.join(dir, 'cut');
  await run(cut, (m) => m.shards.length >= 2);
  const partial = JSON.parse(fs.readFileSync(path.join(cut, 'manifest.json'), 'utf8')) as ActivationManifest;
  assert.equal(partial.complete, false, 'the run was killed before finishing');
  assert.equal(await run(cut), 0);
  const a = allRows(ref);
  const b = allRows(cut);
  assert.deepEqual(b.prompt, a.prompt);
  assert.deepEqual(b.pos, a.pos);
  assert.deepEqual(b.acts, a.acts);
});
