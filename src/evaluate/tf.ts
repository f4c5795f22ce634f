/** TensorFlow.js on its WebAssembly backend, with the .wasm binaries loaded from node_modules (never a CDN). */
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import type { RgbImage } from '../io/png.js';

let ready: Promise<void> | undefined;

/** Directory (with trailing separator) holding tfjs-backend-wasm*.wasm in the installed package. */
export function wasmDir(): string {
  const pkg = createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json');
  return join(dirname(pkg), 'dist') + sep;
}

export function initTf(): Promise<void> {
  ready ??= (async () => {
    setWasmPaths(wasmDir());
    if (!(await tf.setBackend('wasm'))) throw new Error(`could not start the tfjs wasm backend from ${wasmDir()}`);
    await tf.ready();
  })();
  return ready;
}

export function toTensor(img: RgbImage): tf.Tensor3D {
  return tf.tensor3d(Int32Array.from(img.data), [img.height, img.width, 3], 'int32');
}

export { tf };
