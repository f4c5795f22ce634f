/** Schemas and checks shared by the routes. */
import type { GatePolicy } from '../../erase/index.js';
import { ApiError } from '../errors.js';
import type { ServeContext } from '../context.js';

/** CLIP keeps 75 tokens; longer text only costs tokenizer time. */
export const MAX_PROMPT_CHARS = 1000;

export const promptList = (max: number, what = 'prompts') => ({
  type: 'array',
  minItems: 1,
  items: { type: 'string', maxLength: MAX_PROMPT_CHARS },
  description: `${what}: 1..${max} strings of at most ${MAX_PROMPT_CHARS} characters (more prompts: 413)`,
}) as const;

const eraserField = { type: 'string', maxLength: 64, description: 'expected eraser id: 404 unknown_eraser when the active eraser differs' } as const;

/** Body of the prompt-batch routes: { prompts, eraser?, ...options }, nothing else. */
export const promptsBody = <P extends Record<string, object>>(maxPrompts: number, options: P) => ({
  type: 'object',
  required: ['prompts'],
  additionalProperties: false,
  properties: { prompts: promptList(maxPrompts), ...options, eraser: eraserField },
}) as const;

/** A decimal integer in a query string (query values stay strings: no type coercion anywhere). */
export const intParam = (description: string) => ({ type: 'string', pattern: '^[0-9]{1,9}$', description }) as const;

export function checkCount(prompts: string[], max: number, what = 'prompts'): void {
  if (prompts.length > max) throw new ApiError(413, 'too_many_prompts', `${prompts.length} ${what} in one request; the limit is ${max}`);
}

export function checkEraserId(ctx: ServeContext, id: string | undefined): void {
  const active = ctx.eraser().id;
  if (id !== undefined && id !== active) throw new ApiError(404, 'unknown_eraser', `eraser '${id}' is not loaded here (active eraser: ${active})`);
}

/** Computes each distinct prompt once (SD clients send the same negative prompt with every image). */
export async function perDistinct<T>(prompts: string[], run: (distinct: string[]) => Promise<T[]>): Promise<T[]> {
  const distinct = [...new Set(prompts)];
  const out = await run(distinct);
  const of = new Map(distinct.map((p, i) => [p, out[i]!]));
  return prompts.map((p) => of.get(p)!);
}

/** The gate needs a threshold: 409 before calibration. */
export function requireThreshold(ctx: ServeContext, policy: GatePolicy): void {
  if (policy === 'gate' && ctx.eraser().spec.threshold === null) {
    throw new ApiError(409, 'not_calibrated', "the eraser has no threshold yet: POST /v1/calibrate first (or use policy 'always'/'never')");
  }
}

export function base64(a: Float32Array | Uint8Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

/** latent -> names of the eraser's concepts that erase it. */
export function conceptsByLatent(ctx: ServeContext): Map<number, string[]> {
  const m = new Map<number, string[]>();
  for (const c of ctx.eraser().spec.concepts) for (const f of c.features) m.set(f.latent, [...(m.get(f.latent) ?? []), c.name]);
  return m;
}
