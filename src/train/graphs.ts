/** onnxruntime graphs of the training step (the encoder's TopK graph lives in src/sae). */
import { Graph } from '../onnx/graph.js';

/**
 * BatchTopK forward: the k*B largest pre-activations of the whole batch.
 * Inputs x [B, D], w [n, D], b [n], b_pre [D], k (int64 [1] = k*B). Outputs values [kB] (ReLU'd),
 * rows and latents (int32 [kB]).
 */
export function batchTopKGraph(D: number): Uint8Array {
  const g = new Graph('sae_batch_topk');
  const x = g.input('x', 'float32', ['B', D]);
  const w = g.input('w', 'float32', ['n', D]);
  const b = g.input('b', 'float32', ['n']);
  const bPre = g.input('b_pre', 'float32', [D]);
  const pre = g.op('Gemm', [g.op('Sub', [x, bPre]), w, b], { transB: 1 }); // [B, n]
  const n = g.op('Slice', [g.op('Shape', [pre]), g.constI64([1]), g.constI64([2])]); // [1]
  const flat = g.op('Reshape', [pre, g.constI64([1, -1])]); // [1, B n]
  const [v, i] = g.opN('TopK', [flat, g.input('k', 'int64', [1])], 2, { axis: 1 });
  const idx = g.op('Reshape', [i!, g.constI64([-1])]);
  g.output(g.op('Relu', [g.op('Reshape', [v!, g.constI64([-1])])]), 'float32', ['K'], 'values');
  g.output(g.op('Cast', [g.op('Div', [idx, n])], { to: 6 }), 'int32', ['K'], 'rows');
  g.output(g.op('Cast', [g.op('Mod', [idx, n])], { to: 6 }), 'int32', ['K'], 'latents');
  return g.toModel();
}

/**
 * AuxK over the m dead latents (their rows gathered), dense since m is small next to n:
 *   Z = scatter(ReLU(TopK_kAux(xc We^T + be)))  [B, m] (zeros elsewhere)
 *   r = g * rScale (the residual x - x_hat, recovered from the main gradient g)
 *   e_hat = Z Wd;  L = cAux/2 ||e_hat - r||^2  ->  G = cAux (e_hat - r)
 *   dWd = Z^T G;  dP = (G Wd^T) * [Z > 0];  dWe = dP^T xc;  dbe = sum_rows dP
 * Inputs xc [B, D], we [m, D], be [m], wd [m, D], g [B, D], r_scale [1], c_aux [1], k (int64 [1]).
 * Outputs d_we [m, D], d_be [m], d_wd [m, D], sq_err [] (||e_hat - r||^2).
 */
export function auxKGraph(D: number): Uint8Array {
  const g = new Graph('sae_auxk');
  const xc = g.input('xc', 'float32', ['B', D]);
  const we = g.input('we', 'float32', ['m', D]);
  const be = g.input('be', 'float32', ['m']);
  const wd = g.input('wd', 'float32', ['m', D]);
  const grad = g.input('g', 'float32', ['B', D]);
  const rScale = g.input('r_scale', 'float32', [1]);
  const cAux = g.input('c_aux', 'float32', [1]);
  const p = g.op('Gemm', [xc, we, be], { transB: 1 }); // [B, m]
  const [v, i] = g.opN('TopK', [p, g.input('k', 'int64', [1])], 2, { axis: 1 });
  const z = g.op('ScatterElements', [g.op('ConstantOfShape', [g.op('Shape', [p])]), i!, g.op('Relu', [v!])], { axis: 1 }); // [B, m]
  const diff = g.op('Sub', [g.op('MatMul', [z, wd]), g.op('Mul', [grad, rScale])]); // [B, D]
  const G = g.op('Mul', [diff, cAux]);
  const dp = g.op('Mul', [g.op('Gemm', [G, wd], { transB: 1 }), g.op('Cast', [g.op('Greater', [z, g.constF(0)])], { to: 1 })]);
  g.output(g.op('Gemm', [dp, xc], { transA: 1 }), 'float32', ['m', D], 'd_we');
  g.output(g.op('ReduceSum', [dp, g.constI64([0])], { keepdims: 0 }), 'float32', ['m'], 'd_be');
  g.output(g.op('Gemm', [z, G], { transA: 1 }), 'float32', ['m', D], 'd_wd');
  g.output(g.op('ReduceSum', [g.op('Mul', [diff, diff])], { keepdims: 0 }), 'float32', [], 'sq_err');
  return g.toModel();
}
