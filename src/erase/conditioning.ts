/**
 * Erased pipeline conditioning: every encoder part of a model directory runs as usual except the
 * parts an eraser edits, and the recipe combines them into prompt_embeds / pooled_prompt_embeds
 * exactly as for plain prompts. An edited part returns the hidden states the recipe needs (SDXL:
 * hidden_states[-2]) and its pooled output from the edited run, so pooled_prompt_embeds is
 * erased too when text_encoder_2 is edited.
 *
 * With erasers on several parts (one SAE each) a prompt is erased iff any part's score crosses
 * that part's own threshold; it is then deactivated in every part, and every part encodes it from
 * one form: the canonical form of the first part that erases its canonical form (a disguise caught
 * through one tower is edited from the plain text in both), else the prompt as typed. Passed
 * prompts go through every part untouched, bit-identical to plain conditioning.
 */
import { encodePrompts, type ConditioningEncoding, type PromptEncoding, type TextConditioning } from '../encoder/index.js';
import { ItdError } from '../errors.js';
import type { ClassifyOptions, ConceptEraser, Decision, EraseOptions, EraseResult, GatePolicy } from './eraser.js';

export interface ErasedEncoding extends ConditioningEncoding {
  /** [n] 1 where the prompt was erased. */
  erased: Uint8Array;
  /** Each eraser's own result (scores, concepts) for the part it edits, in the order given. */
  erasures: EraseResult[];
}

/** The eraser's part of `text`, matched by component name and weights. */
export function erasedPartIndex(text: TextConditioning, eraser: ConceptEraser): number {
  const i = text.parts.findIndex((p) => p.name === eraser.model.name && p.id === eraser.model.id);
  if (i < 0) throw new ItdError('mismatch', `the eraser edits ${eraser.model.name} (${eraser.model.id}), which is not a text encoder of ${text.layout.dir}`, { file: text.layout.dir });
  return i;
}

export interface ErasedConditioningOptions extends Pick<EraseOptions, 'batch' | 'progress'> {
  policy?: GatePolicy;
  clipSkip?: number;
}

export async function encodeErased(text: TextConditioning, erasers: ConceptEraser | readonly ConceptEraser[], prompts: string[], opts: ErasedConditioningOptions = {}): Promise<ErasedEncoding> {
  const list = Array.isArray(erasers) ? erasers : [erasers as ConceptEraser];
  const clipSkip = opts.clipSkip ?? 0;
  const need = text.recipe.hiddenStates(text.parts, clipSkip);
  const edited = list.map((e) => erasedPartIndex(text, e));
  if (new Set(edited).size !== edited.length) throw new ItdError('usage', 'two eraser parts edit the same text encoder', { field: 'eraser' });
  const joint = list.length > 1 ? await jointDecision(list, prompts, opts) : undefined;
  const parts: PromptEncoding[] = [];
  const erasures: EraseResult[] = [];
  for (const [i, part] of text.parts.entries()) {
    const base = { hiddenStates: need[i]!, ...(opts.batch ? { batch: opts.batch } : {}) };
    const k = edited.indexOf(i);
    if (k < 0) {
      parts.push(await encodePrompts(part, prompts, base));
      continue;
    }
    const r = await list[k]!.encode(prompts, { ...base, ...(opts.policy ? { policy: opts.policy } : {}), ...(opts.progress ? { progress: true } : {}), ...(joint ?? {}) });
    erasures[k] = r;
    parts.push(r);
  }
  const erased = joint?.force ?? erasures[0]!.erased;
  return { embeds: await text.recipe.combine(text.parts, parts, clipSkip), parts, erased, erasures };
}

export interface JointDecision {
  /** [n] 1 where any part erases the prompt (its score >= that part's own threshold). */
  erased: Uint8Array;
  /** [n] the one text every part encodes an erased prompt from: the first part's erased canonical form, else null (as typed). */
  forms: (string | null)[];
  /** Each part's own decisions, in the order of the erasers. */
  parts: Decision[][];
}

/** The decision of erasers on several parts (an eraser set), made once for all of them. */
export async function classifyJointly(erasers: readonly ConceptEraser[], prompts: string[], opts: ClassifyOptions = {}): Promise<JointDecision> {
  const erased = new Uint8Array(prompts.length);
  const forms = prompts.map((): string | null => null);
  const parts: Decision[][] = [];
  for (const e of erasers) {
    const { decisions, erasedForms } = await e.classifyForms(prompts, opts);
    decisions.forEach((d, i) => {
      if (d.erased) erased[i] = 1;
      forms[i] ??= erasedForms[i]!;
    });
    parts.push(decisions);
  }
  return { erased, forms, parts };
}

/** What every part's encode is told under `policy`: force [n] (1: erase) and the forms to encode from. */
async function jointDecision(erasers: readonly ConceptEraser[], prompts: string[], opts: ErasedConditioningOptions): Promise<{ force: Uint8Array; forms: (string | null)[] }> {
  if (opts.policy === 'always' || opts.policy === 'never') return { force: new Uint8Array(prompts.length).fill(opts.policy === 'always' ? 1 : 0), forms: prompts.map(() => null) };
  const { erased, forms } = await classifyJointly(erasers, prompts, opts.batch ? { batch: opts.batch } : {});
  return { force: erased, forms };
}

/**
 * Erasers as a UNet conditioner (src/generate's Conditioner): prompts -> erased prompt_embeds
 * [n, T, W], pooled_prompt_embeds [n, P] where the pipeline has them (SDXL), erased [n].
 */
export function erasedConditioner(text: TextConditioning, erasers: ConceptEraser | readonly ConceptEraser[], opts: ErasedConditioningOptions = {}) {
  const list = Array.isArray(erasers) ? erasers : [erasers as ConceptEraser];
  list.forEach((e) => erasedPartIndex(text, e)); // a wrong pairing fails here, not at the first prompt
  return async (prompts: string[]): Promise<{ embeddings: Float32Array; pooled?: Float32Array; erased: Uint8Array }> => {
    const { embeds, erased } = await encodeErased(text, list, prompts, opts);
    return { embeddings: embeds.promptEmbeds, ...(embeds.pooledPromptEmbeds ? { pooled: embeds.pooledPromptEmbeds } : {}), erased };
  };
}
