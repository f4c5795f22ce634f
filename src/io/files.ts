/**
 * Input files read defensively: every file itd loads (weights, configs, tokenizer files, prompts)
 * is stat'ed before it is opened, so a directory, FIFO or device where a file is expected is a
 * clear error instead of a hang (a FIFO blocks open() until a writer appears) or a device read; a
 * symlink loop is named as such; text is decoded as strict UTF-8 and JSON objects may not repeat a
 * key (JSON.parse silently keeps the last one, so two readers of one file could disagree).
 */
import fs from 'node:fs';
import { ItdError } from '../errors.js';
import { asObject, type JsonObject } from './fields.js';

function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function notRegular(file: string, what: string, st: fs.Stats): ItdError {
  return new ItdError('format', `${file}: is ${kindOf(st)}, expected ${what} (a regular file)`, { file });
}

/** Maps an OS error on `file` to an ItdError; `what` says what the file should have been. */
function inputError(file: string, what: string, e: unknown): ItdError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new ItdError('not_found', `${file}: ${what} not found`, { file, cause: e });
  if (code === 'ELOOP') return new ItdError('io', `${file}: symlink loop (ELOOP) where ${what} was expected`, { file, cause: e });
  if (code === 'ENOTDIR') return new ItdError('not_found', `${file}: a parent of this path is not a directory`, { file, cause: e });
  return new ItdError('io', `${file}: cannot read ${what}: ${(e as Error).message}`, { file, cause: e });
}

/** Stats a path that must exist (following symlinks); missing paths and symlink loops are ItdErrors naming it. */
export function statInput(file: string, what: string): fs.Stats {
  try {
    return fs.statSync(file);
  } catch (e) {
    throw inputError(file, what, e);
  }
}

/** Stats `file` (following symlinks) and requires a regular file. */
export function statRegularFile(file: string, what: string): fs.Stats {
  const st = statInput(file, what);
  if (!st.isFile()) throw notRegular(file, what, st);
  return st;
}

/**
 * A read-only descriptor of a regular file. O_NONBLOCK keeps open() from blocking should the path
 * be swapped for a FIFO between the stat and the open; the fstat afterwards catches that swap.
 */
export function openRegularFile(file: string, what: string): number {
  statRegularFile(file, what);
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    throw inputError(file, what, e);
  }
  const st = fs.fstatSync(fd);
  if (!st.isFile()) {
    fs.closeSync(fd);
    throw notRegular(file, what, st);
  }
  return fd;
}

/** Whole file contents (configs, tokenizer files, prompt lists: small files). */
export function readInputFile(file: string, what: string): Buffer {
  const fd = openRegularFile(file, what);
  try {
    return fs.readFileSync(fd);
  } catch (e) {
    throw inputError(file, what, e);
  } finally {
    fs.closeSync(fd);
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** 1-based number of the first line holding invalid UTF-8, or undefined if the bytes are valid. */
export function invalidUtf8Line(bytes: Uint8Array): number | undefined {
  let start = 0;
  for (let line = 1; start <= bytes.length; line++) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    try {
      strictUtf8.decode(bytes.subarray(start, end));
    } catch {
      return line;
    }
    start = end + 1;
  }
  return undefined;
}

/** Strict UTF-8 text of a file (a BOM is dropped); invalid bytes are an error naming the line, unless `replace`. */
export function readTextFile(file: string, what: string, opts: { replace?: boolean; hint?: string } = {}): string {
  const bytes = readInputFile(file, what);
  const bad = opts.replace ? undefined : invalidUtf8Line(bytes);
  if (bad !== undefined) {
    throw new ItdError('format', `${file}: line ${bad}: invalid UTF-8 in ${what}`, {
      file, field: `line ${bad}`, hint: opts.hint ?? 're-save the file as UTF-8',
    });
  }
  return new TextDecoder('utf-8').decode(bytes); // drops a leading BOM
}

/**
 * The first key repeated within one JSON object of `text` (which must already be valid JSON), with
 * the path of that object; undefined if none. A linear scan over strings and brackets.
 */
export function duplicateJsonKey(text: string): { key: string; path: string } | undefined {
  const stack: ({ keys: Set<string>; path: string; expectKey: boolean } | { array: true; path: string; index: number })[] = [];
  let lastKey = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      while (text.charCodeAt(j) !== 0x22) {
        const backslash = text.charCodeAt(j) === 0x5c; /* \ */
        escaped ||= backslash;
        j += backslash ? 2 : 1;
      }
      const top = stack.at(-1);
      if (top && 'keys' in top && top.expectKey) {
        // A key without escapes is its own text (JSON.parse per key was most of a vocab.json's check).
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (top.keys.has(key)) return { key, path: top.path || '(top level)' };
        top.keys.add(key);
        top.expectKey = false;
        lastKey = key;
      }
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const top = stack.at(-1);
      const here = top === undefined ? '' : 'keys' in top ? `${top.path}.${lastKey}` : `${top.path}[${top.index}]`;
      stack.push(c === 0x7b ? { keys: new Set(), path: here, expectKey: true } : { array: true, path: here, index: 0 });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack.at(-1);
      if (top && 'keys' in top) top.expectKey = true;
      else if (top) top.index++;
    }
  }
  return undefined;
}

/** Parses JSON text from `file`, rejecting repeated keys; errors name the file. */
export function parseJsonStrict(text: string, file: string, what: string): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ItdError('format', `${file}: invalid JSON in ${what}: ${(e as Error).message}`, { file, cause: e });
  }
  const dup = duplicateJsonKey(text);
  if (dup) {
    throw new ItdError('format', `${file}: ${what} repeats the key ${JSON.stringify(dup.key)} in ${dup.path} (JSON readers disagree on which copy wins)`, {
      file, field: dup.key,
    });
  }
  return parsed;
}

/** A JSON file read with readTextFile + parseJsonStrict. */
export function readJsonFile(file: string, what: string): unknown {
  return parseJsonStrict(readTextFile(file, what), file, what);
}

/** A JSON file that must hold an object; errors name the file. */
export function readJsonObject(file: string, what: string): JsonObject {
  return asObject(readJsonFile(file, what), file, '');
}
