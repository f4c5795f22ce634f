/**
 * The model-family layer: what every text-encoder family implements, and what a pipeline's text
 * conditioning is made of.
 *
 * Three levels, each knowing nothing of the one above:
 *
 *   TextEncoder   one transformer tower of one architecture (src/encoder/<family>/: clip/ holds
 *                 CLIPTextModel and CLIPTextModelWithProjection; t5/ holds T5EncoderModel). It
 *                 embeds framed token ids, runs its blocks with a hook after any block (read the
 *                 residual stream, or replace it and run the rest), numbers hidden states as
 *                 Hugging Face does, and returns the final output plus the pooled output.
 *   EncoderPart   one diffusers component of a model directory (`text_encoder`, `text_encoder_2`,
 *                 ...): a TextEncoder + the PromptTokenizer that frames prompts for it + the
 *                 identity hash and the sparsify-style hookpoint names of its blocks. collect,
 *                 train, select, erase, classify and serve work on exactly one EncoderPart; they
 *                 never ask which pipeline it came from.
 *   TextConditioning  a whole model directory (SD1.x/SD2.x: one part; SDXL: two; FLUX/SD3 later):
 *                 its named parts and a ConditioningRecipe that combines the parts' outputs into
 *                 diffusers' `prompt_embeds` / `pooled_prompt_embeds` (src/encoder/pipelines.ts).
 *                 Only encode and generate look at this level.
 *
 * Adding a family = a folder with a TextEncoder, a part loader and a config-only shape reader,
 * registered by architecture name in families.ts; adding a pipeline = a ConditioningRecipe
 * registered by diffusers class name in pipelines.ts (its slots, default part, default image
 * size, force-zeros default, embed widths and combine). Nothing else branches on the model kind.
 */
import type { Framed, Batch as TokenizedBatch } from '../tokenizer/clip.js';

/** Token ids of a batch, row-major [n, t]; t may be shorter than the framed length when `causal`. */
export interface TokenBatch {
  ids: Int32Array; // [n, t]
  n: number;
  t: number;
}

/** Residual stream [n, t, D] after some block, handed to an edit hook; returns the replacement. */
export type EditFn = (h: Float32Array, batch: TokenBatch) => Float32Array | Promise<Float32Array>;

export interface EncodeOptions {
  /** Hugging Face hidden_states indices (0..L) to return. */
  hiddenStates?: readonly number[];
  /** Replace the output of block `layer` (hidden_states[layer + 1]) with fn(h) before the remaining blocks run. */
  edit?: { layer: number; fn: EditFn };
}

/** What the tower returns after its last block. */
export interface EncoderOutput {
  lastHiddenState: Float32Array; // [n, t, D]
  /** The model's pooled output [n, pooledSize]: CLIP pooler_output, or text_embeds with a projection; empty when none. */
  pooler: Float32Array;
}

export interface EncodeResult extends EncoderOutput {
  hiddenStates: Map<number, Float32Array>; // HF index -> [n, t, D]
}

/**
 * One transformer text tower. Numbering follows Hugging Face: hidden_states[0] is the embedding
 * output and hidden_states[i] the output of block i-1; "layer N" is the output of block N
 * (hidden_states[N+1]). Each family documents where its final norm sits.
 */
export interface TextEncoder {
  /** Hugging Face architecture, e.g. 'CLIPTextModel', 'CLIPTextModelWithProjection'. */
  readonly architecture: string;
  readonly hiddenSize: number; // D
  readonly numLayers: number; // L
  /** Width of `pooler`; 0 when the architecture has no pooled output. */
  readonly pooledSize: number;
  /** True when a position never sees later ones (causal mask): rows may then be run on their first `length` tokens only. */
  readonly causal: boolean;
  /** hidden_states[0], [n, t, D]. */
  embed(batch: TokenBatch): Float32Array;
  /** Runs blocks from .. to-1 on h: [n, t, D]. */
  runBlocks(h: Float32Array, n: number, t: number, from: number, to: number): Promise<Float32Array>;
  /** Output of block `layer` (hidden_states[layer+1]); runs only blocks 0..layer. */
  layerOutput(batch: TokenBatch, layer: number): Promise<Float32Array>;
  /** Continues from the output of block `layer`: the remaining blocks, the final norm, pooling; hidden_states (indices >= layer+1) on request. */
  resume(h: Float32Array, batch: TokenBatch, layer: number, hiddenStates?: readonly number[]): Promise<EncodeResult>;
  /** The tower's final norm applied to any residual state [n, t, D] (diffusers' clip_skip for SD1.x uses it). */
  finalNorm(h: Float32Array, batch: TokenBatch): Promise<Float32Array>;
  encode(batch: TokenBatch, opts?: EncodeOptions): Promise<EncodeResult>;
  /**
   * Builds now what forwards hooked after each of `layers` will run on (towers that build their
   * sessions lazily; onnxruntime builds and runs on the calling thread, so a server prepares before it serves).
   */
  prepare?(layers: readonly number[]): Promise<void>;
  release(): Promise<void>;
}

/** Prompt framing for one encoder: fixed-length rows of ids as the pipeline's tokenizer makes them. */
export interface PromptTokenizer {
  readonly maxLength: number; // framed row length (77 for CLIP)
  readonly vocabSize: number;
  readonly eosId: number;
  readonly padId: number;
  /** Framing tokens the tokenizer puts before the content: 1 for CLIP (BOS), 0 for T5 (no BOS). */
  readonly leadingSpecials: number;
  /** Whether letter case changes the ids: false for CLIP (it lowercases), true for T5's SentencePiece. */
  readonly caseSensitive: boolean;
  /** Content ids of a text (no framing tokens). */
  encode(text: string): number[];
  frame(text: string): Framed;
  batch(texts: string[]): TokenizedBatch;
  /** One readable string per id (for reports and token-level views). */
  tokenStrings(ids: ArrayLike<number>): string[];
  decode(ids: ArrayLike<number>): string;
}

/** The config fields every family has (each family's config extends it). */
export interface EncoderShape {
  hiddenSize: number;
  numLayers: number;
  vocabSize: number;
}

/** One named text-encoder component of a model directory. */
export interface EncoderPart<C extends EncoderShape = EncoderShape> {
  /** diffusers component name ('text_encoder', 'text_encoder_2', ...); 'text_encoder' for a bare model directory. */
  readonly name: string;
  /** The model directory as given (a diffusers pipeline or a bare transformers model). */
  readonly dir: string;
  /** Directory with this part's config.json and weights. */
  readonly encoderDir: string;
  readonly tokenizerDir: string;
  readonly config: C;
  readonly tokenizer: PromptTokenizer;
  readonly encoder: TextEncoder;
  /** Short hash identifying these weights (recorded in activations, SAEs and erasers). */
  readonly id: string;
  /** The block ItD hooks by default: its relative depth, block 8 of CLIP-L's 12 (about 2/3 of the tower). */
  readonly defaultLayer: number;
  /** sparsify-style module path of block `layer`'s output, e.g. 'text_encoder_2.text_model.encoder.layers.21'. */
  hookpoint(layer: number): string;
}

/** ItD's hook depth (block 8 of 12) carried to a tower of `numLayers` blocks: 12 -> 8, 23 -> 15, 32 -> 21. */
export function itdDefaultLayer(numLayers: number): number {
  return Math.min(numLayers - 1, Math.round((8 * numLayers) / 12));
}

/** The diffusers component a hookpoint names ('text_encoder_2.text_model...' -> 'text_encoder_2'); undefined for a bare-model hookpoint. */
export function hookpointPart(hookpoint: string | undefined): string | undefined {
  return hookpoint === undefined ? undefined : /^(text_encoder(?:_\d+)?)\./.exec(hookpoint)?.[1];
}
