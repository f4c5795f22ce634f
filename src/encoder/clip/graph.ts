/**
 * ONNX graphs for the CLIP text tower: one graph per transformer block (so the residual stream
 * can be read or replaced after any block) and one for the final LayerNorm.
 *
 * Block (pre-LayerNorm, as Hugging Face CLIPEncoderLayer), x: [B, T, D], mask: [T, T] additive causal:
 *   a = LN1(x);  q = (a Wq^T + bq) / sqrt(hd);  k = a Wk^T + bk;  v = a Wv^T + bv
 *   x = x + (softmax(q k^T + mask) v) Wo^T + bo            (per head, hd = D / H)
 *   x = x + fc2(act(fc1(LN2(x))))
 */
import { Graph } from '../../onnx/graph.js';
import type { Activation, ClipTextConfig } from './config.js';
import type { BlockWeights, FinalNormWeights } from './weights.js';

const f32 = (dims: number[], data: Float32Array) => ({ type: 'float32' as const, dims, data });

export function blockGraph(cfg: ClipTextConfig, w: BlockWeights): Uint8Array {
  const { hiddenSize: D, numHeads: H, intermediateSize: I, layerNormEps: eps } = cfg;
  const hd = D / H;
  const g = new Graph('clip_block');
  const x3 = g.input('x', 'float32', ['batch', 'seq', D]);
  const mask = g.input('mask', 'float32', ['seq', 'seq']);
  const shape3 = g.op('Shape', [x3]); // [B, T, D]
  const bt = g.op('Slice', [shape3, g.constI64([0]), g.constI64([2])]); // [B, T]
  const shape4 = g.op('Concat', [bt, g.constI64([H, hd])], { axis: 0 }); // [B, T, H, hd]
  const x = g.op('Reshape', [x3, g.constI64([-1, D])]); // [B*T, D]

  // Attention: one fused QKV Gemm, then per-head batched MatMuls.
  const a = g.op('LayerNormalization', [x, g.initializer('ln1_w', f32([D], w.ln1W)), g.initializer('ln1_b', f32([D], w.ln1B))], { axis: -1, epsilon: { float: eps } });
  const qkvW = g.initializer('qkv_w', f32([3 * D, D], concat(w.qW, w.kW, w.vW)));
  const qkvB = g.initializer('qkv_b', f32([3 * D], concat(w.qB, w.kB, w.vB)));
  const qkv = g.op('Gemm', [a, qkvW, qkvB], { transB: 1 }); // [B*T, 3D]
  const [q2, k2, v2] = g.opN('Split', [qkv, g.constI64([D, D, D])], 3, { axis: 1 });
  const heads = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, shape4])], { perm });
  const q = heads(g.op('Mul', [q2!, g.constF(1 / Math.sqrt(hd))]), [0, 2, 1, 3]); // [B, H, T, hd]
  const kT = heads(k2!, [0, 2, 3, 1]); // [B, H, hd, T]
  const v = heads(v2!, [0, 2, 1, 3]); // [B, H, T, hd]
  const probs = g.op('Softmax', [g.op('Add', [g.op('MatMul', [q, kT]), mask])], { axis: -1 }); // [B, H, T, T]
  const ctx = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, v])], { perm: [0, 2, 1, 3] }), g.constI64([-1, D])]);
  const attn = g.op('Gemm', [ctx, g.initializer('out_w', f32([D, D], w.outW)), g.initializer('out_b', f32([D], w.outB))], { transB: 1 });
  const x1 = g.op('Add', [x, attn]);

  // MLP.
  const m = g.op('LayerNormalization', [x1, g.initializer('ln2_w', f32([D], w.ln2W)), g.initializer('ln2_b', f32([D], w.ln2B))], { axis: -1, epsilon: { float: eps } });
  const h = g.op('Gemm', [m, g.initializer('fc1_w', f32([I, D], w.fc1W)), g.initializer('fc1_b', f32([I], w.fc1B))], { transB: 1 });
  const f = g.op('Gemm', [activation(g, h, cfg.hiddenAct), g.initializer('fc2_w', f32([D, I], w.fc2W)), g.initializer('fc2_b', f32([D], w.fc2B))], { transB: 1 });
  const y = g.op('Reshape', [g.op('Add', [x1, f]), shape3]);
  g.output(y, 'float32', ['batch', 'seq', D], 'y');
  return g.toModel();
}

export function finalNormGraph(cfg: ClipTextConfig, w: FinalNormWeights): Uint8Array {
  const D = cfg.hiddenSize;
  const g = new Graph('clip_final_norm');
  const x = g.input('x', 'float32', ['batch', 'seq', D]);
  const y = g.op('LayerNormalization', [x, g.initializer('w', f32([D], w.w)), g.initializer('b', f32([D], w.b))], { axis: -1, epsilon: { float: cfg.layerNormEps } });
  g.output(y, 'float32', ['batch', 'seq', D], 'y');
  return g.toModel();
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

function concat(...parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
