/**
 * PyTorch zip checkpoints (torch.save since 1.6: `.pt`, `.pth`, `.bin` state dicts) read without
 * running any of their code. The archive holds `<prefix>/data.pkl` (a pickle of the object tree),
 * `<prefix>/byteorder`, and one `<prefix>/data/<key>` entry per storage.
 *
 * The pickle is interpreted by a small virtual machine that knows only pure-data opcodes (ints,
 * floats, strings, bytes, tuples, lists, dicts, memo) plus the few globals a tensor state dict needs:
 *   torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, torch.<Dtype>Storage,
 *   collections.OrderedDict, and persistent_load of ('storage', <Storage>, key, location, numel).
 * Every other global (os.system, builtins.eval, any class) and every other opcode (INST, OBJ, NEWOBJ,
 * EXT*, text PERSID, ...) is refused with an ItdError naming the file and the offending item, so
 * loading a checkpoint never executes code. Legacy (pre-1.6, non-zip) pickles are refused by callers.
 *
 * The zip reader is own code: the maintained libraries on npm either read the whole archive into one
 * Buffer (adm-zip, fflate, jszip: impossible for multi-GB SAEs) or are async-only (yauzl,
 * node-stream-zip), while every itd loader is synchronous and reads tensors lazily with positioned
 * reads. It handles the central directory, zip64 and stored/deflated entries; torch stores entries
 * uncompressed, so tensor bytes are read straight from the file.
 */
import fs from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { ItdError, formatError } from '../errors.js';
import { bf16ArrayToF32, f16ArrayToF32, type DType, type TensorInfo } from './safetensors.js';

// ---------------------------------------------------------------------------------------------
// zip

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localHeader: number;
}

const ZIP_MAGIC = 0x04034b50;

/** True when the file starts with a zip local-file header (torch >= 1.6 checkpoints do). */
export function isZipFile(path: string): boolean {
  const fd = fs.openSync(path, 'r');
  try {
    const b = Buffer.alloc(4);
    return fs.readSync(fd, b, 0, 4, 0) === 4 && b.readUInt32LE(0) === ZIP_MAGIC;
  } finally {
    fs.closeSync(fd);
  }
}

/** Exactly `length` bytes at `position` (a fresh buffer, offset 0); a short file is a format error. */
function readAt(path: string, fd: number, length: number, position: number): Buffer {
  const buf = Buffer.alloc(length);
  for (let done = 0; done < length; ) {
    const n = fs.readSync(fd, buf, done, Math.min(length - done, 1 << 30), position + done);
    if (n === 0) throw formatError(path, undefined, `unexpected end of file at byte ${position + done} (truncated?)`);
    done += n;
  }
  return buf;
}

class ZipReader {
  readonly entries = new Map<string, ZipEntry>();

  constructor(readonly path: string, readonly fd: number) {
    const size = fs.fstatSync(fd).size;
    const tail = readAt(path, fd, Math.min(size, 65557), Math.max(0, size - 65557));
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) if (tail.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
    if (eocd < 0) throw formatError(path, undefined, 'not a zip archive (no end-of-central-directory record)');
    const base = Math.max(0, size - 65557);
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const loc = eocd - 20;
      if (loc < 0 || tail.readUInt32LE(loc) !== 0x07064b50) throw formatError(path, undefined, 'zip64 locator missing');
      const z64 = readAt(path, fd, 56, Number(tail.readBigUInt64LE(loc + 8)));
      if (z64.readUInt32LE(0) !== 0x06064b50) throw formatError(path, undefined, 'zip64 end record missing');
      count = Number(z64.readBigUInt64LE(32));
      cdSize = Number(z64.readBigUInt64LE(40));
      cdOffset = Number(z64.readBigUInt64LE(48));
    }
    if (cdOffset + cdSize > base + eocd) throw formatError(path, undefined, 'zip central directory out of range');
    const cd = readAt(path, fd, cdSize, cdOffset);
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) throw formatError(path, undefined, `zip central directory entry ${i} is corrupt`);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      const e: ZipEntry = {
        name: cd.toString('utf8', p + 46, p + 46 + nameLen),
        method: cd.readUInt16LE(p + 10),
        compressedSize: cd.readUInt32LE(p + 20),
        size: cd.readUInt32LE(p + 24),
        localHeader: cd.readUInt32LE(p + 42),
      };
      readZip64Extra(cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen), e);
      this.entries.set(e.name, e);
      p += 46 + nameLen + extraLen + commentLen;
    }
  }

  /** Absolute file offset of a stored entry's first data byte. */
  dataOffset(e: ZipEntry): number {
    const h = readAt(this.path, this.fd, 30, e.localHeader);
    if (h.length < 30 || h.readUInt32LE(0) !== ZIP_MAGIC) throw formatError(this.path, e.name, 'zip local header is corrupt');
    return e.localHeader + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
  }

  /** Bytes [from, from + length) of an entry's uncompressed content. */
  read(e: ZipEntry, from = 0, length = e.size - from): Buffer {
    if (from < 0 || length < 0 || from + length > e.size) throw formatError(this.path, e.name, `read of ${length} bytes at ${from} exceeds the entry's ${e.size}`);
    if (e.method === 0) return readAt(this.path, this.fd, length, this.dataOffset(e) + from);
    if (e.method !== 8) throw new ItdError('unsupported', `${this.path}: zip entry ${e.name} uses compression method ${e.method} (only stored and deflate are read)`, { file: this.path, field: e.name });
    const all = inflateRawSync(readAt(this.path, this.fd, e.compressedSize, this.dataOffset(e)), { maxOutputLength: Math.max(1, e.size) });
    if (all.length !== e.size) throw formatError(this.path, e.name, `inflated to ${all.length} bytes, the directory says ${e.size}`);
    return all.subarray(from, from + length);
  }
}

/** Replaces the 0xffffffff placeholders of an entry with its zip64 extra field (id 0x0001). */
function readZip64Extra(extra: Buffer, e: ZipEntry): void {
  for (let q = 0; q + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(q);
    const len = extra.readUInt16LE(q + 2);
    if (id === 1) {
      let r = q + 4;
      const next = (): number => { const v = Number(extra.readBigUInt64LE(r)); r += 8; return v; };
      if (e.size === 0xffffffff) e.size = next();
      if (e.compressedSize === 0xffffffff) e.compressedSize = next();
      if (e.localHeader === 0xffffffff) e.localHeader = next();
    }
    q += 4 + len;
  }
}

// ---------------------------------------------------------------------------------------------
// pickle

/** A storage named by persistent_load: raw bytes live in the zip entry `<prefix>/data/<key>`. */
interface StorageRef { kind: 'storage'; dtype: DType; key: string; numel: number }

/** A tensor view into a storage (element offset and strides, as torch keeps them). */
export interface TorchTensor { kind: 'tensor'; storage: StorageRef; offset: number; shape: number[]; stride: number[] }

/** Globals this reader resolves; everything else is refused. */
type Global = { kind: 'global'; name: string };

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};
const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const CALLABLES = new Set(['torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_parameter', 'collections.OrderedDict']);

const MARK = Symbol('mark');
const MAX_ENTRIES = 1_000_000;
type Value = unknown;

/** Pickle opcode names for error messages (the ones a reader meets in the wild). */
const OPCODE_NAMES: Record<number, string> = {
  0x69: 'INST', 0x6f: 'OBJ', 0x81: 'NEWOBJ', 0x92: 'NEWOBJ_EX', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x50: 'PERSID',
  0x49: 'INT', 0x4c: 'LONG', 0x46: 'FLOAT', 0x53: 'STRING', 0x56: 'UNICODE', 0x70: 'PUT', 0x67: 'GET',
};

class Unpickler {
  private pos = 0;
  private stack: Value[] = [];
  private marks: number[] = [];
  private memo = new Map<number, Value>();

  constructor(private readonly file: string, private readonly buf: Buffer, private readonly persistent: (pid: Value) => Value) {}

  load(): Value {
    for (;;) {
      if (this.pos >= this.buf.length) throw this.fail('pickle ends without STOP');
      const at = this.pos;
      const op = this.buf[this.pos++]!;
      switch (op) {
        case 0x80: this.pos++; break; // PROTO n
        case 0x95: this.pos += 8; break; // FRAME len (framing is transparent)
        case 0x2e: return this.pop(); // STOP
        case 0x28: this.marks.push(this.stack.length); this.stack.push(MARK); break; // MARK
        case 0x29: this.stack.push([]); break; // EMPTY_TUPLE
        case 0x5d: this.stack.push([]); break; // EMPTY_LIST
        case 0x7d: this.stack.push(new Map()); break; // EMPTY_DICT
        case 0x4e: this.stack.push(null); break; // NONE
        case 0x88: this.stack.push(true); break; // NEWTRUE
        case 0x89: this.stack.push(false); break; // NEWFALSE
        case 0x4a: this.stack.push(this.buf.readInt32LE(this.take(4))); break; // BININT
        case 0x4b: this.stack.push(this.buf[this.take(1)]!); break; // BININT1
        case 0x4d: this.stack.push(this.buf.readUInt16LE(this.take(2))); break; // BININT2
        case 0x8a: this.stack.push(this.long(this.buf[this.take(1)]!)); break; // LONG1
        case 0x47: this.stack.push(this.buf.readDoubleBE(this.take(8))); break; // BINFLOAT
        case 0x58: this.stack.push(this.text(this.buf.readUInt32LE(this.take(4)))); break; // BINUNICODE
        case 0x8c: this.stack.push(this.text(this.buf[this.take(1)]!)); break; // SHORT_BINUNICODE
        case 0x54: this.stack.push(this.text(this.buf.readUInt32LE(this.take(4)))); break; // BINSTRING
        case 0x55: this.stack.push(this.text(this.buf[this.take(1)]!)); break; // SHORT_BINSTRING
        case 0x42: this.stack.push(this.bytes(this.buf.readUInt32LE(this.take(4)))); break; // BINBYTES
        case 0x43: this.stack.push(this.bytes(this.buf[this.take(1)]!)); break; // SHORT_BINBYTES
        case 0x74: this.stack.push(this.popMark()); break; // TUPLE
        case 0x85: this.stack.push(this.popN(1)); break; // TUPLE1
        case 0x86: this.stack.push(this.popN(2)); break; // TUPLE2
        case 0x87: this.stack.push(this.popN(3)); break; // TUPLE3
        case 0x61: { const v = this.pop(); this.list(this.top()).push(v); break; } // APPEND
        case 0x65: { const vs = this.popMark(); this.list(this.top()).push(...vs); break; } // APPENDS
        case 0x73: { const [k, v] = this.popN(2); this.dict(this.top()).set(this.key(k), v); break; } // SETITEM
        case 0x75: { // SETITEMS
          const kv = this.popMark();
          const d = this.dict(this.top());
          for (let i = 0; i + 1 < kv.length; i += 2) d.set(this.key(kv[i]), kv[i + 1]);
          break;
        }
        case 0x71: this.memo.set(this.buf[this.take(1)]!, this.top()); break; // BINPUT
        case 0x72: this.memo.set(this.buf.readUInt32LE(this.take(4)), this.top()); break; // LONG_BINPUT
        case 0x94: this.memo.set(this.memo.size, this.top()); break; // MEMOIZE
        case 0x68: this.stack.push(this.get(this.buf[this.take(1)]!)); break; // BINGET
        case 0x6a: this.stack.push(this.get(this.buf.readUInt32LE(this.take(4)))); break; // LONG_BINGET
        case 0x63: { // GLOBAL "module\nname\n"
          const module = this.line();
          this.stack.push(this.global(module, this.line()));
          break;
        }
        case 0x93: { const [m, n] = this.popN(2); this.stack.push(this.global(String(m), String(n))); break; } // STACK_GLOBAL
        case 0x51: this.stack.push(this.persistent(this.pop())); break; // BINPERSID
        case 0x52: { const [f, args] = this.popN(2); this.stack.push(this.call(f, args)); break; } // REDUCE
        case 0x62: this.pop(); break; // BUILD: state of an OrderedDict (its _metadata) is not needed
        default:
          throw new ItdError('unsupported', `${this.file}: data.pkl: pickle opcode ${OPCODE_NAMES[op] ?? `0x${op.toString(16)}`} at byte ${at} is not allowed (only the tensor-rebuild subset is read, so no code can run)`, { file: this.file, field: 'data.pkl' });
      }
    }
  }

  private fail(msg: string): ItdError {
    return formatError(this.file, 'data.pkl', msg);
  }

  private take(n: number): number {
    const at = this.pos;
    if (at + n > this.buf.length) throw this.fail('pickle is truncated');
    this.pos += n;
    return at;
  }

  private text(n: number): string {
    return this.buf.toString('utf8', this.take(n), this.pos);
  }

  private bytes(n: number): Buffer {
    return this.buf.subarray(this.take(n), this.pos);
  }

  private line(): string {
    const end = this.buf.indexOf(0x0a, this.pos);
    if (end < 0) throw this.fail('GLOBAL without a newline');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }

  private long(n: number): number {
    const at = this.take(n);
    if (n === 0) return 0;
    if (n > 6) throw this.fail(`LONG1 of ${n} bytes is too large`);
    return this.buf.readIntLE(at, n);
  }

  private top(): Value {
    if (this.stack.length === 0) throw this.fail('stack underflow');
    return this.stack[this.stack.length - 1];
  }

  private pop(): Value {
    if (this.stack.length === 0 || this.top() === MARK) throw this.fail('stack underflow');
    return this.stack.pop();
  }

  private popN(n: number): Value[] {
    const out = new Array<Value>(n);
    for (let i = n - 1; i >= 0; i--) out[i] = this.pop();
    return out;
  }

  private popMark(): Value[] {
    const m = this.marks.pop();
    if (m === undefined) throw this.fail('no MARK on the stack');
    const items = this.stack.splice(m);
    return items.slice(1);
  }

  private get(i: number): Value {
    if (!this.memo.has(i)) throw this.fail(`memo ${i} is not set`);
    return this.memo.get(i);
  }

  private list(v: Value): Value[] {
    if (!Array.isArray(v)) throw this.fail('APPEND to a non-list');
    return v;
  }

  private dict(v: Value): Map<string, Value> {
    if (!(v instanceof Map)) throw this.fail('SETITEM on a non-dict');
    return v as Map<string, Value>;
  }

  private key(k: Value): string {
    if (typeof k !== 'string' && typeof k !== 'number') throw this.fail(`dict key of type ${typeof k} is not supported`);
    return String(k);
  }

  private global(module: string, name: string): Global {
    const full = `${module}.${name}`;
    const ok = CALLABLES.has(full) || ((module === 'torch' || module === 'torch.storage') && Object.hasOwn(STORAGE_DTYPES, name));
    if (!ok) {
      throw new ItdError('unsupported', `${this.file}: data.pkl: global ${full} is not allowed; only tensor state dicts are read (torch._utils._rebuild_tensor_v2, torch.*Storage, collections.OrderedDict), so no code can run`, { file: this.file, field: full, hint: 'export the weights to safetensors in an environment you trust' });
    }
    return { kind: 'global', name: full };
  }

  private call(f: Value, args: Value): Value {
    const g = f as Global;
    if (!Array.isArray(args) || g?.kind !== 'global') throw this.fail('REDUCE on something that is not an allowed global');
    if (g.name === 'collections.OrderedDict') {
      if (args.length !== 0) throw this.fail('OrderedDict with arguments is not supported');
      return new Map();
    }
    if (g.name === 'torch._utils._rebuild_parameter') return args[0];
    const [storage, offset, shape, stride] = args as [StorageRef, number, number[], number[]];
    const isInts = (a: unknown): a is number[] => Array.isArray(a) && a.every((v) => Number.isInteger(v) && v >= 0);
    if (storage?.kind !== 'storage' || !Number.isInteger(offset) || !isInts(shape) || !isInts(stride) || shape.length !== stride.length) {
      throw this.fail('_rebuild_tensor_v2 with unexpected arguments');
    }
    return { kind: 'tensor', storage, offset, shape, stride } satisfies TorchTensor;
  }
}

// ---------------------------------------------------------------------------------------------
// checkpoint file

/** A torch zip checkpoint with its tensors read lazily; non-tensor leaves (ints, strings) are kept as values. */
export class TorchZipFile {
  private readonly tensors = new Map<string, TorchTensor>();
  readonly values = new Map<string, unknown>();

  private constructor(readonly path: string, private readonly zip: ZipReader, private readonly prefix: string, root: unknown) {
    const dict = unwrapStateDict(root);
    if (!dict) throw formatError(path, 'data.pkl', 'the pickle holds no dict of tensors (a whole pickled model is not a state dict)');
    let leaves = 0;
    flatten(dict, '', (k, v) => {
      // Memo references can share one dict many times over; bound the walk instead of trusting the file.
      if (++leaves > MAX_ENTRIES) throw formatError(path, 'data.pkl', `more than ${MAX_ENTRIES} state-dict entries`);
      if (isTensor(v)) this.tensors.set(k, v);
      else this.values.set(k, v);
    });
    for (const [name, t] of this.tensors) this.checkBounds(name, t);
  }

  static open(path: string): TorchZipFile {
    const fd = fs.openSync(path, 'r');
    try {
      const zip = new ZipReader(path, fd);
      const pkl = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
      if (pkl.length !== 1) throw formatError(path, undefined, `not a PyTorch zip checkpoint: expected one <name>/data.pkl entry, found ${pkl.length}`);
      const prefix = pkl[0]!.slice(0, -'data.pkl'.length);
      const order = zip.entries.get(`${prefix}byteorder`);
      if (order && zip.read(order).toString('utf8').trim() !== 'little') {
        throw new ItdError('unsupported', `${path}: big-endian PyTorch checkpoints are not supported`, { file: path, field: 'byteorder' });
      }
      const root = new Unpickler(path, zip.read(zip.entries.get(pkl[0]!)!), (pid) => storageRef(path, pid)).load();
      return new TorchZipFile(path, zip, prefix, root);
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

  /** dtype and shape; begin/end: absolute file offsets of the view's storage span (stored entries, as torch writes them). */
  info(name: string): TensorInfo & { file: string } {
    const t = this.tensor(name);
    const es = DTYPE_BYTES[t.storage.dtype];
    const e = this.entry(t);
    const base = e.method === 0 ? this.zip.dataOffset(e) : 0;
    return { name, dtype: t.storage.dtype, shape: [...t.shape], begin: base + t.offset * es, end: base + (t.offset + span(t)) * es, file: this.path };
  }

  /** The tensor as row-major f32 (strided views are gathered; f16/bf16/f64/ints converted). */
  readF32(name: string): Float32Array<ArrayBuffer> {
    return this.readView(this.tensor(name));
  }

  /**
   * A rank-2 tensor's transpose, row-major: a column-major [D, n] view (the official ItD decoder)
   * is then read straight from its storage instead of gathered and transposed back.
   */
  readF32Transposed(name: string): Float32Array<ArrayBuffer> {
    const t = this.tensor(name);
    if (t.shape.length !== 2) throw formatError(this.path, name, `expected a rank-2 tensor, got shape [${t.shape}]`);
    return this.readView({ ...t, shape: [t.shape[1]!, t.shape[0]!], stride: [t.stride[1]!, t.stride[0]!] });
  }

  private readView(t: TorchTensor): Float32Array<ArrayBuffer> {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n === 0) return new Float32Array(0);
    const es = DTYPE_BYTES[t.storage.dtype];
    const raw = this.zip.read(this.entry(t), t.offset * es, span(t) * es);
    const src = toF32(t.storage.dtype, raw);
    return isContiguous(t) ? src : gather(src, t.shape, t.stride, n);
  }

  close(): void {
    fs.closeSync(this.zip.fd);
  }

  private tensor(name: string): TorchTensor {
    const t = this.tensors.get(name);
    if (!t) throw new ItdError('not_found', `${this.path}: no tensor "${name}"`, { file: this.path, field: name });
    return t;
  }

  private entry(t: TorchTensor): ZipEntry {
    const e = this.zip.entries.get(`${this.prefix}data/${t.storage.key}`);
    if (!e) throw formatError(this.path, `${this.prefix}data/${t.storage.key}`, 'storage entry missing from the archive');
    return e;
  }

  private checkBounds(name: string, t: TorchTensor): void {
    const es = DTYPE_BYTES[t.storage.dtype];
    const e = this.entry(t);
    if (e.size < t.storage.numel * es) throw formatError(this.path, name, `storage ${t.storage.key} has ${e.size} bytes, fewer than its ${t.storage.numel} elements need`);
    if (t.shape.every((d) => d > 0) && t.offset + span(t) > t.storage.numel) {
      throw formatError(this.path, name, `view (offset ${t.offset}, shape [${t.shape}], stride [${t.stride}]) exceeds its storage of ${t.storage.numel} elements`);
    }
  }
}

function storageRef(file: string, pid: unknown): StorageRef {
  const [tag, type, key, , numel] = Array.isArray(pid) ? pid : [];
  const g = type as Global | undefined;
  if (tag !== 'storage' || g?.kind !== 'global' || typeof key !== 'string' || !Number.isInteger(numel)) {
    throw formatError(file, 'data.pkl', `persistent id ${JSON.stringify(pid)} is not a ('storage', type, key, location, numel) tuple`);
  }
  const dtype = STORAGE_DTYPES[g.name.slice(g.name.lastIndexOf('.') + 1)];
  if (!dtype) throw formatError(file, 'data.pkl', `storage type ${g.name} is not a tensor storage`);
  return { kind: 'storage', dtype, key, numel: numel as number };
}

const isTensor = (v: unknown): v is TorchTensor => (v as TorchTensor | null)?.kind === 'tensor';

/** The state dict inside a checkpoint: the root dict, or its "state_dict" entry (the official ItD layout). */
function unwrapStateDict(root: unknown): Map<string, unknown> | undefined {
  if (!(root instanceof Map)) return undefined;
  const inner = root.get('state_dict');
  return inner instanceof Map ? (inner as Map<string, unknown>) : (root as Map<string, unknown>);
}

/** Nested dicts (e.g. OpenAI's activation_state_dict) become dotted names. */
function flatten(d: Map<string, unknown>, prefix: string, put: (k: string, v: unknown) => void): void {
  for (const [k, v] of d) {
    if (v instanceof Map) flatten(v as Map<string, unknown>, `${prefix}${k}.`, put);
    else put(prefix + k, v);
  }
}

/** Elements from the view's first element to its last (1 + sum (dim - 1) * stride). */
function span(t: TorchTensor): number {
  if (t.shape.some((d) => d === 0)) return 0;
  return 1 + t.shape.reduce((a, d, i) => a + (d - 1) * t.stride[i]!, 0);
}

function isContiguous(t: TorchTensor): boolean {
  let want = 1;
  for (let i = t.shape.length - 1; i >= 0; i--) {
    if (t.shape[i] !== 1 && t.stride[i] !== want) return false;
    want *= t.shape[i]!;
  }
  return true;
}

/** Row-major copy of a strided view over src (a storage span starting at the view's first element). */
function gather(src: Float32Array, shape: number[], stride: number[], n: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let at = 0;
  for (let i = 0; i < n; i++) {
    out[i] = src[at]!;
    for (let a = rank - 1; a >= 0; a--) {
      if (++idx[a]! < shape[a]!) { at += stride[a]!; break; }
      at -= (shape[a]! - 1) * stride[a]!;
      idx[a] = 0;
    }
  }
  return out;
}

function toF32(dtype: DType, raw: Buffer): Float32Array<ArrayBuffer> {
  // readAt's buffers own their memory from offset 0; inflated slices are copied to get that alignment.
  const own = raw.byteOffset === 0 && raw.buffer.byteLength === raw.length && raw.buffer instanceof ArrayBuffer;
  const b = own ? (raw.buffer as ArrayBuffer) : new Uint8Array(raw).buffer;
  switch (dtype) {
    case 'F32': return new Float32Array(b);
    case 'F16': return f16ArrayToF32(new Uint16Array(b));
    case 'BF16': return bf16ArrayToF32(new Uint16Array(b));
    case 'F64': return new Float32Array(new Float64Array(b));
    case 'I64': return Float32Array.from(new BigInt64Array(b), Number);
    case 'I32': return new Float32Array(new Int32Array(b));
    case 'I16': return new Float32Array(new Int16Array(b));
    case 'I8': return new Float32Array(new Int8Array(b));
    case 'U8': case 'BOOL': return new Float32Array(new Uint8Array(b));
  }
}
