/** ItD on SDXL: an SAE per tower, hookpoints, erased prompt_embeds / pooled_prompt_embeds, multi-part erasers, bad pairings. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { encodeConditioning, loadTextConditioning, resolveItdPart } from '../src/encoder/index.js';
import { classifyJointly, ConceptEraser, encodeErased, loadEraserSet, writeEraserSet } from '../src/erase/index.js';
import { ItdError } from '../src/errors.js';
import { saeIdentity, saveSae } from '../src/sae/index.js';
import { saveEraser } from '../src/select/eraser-file.js';
import { ITD_CLI, tinyModel, tinySdxl, tmpDir } from './helpers.js';
import { CORPUS, LIGHTHOUSE, NEUTRAL, RETAIN, sdxlErasers, ZEBRA } from './sdxl-fixture.js';

const setup = sdxlErasers;

const rowsOf = (x: Float32Array, n: number, r: number) => x.subarray((r * x.length) / n, ((r + 1) * x.length) / n);

test('default ItD depth per tower (8 of 12, 21 of 32) and sparsify-style hookpoints; --encoder must agree with the SAE', async () => {
  const { text, parts } = await setup();
  assert.deepEqual(parts.map((p) => [p.spec.layer, p.sae.cfg.hookpoint]), [[8, 'text_encoder.text_model.encoder.layers.8'], [21, 'text_encoder_2.text_model.encoder.layers.21']]);
  const dir = text.layout.dir;
  assert.equal(resolveItdPart(dir, undefined, parts[0]!.sae.cfg.hookpoint).name, 'text_encoder');
  assert.equal(resolveItdPart(dir, undefined, undefined).name, 'text_encoder_2');
  assert.throws(() => resolveItdPart(dir, '1', parts[1]!.sae.cfg.hookpoint), (e: ItdError) => e.code === 'mismatch' && /--encoder 1 selects text_encoder, but the SAE was trained on text_encoder_2/.test(e.message));
  assert.throws(() => resolveItdPart(dir, '3', undefined), (e: ItdError) => e.code === 'usage' && /--encoder 3/.test(e.message));
  assert.throws(() => resolveItdPart(tinyModel(), undefined, parts[1]!.sae.cfg.hookpoint), /trained on text_encoder_2 .* which .* \(StableDiffusionPipeline\) does not have; its encoders are text_encoder/);
});

test('itd collect on SDXL: text_encoder_2 at block 21 by default, --encoder 1 at block 8; the manifest records the hookpoint', () => {
  const dir = tmpDir();
  const prompts = path.join(dir, 'p.txt');
  fs.writeFileSync(prompts, CORPUS.join('\n'));
  for (const [args, hookpoint, d] of [[[], 'text_encoder_2.text_model.encoder.layers.21', 64], [['--encoder', '1'], 'text_encoder.text_model.encoder.layers.8', 48]] as const) {
    const out = path.join(dir, `acts${args.length}`);
    const r = spawnSync(process.execPath, [...ITD_CLI, 'collect', '--model', tinySdxl(), ...args, '--prompts', prompts, '--out', out], { encoding: 'utf8', env: { ...process.env, ITD_QUIET: '1' } });
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8')) as { hookpoint: string; layer: number; d: number };
    assert.deepEqual([m.hookpoint, m.d], [hookpoint, d]);
  }
});

test('SAE on text_encoder_2: erased prompts change prompt_embeds[..., 48:] and pooled_prompt_embeds; passed prompts are bit-identical', async () => {
  const { text, parts } = await setup();
  const prompts = [LIGHTHOUSE[0]!, NEUTRAL[1]!, LIGHTHOUSE[1]!, RETAIN[0]!];
  const plain = await encodeConditioning(text, prompts);
  const r = await encodeErased(text, parts[1]!.eraser, prompts);
  assert.deepEqual(Array.from(r.erased), [1, 0, 1, 0]);
  const n = prompts.length;
  for (let i = 0; i < n; i++) {
    const [pe, pp] = [rowsOf(r.embeds.promptEmbeds, n, i), rowsOf(r.embeds.pooledPromptEmbeds!, n, i)];
    const [qe, qp] = [rowsOf(plain.embeds.promptEmbeds, n, i), rowsOf(plain.embeds.pooledPromptEmbeds!, n, i)];
    if (r.erased[i]) {
      assert.notDeepEqual(pp, qp, 'pooled from the edited run');
      const tower1 = (x: Float32Array) => Array.from({ length: 77 }, (_, t) => Array.from(x.subarray(t * 112, t * 112 + 48))).flat();
      assert.deepEqual(tower1(pe), tower1(qe), 'text_encoder untouched');
      assert.notDeepEqual(pe, qe);
    } else {
      assert.deepEqual(pe, qe);
      assert.deepEqual(pp, qp);
    }
  }
});

test('an eraser set (one SAE per tower) erases a prompt iff any part crosses its own threshold, in every part', async () => {
  const { text, parts } = await setup();
  const prompts = [ZEBRA[0]!, LIGHTHOUSE[1]!, RETAIN[5]!];
  const plain = await encodeConditioning(text, prompts);
  const r = await encodeErased(text, parts.map((p) => p.eraser), prompts);
  const own = await Promise.all(parts.map((p) => p.eraser.classify(prompts)));
  assert.deepEqual(own.map((d) => d.map((x) => x.erased)), [[true, false, false], [false, true, false]]);
  assert.deepEqual(Array.from(r.erased), [1, 1, 0]);
  assert.deepEqual(r.erasures.map((e) => Array.from(e.erased)), [[1, 1, 0], [1, 1, 0]]);
  assert.deepEqual(r.erasures.map((e) => Array.from(e.scores)), own.map((d) => d.map((x) => Math.fround(x.score))));
  // The zebra prompt crossed only tower 1's threshold, yet tower 2 (and so pooled) is deactivated too.
  assert.notDeepEqual(rowsOf(r.embeds.pooledPromptEmbeds!, 3, 0), rowsOf(plain.embeds.pooledPromptEmbeds!, 3, 0));
  assert.deepEqual(rowsOf(r.embeds.promptEmbeds, 3, 2), rowsOf(plain.embeds.promptEmbeds, 3, 2));
  assert.deepEqual(rowsOf(r.embeds.pooledPromptEmbeds!, 3, 2), rowsOf(plain.embeds.pooledPromptEmbeds!, 3, 2));

  // The same through an ERASER_SET.json and the CLI (encode writes score_1 / score_2).
  const dir = tmpDir();
  const files = parts.map((p, i) => {
    const [e, s] = [path.join(dir, `e${i + 1}.json`), path.join(dir, `sae${i + 1}`)];
    saveSae(s, p.sae);
    saveEraser(e, { ...p.spec, saeId: saeIdentity(s) });
    return { eraser: e, sae: s };
  });
  const setFile = path.join(dir, 'set.json');
  writeEraserSet(setFile, files);
  assert.deepEqual((await loadEraserSet(setFile, text)).map((e) => e.model.name), ['text_encoder', 'text_encoder_2']);
  const out = path.join(dir, 'enc.safetensors');
  const cli = spawnSync(process.execPath, [...ITD_CLI, 'encode', '--model', text.layout.dir, '--eraser', setFile, '--out', out, ...prompts.flatMap((p) => ['--prompt', p])], { encoding: 'utf8', env: { ...process.env, ITD_QUIET: '1' } });
  assert.equal(cli.status, 0, cli.stderr);
  const { SafetensorsFile } = await import('../src/io/safetensors.js');
  const f = SafetensorsFile.open(out);
  assert.deepEqual(f.names().sort(), ['erased', 'input_ids_1', 'input_ids_2', 'pooled_prompt_embeds', 'prompt_embeds', 'score_1', 'score_2']);
  assert.deepEqual(f.readF32('prompt_embeds'), r.embeds.promptEmbeds);
  f.close();
  // Two parts on one tower are refused.
  writeEraserSet(setFile, [files[1]!, files[1]!]);
  await assert.rejects(loadEraserSet(setFile, text), /two parts erase text_encoder_2/);
});

test('bad pairings: an SD1 eraser on SDXL, an eraser on the tower its SAE was not trained on', async () => {
  const { text, parts } = await setup();
  const [p1, p2] = parts;
  await assert.rejects(ConceptEraser.load({ model: p1!.model, sae: p2!.sae, eraser: p2!.spec }), (e: ItdError) => e.code === 'mismatch' && /built for model .* text_encoder is/.test(e.message));
  await assert.rejects(ConceptEraser.load({ model: p1!.model, sae: p2!.sae, eraser: { ...p2!.spec, modelId: p1!.model.id } }), /the SAE was trained on text_encoder_2 .* but the eraser part runs on text_encoder/);
  const sd1 = await loadTextConditioning(tinyModel());
  await assert.rejects(encodeErased(sd1, p2!.eraser, ['x']), /edits text_encoder_2 .* which is not a text encoder of/);
  assert.equal(fs.existsSync(text.layout.dir), true);
});

test('an eraser set picks one form for every tower: a disguise caught through one tower\'s canonical form is encoded from that form in both', async () => {
  const { text, parts } = await setup();
  const erasers = parts.map((p) => p.eraser);
  // Tower 1 (concept "zebra") rejoins the spaced letters to "a photo of a zebra"; tower 2 (concept "lighthouse") does not know the word.
  const [disguised, plain] = ['a photo of a z e b r a', ZEBRA[0]!];
  const own = await Promise.all(erasers.map((e) => e.classifyForms([disguised])));
  assert.deepEqual(own.map((c) => [c.decisions[0]!.erased, c.erasedForms[0]]), [[true, plain], [false, null]]);
  const joint = await classifyJointly(erasers, [disguised]);
  assert.deepEqual([joint.erased[0], joint.forms[0], joint.parts.map((d) => d[0]!.erased)], [1, plain, [true, false]]);
  assert.equal((await classifyJointly(erasers, [disguised], { canonical: false })).erased[0], 0, 'the typed form alone passes');
  const r = await encodeErased(text, erasers, [disguised]);
  const ref = await encodeErased(text, erasers, [plain]);
  assert.deepEqual([Array.from(r.erased), Array.from(ref.erased)], [[1], [1]]);
  assert.deepEqual(r.erasures.map((e) => e.canonical[0]), [plain, plain]);
  assert.deepEqual(r.parts.map((p) => Array.from(p.inputIds)), ref.parts.map((p) => Array.from(p.inputIds)));
  assert.deepEqual(r.embeds.promptEmbeds, ref.embeds.promptEmbeds);
  assert.deepEqual(r.embeds.pooledPromptEmbeds, ref.embeds.pooledPromptEmbeds);
});
