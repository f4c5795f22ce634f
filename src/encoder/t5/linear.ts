/**
 * Bias-free Linear layers y = x W^T (W in PyTorch's [out, in] layout) in one of two weight modes:
 *   f32  — exact: a Gemm on the float32 weights (parity mode);
 *   int8 — reduced memory: onnxruntime's block-quantised MatMulNBits (8 bits, blocks of 32 along
 *          the input axis, one f32 scale per block, symmetric: zero point 128), ~1.13 bytes per
 *          weight instead of 4. T5-XXL's 4.7 B parameters then take ~5.3 GB instead of 19 GB.
 */
import type { Graph } from '../../onnx/graph.js';
import { numericAddon } from '../../util/addon.js';
import type { LazyTensor } from './weights.js';

export type WeightMode = 'f32' | 'int8';
export const WEIGHT_MODES: readonly WeightMode[] = ['f32', 'int8'];

const BLOCK = 32;
/** MatMulNBits accuracy_level: 0 dequantises to f32 for an sgemm; 4 runs int8 x int8 kernels (activations quantised per block). */
const ACCURACY_LEVEL = 0;
/**
 * Weights per MatMulNBits node: it dequantises its whole matrix to f32 at every call, so T5-XXL's
 * wi_0 [10240, 4096] in one node would need a 160 MiB buffer; pieces of whole rows up to 4M weights
 * (16 MiB) whose outputs are concatenated give the same numbers.
 */
const NBITS_PIECE = 1 << 22;

/** The weights a block's session takes as inputs at every run: graph input name -> tensor payload. */
export type FedWeights = Map<string, { type: 'float32'; data: Float32Array; dims: number[] } | { type: 'uint8'; data: Uint8Array; dims: number[] }>;

/**
 * x: [M, din] -> [M, dout]. Weights are graph *inputs*, streamed once from the checkpoint (a few
 * MiB at a time) into the arrays that onnxruntime reads in place at each run: the model bytes hold
 * no weights and the process holds exactly one copy in the mode's precision (an initializer would
 * exist in JS, in the serialised model and in onnxruntime). Not prepacking costs ~1-4 % per GEMM.
 */
export function linear(g: Graph, x: string, name: string, w: LazyTensor, mode: WeightMode, fed: FedWeights): string {
  const { rows: dout, cols: din } = w;
  if (mode === 'f32') {
    const data = new Float32Array(dout * din);
    w.stream((c, r0) => data.set(c, r0 * din));
    fed.set(name, { type: 'float32', data, dims: [dout, din] });
    return g.op('Gemm', [x, g.input(name, 'float32', [dout, din])], { transB: 1 });
  }
  const blocks = Math.ceil(din / BLOCK);
  const codes = new Uint8Array(dout * blocks * BLOCK);
  const scales = new Float32Array(dout * blocks);
  w.stream((c, r0) => {
    const k = c.length / din;
    scales.set(quantize8(c, k, din, codes.subarray(r0 * blocks * BLOCK, (r0 + k) * blocks * BLOCK)), r0 * blocks);
  });
  const input = (suffix: string, v: { type: 'float32'; data: Float32Array; dims: number[] } | { type: 'uint8'; data: Uint8Array; dims: number[] }) => {
    fed.set(name + suffix, v);
    return g.input(name + suffix, v.type, v.dims);
  };
  const step = Math.max(1, Math.floor(NBITS_PIECE / din));
  const pieces: string[] = [];
  for (let r0 = 0; r0 < dout; r0 += step) {
    const r1 = Math.min(dout, r0 + step);
    const p = dout <= step ? '' : `_${r0 / step}`; // views of the one quantised copy: nothing is duplicated
    pieces.push(g.contribOp('MatMulNBits', [
      x,
      input(`_q${p}`, { type: 'uint8', data: codes.subarray(r0 * blocks * BLOCK, r1 * blocks * BLOCK), dims: [r1 - r0, blocks, BLOCK] }),
      input(`_scales${p}`, { type: 'float32', data: scales.subarray(r0 * blocks, r1 * blocks), dims: [r1 - r0, blocks] }),
      // No zero_points input: MatMulNBits then uses 2^(bits-1) = 128, the symmetric code's zero (saves 1/32 byte a weight).
    ], { K: din, N: r1 - r0, bits: 8, block_size: BLOCK, accuracy_level: ACCURACY_LEVEL }));
  }
  return pieces.length === 1 ? pieces[0]! : g.op('Concat', pieces, { axis: -1 });
}

/**
 * Per row and block of BLOCK inputs: scale = max|w| / 127, q = round(w / scale) + 128 (the tail block
 * zero-padded) written into `data` [rows, blocks, BLOCK]. Dequantised: (q - 128) * scale, so the
 * largest weight of each block is exact. Returns the scales [rows, blocks]. The native addon's loop
 * when built (T5-XXL has 4.7 B weights), else quantize8Js: the same bytes.
 */
export function quantize8(w: Float32Array, rows: number, cols: number, data: Uint8Array): Float32Array {
  const scales = new Float32Array(rows * Math.ceil(cols / BLOCK));
  const native = numericAddon()?.quantize8;
  if (native) native({ w, rows, cols, codes: data, scales });
  else quantize8Js(w, rows, cols, data, scales);
  return scales;
}

/** The JS fallback of quantize8 (and its definition, which the native loop matches bit for bit). */
export function quantize8Js(w: Float32Array, rows: number, cols: number, data: Uint8Array, scales: Float32Array): void {
  const blocks = Math.ceil(cols / BLOCK);
  data.fill(128, 0, rows * blocks * BLOCK);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocks; b++) {
      const from = r * cols + b * BLOCK;
      const to = r * cols + Math.min(cols, (b + 1) * BLOCK);
      let max = 0;
      for (let i = from; i < to; i++) max = Math.max(max, Math.abs(w[i]!));
      const scale = Math.fround(max > 0 ? max / 127 : 1); // as stored, so q matches what is dequantised
      scales[r * blocks + b] = scale;
      const out = (r * blocks + b) * BLOCK - from;
      for (let i = from; i < to; i++) data[out + i] = Math.round(w[i]! / scale) + 128;
    }
  }
}
