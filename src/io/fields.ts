/**
 * Typed field access for JSON config files (cfg.json, config.json, eraser, manifest, checkpoint
 * state): a wrong type (`"layer": "8"`) is an ItdError naming the file and the field, never a
 * silent coercion. Absent (or null) optional fields read as undefined.
 */
import { configError } from '../errors.js';

export type JsonObject = Record<string, unknown>;

export function isJsonObject(x: unknown): x is JsonObject {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** `raw` as an object, or a config error naming `field` (or the whole file when field is ''). */
export function asObject(raw: unknown, file: string, field: string): JsonObject {
  if (isJsonObject(raw)) return raw;
  throw configError(file, field || '(top level)', `must be a JSON object, got ${Array.isArray(raw) ? 'an array' : JSON.stringify(raw)}`);
}

const present = (o: JsonObject, key: string): boolean => o[key] !== undefined && o[key] !== null;

export function optInt(o: JsonObject, key: string, file: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (!present(o, key)) return undefined;
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw configError(file, key, `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

export function optNumber(o: JsonObject, key: string, file: string): number | undefined {
  if (!present(o, key)) return undefined;
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw configError(file, key, `must be a finite number, got ${JSON.stringify(v)}`);
  return v;
}

export function optString(o: JsonObject, key: string, file: string): string | undefined {
  if (!present(o, key)) return undefined;
  const v = o[key];
  if (typeof v !== 'string') throw configError(file, key, `must be a string, got ${JSON.stringify(v)}`);
  return v;
}

export function optBoolean(o: JsonObject, key: string, file: string): boolean | undefined {
  if (!present(o, key)) return undefined;
  const v = o[key];
  if (typeof v !== 'boolean') throw configError(file, key, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** One of `allowed` (a string enum). */
export function optOneOf<T extends string>(o: JsonObject, key: string, file: string, allowed: readonly T[]): T | undefined {
  const v = optString(o, key, file);
  if (v !== undefined && !allowed.includes(v as T)) {
    throw configError(file, key, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as T | undefined;
}
