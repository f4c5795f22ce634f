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
 *                                that word; otherwise, in a word that mixes ASCII letters in, each
 *                                non-ASCII character becomes its prototype where that is ASCII
 *                                (UTS #39's mixed-script signal; an all-Greek word stays Greek).
 *                                The skeleton is not applied to ASCII: it maps
 *                                ASCII onto ASCII too ("m" -> "rn", "1" -> "l"), which would mangle
 *                                every ordinary prompt
 *   5. lowercase
 *   6. leetspeak fold            in a word with letters (not "34th"): 0 1 3 4 5 7 8 9 -> o i e a s t b g
 *   7. de-spacing                3+ single letters joined by separators ("z e b r a", "z.e.b.r.a")
 *                                become one word; lexicon names inside a run (the eraser's concept
 *                                names: "a z e b r a" -> "a zebra", "t a y l o r s w i f t" ->
 *                                "taylor swift") get their word breaks back
 *   (`keepCase`, for case-sensitive tokenizers such as T5's; CLIP lowercases anyway): step 5 is
 *   skipped, so other words keep the case they were typed in (lowercasing "Viktor" would change its
 *   pieces), and each lexicon word, matched whatever its case, gets its lexicon spelling back
 *   ("aDaM dRiVeR" -> "Adam Driver")
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
const LEET: Record<string, string> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b', '9': 'g' };
/**
 * A word: letters and digits; folded when it has both, except a number with a suffix ("34th",
 * "4pm", "1990s"). '@' and '$' are not folded (e-mail addresses, prices).
 */
const WORD = /[\p{L}\p{N}]+/gu;
const HAS_LETTER = /\p{L}/u;
const HAS_LEET = /[013457-9]/;
const NUMBER_SUFFIX = /^\p{N}+\p{L}+$/u;

/** Separators a user puts between single letters. */
const SEP = '[\\s._*\\-~+/,:;\u00b7\u2022\u2027\u2219\u22c5]+';
/** 3 or more single letters joined by separators, not part of a longer word. */
const SPACED_RUN = new RegExp(`(?<![\\p{L}\\p{N}])\\p{L}(?:${SEP}\\p{L}){2,}(?![\\p{L}\\p{N}])`, 'gu');
const SEP_RE = new RegExp(SEP, 'gu');

/**
 * Confusable-insensitive key of a word: non-ASCII characters to their ASCII prototypes, lowercase,
 * Unicode's skeleton, with the i/l class merged (the skeleton maps 'I' and Cyrillic 'Ӏ' to 'l' but
 * 'ӏ' to 'i', so case alone would split a name). Two words with the same key look alike.
 */
function lookalikeKey(word: string): string {
  return unhomoglyph(word.replace(NON_ASCII, asciiPrototype).toLowerCase()).replace(/i/g, 'l');
}

/** Runs of characters other than whitespace and ASCII punctuation: where confusables hide. */
const WORDLIKE = /[^\s!-/:-@[-`{-~]+/gu;

/** Canonical forms for one lexicon (e.g. an eraser's concept names); build once, apply per prompt. */
export class Canonicalizer {
  private readonly words = new Map<string, string>(); // lookalike key -> lexicon word (lowercase)
  private readonly cased = new Map<string, string>(); // lexicon word (canonical, lowercase) -> as the lexicon spells it (keepCase only)
  private readonly spaced = new Map<string, string>(); // lexicon name with its words run together -> with single spaces
  private readonly inRun: RegExp | undefined; // those names (and words of 3+ letters), longest first
  private readonly keepCase: boolean;

  constructor(lexicon: readonly string[] = [], opts: { keepCase?: boolean } = {}) {
    this.keepCase = opts.keepCase === true;
    for (const name of lexicon) {
      const words = new Canonicalizer().canonicalize(name).split(/[^\p{L}\p{N}]+/u).filter((w) => w.length > 0);
      if (this.keepCase) for (const w of name.split(/[^\p{L}\p{N}]+/u)) if (w) this.cased.set(new Canonicalizer().canonicalize(w), w);
      for (const w of words) {
        this.words.set(lookalikeKey(w), w);
        if (w.length >= 3) this.spaced.set(w, w);
      }
      if (words.length > 1) this.spaced.set(words.join(''), words.join(' '));
    }
    const keys = [...this.spaced.keys()].sort((a, b) => b.length - a.length);
    this.inRun = keys.length ? new RegExp(keys.join('|'), 'gu') : undefined;
  }

  /** The canonical form of `text` (steps above); plain lowercase ASCII prompts come back unchanged. */
  canonicalize(text: string): string {
    let t = text.normalize('NFKC').replace(IGNORABLE, '');
    t = t.normalize('NFD').replace(MARKS, '').normalize('NFC');
    t = t.replace(WORDLIKE, (w) => this.unconfuse(w));
    if (!this.keepCase) t = t.toLowerCase();
    t = t.replace(WORD, (w) => (HAS_LETTER.test(w) && HAS_LEET.test(w) && !NUMBER_SUFFIX.test(w) ? w.replace(/[013457-9]/g, (c) => LEET[c]!) : w));
    t = t.replace(SPACED_RUN, (run) => {
      const joined = run.replace(SEP_RE, '').toLowerCase();
      // "a z e b r a" joins to "azebra": lexicon names inside a run get their own word back.
      return this.inRun ? joined.replace(this.inRun, (m) => ` ${this.spaced.get(m)!} `).trim().replace(/ +/g, ' ') : joined;
    });
    return this.keepCase ? t.replace(WORD, (w) => this.cased.get(w.toLowerCase()) ?? w) : t;
  }

  /**
   * A word with non-ASCII characters: the lexicon word it looks like; else, when it mixes ASCII
   * letters in (a Latin word with a few substitutes, never a plain Greek or Cyrillic word), each
   * character's ASCII prototype.
   */
  private unconfuse(w: string): string {
    if (!NON_ASCII_TEST.test(w)) return w;
    return this.words.get(lookalikeKey(w)) ?? (/[A-Za-z]/.test(w) ? w.replace(NON_ASCII, asciiPrototype) : w);
  }
}

/**
 * The printable-ASCII confusables prototype of one character, else the character. Prototypes
 * follow glyph shape, so the lowercase form is tried first (Cyrillic 'І' is 'l' like 'I', but 'і'
 * is 'i'), the uppercase one last (Cyrillic 'к', 'м', 'т' have small-capital prototypes; 'К' is 'K').
 */
function asciiPrototype(c: string): string {
  for (const form of [c.toLowerCase(), c, c.toUpperCase()]) {
    const p = unhomoglyph(form);
    if (PRINTABLE_ASCII.test(p)) return p;
  }
  return c;
}
