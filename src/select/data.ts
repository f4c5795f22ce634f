/**
 * Prompt data that ships with itd (data/ at the package root; see data/NOTICE): neutral captions
 * to train and calibrate against, and concept templates split into build and held-out sets.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ItdError } from '../errors.js';

const DATA = new URL('../../data/', import.meta.url);

function dataFile(name: string): string {
  const file = fileURLToPath(new URL(name, DATA));
  if (!fs.existsSync(file)) {
    throw new ItdError('not_found', `${file}: itd's bundled data file is missing (a broken install?)`, { file, hint: 'reinstall itd, or pass your own file (--neutral FILE / --templates FILE)' });
  }
  return file;
}

/** The bundled neutral prompts (4,000 COCO captions, CC BY 4.0). */
export function bundledNeutralPrompts(): string[] {
  return fs.readFileSync(dataFile('neutral-prompts.txt'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
}

export interface TemplateSets {
  build: string[]; // select features and calibrate
  heldout: string[]; // only measure generalisation
}

/** The bundled concept templates. */
export function bundledTemplates(): TemplateSets {
  const file = dataFile('concept-templates.json');
  const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<TemplateSets>;
  for (const k of ['build', 'heldout'] as const) {
    if (!Array.isArray(raw[k]) || raw[k]!.some((t) => typeof t !== 'string' || !t.includes('{}'))) {
      throw new ItdError('config', `${file}: field '${k}' must be an array of templates containing {}`, { file, field: k });
    }
  }
  return raw as TemplateSets;
}
