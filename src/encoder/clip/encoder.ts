/**
 * Hookable CLIP text encoder (Hugging Face CLIPTextModel / CLIPTextModelWithProjection numerics)
 * on onnxruntime; implements the TextEncoder interface (text-encoder.ts).
 *
 * Numbering follows Hugging Face everywhere: hidden_states[0] is the embedding output and
 * hidden_states[i] the output of encoder.layers[i-1]; "layer N" means the output of
 * encoder.layers[N] = hidden_states[N+1]. ItD edits layer 8 of SD1.x (hidden_states[9]).
 * hidden_states[L] is before final_layer_norm; last_hidden_state after it. The pooled output is
 * the final state at the EOS token (pooler_output), projected by text_projection when the
 * architecture has one (text_embeds, what SDXL's pooled_prompt_embeds is).
 */
import type { InferenceSession } from 'onnxruntime-node';
import { ItdError } from '../../errors.js';
import { createSession, defaultThreads, f32, f32Data, type SessionOptions } from '../../onnx/session.js';
import { checkLayer, checkRange, encodeTower, resumeTower, type ForwardPass } from '../hooks.js';
import type { EncodeOptions, EncodeResult, TextEncoder, TokenBatch } from '../text-encoder.js';
import type { ClipTextConfig } from './config.js';
import { projectionGraph, spanGraph, type SpanModel } from './graph.js';
import type { BlockRefs, ClipWeightReader, TokenTable, WeightRef } from './weights.js';
import { SpanSessions } from '../../onnx/spans.js';
import { NativeClipBlocks, nativeClip, type EncoderBackend } from './native.js';

export interface ClipEncoderOptions extends SessionOptions {
  /** Where the blocks run: 'native' (the addon's C forward; the default where it is built) or 'onnxruntime'; default ITD_ENCODER. */
  backend?: EncoderBackend;
}

export class ClipTextEncoder implements TextEncoder, ForwardPass<TokenBatch> {
  readonly lastStateNormed = false;
  readonly causal = true;
  private readonly masks = new Map<number, Float32Array>();
  private readonly spans: SpanSessions;
  private finalOnly: Promise<InferenceSession> | undefined;

  private constructor(
    readonly config: ClipTextConfig,
    private readonly embeddings: { token: TokenTable; position: Float32Array },
    private readonly blockRefs: readonly BlockRefs[],
    private readonly finalRefs: { w: WeightRef; b: WeightRef },
    private readonly projection: InferenceSession | undefined,
    private readonly opts: SessionOptions,
    private readonly native: NativeClipBlocks | undefined,
  ) {
    this.spans = new SpanSessions(config.numLayers, (from, to) => this.build(from, to));
  }

  /**
   * Checks every weight and notes where it is. The blocks run in C (native.ts, packed on first
   * use) or, with backend 'onnxruntime' or without the addon, in onnxruntime sessions built on
   * first use, one per span of blocks that no hook splits (see SpanSessions), that read their
   * weights from the file themselves.
   */
  static async create(cfg: ClipTextConfig, reader: ClipWeightReader, opts: ClipEncoderOptions = {}): Promise<ClipTextEncoder> {
    const embeddings = reader.embeddingRefs();
    try {
      const blocks = Array.from({ length: cfg.numLayers }, (_, i) => reader.blockRefs(i));
      const finalRefs = reader.finalNormRefs();
      reader.checkRefs();
      const projection = cfg.architecture === 'CLIPTextModelWithProjection' ? await createSession(projectionGraph(cfg, reader.projection()), opts) : undefined;
      const clip = nativeClip(opts.backend);
      const native = clip ? new NativeClipBlocks(clip, cfg, blocks, finalRefs, opts.threads ?? defaultThreads()) : undefined;
      return new ClipTextEncoder(cfg, embeddings, blocks, finalRefs, projection, opts, native);
    } catch (e) {
      embeddings.token.close();
      throw e;
    }
  }

  /** Where the blocks run. */
  get backend(): EncoderBackend {
    return this.native ? 'native' : 'onnxruntime';
  }

  get architecture(): string {
    return this.config.architecture;
  }

  get hiddenSize(): number {
    return this.config.hiddenSize;
  }

  get numLayers(): number {
    return this.config.numLayers;
  }

  get pooledSize(): number {
    return this.projection ? this.config.projectionDim! : this.config.hiddenSize;
  }

  /** hidden_states[0]: token + position embeddings, [n, t, D]. */
  embed(batch: TokenBatch): Float32Array {
    const { n, t, ids } = batch;
    const { hiddenSize: D, vocabSize: V, maxPositions: P } = this.config;
    if (t > P) throw new ItdError('usage', `sequence length ${t} exceeds max_position_embeddings ${P}`, { field: 'max_position_embeddings' });
    const rows = ids.subarray(0, n * t);
    rows.forEach((id, r) => {
      if (id < 0 || id >= V) throw new ItdError('usage', `token id ${id} at row ${Math.floor(r / t)}, position ${r % t} is outside the vocabulary (size ${V})`);
    });
    const table = this.embeddings.token.rows(rows);
    const out = new Float32Array(n * t * D);
    for (let r = 0; r < n * t; r++) {
      const tok = table.get(ids[r]!)!;
      const pos = this.embeddings.position.subarray((r % t) * D, (r % t) * D + D);
      const o = r * D;
      for (let d = 0; d < D; d++) out[o + d] = tok[d]! + pos[d]!;
    }
    return out;
  }

  /** Runs encoder.layers[from .. to-1] on h: [n, t, D]. */
  async runBlocks(h: Float32Array, n: number, t: number, from: number, to: number): Promise<Float32Array> {
    checkRange(this.numLayers, from, to);
    for (const [a, b] of this.spans.plan(from, to, [])) h = (await this.runSpan(a, b, h, n, t, ['y']))['y']!;
    return h;
  }

  /** Output of encoder.layers[layer] (hidden_states[layer+1]); runs only blocks 0..layer. */
  async layerOutput(batch: TokenBatch, layer: number): Promise<Float32Array> {
    checkLayer(this.numLayers, layer);
    return this.runBlocks(this.embed(batch), batch.n, batch.t, 0, layer + 1);
  }

  /** Continues from the output of block `layer`: the remaining blocks, the final norm (and pooling); hidden_states >= layer+1 on request. */
  resume(h: Float32Array, batch: TokenBatch, layer: number, hiddenStates: readonly number[] = []): Promise<EncodeResult> {
    return resumeTower(this, h, batch, layer, hiddenStates);
  }

  encode(batch: TokenBatch, opts: EncodeOptions = {}): Promise<EncodeResult> {
    return encodeTower(this, batch, opts);
  }

  /**
   * ForwardPass.forward: blocks from..L-1 on h (the edit after its block), the requested hidden
   * states, final LayerNorm and pooling. Only the edit and the requested states cut the tower.
   */
  async forward(h: Float32Array, batch: TokenBatch, from: number, want: Set<number>, edit: EncodeOptions['edit']): Promise<EncodeResult> {
    const L = this.numLayers;
    const hiddenStates = new Map<number, Float32Array>();
    let lastHiddenState: Float32Array | undefined;
    for (const [a, b] of this.spans.plan(from, L, [...want, ...(edit ? [edit.layer + 1] : [])])) {
      // The span that ends the tower also gives the final LayerNorm, unless an edit replaces its output first.
      const fused = b === L && edit?.layer !== L - 1;
      const out = await this.runSpan(a, b, h, batch.n, batch.t, fused ? (want.has(L) ? ['y', 'last'] : ['last']) : ['y']);
      h = out['y'] ?? h;
      if (edit?.layer === b - 1) h = await edit.fn(h, batch);
      if (want.has(b)) hiddenStates.set(b, h);
      if (fused) lastHiddenState = out['last'];
    }
    lastHiddenState ??= await this.finalNorm(h, batch);
    return { lastHiddenState, pooler: await this.pool(lastHiddenState, batch), hiddenStates };
  }

  /** Position of the pooled (EOS) token per row, as Hugging Face picks it. */
  eosPositions(batch: TokenBatch): Int32Array {
    const { ids, n, t } = batch;
    const eos = this.config.eosTokenId;
    const pos = new Int32Array(n);
    for (let r = 0; r < n; r++) {
      const row = ids.subarray(r * t, r * t + t);
      // Legacy configs (eos_token_id == 2) make HF take the argmax id, which is EOS (49407) in CLIP's vocab.
      let best = 0;
      for (let j = 1; j < t; j++) {
        if (eos === 2 ? row[j]! > row[best]! : row[best] !== eos && row[j] === eos) best = j;
      }
      pos[r] = best;
    }
    return pos;
  }

  /** Builds the sessions of the partition cut after each of `layers` (and the final LayerNorm) now. */
  async prepare(layers: readonly number[]): Promise<void> {
    for (const l of layers) checkLayer(this.numLayers, l);
    if (this.native) this.native.prepare();
    else await this.spans.prepare(layers.map((l) => l + 1));
  }

  async release(): Promise<void> {
    this.embeddings.token.close();
    this.native?.release();
    await Promise.all([this.spans.release(), this.finalOnly?.then((f) => f.release()), this.projection?.release()]);
  }

  /** final_layer_norm of h: [n, t, D] (a session of its own, for clip-skip and edits of the last block). */
  async finalNorm(h: Float32Array, batch: TokenBatch): Promise<Float32Array> {
    if (this.native) return (await this.native.run(0, 0, h, batch.n, batch.t, ['last']))['last']!;
    this.finalOnly ??= this.session(spanGraph(this.config, [], this.finalRefs));
    const out = await (await this.finalOnly).run({ x: f32(h, [batch.n, batch.t, this.config.hiddenSize]), mask: f32(this.causalMask(batch.t), [batch.t, batch.t]) }, ['last']);
    return f32Data(out['last'], 'last');
  }

  /** pooler_output [n, D] (the EOS row), or text_embeds [n, P] = pooler_output text_projection^T. */
  private async pool(last: Float32Array, batch: TokenBatch): Promise<Float32Array> {
    const D = this.config.hiddenSize;
    const pos = this.eosPositions(batch);
    const out = new Float32Array(batch.n * D);
    for (let r = 0; r < batch.n; r++) out.set(last.subarray((r * batch.t + pos[r]!) * D, (r * batch.t + pos[r]! + 1) * D), r * D);
    if (!this.projection) return out;
    return f32Data((await this.projection.run({ x: f32(out, [batch.n, D]) }))['y'], 'y');
  }

  /** Additive causal mask [t, t]: 0 on and below the diagonal, float32 min above (as HF). */
  private causalMask(t: number): Float32Array {
    let m = this.masks.get(t);
    if (!m) {
      m = new Float32Array(t * t);
      for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) m[i * t + j] = -3.4028234663852886e38;
      this.masks.set(t, m);
    }
    return m;
  }

  /** Blocks a..b-1 in one session; `fetch`: 'y' (block b-1's output) and/or 'last' (after the final LayerNorm, b = L only). */
  private async runSpan(a: number, b: number, h: Float32Array, n: number, t: number, fetch: string[]): Promise<Record<string, Float32Array>> {
    if (this.native) return this.native.run(a, b, h, n, t, fetch);
    const out = await this.spans.run(a, b, (s) => s.run({ x: f32(h, [n, t, this.config.hiddenSize]), mask: f32(this.causalMask(t), [t, t]) }, fetch));
    return Object.fromEntries(fetch.map((k) => [k, f32Data(out[k], k)]));
  }

  private build(from: number, to: number): Promise<InferenceSession> {
    return this.session(spanGraph(this.config, this.blockRefs.slice(from, to), to === this.numLayers ? this.finalRefs : undefined));
  }

  private session(span: SpanModel): Promise<InferenceSession> {
    return createSession(span.model, this.opts, span.external);
  }
}
