/**
 * The project's one C addon (src/native, built by node-gyp at install): the SAE training
 * kernels (train/native.ts picks them), the CLIP text tower's forward (encoder/clip/native.ts),
 * the loading loops of half-precision checkpoints and of the T5 encoder's int8 weights
 * (bit-identical to their JS fallbacks), and a glibc allocator setting the T5 encoder uses to give
 * freed onnxruntime buffers back. Here, below all of them, so the
 * encoder and io layers never import train.
 */
import { createRequire } from 'node:module';

export interface IsaKernels {
  decode(a: object): Promise<void>;
  backward(a: object): Promise<void>;
  encodeTopK(a: object): Promise<void>;
  auxK(a: object): Promise<void>;
}

/** forward.c: the CLIP text tower's blocks (encoder/clip/native.ts). */
export interface ClipAddon {
  /** The builds this CPU runs, widest first. */
  isas: string[];
  /**
   * Packs one block's weights (PyTorch [out, in] Linear layouts) for build `isa`: an opaque handle.
   * Each tensor is a Float32Array or the byte offset of its f32 values in the file open as `fd`.
   */
  packBlock(a: Record<string, Float32Array | number | string>): object;
  /** Runs the blocks on y [n t D] in place; with `last`, also the final LayerNorm into it. status[0] = 1 on failure. */
  forward(a: { blocks: object[]; y: Float32Array; n: number; t: number; D: number; threads: number; status: Int32Array; last?: Float32Array; finalW?: Float32Array; finalB?: Float32Array; finalEps?: number }): Promise<void>;
  /** Gives a block's memory back now (after any forward using it ends). */
  free(handle: object): void;
}

export interface Addon {
  colStats(a: { x: Float32Array; B: number; D: number; sum: Float64Array; sumSq: Float64Array }): void;
  /** Absent in addons built before it existed (so are the three below). */
  mallocMmapThreshold?(bytes: number): boolean;
  /** w [rows, cols] -> codes [rows, blocks, 32], scales [rows, blocks]: encoder/t5/linear.ts quantize8Js, bit for bit. */
  quantize8?(a: { w: Float32Array; rows: number; cols: number; codes: Uint8Array; scales: Float32Array }): void;
  /** out[i] = the f32 value of f16 bits[i], as io/safetensors.ts's JS table gives it (every NaN 0x7fc00000). */
  f16ToF32?(a: { bits: Uint16Array; out: Float32Array }): void;
  /** out[i] = the f32 value of bf16 bits[i] (bits << 16). */
  bf16ToF32?(a: { bits: Uint16Array; out: Float32Array }): void;
  /** y = train/trainer.ts geometricMedianJs(x, D) for N rows, bit for bit, on all threads. */
  geometricMedian?(a: { x: Float32Array; N: number; D: number; iters: number; tol2: number; y: Float64Array }): void;
  /** The builds this CPU runs, widest first. */
  isas: Record<string, IsaKernels>;
  /** Absent where the CPU lacks AVX2 + FMA, or in addons built before it existed. */
  clip?: ClipAddon;
}

// node-gyp builds the addon in src/native at install; from src/util that is ../native, from dist/util ../../src/native.
const ADDON_PATHS = ['../native/build/Release/itd_native.node', '../../src/native/build/Release/itd_native.node'];
let addon: Addon | null | undefined;

/** The addon from the first location it was built at (undefined when none). */
function requireAddon(): Addon | undefined {
  const req = createRequire(import.meta.url);
  for (const p of ADDON_PATHS) {
    try {
      return req(p) as Addon;
    } catch {
      // not built at this location: try the next
    }
  }
  return undefined;
}

/** The addon, loaded once (undefined when it was not built or does not load). */
export function loadAddon(): Addon | undefined {
  if (addon === undefined) addon = requireAddon() ?? null;
  return addon ?? undefined;
}

/**
 * The addon for the loading loops (quantize8, f16ToF32, bf16ToF32), or undefined when it is not
 * built or ITD_NATIVE=0 (which also forces the JS training kernels): the JS loops then run, with
 * the same results.
 */
export function numericAddon(): Addon | undefined {
  return process.env['ITD_NATIVE'] === '0' ? undefined : loadAddon();
}

/**
 * Makes glibc map every allocation of at least `bytes` on its own and unmap it on free (see
 * kernels.c), so that memory freed by onnxruntime returns to the system. False when the addon is
 * not built or the C library is not glibc.
 */
export function mallocMmapThreshold(bytes: number): boolean {
  return loadAddon()?.mallocMmapThreshold?.(bytes) ?? false;
}
