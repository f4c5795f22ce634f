/**
 * Multi-part erasers (ERASER_SET.json): one eraser + SAE per text encoder of a pipeline (SDXL:
 * text_encoder and text_encoder_2), applied together by encodeErased. The file only points at
 * the per-part eraser files and SAE directories (paths relative to it), so each part stays an
 * ordinary eraser that `itd eraser add/calibrate` edit as usual.
 *
 *   { "format": "itd-eraser-set/1", "parts": [ { "eraser": "e2.json", "sae": "sae2" }, ... ] }
 */
import fs from 'node:fs';
import path from 'node:path';
import { pickPart, resolveItdPart, type TextConditioning } from '../encoder/index.js';
import { configError, ItdError } from '../errors.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { loadSae, saeIdentity } from '../sae/index.js';
import { ConceptEraser } from './eraser.js';

export const ERASER_SET_FORMAT = 'itd-eraser-set/1';

export interface EraserSetPart {
  eraser: string;
  sae: string;
}

/** True when `file` is an eraser set (not a single-part eraser). */
export function isEraserSet(file: string): boolean {
  try {
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { format?: unknown }).format === ERASER_SET_FORMAT;
  } catch {
    return false;
  }
}

/** The set's parts with paths resolved against its directory. */
export function readEraserSet(file: string): EraserSetPart[] {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ItdError('format', `${file}: cannot read eraser set: ${(e as Error).message}`, { file, cause: e });
  }
  const o = raw as { format?: unknown; parts?: unknown };
  if (o?.format !== ERASER_SET_FORMAT) throw configError(file, 'format', `must be '${ERASER_SET_FORMAT}'`);
  if (!Array.isArray(o.parts) || o.parts.length === 0) throw configError(file, 'parts', 'must be a non-empty array of {eraser, sae}');
  const dir = path.dirname(file);
  return o.parts.map((p: unknown, i) => {
    const q = p as Partial<EraserSetPart>;
    if (typeof q?.eraser !== 'string' || typeof q.sae !== 'string') throw configError(file, `parts[${i}]`, 'must be {"eraser": "E.json", "sae": "SAE_DIR"}');
    return { eraser: path.resolve(dir, q.eraser), sae: path.resolve(dir, q.sae) };
  });
}

export function writeEraserSet(file: string, parts: EraserSetPart[]): void {
  const dir = path.dirname(path.resolve(file));
  writeJsonAtomic(file, { format: ERASER_SET_FORMAT, parts: parts.map((p) => ({ eraser: path.relative(dir, path.resolve(p.eraser)), sae: path.relative(dir, path.resolve(p.sae)) })) });
}

/** One ConceptEraser per part, each on the encoder its SAE was trained on; two parts on one encoder is an error. */
export async function loadEraserSet(file: string, text: TextConditioning): Promise<ConceptEraser[]> {
  const erasers: ConceptEraser[] = [];
  for (const p of readEraserSet(file)) {
    const sae = loadSae(p.sae);
    const model = pickPart(text.parts, resolveItdPart(text.layout.dir, undefined, sae.cfg.hookpoint, `${p.sae}`).name, undefined, text.layout);
    if (erasers.some((e) => e.model.name === model.name)) {
      throw new ItdError('usage', `${file}: two parts erase ${model.name}; a set holds one eraser per text encoder`, { file, field: 'parts' });
    }
    erasers.push(await ConceptEraser.load({ model, sae, eraser: p.eraser, saeId: saeIdentity(p.sae) }));
  }
  return erasers;
}
