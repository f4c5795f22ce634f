/**
 * ONNX graphs for the T5 v1.1 encoder (Hugging Face T5EncoderModel numerics): one graph per block
 * (so the residual stream can be read or replaced after any block) and one for the final LayerNorm.
 *
 * Block, x: [B, T, D], buckets: int64 [T, T] (relative position bucket of key j for query i),
 * mask: [B or 1, 1, 1, T] additive (0 where attended):
 *   a = RMS(x) w1;  q, k, v = a Wq^T, a Wk^T, a Wv^T            (no biases, no 1/sqrt(d_kv) scaling)
 *   x = x + (softmax(q k^T + bias + mask) v) Wo^T              (per head, GROUP_HEADS heads at a time)
 *   bias[h, i, j] = relative_attention_bias[buckets[i, j], h]   (block 0's table in every block, as HF)
 *   m = RMS(x) w2;  x = x + (gelu_new(m Wi0^T) * (m Wi1^T)) Wo_ff^T
 * RMS(x) = x / sqrt(mean(x^2) + eps): no mean subtraction, no bias (HF T5LayerNorm).
 */
import { Graph } from '../../onnx/graph.js';
import { activation } from '../clip/graph.js';
import type { T5Config } from './config.js';
import { linear, type FedWeights, type WeightMode } from './linear.js';
import type { T5BlockWeights } from './weights.js';

const f32 = (dims: number[], data: Float32Array) => ({ type: 'float32' as const, dims, data });

/**
 * Heads whose attention scores are computed together: the scores of all of T5-XXL's 64 heads at 512
 * tokens take 64 MiB per op (MatMul, Add, Softmax), 8 heads 8 MiB, for the cost of slicing q, k, v.
 */
const GROUP_HEADS = 8;

/**
 * `fed` receives the weights the graph takes as inputs (see linear.ts); `table` is block 0's
 * relative_attention_bias [numBuckets, H]. Each head group gathers its own bias slice, so no
 * [H, T, T] bias (64 MiB for T5-XXL at 512 tokens) is ever held.
 */
export function t5BlockGraph(cfg: T5Config, w: T5BlockWeights, table: Float32Array, mode: WeightMode, fed: FedWeights): Uint8Array {
  const { hiddenSize: D, numHeads: H, dKv: dk } = cfg;
  const inner = H * dk;
  const g = new Graph('t5_block');
  const x3 = g.input('x', 'float32', ['batch', 'seq', D]);
  const buckets = g.input('buckets', 'int64', ['seq', 'seq']);
  const mask = g.input('mask', 'float32', ['mask_batch', 1, 1, 'seq']);
  const shape3 = g.op('Shape', [x3]); // [B, T, D]
  const bt = g.op('Slice', [shape3, g.constI64([0]), g.constI64([2])]); // [B, T]
  const shape4 = g.op('Concat', [bt, g.constI64([H, dk])], { axis: 0 }); // [B, T, H, dk]
  const x = g.op('Reshape', [x3, g.constI64([-1, D])]); // [B*T, D]

  const a = rmsNorm(g, x, g.initializer('ln1', f32([D], w.ln1)), cfg.layerNormEps);
  const heads = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, shape4])], { perm });
  const q = heads(linear(g, a, 'q', w.q, mode, fed), [0, 2, 1, 3]); // [B, H, T, dk]
  const kT = heads(linear(g, a, 'k', w.k, mode, fed), [0, 2, 3, 1]); // [B, H, dk, T]
  const v = heads(linear(g, a, 'v', w.v, mode, fed), [0, 2, 1, 3]); // [B, H, T, dk]
  const groups: string[] = [];
  for (let h0 = 0; h0 < H; h0 += GROUP_HEADS) {
    const h1 = Math.min(H, h0 + GROUP_HEADS);
    const part = (t: string) => (H <= GROUP_HEADS ? t : g.op('Slice', [t, g.constI64([h0]), g.constI64([h1]), g.constI64([1])]));
    const bias = groupBias(g, cfg, table, h0, h1, buckets); // [1, h, T, T]
    const scores = g.op('Add', [g.op('Add', [g.op('MatMul', [part(q), part(kT)]), bias]), mask]); // [B, h, T, T]
    groups.push(g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), part(v)]));
  }
  const ctx = groups.length === 1 ? groups[0]! : g.op('Concat', groups, { axis: 1 }); // [B, H, T, dk]
  const ctx2 = g.op('Reshape', [g.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }), g.constI64([-1, inner])]);
  const x1 = g.op('Add', [x, linear(g, ctx2, 'o', w.o, mode, fed)]);

  const m = rmsNorm(g, x1, g.initializer('ln2', f32([D], w.ln2)), cfg.layerNormEps);
  const gated = g.op('Mul', [activation(g, linear(g, m, 'wi0', w.wi0, mode, fed), 'gelu_new'), linear(g, m, 'wi1', w.wi1, mode, fed)]);
  const y = g.op('Reshape', [g.op('Add', [x1, linear(g, gated, 'wo', w.wo, mode, fed)]), shape3]);
  g.output(y, 'float32', ['batch', 'seq', D], 'y');
  return g.toModel();
}

/** Heads h0..h1-1 of the position bias: table[:, h0:h1] gathered by buckets -> [1, h1-h0, T, T]. */
function groupBias(g: Graph, cfg: T5Config, table: Float32Array, h0: number, h1: number, buckets: string): string {
  const { numBuckets: nb, numHeads: H } = cfg;
  const cols = new Float32Array(nb * (h1 - h0)); // [numBuckets, h1-h0]
  for (let b = 0; b < nb; b++) cols.set(table.subarray(b * H + h0, b * H + h1), b * (h1 - h0));
  const t = g.initializer(`relative_attention_bias_${h0}`, f32([nb, h1 - h0], cols));
  const perHead = g.op('Transpose', [g.op('Gather', [t, buckets], { axis: 0 })], { perm: [2, 0, 1] }); // [h, T, T]
  return g.op('Unsqueeze', [perHead, g.constI64([0])]);
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
