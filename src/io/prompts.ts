// Prompt lists from .txt (one per line), .csv (a `prompt` column) or .json (array of strings).
import { extname } from 'node:path';
import { parseJsonStrict, readTextFile } from './files.js';
import { ItdError } from '../errors.js';

export interface PromptReadOptions {
  /** Replace invalid UTF-8 with U+FFFD instead of failing (CLI: --utf8-replace). */
  replaceInvalidUtf8?: boolean;
}

/**
 * File text without a UTF-8 BOM (spreadsheet exports often start with one, which would corrupt the
 * first header name). Invalid UTF-8 is an error naming the line: a silent U+FFFD would change the
 * prompt that gets encoded (and could slip a word past the gate).
 */
function readText(path: string, opts: PromptReadOptions): string {
  return readTextFile(path, 'prompt file', {
    replace: opts.replaceInvalidUtf8 === true,
    hint: 're-save the file as UTF-8, or pass --utf8-replace to read invalid bytes as U+FFFD',
  });
}

/**
 * RFC 4180 records: comma separated, fields optionally in double quotes with "" for a quote,
 * quoted fields may span lines, CRLF or LF line ends. Blank lines are skipped.
 */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let quoted = false; // current field was quoted (so `""` alone still counts as content)
  let i = 0;
  let line = 1;
  const endField = () => {
    record.push(field);
    field = '';
    quoted = false;
  };
  const endRecord = () => {
    if (record.length > 0 || field !== '' || quoted) {
      endField();
      records.push(record);
    }
    record = [];
  };
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      if (field !== '' || quoted) throw new ItdError('format', `CSV line ${line}: unexpected '"' inside an unquoted field`);
      const close = quotedEnd(text, i + 1, line);
      field = text.slice(i + 1, close).replaceAll('""', '"');
      line += countNewlines(field);
      quoted = true;
      i = close + 1;
      const next = text[i];
      if (next !== undefined && next !== ',' && next !== '\n' && next !== '\r') {
        throw new ItdError('format', `CSV line ${line}: expected ',' or end of line after closing quote, got ${JSON.stringify(next)}`);
      }
    } else if (c === ',') {
      endField();
      i++;
    } else if (c === '\n' || c === '\r') {
      endRecord();
      i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
      line++;
    } else {
      field += c;
      i++;
    }
  }
  endRecord();
  return records;
}

/** Index of the closing quote of a field whose content starts at `start`. */
function quotedEnd(text: string, start: number, line: number): number {
  let j = start;
  for (;;) {
    j = text.indexOf('"', j);
    if (j < 0) throw new ItdError('format', `CSV line ${line}: unterminated quoted field`);
    if (text[j + 1] !== '"') return j;
    j += 2;
  }
}

function countNewlines(s: string): number {
  let n = 0;
  for (const c of s) if (c === '\n') n++;
  return n;
}

/** CSV with a header row; every row must have as many fields as the header. */
export function readCsv(path: string, opts: PromptReadOptions = {}): { header: string[]; rows: string[][] } {
  const text = readText(path, opts);
  let records: string[][];
  try {
    records = parseCsv(text);
  } catch (e) {
    throw new ItdError('format', `${path}: ${(e as Error).message}`, { file: path, cause: e });
  }
  const [header, ...rows] = records;
  if (!header) throw new ItdError('format', `${path}: CSV file is empty (a header row is required)`, { file: path });
  rows.forEach((r, k) => {
    if (r.length !== header.length) {
      throw new ItdError('format', `${path}: CSV row ${k + 1} has ${r.length} fields but the header has ${header.length} (${header.join(', ')})`, { file: path });
    }
  });
  return { header, rows };
}

function promptsFromCsv(path: string, opts: PromptReadOptions): string[] {
  const { header, rows } = readCsv(path, opts);
  const col = header.indexOf('prompt');
  if (col < 0) throw new ItdError('format', `${path}: CSV has no "prompt" column (columns found: ${header.map((h) => JSON.stringify(h)).join(', ')})`, { file: path, field: 'prompt' });
  // Empty cells are kept so prompt i stays aligned with row i for callers reading other columns.
  return rows.map((r) => r[col]!);
}

function promptsFromJson(path: string, opts: PromptReadOptions): string[] {
  const parsed = parseJsonStrict(readText(path, opts), path, 'prompt list');
  if (!Array.isArray(parsed)) throw new ItdError('format', `${path}: expected a JSON array of strings`, { file: path });
  parsed.forEach((p, k) => {
    if (typeof p !== 'string') throw new ItdError('format', `${path}: element ${k} is ${JSON.stringify(p)}, expected a string`, { file: path, field: `[${k}]` });
  });
  return parsed;
}

function promptsFromTxt(path: string, opts: PromptReadOptions): string[] {
  return readText(path, opts)
    .split('\n')
    .map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l))
    .filter((l) => l.trim() !== '');
}

export function readPrompts(path: string, opts: PromptReadOptions = {}): string[] {
  const ext = extname(path).toLowerCase();
  const readers: Record<string, (p: string, o: PromptReadOptions) => string[]> = { '.txt': promptsFromTxt, '.csv': promptsFromCsv, '.json': promptsFromJson };
  const read = readers[ext];
  if (!read) throw new ItdError('usage', `${path}: unknown prompt file extension ${JSON.stringify(ext)} (expected .txt, .csv or .json)`, { file: path, hint: 'name it .txt, .csv or .json' });
  const prompts = read(path, opts);
  if (prompts.length === 0) throw new ItdError('format', `${path}: no prompts found`, { file: path });
  return prompts;
}

const CONCEPT_COLUMNS = ['class', 'concept', 'artist', 'name'];

/**
 * Labelled prompts from a CSV with a concept column (class, concept, artist or name) and a prompt
 * column, in file order; undefined when the file has no such columns.
 */
export function readConceptRows(path: string, opts: PromptReadOptions = {}): { name: string; prompt: string }[] | undefined {
  const { header, rows } = readCsv(path, opts);
  const col = header.findIndex((h) => CONCEPT_COLUMNS.includes(h));
  const p = header.indexOf('prompt');
  return col < 0 || p < 0 ? undefined : rows.map((r) => ({ name: r[col]!, prompt: r[p]! }));
}
