import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { encodeConditioning, loadPartTokenizer, loadTextConditioning, resolvePart, type PromptEncoding } from '../src/encoder/index.js';
import { ItdError } from '../src/errors.js';
import { synthModel } from '../src/synth/clip.js';
import { maxAbsDiff, tmpDir } from './helpers.js';

const PROMPTS = ['a photo of a cat', 'an oil painting of a lighthouse at dusk, dramatic light'];
const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;

const dirs = new Map<string, string>();
function model(preset: 'flux-tiny' | 'sd3-tiny'): string {
  let dir = dirs.get(preset);
  if (!dir) {
    dir = path.join(tmpDir(), preset);
    synthModel({ out: dir, preset, seed: 5 });
    dirs.set(preset, dir);
  }
  return dir;
}

/** Runs test/reference/t5_pipelines_numpy.py on the parts' own input ids; returns the named arrays. */
function reference(mode: '--flux' | '--sd3', dir: string, parts: readonly PromptEncoding[], keys: string[], extra: string[] = []): Float32Array[] {
  const tmp = tmpDir();
  const files = parts.map((p, k) => {
    const f = path.join(tmp, `ids${k}.json`);
    fs.writeFileSync(f, JSON.stringify(Array.from({ length: p.n }, (_, r) => Array.from(p.inputIds.subarray(r * p.t, (r + 1) * p.t)))));
    return f;
  });
  const out = path.join(tmp, 'out.npz');
  const r = spawnSync('python3', [path.join(import.meta.dirname, 'reference', 't5_pipelines_numpy.py'), mode, dir, ...files, out, ...extra], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return keys.map((k) => {
    const d = spawnSync('python3', ['-c', `import numpy as np,sys; sys.stdout.buffer.write(np.load('${out}')['${k}'].tobytes())`], { maxBuffer: 1 << 28 }).stdout as Buffer;
    return new Float32Array(d.buffer, d.byteOffset, d.byteLength / 4);
  });
}

test('FLUX.1 directory: prompt_embeds = T5 [n, L, D] without a mask, pooled = CLIP pooler_output; matches numpy (<= 1e-4)', { skip: !hasNumpy && 'python3 with numpy not available' }, async () => {
  const dir = model('flux-tiny');
  const cond = await loadTextConditioning(dir, { maxSequenceLength: 64 });
  assert.equal(cond.layout.pipeline, 'FluxPipeline');
  assert.deepEqual(cond.parts.map((p) => p.encoder.architecture), ['CLIPTextModel', 'T5EncoderModel']);
  assert.equal(cond.defaultPart.name, 'text_encoder_2');
  const enc = await encodeConditioning(cond, PROMPTS);
  const { embeds } = enc;
  assert.deepEqual([embeds.n, embeds.seq, embeds.width, embeds.pooledWidth], [2, 64, 64, 64]);
  // T5 ids: pieces + </s>, padded with <pad> (0); CLIP ids: 77.
  assert.equal(enc.parts[1]!.inputIds[enc.parts[1]!.lengths[0]! - 1], 1);
  assert.equal(enc.parts[1]!.inputIds[63], 0);
  assert.equal(enc.parts[0]!.t, 77);
  const [pe, pooled] = reference('--flux', dir, enc.parts, ['prompt_embeds', 'pooled_prompt_embeds']);
  assert.ok(maxAbsDiff(embeds.promptEmbeds, pe!) <= 1e-4, `prompt_embeds diff ${maxAbsDiff(embeds.promptEmbeds, pe!)}`);
  assert.ok(maxAbsDiff(embeds.pooledPromptEmbeds!, pooled!) <= 1e-4);
  await assert.rejects(encodeConditioning(cond, PROMPTS, { clipSkip: 1 }), /FluxPipeline has no clip_skip/);
  // `itd tokenize --encoder 2`: the T5 part's framing alone, without loading weights.
  const tok = loadPartTokenizer(resolvePart(dir, '2'), { maxSequenceLength: 64 });
  assert.deepEqual(tok.batch(PROMPTS).ids, enc.parts[1]!.inputIds);
  assert.equal(loadPartTokenizer(resolvePart(dir, '1')).maxLength, 77);
  await cond.release();
});

test('FLUX.1 frames T5 to 512 by default (FLUX.1-dev); padding is attended, so the framed length changes the states', async () => {
  const dir = model('flux-tiny');
  const full = await loadTextConditioning(dir);
  const a = await encodeConditioning(full, [PROMPTS[0]!]);
  assert.equal(a.embeds.seq, 512);
  const short = await loadTextConditioning(dir, { maxSequenceLength: 256 });
  const b = await encodeConditioning(short, [PROMPTS[0]!]);
  assert.equal(b.embeds.seq, 256);
  const D = a.embeds.width;
  const n = a.parts[1]!.lengths[0]!;
  assert.ok(maxAbsDiff(a.embeds.promptEmbeds.subarray(0, n * D), b.embeds.promptEmbeds.subarray(0, n * D)) > 1e-4);
  assert.deepEqual(a.embeds.pooledPromptEmbeds, b.embeds.pooledPromptEmbeds);
  await Promise.all([full.release(), short.release()]);
});

test('SD3 directory: [n, 77 + 256, D_T5] = zero-padded CLIP-L|CLIP-G penultimate states then T5; pooled = both text_embeds; matches numpy', { skip: !hasNumpy && 'python3 with numpy not available' }, async () => {
  const dir = model('sd3-tiny');
  const cond = await loadTextConditioning(dir);
  assert.equal(cond.layout.pipeline, 'StableDiffusion3Pipeline');
  assert.equal(cond.defaultPart.name, 'text_encoder_3');
  const encs = [await encodeConditioning(cond, PROMPTS), await encodeConditioning(cond, PROMPTS, { clipSkip: 1 })];
  const [pooled, ...pes] = reference('--sd3', dir, encs[0]!.parts, ['pooled_prompt_embeds', 'prompt_embeds_0', 'prompt_embeds_1'], ['0,1']);
  for (const clipSkip of [0, 1]) {
    const { embeds } = encs[clipSkip]!;
    assert.deepEqual([embeds.n, embeds.seq, embeds.width, embeds.pooledWidth], [2, 77 + 256, 128, 48 + 80]);
    const pe = pes[clipSkip];
    assert.ok(maxAbsDiff(embeds.promptEmbeds, pe!) <= 1e-4, `clip_skip ${clipSkip}: prompt_embeds diff ${maxAbsDiff(embeds.promptEmbeds, pe!)}`);
    assert.ok(maxAbsDiff(embeds.pooledPromptEmbeds!, pooled!) <= 1e-4);
    // The padding columns of the CLIP rows are exactly zero.
    assert.ok(embeds.promptEmbeds.subarray(112, 128).every((v) => v === 0));
  }
  await cond.release();
});

test('bad FLUX/SD3 directories: missing T5 part, non-Unigram tokenizer, max length beyond the model', async () => {
  const copy = (preset: 'flux-tiny' | 'sd3-tiny') => {
    const d = path.join(tmpDir(), 'bad');
    fs.cpSync(model(preset), d, { recursive: true });
    return d;
  };
  const noT5 = copy('flux-tiny');
  fs.rmSync(path.join(noT5, 'text_encoder_2'), { recursive: true });
  await assert.rejects(loadTextConditioning(noT5), (e: unknown) => e instanceof ItdError && e.field === 'text_encoder_2' && /FluxPipeline directory lacks text_encoder_2\//.test(e.message));
  const noT5sd3 = copy('sd3-tiny');
  fs.rmSync(path.join(noT5sd3, 'tokenizer_3'), { recursive: true });
  assert.throws(() => resolvePart(noT5sd3), /StableDiffusion3Pipeline directory lacks tokenizer_3\//);
  const bpe = copy('flux-tiny');
  const tj = path.join(bpe, 'tokenizer_2', 'tokenizer.json');
  fs.writeFileSync(tj, JSON.stringify({ ...JSON.parse(fs.readFileSync(tj, 'utf8')), model: { type: 'BPE', vocab: {}, merges: [] } }));
  await assert.rejects(loadTextConditioning(bpe), (e: unknown) => e instanceof ItdError && e.file === tj && e.field === 'model.type');
  await assert.rejects(loadTextConditioning(model('flux-tiny'), { maxSequenceLength: 600 }), /max_sequence_length 600 exceeds the tokenizer's model_max_length 512/);
  const ff = copy('flux-tiny');
  const cfg = path.join(ff, 'text_encoder_2', 'config.json');
  fs.writeFileSync(cfg, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfg, 'utf8')), feed_forward_proj: 'relu' }));
  await assert.rejects(loadTextConditioning(ff), (e: unknown) => e instanceof ItdError && e.file === cfg && e.field === 'feed_forward_proj');
});
