/**
 * A small ONNX graph builder: itd emits its own graphs (CLIP blocks, SAE kernels, test UNets)
 * instead of shipping exported files, so any cut point and any weight source works.
 *
 *   const g = new Graph('block');
 *   const x = g.input('x', 'float32', ['batch', 'seq', 768]);
 *   const y = g.op('MatMul', [x, g.initializer('w', w, [768, 768])]);
 *   g.output(y, 'float32', ['batch', 'seq', 768], 'y');
 *   const bytes = g.toModel();
 */
import path from 'node:path';
import { ItdError } from '../errors.js';
import { Message } from './proto.js';
import type { ExternalDataOptions } from './session.js';

export type ElemType = 'float32' | 'float16' | 'int32' | 'int64' | 'uint8' | 'bool';
export type Dim = number | string;
export type AttrValue = number | string | number[] | { float: number } | { floats: number[] } | { tensor: TensorValue };

/** Initializer/constant payload; float32/int32/int64/uint8 map to ONNX's raw_data. */
export interface TensorValue {
  type: ElemType;
  dims: number[];
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;
}

const ELEM_CODE: Record<ElemType, number> = { float32: 1, uint8: 2, int32: 6, int64: 7, bool: 9, float16: 10 };

/** Opset 17 of the default domain: LayerNormalization is there, and ORT 1.30 runs it natively. */
export const OPSET = 17;
const IR_VERSION = 8;
const CONTRIB_DOMAIN = 'com.microsoft';

export class Graph {
  private readonly nodes: Message[] = [];
  private readonly inits: Message[] = [];
  private readonly inputs: Message[] = [];
  private readonly outputs: Message[] = [];
  private readonly domains = new Set<string>();
  private counter = 0;

  constructor(readonly name: string) {}

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  output(value: string, type: ElemType, dims: Dim[], name = value): string {
    if (name !== value) this.op('Identity', [value], {}, name);
    this.outputs.push(valueInfo(name, type, dims));
    return name;
  }

  initializer(name: string, value: TensorValue): string {
    this.inits.push(tensorProto(name, value));
    return name;
  }

  /**
   * An initializer whose bytes live outside the model (ONNX external data): `location` names a
   * buffer handed to createSession as `externalData`, so large weights are never serialised
   * into (or copied through) the protobuf, whose 2 GiB limit a whole tower would exceed.
   */
  externalInitializer(name: string, type: ElemType, dims: number[], location: string, offset: number, length: number): string {
    const m = new Message();
    for (const d of dims) m.varint(1, d);
    m.varint(2, ELEM_CODE[type]);
    m.string(8, name);
    for (const [k, v] of [['location', location], ['offset', String(offset)], ['length', String(length)]] as const) m.message(13, new Message().string(1, k).string(2, v));
    m.varint(14, 1); // data_location = EXTERNAL
    this.inits.push(m);
    return name;
  }

  /** A scalar or small constant folded into the graph as an initializer. */
  constF(values: number | number[], dims: number[] = []): string {
    const data = Float32Array.from(typeof values === 'number' ? [values] : values);
    return this.initializer(this.fresh('c'), { type: 'float32', dims, data });
  }

  constI64(values: number[], dims: number[] = [values.length]): string {
    return this.initializer(this.fresh('c'), { type: 'int64', dims, data: BigInt64Array.from(values.map(BigInt)) });
  }

  /** Adds a node with one output; returns the output's name. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outName?: string): string {
    return this.opN(opType, inputs, 1, attrs, outName ? [outName] : undefined)[0]!;
  }

  /** Adds a node with `nOut` outputs. */
  opN(opType: string, inputs: string[], nOut: number, attrs: Record<string, AttrValue> = {}, outNames?: string[], domain = ''): string[] {
    const outs = outNames ?? Array.from({ length: nOut }, () => this.fresh(opType));
    const node = new Message();
    for (const i of inputs) node.string(1, i);
    for (const o of outs) node.string(2, o);
    node.string(3, this.fresh(`${opType}_node`));
    node.string(4, opType);
    for (const [k, v] of Object.entries(attrs)) node.message(5, attribute(k, v));
    if (domain) {
      node.string(7, domain);
      this.domains.add(domain);
    }
    this.nodes.push(node);
    return outs;
  }

  /** A one-output node of onnxruntime's contrib operator set (domain com.microsoft, version 1), e.g. MatMulNBits. */
  contribOp(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    return this.opN(opType, inputs, 1, attrs, undefined, CONTRIB_DOMAIN)[0]!;
  }

  /** Serialised ModelProto bytes, ready for InferenceSession.create. */
  toModel(): Uint8Array {
    const graph = new Message();
    for (const n of this.nodes) graph.message(1, n);
    graph.string(2, this.name);
    for (const t of this.inits) graph.message(5, t);
    for (const i of this.inputs) graph.message(11, i);
    for (const o of this.outputs) graph.message(12, o);
    const model = new Message();
    model.varint(1, IR_VERSION);
    model.string(2, 'itd');
    model.message(7, graph);
    model.message(8, new Message().string(1, '').varint(2, OPSET));
    for (const d of this.domains) model.message(8, new Message().string(1, d).varint(2, 1));
    return model.toBytes();
  }

  private fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }
}

function valueInfo(name: string, type: ElemType, dims: Dim[]): Message {
  const shape = new Message();
  for (const d of dims) {
    const dim = new Message();
    if (typeof d === 'number') dim.varint(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new Message().varint(1, ELEM_CODE[type]).message(2, shape);
  return new Message().string(1, name).message(2, new Message().message(1, tensorType));
}

function tensorProto(name: string, v: TensorValue): Message {
  const m = new Message();
  for (const d of v.dims) m.varint(1, d);
  m.varint(2, ELEM_CODE[v.type]);
  m.string(8, name);
  m.bytes(9, new Uint8Array(v.data.buffer, v.data.byteOffset, v.data.byteLength));
  return m;
}

function attribute(name: string, v: AttrValue): Message {
  const a = new Message().string(1, name);
  if (typeof v === 'number') return a.varint(3, v).varint(20, 2);
  if (typeof v === 'string') return a.string(4, v).varint(20, 3);
  if (Array.isArray(v)) {
    for (const x of v) a.varint(8, x);
    return a.varint(20, 7);
  }
  if ('float' in v) return a.float(2, v.float).varint(20, 1);
  if ('floats' in v) {
    for (const x of v.floats) a.float(7, x);
    return a.varint(20, 6);
  }
  return a.message(5, tensorProto('', v.tensor)).varint(20, 4);
}

/** Where a large float32 weight's bytes are: a range of a file holding them as stored, or values in memory. */
export type WeightSource = { file: string; offset: number; length: number } | { data: Float32Array };

/**
 * The large weights of one session as external data: file ranges that onnxruntime reads itself
 * (never copied through JS or the protobuf), and in-memory buffers for converted values.
 */
export class ExternalWeights {
  private dir: string | undefined;
  private readonly buffers: { path: string; data: Uint8Array }[] = [];

  add(g: Graph, name: string, dims: number[], src: WeightSource): string {
    if ('data' in src) {
      const location = `itd-mem-${this.buffers.length}`;
      this.buffers.push({ path: location, data: new Uint8Array(src.data.buffer, src.data.byteOffset, src.data.byteLength) });
      return g.externalInitializer(name, 'float32', dims, location, 0, src.data.byteLength);
    }
    this.dir ??= path.dirname(src.file);
    const location = path.relative(this.dir, src.file);
    if (location.startsWith('..') || path.isAbsolute(location)) {
      throw new ItdError('unsupported', `${src.file}: weight shards must share one directory (${this.dir})`, { file: src.file });
    }
    return g.externalInitializer(name, 'float32', dims, location, src.offset, src.length);
  }

  /** What createSession needs to resolve the locations. */
  options(): ExternalDataOptions {
    return { dir: this.dir, buffers: this.buffers };
  }
}
