/**
 * The project's one C addon (src/train/native, built by node-gyp at install): the SAE training
 * kernels (train/native.ts picks them) and a glibc allocator setting the T5 encoder uses to give
 * freed onnxruntime buffers back. Here, below both, so the encoder layer never imports train.
 */
import { createRequire } from 'node:module';

export interface IsaKernels {
  decode(a: object): Promise<void>;
  backward(a: object): Promise<void>;
  encodeTopK(a: object): Promise<void>;
  auxK(a: object): Promise<void>;
}

export interface Addon {
  colStats(a: { x: Float32Array; B: number; D: number; sum: Float64Array; sumSq: Float64Array }): void;
  /** Absent in addons built before it existed. */
  mallocMmapThreshold?(bytes: number): boolean;
  /** The builds this CPU runs, widest first. */
  isas: Record<string, IsaKernels>;
}

// node-gyp builds the addon in src/train/native at install; from src/util that is ../train/native, from dist/util ../../src/train/native.
const ADDON_PATHS = ['../train/native/build/Release/itd_train.node', '../../src/train/native/build/Release/itd_train.node'];
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
 * Makes glibc map every allocation of at least `bytes` on its own and unmap it on free (see
 * kernels.c), so that memory freed by onnxruntime returns to the system. False when the addon is
 * not built or the C library is not glibc.
 */
export function mallocMmapThreshold(bytes: number): boolean {
  return loadAddon()?.mallocMmapThreshold?.(bytes) ?? false;
}
