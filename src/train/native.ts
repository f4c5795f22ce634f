/**
 * Picks the kernel implementation: the C addon in src/native (built by node-gyp at install) when it
 * loads, else the plain-JS reference. ITD_NATIVE=0 forces the JS kernels. The addon carries one
 * build of its hot loops per instruction set (AVX-512, AVX2+FMA, generic x86-64) and lists those
 * this CPU runs, widest first; the widest is used unless ITD_NATIVE_ISA names another.
 */
import { ItdError } from '../errors.js';
import { loadAddon } from '../util/addon.js';
import { jsKernels, LATENT_CHUNK, type AuxKArgs, type BackwardArgs, type DecodeArgs, type EncodeTopKArgs, type Kernels } from './kernels.js';

const byIsa = new Map<string, Kernels>();

/** The instruction-set builds of the native kernels this CPU runs, widest first ([] without the addon). */
export function nativeIsas(): string[] {
  return Object.keys(loadAddon()?.isas ?? {});
}

/**
 * The C kernels for `isa` (default: ITD_NATIVE_ISA, else the widest this CPU runs), or undefined
 * when the addon was not built (or fails to load). An ISA this CPU cannot run is an error.
 */
export function nativeKernels(isa = process.env['ITD_NATIVE_ISA'] || undefined): Kernels | undefined {
  const a = loadAddon();
  if (!a) return undefined;
  const name = isa ?? Object.keys(a.isas)[0]!;
  const k = a.isas[name];
  if (!k) {
    throw new ItdError('unsupported', `ITD_NATIVE_ISA=${name}: this CPU runs only ${Object.keys(a.isas).join(', ')} builds of the native kernels`, {
      field: 'ITD_NATIVE_ISA', hint: `unset it or pick one of ${Object.keys(a.isas).join(', ')}`,
    });
  }
  let cached = byIsa.get(name);
  if (!cached) {
    cached = {
      name: 'native',
      isa: name,
      colStats(x, B, D) {
        sizes('colStats', [['x', x, B * D]]);
        const sum = new Float64Array(D);
        const sumSq = new Float64Array(1);
        a.colStats({ x, B, D, sum, sumSq });
        return { sum, sumSq: sumSq[0]! };
      },
      decode: (args) => k.decode(checkDecode(args)),
      backward: (args) => k.backward(checkBackward(args)),
      encodeTopK: (args) => k.encodeTopK(checkEncode(args)),
      auxK: (args) => k.auxK(checkAuxK(args)),
    };
    byIsa.set(name, cached);
  }
  return cached;
}

/** "native (avx512)", "js": what ran, for logs. */
export function kernelsLabel(k: Kernels): string {
  return k.isa ? `${k.name} (${k.isa})` : k.name;
}

export function defaultKernels(): Kernels {
  return (process.env['ITD_NATIVE'] !== '0' && nativeKernels()) || jsKernels;
}

// C reads these arrays without bounds checks: a wrong length would corrupt memory, so it is an error here.

function sizes(kernel: string, want: [string, ArrayLike<number>, number][]): void {
  for (const [name, arr, len] of want) {
    if (arr.length !== len) throw new ItdError('internal', `native ${kernel}: ${name} has ${arr.length} elements, expected ${len}`);
  }
}

function indicesBelow(kernel: string, name: string, idx: Int32Array, n: number): void {
  for (const j of idx) if (!(j >= 0 && j < n)) throw new ItdError('internal', `native ${kernel}: ${name} holds ${j}, outside [0, ${n})`);
}

function checkDecode(a: DecodeArgs): DecodeArgs {
  const { B, D } = a;
  const nnz = a.rowPtr[B] ?? -1;
  sizes('decode', [['x', a.x, B * D], ['xc', a.xc, B * D], ['g', a.g, B * D], ['bPre', a.bPre, D], ['rowErr', a.rowErr, B],
    ['rowPtr', a.rowPtr, B + 1], ['lat', a.lat, nnz], ['val', a.val, nnz], ['wDec', a.wDec, a.wDec.length - (a.wDec.length % D)]]);
  indicesBelow('decode', 'lat', a.lat, a.wDec.length / D);
  return a;
}

function checkBackward(a: BackwardArgs): BackwardArgs {
  const { n, D } = a;
  const nnz = a.colPtr[n] ?? -1;
  const m = a.auxBEnc.length;
  const rows = a.g.length / D;
  const state: [string, ArrayLike<number>, number][] = a.adam
    ? [['mWEnc', a.adam.mWEnc, n * D], ['vWEnc', a.adam.vWEnc, n * D], ['mWDec', a.adam.mWDec, n * D], ['vWDec', a.adam.vWDec, n * D], ['mBEnc', a.adam.mBEnc, n], ['vBEnc', a.adam.vBEnc, n]]
    : [['grads.wEnc', a.grads!.wEnc, n * D], ['grads.wDec', a.grads!.wDec, n * D], ['grads.bEnc', a.grads!.bEnc, n]];
  sizes('backward', [['wEnc', a.wEnc, n * D], ['wDec', a.wDec, n * D], ['bEnc', a.bEnc, n], ['xc', a.xc, rows * D], ['g', a.g, rows * D],
    ['colPtr', a.colPtr, n + 1], ['colRow', a.colRow, nnz], ['colVal', a.colVal, nnz], ['auxSlot', a.auxSlot, n],
    ['auxWEnc', a.auxWEnc, m * D], ['auxWDec', a.auxWDec, m * D], ['dbPre', a.dbPre, Math.ceil(n / LATENT_CHUNK) * D], ...state]);
  indicesBelow('backward', 'colRow', a.colRow, rows);
  for (const s of a.auxSlot) if (!(s >= -1 && s < m)) throw new ItdError('internal', `native backward: auxSlot holds ${s}, outside [-1, ${m})`);
  return a;
}

function checkEncode(a: EncodeTopKArgs): EncodeTopKArgs {
  const { B, D, n, k } = a;
  if (!(B >= 1 && k >= 1 && k <= n)) throw new ItdError('internal', `native encodeTopK: needs B >= 1 and 1 <= k <= n, got B=${B} k=${k} n=${n}`);
  sizes('encodeTopK', [['x', a.x, B * D], ['bPre', a.bPre, D], ['wEnc', a.wEnc, n * D], ['bEnc', a.bEnc, n], ['values', a.values, B * k], ['indices', a.indices, B * k]]);
  return a;
}

function checkAuxK(a: AuxKArgs): AuxKArgs {
  const { B, D, m, k } = a;
  if (!(B >= 1 && k >= 1 && k <= m)) throw new ItdError('internal', `native auxK: needs B >= 1 and 1 <= k <= m, got B=${B} k=${k} m=${m}`);
  sizes('auxK', [['xc', a.xc, B * D], ['g', a.g, B * D], ['we', a.we, m * D], ['be', a.be, m], ['wd', a.wd, m * D],
    ['dWe', a.dWe, m * D], ['dBe', a.dBe, m], ['dWd', a.dWd, m * D], ['sqErr', a.sqErr, 1]]);
  return a;
}
