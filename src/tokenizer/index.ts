export {
  CLIP_NUM_MERGES,
  ClipTokenizer,
  DEFAULT_OPTIONS,
  END_OF_WORD,
  EOT_TOKEN,
  HF_TOKENIZER_FILES,
  SOT_TOKEN,
  byteEncode,
  bytesToUnicode,
} from './clip.js';
export type { Batch, Framed, TokenizerOptions } from './clip.js';
export { cleanText, fixText, htmlUnescape, preTokenize } from './normalize.js';
export { FALLBACK_CORPUS, fallbackTokenizer, trainBpe } from './bpe-train.js';
export { T5Tokenizer } from './t5.js';
export { T5_DEFAULT_MAX_LENGTH } from './t5.js';
export { T5_PIECES, t5TokenizerJson, unigramVocab, writeT5TokenizerDir } from './unigram-build.js';
export { censusNames, generalWordCounts, t5TrainingWords } from './word-counts.js';
