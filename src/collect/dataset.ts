/**
 * Reading cached activations for SAE training and evaluation.
 *
 * Two sources: an ACTS_DIR written by `itd collect` (manifest.json + shard-*.safetensors, each shard
 * checked against its manifest sha256 and row count the first time it is touched), or any plain
 * .safetensors file holding an `activations` [N, D] tensor. Rows are read with positioned reads, so a
 * set larger than memory streams from disk; sets up to `cacheBytes` (as F32) are loaded once and kept.
 * Every row handed out is checked for NaN/Inf.
 */
import fs from 'node:fs';
import path from 'node:path';
import { sha256File } from '../io/hash.js';
import { ItdError } from '../errors.js';
import { firstNonFinite } from '../io/numeric.js';
import { SafetensorsFile, bf16ArrayToF32, f16ArrayToF32, type DType } from '../io/safetensors.js';
import type { Rng } from '../util/rng.js';
import { parseManifest, type ActivationManifest } from './manifest.js';

export interface ActivationSet {
  /** The ACTS_DIR or .safetensors file this set was opened from. */
  readonly path: string;
  readonly d: number;
  readonly rows: number;
  readonly dtype: DType;
  readonly layer?: number;
  readonly hookpoint?: string;
  readonly modelId?: string;
  /** The manifest of an ACTS_DIR; undefined for a plain file. */
  readonly meta?: ActivationManifest;
  /** Rows [start, start + count) as [count, d]. */
  readRange(start: number, count: number): Float32Array;
  /** Rows at global indices `idx` (any order, repeats allowed) as [idx.length, d], in that order. */
  readRows(idx: ArrayLike<number>): Float32Array;
  /** readRows with the file reads on libuv's threads, so a training step can overlap the next batch's I/O. */
  readRowsAsync(idx: ArrayLike<number>): Promise<Float32Array>;
  /** min(count, rows) distinct rows drawn uniformly with `rng`, as [r, d]. */
  sample(count: number, rng: Rng): Float32Array;
  /**
   * Loads a set small enough to be kept in memory (see cacheBytes) with the file reads on libuv's
   * threads, so the caller computes meanwhile; a no-op for a set that streams or is loaded. No other
   * read may start until it resolves.
   */
  preload(): Promise<void>;
  close(): void;
}

export interface OpenActivationsOptions {
  /** Sets whose F32 size is at most this are read whole on first use and kept (default 1 GiB). */
  cacheBytes?: number;
}

const ACTIVATIONS = 'activations';
const DEFAULT_CACHE_BYTES = 1 << 30;
/** Largest single read (bounds the temporary buffer). */
const RANGE_CHUNK_BYTES = 64 << 20;

/** Shard-local rows [local, local + slots.length) of seg, landing at rows `slots` of the output. */
interface Piece {
  seg: Segment;
  local: number;
  slots: number[];
}

/** One file's rows [rowStart, rowStart + rows) of the set. */
interface Segment {
  file: string;
  rowStart: number;
  rows: number;
  /** Expected sha256 (manifest shards); checked lazily, once. */
  sha256?: string;
  open?: { fd: number; begin: number; dtype: DType };
}

export function openActivations(p: string, opts: OpenActivationsOptions = {}): ActivationSet {
  if (!fs.existsSync(p)) throw new Error(`${p}: activations not found (expected an ACTS_DIR with manifest.json or a .safetensors file)`);
  return fs.statSync(p).isDirectory() ? openDir(p, opts) : openFile(p, opts);
}

/** An in-memory set (tests, benchmarks, eval on data already loaded). */
export function memoryActivations(data: Float32Array, d: number, label = '<memory>'): ActivationSet {
  if (d <= 0 || data.length % d !== 0) throw new Error(`${label}: ${data.length} values is not a whole number of rows of ${d}`);
  if (data.length === 0) throw new Error(`${label}: no rows`);
  checkFinite(data, d, 0, label);
  return new RowStore(label, d, data.length / d, 'F32', [], { cache: data });
}

function openFile(file: string, opts: OpenActivationsOptions): ActivationSet {
  const st = SafetensorsFile.open(file);
  try {
    if (!st.has(ACTIVATIONS)) throw new Error(`${file}: no "${ACTIVATIONS}" tensor (has ${st.names().join(', ') || 'none'})`);
    const info = st.info(ACTIVATIONS);
    if (info.shape.length !== 2) throw new Error(`${file}: tensor "${ACTIVATIONS}" must be [N, D], got ${JSON.stringify(info.shape)}`);
    const [rows, d] = info.shape as [number, number];
    if (rows === 0 || d === 0) throw new Error(`${file}: tensor "${ACTIVATIONS}" is empty ${JSON.stringify(info.shape)}`);
    checkDtype(file, info.dtype);
    const layer = Number(st.metadata['layer']);
    return new RowStore(file, d, rows, info.dtype, [{ file, rowStart: 0, rows }], {
      cacheBytes: opts.cacheBytes,
      layer: Number.isInteger(layer) ? layer : undefined,
      hookpoint: st.metadata['hookpoint'],
      modelId: st.metadata['model_id'],
    });
  } finally {
    st.close();
  }
}

function openDir(dir: string, opts: OpenActivationsOptions): ActivationSet {
  const mpath = path.join(dir, 'manifest.json');
  if (!fs.existsSync(mpath)) throw new Error(`${dir}: no manifest.json (not an ACTS_DIR written by itd collect)`);
  const m = parseManifest(mpath);
  const segments: Segment[] = [];
  let rowStart = 0;
  for (const s of m.shards) {
    segments.push({ file: path.join(dir, s.file), rowStart, rows: s.rows, sha256: s.sha256 });
    rowStart += s.rows;
  }
  if (rowStart !== m.rows) throw new Error(`${mpath}: "rows" is ${m.rows} but the shards hold ${rowStart}`);
  if (m.rows === 0) throw new Error(`${mpath}: no rows (empty activation set)`);
  for (const s of segments) {
    if (!fs.existsSync(s.file)) throw new Error(`${s.file}: shard listed in ${mpath} is missing`);
  }
  return new RowStore(dir, m.d, m.rows, m.dtype, segments, {
    meta: m, cacheBytes: opts.cacheBytes, layer: m.layer, hookpoint: m.hookpoint, modelId: m.model.id,
  });
}

function checkDtype(file: string, dtype: DType): void {
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') {
    throw new Error(`${file}: tensor "${ACTIVATIONS}" has dtype ${dtype}, expected F32, F16 or BF16`);
  }
}

function checkFinite(data: Float32Array, d: number, firstRow: number, label: string, rowOf?: (r: number) => number): void {
  const i = firstNonFinite(data);
  if (i < 0) return;
  const r = Math.floor(i / d);
  throw new ItdError('numeric', `${label}: row ${rowOf ? rowOf(r) : firstRow + r} has a non-finite value (${data[i]}) at dim ${i % d}`, { file: label });
}


interface RowStoreOptions {
  meta?: ActivationManifest;
  /** Rows already in memory (the whole set). */
  cache?: Float32Array;
  cacheBytes?: number;
  layer?: number;
  hookpoint?: string;
  modelId?: string;
}

class RowStore implements ActivationSet {
  private cache: Float32Array | undefined;
  private readonly cacheable: boolean;
  readonly meta?: ActivationManifest;
  readonly layer?: number;
  readonly hookpoint?: string;
  readonly modelId?: string;

  constructor(
    readonly path: string,
    readonly d: number,
    readonly rows: number,
    readonly dtype: DType,
    private readonly segments: Segment[],
    o: RowStoreOptions,
  ) {
    this.cache = o.cache;
    this.cacheable = rows * d * 4 <= (o.cacheBytes ?? DEFAULT_CACHE_BYTES);
    ({ meta: this.meta, layer: this.layer, hookpoint: this.hookpoint, modelId: this.modelId } = o);
  }

  readRange(start: number, count: number): Float32Array {
    this.checkRange(start, count);
    const all = this.cached();
    if (all) return all.slice(start * this.d, (start + count) * this.d);
    return this.readRows(Int32Array.from({ length: count }, (_, i) => start + i));
  }

  readRows(idx: ArrayLike<number>): Float32Array {
    const out = new Float32Array(idx.length * this.d);
    const all = this.gather(idx, out);
    if (!all) for (const p of this.pieces(idx)) this.place(p, this.readPieceSync(p), out);
    return out;
  }

  async readRowsAsync(idx: ArrayLike<number>): Promise<Float32Array> {
    const out = new Float32Array(idx.length * this.d);
    const all = this.gather(idx, out);
    if (!all) await Promise.all(this.pieces(idx).map(async (p) => this.place(p, await this.readPieceAsync(p), out)));
    return out;
  }

  sample(count: number, rng: Rng): Float32Array {
    const r = Math.min(count, this.rows);
    // Partial Fisher-Yates over a sparse swap map: O(r) memory for any set size.
    const swapped = new Map<number, number>();
    const idx = new Int32Array(r);
    for (let i = 0; i < r; i++) {
      const j = i + rng.int(this.rows - i);
      idx[i] = swapped.get(j) ?? j;
      swapped.set(j, swapped.get(i) ?? i);
    }
    return this.readRows(idx);
  }

  close(): void {
    for (const s of this.segments) {
      if (s.open) fs.closeSync(s.open.fd);
      s.open = undefined;
    }
    this.cache = undefined;
  }

  private checkRange(start: number, count: number): void {
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > this.rows) {
      throw new Error(`${this.path}: rows [${start}, ${start + count}) out of range (set has ${this.rows} rows)`);
    }
  }

  private cached(): Float32Array | undefined {
    if (!this.cache && this.cacheable) this.cache = this.readAll();
    return this.cache;
  }

  async preload(): Promise<void> {
    if (this.cache || !this.cacheable) return;
    const all = new Float32Array(this.rows * this.d);
    const parts = this.wholeSet(all);
    // Every read is queued at once: they proceed while the JS thread is busy elsewhere.
    const bytes = await Promise.all(parts.map(({ piece, into }) => this.readPieceAsync(piece, into)));
    parts.forEach(({ piece, into }, i) => this.fill(piece, into, bytes[i]!, all));
    this.cache ??= all;
  }

  /** Every row, in order. */
  private readAll(): Float32Array {
    const all = new Float32Array(this.rows * this.d);
    for (const { piece, into } of this.wholeSet(all)) this.fill(piece, into, this.readPieceSync(piece, into), all);
    return all;
  }

  /** The reads of the whole set into `all`; an F32 shard's are read straight into place (`into`: no staging buffer, no copy). */
  private wholeSet(all: Float32Array): { piece: Piece; into?: Uint8Array }[] {
    const d = this.d;
    const maxRows = Math.max(1, Math.floor(RANGE_CHUNK_BYTES / (d * 4)));
    const parts: { piece: Piece; into?: Uint8Array }[] = [];
    for (const seg of this.segments) {
      const f32 = this.openSegment(seg).dtype === 'F32';
      for (let local = 0; local < seg.rows; local += maxRows) {
        const count = Math.min(maxRows, seg.rows - local);
        const first = seg.rowStart + local;
        const piece: Piece = { seg, local, slots: Array.from({ length: count }, (_, i) => first + i) };
        parts.push({ piece, into: f32 ? new Uint8Array(all.buffer, first * d * 4, count * d * 4) : undefined });
      }
    }
    return parts;
  }

  /** Checks a piece read by wholeSet (already in place when it went `into` the set), else decodes and places it. */
  private fill(piece: Piece, into: Uint8Array | undefined, bytes: Uint8Array, all: Float32Array): void {
    if (!into) return this.place(piece, bytes, all);
    checkFinite(new Float32Array(into.buffer, into.byteOffset, into.length / 4), this.d, piece.local, piece.seg.file);
  }

  /** Range-checks idx and, for a cached set, copies the rows; false when they must be read. */
  private gather(idx: ArrayLike<number>, out: Float32Array): boolean {
    const d = this.d;
    for (let i = 0; i < idx.length; i++) this.checkRange(idx[i]!, 1);
    const all = this.cached();
    if (all) for (let i = 0; i < idx.length; i++) out.set(all.subarray(idx[i]! * d, (idx[i]! + 1) * d), i * d);
    return all !== undefined;
  }

  /** The reads behind idx: sorted, neighbours merged, split at shard ends and RANGE_CHUNK_BYTES. */
  private pieces(idx: ArrayLike<number>): Piece[] {
    const order = Int32Array.from({ length: idx.length }, (_, i) => i).sort((a, b) => idx[a]! - idx[b]!);
    const maxRows = Math.max(1, Math.floor(RANGE_CHUNK_BYTES / (this.d * 4)));
    const out: Piece[] = [];
    let seg = 0;
    for (let i = 0; i < order.length; ) {
      const first = idx[order[i]!]!;
      while (first >= this.segments[seg]!.rowStart + this.segments[seg]!.rows) seg++;
      const s = this.segments[seg]!;
      const slots = [order[i]!];
      let j = i + 1;
      for (; j < order.length && slots.length < maxRows; j++) {
        const r = idx[order[j]!]!;
        if (r !== idx[order[j - 1]!]! + 1 || r >= s.rowStart + s.rows) break;
        slots.push(order[j]!);
      }
      out.push({ seg: s, local: first - s.rowStart, slots });
      i = j;
    }
    return out;
  }

  /** The piece's file bytes, in `into` when given (its exact size). */
  private readPieceSync(p: Piece, into?: Uint8Array): Uint8Array {
    const { fd, pos, bytes } = this.pieceSpan(p, into);
    for (let off = 0; off < bytes.length; ) {
      const got = fs.readSync(fd, bytes, off, bytes.length - off, pos + off);
      if (got === 0) throw new Error(`${p.seg.file}: unexpected end of file reading row ${p.local}`);
      off += got;
    }
    return bytes;
  }

  private async readPieceAsync(p: Piece, into?: Uint8Array): Promise<Uint8Array> {
    const { fd, pos, bytes } = this.pieceSpan(p, into);
    for (let off = 0; off < bytes.length; ) {
      const got = await new Promise<number>((res, rej) => fs.read(fd, bytes, off, bytes.length - off, pos + off, (e, n) => (e ? rej(e) : res(n))));
      if (got === 0) throw new Error(`${p.seg.file}: unexpected end of file reading row ${p.local}`);
      off += got;
    }
    return bytes;
  }

  private pieceSpan(p: Piece, into?: Uint8Array): { fd: number; pos: number; bytes: Uint8Array } {
    const o = this.openSegment(p.seg);
    const rowBytes = this.d * (o.dtype === 'F32' ? 4 : 2);
    return { fd: o.fd, pos: o.begin + p.local * rowBytes, bytes: into ?? new Uint8Array(p.slots.length * rowBytes) };
  }

  /** Decodes a piece's bytes to F32, checks them, and puts each row at its slot of out. */
  private place(p: Piece, bytes: Uint8Array, out: Float32Array): void {
    const d = this.d;
    const dtype = p.seg.open!.dtype;
    const rows = dtype === 'F32'
      ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)
      : (dtype === 'F16' ? f16ArrayToF32 : bf16ArrayToF32)(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2));
    checkFinite(rows, d, p.local, p.seg.file);
    p.slots.forEach((slot, i) => out.set(rows.subarray(i * d, (i + 1) * d), slot * d));
  }

  /** Opens a shard on first use: sha256, tensor shape and dtype against the manifest. */
  private openSegment(seg: Segment): NonNullable<Segment['open']> {
    if (seg.open) return seg.open;
    if (seg.sha256 !== undefined) {
      if (!fs.existsSync(seg.file)) throw new Error(`${seg.file}: shard listed in the manifest is missing`);
      const got = sha256File(seg.file);
      if (got !== seg.sha256.toLowerCase()) {
        throw new Error(`${seg.file}: sha256 ${got} does not match the manifest's ${seg.sha256} (corrupt or replaced shard)`);
      }
    }
    // The header is validated by SafetensorsFile; rows are then read through our own descriptor.
    const st = SafetensorsFile.open(seg.file);
    let info;
    try {
      if (!st.has(ACTIVATIONS)) throw new Error(`${seg.file}: no "${ACTIVATIONS}" tensor`);
      info = st.info(ACTIVATIONS);
    } finally {
      st.close();
    }
    const [rows, d] = info.shape;
    if (info.shape.length !== 2 || rows !== seg.rows || d !== this.d) {
      throw new Error(`${seg.file}: tensor "${ACTIVATIONS}" is ${JSON.stringify(info.shape)}, expected [${seg.rows}, ${this.d}]`);
    }
    checkDtype(seg.file, info.dtype);
    seg.open = { fd: fs.openSync(seg.file, 'r'), begin: info.begin, dtype: info.dtype };
    return seg.open;
  }
}
