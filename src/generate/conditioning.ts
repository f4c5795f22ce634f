/**
 * Text conditioning: prompts -> the UNet's text inputs. The pipeline takes any Conditioner, so an
 * eraser (which edits a text encoder's residual stream) plugs in without the pipeline knowing.
 */
import { encodeConditioning, type TextConditioning } from '../encoder/index.js';

export interface Conditioning {
  /** prompt_embeds of every prompt, [n, T, W] row-major (SD1.x/SD2.x: last_hidden_state; SDXL: both towers). */
  embeddings: Float32Array;
  /** pooled_prompt_embeds [n, P] for UNets that take text_embeds (SDXL). */
  pooled?: Float32Array;
  /** [n], 1 where the conditioner changed the prompt (an eraser's classifier fired). */
  erased?: Uint8Array;
}

export type Conditioner = (prompts: string[]) => Promise<Conditioning>;

/** Plain conditioning as diffusers' encode_prompt computes it for this pipeline. */
export function textConditioner(text: TextConditioning): Conditioner {
  return async (prompts) => {
    const { embeds } = await encodeConditioning(text, prompts);
    return { embeddings: embeds.promptEmbeds, ...(embeds.pooledPromptEmbeds ? { pooled: embeds.pooledPromptEmbeds } : {}) };
  };
}
