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

/**
 * Read-only descriptors held from a model's load to its release: a checkpoint renamed over the
 * path meanwhile (as itd's writers and downloads replace files) cannot mix into what was loaded.
 * After close(), fd() opens the path again.
 */
export class HeldFiles {
  private readonly fds = new Map<string, number>();

  constructor(files: Iterable<string>, private readonly what: string) {
    for (const f of files) this.fd(f);
  }

  fd(file: string): number {
    let fd = this.fds.get(file);
    if (fd === undefined) this.fds.set(file, (fd = openRegularFile(file, this.what)));
    return fd;
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }
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
  if (opts.replace) return new TextDecoder('utf-8').decode(bytes); // drops a leading BOM, as the strict decoder does
  try {
    return strictUtf8.decode(bytes); // one pass over the whole file; lines are looked at only to name a bad one
  } catch {
    const bad = invalidUtf8Line(bytes) ?? 1;
    throw new ItdError('format', `${file}: line ${bad}: invalid UTF-8 in ${what}`, {
      file, field: `line ${bad}`, hint: opts.hint ?? 're-save the file as UTF-8',
    });
  }
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

/**
 * A JSON file holding one object of non-negative integers (a tokenizer's vocab.json: token -> id)
 * as its entries in file order, with readJsonFile's checks (strict UTF-8, valid JSON, no repeated
 * key); anything that is not an object gives undefined. Own code for speed: a direct scan of the
 * usual form (plain digits, string keys) builds CLIP's 49408 entries in about a quarter of the
 * time JSON.parse, the repeated-key scan and Object.entries take together; any other form (other
 * number syntax, nested values, invalid JSON) goes through readJsonFile, which reports errors.
 */
export function readJsonIntEntries(file: string, what: string): Map<string, unknown> | undefined {
  const text = readTextFile(file, what);
  const fast = scanIntObject(text);
  if (fast) return fast;
  const json = parseJsonStrict(text, file, what);
  return json !== null && typeof json === 'object' && !Array.isArray(json) ? new Map(Object.entries(json)) : undefined;
}

const isJsonSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** `{"key": digits, ...}` (JSON whitespace anywhere, escapes in keys) as a Map; undefined for any other text. */
function scanIntObject(text: string): Map<string, number> | undefined {
  const out = new Map<string, number>();
  let i = 0;
  const skip = (): void => {
    while (isJsonSpace(text.charCodeAt(i))) i++;
  };
  skip();
  if (text.charCodeAt(i++) !== 0x7b /* { */) return undefined;
  skip();
  if (text.charCodeAt(i) === 0x7d /* } */) return allSpaceAfter(text, i + 1) ? out : undefined;
  for (;;) {
    if (text.charCodeAt(i) !== 0x22 /* " */) return undefined;
    let j = i + 1;
    let escaped = false;
    for (let c = text.charCodeAt(j); c !== 0x22; c = text.charCodeAt(j)) {
      if (c < 0x20 || Number.isNaN(c)) return undefined; // raw control character, or the text ended
      escaped ||= c === 0x5c; /* \ */
      j += c === 0x5c ? 2 : 1;
    }
    let key: string;
    try {
      key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
    } catch {
      return undefined;
    }
    i = j + 1;
    skip();
    if (text.charCodeAt(i++) !== 0x3a /* : */) return undefined;
    skip();
    const start = i;
    let value = 0;
    for (let c = text.charCodeAt(i); c >= 0x30 && c <= 0x39; c = text.charCodeAt(++i)) value = value * 10 + (c - 0x30);
    // Plain digits only (no leading zero, sign, fraction or exponent; exact in a double); else the general path.
    if (i === start || i - start > 15 || (text.charCodeAt(start) === 0x30 && i - start > 1)) return undefined;
    if (out.has(key)) return undefined; // repeated key: readJsonFile names it
    out.set(key, value);
    skip();
    const c = text.charCodeAt(i++);
    if (c === 0x7d /* } */) return allSpaceAfter(text, i) ? out : undefined;
    if (c !== 0x2c /* , */) return undefined;
    skip();
  }
}

function allSpaceAfter(text: string, i: number): boolean {
  while (isJsonSpace(text.charCodeAt(i))) i++;
  return i === text.length;
}

/** A JSON file that must hold an object; errors name the file. */
export function readJsonObject(file: string, what: string): JsonObject {
  return asObject(readJsonFile(file, what), file, '');
}
