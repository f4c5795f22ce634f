import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Checkpoint, SafetensorsFile, writeSafetensors, writeSafetensorsStream, f16ToF32, f32ToF16, bf16ToF32, f32ToBf16,
  f16ArrayToF32, f32ArrayToF16, type TensorIn,
} from '../src/io/safetensors.js';
import { writeAtomicWith, writeFileAtomic, writeJsonAtomic } from '../src/io/atomic.js';
import type { ItdError } from '../src/errors.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'itd-'));

/** Raw file: u64 LE header length (or `lenOverride`), header text, data bytes. */
function rawFile(dir: string, header: string | object, data: number[] | Uint8Array = [], lenOverride?: bigint): string {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(h.length));
  const p = path.join(dir, `f${fs.readdirSync(dir).length}.safetensors`);
  fs.writeFileSync(p, Buffer.concat([len, h, Buffer.from(data)]));
  return p;
}

/** Asserts opening `p` fails with a message naming the file, the tensor (if given) and matching `re`. */
function rejects(p: string, re: RegExp, tensor?: string): void {
  assert.throws(
    () => SafetensorsFile.open(p),
    (e: Error) => {
      assert.ok(e.message.includes(p), `message should name the file: ${e.message}`);
      if (tensor) assert.ok(e.message.includes(`"${tensor}"`), `message should name tensor ${tensor}: ${e.message}`);
      assert.match(e.message, re);
      return true;
    },
  );
}

describe('half-precision conversion', () => {
  test('f32ToF16 golden bits incl. rounding to nearest even, subnormals, overflow', () => {
    const cases: [number, number][] = [
      [1, 0x3c00], [-2, 0xc000], [0, 0x0000], [-0, 0x8000], [0.1, 0x2e66], [65504, 0x7bff],
      [65519, 0x7bff], [65520, 0x7c00], [1e10, 0x7c00], [-Infinity, 0xfc00], [Infinity, 0x7c00],
      [2 ** -24, 0x0001], [2 ** -25, 0x0000], [3 * 2 ** -25, 0x0002], [2 ** -14, 0x0400],
      [1023 * 2 ** -24, 0x03ff], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [1e-10, 0x0000],
    ];
    for (const [x, bits] of cases) assert.equal(f32ToF16(x), bits, `f32ToF16(${x})`);
    assert.equal(f32ToF16(NaN) & 0x7c00, 0x7c00);
    assert.notEqual(f32ToF16(NaN) & 0x3ff, 0);
  });

  test('f16ToF32 golden values', () => {
    assert.equal(f16ToF32(0x3c00), 1);
    assert.equal(f16ToF32(0xc000), -2);
    assert.equal(f16ToF32(0x7bff), 65504);
    assert.equal(f16ToF32(0x0001), 2 ** -24);
    assert.equal(f16ToF32(0x03ff), 1023 * 2 ** -24);
    assert.equal(f16ToF32(0x7c00), Infinity);
    assert.equal(f16ToF32(0xfc00), -Infinity);
    assert.ok(Number.isNaN(f16ToF32(0x7e00)));
    assert.ok(Object.is(f16ToF32(0x8000), -0));
  });

  test('every non-NaN f16 survives f16 -> f32 -> f16 exactly (scalar and array paths)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f32 = f16ArrayToF32(all);
    const back = f32ArrayToF16(f32);
    for (let b = 0; b < 65536; b++) {
      const isNaN16 = (b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0;
      if (isNaN16) {
        assert.ok(Number.isNaN(f32[b]!));
        continue;
      }
      assert.ok(Object.is(f32[b], f16ToF32(b)), `lut ${b}`);
      assert.equal(back[b], b);
    }
  });

  test('bf16 golden bits and round trip', () => {
    assert.equal(f32ToBf16(1), 0x3f80);
    assert.equal(f32ToBf16(0.1), 0x3dcd); // 0x3dcccccd rounds up
    assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // tie -> even
    assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82); // tie -> even (up)
    assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(NaN))));
    assert.equal(bf16ToF32(0xc040), -3);
    for (let b = 0; b < 65536; b++) {
      if ((b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0) continue;
      assert.equal(f32ToBf16(bf16ToF32(b)), b);
    }
  });
});

describe('writeSafetensors / SafetensorsFile', () => {
  test('byte-exact golden file', () => {
    const dir = tmp();
    const p = path.join(dir, 'g.safetensors');
    writeSafetensors(
      p,
      { b: { dtype: 'I32', shape: [1], data: new Int32Array([7]) }, a: { dtype: 'F32', shape: [2], data: new Float32Array([1, -2]) } },
      { k: 'v' },
    );
    const header = '{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[1],"data_offsets":[8,12]}}';
    assert.equal(header.length, 133);
    const expected = Buffer.concat([
      Buffer.from([136, 0, 0, 0, 0, 0, 0, 0]), // 133 padded to 136
      Buffer.from(header + '   ', 'latin1'),
      Buffer.from([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0]), // 1.0f, -2.0f
      Buffer.from([0x07, 0x00, 0x00, 0x00]),
    ]);
    assert.deepEqual(fs.readFileSync(p), expected);
    assert.deepEqual(fs.readdirSync(dir), ['g.safetensors']); // no temp file left behind
  });

  test('byte-exact F16/BF16 golden from Float32Array input', () => {
    const dir = tmp();
    const p = path.join(dir, 'h.safetensors');
    writeSafetensors(p, {
      h: { dtype: 'F16', shape: [2], data: new Float32Array([1, 0.1]) },
      z: { dtype: 'BF16', shape: [1], data: new Float32Array([0.1]) },
    });
    const header = '{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"z":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}}';
    assert.equal(header.length, 108);
    const expected = Buffer.concat([
      Buffer.from([112, 0, 0, 0, 0, 0, 0, 0]), // 108 padded to 112
      Buffer.from(header + '    ', 'latin1'),
      Buffer.from([0x00, 0x3c, 0x66, 0x2e, 0xcd, 0x3d]),
    ]);
    assert.deepEqual(fs.readFileSync(p), expected);
  });

  test('round trip of every dtype with metadata; header sorted and 8-byte aligned', () => {
    const dir = tmp();
    const p = path.join(dir, 'all.safetensors');
    const f16vals = new Float32Array([1, -0.5, 65504, 2 ** -24, Infinity, -Infinity, NaN, -0, 3.140625]);
    const tensors: Record<string, TensorIn> = {
      'z.f32': { dtype: 'F32', shape: [2, 3], data: new Float32Array([1.5, -2.25, 3e-30, 1e30, 0, -7]) },
      'y.f16': { dtype: 'F16', shape: [9], data: f16vals },
      'x.bf16': { dtype: 'BF16', shape: [3], data: new Float32Array([1, -3, 2 ** 100]) },
      'w.f64': { dtype: 'F64', shape: [2], data: new Float64Array([0.5, -1024]) },
      'v.i32': { dtype: 'I32', shape: [3], data: new Int32Array([-2147483648, 0, 2147483647]) },
      'u.i64': { dtype: 'I64', shape: [2], data: new BigInt64Array([-5n, 2147483647n]) },
      't.i16': { dtype: 'I16', shape: [2], data: new Int16Array([-32768, 32767]) },
      's.i8': { dtype: 'I8', shape: [2], data: new Int8Array([-128, 127]) },
      'r.u8': { dtype: 'U8', shape: [1, 2], data: new Uint8Array([0, 255]) },
      'q.bool': { dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) },
      'p.scalar': { dtype: 'F32', shape: [], data: new Float32Array([42]) },
      'o.empty': { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
      'n.f16bits': { dtype: 'F16', shape: [2], data: new Uint16Array([0x3c00, 0x0001]) },
    };
    writeSafetensors(p, tensors, { format: 'pt', note: 'héllo' });

    const bytes = fs.readFileSync(p);
    const n = Number(bytes.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    const headerText = bytes.subarray(8, 8 + n).toString('utf8');
    assert.match(headerText, / *$/);
    const keys = Object.keys(JSON.parse(headerText));
    assert.deepEqual(keys, ['__metadata__', ...Object.keys(tensors).sort()]);

    const f = SafetensorsFile.open(p);
    assert.deepEqual(f.metadata, { format: 'pt', note: 'héllo' });
    assert.deepEqual(f.names().sort(), Object.keys(tensors).sort());
    assert.deepEqual(f.readF32('z.f32'), new Float32Array([1.5, -2.25, 3e-30, 1e30, 0, -7]));
    // NaN/Inf are kept bit-exact on disk, but readF32 refuses them (weights must be finite).
    assert.throws(() => f.readF32('y.f16'), (e: ItdError) => e.code === 'numeric' && e.field === 'y.f16' && e.file === p && /Infinity at flat index 4/.test(e.message));
    const h = f16ArrayToF32(new Uint16Array(f.readRaw('y.f16').buffer));
    assert.deepEqual([...h.subarray(0, 6)], [1, -0.5, 65504, 2 ** -24, Infinity, -Infinity]);
    assert.ok(Number.isNaN(h[6]!));
    assert.ok(Object.is(h[7], -0));
    assert.equal(h[8], 3.140625);
    assert.deepEqual([...f.readF32('x.bf16')], [1, -3, 2 ** 100]);
    assert.deepEqual([...f.readF32('w.f64')], [0.5, -1024]);
    // Slices streamed through one reused buffer (the T5 loader's path) read the same values, every dtype.
    const buf = new Float32Array(2);
    for (const name of ['z.f32', 'x.bf16', 'w.f64', 'y.f16']) {
      const all = f.readF32Slice(name, 0, f.info(name).shape.reduce((a, b) => a * b, 1));
      for (let from = 0; from < all.length; from += 2) {
        const to = Math.min(all.length, from + 2);
        const got = f.readF32SliceInto(name, from, to, buf.subarray(0, to - from));
        assert.deepEqual([...got], [...all.subarray(from, to)], `${name} [${from}, ${to})`);
      }
    }
    assert.throws(() => f.readF32SliceInto('z.f32', 0, 3, buf), /read into 2 elements/);
    assert.deepEqual([...f.readI32('v.i32')], [-2147483648, 0, 2147483647]);
    assert.deepEqual([...f.readI32('u.i64')], [-5, 2147483647]);
    assert.deepEqual([...f.readI32('t.i16')], [-32768, 32767]);
    assert.deepEqual([...f.readI32('s.i8')], [-128, 127]);
    assert.deepEqual([...f.readI32('r.u8')], [0, 255]);
    assert.deepEqual([...f.readI32('q.bool')], [1, 0, 1]);
    assert.deepEqual([...f.readF32('p.scalar')], [42]);
    assert.equal(f.readF32('o.empty').length, 0);
    assert.deepEqual([...f.readF32('n.f16bits')], [1, 2 ** -24]);
    assert.deepEqual([...f.readRaw('t.i16')], [0x00, 0x80, 0xff, 0x7f]);

    const info = f.info('z.f32');
    assert.equal(info.dtype, 'F32');
    assert.deepEqual(info.shape, [2, 3]);
    assert.equal(info.end - info.begin, 24);
    assert.equal(f.info('n.f16bits').begin, 8 + n); // first by name, at the 8-byte aligned data start
    assert.deepEqual([...bytes.subarray(info.begin, info.begin + 4)], [0, 0, 0xc0, 0x3f]); // 1.5f
    f.close();
  });

  test('atomic write replaces an existing file and leaves no temp file', () => {
    const dir = tmp();
    const p = path.join(dir, 'm.safetensors');
    fs.writeFileSync(p, 'old');
    writeSafetensors(p, { a: { dtype: 'U8', shape: [1], data: new Uint8Array([9]) } });
    assert.deepEqual([...SafetensorsFile.open(p).readI32('a')], [9]);
    assert.deepEqual(fs.readdirSync(dir), ['m.safetensors']);
  });

  test('write validation names the file and tensor', () => {
    const p = path.join(tmp(), 'bad.safetensors');
    const bad: [Record<string, TensorIn>, RegExp][] = [
      [{ t: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }, /3 elements but data has 2/],
      [{ t: { dtype: 'I32', shape: [1], data: new Float32Array(1) } }, /Int32Array, got Float32Array/],
      [{ t: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } }, /non-negative/],
      [{ t: { dtype: 'F8' as never, shape: [1], data: new Uint8Array(1) } }, /unknown dtype/],
      [{ __metadata__: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } }, /reserved/],
    ];
    for (const [tensors, re] of bad) {
      assert.throws(() => writeSafetensors(p, tensors), (e: Error) => {
        assert.ok(e.message.includes(p), e.message);
        assert.match(e.message, re);
        return true;
      });
    }
    assert.equal(fs.existsSync(p), false);
  });

  test('streamed write: each tensor is made only after the previous one is on disk, data in write order', () => {
    const dir = tmp();
    const p = path.join(dir, 's.safetensors');
    const sizes: number[] = [];
    const make = (data: Float32Array | Uint8Array) => () => {
      const temp = fs.readdirSync(dir).find((f) => f.includes('.tmp-'))!;
      sizes.push(fs.statSync(path.join(dir, temp)).size);
      return data;
    };
    writeSafetensorsStream(p, [
      { name: 'z', dtype: 'BF16', shape: [2, 2], make: make(new Float32Array([1, -2, 0.5, 3])) },
      { name: 'a', dtype: 'U8', shape: [3], make: make(new Uint8Array([7, 8, 9])) },
    ], { format: 'pt' });
    const f = SafetensorsFile.open(p);
    const start = f.info('z').begin;
    assert.deepEqual(sizes, [start, start + 8]); // 'z' (8 bytes of bf16) was written before 'a' was made
    assert.equal(f.info('a').begin, start + 8); // write order, not name order
    assert.deepEqual([...f.readF32('z')], [1, -2, 0.5, 3]);
    assert.deepEqual([...f.readI32('a')], [7, 8, 9]);
    f.close();
    assert.throws(() => writeSafetensorsStream(p, [{ name: 'b', dtype: 'F32', shape: [3], make: () => new Float32Array(2) }]), /"b": shape \[3\] has 3 elements but data has 2/);
    assert.throws(() => writeSafetensorsStream(p, [{ name: 'b', dtype: 'U8', shape: [1], make: () => new Uint8Array(1) }, { name: 'b', dtype: 'U8', shape: [1], make: () => new Uint8Array(1) }]), /"b": written twice/);
    assert.deepEqual(fs.readdirSync(dir), ['s.safetensors']); // failures leave the old file and no temp
  });

  test('reads headers padded with trailing spaces to any length', () => {
    const dir = tmp();
    const p = rawFile(dir, '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}   ', [3, 4]);
    assert.deepEqual([...SafetensorsFile.open(p).readI32('a')], [3, 4]);
  });

  test('dtype mismatches and missing tensors name file and tensor', () => {
    const dir = tmp();
    const p = path.join(dir, 'x.safetensors');
    writeSafetensors(p, {
      i: { dtype: 'I32', shape: [1], data: new Int32Array([1]) },
      f: { dtype: 'F32', shape: [1], data: new Float32Array([1]) },
      big: { dtype: 'I64', shape: [2], data: new BigInt64Array([1n, 2n ** 40n]) },
    });
    const f = SafetensorsFile.open(p);
    const check = (fn: () => unknown, name: string, re: RegExp) =>
      assert.throws(fn, (e: Error) => e.message.includes(p) && e.message.includes(`"${name}"`) && re.test(e.message));
    check(() => f.readF32('i'), 'i', /expected a float dtype.*got I32/);
    check(() => f.readI32('f'), 'f', /expected an integer dtype.*got F32/);
    check(() => f.readI32('big'), 'big', /1099511627776 at index 1 does not fit in int32/);
    check(() => f.info('nope'), 'nope', /not found/);
    assert.equal(f.has('i'), true);
    assert.equal(f.has('nope'), false);
    f.close();
    assert.throws(() => f.readF32('f'), /closed/);
  });
});

describe('hostile files', () => {
  const t = (dtype: string, shape: unknown, offs: unknown) => ({ dtype, shape, data_offsets: offs });

  test('file too short', () => {
    const dir = tmp();
    const p = path.join(dir, 'short.safetensors');
    fs.writeFileSync(p, Buffer.from([1, 2, 3]));
    rejects(p, /3 bytes, too short/);
  });

  test('header length beyond file or absurdly large', () => {
    const dir = tmp();
    rejects(rawFile(dir, '{}', [], 100n), /header length 100 is larger than the 2 bytes/);
    rejects(rawFile(dir, '{}', [], 2n ** 40n), /exceeds the 104857600-byte limit/);
    rejects(rawFile(dir, '{}', [], 2n ** 64n - 1n), /exceeds/);
  });

  test('header not UTF-8 JSON object', () => {
    const dir = tmp();
    const bad = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]); // {\xff\xfe}
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(4n);
    const p = path.join(dir, 'utf.safetensors');
    fs.writeFileSync(p, Buffer.concat([len, bad]));
    rejects(p, /not valid UTF-8 JSON/);
    rejects(rawFile(dir, '{"a":'), /not valid UTF-8 JSON/);
    rejects(rawFile(dir, '[1,2]'), /must be a JSON object, got an array/);
    rejects(rawFile(dir, '7'), /must be a JSON object, got 7/);
  });

  test('malformed entries', () => {
    const dir = tmp();
    rejects(rawFile(dir, { w: { shape: [1], data_offsets: [0, 1] } }, [0]), /missing "dtype"/, 'w');
    rejects(rawFile(dir, { w: { dtype: 'U8', data_offsets: [0, 1] } }, [0]), /missing "shape"/, 'w');
    rejects(rawFile(dir, { w: { dtype: 'U8', shape: [1] } }, [0]), /missing "data_offsets"/, 'w');
    rejects(rawFile(dir, { w: 5 }), /expected an object/, 'w');
    rejects(rawFile(dir, { w: t('F8', [1], [0, 1]) }, [0]), /unknown dtype "F8"/, 'w');
    rejects(rawFile(dir, { w: { dtype: 4, shape: [1], data_offsets: [0, 1] } }, [0]), /unknown dtype 4/, 'w');
    rejects(rawFile(dir, { w: t('U8', '1', [0, 1]) }, [0]), /"shape" to be an array/, 'w');
    rejects(rawFile(dir, { w: t('U8', [-1], [0, 0]) }), /non-negative integers, got \[-1\]/, 'w');
    rejects(rawFile(dir, { w: t('U8', [1.5], [0, 1]) }, [0]), /non-negative integers, got \[1.5\]/, 'w');
    rejects(rawFile(dir, { w: t('U8', [1], [1, 0]) }, [0]), /begin <= end.*\[1,0\]/, 'w');
    rejects(rawFile(dir, { w: t('U8', [1], [0.5, 1]) }, [0]), /data_offsets/, 'w');
    rejects(rawFile(dir, { w: t('U8', [1], [0]) }, [0]), /data_offsets/, 'w');
    rejects(rawFile(dir, { w: t('U8', [1], 'x') }, [0]), /data_offsets/, 'w');
  });

  test('size and layout mismatches', () => {
    const dir = tmp();
    rejects(rawFile(dir, { w: t('F32', [2], [0, 4]) }, [0, 0, 0, 0]), /span 4 bytes but F32 \[2\] needs 8/, 'w');
    rejects(rawFile(dir, { w: t('U8', [4], [0, 4]) }, [0, 0]), /end 4 is beyond the data section \(2 bytes\)/, 'w');
    rejects(
      rawFile(dir, { a: t('U8', [4], [0, 4]), b: t('U8', [2], [2, 4]) }, [0, 0, 0, 0]),
      /overlaps tensor "a"/, 'b',
    );
    rejects(
      rawFile(dir, { a: t('U8', [2], [0, 2]), b: t('U8', [2], [3, 5]) }, [0, 0, 0, 0, 0]),
      /gap of 1 bytes/, 'b',
    );
    rejects(rawFile(dir, { a: t('U8', [2], [0, 2]) }, [0, 0, 0]), /1 unused bytes/);
    rejects(rawFile(dir, {}, [0]), /1 unused bytes/);
  });

  test('metadata must map to strings', () => {
    const dir = tmp();
    rejects(rawFile(dir, { __metadata__: { a: 1 } }), /value for "a" to be a string/);
    rejects(rawFile(dir, { __metadata__: ['x'] }), /"__metadata__" to be an object/);
  });

  test('contiguous tensors stored out of name order are accepted', () => {
    const dir = tmp();
    const p = rawFile(dir, { a: t('U8', [1], [2, 3]), b: t('U8', [2], [0, 2]), e: t('U8', [0], [3, 3]) }, [5, 6, 7]);
    const f = SafetensorsFile.open(p);
    assert.deepEqual([...f.readI32('a')], [7]);
    assert.deepEqual([...f.readI32('b')], [5, 6]);
    assert.deepEqual(f.metadata, {});
  });
});

describe('pickle refusal', () => {
  test('.bin/.pt/.pth/.ckpt paths are refused with conversion advice', () => {
    for (const ext of ['.bin', '.pt', '.pth', '.ckpt']) {
      const p = path.join(tmp(), `model${ext}`);
      fs.writeFileSync(p, 'pickle');
      for (const open of [() => SafetensorsFile.open(p), () => Checkpoint.open(p)]) {
        assert.throws(open, (e: Error) => {
          assert.ok(e.message.includes(p));
          assert.match(e.message, /never loaded/);
          assert.match(e.message, /execute arbitrary code/);
          assert.ok(e.message.includes('from safetensors.torch import save_file'));
          assert.ok(e.message.includes(`torch.load('${p}', map_location='cpu', weights_only=True)`));
          return true;
        });
      }
    }
  });

  test('directory with only pickles', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), 'x');
    assert.throws(() => Checkpoint.open(dir), (e: Error) =>
      e.message.includes(path.join(dir, 'pytorch_model.bin')) && /never loaded/.test(e.message) && /save_file/.test(e.message));
  });
});

describe('Checkpoint', () => {
  const u8 = (...v: number[]): TensorIn => ({ dtype: 'U8', shape: [v.length], data: new Uint8Array(v) });

  test('directory lookup order and .fp16 variants', () => {
    const dir = tmp();
    writeSafetensors(path.join(dir, 'diffusion_pytorch_model.fp16.safetensors'), { a: { dtype: 'F16', shape: [1], data: new Float32Array([0.5]) } });
    let c = Checkpoint.open(dir);
    assert.equal(c.info('a').file, path.join(dir, 'diffusion_pytorch_model.fp16.safetensors'));
    assert.deepEqual([...c.readF32('a')], [0.5]);
    c.close();

    writeSafetensors(path.join(dir, 'model.fp16.safetensors'), { b: u8(1) });
    c = Checkpoint.open(dir);
    assert.deepEqual(c.names(), ['b']); // 'model' basename is searched first
    c.close();

    writeSafetensors(path.join(dir, 'model.safetensors'), { c: u8(2) });
    c = Checkpoint.open(dir);
    assert.deepEqual(c.names(), ['c']); // plain precedes .fp16
    c.close();

    c = Checkpoint.open(dir, ['diffusion_pytorch_model']);
    assert.deepEqual(c.names(), ['a']);
    c.close();
  });

  test('empty directory lists what was looked for', () => {
    const dir = tmp();
    assert.throws(() => Checkpoint.open(dir), (e: Error) =>
      e.message.includes(dir) && e.message.includes('model.safetensors.index.json') && e.message.includes('diffusion_pytorch_model.fp16.safetensors'));
  });

  test('sharded checkpoint via index.json', () => {
    const dir = tmp();
    writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), { a: u8(1, 2), b: { dtype: 'F32', shape: [1], data: new Float32Array([2.5]) } });
    writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), { c: { dtype: 'I64', shape: [1], data: new BigInt64Array([-3n]) } });
    writeJsonAtomic(path.join(dir, 'model.safetensors.index.json'), {
      metadata: { total_size: 14 },
      weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' },
    });
    for (const c of [Checkpoint.open(dir), Checkpoint.open(path.join(dir, 'model.safetensors.index.json'))]) {
      assert.deepEqual(c.names().sort(), ['a', 'b', 'c']);
      assert.deepEqual([...c.readI32('a')], [1, 2]);
      assert.deepEqual([...c.readF32('b')], [2.5]);
      assert.deepEqual([...c.readI32('c')], [-3]);
      const info = c.info('c');
      assert.equal(info.file, path.join(dir, 'model-00002-of-00002.safetensors'));
      assert.equal(info.dtype, 'I64');
      assert.deepEqual(info.shape, [1]);
      assert.equal(c.has('c'), true);
      assert.equal(c.has('d'), false);
      assert.throws(() => c.readF32('d'), (e: Error) => e.message.includes('"d"') && e.message.includes('index.json'));
      c.close();
    }
  });

  test('index errors: missing shard, tensor absent from shard, bad index', () => {
    const dir = tmp();
    const index = path.join(dir, 'model.safetensors.index.json');
    writeSafetensors(path.join(dir, 's1.safetensors'), { a: u8(1) });
    writeJsonAtomic(index, { weight_map: { a: 's1.safetensors', z: 's2.safetensors' } });
    assert.throws(() => Checkpoint.open(index), (e: Error) =>
      e.message.includes(index) && e.message.includes('"z"') && e.message.includes(path.join(dir, 's2.safetensors')) && /does not exist/.test(e.message));

    writeJsonAtomic(index, { weight_map: { a: 's1.safetensors', q: 's1.safetensors' } });
    assert.throws(() => Checkpoint.open(index), (e: Error) =>
      e.message.includes(index) && e.message.includes('"q"') && /absent from .*s1\.safetensors/.test(e.message));

    writeFileAtomic(index, '{"weight_map": 3}');
    assert.throws(() => Checkpoint.open(index), (e: Error) => e.message.includes(index) && /weight_map/.test(e.message));
    writeFileAtomic(index, 'nope');
    assert.throws(() => Checkpoint.open(index), (e: Error) => e.message.includes(index) && /invalid JSON in checkpoint index/.test(e.message));
  });

  test('single-file checkpoint and missing file', () => {
    const dir = tmp();
    const p = path.join(dir, 'one.safetensors');
    writeSafetensors(p, { x: u8(4) });
    const c = Checkpoint.open(p);
    // header {"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}} is 53 bytes, padded to 56
    assert.deepEqual(c.info('x'), { name: 'x', dtype: 'U8', shape: [1], begin: 8 + 56, end: 8 + 57, file: p });
    c.close();
    const missing = path.join(dir, 'none.safetensors');
    assert.throws(() => Checkpoint.open(missing), (e: ItdError) => e.message.includes(missing) && e.code === 'not_found');
  });
});

describe('atomic helpers', () => {
  test('writeJsonAtomic writes 2-space JSON with trailing newline', () => {
    const dir = tmp();
    const p = path.join(dir, 'o.json');
    writeJsonAtomic(p, { a: [1], b: 'x' });
    assert.equal(fs.readFileSync(p, 'utf8'), '{\n  "a": [\n    1\n  ],\n  "b": "x"\n}\n');
    writeFileAtomic(p, new Uint8Array([104, 105]));
    assert.equal(fs.readFileSync(p, 'utf8'), 'hi');
    assert.deepEqual(fs.readdirSync(dir), ['o.json']);
  });

  test('a failed atomic save (the write throws, or the rename fails) leaves no temp file', () => {
    const dir = tmp();
    assert.throws(() => writeAtomicWith(path.join(dir, 'x.bin'), () => { throw new Error('disk full'); }), /disk full/);
    fs.mkdirSync(path.join(dir, 'taken'));
    assert.throws(() => writeFileAtomic(path.join(dir, 'taken'), 'data'), /EISDIR|EEXIST|ENOTEMPTY|directory/);
    assert.deepEqual(fs.readdirSync(dir), ['taken']);
  });
});
