/**
 * ONNX graphs for the T5 v1.1 encoder (Hugging Face T5EncoderModel numerics): one graph per block
 * (so the residual stream can be read or replaced after any block), one for the relative position
 * bias (computed once per sequence length and fed to every block, as HF reuses block 0's), and one
 * for the final LayerNorm.
 *
 * Block, x: [B, T, D], bias: [1, H, T, T], mask: [B, 1, 1, T] additive (0 where attended):
 *   a = RMS(x) w1;  q, k, v = a Wq^T, a Wk^T, a Wv^T            (no biases, no 1/sqrt(d_kv) scaling)
 *   x = x + (softmax(q k^T + bias + mask) v) Wo^T              (per head)
 *   m = RMS(x) w2;  x = x + (gelu_new(m Wi0^T) * (m Wi1^T)) Wo_ff^T
 * RMS(x) = x / sqrt(mean(x^2) + eps): no mean subtraction, no bias (HF T5LayerNorm).
 */
import { Graph } from '../../onnx/graph.js';
import { activation } from '../clip/graph.js';
import type { T5Config } from './config.js';
import { linear, type FedWeights, type WeightMode } from './linear.js';
import type { T5BlockWeights } from './weights.js';

const f32 = (dims: number[], data: Float32Array) => ({ type: 'float32' as const, dims, data });

/** `fed` receives the weights the graph takes as inputs (see linear.ts). */
export function t5BlockGraph(cfg: T5Config, w: T5BlockWeights, mode: WeightMode, fed: FedWeights): Uint8Array {
  const { hiddenSize: D, numHeads: H, dKv: dk } = cfg;
  const inner = H * dk;
  const g = new Graph('t5_block');
  const x3 = g.input('x', 'float32', ['batch', 'seq', D]);
  const bias = g.input('bias', 'float32', [1, H, 'seq', 'seq']);
  const mask = g.input('mask', 'float32', ['batch', 1, 1, 'seq']);
  const shape3 = g.op('Shape', [x3]); // [B, T, D]
  const bt = g.op('Slice', [shape3, g.constI64([0]), g.constI64([2])]); // [B, T]
  const shape4 = g.op('Concat', [bt, g.constI64([H, dk])], { axis: 0 }); // [B, T, H, dk]
  const x = g.op('Reshape', [x3, g.constI64([-1, D])]); // [B*T, D]

  const a = rmsNorm(g, x, g.initializer('ln1', f32([D], w.ln1)), cfg.layerNormEps);
  const heads = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, shape4])], { perm });
  const q = heads(linear(g, a, 'q', w.q, mode, fed), [0, 2, 1, 3]); // [B, H, T, dk]
  const kT = heads(linear(g, a, 'k', w.k, mode, fed), [0, 2, 3, 1]); // [B, H, dk, T]
  const v = heads(linear(g, a, 'v', w.v, mode, fed), [0, 2, 1, 3]); // [B, H, T, dk]
  const scores = g.op('Add', [g.op('Add', [g.op('MatMul', [q, kT]), bias]), mask]); // [B, H, T, T]
  const ctx = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), v]);
  const ctx2 = g.op('Reshape', [g.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }), g.constI64([-1, inner])]);
  const x1 = g.op('Add', [x, linear(g, ctx2, 'o', w.o, mode, fed)]);

  const m = rmsNorm(g, x1, g.initializer('ln2', f32([D], w.ln2)), cfg.layerNormEps);
  const gated = g.op('Mul', [activation(g, linear(g, m, 'wi0', w.wi0, mode, fed), 'gelu_new'), linear(g, m, 'wi1', w.wi1, mode, fed)]);
  const y = g.op('Reshape', [g.op('Add', [x1, linear(g, gated, 'wo', w.wo, mode, fed)]), shape3]);
  g.output(y, 'float32', ['batch', 'seq', D], 'y');
  return g.toModel();
}

/** buckets: int64 [T, T] (bucket of key j for query i) -> bias [1, H, T, T] from the [numBuckets, H] table. */
export function t5BiasGraph(cfg: T5Config, table: Float32Array): Uint8Array {
  const g = new Graph('t5_position_bias');
  const buckets = g.input('buckets', 'int64', ['seq', 'seq']);
  const t = g.initializer('relative_attention_bias', f32([cfg.numBuckets, cfg.numHeads], table));
  const perHead = g.op('Transpose', [g.op('Gather', [t, buckets], { axis: 0 })], { perm: [2, 0, 1] }); // [H, T, T]
  g.output(g.op('Unsqueeze', [perHead, g.constI64([0])]), 'float32', [1, cfg.numHeads, 'seq', 'seq'], 'bias');
  return g.toModel();
}

export function t5FinalNormGraph(cfg: T5Config, w: Float32Array): Uint8Array {
  const D = cfg.hiddenSize;
  const g = new Graph('t5_final_norm');
  const x = g.input('x', 'float32', ['batch', 'seq', D]);
  g.output(rmsNorm(g, x, g.initializer('w', f32([D], w)), cfg.layerNormEps), 'float32', ['batch', 'seq', D], 'y');
  return g.toModel();
}

/** w * x / sqrt(mean(x^2, -1) + eps): the pattern onnxruntime fuses into SimplifiedLayerNormalization. */
function rmsNorm(g: Graph, x: string, w: string, eps: number): string {
  const meanSq = g.op('ReduceMean', [g.op('Pow', [x, g.constF(2)])], { axes: [-1], keepdims: 1 });
  return g.op('Mul', [w, g.op('Div', [x, g.op('Sqrt', [g.op('Add', [meanSq, g.constF(eps)])])])]);
}
