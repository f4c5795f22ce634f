/**
 * File validation from a format's one TypeBox schema. Each itd file format (eraser, activation
 * manifest, SAE cfg.json, training config) is declared once as a TypeBox schema beside the code
 * that owns it; its TS type is `Static<typeof Schema>`, the server's OpenAPI document embeds the
 * same JSON Schema, and `checkFile` turns TypeBox's first error into an ItdError('config') naming
 * the file and the field (`concepts[0].features[1].latent`), in the wording of src/io/fields.ts.
 *
 * TypeBox builds plain JSON Schema, which is what Fastify validates routes with and OpenAPI
 * documents. The @sinclair/typebox 0.34 line: @fastify/type-provider-typebox 5 (for Fastify 5,
 * the version itd runs) peers on it, and its declarations cost a strict consumer's tsc (no
 * skipLibCheck) ~11 s where the typebox 1.x line's cost ~68 s (measured here, loaded machine).
 */
import { Value, type Static, type TSchema } from './typebox.js';
import { configError } from '../errors.js';

type Json = Record<string, unknown>;

const quote = (v: unknown) => (typeof v === 'string' ? `'${v}'` : JSON.stringify(v));

/** `a`, `a or b`, `one of a, b, c`. */
function alternatives(parts: string[]): string {
  return parts.length <= 2 ? parts.join(' or ') : `one of ${parts.join(', ')}`;
}

/** What a (sub)schema requires, in words: "a non-negative integer", "'official' or 'residual'". */
export function describeSchema(s: Json): string {
  if (s['const'] !== undefined) return quote(s['const']);
  if (Array.isArray(s['anyOf'])) return alternatives((s['anyOf'] as Json[]).map(describeSchema));
  const lo = s['minimum'] as number | undefined;
  const hi = s['maximum'] as number | undefined;
  const xlo = s['exclusiveMinimum'] as number | undefined;
  const xhi = s['exclusiveMaximum'] as number | undefined;
  const bounds = [lo !== undefined ? `>= ${lo}` : xlo !== undefined ? `> ${xlo}` : '', hi !== undefined ? `<= ${hi}` : xhi !== undefined ? `< ${xhi}` : ''].filter(Boolean);
  const range = lo !== undefined && hi !== undefined ? ` in [${lo}, ${hi}]` : lo !== undefined && xhi !== undefined ? ` in [${lo}, ${xhi})` : bounds.length ? ` ${bounds.join(' and ')}` : '';
  const noted = (what: string) => (s['pattern'] !== undefined && typeof s['description'] === 'string' ? `${what} (${s['description']})` : what);
  switch (s['type']) {
    case 'integer': return lo === 0 && hi === undefined ? 'a non-negative integer' : lo === 1 && hi === undefined ? 'a positive integer' : `an integer${range}`;
    case 'number': return `a finite number${range}`;
    case 'string': return noted('a string');
    case 'boolean': return 'true or false';
    case 'null': return 'null';
    case 'array': {
      const items = s['items'] as Json | undefined;
      const simple = items && ['string', 'integer', 'number'].includes(items['type'] as string) && items['minimum'] === undefined;
      const what = simple ? `an array of ${items['type'] === 'string' ? 'strings' : 'numbers'}` : 'an array';
      const min = s['minItems'] as number | undefined;
      return min ? `${what} of at least ${min} item${min === 1 ? '' : 's'}` : what;
    }
    case 'object': return 'a JSON object';
    default: return 'a valid value';
  }
}

/** `/concepts/0/name` -> `concepts[0].name`. */
function fieldName(pointer: string): string {
  const keys = pointer.split('/').slice(1).map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
  return keys.reduce((out, k) => (/^\d+$/.test(k) ? `${out}[${k}]` : out ? `${out}.${k}` : k), '');
}

interface Fault { path: string; schema: Json; value: unknown }

/**
 * The first fault of `value`: a wrong `format` tag first (the file is something else), and inside
 * a union such as `Calibration | null` the fault within the branch the value is trying to be.
 */
function firstFault(schema: TSchema, value: unknown, prefix: string): Fault | undefined {
  const errors = [...Value.Errors(schema, value)];
  const tag = (x: (typeof errors)[number]) => x.path === '/format' || (x.schema as Json)['const'] !== undefined;
  const e = errors.find(tag) ?? errors[0];
  if (!e) return undefined;
  const sub = e.schema as Json;
  const kind = Array.isArray(e.value) ? 'array' : typeof e.value === 'object' && e.value !== null ? 'object' : undefined;
  const branch = kind && Array.isArray(sub['anyOf']) ? (sub['anyOf'] as Json[]).find((b) => b['type'] === kind) : undefined;
  if (branch) return firstFault(branch as unknown as TSchema, e.value, prefix + e.path) ?? { path: prefix + e.path, schema: sub, value: e.value };
  return { path: prefix + e.path, schema: sub, value: e.value };
}

/**
 * `raw` as the schema's type, or an ItdError('config') naming `file` and the first bad field;
 * `notes` adds a hint to a field's message (e.g. format: 'not an itd eraser?').
 */
export function checkFile<T extends TSchema>(schema: T, raw: unknown, file: string, notes: Record<string, string> = {}): Static<T> {
  if (Value.Check(schema, raw)) return raw as Static<T>;
  const f = firstFault(schema, raw, '');
  if (!f) return raw as Static<T>;
  const field = fieldName(f.path) || '(top level)';
  const note = notes[field] ? ` (${notes[field]})` : '';
  if (f.value === undefined) throw configError(file, field, `is missing (expected ${describeSchema(f.schema)}${note})`);
  throw configError(file, field, `must be ${describeSchema(f.schema)}${note}, got ${Array.isArray(f.value) ? `an array of ${f.value.length}` : JSON.stringify(f.value)}`);
}
