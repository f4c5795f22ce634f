/**
 * Stable Diffusion 1.x/2.x and SDXL text-to-image on onnxruntime, numerically following diffusers'
 * StableDiffusionPipeline / StableDiffusionXLPipeline:
 *
 *   c = conditioner([negatives..., prompts...])                       [2B, 77, W] (each repeated k times)
 *       SDXL: + pooled [2B, P] -> text_embeds, time_ids = (H, W, 0, 0, H, W) for every row; with
 *       force_zeros_for_empty_prompt and no negative prompt the negatives are all-zero (not encoded)
 *   x = randn([B k, 4, H/8, W/8], torch CPU generator(seed)) * initNoiseSigma
 *   for t in timesteps:
 *     [e_u; e_c] = unet(concat(x, x) / d_t, t, c)                     ONE call, batch 2Bk
 *     e = e_u + g (e_c - e_u)                                          classifier-free guidance (g > 1)
 *     x = scheduler.step(e, t, x, generator)
 *   image_j = round(clamp(vae(x_j / scaling_factor) / 2 + 0.5, 0, 1) * 255), one image per VAE call
 *
 * With the same seed, scheduler config and steps, initial latents (and Euler-ancestral noise) are
 * those of `generator=torch.Generator("cpu").manual_seed(seed)` in diffusers.
 */
import { loadTextConditioning, type TextConditioning } from '../encoder/index.js';
import { Progress } from '../io/progress.js';
import type { SessionOptions } from '../onnx/session.js';
import { textConditioner, type Conditioner } from './conditioning.js';
import { toRgb, type RgbImage } from './image.js';
import { inspectPipeline, LATENT_CHANNELS, TIME_IDS, VAE_FACTOR, type PipelineLayout } from './layout.js';
import { checkDims, UnetModel, VaeDecoder } from './models.js';
import { createScheduler, SCHEDULER_NAMES, type Scheduler, type SchedulerName } from './schedulers/index.js';
import { TorchGenerator } from './torch-rng.js';
import { ItdError } from '../errors.js';

export const DEFAULTS = { steps: 30, guidance: 7.5, seed: 0, numImages: 1 } as const;

export interface GenerateRequest {
  prompts: string[];
  /** One for all prompts or one per prompt; absent: '' (SD) or zero conditioning (SDXL's force_zeros_for_empty_prompt). */
  negativePrompt?: string | string[];
  /** Images per prompt (default 1). */
  numImages?: number;
  steps?: number;
  /** Classifier-free guidance scale; <= 1 runs the conditional branch only (default 7.5). */
  guidance?: number;
  seed?: number;
  /** Default: the pipeline's (unet/config.json sample_size x 8; 512 SD1.x, 1024 SDXL). */
  width?: number;
  height?: number;
  /** Default: the pipeline's scheduler_config.json _class_name. */
  scheduler?: string;
  karras?: boolean;
  /** Per-step progress bar on stderr. */
  progress?: boolean;
}

/** A request with defaults filled in and every check done (no session needed). */
export interface ResolvedRequest {
  prompts: string[];
  negatives: string[];
  /** The negatives are all-zero conditioning (no negative prompt, force_zeros_for_empty_prompt). */
  zeroNegatives: boolean;
  numImages: number;
  steps: number;
  guidance: number;
  seed: number;
  width: number;
  height: number;
  scheduler: Scheduler;
  karras: boolean;
  progress: boolean;
}

export interface GeneratedImage extends RgbImage {
  prompt: string;
  negativePrompt: string;
  /** Index among the prompt's numImages images (all drawn from one generator seeded with `seed`). */
  index: number;
  seed: number;
  /** The conditioner reported that it changed this prompt. */
  erased?: boolean;
}

export interface Timings {
  textMs: number;
  /** Time inside UNet session.run calls. */
  unetMs: number;
  /** Everything else in the denoising loop: input scaling/concatenation, guidance, scheduler steps. */
  loopMs: number;
  /** Time inside VAE session.run calls. */
  vaeMs: number;
  /** Decoder output -> RGB bytes. */
  postMs: number;
  unetCalls: number;
  /** Batch of each UNet call (2 B k with guidance). */
  unetBatch: number;
}

export interface GenerateResult {
  images: GeneratedImage[];
  /** Final latents [B k, 4, h, w] before the VAE scaling. */
  latents: Float32Array;
  scheduler: SchedulerName;
  timings: Timings;
}

function positiveInt(v: unknown, what: string, max = Infinity): number {
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > max) throw new ItdError('usage', `${what} must be an integer in 1..${max}, got ${String(v)}`, { field: what });
  return v as number;
}

/** Fills defaults and checks a request against a pipeline's layout, before any heavy work. */
export function resolveRequest(layout: PipelineLayout, req: GenerateRequest): ResolvedRequest {
  const { prompts } = req;
  if (!Array.isArray(prompts) || prompts.length === 0 || !prompts.every((p) => typeof p === 'string')) throw new ItdError('usage', 'prompts must be a non-empty array of strings', { field: 'prompts' });
  const neg = req.negativePrompt ?? '';
  const negatives = typeof neg === 'string' ? prompts.map(() => neg) : neg;
  if (negatives.length !== prompts.length) throw new ItdError('usage', `${negatives.length} negative prompts for ${prompts.length} prompts`, { field: 'negativePrompt' });
  const width = positiveInt(req.width ?? layout.defaultSize, 'width');
  const height = positiveInt(req.height ?? layout.defaultSize, 'height');
  for (const [v, what] of [[width, 'width'], [height, 'height']] as const) {
    if (v % VAE_FACTOR !== 0) throw new ItdError('usage', `${what} ${v} is not a multiple of ${VAE_FACTOR} (the VAE works on ${VAE_FACTOR}x${VAE_FACTOR} pixel latents)`, { field: what });
  }
  const guidance = req.guidance ?? DEFAULTS.guidance;
  if (!Number.isFinite(guidance)) throw new ItdError('usage', `guidance must be a finite number, got ${guidance}`, { field: 'guidance' });
  const seed = req.seed ?? DEFAULTS.seed;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new ItdError('usage', `seed must be an integer in [0, 2^53), got ${seed}`, { field: 'seed' });
  const name = req.scheduler ?? layout.defaultScheduler;
  if (name === undefined) {
    throw new ItdError('unsupported', `${layout.schedulerConfigPath}: _class_name ${JSON.stringify(layout.schedulerConfig['_class_name'])} is not a scheduler itd implements; choose one with --scheduler ${SCHEDULER_NAMES.join('|')}`, { file: layout.schedulerConfigPath, field: '_class_name' });
  }
  const karras = req.karras ?? false;
  const scheduler = createScheduler(name, layout.schedulerConfig, layout.schedulerConfigPath, { karras });
  const r: ResolvedRequest = {
    prompts,
    negatives,
    zeroNegatives: req.negativePrompt === undefined && layout.text.forceZeros,
    numImages: positiveInt(req.numImages ?? DEFAULTS.numImages, 'numImages'),
    steps: positiveInt(req.steps ?? DEFAULTS.steps, 'steps', scheduler.config.numTrainTimesteps),
    guidance,
    seed,
    width,
    height,
    scheduler,
    karras,
    progress: req.progress ?? false,
  };
  checkShapes(layout, r);
  return r;
}

/** Static (numeric) dims in the exports must match this run's shapes. */
function checkShapes(layout: PipelineLayout, r: ResolvedRequest): void {
  const h = r.height / VAE_FACTOR;
  const w = r.width / VAE_FACTOR;
  const batch = r.prompts.length * r.numImages * (r.guidance > 1 ? 2 : 1);
  const what = `${r.width}x${r.height} with UNet batch ${batch}`;
  checkDims(layout.unet.sample, [batch, LATENT_CHANNELS, h, w], layout.unet.file, what);
  checkDims(layout.unet.hidden, [batch], layout.unet.file, what);
  checkDims(layout.vae.input, [1, LATENT_CHANNELS, h, w], layout.vae.file, `${r.width}x${r.height}`);
}

export interface LoadOptions extends SessionOptions {
  /** Already loaded text encoders (e.g. shared with an eraser); default: loaded from DIR. */
  text?: TextConditioning;
}

/** The conditioning of one UNet batch, repeated per image. */
interface BatchConditioning {
  hidden: Float32Array; // [rows, T, W]
  pooled: Float32Array | undefined; // [rows, P]
  tokens: number; // T
  erased: boolean[] | undefined;
}

export class StableDiffusionPipeline {
  private constructor(
    readonly layout: PipelineLayout,
    readonly text: TextConditioning,
    readonly unet: UnetModel,
    readonly vae: VaeDecoder,
    /** The text model was loaded here (not lent by the caller), so release() frees it. */
    private readonly ownsText: boolean,
  ) {}

  /** Inspects DIR (throwing on anything it does not understand), then builds the sessions. */
  static async load(dir: string | PipelineLayout, opts: LoadOptions = {}): Promise<StableDiffusionPipeline> {
    const layout = typeof dir === 'string' ? inspectPipeline(dir) : dir;
    const text = opts.text ?? (await loadTextConditioning(layout.dir, opts));
    const widths = text.recipe.embedShape(text.parts.map((p) => ({ hiddenSize: p.encoder.hiddenSize, numLayers: p.encoder.numLayers, pooledSize: p.encoder.pooledSize })));
    if (widths.width !== layout.text.width || widths.pooledWidth !== layout.text.pooledWidth) {
      throw new ItdError('mismatch', `text encoders give prompt_embeds ${widths.width} / pooled ${widths.pooledWidth} wide, but the pipeline's are ${layout.text.width} / ${layout.text.pooledWidth}`, { file: layout.dir, field: 'text_encoder' });
    }
    const unet = await UnetModel.load(layout.unet, opts);
    const vae = await VaeDecoder.load(layout.vae, opts);
    return new StableDiffusionPipeline(layout, text, unet, vae, opts.text === undefined);
  }

  /** Plain conditioning with this pipeline's text encoders. */
  textConditioner(): Conditioner {
    return textConditioner(this.text);
  }

  async generate(req: GenerateRequest, conditioner: Conditioner = this.textConditioner()): Promise<GenerateResult> {
    const r = resolveRequest(this.layout, req);
    const timings: Timings = { textMs: 0, unetMs: 0, loopMs: 0, vaeMs: 0, postMs: 0, unetCalls: 0, unetBatch: 0 };
    const t0 = performance.now();
    const cond = await this.condition(r, conditioner);
    timings.textMs = performance.now() - t0;
    const rng = new TorchGenerator(r.seed);
    const latents = await this.denoise(r, cond, rng, timings);
    const images = await this.decode(latents, r, cond.erased, timings);
    return { images, latents, scheduler: r.scheduler.name, timings };
  }

  /** The sampling loop from torch-seeded noise; returns the final latents [B k, 4, h, w]. */
  private async denoise(r: ResolvedRequest, cond: BatchConditioning, rng: TorchGenerator, timings: Timings): Promise<Float32Array> {
    const n = r.prompts.length * r.numImages;
    const cfg = r.guidance > 1;
    const dims = [n, LATENT_CHANNELS, r.height / VAE_FACTOR, r.width / VAE_FACTOR];
    const sched = r.scheduler;
    sched.setTimesteps(r.steps);
    let latents = rng.randn(dims);
    const sigma0 = sched.initNoiseSigma;
    if (sigma0 !== 1) for (let i = 0; i < latents.length; i++) latents[i] = latents[i]! * sigma0;

    const batch = cfg ? 2 * n : n;
    const batchDims = [batch, ...dims.slice(1)];
    const hidden = this.unet.hiddenTensor(cond.hidden, [batch, cond.tokens, this.layout.text.width]);
    const added = cond.pooled ? this.unet.addedTensors(cond.pooled, timeIds(r, batch), batch) : undefined;
    const input = new Float32Array(cfg ? 2 * latents.length : latents.length); // reused every step: [x/d; x/d]
    const bar = r.progress ? new Progress({ label: 'denoise', total: sched.timesteps.length, unit: 'step' }) : undefined;
    const t0 = performance.now();
    for (const t of sched.timesteps) {
      scaledInput(latents, sched.inputDivisor(t), input, cfg);
      const u0 = performance.now();
      const out = await this.unet.run(input, batchDims, t, hidden, added);
      timings.unetMs += performance.now() - u0;
      timings.unetCalls++;
      latents = sched.step(cfg ? guide(out, r.guidance) : out, t, latents, rng);
      bar?.tick();
    }
    bar?.done();
    timings.loopMs = performance.now() - t0 - timings.unetMs;
    timings.unetBatch = batch;
    return latents;
  }

  async release(): Promise<void> {
    await Promise.all([this.unet.release(), this.vae.release(), ...(this.ownsText ? [this.text.release()] : [])]);
  }

  /**
   * encoder_hidden_states (+ pooled) for the UNet batch: [uncond x k per prompt..., cond x k per
   * prompt...] (diffusers' order), and the conditioner's erased flags for the positive prompts.
   * Zero negatives (SDXL without a negative prompt) are never encoded.
   */
  private async condition(r: ResolvedRequest, conditioner: Conditioner): Promise<BatchConditioning> {
    const cfg = r.guidance > 1;
    const encodeNegatives = cfg && !r.zeroNegatives;
    const texts = encodeNegatives ? [...r.negatives, ...r.prompts] : r.prompts;
    const c = await conditioner(texts);
    const { width: W, pooledWidth: P } = this.layout.text;
    const tokens = c.embeddings.length / (texts.length * W);
    if (!Number.isInteger(tokens) || tokens < 1) {
      throw new ItdError('usage', `conditioner returned ${c.embeddings.length} values for ${texts.length} prompts; expected a multiple of ${texts.length} x ${W}`, { field: 'conditioner' });
    }
    if (P > 0 && c.pooled?.length !== texts.length * P) {
      throw new ItdError('usage', `conditioner returned ${c.pooled?.length ?? 0} pooled values for ${texts.length} prompts; this UNet's text_embeds need ${texts.length} x ${P}`, { field: 'conditioner' });
    }
    const rows = cfg ? 2 * r.prompts.length : r.prompts.length;
    checkDims(this.layout.unet.hidden, [rows * r.numImages, tokens, W], this.layout.unet.file, 'the conditioning');
    // Zero negatives: the first half of the batch stays 0.
    const full = (x: Float32Array) => (cfg && !encodeNegatives ? concat(new Float32Array(x.length), x) : x);
    const repeat = (x: Float32Array) => (r.numImages === 1 ? x : repeatRows(x, rows, r.numImages));
    const first = encodeNegatives ? r.prompts.length : 0;
    const erased = c.erased ? Array.from({ length: r.prompts.length }, (_, i) => c.erased![first + i] === 1) : undefined;
    return { hidden: repeat(full(c.embeddings)), pooled: P > 0 ? repeat(full(c.pooled!)) : undefined, tokens, erased };
  }

  private async decode(latents: Float32Array, r: ResolvedRequest, erased: boolean[] | undefined, timings: Timings): Promise<GeneratedImage[]> {
    const per = latents.length / (r.prompts.length * r.numImages);
    const sf = this.layout.vae.scalingFactor;
    const { width, height } = r;
    const images: GeneratedImage[] = [];
    for (let j = 0; j < r.prompts.length * r.numImages; j++) {
      const z = latents.slice(j * per, (j + 1) * per);
      for (let i = 0; i < z.length; i++) z[i] = z[i]! / sf;
      const v0 = performance.now();
      const pixels = await this.vae.decode(z, [1, LATENT_CHANNELS, height / VAE_FACTOR, width / VAE_FACTOR]);
      const p0 = performance.now();
      const rgb = toRgb(pixels, width, height);
      timings.vaeMs += p0 - v0;
      timings.postMs += performance.now() - p0;
      const p = Math.floor(j / r.numImages);
      images.push({
        ...rgb,
        prompt: r.prompts[p]!,
        negativePrompt: r.negatives[p]!,
        index: j % r.numImages,
        seed: r.seed,
        ...(erased ? { erased: erased[p]! } : {}),
      });
    }
    return images;
  }
}

/** diffusers' add_time_ids: original size + crop top-left (0, 0) + target size, the same for every row [batch, 6]. */
function timeIds(r: ResolvedRequest, batch: number): Float32Array {
  const row = [r.height, r.width, 0, 0, r.height, r.width];
  const out = new Float32Array(batch * TIME_IDS);
  for (let b = 0; b < batch; b++) out.set(row, b * TIME_IDS);
  return out;
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** input = [x / d] or, with guidance, [x / d; x / d] (one pass, no intermediate copy). */
function scaledInput(x: Float32Array, d: number, input: Float32Array, cfg: boolean): void {
  const n = x.length;
  for (let i = 0; i < n; i++) {
    const v = x[i]! / d;
    input[i] = v;
    if (cfg) input[i + n] = v;
  }
}

/** Classifier-free guidance on a UNet output [e_u; e_c]: e_u + g (e_c - e_u). */
export function guide(out: Float32Array, g: number): Float32Array {
  const n = out.length / 2;
  const e = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = out[i]!;
    e[i] = u + g * (out[i + n]! - u);
  }
  return e;
}

/** rows [r, ...] -> each row repeated k times in place order ([a, b] -> [a, a, b, b] for k = 2). */
function repeatRows(x: Float32Array, rows: number, k: number): Float32Array {
  const size = x.length / rows;
  const out = new Float32Array(x.length * k);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * size, (r + 1) * size);
    for (let j = 0; j < k; j++) out.set(row, (r * k + j) * size);
  }
  return out;
}
