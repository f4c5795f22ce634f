/**
 * One read interface over the weight files itd accepts: safetensors (one file or sharded, see
 * Checkpoint) and PyTorch zip state dicts (TorchZipFile). Legacy pre-1.6 pickles are refused: their
 * format interleaves storages with the pickle stream and they exist only from very old torch.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ItdError } from '../errors.js';
import { isZipFile, TorchZipFile } from './pickle.js';
import { Checkpoint, type TensorInfo } from './safetensors.js';

export interface TensorFile {
  readonly path: string;
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo & { file: string };
  readF32(name: string): Float32Array<ArrayBuffer>;
  close(): void;
  /** A rank-2 tensor's transpose, row-major, when the format can read it without a transpose pass. */
  readF32Transposed?(name: string): Float32Array<ArrayBuffer>;
  /** Non-tensor leaves of a torch state dict (ints, strings), under dotted names. */
  readonly values?: ReadonlyMap<string, unknown>;
}

export const TORCH_EXTS = new Set(['.bin', '.pt', '.pth', '.ckpt']);

export const isTorchPath = (p: string): boolean => TORCH_EXTS.has(path.extname(p).toLowerCase());

/** Opens a .safetensors / .index.json / PyTorch zip (.pt, .pth, .bin, .ckpt) file. */
export function openTensorFile(p: string): TensorFile {
  if (!isTorchPath(p)) return Checkpoint.open(p);
  if (!fs.existsSync(p)) throw new ItdError('not_found', `${p}: file not found`, { file: p });
  if (!isZipFile(p)) {
    const stem = path.basename(p, path.extname(p));
    // transformers' pytorch_model.bin becomes the model.safetensors its loaders (and itd) look for.
    const out = path.join(path.dirname(p), `${stem === 'pytorch_model' ? 'model' : stem}.safetensors`);
    throw new ItdError(
      'unsupported',
      `${p}: legacy (non-zip, pre-torch-1.6) pickles are never loaded: only zip state dicts are read, through a reader ` +
        `that refuses anything but tensors. Convert it once, in an environment you trust:\n` +
        `  python -c "import torch; from safetensors.torch import save_file; save_file({k: v.contiguous() for k, v in ` +
        `torch.load('${p}', map_location='cpu', weights_only=True).items()}, '${out}')"`,
      { file: p },
    );
  }
  return TorchZipFile.open(p);
}
