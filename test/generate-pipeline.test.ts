import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { UsageError } from '../src/cli/args.js';
import type { Conditioner } from '../src/generate/conditioning.js';
import { generateCommand } from '../src/cli/generate-run.js';
import { inspectPipeline } from '../src/generate/layout.js';
import { readOnnxSignature } from '../src/generate/onnx-signature.js';
import { resolveRequest, StableDiffusionPipeline } from '../src/generate/pipeline.js';
import { createScheduler } from '../src/generate/schedulers/index.js';
import { SD1_SCHEDULER_CONFIG, synthPipeline, synthUnetGraph, type SynthPipelineOptions } from '../src/generate/synth-unet.js';
import { TorchGenerator } from '../src/generate/torch-rng.js';
import { decodePng } from '../src/io/png.js';
import { Graph } from '../src/onnx/graph.js';
import { createSession } from '../src/onnx/session.js';
import { maxAbsDiff, tinyModel, tmpDir } from './helpers.js';

process.env['ITD_QUIET'] = '1';
// Tiny graphs: one intra-op thread avoids onnxruntime's spin-waiting when test files run in parallel.
process.env['ITD_THREADS'] = '1';

const D = 64; // tiny synthetic text encoder width
const SIZE = { width: 64, height: 48 }; // 8 x 6 latents
let root: string;
let base: string;

/** A synthetic pipeline next to the cached tiny text model. */
function pipelineDir(name: string, opts: Partial<SynthPipelineOptions> = {}): string {
  const out = path.join(root, name);
  if (!fs.existsSync(out)) synthPipeline({ out, preset: 'tiny', seed: 5, textModelDir: tinyModel(), ...opts });
  return out;
}

/** A copy of the base pipeline with unet/model.onnx replaced. */
function withUnet(name: string, model: Uint8Array): string {
  const out = path.join(root, name);
  fs.cpSync(base, out, { recursive: true });
  fs.writeFileSync(path.join(out, 'unet', 'model.onnx'), model);
  return out;
}

/**
 * UNet that reports what it was fed: out_sample[b] = batch size + mean(encoder_hidden_states[b]),
 * broadcast over [4, h, w].
 */
function echoUnet(): Uint8Array {
  const g = new Graph('echo');
  const x = g.input('sample', 'float32', ['batch', 4, 'height', 'width']);
  g.input('timestep', 'int64', [1]);
  const ctx = g.input('encoder_hidden_states', 'float32', ['batch', 77, D]);
  const batch = g.op('Cast', [g.op('Gather', [g.op('Shape', [x]), g.constI64([0], [])])], { to: 1 });
  const mean = g.op('Reshape', [g.op('ReduceMean', [ctx], { axes: [1, 2], keepdims: 1 }), g.constI64([0, 1, 1, 1])]);
  const zero = g.op('Mul', [x, g.constF(0)]);
  g.output(g.op('Add', [g.op('Add', [zero, mean]), batch]), 'float32', ['batch', 4, 'height', 'width'], 'out_sample');
  return g.toModel();
}

/** Conditioning without a text encoder: every token of prompt p is value(p). */
function constantConditioner(value: (p: string) => number): Conditioner {
  return async (prompts) => {
    const emb = new Float32Array(prompts.length * 77 * D);
    prompts.forEach((p, i) => emb.fill(value(p), i * 77 * D, (i + 1) * 77 * D));
    return { embeddings: emb, erased: Uint8Array.from(prompts, (p) => (p.includes('erase') ? 1 : 0)) };
  };
}

before(() => {
  root = tmpDir('itd-generate-');
  base = pipelineDir('base');
});

test('inspectPipeline reads the export I/O without sessions, as onnxruntime reports it', async () => {
  const layout = inspectPipeline(base);
  assert.deepEqual(layout.unet.sample, { name: 'sample', type: 'float32', dims: ['batch', 4, 'height', 'width'] });
  assert.deepEqual(layout.unet.timestep, { name: 'timestep', type: 'int64', dims: [1] });
  assert.deepEqual(layout.unet.hidden.dims, ['batch', 77, D]);
  assert.equal(layout.unet.output.name, 'out_sample');
  assert.equal(layout.vae.input.name, 'latent_sample');
  assert.equal(layout.vae.scalingFactor, 0.18215);
  assert.equal(layout.defaultScheduler, 'pndm');
  const index = JSON.parse(fs.readFileSync(path.join(base, 'model_index.json'), 'utf8')) as Record<string, unknown>;
  assert.ok(index['text_encoder'] && index['unet'] && index['vae_decoder'] && index['scheduler'], 'model_index.json lists every component');
  const session = await createSession(path.join(base, 'unet', 'model.onnx'));
  const meta = session.inputMetadata.map((m) => (m.isTensor ? { name: m.name, type: m.type, dims: [...m.shape] } : { name: m.name }));
  assert.deepEqual(meta, readOnnxSignature(path.join(base, 'unet', 'model.onnx')).inputs);
  await session.release();
});

test('classifier-free guidance: one UNet call per step with batch 2Bk, [uncond; cond] order, torch-seeded latents', async () => {
  const pipe = await StableDiffusionPipeline.load(withUnet('echo', echoUnet()));
  const cond = constantConditioner((p) => (p === '' ? 0 : 10));
  const seed = 1234;
  const res = await pipe.generate({ prompts: ['a cat'], numImages: 2, steps: 1, guidance: 3, seed, scheduler: 'ddim', ...SIZE }, cond);
  assert.equal(res.timings.unetCalls, 1);
  assert.equal(res.timings.unetBatch, 4);
  // e = e_u + g (e_c - e_u) with e_u = 4 + 0, e_c = 4 + 10.
  const e = 4 + 3 * 10;
  // One DDIM step from t = 1 (leading, offset 1) to t' = -999 (alphas_cumprod[0], set_alpha_to_one false).
  const ddim = createScheduler('ddim', SD1_SCHEDULER_CONFIG, 'sd1') as unknown as { alphasCumprod: Float64Array };
  const [a0, a1] = [ddim.alphasCumprod[0]!, ddim.alphasCumprod[1]!];
  const x = new TorchGenerator(seed).randn([2, 4, 6, 8]);
  const want = x.map((v) => Math.sqrt(a0) * ((v - Math.sqrt(1 - a1) * e) / Math.sqrt(a1)) + Math.sqrt(1 - a0) * e);
  assert.ok(maxAbsDiff(res.latents, want) < 1e-4, 'latents = DDIM(torch randn(seed), guided echo)');
  assert.deepEqual(res.images.map((im) => [im.index, im.erased, im.width, im.height, im.data.length]), [
    [0, false, 64, 48, 64 * 48 * 3],
    [1, false, 64, 48, 64 * 48 * 3],
  ]);
  // guidance <= 1: conditional branch only, batch Bk.
  const noCfg = await pipe.generate({ prompts: ['a cat', 'erase me'], steps: 2, guidance: 1, scheduler: 'ddim', ...SIZE }, cond);
  assert.equal(noCfg.timings.unetBatch, 2);
  assert.equal(noCfg.timings.unetCalls, 2);
  assert.deepEqual(noCfg.images.map((im) => im.erased), [false, true]);
  await pipe.release();
});

test('deterministic per seed with every scheduler; different seeds differ', async () => {
  const pipe = await StableDiffusionPipeline.load(base);
  for (const scheduler of ['pndm', 'ddim', 'euler', 'euler-a', 'dpm++2m']) {
    const req = { prompts: ['a red house'], steps: 3, seed: 7, scheduler, ...SIZE };
    const [a, b] = [await pipe.generate(req), await pipe.generate(req)];
    assert.deepEqual(a.latents, b.latents, scheduler);
    assert.deepEqual(a.images[0]!.data, b.images[0]!.data, scheduler);
    assert.ok(a.latents.every(Number.isFinite), scheduler);
    const c = await pipe.generate({ ...req, seed: 8 });
    assert.ok(maxAbsDiff(a.latents, c.latents) > 1e-3, `${scheduler}: seeds 7 and 8 give the same latents`);
  }
  const karras = await pipe.generate({ prompts: ['a red house'], steps: 3, scheduler: 'dpm++2m', karras: true, ...SIZE });
  assert.equal(karras.timings.unetCalls, 3);
  await pipe.release();
});

test('timestep and precision variants of the export: int64, float32 and float16 give the same images', async () => {
  const req = { prompts: ['a blue boat'], steps: 3, seed: 3, ...SIZE };
  const results = [];
  for (const [name, opts] of [
    ['int64', {}],
    ['f32-t', { timestepType: 'float32' }],
    ['f16', { timestepType: 'float16', dtype: 'float16' }],
  ] as const) {
    const dir = pipelineDir(name, opts);
    const layout = inspectPipeline(dir);
    assert.equal(layout.unet.timestep.type, name === 'int64' ? 'int64' : name === 'f32-t' ? 'float32' : 'float16');
    const pipe = await StableDiffusionPipeline.load(layout);
    results.push(await pipe.generate(req));
    await pipe.release();
  }
  const [i64, f32, f16] = results;
  assert.deepEqual(i64!.latents, f32!.latents); // PNDM timesteps are integers: same UNet input either way
  assert.ok(maxAbsDiff(i64!.latents, f16!.latents) < 0.05, `fp16 export drifts too far: ${maxAbsDiff(i64!.latents, f16!.latents)}`);
});

test('clear errors before any model is loaded', () => {
  const broken = (name: string, edit: (dir: string) => void) => {
    const dir = path.join(root, name);
    fs.cpSync(base, dir, { recursive: true });
    edit(dir);
    return dir;
  };
  assert.throws(() => inspectPipeline(broken('no-vae', (d) => fs.rmSync(path.join(d, 'vae_decoder'), { recursive: true }))), /missing vae_decoder\/model\.onnx/);
  const wide = withUnet('wide', synthUnetGraph({ preset: 'tiny', seed: 1, hiddenSize: 768 }));
  assert.throws(() => inspectPipeline(wide), /encoder_hidden_states width is 768 but the text encoder's hidden size is 64/);
  const g = new Graph('inpaint');
  const x = g.input('sample', 'float32', ['batch', 9, 'h', 'w']);
  g.input('timestep', 'int64', [1]);
  g.input('encoder_hidden_states', 'float32', ['batch', 77, D]);
  g.output(g.op('Identity', [x]), 'float32', ['batch', 9, 'h', 'w'], 'out_sample');
  assert.throws(() => inspectPipeline(withUnet('inpaint', g.toModel())), /'sample' has 9 channels/);
  const xl = new Graph('sdxl');
  for (const [n, dims] of [['sample', ['b', 4, 'h', 'w']], ['timestep', [1]], ['encoder_hidden_states', ['b', 77, D]], ['text_embeds', ['b', 1280]]] as const) xl.input(n, n === 'timestep' ? 'int64' : 'float32', [...dims]);
  xl.output(xl.op('Identity', ['sample']), 'float32', ['b', 4, 'h', 'w'], 'out_sample');
  assert.throws(() => inspectPipeline(withUnet('sdxl', xl.toModel())), /extra inputs 'text_embeds'/);

  const layout = inspectPipeline(base);
  assert.throws(() => resolveRequest(layout, { prompts: ['x'], width: 500, height: 512 }), /width 500 is not a multiple of 8/);
  assert.throws(() => resolveRequest(layout, { prompts: ['x'], scheduler: 'lms' }), /unknown scheduler 'lms'/);
  assert.throws(() => resolveRequest(layout, { prompts: [] }), /non-empty array/);
  const odd = broken('odd-sched', (d) => fs.writeFileSync(path.join(d, 'scheduler', 'scheduler_config.json'), JSON.stringify({ ...SD1_SCHEDULER_CONFIG, _class_name: 'LMSDiscreteScheduler' })));
  assert.throws(() => resolveRequest(inspectPipeline(odd), { prompts: ['x'] }), /LMSDiscreteScheduler.*--scheduler/);
  assert.doesNotThrow(() => resolveRequest(inspectPipeline(odd), { prompts: ['x'], scheduler: 'euler' }));
  // A static export (fixed 64x64 latents) refuses other sizes.
  const fixed = new Graph('fixed');
  const fx = fixed.input('sample', 'float32', [2, 4, 64, 64]);
  fixed.input('timestep', 'float32', [1]);
  fixed.input('encoder_hidden_states', 'float32', [2, 77, D]);
  fixed.output(fixed.op('Identity', [fx]), 'float32', [2, 4, 64, 64], 'out_sample');
  const fixedLayout = inspectPipeline(withUnet('fixed', fixed.toModel()));
  assert.throws(() => resolveRequest(fixedLayout, { prompts: ['x'], width: 768, height: 768 }), /fixed at \[2, 4, 64, 64\] but 768x768 with UNet batch 2 needs \[2, 4, 96, 96\]/);
  assert.doesNotThrow(() => resolveRequest(fixedLayout, { prompts: ['x'] }));
});

test('CLI: single image with metadata, several images, batch mode with index.html, --compare through an eraser hook', async () => {
  const out = path.join(root, 'cli');
  const common = { pipeline: base, steps: '2', width: '64', height: '48', seed: '11' };
  await generateCommand({ ...common, prompt: 'a small dog', out: path.join(out, 'one.png'), scheduler: 'euler-a' });
  const one = decodePng(fs.readFileSync(path.join(out, 'one.png')));
  assert.equal(one.width, 64);
  assert.equal(one.height, 48);
  assert.equal(one.text['prompt'], 'a small dog');
  assert.equal(one.text['seed'], '11');
  assert.equal(one.text['steps'], '2');
  assert.equal(one.text['scheduler'], 'euler-a');
  assert.equal(one.text['guidance'], '7.5');
  assert.equal(one.text['negative_prompt'], '');

  await generateCommand({ ...common, prompt: 'a small dog', out: path.join(out, 'two.png'), 'num-images': '2' });
  assert.ok(fs.existsSync(path.join(out, 'two-0.png')) && fs.existsSync(path.join(out, 'two-1.png')));

  const promptsFile = path.join(root, 'prompts.txt');
  fs.writeFileSync(promptsFile, 'a cat\na dog on a hill\n');
  const eraserFile = path.join(root, 'eraser.json');
  fs.writeFileSync(eraserFile, '{}');
  const loaded: string[] = [];
  const deps = {
    loadConditioner: async (file: string) => {
      loaded.push(file);
      return constantConditioner((p) => (p.includes('cat') ? 1 : 0));
    },
  };
  await generateCommand({ ...common, prompts: promptsFile, out: path.join(out, 'batch'), eraser: eraserFile, compare: true }, deps);
  assert.deepEqual(loaded, [eraserFile]);
  assert.deepEqual(fs.readdirSync(path.join(out, 'batch')).sort(), ['0000.png', '0001.png', 'index.html']);
  const pair = decodePng(fs.readFileSync(path.join(out, 'batch', '0000.png')));
  assert.equal(pair.width, 2 * 64 + 8); // original | gap | erased
  assert.equal(pair.text['layout'], 'original | erased');
  assert.match(pair.text['eraser']!, /^eraser\.json#[0-9a-f]{16}$/);
  assert.match(fs.readFileSync(path.join(out, 'batch', 'index.html'), 'utf8'), /a dog on a hill/);

  await assert.rejects(generateCommand({ ...common, prompt: 'x', out: path.join(out, 'x.png'), compare: true }), UsageError);
  await assert.rejects(generateCommand({ ...common, prompt: 'x', out: path.join(out, 'x.png'), eraser: eraserFile }), /--eraser needs --sae SAE_DIR/);
  await assert.rejects(generateCommand({ ...common, prompt: 'x', out: path.join(out, 'x.png'), width: '60' }), /width 60 is not a multiple of 8/);
  await assert.rejects(generateCommand({ ...common, prompt: 'x', out: path.join(out, 'x.png'), scheduler: 'plms' }), /unknown scheduler 'plms'/);
  assert.ok(!fs.existsSync(path.join(out, 'x.png')));
});
