import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseCsv, readConceptRows, readCsv, readPrompts } from '../src/io/prompts.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'itd-'));
function file(name: string, text: string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
}

function throwsNaming(fn: () => unknown, p: string, re: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e.message.includes(p), `message should name ${p}: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

test('txt: one prompt per line, empty lines skipped, CR stripped', () => {
  const p = file('a.txt', 'a cat\r\n\r\n  \na dog, running\n"quoted"\nlast');
  assert.deepEqual(readPrompts(p), ['a cat', 'a dog, running', '"quoted"', 'last']);
});

test('txt with BOM', () => {
  assert.deepEqual(readPrompts(file('bom.txt', '\uFEFFfirst\nsecond\n')), ['first', 'second']);
});

test('parseCsv: quotes, commas, escaped quotes, embedded newlines, CRLF', () => {
  const text = 'id,prompt,class\r\n1,"a cat, sitting","nudity"\r\n2,"she said ""hi""\r\nthen left",\r\n3,plain,x\n\n4,"",y';
  assert.deepEqual(parseCsv(text), [
    ['id', 'prompt', 'class'],
    ['1', 'a cat, sitting', 'nudity'],
    ['2', 'she said "hi"\r\nthen left', ''],
    ['3', 'plain', 'x'],
    ['4', '', 'y'],
  ]);
});

test('parseCsv: trailing newline, lone CR line ends, quoted empty record', () => {
  assert.deepEqual(parseCsv('a,b\n'), [['a', 'b']]);
  assert.deepEqual(parseCsv('a\rb\r'), [['a'], ['b']]);
  assert.deepEqual(parseCsv('""\n,'), [[''], ['', '']]);
  assert.deepEqual(parseCsv(''), []);
});

test('parseCsv: malformed quoting is an error with a line number', () => {
  assert.throws(() => parseCsv('a\n"open'), /line 2: unterminated quoted field/);
  assert.throws(() => parseCsv('a"b'), /line 1: unexpected '"'/);
  assert.throws(() => parseCsv('"x"y'), /line 1: expected ',' or end of line after closing quote, got "y"/);
  assert.throws(() => parseCsv('"multi\nline"\n"x"y'), /line 3/);
});

test('csv: prompt column extracted; other columns via readCsv', () => {
  const p = file('p.csv', '\uFEFFcase,prompt,class\n0,"nude, figure",nudity\n1,"a ""van gogh"" painting\nwith stars",van gogh\r\n');
  assert.deepEqual(readPrompts(p), ['nude, figure', 'a "van gogh" painting\nwith stars']);
  const { header, rows } = readCsv(p);
  assert.deepEqual(header, ['case', 'prompt', 'class']);
  assert.deepEqual(rows.map((r) => r[2]), ['nudity', 'van gogh']);
});

test('csv: missing prompt column lists the columns found (case-sensitive)', () => {
  const p = file('noprompt.csv', 'id,Prompt,text\n1,a,b\n');
  throwsNaming(() => readPrompts(p), p, /no "prompt" column \(columns found: "id", "Prompt", "text"\)/);
});

test('csv: ragged rows and bad quoting name the file', () => {
  const ragged = file('ragged.csv', 'prompt,class\na,b\nc\n');
  throwsNaming(() => readCsv(ragged), ragged, /row 2 has 1 fields but the header has 2/);
  const bad = file('badquote.csv', 'prompt\n"unterminated\n');
  throwsNaming(() => readPrompts(bad), bad, /unterminated quoted field/);
});

test('csv: header only or empty file is an error', () => {
  const headerOnly = file('h.csv', 'prompt\n');
  throwsNaming(() => readPrompts(headerOnly), headerOnly, /no prompts found/);
  const empty = file('e.csv', '');
  throwsNaming(() => readPrompts(empty), empty, /CSV file is empty/);
});

test('json: array of strings', () => {
  assert.deepEqual(readPrompts(file('p.json', '["a", "b \\"c\\"", ""]')), ['a', 'b "c"', '']);
  const notArray = file('o.json', '{"prompts": ["a"]}');
  throwsNaming(() => readPrompts(notArray), notArray, /expected a JSON array of strings/);
  const nonString = file('n.json', '["a", 3]');
  throwsNaming(() => readPrompts(nonString), nonString, /element 1 is 3, expected a string/);
  const invalid = file('i.json', '["a",');
  throwsNaming(() => readPrompts(invalid), invalid, /invalid JSON/);
  const empty = file('empty.json', '[]');
  throwsNaming(() => readPrompts(empty), empty, /no prompts found/);
});

test('empty txt, unknown extension and missing file are errors naming the file', () => {
  const empty = file('empty.txt', '\n\r\n   \n');
  throwsNaming(() => readPrompts(empty), empty, /no prompts found/);
  const yaml = file('p.yaml', '- a');
  throwsNaming(() => readPrompts(yaml), yaml, /unknown prompt file extension "\.yaml" \(expected \.txt, \.csv or \.json\)/);
  const missing = path.join(dir, 'missing.txt');
  throwsNaming(() => readPrompts(missing), missing, /prompt file not found/);
});

test('extension match is case-insensitive', () => {
  assert.deepEqual(readPrompts(file('UP.TXT', 'x\n')), ['x']);
});

test('readConceptRows: labelled rows from a class/prompt CSV, undefined without those columns', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'itd-concepts-'));
  const labelled = path.join(dir, 'a.csv');
  fs.writeFileSync(labelled, 'artist,prompt\nMonet,"water lilies, by Monet"\nDali,a melting clock\n');
  assert.deepEqual(readConceptRows(labelled), [{ name: 'Monet', prompt: 'water lilies, by Monet' }, { name: 'Dali', prompt: 'a melting clock' }]);
  const plain = path.join(dir, 'b.csv');
  fs.writeFileSync(plain, 'id,prompt\n1,x\n');
  assert.equal(readConceptRows(plain), undefined);
});
