import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { asClipPart, encodePrompts, loadTextModel } from '../src/encoder/index.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { saveSae } from '../src/sae/index.js';
import { exemplarSae, REPO_ROOT, tinyModel, tmpDir } from './helpers.js';

function itd(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'itd.js'), ...args], { encoding: 'utf8', env: { ...process.env, ITD_QUIET: '1' } });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

test('itd tokenize prints one 77-id array per prompt (SD1 framing: BOS ... EOS, EOS padding)', async () => {
  const model = tinyModel();
  const dir = tmpDir();
  const csv = path.join(dir, 'p.csv');
  fs.writeFileSync(csv, 'id,prompt\n1,"a photo, of a cat"\n2,x\n');
  const r = itd('tokenize', '--model', model, '--prompt', 'a photo of a cat', '--prompts', csv);
  assert.equal(r.code, 0, r.err);
  const ids = JSON.parse(r.out) as number[][];
  assert.equal(ids.length, 3);
  const tok = asClipPart(await loadTextModel(model)).tokenizer;
  for (const [i, p] of ['a photo of a cat', 'a photo, of a cat', 'x'].entries()) {
    assert.equal(ids[i]!.length, 77);
    assert.deepEqual(ids[i], Array.from(tok.frame(p).ids));
    assert.equal(ids[i]![0], tok.bosId);
    assert.equal(ids[i]![76], tok.padId);
  }
});

test('itd encode writes input_ids, last_hidden_state, pooler_output and the requested hidden_states', async () => {
  const model = tinyModel();
  const out = path.join(tmpDir(), 'enc.safetensors');
  const r = itd('encode', '--model', model, '--prompt', 'a red car', '--prompt', 'a zebra', '--out', out, '--hidden-states', '0,9,12', '--batch', '1');
  assert.equal(r.code, 0, r.err);
  const f = SafetensorsFile.open(out);
  assert.deepEqual(f.names().sort(), ['hidden_states.0', 'hidden_states.12', 'hidden_states.9', 'input_ids', 'last_hidden_state', 'pooler_output', 'prompt_embeds']);
  assert.deepEqual(f.readF32('prompt_embeds'), f.readF32('last_hidden_state')); // SD1.x/SD2.x: the UNet's input is last_hidden_state
  assert.deepEqual([f.info('input_ids').dtype, ...f.info('input_ids').shape], ['I32', 2, 77]);
  assert.deepEqual([f.info('last_hidden_state').dtype, ...f.info('last_hidden_state').shape], ['F32', 2, 77, 64]);
  assert.deepEqual(f.info('pooler_output').shape, [2, 64]);
  assert.deepEqual(f.info('hidden_states.9').shape, [2, 77, 64]);
  const lib = await encodePrompts(await loadTextModel(model), ['a red car', 'a zebra'], { hiddenStates: [9] });
  assert.deepEqual(f.readF32('last_hidden_state'), lib.lastHiddenState);
  assert.deepEqual(f.readF32('hidden_states.9'), lib.hiddenStates.get(9));
  f.close();
});

test('usage errors exit 2 and name the flag; runtime errors exit 1', () => {
  const bad = itd('encode', '--model', tinyModel(), '--prompt', 'x', '--out', 'x.safetensors', '--bogus');
  assert.equal(bad.code, 2);
  assert.match(bad.err, /Unknown option '--bogus'/);
  const missing = itd('encode', '--model', tinyModel(), '--out', 'x.safetensors');
  assert.equal(missing.code, 2);
  assert.match(missing.err, /--prompt/);
  const noModel = itd('tokenize', '--model', '/nonexistent', '--prompt', 'x');
  assert.equal(noModel.code, 1);
  assert.match(noModel.err, /model directory not found/);
  assert.equal(itd('frobnicate').code, 2);
  // bench erase: evaluation, calibration and retain slices of the neutral file must all fit.
  const d = tmpDir();
  const csv = path.join(d, 'c.csv');
  fs.writeFileSync(csv, 'class,prompt\nzebra,a photo of zebra\n');
  fs.writeFileSync(path.join(d, 'n.txt'), Array.from({ length: 10 }, (_, i) => `caption ${i}`).join('\n'));
  const short = itd('bench', 'erase', '--model', tinyModel(), '--sae', d, '--targets', csv, '--retained', csv, '--neutral', path.join(d, 'n.txt'),
    '--neutral-count', '4', '--retain-neutral', '3', '--build-templates', '0', '--eval-templates', '0', '--out', d);
  assert.equal(short.code, 2);
  assert.match(short.err, /--retain-neutral 3: .*n\.txt has 10 prompts, needs 11/);
  const help = itd('--help');
  assert.equal(help.code, 0);
  assert.match(help.out, /eraser build/);
});

test('eraser build -> show -> classify -> encode --eraser (erased U8 [N], score F32 [N])', async () => {
  const modelDir = tinyModel();
  const dir = tmpDir();
  const model = await loadTextModel(modelDir);
  const targets = ['a photo of a zebra', 'a zebra in a field'];
  const retain = ['a photo of a dog', 'a field of flowers', 'a photo of a car'];
  const saeDir = path.join(dir, 'sae');
  saveSae(saeDir, await exemplarSae(model, [...targets, ...retain, 'a bowl of fruit'], 8, 8));
  fs.writeFileSync(path.join(dir, 'targets.txt'), targets.join('\n'));
  fs.writeFileSync(path.join(dir, 'retain.txt'), retain.join('\n'));
  const eraser = path.join(dir, 'eraser.json');
  const b = itd('eraser', 'build', '--model', modelDir, '--sae', saeDir, '--target', path.join(dir, 'targets.txt'), '--retain', path.join(dir, 'retain.txt'), '--k-sel', '8', '--out', eraser);
  assert.equal(b.code, 0, b.err);
  assert.match(b.out, /calibrated on 2 target \/ 3 other prompts/);
  const show = itd('eraser', 'show', '--eraser', eraser);
  assert.match(show.out, /targets +\d+ features/);
  const c = itd('classify', '--model', modelDir, '--sae', saeDir, '--eraser', eraser, '--prompt', 'a photo of a zebra', '--json');
  const decision = JSON.parse(c.out.trim()) as { erased: boolean; concepts: string[] };
  assert.equal(decision.erased, true); // recall 1 on the build targets
  assert.deepEqual(decision.concepts, ['targets']);
  const out = path.join(dir, 'e.safetensors');
  const e = itd('encode', '--model', modelDir, '--sae', saeDir, '--eraser', eraser, '--prompt', 'a photo of a zebra', '--prompt', 'a bowl of fruit', '--out', out);
  assert.equal(e.code, 0, e.err);
  const f = SafetensorsFile.open(out);
  assert.deepEqual([f.info('erased').dtype, ...f.info('erased').shape], ['U8', 2]);
  assert.deepEqual([f.info('score').dtype, ...f.info('score').shape], ['F32', 2]);
  assert.equal(f.readI32('erased')[0], 1);
  f.close();
});
