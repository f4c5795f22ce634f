import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { asClipPart, encodePrompts, loadTextModel } from '../src/encoder/index.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { loadSae, saeIdentity, saveSae } from '../src/sae/index.js';
import { loadEraser } from '../src/select/eraser-file.js';
import { exemplarSae, ITD_CLI, tinyModel, tmpDir } from './helpers.js';

function itd(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [...ITD_CLI, ...args], { encoding: 'utf8', env: { ...process.env, ITD_QUIET: '1' } });
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
  assert.equal(bad.err, `itd encode: unknown option --bogus; 'itd encode --help' lists the options\n`);
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
  const b = itd('eraser', 'build', '--model', modelDir, '--sae', saeDir, '--target', path.join(dir, 'targets.txt'), '--retain', path.join(dir, 'retain.txt'), '--k-sel', '8', '--scale', '-8', '--out', eraser);
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
  // eraser add grows latents for the new name into eraser-sae/ beside the eraser; the SAE given is left as it was.
  const before = saeIdentity(saeDir);
  const add = itd('eraser', 'add', '--model', modelDir, '--sae', saeDir, '--eraser', eraser, '--concept', 'giraffe');
  assert.equal(add.code, 0, add.err);
  const grownDir = path.join(dir, 'eraser-sae');
  assert.ok(add.out.includes(`latents grown for 'giraffe' into ${grownDir}`), add.out);
  assert.equal(saeIdentity(saeDir), before);
  assert.equal(loadEraser(eraser).saeId, saeIdentity(grownDir));
  assert.ok(loadSae(grownDir).n > 8);
  const c2 = itd('classify', '--model', modelDir, '--sae', grownDir, '--eraser', eraser, '--prompt', 'a photo of a zebra', '--json');
  assert.equal(c2.code, 0, c2.err);
  assert.equal((JSON.parse(c2.out.trim()) as { erased: boolean }).erased, true, 'the old concept still erases with the grown SAE');
});

test('long prompts on the command line (> 25 kB of argv) work: onnxruntime telemetry no longer reads /proc/self/cmdline', async () => {
  const model = tinyModel();
  const out = path.join(tmpDir(), 'long.safetensors');
  const long = 'a photo of a cat '.repeat(4000); // 68 kB in one argument, ~100 kB of argv in all
  const env: NodeJS.ProcessEnv = { ...process.env, ITD_QUIET: '1', ITD_THREADS: '1' };
  delete env['ORT_DISABLE_TELEMETRY']; // this test process set it when it created its own sessions
  const args = ['encode', '--model', model, '--prompt', long, '--prompt', long.slice(0, 30_000), '--prompt', 'a zebra', '--out', out];
  const r = spawnSync(process.execPath, [...ITD_CLI, ...args], { encoding: 'utf8', env });
  assert.equal(r.status, 0, `exit ${r.status} signal ${r.signal}: ${r.stderr.slice(-500)}`);
  const f = SafetensorsFile.open(out);
  const tok = (await loadTextModel(model)).tokenizer;
  assert.deepEqual(Array.from(f.readI32('input_ids').subarray(0, 77)), Array.from(tok.frame(long).ids));
  assert.deepEqual(f.info('last_hidden_state').shape, [3, 77, 64]);
  f.close();
});

test('CLI habits: --version, group help, negative values, one-line unknown flags, stray arguments, --force, SAE/model checks, truncation', async () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string };
  assert.equal(itd('--version').out, `${pkg.version}\n`);
  const sae = itd('sae', '--help');
  assert.equal(sae.code, 0);
  assert.match(sae.out, /Subcommands:\n {2}sae info .*\n {2}sae eval /);
  const eraser = itd('eraser', '--help');
  for (const sub of ['build', 'add', 'remove', 'show', 'calibrate']) assert.match(eraser.out, new RegExp(`^ {2}eraser ${sub} `, 'm'));
  const typo = itd('eraser', 'build', '--scal', '3');
  assert.equal(typo.code, 2);
  assert.equal(typo.err, `itd eraser build: unknown option --scal (did you mean --scale?); 'itd eraser build --help' lists the options\n`);
  const stray = itd('tokenize', 'extra', '--model', tinyModel(), '--prompt', 'x');
  assert.equal(stray.code, 2);
  assert.match(stray.err, /unexpected argument 'extra'/);

  const dir = tmpDir();
  const out = path.join(dir, 'm');
  assert.equal(itd('synth-model', '--out', out).code, 0);
  const again = itd('synth-model', '--out', out, '--seed', '3');
  assert.equal(again.code, 2);
  assert.match(again.err, /not empty.*--force/s);
  assert.equal(itd('synth-model', '--out', out, '--seed', '3', '--force').code, 0);

  // An SAE recorded as trained on another model is refused; on this one, --layer -1 is the last block.
  const modelDir = tinyModel();
  const model = await loadTextModel(modelDir);
  const saeDir = path.join(dir, 'sae');
  saveSae(saeDir, await exemplarSae(model, ['a photo of a zebra', 'a red car'], 11, 4));
  const cfgFile = path.join(saeDir, 'cfg.json');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, model_id: (await loadTextModel(out)).id }));
  const foreign = itd('features', '--model', modelDir, '--sae', saeDir, '--prompt', 'a zebra');
  assert.equal(foreign.code, 1);
  assert.match(foreign.err, /trained on activations of model [0-9a-f]{16}, but .* is model /);
  fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, model_id: model.id }));
  const long = Array.from({ length: 90 }, () => 'zebra').join(' ');
  const f = itd('features', '--model', modelDir, '--sae', saeDir, '--layer', '-1', '--prompt', 'a photo of a zebra', '--prompt', long, '--json', '--top', '1');
  assert.equal(f.code, 0, f.err);
  assert.match(f.err, /warning: prompt 1 truncated to 77 tokens \(\d+ tokens dropped\)/);
  const rows = JSON.parse(f.out) as { tokens: { token: string }[] }[];
  assert.equal(rows[0]!.tokens.length, model.tokenizer.frame('a photo of a zebra').length - 1);
  assert.equal(itd('features', '--model', modelDir, '--sae', saeDir, '--layer', '-13', '--prompt', 'x').code, 2);
});

test('the .bin conversion hint names the file the loader then reads', async () => {
  const src = tinyModel();
  const dir = path.join(tmpDir(), 'm');
  fs.cpSync(src, dir, { recursive: true });
  const weights = path.join(dir, 'text_encoder', 'model.safetensors');
  const saved = fs.readFileSync(weights);
  fs.rmSync(weights);
  fs.writeFileSync(path.join(dir, 'text_encoder', 'pytorch_model.bin'), 'pickle');
  const err = await loadTextModel(dir).then(() => undefined, (e: Error) => e);
  const target = /save_file\(.*, '([^']+)'\)"/.exec(err?.message ?? '')?.[1];
  assert.equal(target, weights, err?.message);
  fs.writeFileSync(target!, saved); // what the one-liner writes: the same tensors, as safetensors
  fs.rmSync(path.join(dir, 'text_encoder', 'pytorch_model.bin'));
  assert.equal((await loadTextModel(dir)).id, (await loadTextModel(src)).id);
});
