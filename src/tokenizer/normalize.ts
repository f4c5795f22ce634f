/**
 * Text cleaning and pre-tokenisation of OpenAI's CLIP tokenizer (clip/simple_tokenizer.py):
 *   whitespace_clean(basic_clean(text)).lower(), where
 *   basic_clean = ftfy.fix_text, html.unescape twice, strip.
 * ftfy is reproduced for the fixes that matter for prompts; its mojibake repair
 * (fix_encoding: "cafÃ©" -> "café") is heuristic and deliberately not reproduced.
 */

/**
 * Unicode White_Space, which is what Python's `regex` module means by \s. JS \s differs
 * (it adds U+FEFF and lacks U+0085), so the class is spelled out.
 */
const WS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WS_RUN = new RegExp(`[${WS}]+`, 'gu');

/**
 * CLIP's pattern `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
 * with re.IGNORECASE, applied to lowercased text. After lowercasing, the only character
 * that IGNORECASE still folds onto a literal is U+017F (long s -> s), hence `[sſ]`; JS's
 * `i` flag is avoided because with `u` it makes \p{L} match U+0345, whereas the `regex`
 * module (IGNORECASE) matches U+0345 with no alternative at all, so it is skipped like
 * whitespace: it is excluded from the last class too.
 */
const PRETOKEN_RE = new RegExp(
  "<\\|[sſ]tartoftext\\|>|<\\|endoftext\\|>|'[sſ]|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|" +
    `[^${WS}\\u0345\\p{L}\\p{N}]+`,
  'gu',
);

/** Splits cleaned text into the words BPE runs on. */
export function preTokenize(cleaned: string): string[] {
  return Array.from(cleaned.matchAll(PRETOKEN_RE), (m) => m[0]);
}

/** The full CLIP cleaning: ftfy-like fixes, html.unescape twice, whitespace collapse, lowercase. */
export function cleanText(text: string): string {
  const unescaped = htmlUnescape(htmlUnescape(fixText(text)));
  return unescaped.replace(WS_RUN, ' ').replace(/^ | $/g, '').toLowerCase();
}

// ---------------------------------------------------------------- HTML entities

/** Named references of U+00A0..U+00FF, in code-point order; HTML5 also accepts these without ';'. */
const LATIN1_NAMES = (
  'nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr ' +
  'deg plusmn sup2 sup3 acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest ' +
  'Agrave Aacute Acirc Atilde Auml Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ' +
  'ETH Ntilde Ograve Oacute Ocirc Otilde Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig ' +
  'agrave aacute acirc atilde auml aring aelig ccedil egrave eacute ecirc euml igrave iacute icirc iuml ' +
  'eth ntilde ograve oacute ocirc otilde ouml divide oslash ugrave uacute ucirc uuml yacute thorn yuml'
).split(' ');

/** The remaining legacy references (valid without ';'). */
const LEGACY_ASCII: [string, string][] = [
  ['amp', '&'], ['AMP', '&'], ['lt', '<'], ['LT', '<'], ['gt', '>'], ['GT', '>'],
  ['quot', '"'], ['QUOT', '"'], ['COPY', '\u00a9'], ['REG', '\u00ae'],
];

/** Common typographic references seen in scraped prompts (valid only with ';'). */
const SEMICOLON_ONLY: [string, number][] = [
  ['apos', 0x27], ['ensp', 0x2002], ['emsp', 0x2003], ['thinsp', 0x2009], ['zwnj', 0x200c],
  ['zwj', 0x200d], ['ndash', 0x2013], ['mdash', 0x2014], ['lsquo', 0x2018], ['rsquo', 0x2019],
  ['sbquo', 0x201a], ['ldquo', 0x201c], ['rdquo', 0x201d], ['bdquo', 0x201e], ['dagger', 0x2020],
  ['Dagger', 0x2021], ['bull', 0x2022], ['hellip', 0x2026], ['permil', 0x2030], ['prime', 0x2032],
  ['Prime', 0x2033], ['lsaquo', 0x2039], ['rsaquo', 0x203a], ['euro', 0x20ac], ['trade', 0x2122], ['TRADE', 0x2122],
  ['larr', 0x2190], ['rarr', 0x2192], ['minus', 0x2212], ['infin', 0x221e], ['ne', 0x2260],
  ['le', 0x2264], ['ge', 0x2265], ['spades', 0x2660], ['clubs', 0x2663], ['hearts', 0x2665],
  ['diams', 0x2666],
];

/** Windows-1252 for bytes 0x80..0x9F; its five undefined bytes stay C1 controls (Python's "sloppy" codec). */
const CP1252_C1 =
  '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';

/** Keys as Python's html.entities.html5 spells them: "name;" always, bare "name" for legacy ones. */
const NAMED = new Map<string, string>();
LATIN1_NAMES.forEach((name, i) => addNamed(name, String.fromCharCode(0xa0 + i), true));
for (const [name, value] of LEGACY_ASCII) addNamed(name, value, true);
for (const [name, cp] of SEMICOLON_ONLY) addNamed(name, String.fromCodePoint(cp), false);

function addNamed(name: string, value: string, legacy: boolean): void {
  NAMED.set(`${name};`, value);
  if (legacy) NAMED.set(name, value);
}

const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

/** Python's html.unescape (numeric references in full; named ones from the table above). */
export function htmlUnescape(text: string): string {
  return text.includes('&') ? text.replace(CHARREF_RE, (_m, ref: string) => replaceCharref(ref)) : text;
}

function replaceCharref(ref: string): string {
  if (ref[0] === '#') {
    const hex = ref[1] === 'x' || ref[1] === 'X';
    return numericCharref(parseInt(ref.slice(hex ? 2 : 1).replace(/;$/, ''), hex ? 16 : 10));
  }
  const exact = NAMED.get(ref);
  if (exact !== undefined) return exact;
  // HTML5 (and Python) decode the longest legacy prefix: "&notit;" -> "¬it;".
  for (let x = ref.length - 1; x > 1; x--) {
    const hit = NAMED.get(ref.slice(0, x));
    if (hit !== undefined) return hit + ref.slice(x);
  }
  return `&${ref}`;
}

function numericCharref(num: number): string {
  if (num === 0) return '\ufffd';
  if (num === 0x0d) return '\r';
  if (num >= 0x80 && num <= 0x9f) return CP1252_C1[num - 0x80]!;
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
  if (isInvalidCodepoint(num)) return '';
  return String.fromCodePoint(num);
}

/** Python html's _invalid_codepoints: C0/C1 controls other than whitespace, and noncharacters. */
function isInvalidCodepoint(cp: number): boolean {
  return (
    (cp >= 0x01 && cp <= 0x08) || cp === 0x0b || (cp >= 0x0e && cp <= 0x1f) || (cp >= 0x7f && cp <= 0x9f) ||
    (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe
  );
}

/** ftfy's entity table: "&name;" plus all-caps forms of lowercase names ("&EACUTE;" -> "É"). */
const FTFY_ENTITIES = buildFtfyEntities();

function buildFtfyEntities(): Map<string, string> {
  const entities = new Map<string, string>();
  for (const [key, value] of NAMED) {
    if (!key.endsWith(';')) continue;
    entities.set(`&${key}`, value);
    const upper = `&${key.toUpperCase()}`;
    if (key === key.toLowerCase() && htmlUnescape(upper) === upper) entities.set(upper, value.toUpperCase());
  }
  return entities;
}

const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;

/** ftfy.fixes.unescape_html: only unambiguous references that end in ';'. */
function ftfyUnescape(text: string): string {
  return text.replace(FTFY_ENTITY_RE, (m) => {
    const named = FTFY_ENTITIES.get(m);
    if (named !== undefined) return named;
    if (!m.startsWith('&#')) return m;
    const decoded = htmlUnescape(m);
    return decoded.includes(';') ? m : decoded;
  });
}

// ---------------------------------------------------------------- ftfy.fix_text

const LIGATURES: Record<string, string> = {
  '\u0132': 'IJ', '\u0133': 'ij', '\u0149': '\u02bcn', '\u01f1': 'DZ', '\u01f2': 'Dz', '\u01f3': 'dz',
  '\u01c4': 'D\u017d', '\u01c5': 'D\u017e', '\u01c6': 'd\u017e', '\u01c7': 'LJ', '\u01c8': 'Lj',
  '\u01c9': 'lj', '\u01ca': 'NJ', '\u01cb': 'Nj', '\u01cc': 'nj', '\ufb00': 'ff', '\ufb01': 'fi',
  '\ufb02': 'fl', '\ufb03': 'ffi', '\ufb04': 'ffl', '\ufb05': '\u017ft', '\ufb06': 'st',
};
const LIGATURE_RE = /[\u0132\u0133\u0149\u01c4-\u01cc\u01f1-\u01f3\ufb00-\ufb06]/g;

/** ftfy's fixers, in the order fix_and_explain applies them after unescaping. */
const FIXERS: ((text: string) => string)[] = [
  // fix_c1_controls: C1 controls are almost always Windows-1252 read as Latin-1.
  (t) => t.replace(/[\x80-\x9f]/g, (c) => CP1252_C1[c.charCodeAt(0) - 0x80]!),
  (t) => t.replace(LIGATURE_RE, (c) => LIGATURES[c]!),
  // fix_character_width: fullwidth ASCII -> ASCII, halfwidth kana/hangul -> normal width, U+3000 -> space.
  (t) => t.replace(/[\u3000\uff01-\uffef]/g, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC'))),
  (t) => t.replace(/[\u201c-\u201f]/g, '"').replace(/[\u02bc\u2018-\u201b]/g, "'"),
  (t) => t.replace(/\r\n|[\r\u2028\u2029\x85]/g, '\n'),
  // fix_surrogates: JS keeps valid pairs as one code point already; lone halves become U+FFFD.
  (t) => t.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd'),
  // remove_terminal_escapes (Python's \d is any decimal digit).
  (t) => t.replace(/\x1b\[((?:\p{Nd}|;)*)([a-zA-Z])/gu, ''),
  // remove_control_chars: keeps \t \n \f \r, C1 controls and joiners.
  (t) => t.replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, ''),
];

/**
 * ftfy.fix_text with its default config, minus mojibake repair. Works line by line, and
 * once a line contains '<' (looks like HTML) it stops unescaping for the rest of the text,
 * as ftfy's "auto" mode does.
 */
export function fixText(text: string): string {
  let out = '';
  let unescape = true;
  for (const segment of text.match(/[^\n]*\n|[^\n]+/g) ?? []) {
    if (segment.includes('<')) unescape = false;
    out += fixSegment(segment, unescape);
  }
  return out;
}

/** Printable ASCII without '&' (plus \t, \n): no fixer can change it. */
const PLAIN_RE = /^[\t\n\x20-\x25\x27-\x7e]*$/;

/** ftfy repeats its fixers until the text stops changing. */
function fixSegment(segment: string, unescape: boolean): string {
  if (PLAIN_RE.test(segment)) return segment;
  let text = segment;
  for (;;) {
    const before = text;
    if (unescape) text = ftfyUnescape(text);
    text = FIXERS.reduce((t, fix) => fix(t), text).normalize('NFC');
    if (text === before) return text;
  }
}
