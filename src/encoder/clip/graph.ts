/**
 * ONNX graphs for the CLIP text tower: one graph per span of consecutive blocks (the whole tower
 * when no hook cuts it; hooks cut it where the residual stream must be read or replaced), with
 * the final LayerNorm fused into the span that ends the tower.
 *
 * Block (pre-LayerNorm, as Hugging Face CLIPEncoderLayer), x: [B, T, D], mask: [T, T] additive causal:
 *   a = LN1(x);  q = (a Wq^T + bq) / sqrt(hd);  k = a Wk^T + bk;  v = a Wv^T + bv
 *   x = x + (softmax(q k^T + mask) v) Wo^T + bo            (per head, hd = D / H)
 *   x = x + fc2(act(fc1(LN2(x))))
 */
import { ExternalWeights, Graph } from '../../onnx/graph.js';
import type { ExternalDataOptions } from '../../onnx/session.js';
import type { Activation, ClipTextConfig } from './config.js';
import type { BlockKey, BlockRefs, WeightRef } from './weights.js';

const f32 = (dims: number[], data: Float32Array) => ({ type: 'float32' as const, dims, data });

export interface SpanModel {
  model: Uint8Array;
  external: ExternalDataOptions;
}

/**
 * Blocks blocks[0..] in sequence on x: [B, T, D] -> y (the last block's output); with `final`,
 * also last = final_layer_norm(y). No blocks and `final`: the final LayerNorm alone.
 */
export function spanGraph(cfg: ClipTextConfig, blocks: readonly BlockRefs[], final?: { w: WeightRef; b: WeightRef }): SpanModel {
  const D = cfg.hiddenSize;
  const g = new Graph('clip_span');
  const weights = new ExternalWeights();
  const x3 = g.input('x', 'float32', ['batch', 'seq', D]);
  const mask = g.input('mask', 'float32', ['seq', 'seq']);
  const shape3 = g.op('Shape', [x3]); // [B, T, D]
  const bt = g.op('Slice', [shape3, g.constI64([0]), g.constI64([2])]); // [B, T]
  const shape4 = g.op('Concat', [bt, g.constI64([cfg.numHeads, D / cfg.numHeads])], { axis: 0 }); // [B, T, H, hd]
  let x = g.op('Reshape', [x3, g.constI64([-1, D])]); // [B*T, D]
  blocks.forEach((refs, i) => {
    const w = (key: BlockKey) => weights.add(g, `b${i}_${key}`, refs[key].dims, refs[key]);
    x = block(g, cfg, w, x, mask, shape4);
  });
  g.output(g.op('Reshape', [x, shape3]), 'float32', ['batch', 'seq', D], 'y');
  if (final) {
    const ln = layerNorm(g, x, weights.add(g, 'final_w', final.w.dims, final.w), weights.add(g, 'final_b', final.b.dims, final.b), cfg.layerNormEps);
    g.output(g.op('Reshape', [ln, shape3]), 'float32', ['batch', 'seq', D], 'last');
  }
  return { model: g.toModel(), external: weights.options() };
}

/** One block on x: [B*T, D]; w names the block's initializers. */
function block(g: Graph, cfg: ClipTextConfig, w: (key: BlockKey) => string, x: string, mask: string, shape4: string): string {
  const eps = cfg.layerNormEps;
  const a = layerNorm(g, x, w('ln1W'), w('ln1B'), eps);
  const x1 = g.op('Add', [x, g.op('Gemm', [attention(g, cfg, w, a, mask, shape4), w('outW'), w('outB')], { transB: 1 })]);
  const m = layerNorm(g, x1, w('ln2W'), w('ln2B'), eps);
  const h = g.op('Gemm', [m, w('fc1W'), w('fc1B')], { transB: 1 });
  return g.op('Add', [x1, g.op('Gemm', [activation(g, h, cfg.hiddenAct), w('fc2W'), w('fc2B')], { transB: 1 })]);
}

/**
 * Causal self-attention of a: [B*T, D] -> context [B*T, D] (before out_proj): one Gemm each for q,
 * k and v, per-head batched MatMuls. Three Gemms rather than one over the concatenated [3D, D]
 * weights: onnxruntime prepacks each straight from the file's bytes, where a Concat would be
 * constant-folded into a fresh 3D x D copy first (85 MiB of new memory for CLIP-L at every session
 * build); each output column is computed the same way in both, so the results are bit-identical.
 */
function attention(g: Graph, cfg: ClipTextConfig, w: (key: BlockKey) => string, a: string, mask: string, shape4: string): string {
  const { hiddenSize: D, numHeads: H } = cfg;
  const hd = D / H;
  const [q2, k2, v2] = (['q', 'k', 'v'] as const).map((p) => g.op('Gemm', [a, w(`${p}W`), w(`${p}B`)], { transB: 1 })); // [B*T, D] each
  const heads = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, shape4])], { perm });
  const q = heads(g.op('Mul', [q2!, g.constF(1 / Math.sqrt(hd))]), [0, 2, 1, 3]); // [B, H, T, hd]
  const kT = heads(k2!, [0, 2, 3, 1]); // [B, H, hd, T]
  const v = heads(v2!, [0, 2, 1, 3]); // [B, H, T, hd]
  const probs = g.op('Softmax', [g.op('Add', [g.op('MatMul', [q, kT]), mask])], { axis: -1 }); // [B, H, T, T]
  return g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, v])], { perm: [0, 2, 1, 3] }), g.constI64([-1, D])]);
}

function layerNorm(g: Graph, x: string, w: string, b: string, eps: number): string {
  return g.op('LayerNormalization', [x, w, b], { axis: -1, epsilon: { float: eps } });
}

/** CLIPTextModelWithProjection's text_projection: text_embeds = pooled W^T, x: [B, D], W: [P, D], no bias. */
export function projectionGraph(cfg: ClipTextConfig, w: Float32Array): Uint8Array {
  const { hiddenSize: D, projectionDim: P } = cfg;
  const g = new Graph('clip_text_projection');
  const x = g.input('x', 'float32', ['batch', D]);
  const y = g.op('Gemm', [x, g.initializer('w', f32([P!, D], w))], { transB: 1 });
  g.output(y, 'float32', ['batch', P!], 'y');
  return g.toModel();
}

/** The MLP non-linearity named by config.json's hidden_act (T5's gated FFN uses gelu_new too). */
export function activation(g: Graph, x: string, act: Activation): string {
  switch (act) {
    case 'quick_gelu': // x * sigmoid(1.702 x)
      return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.constF(1.702)])])]);
    case 'gelu': // exact: 0.5 x (1 + erf(x / sqrt 2))
      return g.op('Mul', [g.op('Mul', [x, g.constF(0.5)]), g.op('Add', [g.constF(1), g.op('Erf', [g.op('Mul', [x, g.constF(Math.SQRT1_2)])])])]);
    case 'gelu_new':
    case 'gelu_pytorch_tanh': { // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
      const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [cube, g.constF(0.044715)])]), g.constF(Math.sqrt(2 / Math.PI))]);
      return g.op('Mul', [g.op('Mul', [x, g.constF(0.5)]), g.op('Add', [g.constF(1), g.op('Tanh', [inner])])]);
    }
  }
}
