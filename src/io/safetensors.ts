// safetensors reader/writer. Layout: u64 LE header length N | N bytes of JSON header | raw LE data.
// Files are validated as strictly as the reference library (contiguous, exact sizes), and tensors are
// read lazily with positioned reads so multi-GB checkpoints never sit in memory whole.
import * as fs from 'node:fs';
import { endianness } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { formatError, ItdError } from '../errors.js';
import { writeAll, writeAllAsync, writeAtomicWith, writeAtomicWithAsync } from './atomic.js';
import { duplicateJsonKey, openRegularFile, readJsonFile } from './files.js';
import { firstNonFinite } from './numeric.js';
import { numericAddon } from '../util/addon.js';

export type DType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I32' | 'I64' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** begin/end are absolute byte offsets in the file. */
export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

export type TensorData =
  | Float32Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array
  | Int8Array
  | Int16Array
  | Float64Array;

/** F16/BF16 take a Float32Array (converted, round to nearest even) or a Uint16Array of raw bits. */
export interface TensorIn {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

const DTYPE_SIZE: Record<DType, number> = {
  F32: 4, F16: 2, BF16: 2, F64: 8, I32: 4, I64: 8, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** readSync/writeSync take int32 lengths, so large tensors move in chunks. */
const IO_CHUNK = 1 << 30;
/** Elements converted per write when narrowing f32 to f16/bf16 (bounds the temporary buffer). */
const CONVERT_CHUNK = 1 << 16;
/** Elements per read when a tensor is only checked for finite values (4 MiB of f32). */
const FINITE_CHUNK = 1 << 20;

const PICKLE_EXTS = new Set(['.bin', '.pt', '.pth', '.ckpt']);

function isDType(x: unknown): x is DType {
  return typeof x === 'string' && Object.hasOwn(DTYPE_SIZE, x);
}

function fail(path: string, msg: string): never {
  throw formatError(path, undefined, msg);
}

function tensorFail(path: string, name: string, msg: string): never {
  fail(path, `tensor ${JSON.stringify(name)}: ${msg}`);
}

/** Typed-array views of file bytes assume the on-disk little-endian order. */
function assertLittleEndian(): void {
  if (endianness() !== 'LE') throw new ItdError('unsupported', 'safetensors I/O requires a little-endian host');
}

/**
 * The safetensors name the loaders look for in place of a pickle: transformers' pytorch_model.bin is
 * model.safetensors (DEFAULT_BASENAMES), diffusers' diffusion_pytorch_model.bin keeps its stem.
 */
function safetensorsNameFor(path: string): string {
  const stem = basename(path, extname(path));
  return `${stem === 'pytorch_model' ? 'model' : stem}.safetensors`;
}

function pickleError(path: string): ItdError {
  const out = join(dirname(path), safetensorsNameFor(path));
  // weights_only refuses code in the pickle; clone() unties tensors that share storage (save_file rejects those).
  return new ItdError('unsupported',
    `${path}: PyTorch pickle files (.bin, .pt, .pth, .ckpt) are never loaded because unpickling can execute ` +
      `arbitrary code. Convert it to safetensors once, in an environment you trust:\n` +
      `  python -c "import torch; from safetensors.torch import save_file; sd=torch.load('${path}', map_location='cpu', weights_only=True); ` +
      `save_file({k: v.clone().contiguous() for k, v in sd.get('state_dict', sd).items()}, '${out}')"`, { file: path });
}

function isPicklePath(path: string): boolean {
  return PICKLE_EXTS.has(extname(path).toLowerCase());
}

// ---------------------------------------------------------------------------------------------
// Half-precision conversions

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // zero / subnormal
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** f32 -> f16 bits, round to nearest even; overflow gives ±Inf, NaN stays (quiet) NaN. */
export function f32ToF16(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // f16 subnormal: value = m * 2^-24 with m = (1.mant * 2^23) >> (14 - e); below half of 2^-24 -> 0.
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    return sign | roundShift(full, shift);
  }
  // A rounding carry out of the mantissa correctly bumps the exponent (up to Inf).
  return (sign | (e << 10)) + roundShift(mant, 13);
}

/** x >> shift rounded to nearest, ties to even. */
function roundShift(x: number, shift: number): number {
  const q = x >>> shift;
  const rem = x & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rem > half || (rem === half && (q & 1) === 1) ? q + 1 : q;
}

export function bf16ToF32(bits: number): number {
  u32Scratch[0] = (bits & 0xffff) << 16;
  return f32Scratch[0]!;
}

/** f32 -> bf16 bits, round to nearest even. */
export function f32ToBf16(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0]!;
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return (b >>> 16) | 0x40; // keep NaN a NaN
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

let f16Table: Float32Array | undefined;

/** All 65536 f16 values, built once: a lookup is much faster than decoding per element. */
function f16Lut(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16ToF32(i);
  }
  return f16Table;
}

/**
 * f16 / bf16 bits -> f32 values (exact): the native addon's loop when built (a T5-XXL checkpoint
 * is 4.7 B bf16 weights), else widenHalfJs; the same bits either way.
 */
export function f16ArrayToF32(bits: Uint16Array): Float32Array<ArrayBuffer> {
  return widenHalf('F16', bits);
}

export function bf16ArrayToF32(bits: Uint16Array): Float32Array<ArrayBuffer> {
  return widenHalf('BF16', bits);
}

function widenHalf(dtype: 'F16' | 'BF16', bits: Uint16Array): Float32Array<ArrayBuffer> {
  return widenHalfInto(dtype, bits, new Float32Array(bits.length));
}

function widenHalfInto<T extends Float32Array>(dtype: 'F16' | 'BF16', bits: Uint16Array, out: T): T {
  const addon = numericAddon();
  const native = dtype === 'F16' ? addon?.f16ToF32 : addon?.bf16ToF32;
  if (native) native({ bits, out });
  else widenHalfJs(dtype, bits, out);
  return out;
}

/** The JS fallback of f16ArrayToF32 / bf16ArrayToF32: out[i] = the value of bits[i]. */
export function widenHalfJs(dtype: 'F16' | 'BF16', bits: Uint16Array, out: Float32Array): void {
  if (dtype === 'F16') {
    const lut = f16Lut();
    for (let i = 0; i < bits.length; i++) out[i] = lut[bits[i]!]!;
    return;
  }
  const u32 = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < bits.length; i++) u32[i] = bits[i]! << 16;
}

export function f32ArrayToF16(x: Float32Array): Uint16Array<ArrayBuffer> {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToF16(x[i]!);
  return out;
}

export function f32ArrayToBf16(x: Float32Array): Uint16Array<ArrayBuffer> {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToBf16(x[i]!);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Header parsing and validation

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isNonNegInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** Product of dims; throws if the element count is not exactly representable. */
function numel(path: string, name: string, shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  if (!Number.isSafeInteger(n)) tensorFail(path, name, `shape ${JSON.stringify(shape)} is too large`);
  return n;
}

function parseShape(path: string, name: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) tensorFail(path, name, `expected "shape" to be an array of integers, got ${JSON.stringify(shape)}`);
  if (!shape.every(isNonNegInt)) {
    tensorFail(path, name, `expected "shape" dims to be non-negative integers, got ${JSON.stringify(shape)}`);
  }
  return shape;
}

/** Validates one header entry; offsets returned are relative to the data section. */
function parseEntry(path: string, name: string, raw: unknown): TensorInfo {
  if (!isPlainObject(raw)) tensorFail(path, name, `expected an object with dtype, shape, data_offsets, got ${JSON.stringify(raw)}`);
  for (const key of ['dtype', 'shape', 'data_offsets']) {
    if (!(key in raw)) tensorFail(path, name, `missing "${key}"`);
  }
  const { dtype, data_offsets: offsets } = raw;
  if (!isDType(dtype)) {
    tensorFail(path, name, `unknown dtype ${JSON.stringify(dtype)} (expected one of ${Object.keys(DTYPE_SIZE).join(', ')})`);
  }
  const shape = parseShape(path, name, raw.shape);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt) || offsets[0] > offsets[1]) {
    tensorFail(path, name, `expected "data_offsets" to be [begin, end] integers with 0 <= begin <= end, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  const expected = numel(path, name, shape) * DTYPE_SIZE[dtype];
  if (end - begin !== expected) {
    tensorFail(
      path, name,
      `data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype} ${JSON.stringify(shape)} needs ${expected}`,
    );
  }
  return { name, dtype, shape, begin, end };
}

function parseMetadata(path: string, raw: unknown): Record<string, string> {
  if (!isPlainObject(raw)) fail(path, `expected "__metadata__" to be an object of strings, got ${JSON.stringify(raw)}`);
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') fail(path, `expected "__metadata__" value for ${JSON.stringify(k)} to be a string, got ${JSON.stringify(v)}`);
  }
  return Object.fromEntries(Object.entries(raw)) as Record<string, string>; // fromEntries: a "__proto__" key stays a key
}

/** The reference library only accepts a data section tiled exactly by the tensors, in some order. */
function checkContiguous(path: string, tensors: TensorInfo[], dataLen: number): void {
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: TensorInfo | undefined;
  for (const t of sorted) {
    if (t.begin < pos) tensorFail(path, t.name, `data [${t.begin}, ${t.end}] overlaps tensor ${JSON.stringify(prev!.name)} ending at ${pos}`);
    if (t.begin > pos) tensorFail(path, t.name, `data starts at ${t.begin} but the previous tensor ends at ${pos} (gap of ${t.begin - pos} bytes; buffers must be contiguous)`);
    if (t.end > dataLen) tensorFail(path, t.name, `data_offsets end ${t.end} is beyond the data section (${dataLen} bytes)`);
    pos = t.end;
    prev = t;
  }
  if (pos !== dataLen) fail(path, `data section has ${dataLen - pos} unused bytes after the last tensor (expected ${pos} bytes in total)`);
}

function readFully(path: string, fd: number, buf: Uint8Array, position: number): void {
  let off = 0;
  while (off < buf.length) {
    const n = fs.readSync(fd, buf, off, Math.min(buf.length - off, IO_CHUNK), position + off);
    if (n === 0) fail(path, `unexpected end of file at byte ${position + off} (file truncated?)`);
    off += n;
  }
}

/**
 * Rows of a little-endian f32 matrix stored at byte `offset` of the open file `fd` (`path` names it
 * in errors; [rows, width], row-major), by row index: what a lookup of a few table rows needs
 * without reading the whole table.
 */
export function readF32Rows(path: string, fd: number, offset: number, width: number, rows: Iterable<number>): Map<number, Float32Array> {
  const out = new Map<number, Float32Array>();
  for (const r of rows) if (!out.has(r)) out.set(r, readF32At(path, fd, offset + r * width * 4, width));
  return out;
}

/** `count` little-endian f32 values at byte `offset` of the open file `fd` (`path` names it in errors). */
export function readF32At(path: string, fd: number, offset: number, count: number): Float32Array {
  const out = new Float32Array(count);
  readFully(path, fd, new Uint8Array(out.buffer), offset);
  return out;
}

interface ParsedHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

function readHeader(path: string, fd: number): ParsedHeader {
  const size = fs.fstatSync(fd).size;
  if (size < 8) fail(path, `file is ${size} bytes, too short for a safetensors header (needs at least 8)`);
  const lenBuf = new Uint8Array(8);
  readFully(path, fd, lenBuf, 0);
  const n = Buffer.from(lenBuf.buffer).readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(path, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  const headerLen = Number(n);
  if (headerLen > size - 8) fail(path, `header length ${headerLen} is larger than the ${size - 8} bytes after the length prefix`);
  const headerBytes = new Uint8Array(headerLen);
  readFully(path, fd, headerBytes, 8);
  let parsed: unknown;
  let headerText = '';
  try {
    headerText = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
    parsed = JSON.parse(headerText);
  } catch (e) {
    fail(path, `header is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(parsed)) fail(path, `header must be a JSON object, got ${Array.isArray(parsed) ? 'an array' : JSON.stringify(parsed)}`);
  const dup = duplicateJsonKey(headerText);
  if (dup) fail(path, `header repeats the key ${JSON.stringify(dup.key)} in ${dup.path} (JSON.parse would silently keep the last)`);

  const dataStart = 8 + headerLen;
  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, raw] of Object.entries(parsed)) {
    if (name === '__metadata__') metadata = parseMetadata(path, raw);
    else tensors.set(name, parseEntry(path, name, raw));
  }
  checkContiguous(path, [...tensors.values()], size - dataStart);
  for (const t of tensors.values()) {
    t.begin += dataStart;
    t.end += dataStart;
  }
  return { tensors, metadata };
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Bytes of [begin, end) into a fresh buffer (offset 0, so any typed-array view is aligned). */
function readRange(path: string, fd: number, info: TensorInfo): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(info.end - info.begin);
  readFully(path, fd, buf, info.begin);
  return buf;
}

type FloatDType = 'F32' | 'F16' | 'BF16' | 'F64';
type IntDType = Exclude<DType, FloatDType>;
const FLOAT_DTYPES: readonly DType[] = ['F32', 'F16', 'BF16', 'F64'];
const INT_DTYPES: readonly DType[] = ['I32', 'I64', 'I16', 'I8', 'U8', 'BOOL'];

const isFloat = (d: DType): d is FloatDType => FLOAT_DTYPES.includes(d);
const isInt = (d: DType): d is IntDType => INT_DTYPES.includes(d);

function toF32(dtype: FloatDType, raw: Uint8Array<ArrayBuffer>): Float32Array<ArrayBuffer> {
  switch (dtype) {
    case 'F32':
      return new Float32Array(raw.buffer, 0, raw.length / 4);
    case 'F16':
      return f16ArrayToF32(new Uint16Array(raw.buffer, 0, raw.length / 2));
    case 'BF16':
      return bf16ArrayToF32(new Uint16Array(raw.buffer, 0, raw.length / 2));
    case 'F64':
      return new Float32Array(new Float64Array(raw.buffer, 0, raw.length / 8));
  }
}

function i64ToI32(path: string, name: string, src: BigInt64Array): Int32Array<ArrayBuffer> {
  const out = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (v < -2147483648n || v > 2147483647n) tensorFail(path, name, `I64 value ${v} at index ${i} does not fit in int32`);
    out[i] = Number(v);
  }
  return out;
}

function toI32(path: string, name: string, dtype: IntDType, raw: Uint8Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  switch (dtype) {
    case 'I32':
      return new Int32Array(raw.buffer, 0, raw.length / 4);
    case 'I64':
      return i64ToI32(path, name, new BigInt64Array(raw.buffer, 0, raw.length / 8));
    case 'I16':
      return new Int32Array(new Int16Array(raw.buffer, 0, raw.length / 2));
    case 'I8':
      return new Int32Array(new Int8Array(raw.buffer));
    case 'U8':
    case 'BOOL':
      return new Int32Array(raw);
  }
}

export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  private readonly tensors: Map<string, TensorInfo>;
  private fd: number | undefined;
  /** readF32SliceInto's raw bytes (offset 0: aligned views), grown to the largest half-precision slice read. */
  private scratch = new Uint8Array(0);

  private constructor(path: string, fd: number, header: ParsedHeader) {
    this.path = path;
    this.fd = fd;
    this.tensors = header.tensors;
    this.metadata = header.metadata;
  }

  /** Reads and validates only the header; tensor data stays on disk until asked for. */
  static open(path: string): SafetensorsFile {
    if (isPicklePath(path)) throw pickleError(path);
    assertLittleEndian();
    const fd = openRegularFile(path, 'a safetensors file');
    try {
      return new SafetensorsFile(path, fd, readHeader(path, fd));
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) tensorFail(this.path, name, `not found (file has ${this.tensors.size} tensors)`);
    return { ...t, shape: [...t.shape] };
  }

  readRaw(name: string): Uint8Array<ArrayBuffer> {
    return readRange(this.path, this.openFd(), this.info(name));
  }

  /** F32 as stored; F16, BF16 and F64 converted. A NaN or ±Inf anywhere is an ItdError ('numeric'). */
  readF32(name: string): Float32Array<ArrayBuffer> {
    const info = this.info(name);
    const { dtype } = info;
    if (!isFloat(dtype)) tensorFail(this.path, name, `expected a float dtype (${FLOAT_DTYPES.join(', ')}), got ${dtype}`);
    const out = toF32(dtype, readRange(this.path, this.openFd(), info));
    this.throwIfNonFinite(name, out, 0);
    return out;
  }

  /**
   * The check readF32 makes (a NaN or ±Inf anywhere is an ItdError 'numeric'), streamed in chunks:
   * for tensors whose bytes onnxruntime reads from the file itself, so they never sit in JS memory.
   */
  assertFinite(name: string): void {
    const info = this.info(name);
    const n = (info.end - info.begin) / DTYPE_SIZE[info.dtype];
    for (let from = 0; from < n; from += FINITE_CHUNK) this.throwIfNonFinite(name, this.readF32Slice(name, from, Math.min(n, from + FINITE_CHUNK)), from);
  }

  private throwIfNonFinite(name: string, values: Float32Array, base: number): void {
    const bad = firstNonFinite(values);
    if (bad < 0) return;
    throw new ItdError('numeric', `${this.path}: tensor ${JSON.stringify(name)} holds ${values[bad]} at flat index ${base + bad} (weights must be finite)`, {
      file: this.path, field: name,
    });
  }

  /** Elements [from, to) of a float tensor (flat index), converted to F32: streams a large tensor in chunks. */
  readF32Slice(name: string, from: number, to: number): Float32Array<ArrayBuffer> {
    return this.readF32SliceInto(name, from, to, new Float32Array(Math.max(0, to - from)));
  }

  /**
   * readF32Slice into `out` (exactly to - from elements), returned. Half-precision bytes go through
   * one scratch buffer kept by this file, so streaming a tensor through one `out` allocates nothing
   * per chunk (fresh 4 MiB buffers cost page faults comparable to the conversion itself).
   */
  readF32SliceInto<T extends Float32Array>(name: string, from: number, to: number, out: T): T {
    const info = this.info(name);
    const { dtype } = info;
    if (!isFloat(dtype)) tensorFail(this.path, name, `expected a float dtype (${FLOAT_DTYPES.join(', ')}), got ${dtype}`);
    const size = DTYPE_SIZE[dtype];
    const begin = info.begin + from * size;
    const end = info.begin + to * size;
    if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from <= to && end <= info.end)) {
      tensorFail(this.path, name, `slice [${from}, ${to}) is outside the tensor's ${(info.end - info.begin) / size} elements`);
    }
    if (out.length !== to - from) tensorFail(this.path, name, `slice [${from}, ${to}) read into ${out.length} elements`);
    if (dtype === 'F32') {
      readFully(this.path, this.openFd(), new Uint8Array(out.buffer, out.byteOffset, out.byteLength), begin);
      return out;
    }
    if (this.scratch.length < end - begin) this.scratch = new Uint8Array(end - begin);
    const raw = this.scratch.subarray(0, end - begin);
    readFully(this.path, this.openFd(), raw, begin);
    if (dtype === 'F64') out.set(new Float64Array(raw.buffer, 0, to - from));
    else widenHalfInto(dtype, new Uint16Array(raw.buffer, 0, to - from), out);
    return out;
  }

  /** I32 as stored; I64 narrowed (range-checked); I16, I8, U8, BOOL widened. */
  readI32(name: string): Int32Array<ArrayBuffer> {
    const info = this.info(name);
    const { dtype } = info;
    if (!isInt(dtype)) tensorFail(this.path, name, `expected an integer dtype (${INT_DTYPES.join(', ')}), got ${dtype}`);
    return toI32(this.path, name, dtype, readRange(this.path, this.openFd(), info));
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }

  private openFd(): number {
    if (this.fd === undefined) fail(this.path, 'file is closed');
    return this.fd;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Array types accepted per dtype; F16/BF16 take raw bits or a Float32Array to convert. */
const DATA_CTORS: Record<DType, Function[]> = {
  F32: [Float32Array], F16: [Uint16Array, Float32Array], BF16: [Uint16Array, Float32Array], F64: [Float64Array],
  I32: [Int32Array], I64: [BigInt64Array], I16: [Int16Array], I8: [Int8Array], U8: [Uint8Array], BOOL: [Uint8Array],
};

/** Name, dtype and shape of a tensor to write; returns its element count. */
function checkTensorMeta(path: string, name: string, dtype: DType, shape: number[]): number {
  if (name === '__metadata__') tensorFail(path, name, 'name is reserved for the metadata');
  if (!isDType(dtype)) tensorFail(path, name, `unknown dtype ${JSON.stringify(dtype)}`);
  parseShape(path, name, shape);
  return numel(path, name, shape);
}

function checkTensorIn(path: string, name: string, t: TensorIn): void {
  const n = checkTensorMeta(path, name, t.dtype, t.shape);
  const ctors = DATA_CTORS[t.dtype];
  if (!ctors.some((c) => t.data instanceof c)) {
    tensorFail(path, name, `${t.dtype} data must be a ${ctors.map((c) => c.name).join(' or ')}, got ${t.data.constructor.name}`);
  }
  if (t.data.length !== n) tensorFail(path, name, `shape ${JSON.stringify(t.shape)} has ${n} elements but data has ${t.data.length}`);
}

function bytesOf(a: TensorData): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** A tensor's file bytes in pieces of at most IO_CHUNK (F32 data narrowed to F16/BF16 piece by piece). */
function* tensorBytes(t: TensorIn): Generator<Uint8Array> {
  if (!(t.data instanceof Float32Array) || t.dtype === 'F32') {
    for (let off = 0; off < t.data.byteLength; off += IO_CHUNK) yield bytesOf(t.data).subarray(off, off + IO_CHUNK);
    return;
  }
  const narrow = t.dtype === 'F16' ? f32ArrayToF16 : f32ArrayToBf16;
  for (let i = 0; i < t.data.length; i += CONVERT_CHUNK) yield bytesOf(narrow(t.data.subarray(i, i + CONVERT_CHUNK)));
}

/** A tensor written by writeSafetensorsStream: its data is made only when its turn comes. */
export interface TensorOut {
  name: string;
  dtype: DType;
  shape: number[];
  make: () => TensorData;
}

/** Header JSON (metadata first, then the tensors, offsets in write order) padded with spaces to a multiple of 8 bytes. */
function buildHeader(entries: readonly TensorOut[], metadata?: Record<string, string>): Buffer {
  // Null prototype: a tensor named "__proto__" must become a key, not a prototype change.
  const header: Record<string, unknown> = Object.create(null);
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const { name, dtype, shape } of entries) {
    const size = shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[dtype];
    header[name] = { dtype, shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Buffer.alloc(Math.ceil(json.length / 8) * 8, 0x20);
  json.copy(padded);
  return padded;
}

/**
 * Writes a safetensors file atomically. Tensors are sorted by name (also their data order) and
 * streamed one at a time, so peak memory is the header plus one conversion chunk.
 * Note: integer-like tensor names would be reordered by JSON object key rules; real checkpoints don't use them.
 */
export function writeSafetensors(path: string, tensors: Record<string, TensorIn>, metadata?: Record<string, string>): void {
  writeSafetensorsStream(path, sortedEntries(path, tensors), metadata);
}

/**
 * writeSafetensors with the file writes on libuv's threads, so the caller computes while the bytes
 * go out (the same file, byte for byte). The tensors' data must not change until it resolves.
 */
export async function writeSafetensorsAsync(path: string, tensors: Record<string, TensorIn>, metadata?: Record<string, string>): Promise<void> {
  const entries = sortedEntries(path, tensors);
  const head = headerBytes(path, entries, metadata);
  await writeAtomicWithAsync(path, async (fh) => {
    for (const part of head) await writeAllAsync(fh, part);
    for (const { name, dtype, shape, make } of entries) {
      for (const part of tensorBytes(checkedTensor(path, name, { dtype, shape, data: make() }))) await writeAllAsync(fh, part);
    }
  });
}

/** The tensors sorted by name (also their data order), each checked before the file is created. */
function sortedEntries(path: string, tensors: Record<string, TensorIn>): TensorOut[] {
  const names = Object.keys(tensors).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const name of names) checkTensorIn(path, name, tensors[name]!);
  return names.map((name) => {
    const t = tensors[name]!;
    return { name, dtype: t.dtype, shape: t.shape, make: () => t.data };
  });
}

/**
 * Writes a safetensors file atomically from tensors made one at a time, in the given order (their
 * data order; readers accept any order that tiles the data section): a multi-GB checkpoint is written
 * while only one tensor (and one conversion chunk) is in memory. The header comes from the shapes.
 */
export function writeSafetensorsStream(path: string, entries: readonly TensorOut[], metadata?: Record<string, string>): void {
  const head = headerBytes(path, entries, metadata);
  writeAtomicWith(path, (fd) => {
    for (const part of head) writeAll(fd, part);
    for (const { name, dtype, shape, make } of entries) {
      for (const part of tensorBytes(checkedTensor(path, name, { dtype, shape, data: make() }))) writeAll(fd, part);
    }
  });
}

/** The 8-byte header length and the header of a file of `entries`, after checking names, shapes and metadata. */
function headerBytes(path: string, entries: readonly TensorOut[], metadata?: Record<string, string>): [Buffer, Buffer] {
  assertLittleEndian();
  const seen = new Set<string>();
  for (const { name, dtype, shape } of entries) {
    if (seen.has(name)) tensorFail(path, name, 'written twice');
    seen.add(name);
    checkTensorMeta(path, name, dtype, shape);
  }
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== 'string') fail(path, `metadata value for ${JSON.stringify(k)} must be a string`);
  }
  const header = buildHeader(entries, metadata);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(header.length));
  return [prefix, header];
}

function checkedTensor(path: string, name: string, t: TensorIn): TensorIn {
  checkTensorIn(path, name, t);
  return t;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints (single file or sharded with an index)

const DEFAULT_BASENAMES = ['model', 'diffusion_pytorch_model'];

function candidatesFor(dir: string, basenames: string[]): string[] {
  return basenames.flatMap((b) =>
    [`${b}.safetensors`, `${b}.safetensors.index.json`, `${b}.fp16.safetensors`, `${b}.fp16.safetensors.index.json`].map((f) => join(dir, f)),
  );
}

function resolveInDir(dir: string, basenames: string[]): string {
  const candidates = candidatesFor(dir, basenames);
  const found = candidates.find((c) => fs.existsSync(c));
  if (found) return found;
  const pickles = fs.readdirSync(dir).filter(isPicklePath).sort();
  if (pickles.length > 0) throw pickleError(join(dir, pickles[0]!));
  return fail(dir, `no safetensors checkpoint found; looked for ${candidates.map((c) => basename(c)).join(', ')}`);
}

/** weight_map of an index.json: tensor name -> shard file name (relative to the index). */
function readIndex(indexPath: string): Map<string, string> {
  const parsed = readJsonFile(indexPath, 'checkpoint index');
  if (!isPlainObject(parsed) || !isPlainObject(parsed.weight_map)) fail(indexPath, 'expected an object with a "weight_map" object');
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(parsed.weight_map)) {
    if (typeof shard !== 'string') tensorFail(indexPath, name, `expected the shard file name to be a string, got ${JSON.stringify(shard)}`);
    map.set(name, shard);
  }
  return map;
}

export class Checkpoint {
  readonly path: string;
  private readonly files: SafetensorsFile[];
  private readonly owner: Map<string, SafetensorsFile>;

  private constructor(path: string, files: SafetensorsFile[], owner: Map<string, SafetensorsFile>) {
    this.path = path;
    this.files = files;
    this.owner = owner;
  }

  /**
   * pathOrDir: a .safetensors file, a .safetensors.index.json, or a directory searched for each
   * basename as .safetensors, .safetensors.index.json, .fp16.safetensors, .fp16.safetensors.index.json.
   */
  static open(pathOrDir: string, basenames: string[] = DEFAULT_BASENAMES): Checkpoint {
    if (isPicklePath(pathOrDir)) throw pickleError(pathOrDir);
    const path = fs.existsSync(pathOrDir) && fs.statSync(pathOrDir).isDirectory() ? resolveInDir(pathOrDir, basenames) : pathOrDir;
    if (path.endsWith('.index.json')) return Checkpoint.openSharded(path);
    const file = SafetensorsFile.open(path);
    return new Checkpoint(path, [file], new Map(file.names().map((n) => [n, file])));
  }

  private static openSharded(indexPath: string): Checkpoint {
    const weightMap = readIndex(indexPath);
    const shards = new Map<string, SafetensorsFile>();
    const owner = new Map<string, SafetensorsFile>();
    try {
      for (const [name, shardName] of weightMap) {
        let shard = shards.get(shardName);
        if (!shard) {
          const shardPath = resolve(dirname(indexPath), shardName);
          if (!fs.existsSync(shardPath)) tensorFail(indexPath, name, `shard file ${shardPath} listed in weight_map does not exist`);
          shard = SafetensorsFile.open(shardPath);
          shards.set(shardName, shard);
        }
        if (!shard.has(name)) tensorFail(indexPath, name, `listed in weight_map under ${shardName} but absent from ${shard.path}`);
        owner.set(name, shard);
      }
    } catch (e) {
      for (const s of shards.values()) s.close();
      throw e;
    }
    return new Checkpoint(indexPath, [...shards.values()], owner);
  }

  names(): string[] {
    return [...this.owner.keys()];
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  info(name: string): TensorInfo & { file: string } {
    const f = this.fileOf(name);
    return { ...f.info(name), file: f.path };
  }

  readF32(name: string): Float32Array<ArrayBuffer> {
    return this.fileOf(name).readF32(name);
  }

  /** The tensor's bytes as stored (dtype in info(name)). */
  readRaw(name: string): Uint8Array<ArrayBuffer> {
    return this.fileOf(name).readRaw(name);
  }

  readF32Slice(name: string, from: number, to: number): Float32Array<ArrayBuffer> {
    return this.fileOf(name).readF32Slice(name, from, to);
  }

  readF32SliceInto<T extends Float32Array>(name: string, from: number, to: number, out: T): T {
    return this.fileOf(name).readF32SliceInto(name, from, to, out);
  }

  readI32(name: string): Int32Array<ArrayBuffer> {
    return this.fileOf(name).readI32(name);
  }

  assertFinite(name: string): void {
    this.fileOf(name).assertFinite(name);
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  private fileOf(name: string): SafetensorsFile {
    const f = this.owner.get(name);
    if (!f) tensorFail(this.path, name, `not found in checkpoint (${this.owner.size} tensors)`);
    return f;
  }
}
