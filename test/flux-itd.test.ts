/** ItD on T5 (FLUX.1's text_encoder_2): hookpoints, framed length, erased prompt_embeds, a T5 + CLIP eraser set, the CLI. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { calibrateEraser } from '../src/classify/calibrate-eraser.js';
import { encodeConditioning, loadTextConditioning, loadTextModel, resolveItdPart, type TextConditioning, type TextModel } from '../src/encoder/index.js';
import { ConceptEraser, encodeErased } from '../src/erase/index.js';
import { ItdError } from '../src/errors.js';
import type { Sae } from '../src/sae/index.js';
import { saveEraser, type EraserSpec } from '../src/select/eraser-file.js';
import { buildEraser } from '../src/select/select.js';
import { createServer } from '../src/serve/index.js';
import { exemplarSae, ITD_CLI, tinyModel, tmpDir } from './helpers.js';

const ZEBRA = ['a photo of a zebra', 'a zebra in a field', 'a painting of a zebra at dusk'];
const LIGHTHOUSE = ['a lighthouse on a cliff', 'an old lighthouse at night', 'a photo of a lighthouse'];
const RETAIN = ['a photo of a dog', 'a field of flowers', 'a painting of a city at dusk', 'a cliff by the sea', 'a house at night', 'a photo of a car'];
const NEUTRAL = ['a bowl of fruit on a table', 'a man riding a bicycle', 'a red car parked on the street'];
const CORPUS = [...ZEBRA, ...LIGHTHOUSE, ...RETAIN, ...NEUTRAL];
const MAX = 48; // max_sequence_length: short, so the tests stay fast; still far beyond every prompt

interface Part { model: TextModel; sae: Sae; spec: EraserSpec; eraser: ConceptEraser }
let cached: { text: TextConditioning; t5: Part; clip: Part } | undefined;

async function part(model: TextModel, name: string, target: string[]): Promise<Part> {
  const layer = model.defaultLayer;
  const sae = await exemplarSae(model, CORPUS, layer, 8);
  sae.cfg.hookpoint = model.hookpoint(layer);
  let spec = await buildEraser(model, sae, { targets: [{ name, prompts: target }], retain: RETAIN, kSel: 8, scale: -8, mode: 'official', layer, saeId: model.name });
  const eraser = await ConceptEraser.load({ model, sae, eraser: spec });
  ({ spec } = await calibrateEraser(eraser, { recall: 1 }));
  await eraser.update(spec);
  return { model, sae, spec, eraser };
}

/** flux-tiny framed at MAX: an exemplar SAE + recall-1 eraser on T5 (zebras) and on CLIP (lighthouses). */
async function setup() {
  if (cached) return cached;
  const text = await loadTextConditioning(tinyModel({ preset: 'flux-tiny' }), { maxSequenceLength: MAX });
  const [clipModel, t5Model] = [text.parts[0]!, text.parts[1]!];
  return (cached = { text, t5: await part(t5Model, 'zebra', ZEBRA), clip: await part(clipModel, 'lighthouse', LIGHTHOUSE) });
}

const rowsOf = (x: Float32Array, n: number, r: number) => x.subarray((r * x.length) / n, ((r + 1) * x.length) / n);

test('T5 part: ItD depth 5 of 8 blocks, hookpoint text_encoder_2.encoder.block.5, the default ItD part of FLUX.1', async () => {
  const { text, t5 } = await setup();
  assert.equal(t5.spec.layer, 5);
  assert.equal(t5.sae.cfg.hookpoint, 'text_encoder_2.encoder.block.5');
  assert.equal(resolveItdPart(text.layout.dir, undefined, undefined).name, 'text_encoder_2');
  assert.equal(resolveItdPart(text.layout.dir, undefined, t5.sae.cfg.hookpoint).name, 'text_encoder_2');
});

test('T5 eraser: classify decides as encode does; passed prompts bit-identical to plain encode; erased ones edited on padding too', async () => {
  const { text, t5 } = await setup();
  const prompts = [...ZEBRA, ...NEUTRAL];
  const decisions = await t5.eraser.classify(prompts);
  const r = await encodeErased(text, t5.eraser, prompts);
  const plain = await encodeConditioning(text, prompts);
  assert.deepEqual(Array.from(r.erased), decisions.map((d) => (d.erased ? 1 : 0)));
  assert.deepEqual(Array.from(r.erasures[0]!.scores), decisions.map((d) => Math.fround(d.score)));
  assert.deepEqual(Array.from(r.erased), [1, 1, 1, 0, 0, 0]);
  const D = r.embeds.width;
  assert.equal(r.embeds.seq, MAX);
  for (let i = 0; i < prompts.length; i++) {
    const a = rowsOf(r.embeds.promptEmbeds, prompts.length, i);
    const b = rowsOf(plain.embeds.promptEmbeds, prompts.length, i);
    // pooled_prompt_embeds come from CLIP, which this eraser does not edit.
    assert.deepEqual(rowsOf(r.embeds.pooledPromptEmbeds!, prompts.length, i), rowsOf(plain.embeds.pooledPromptEmbeds!, prompts.length, i));
    if (r.erased[i] === 0) {
      assert.deepEqual(a, b, `passed prompt ${i} must be bit-identical`);
      continue;
    }
    const len = t5.model.tokenizer.frame(prompts[i]!).length;
    const lastPad = (MAX - 1) * D;
    assert.notDeepEqual(a.subarray(0, len * D), b.subarray(0, len * D));
    assert.notDeepEqual(a.subarray(lastPad), b.subarray(lastPad), 'the padding rows change too');
  }
});

test('T5 + CLIP eraser set: erased iff either part erases, then edited in both; passed prompts bit-identical', async () => {
  const { text, t5, clip } = await setup();
  const prompts = [ZEBRA[0]!, LIGHTHOUSE[0]!, NEUTRAL[0]!];
  const r = await encodeErased(text, [t5.eraser, clip.eraser], prompts);
  const plain = await encodeConditioning(text, prompts);
  assert.deepEqual(Array.from(r.erased), [1, 1, 0]);
  for (const i of [0, 1]) {
    assert.notDeepEqual(rowsOf(r.embeds.promptEmbeds, 3, i), rowsOf(plain.embeds.promptEmbeds, 3, i));
    assert.notDeepEqual(rowsOf(r.embeds.pooledPromptEmbeds!, 3, i), rowsOf(plain.embeds.pooledPromptEmbeds!, 3, i));
  }
  assert.deepEqual(rowsOf(r.embeds.promptEmbeds, 3, 2), rowsOf(plain.embeds.promptEmbeds, 3, 2));
  assert.deepEqual(rowsOf(r.embeds.pooledPromptEmbeds!, 3, 2), rowsOf(plain.embeds.pooledPromptEmbeds!, 3, 2));
});

test('the framed length is part of a T5 part identity: an eraser made at one max_sequence_length refuses another', async () => {
  const { text, t5 } = await setup();
  const other = await loadTextModel(text.layout.dir, { encoder: '2', maxSequenceLength: MAX * 2 });
  assert.notEqual(other.id, t5.model.id);
  await assert.rejects(ConceptEraser.load({ model: other, sae: t5.sae, eraser: t5.spec }), (e: ItdError) => e.code === 'mismatch' && /max_sequence_length/.test(e.message));
  await other.encoder.release();
});

test('itd collect / classify on the T5 part: every real token from position 0 to </s>, framed at --max-sequence-length', async () => {
  const { t5 } = await setup();
  const dir = tmpDir();
  const prompts = path.join(dir, 'p.txt');
  fs.writeFileSync(prompts, `${CORPUS.join('\n')}\n`);
  const model = t5.model.dir;
  const run = (...args: string[]) => spawnSync(process.execPath, [...ITD_CLI, ...args], { encoding: 'utf8', env: { ...process.env, ITD_THREADS: '1' } });
  const c = run('collect', '--model', model, '--encoder', '2', '--max-sequence-length', String(MAX), '--prompts', prompts, '--out', path.join(dir, 'acts'));
  assert.equal(c.status, 0, c.stderr);
  const m = JSON.parse(fs.readFileSync(path.join(dir, 'acts', 'manifest.json'), 'utf8')) as { layer: number; hookpoint: string; rows: number; model: { id: string } };
  assert.equal(m.layer, 5);
  assert.equal(m.hookpoint, 'text_encoder_2.encoder.block.5');
  assert.equal(m.model.id, t5.model.id);
  assert.equal(m.rows, CORPUS.reduce((a, p) => a + t5.model.tokenizer.frame(p).length, 0));
});

test('serve on the T5 part: /v1/encode rows of max_sequence_length, /v1/classify token positions from 0 with </s> last', async () => {
  const { t5 } = await setup();
  const eraserPath = path.join(tmpDir(), 'eraser.json');
  saveEraser(eraserPath, t5.spec);
  const s = await createServer({ model: t5.model, sae: t5.sae, eraserPath, web: false });
  await s.ready;
  try {
    const post = async (url: string, body: unknown) => JSON.parse((await s.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) })).body);
    const enc = await post('/v1/encode', { prompts: [ZEBRA[0], NEUTRAL[0]] });
    assert.deepEqual(enc.shape.last_hidden_state, [MAX, t5.model.config.hiddenSize]);
    assert.deepEqual(enc.results.map((r: { erased: boolean }) => r.erased), [true, false]);
    const cls = await post('/v1/classify', { prompts: [ZEBRA[0]] });
    const tokens = cls.results[0].tokens as { position: number; token: string; latents: unknown[] }[];
    const f = t5.model.tokenizer.frame(ZEBRA[0]!);
    assert.deepEqual(tokens.map((t) => t.position), Array.from({ length: f.length }, (_, i) => i));
    assert.equal(tokens.at(-1)!.token, '</s>');
  } finally {
    await s.close();
  }
});
