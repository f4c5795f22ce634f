/**
 * Bias-free Linear layers y = x W^T (W in PyTorch's [out, in] layout) in one of two weight modes:
 *   f32  — exact: a Gemm on the float32 weights (parity mode);
 *   int8 — reduced memory: onnxruntime's block-quantised MatMulNBits (8 bits, blocks of 32 along
 *          the input axis, one f32 scale per block, symmetric: zero point 128), ~1.13 bytes per
 *          weight instead of 4. T5-XXL's 4.7 B parameters then take ~5.3 GB instead of 19 GB.
 */
import type { Graph } from '../../onnx/graph.js';

export type WeightMode = 'f32' | 'int8';
export const WEIGHT_MODES: readonly WeightMode[] = ['f32', 'int8'];

const BLOCK = 32;

/** x: [M, din] -> [M, dout]. */
export function linear(g: Graph, x: string, name: string, w: Float32Array, dout: number, din: number, mode: WeightMode): string {
  if (mode === 'f32') return g.op('Gemm', [x, g.initializer(name, { type: 'float32', dims: [dout, din], data: w })], { transB: 1 });
  const q = quantize8(w, dout, din);
  const blocks = q.scales.length / dout;
  return g.contribOp('MatMulNBits', [
    x,
    g.initializer(`${name}_q`, { type: 'uint8', dims: [dout, blocks, BLOCK], data: q.data }),
    g.initializer(`${name}_scales`, { type: 'float32', dims: [dout, blocks], data: q.scales }),
    g.initializer(`${name}_zp`, { type: 'uint8', dims: [dout, blocks], data: new Uint8Array(dout * blocks).fill(128) }),
  ], { K: din, N: dout, bits: 8, block_size: BLOCK });
}

/**
 * Per row and block of BLOCK inputs: scale = max|w| / 127, q = round(w / scale) + 128 (the tail block
 * zero-padded). Dequantised: (q - 128) * scale, so the largest weight of each block is exact.
 */
export function quantize8(w: Float32Array, rows: number, cols: number): { data: Uint8Array; scales: Float32Array } {
  const blocks = Math.ceil(cols / BLOCK);
  const data = new Uint8Array(rows * blocks * BLOCK).fill(128);
  const scales = new Float32Array(rows * blocks);
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
  return { data, scales };
}
