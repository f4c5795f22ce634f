/** Prompt-level encoding of one encoder part: tokenize, frame, run the encoder in batches, concatenate. */
import { Progress } from '../io/progress.js';
import type { EditFn, EncoderPart } from './text-encoder.js';

export interface PromptEncodeOptions {
  batch?: number; // prompts per encoder call (default 16)
  hiddenStates?: readonly number[];
  edit?: { layer: number; fn: EditFn };
  progress?: boolean;
}

export interface PromptEncoding {
  n: number;
  t: number; // 77
  d: number;
  p: number; // pooled width (pooledSize)
  inputIds: Int32Array; // [n, t]
  lengths: Int32Array; // [n] real tokens incl. BOS/EOS
  truncated: Int32Array; // [n] content tokens dropped
  lastHiddenState: Float32Array; // [n, t, d]
  pooler: Float32Array; // [n, p]
  hiddenStates: Map<number, Float32Array>; // index -> [n, t, d]
}

export async function encodePrompts(model: EncoderPart, prompts: string[], opts: PromptEncodeOptions = {}): Promise<PromptEncoding> {
  const { tokenizer, encoder } = model;
  const tok = tokenizer.batch(prompts);
  const n = prompts.length;
  const t = tok.maxLength;
  const d = encoder.hiddenSize;
  const p = encoder.pooledSize;
  const batch = opts.batch ?? 16;
  const out: PromptEncoding = {
    n, t, d, p,
    inputIds: tok.ids,
    lengths: tok.lengths,
    truncated: tok.truncated,
    lastHiddenState: new Float32Array(n * t * d),
    pooler: new Float32Array(n * p),
    hiddenStates: new Map((opts.hiddenStates ?? []).map((i) => [i, new Float32Array(n * t * d)])),
  };
  const bar = opts.progress ? new Progress({ label: `encode ${model.name}`, total: n, unit: 'prompts' }) : undefined;
  for (let s = 0; s < n; s += batch) {
    const m = Math.min(batch, n - s);
    const ids = tok.ids.subarray(s * t, (s + m) * t);
    const r = await encoder.encode({ ids, n: m, t }, { ...(opts.hiddenStates ? { hiddenStates: opts.hiddenStates } : {}), ...(opts.edit ? { edit: opts.edit } : {}) });
    out.lastHiddenState.set(r.lastHiddenState, s * t * d);
    out.pooler.set(r.pooler, s * p);
    for (const [i, h] of r.hiddenStates) out.hiddenStates.get(i)!.set(h, s * t * d);
    bar?.tick(m);
  }
  bar?.done();
  return out;
}
