/**
 * File validation from a format's one TypeBox schema. Each itd file format (eraser, activation
 * manifest, SAE cfg.json, training config) is declared once as a TypeBox schema beside the code
 * that owns it; its TS type is `Static<typeof Schema>`, the server's OpenAPI document embeds the
 * same JSON Schema, and `checkFile` turns TypeBox's first error into an ItdError('config') naming
 * the file and the field (`concepts[0].features[1].latent`), in the wording of src/io/fields.ts.
 *
 * TypeBox (the `typebox` 1.x line): it builds plain JSON Schema, which is what Fastify validates
 * routes with and OpenAPI documents, and @fastify/type-provider-typebox 6 (the provider for
 * Fastify 5, the version itd runs) peers on typebox ^1.
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
      return simple ? `an array of ${items['type'] === 'string' ? 'strings' : 'numbers'}` : 'an array';
    }
    case 'object': return 'a JSON object';
    default: return 'a valid value';
  }
}

/** The sub-schema at a JSON pointer into the *instance* (object properties, array items). */
function schemaAt(root: Json, pointer: string[]): Json | undefined {
  let s: Json | undefined = root;
  for (const key of pointer) {
    if (!s) return undefined;
    if (Array.isArray(s['anyOf'])) s = (s['anyOf'] as Json[]).find((b) => b['type'] === 'object' || b['type'] === 'array') ?? s;
    s = s['type'] === 'array' ? (s['items'] as Json | undefined) : ((s['properties'] as Record<string, Json> | undefined)?.[key]);
  }
  return s;
}

/** `["concepts", "0", "name"]` -> `concepts[0].name`. */
function fieldName(pointer: string[]): string {
  return pointer.reduce((out, k) => (/^\d+$/.test(k) ? `${out}[${k}]` : out ? `${out}.${k}` : k), '');
}

const unescape = (k: string) => k.replace(/~1/g, '/').replace(/~0/g, '~');

/**
 * `raw` as the schema's type, or an ItdError('config') naming `file` and the first bad field;
 * `notes` adds a hint to a field's message (e.g. format: 'not an itd eraser?').
 */
export function checkFile<T extends TSchema>(schema: T, raw: unknown, file: string, notes: Record<string, string> = {}): Static<T> {
  if (Value.Check(schema, raw)) return raw as Static<T>;
  const errors = Value.Errors(schema, raw);
  // A wrong `format` tag says the file is something else: report it before any other field.
  const first = errors.find((e) => schemaAt(schema as unknown as Json, e.instancePath.split('/').slice(1).map(unescape))?.['const'] !== undefined) ?? errors[0];
  if (!first) return raw as Static<T>;
  const pointer = first.instancePath.split('/').slice(1).map(unescape);
  if (first.keyword === 'required') {
    const key = (first.params as { requiredProperties: string[] }).requiredProperties[0]!;
    const field = fieldName([...pointer, key]);
    const sub = schemaAt(schema as unknown as Json, [...pointer, key]);
    throw configError(file, field, `is missing (expected ${sub ? describeSchema(sub) : 'a value'})`);
  }
  const field = fieldName(pointer) || '(top level)';
  let value: unknown = raw;
  for (const k of pointer) value = (value as Record<string, unknown>)[k];
  const sub = schemaAt(schema as unknown as Json, pointer) ?? {};
  const note = notes[field] ? ` (${notes[field]})` : '';
  throw configError(file, field, `must be ${describeSchema(sub)}${note}, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`);
}
