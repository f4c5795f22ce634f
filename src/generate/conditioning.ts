/**
 * Text conditioning: prompts -> encoder_hidden_states. The pipeline takes any Conditioner, so an
 * eraser (which edits the text encoder's residual stream) plugs in without the pipeline knowing.
 */
import type { TextModel } from '../encoder/index.js';
import { encodePrompts } from '../encoder/index.js';

export interface Conditioning {
  /** last_hidden_state of every prompt, [n, 77, D] row-major. */
  embeddings: Float32Array;
  /** [n], 1 where the conditioner changed the prompt (an eraser's classifier fired). */
  erased?: Uint8Array;
}

export type Conditioner = (prompts: string[]) => Promise<Conditioning>;

/** Plain CLIP conditioning: the text encoder's last hidden state (SD1.x and SD2.x both use it). */
export function textConditioner(model: TextModel): Conditioner {
  return async (prompts) => ({ embeddings: (await encodePrompts(model, prompts)).lastHiddenState });
}
