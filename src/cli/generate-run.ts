/**
 * `itd generate`: text-to-image with an ONNX Stable Diffusion pipeline, optionally through an eraser.
 *
 *   itd generate --pipeline DIR --prompt "..." --out out.png [--eraser E.json --sae SAE_DIR | --eraser ERASER_SET.json] [--compare] ...
 *   itd generate --pipeline DIR --prompts FILE --out OUTDIR      (one PNG per prompt + index.html)
 *
 * Everything that can be checked without loading models (flags, pipeline layout, sizes, scheduler
 * settings, static export shapes) is checked first. PNGs carry the generation parameters as text
 * chunks (prompt, negative_prompt, seed, steps, scheduler, guidance, eraser, ...).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { bool, int, list, num, optStr, str, UsageError, type CommandSpec, type Flags } from './args.js';
import type { TextConditioning } from '../encoder/index.js';
import { erasedConditioner } from '../erase/index.js';
import { ItdError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { encodePng } from '../io/png.js';
import { loadErasers, warnIfTruncated } from './encoder.js';
import { readPrompts } from '../io/prompts.js';
import type { Conditioner } from '../generate/conditioning.js';
import { contactSheet, sideBySide, type SheetEntry } from '../generate/image.js';
import { inspectPipeline } from '../generate/layout.js';
import { DEFAULTS, resolveRequest, StableDiffusionPipeline, type GeneratedImage, type GenerateRequest, type GenerateResult } from '../generate/pipeline.js';
import { SCHEDULER_NAMES } from '../generate/schedulers/config.js';

export interface GenerateDeps {
  /** The erased conditioner of --eraser (default: the eraser or eraser set on the pipeline's text encoders; tests swap in their own). */
  loadConditioner?(eraserPath: string, text: TextConditioning, saePath: string | undefined): Promise<Conditioner>;
}

async function loadEraserConditioner(eraserPath: string, text: TextConditioning, saePath: string | undefined): Promise<Conditioner> {
  return erasedConditioner(text, await loadErasers(eraserPath, saePath, undefined, text));
}

export const GENERATE_FLAGS = {
  pipeline: { type: 'string', help: 'pipeline directory (text_encoder/, tokenizer/, unet/model.onnx, vae_decoder/model.onnx, scheduler/)' },
  prompt: { type: 'string', multiple: true, help: 'prompt (one prompt: --out is a .png file)' },
  prompts: { type: 'string', help: 'prompt file (.txt/.csv/.json): --out is a directory, one PNG per prompt + index.html' },
  'negative-prompt': { type: 'string', help: "negative prompt (default: '', or zero conditioning where the pipeline forces zeros for an empty one, as SDXL does)" },
  eraser: { type: 'string', help: 'ERASER.json (with --sae) or ERASER_SET.json: condition through it' },
  sae: { type: 'string', help: 'SAE directory the eraser was built with (needed by --eraser, except for an eraser set)' },
  compare: { type: 'boolean', help: 'with --eraser: write original | erased side by side (same seed)' },
  scheduler: { type: 'string', help: `${SCHEDULER_NAMES.join('|')} (default: the pipeline's scheduler_config.json)` },
  karras: { type: 'boolean', help: 'Karras sigmas (euler, dpm++2m)' },
  steps: { type: 'string', default: String(DEFAULTS.steps), help: 'denoising steps' },
  guidance: { type: 'string', default: String(DEFAULTS.guidance), help: 'classifier-free guidance scale (<= 1 disables it)' },
  seed: { type: 'string', default: String(DEFAULTS.seed), help: 'seed of the torch-compatible CPU generator' },
  width: { type: 'string', help: "image width (multiple of 8; default: the pipeline's, 512 SD1.x, 1024 SDXL)" },
  height: { type: 'string', help: "image height (multiple of 8; default: the pipeline's)" },
  'num-images': { type: 'string', default: String(DEFAULTS.numImages), help: 'images per prompt' },
  out: { type: 'string', help: 'output .png (one prompt) or directory (--prompts)' },
} as const;

const defaults = (): Flags => Object.fromEntries(Object.entries(GENERATE_FLAGS).map(([k, f]) => [k, 'default' in f ? f.default : undefined]));

interface Plan {
  pipelineDir: string;
  prompts: string[];
  batch: boolean;
  out: string;
  eraser: string | undefined;
  sae: string | undefined;
  compare: boolean;
  request: Omit<GenerateRequest, 'prompts'>;
}

function plan(flags: Flags): Plan {
  const prompts = [...list(flags, 'prompt'), ...(optStr(flags, 'prompts') ? readPrompts(str(flags, 'prompts')) : [])];
  if (prompts.length === 0) throw new UsageError('give --prompt "..." or --prompts FILE');
  const eraser = optStr(flags, 'eraser');
  const compare = bool(flags, 'compare');
  if (compare && !eraser) throw new UsageError('--compare needs --eraser (it shows the original and the erased image side by side)');
  const scheduler = optStr(flags, 'scheduler');
  const request: Omit<GenerateRequest, 'prompts'> = {
    ...(optStr(flags, 'negative-prompt') !== undefined ? { negativePrompt: str(flags, 'negative-prompt') } : {}),
    numImages: int(flags, 'num-images', 1),
    steps: int(flags, 'steps', 1),
    guidance: num(flags, 'guidance'),
    seed: int(flags, 'seed'),
    ...(optStr(flags, 'width') !== undefined ? { width: int(flags, 'width', 8) } : {}),
    ...(optStr(flags, 'height') !== undefined ? { height: int(flags, 'height', 8) } : {}),
    karras: bool(flags, 'karras'),
    progress: true,
    ...(scheduler ? { scheduler } : {}),
  };
  return { pipelineDir: str(flags, 'pipeline'), prompts, batch: optStr(flags, 'prompts') !== undefined || prompts.length > 1, out: str(flags, 'out'), eraser, sae: optStr(flags, 'sae'), compare, request };
}

/** Short content hash naming an eraser file in PNG metadata. */
function fileId(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex').slice(0, 16);
}

function pngText(img: GeneratedImage, res: GenerateResult, req: Plan['request'], eraserId: string | undefined, numImages: number): Record<string, string> {
  const t: Record<string, string> = {
    prompt: img.prompt,
    negative_prompt: img.negativePrompt,
    seed: String(img.seed),
    steps: String(req.steps),
    scheduler: res.scheduler + (req.karras ? ' karras' : ''),
    guidance: String(req.guidance),
    size: `${img.width}x${img.height}`,
    image_index: `${img.index} of ${numImages}`,
    software: 'itd',
  };
  if (eraserId) t['eraser'] = eraserId;
  if (img.erased !== undefined) t['erased'] = String(img.erased);
  return t;
}

/** out.png -> out.png, or out-<k>.png for image k of several. */
function imagePath(base: string, index: number, count: number): string {
  if (count === 1) return base;
  const ext = path.extname(base);
  return `${base.slice(0, base.length - ext.length)}-${index}${ext || '.png'}`;
}

export async function generateCommand(args: Record<string, string | boolean | string[] | undefined>, deps: GenerateDeps = {}): Promise<void> {
  const p = plan({ ...defaults(), ...args });
  if (p.eraser && !fs.existsSync(p.eraser)) throw new ItdError('not_found', `${p.eraser}: eraser file not found`, { file: p.eraser, field: 'eraser' });
  // Everything checkable before loading: layout, sizes, scheduler, fixed export shapes.
  const layout = inspectPipeline(p.pipelineDir);
  resolveRequest(layout, { ...p.request, prompts: p.prompts.slice(0, 1) });
  if (p.batch) fs.mkdirSync(p.out, { recursive: true });
  else fs.mkdirSync(path.dirname(path.resolve(p.out)), { recursive: true });

  const pipe = await StableDiffusionPipeline.load(layout);
  try {
    for (const part of pipe.text.parts) warnIfTruncated(part.tokenizer, [...p.prompts, ...[p.request.negativePrompt ?? []].flat()]);
    const plain = pipe.textConditioner();
    const erasing = p.eraser ? await (deps.loadConditioner ?? loadEraserConditioner)(p.eraser, pipe.text, p.sae) : undefined;
    const eraserId = p.eraser ? `${path.basename(p.eraser)}#${fileId(p.eraser)}` : undefined;
    const sheet: SheetEntry[] = [];
    for (const [i, prompt] of p.prompts.entries()) {
      const req = { ...p.request, prompts: [prompt] };
      const res = await pipe.generate(req, erasing ?? plain);
      const original = p.compare ? await pipe.generate(req, plain) : undefined;
      const n = res.images.length;
      res.images.forEach((img, k) => {
        const base = p.batch ? path.join(p.out, `${String(i).padStart(4, '0')}.png`) : p.out;
        const file = imagePath(base, k, n);
        const text = pngText(img, res, p.request, eraserId, n);
        if (original) text['layout'] = 'original | erased';
        writeFileAtomic(file, encodePng(original ? sideBySide([original.images[k]!, img]) : img, text));
        process.stdout.write(`${file}\n`);
        sheet.push({ file: path.basename(file), prompt, caption: caption(img, res, p) });
      });
      const tm = res.timings;
      process.stderr.write(`generate: ${tm.unetCalls} UNet calls (batch ${tm.unetBatch}) in ${((tm.textMs + tm.unetMs + tm.loopMs + tm.vaeMs + tm.postMs) / 1000).toFixed(1)} s\n`);
    }
    if (p.batch) {
      const index = path.join(p.out, 'index.html');
      writeFileAtomic(index, contactSheet(`itd generate: ${path.basename(p.pipelineDir)}${eraserId ? `, eraser ${eraserId}` : ''}`, sheet));
      process.stdout.write(`${index}\n`);
    }
  } finally {
    await pipe.release();
  }
}

function caption(img: GeneratedImage, res: GenerateResult, p: Plan): string {
  const parts = [`seed ${img.seed}`, `${res.scheduler} ${p.request.steps} steps`, `guidance ${p.request.guidance}`];
  if (img.erased !== undefined) parts.push(img.erased ? 'erased' : 'passed through');
  if (p.compare) parts.push('original | erased');
  return parts.join(', ');
}

export function generateSpec(deps: GenerateDeps = {}): CommandSpec {
  return {
    name: 'generate',
    usage: 'generate --pipeline DIR (--prompt P --out OUT.png | --prompts FILE --out DIR) [--eraser E.json --sae SAE_DIR | --eraser ERASER_SET.json] [--compare] [--scheduler pndm|ddim|euler|euler-a|dpm++2m] [--karras] [--steps 30] [--guidance 7.5] [--seed 0] [--width W --height H (default: from the pipeline, 512 SD1.x, 1024 SDXL)] [--num-images 1]',
    flags: GENERATE_FLAGS,
    run: (flags) => generateCommand(flags, deps),
  };
}
