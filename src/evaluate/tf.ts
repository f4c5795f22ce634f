/**
 * The optional vision stack of `eval-images` (TensorFlow.js on its WebAssembly backend, NSFWJS,
 * face-api). They are optionalDependencies, so a core install (`npm ci --omit=optional`) stays
 * small; each is imported on first use and its absence is an 'unsupported' ItdError naming the
 * install command. The .wasm binaries load from node_modules (never a CDN).
 */
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import type * as Tf from '@tensorflow/tfjs';
import { ItdError } from '../errors.js';
import type { RgbImage } from '../io/png.js';

/** The optional packages, pinned to the versions itd is tested with. */
export const VISION_PACKAGES = ['@tensorflow/tfjs@4.22.0', '@tensorflow/tfjs-backend-wasm@4.22.0', 'nsfwjs@4.3.0', '@vladmandic/face-api@1.7.15'];

function missing(pkg: string, cause: unknown): ItdError {
  return new ItdError('unsupported', `eval-images needs the optional package ${pkg}, which is not installed`, {
    field: pkg,
    hint: `npm i ${VISION_PACKAGES.join(' ')}`,
    cause,
  });
}

/** `load()` (a literal `import(...)`, which keeps its types), or the 'unsupported' error when `pkg` is absent. */
export async function optionalImport<T>(pkg: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') throw missing(pkg, e);
    throw e;
  }
}

/** A file's directory inside an installed optional package. */
export function optionalPackageDir(pkg: string): string {
  try {
    return dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`));
  } catch (e) {
    throw missing(pkg, e);
  }
}

let ready: Promise<typeof Tf> | undefined;
let tf: typeof Tf | undefined;

/** Directory (with trailing separator) holding tfjs-backend-wasm*.wasm in the installed package. */
export function wasmDir(): string {
  return join(optionalPackageDir('@tensorflow/tfjs-backend-wasm'), 'dist') + sep;
}

export function initTf(): Promise<typeof Tf> {
  ready ??= (async () => {
    const lib = await optionalImport('@tensorflow/tfjs', () => import('@tensorflow/tfjs'));
    const { setWasmPaths } = await optionalImport('@tensorflow/tfjs-backend-wasm', () => import('@tensorflow/tfjs-backend-wasm'));
    setWasmPaths(wasmDir());
    if (!(await lib.setBackend('wasm'))) throw new ItdError('unsupported', `could not start the tfjs wasm backend from ${wasmDir()}`);
    await lib.ready();
    return (tf = lib);
  })();
  return ready;
}

/** [height, width, 3] int32 tensor of an image; the caller disposes it. Needs initTf() first. */
export function toTensor(img: RgbImage): Tf.Tensor3D {
  if (!tf) throw new ItdError('internal', 'toTensor called before initTf');
  return tf.tensor3d(Int32Array.from(img.data), [img.height, img.width, 3], 'int32');
}
