/**
 * In-memory safetensors (the same layout writeSafetensors puts in a file): u64 LE header length,
 * JSON header (dtype, shape, data_offsets per tensor, names sorted, optional __metadata__) padded
 * with spaces to a multiple of 8, then every tensor's raw little-endian bytes in name order.
 */
import { endianness } from 'node:os';
import type { TensorIn } from '../io/safetensors.js';
import { ItdError } from '../errors.js';

const ELEMENT_BYTES: Partial<Record<TensorIn['dtype'], number>> = { F32: 4, F64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, I64: 8 };

export function encodeSafetensors(tensors: Record<string, TensorIn>, metadata?: Record<string, string>): Uint8Array {
  if (endianness() !== 'LE') throw new ItdError('unsupported', 'safetensors bodies are written from typed arrays: needs a little-endian host');
  const names = Object.keys(tensors).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  // Null prototype: a tensor named "__proto__" stays a key.
  const header: Record<string, unknown> = Object.create(null);
  if (metadata && Object.keys(metadata).length > 0) header['__metadata__'] = metadata;
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new ItdError('usage', 'tensor name __metadata__ is reserved', { field: name });
    const t = tensors[name]!;
    const size = ELEMENT_BYTES[t.dtype];
    if (size === undefined || t.data.BYTES_PER_ELEMENT !== size) throw new ItdError('usage', `tensor ${name}: ${t.dtype} needs raw ${size ?? '?'}-byte elements, got ${t.data.constructor.name}`, { field: name });
    if (t.data.length !== t.shape.reduce((a, b) => a * b, 1)) throw new ItdError('usage', `tensor ${name}: shape ${JSON.stringify(t.shape)} does not match ${t.data.length} elements`, { field: name });
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLen + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen), true);
  out.fill(0x20, 8, 8 + headerLen);
  out.set(json, 8);
  let at = 8 + headerLen;
  for (const name of names) {
    const d = tensors[name]!.data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}
