/**
 * Minimal protobuf writer for the subset of onnx.proto that itd emits (ModelProto, GraphProto,
 * NodeProto, TensorProto, ValueInfoProto, AttributeProto). Messages are built as trees of
 * chunks whose sizes are known, then serialised once into a single buffer, so large tensor
 * payloads are copied exactly once.
 */

type Chunk = Uint8Array | Message;

/** A protobuf message under construction: a list of encoded fields. */
export class Message {
  private readonly chunks: Chunk[] = [];
  private size = 0;

  get byteLength(): number {
    return this.size;
  }

  varint(field: number, value: number | bigint): this {
    return this.push(concat(tag(field, 0), encodeVarint(value)));
  }

  float(field: number, value: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    return this.push(concat(tag(field, 5), b));
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  bytes(field: number, value: Uint8Array): this {
    this.push(concat(tag(field, 2), encodeVarint(value.byteLength)));
    return this.push(value);
  }

  message(field: number, value: Message): this {
    this.push(concat(tag(field, 2), encodeVarint(value.byteLength)));
    return this.push(value);
  }

  /** Serialises the whole tree into one contiguous buffer. */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.size);
    this.writeInto(out, 0);
    return out;
  }

  private writeInto(out: Uint8Array, offset: number): number {
    for (const c of this.chunks) {
      if (c instanceof Message) offset = c.writeInto(out, offset);
      else {
        out.set(c, offset);
        offset += c.byteLength;
      }
    }
    return offset;
  }

  private push(c: Chunk): this {
    this.chunks.push(c);
    this.size += c.byteLength;
    return this;
  }
}

function tag(field: number, wireType: number): Uint8Array {
  return encodeVarint(field * 8 + wireType);
}

/** Base-128 varint; negative int64 values use the 10-byte two's complement form. */
export function encodeVarint(value: number | bigint): Uint8Array {
  let v = BigInt.asUintN(64, BigInt(value));
  const bytes: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    bytes.push(b);
  } while (v > 0n);
  return Uint8Array.from(bytes);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}
