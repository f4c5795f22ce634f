/**
 * Bounded LRU of /v1/encode results (lru-cache, bounded in bytes). SD clients send the same
 * negative prompt (often "") with every image and repeat prompts across seeds, so a hit skips
 * the queue and the encoder entirely.
 *
 * The key is everything an encoding depends on: the eraser id (it changes with every concept
 * edit or recalibration, so stale entries can never match; the server also clears the cache on
 * edits to free them), the gate policy, and the prompt's framed token ids with the truncation
 * count (different texts that tokenize alike share one entry). Values are copies of what the
 * encoder returned, so a hit answers exactly the bytes of the miss that filled it.
 */
import { LRUCache } from 'lru-cache';
import type { GatePolicy } from '../erase/index.js';
import type { TextModel } from '../encoder/index.js';

export interface EncodedPrompt {
  last: Float32Array; // [77, D]
  pooler: Float32Array; // [D]
  erased: boolean;
  score: number;
  concepts: string[];
  truncated: number;
  eraser: string;
}

/** Bytes an entry holds besides its tensors (strings, object headers): a rough constant. */
const OVERHEAD = 512;

export class EncodeCache {
  private readonly lru: LRUCache<string, EncodedPrompt>;

  constructor(maxBytes: number) {
    this.lru = new LRUCache({ maxSize: maxBytes, sizeCalculation: (v) => (v.last.byteLength + v.pooler.byteLength + OVERHEAD) });
  }

  /** The token part of the key: framed ids (up to EOS) and the truncation count. */
  static tokens(model: TextModel, prompt: string): string {
    const f = model.tokenizer.frame(prompt);
    return `${f.truncated}:${Buffer.from(f.ids.buffer, f.ids.byteOffset, f.length * 4).toString('base64')}`;
  }

  get(eraser: string, policy: GatePolicy, tokens: string): EncodedPrompt | undefined {
    return this.lru.get(`${eraser}/${policy}/${tokens}`);
  }

  /** Stores a copy (the row may be a view into a whole batch's buffer). */
  set(policy: GatePolicy, tokens: string, row: EncodedPrompt): void {
    this.lru.set(`${row.eraser}/${policy}/${tokens}`, { ...row, last: row.last.slice(), pooler: row.pooler.slice(), concepts: [...row.concepts] });
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }

  clear(): void {
    this.lru.clear();
  }
}
