/** SDXL image generation on a synthetic SDXL pipeline: UNet inputs as diffusers builds them. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { encodeConditioning } from '../src/encoder/index.js';
import { generateCommand } from '../src/cli/generate-run.js';
import type { Conditioner } from '../src/generate/conditioning.js';
import { inspectPipeline } from '../src/generate/layout.js';
import type { AddedTensors } from '../src/generate/models.js';
import { resolveRequest, StableDiffusionPipeline } from '../src/generate/pipeline.js';
import { SDXL_SCALING_FACTOR, synthPipeline, synthUnetGraph } from '../src/generate/synth-unet.js';
import { decodePng } from '../src/io/png.js';
import type { ort } from '../src/onnx/session.js';
import { saeIdentity, saveSae } from '../src/sae/index.js';
import { saveEraser } from '../src/select/eraser-file.js';
import { tinySdxl, tmpDir } from './helpers.js';
import { LIGHTHOUSE, NEUTRAL, sdxlErasers } from './sdxl-fixture.js';

process.env['ITD_QUIET'] = '1';
process.env['ITD_THREADS'] = '1';

const SIZE = { width: 64, height: 48 };
let dir: string | undefined;
function sdxlPipeline(): string {
  if (!dir) {
    dir = path.join(tmpDir('itd-sdxl-gen-'), 'pipe');
    synthPipeline({ out: dir, preset: 'tiny', seed: 3, textModelDir: tinySdxl() });
  }
  return dir;
}

test('an SDXL ONNX pipeline: UNet takes text_embeds and time_ids; widths, VAE factor, scheduler and 1024 default from the files', () => {
  const layout = inspectPipeline(sdxlPipeline());
  assert.deepEqual(layout.text, { pipeline: 'StableDiffusionXLPipeline', width: 112, pooledWidth: 80, forceZeros: true, defaultSize: 1024 });
  assert.deepEqual([layout.unet.added?.textEmbeds.dims, layout.unet.added?.timeIds.dims], [['batch', 80], ['batch', 6]]);
  assert.equal(layout.vae.scalingFactor, SDXL_SCALING_FACTOR);
  assert.equal(layout.defaultScheduler, 'euler');
  assert.equal(layout.defaultSize, 1024);
  const r = resolveRequest(layout, { prompts: ['x'] });
  assert.deepEqual([r.width, r.height, r.zeroNegatives], [1024, 1024, true]);
  assert.equal(resolveRequest(layout, { prompts: ['x'], negativePrompt: '' }).zeroNegatives, false);
  // An SD1-width UNet next to SDXL text encoders, and an SDXL UNet whose text_embeds width is wrong.
  const bad = path.join(tmpDir(), 'bad');
  fs.cpSync(sdxlPipeline(), bad, { recursive: true });
  fs.writeFileSync(path.join(bad, 'unet', 'model.onnx'), synthUnetGraph({ preset: 'tiny', seed: 1, hiddenSize: 112, pooledSize: 1280 }));
  assert.throws(() => inspectPipeline(bad), /'text_embeds' is 1280 wide but text_encoder_2's pooled output \(projection_dim\) is 80/);
  fs.writeFileSync(path.join(bad, 'unet', 'model.onnx'), synthUnetGraph({ preset: 'tiny', seed: 1, hiddenSize: 112 }));
  assert.throws(() => inspectPipeline(bad), /takes sample, timestep, encoder_hidden_states, text_embeds, time_ids \(missing text_embeds, time_ids\)/);
});

test('SDXL UNet feeds: [zeros; prompt_embeds] without a negative prompt (force_zeros_for_empty_prompt), pooled -> text_embeds, time_ids (H, W, 0, 0, H, W)', async () => {
  const pipe = await StableDiffusionPipeline.load(sdxlPipeline());
  const calls: { hidden: ort.Tensor; added: AddedTensors | undefined }[] = [];
  const run = pipe.unet.run.bind(pipe.unet);
  pipe.unet.run = (sample, dims, t, hidden, added) => {
    calls.push({ hidden, added });
    return run(sample, dims, t, hidden, added);
  };
  const res = await pipe.generate({ prompts: ['a lighthouse'], steps: 2, seed: 1, ...SIZE });
  assert.equal(res.timings.unetCalls, 2);
  const { hidden, added } = calls[0]!;
  assert.deepEqual(hidden.dims, [2, 77, 112]);
  const plain = (await encodeConditioning(pipe.text, ['a lighthouse', ''])).embeds;
  const h = hidden.data as Float32Array;
  const half = 77 * 112;
  assert.ok(h.subarray(0, half).every((v) => v === 0), 'uncond rows are zeros');
  assert.deepEqual(h.subarray(half), plain.promptEmbeds.subarray(0, half));
  assert.deepEqual(added!.textEmbeds.dims, [2, 80]);
  const te = added!.textEmbeds.data as Float32Array;
  assert.ok(te.subarray(0, 80).every((v) => v === 0));
  assert.deepEqual(te.subarray(80), plain.pooledPromptEmbeds!.subarray(0, 80));
  assert.deepEqual(Array.from(added!.timeIds.data as Float32Array), [48, 64, 0, 0, 48, 64, 48, 64, 0, 0, 48, 64]);
  // An explicit negative prompt '' is encoded, as diffusers does.
  calls.length = 0;
  await pipe.generate({ prompts: ['a lighthouse'], negativePrompt: '', steps: 1, seed: 1, ...SIZE });
  assert.deepEqual((calls[0]!.hidden.data as Float32Array).subarray(0, half), plain.promptEmbeds.subarray(half));
  assert.deepEqual((calls[0]!.added!.textEmbeds.data as Float32Array).subarray(0, 80), plain.pooledPromptEmbeds!.subarray(80));
  // Deterministic per seed; finite images of the requested size.
  const again = await pipe.generate({ prompts: ['a lighthouse'], steps: 2, seed: 1, ...SIZE });
  assert.deepEqual(again.latents, res.latents);
  assert.ok(res.latents.every(Number.isFinite));
  assert.deepEqual([res.images[0]!.width, res.images[0]!.height], [64, 48]);
  await pipe.release();
});

test('itd generate on SDXL: --compare writes original | erased; a conditioner without pooled output is refused', async () => {
  const out = tmpDir();
  const pipeDir = sdxlPipeline();
  const eraserFile = path.join(out, 'e.json');
  fs.writeFileSync(eraserFile, '{}');
  const deps = {
    loadConditioner: async (_file: string, text: Parameters<typeof encodeConditioning>[0]): Promise<Conditioner> => async (prompts) => {
      const { embeds } = await encodeConditioning(text, prompts.map((p) => (p.includes('cat') ? 'a dog' : p)));
      return { embeddings: embeds.promptEmbeds, pooled: embeds.pooledPromptEmbeds!, erased: Uint8Array.from(prompts, (p) => (p.includes('cat') ? 1 : 0)) };
    },
  };
  await generateCommand({ pipeline: pipeDir, prompt: 'a cat', out: path.join(out, 'c.png'), steps: '2', ...{ width: '64', height: '48' }, eraser: eraserFile, compare: true }, deps);
  const png = decodePng(fs.readFileSync(path.join(out, 'c.png')));
  assert.equal(png.width, 2 * 64 + 8);
  assert.equal(png.text['layout'], 'original | erased');
  assert.equal(png.text['erased'], 'true');
  const pipe = await StableDiffusionPipeline.load(pipeDir);
  const noPooled: Conditioner = async (prompts) => ({ embeddings: new Float32Array(prompts.length * 77 * 112) });
  await assert.rejects(pipe.generate({ prompts: ['x'], steps: 1, ...SIZE }, noPooled), /0 pooled values for 1 prompts; this UNet's text_embeds need 1 x 80/);
  await pipe.release();
});

test('itd generate --eraser --sae on SDXL: the eraser on text_encoder_2 erases a lighthouse, a passed prompt is the plain image', async () => {
  const out = tmpDir();
  const { parts } = await sdxlErasers();
  const { sae, spec } = parts[1]!;
  const saeDir = path.join(out, 'sae2');
  saveSae(saeDir, sae);
  const eraser = path.join(out, 'e2.json');
  saveEraser(eraser, { ...spec, saeId: saeIdentity(saeDir) });
  const common = { pipeline: sdxlPipeline(), steps: '2', seed: '4', width: '64', height: '48' };
  const pipe = await StableDiffusionPipeline.load(sdxlPipeline());
  for (const [prompt, erased] of [[LIGHTHOUSE[1]!, 'true'], [NEUTRAL[1]!, 'false']] as const) {
    const file = path.join(out, `${erased}.png`);
    await generateCommand({ ...common, prompt, out: file, eraser, sae: saeDir });
    const png = decodePng(fs.readFileSync(file));
    assert.equal(png.text['erased'], erased, prompt);
    const plain = (await pipe.generate({ prompts: [prompt], steps: 2, seed: 4, ...SIZE })).images[0]!;
    if (erased === 'true') assert.notDeepEqual(png.data, plain.data, prompt);
    else assert.deepEqual(png.data, plain.data, prompt);
  }
  await pipe.release();
});
