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
import { ItdError } from '../errors.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { readJsonFile } from '../io/files.js';
import { checkFile } from '../io/schema.js';
import { Type, type Static } from '../io/typebox.js';
import { loadSae, saeIdentity } from '../sae/index.js';
import { ConceptEraser } from './eraser.js';

export const ERASER_SET_FORMAT = 'itd-eraser-set/1';

const PartSchema = Type.Object({
  eraser: Type.String({ minLength: 1, description: "the part's eraser file, relative to the set" }),
  sae: Type.String({ minLength: 1, description: "the part's SAE directory, relative to the set" }),
});
export type EraserSetPart = Static<typeof PartSchema>;

/** ERASER_SET.json: one eraser + SAE per text encoder (see the module comment). */
export const EraserSetSchema = Type.Object({
  format: Type.Literal(ERASER_SET_FORMAT),
  parts: Type.Array(PartSchema, { minItems: 1 }),
});

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
  const set = checkFile(EraserSetSchema, readJsonFile(file, 'eraser set'), file, { format: 'not an itd eraser set?' });
  const dir = path.dirname(file);
  return set.parts.map((p) => ({ eraser: path.resolve(dir, p.eraser), sae: path.resolve(dir, p.sae) }));
}

export function writeEraserSet(file: string, parts: EraserSetPart[]): void {
  const dir = path.dirname(path.resolve(file));
  writeJsonAtomic(file, { format: ERASER_SET_FORMAT, parts: parts.map((p) => ({ eraser: path.relative(dir, path.resolve(p.eraser)), sae: path.relative(dir, path.resolve(p.sae)) })) });
}

/** One ConceptEraser per part, each on the encoder its SAE was trained on; two parts on one encoder is an error. */
export async function loadEraserSet(file: string, text: TextConditioning, canonical = true): Promise<ConceptEraser[]> {
  const erasers: ConceptEraser[] = [];
  for (const p of readEraserSet(file)) {
    const sae = loadSae(p.sae);
    const model = pickPart(text.parts, resolveItdPart(text.layout.dir, undefined, sae.cfg.hookpoint, `${p.sae}`).name, undefined, text.layout);
    if (erasers.some((e) => e.model.name === model.name)) {
      throw new ItdError('usage', `${file}: two parts erase ${model.name}; a set holds one eraser per text encoder`, { file, field: 'parts' });
    }
    erasers.push(await ConceptEraser.load({ model, sae, eraser: p.eraser, saeId: saeIdentity(p.sae), canonical }));
  }
  return erasers;
}
