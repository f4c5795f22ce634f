/**
 * Canonical form of a prompt for the gate: what a disguised prompt would say if it were typed
 * plainly. A user who wants a blocked concept types it as "Z\u200be\u200bb\u200br\u200ba"
 * (zero-width), "zеbrа" (Cyrillic е, а), "ｚｅｂｒａ" (fullwidth), "z\u0301ebra" (combining
 * marks), "z e b r a" / "z.e.b.r.a", "ZeBrA" or "z3br4"; the CLIP tokenizer turns each into
 * tokens the eraser's features never saw. The eraser scores this canonical form next to the
 * original (src/erase/eraser.ts), so the disguise only changes which text is scored:
 *
 *   1. NFKC                      fullwidth, ligatures, math alphanumerics, superscripts
 *   2. default-ignorables out    U+200B..U+200F, U+2060.., U+FEFF, soft hyphen, variation selectors
 *   3. NFD, marks out, NFC       "z\u0301" -> "z", "é" -> "e"
 *   4. confusables -> ASCII      Unicode's confusables.txt prototypes (the `unhomoglyph` package's
 *                                copy of Unicode's data), for words with non-ASCII characters
 *                                only: a word that looks like a lexicon word (same skeleton) becomes
 *                                that word; otherwise each non-ASCII character becomes its prototype
 *                                where that is ASCII. The skeleton is not applied to ASCII: it maps
 *                                ASCII onto ASCII too ("m" -> "rn", "1" -> "l"), which would mangle
 *                                every ordinary prompt
 *   5. lowercase
 *   6. leetspeak fold            inside a word that has letters: 0 1 3 4 5 7 8 9 @ $ -> o i e a s t b g a s
 *   7. de-spacing                3+ single letters joined by separators ("z e b r a", "z.e.b.r.a")
 *                                become one word; a run that spells a multi-word lexicon entry
 *                                (the eraser's concept names) gets its spaces back
 *
 * Steps 6 and 7 are own code: no maintained package folds leetspeak or letter spacing without
 * also applying a profanity list or ASCII-only rules; both are a few lines of regular expressions.
 */
import unhomoglyph from 'unhomoglyph';

const IGNORABLE = /\p{Default_Ignorable_Code_Point}/gu;
const MARKS = /[\p{Mn}\p{Me}]/gu;
const NON_ASCII = /[^\x00-\x7f]/gu;
const NON_ASCII_TEST = /[^\x00-\x7f]/u;
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

/** Leetspeak digits and symbols -> letters ('1' is i, not l: names are more often spelled with i). */
const LEET: Record<string, string> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b', '9': 'g', '@': 'a', $: 's' };
/** A word: letters, digits, @ and $; folded only when it has a letter and a leet character. */
const WORD = /[\p{L}\p{N}@$]+/gu;
const HAS_LETTER = /\p{L}/u;
const HAS_LEET = /[013457-9@$]/;

/** Separators a user puts between single letters. */
const SEP = '[\\s._*\\-~+/,:;\u00b7\u2022\u2027\u2219\u22c5]+';
/** 3 or more single letters joined by separators, not part of a longer word. */
const SPACED_RUN = new RegExp(`(?<![\\p{L}\\p{N}])\\p{L}(?:${SEP}\\p{L}){2,}(?![\\p{L}\\p{N}])`, 'gu');
const SEP_RE = new RegExp(SEP, 'gu');

/**
 * Confusable-insensitive key of a word: Unicode's skeleton, lowercased, skeleton again, with the
 * i/l class merged (the skeleton maps 'I' and Cyrillic 'Ӏ' to 'l' but 'ӏ' to 'i', so case alone
 * would split a name). Two words with the same key look alike.
 */
function lookalikeKey(word: string): string {
  return unhomoglyph(unhomoglyph(word).toLowerCase()).replace(/i/g, 'l');
}

/** Runs of characters other than whitespace and ASCII punctuation: where confusables hide. */
const WORDLIKE = /[^\s!-/:-@[-`{-~]+/gu;

/** Canonical forms for one lexicon (e.g. an eraser's concept names); build once, apply per prompt. */
export class Canonicalizer {
  private readonly words = new Map<string, string>(); // lookalike key -> lexicon word (lowercase)
  private readonly spaced: [string, string][]; // [words run together, words with single spaces], longest first

  constructor(lexicon: readonly string[] = []) {
    const spaced = new Map<string, string>();
    for (const name of lexicon) {
      const words = new Canonicalizer().canonicalize(name).split(/[^\p{L}\p{N}]+/u).filter((w) => w.length > 0);
      for (const w of words) this.words.set(lookalikeKey(w), w);
      if (words.length > 1) spaced.set(words.join(''), words.join(' '));
    }
    this.spaced = [...spaced].sort((a, b) => b[0].length - a[0].length);
  }

  /** The canonical form of `text` (steps above); plain lowercase ASCII prompts come back unchanged. */
  canonicalize(text: string): string {
    let t = text.normalize('NFKC').replace(IGNORABLE, '');
    t = t.normalize('NFD').replace(MARKS, '').normalize('NFC');
    t = t.replace(WORDLIKE, (w) => (NON_ASCII_TEST.test(w) ? this.words.get(lookalikeKey(w)) ?? w.replace(NON_ASCII, asciiPrototype) : w)).toLowerCase();
    t = t.replace(WORD, (w) => (HAS_LETTER.test(w) && HAS_LEET.test(w) ? w.replace(/[013457-9@$]/g, (c) => LEET[c]!) : w));
    return t.replace(SPACED_RUN, (run) => {
      let joined = run.replace(SEP_RE, '');
      for (const [compact, name] of this.spaced) joined = joined.replaceAll(compact, ` ${name} `);
      return joined.trim().replace(/ +/g, ' ');
    });
  }
}

/**
 * The printable-ASCII confusables prototype of one character, else the character. The lowercase
 * form is tried first: prototypes follow glyph shape, so Cyrillic 'І' is 'l' (like 'I') but 'і' is 'i'.
 */
function asciiPrototype(c: string): string {
  for (const form of [c.toLowerCase(), c]) {
    const p = unhomoglyph(form);
    if (PRINTABLE_ASCII.test(p)) return p;
  }
  return c;
}
