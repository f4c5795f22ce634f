/** POST /v1/generate on a synthetic SDXL pipeline through an eraser on text_encoder_2: both towers, pooled from the edited run, passed prompts untouched. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { loadTextConditioning } from '../src/encoder/index.js';
import { encodeErased } from '../src/erase/index.js';
import { loadImagePipeline } from '../src/cli/serve.js';
import { StableDiffusionPipeline } from '../src/generate/pipeline.js';
import { synthPipeline } from '../src/generate/synth-unet.js';
import { decodePng } from '../src/io/png.js';
import { saveEraser } from '../src/select/eraser-file.js';
import { createServer, type ImagePipeline } from '../src/serve/index.js';
import { tinyModel, tinySdxl, tmpDir } from './helpers.js';
import { LIGHTHOUSE, NEUTRAL, sdxlErasers } from './sdxl-fixture.js';

process.env['ITD_QUIET'] = '1';
process.env['ITD_THREADS'] = '1';

const REQUEST = { seed: 5, steps: 2, width: 64, height: 64 };

async function serveTower2(pipeline: Promise<ImagePipeline> | ImagePipeline) {
  const { parts } = await sdxlErasers();
  const { model, sae, spec } = parts[1]!;
  const eraserPath = path.join(tmpDir(), 'eraser.json');
  saveEraser(eraserPath, spec);
  return createServer({ model, sae, eraserPath, pipeline, web: false });
}

test('/v1/generate on SDXL: an erased prompt is conditioned through the eraser (both towers + pooled), a passed one is the original image bit for bit', async () => {
  const pipeDir = path.join(tmpDir(), 'pipe');
  synthPipeline({ out: pipeDir, preset: 'tiny', seed: 3, textModelDir: tinySdxl() });
  const server = await serveTower2(loadImagePipeline(pipeDir));
  await server.ready;
  const prompts = [LIGHTHOUSE[0]!, NEUTRAL[1]!];
  const res = await server.app.inject({ method: 'POST', url: '/v1/generate', payload: { prompts, compare: true, ...REQUEST } });
  assert.equal(res.statusCode, 200, res.body);
  const results = (res.json() as { results: { prompt: string; erased: string; original: string }[] }).results;
  const pixels = (b64: string) => decodePng(Buffer.from(b64, 'base64')).data;

  // The reference: the same pipeline, conditioned by the library's erased SDXL conditioning.
  const { parts } = await sdxlErasers();
  const pipe = await StableDiffusionPipeline.load(pipeDir);
  const erasedCond = await encodeErased(pipe.text, parts[1]!.eraser, prompts);
  assert.deepEqual(Array.from(erasedCond.erased), [1, 0]);
  const ref = await pipe.generate({ prompts, ...REQUEST }, async () => ({ embeddings: erasedCond.embeds.promptEmbeds, pooled: erasedCond.embeds.pooledPromptEmbeds!, erased: erasedCond.erased }));
  const plain = await pipe.generate({ prompts, ...REQUEST });
  await pipe.release();
  results.forEach((r, i) => {
    assert.deepEqual(pixels(r.erased), ref.images[i]!.data, `${r.prompt}: erased image`);
    assert.deepEqual(pixels(r.original), plain.images[i]!.data, `${r.prompt}: original image`);
  });
  assert.notDeepEqual(pixels(results[0]!.erased), pixels(results[0]!.original), 'the lighthouse is erased');
  assert.deepEqual(pixels(results[1]!.erased), pixels(results[1]!.original), 'the passed prompt is untouched');
  await server.close();
});

test('serve refuses a pipeline whose text encoders do not include the eraser\'s tower', async () => {
  const sd1: ImagePipeline = { text: await loadTextConditioning(tinyModel()), generate: async () => [] };
  const server = await serveTower2(sd1);
  await assert.rejects(server.ready, /edits text_encoder_2 .* which is not a text encoder of/);
  await server.close();
});
