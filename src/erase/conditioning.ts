/**
 * Erased pipeline conditioning: every encoder part of a model directory runs as usual except the
 * parts an eraser edits, and the recipe combines them into prompt_embeds / pooled_prompt_embeds
 * exactly as for plain prompts. An edited part returns the hidden states the recipe needs (SDXL:
 * hidden_states[-2]) and its pooled output from the edited run.
 */
import { encodePrompts, type ConditioningEncoding, type PromptEncoding, type TextConditioning } from '../encoder/index.js';
import type { ConceptEraser, EraseOptions, EraseResult } from './eraser.js';

export interface ErasedEncoding extends ConditioningEncoding {
  /** [n] 1 where the prompt was erased. */
  erased: Uint8Array;
  /** The eraser's own result (scores, concepts) for the part it edits. */
  erasure: EraseResult;
}

/** The eraser's part of `text`, matched by component name and weights. */
export function erasedPartIndex(text: TextConditioning, eraser: ConceptEraser): number {
  const i = text.parts.findIndex((p) => p.name === eraser.model.name && p.id === eraser.model.id);
  if (i < 0) throw new Error(`the eraser edits ${eraser.model.name} (${eraser.model.id}), which is not a text encoder of ${text.layout.dir}`);
  return i;
}

export async function encodeErased(text: TextConditioning, eraser: ConceptEraser, prompts: string[], opts: EraseOptions & { clipSkip?: number } = {}): Promise<ErasedEncoding> {
  const clipSkip = opts.clipSkip ?? 0;
  const need = text.recipe.hiddenStates(text.parts, clipSkip);
  const edited = erasedPartIndex(text, eraser);
  const parts: PromptEncoding[] = [];
  let erasure: EraseResult | undefined;
  for (const [i, part] of text.parts.entries()) {
    const base = { hiddenStates: need[i]!, ...(opts.batch ? { batch: opts.batch } : {}) };
    if (i === edited) parts.push((erasure = await eraser.encode(prompts, { ...opts, ...base })));
    else parts.push(await encodePrompts(part, prompts, base));
  }
  return { embeds: await text.recipe.combine(text.parts, parts, clipSkip), parts, erased: erasure!.erased, erasure: erasure! };
}
