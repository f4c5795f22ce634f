/**
 * PyTorch's CPU random generator, bit-compatible where it matters for diffusion: the same seed gives
 * the same initial latents as `torch.Generator("cpu").manual_seed(seed)` + `torch.randn(shape)`.
 *
 * Engine: MT19937 seeded with the low 32 bits of the seed (at::mt19937, the standard init).
 *   random()   = one 32-bit draw
 *   random64() = (random() << 32) | random()
 * float32 uniform: (random() & (2^24 - 1)) * 2^-24          (24 = float mantissa digits)
 * float64 uniform: (random64() & (2^53 - 1)) * 2^-53
 *
 * randn(n) for float32 (aten normal_kernel):
 *   n >= 16: fill all n slots with float uniforms, then Box-Muller over chunks of 16 at offsets
 *            0, 16, ..., while offset <= n-16: for j < 8, with u1 = 1 - d[j], u2 = d[j+8],
 *            r = sqrt(-2 ln u1), theta = 2 pi u2: d[j] = r cos theta, d[j+8] = r sin theta.
 *            If n % 16 != 0 the last 16 slots are refilled with 16 fresh uniforms and transformed
 *            again (overlapping the last full chunk).
 *   n < 16:  scalar Box-Muller in double, one value per element: u1, u2 double uniforms,
 *            r = sqrt(-2 log1p(-u2)), theta = 2 pi u1, returns r cos theta and caches r sin theta
 *            in the generator for the next scalar draw (the cache survives across calls and is
 *            cleared by manualSeed).
 * The vectorised path runs in float32 (AVX2 on x86); intermediates here are rounded to float32
 * the same way, so values agree with torch to a few ulp (transcendental approximations differ).
 */
import { ItdError } from '../errors.js';

const N = 624;
const M = 397;
const TWO_PI_F32 = Math.fround(2 * Math.PI);

/** The 32-bit Mersenne Twister (MT19937). */
export class Mt19937 {
  private readonly state = new Uint32Array(N);
  private index = N;

  constructor(seed: number) {
    const s = this.state;
    s[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = s[i - 1]!;
      s[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
  }

  /** Next tempered 32-bit output. */
  next(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const s = this.state;
    for (let i = 0; i < N; i++) {
      const y = (s[i]! & 0x80000000) | (s[(i + 1) % N]! & 0x7fffffff);
      s[i] = (s[(i + M) % N]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)) >>> 0;
    }
    this.index = 0;
  }
}

export class TorchGenerator {
  private engine = new Mt19937(0);
  private nextDoubleNormal: number | undefined;
  private seed = 0;

  constructor(seed: number) {
    this.manualSeed(seed);
  }

  /** Same as `generator.manual_seed(seed)`: any integer in [0, 2^53); only its low 32 bits reach MT19937. */
  manualSeed(seed: number): this {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new ItdError('usage', `seed must be an integer in [0, 2^53), got ${seed}`, { field: 'seed' });
    this.seed = seed;
    this.engine = new Mt19937(Number(BigInt(seed) & 0xffffffffn));
    this.nextDoubleNormal = undefined;
    return this;
  }

  initialSeed(): number {
    return this.seed;
  }

  /** `torch.randn(shape, generator=g)` for float32, row-major. */
  randn(shape: readonly number[]): Float32Array {
    const n = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    if (n >= 16) this.fillVectorised(out);
    else for (let i = 0; i < n; i++) out[i] = this.scalarNormal();
    return out;
  }

  private uniformF32(): number {
    return (this.engine.next() & 0xffffff) / 16777216;
  }

  private uniformF64(): number {
    const hi = this.engine.next();
    const lo = this.engine.next();
    return ((hi & 0x1fffff) * 4294967296 + lo) / 9007199254740992;
  }

  private fillVectorised(out: Float32Array): void {
    const n = out.length;
    for (let i = 0; i < n; i++) out[i] = this.uniformF32();
    for (let i = 0; i + 16 <= n; i += 16) boxMuller16(out, i);
    if (n % 16 !== 0) {
      for (let i = n - 16; i < n; i++) out[i] = this.uniformF32();
      boxMuller16(out, n - 16);
    }
  }

  private scalarNormal(): number {
    if (this.nextDoubleNormal !== undefined) {
      const v = this.nextDoubleNormal;
      this.nextDoubleNormal = undefined;
      return v;
    }
    const u1 = this.uniformF64();
    const u2 = this.uniformF64();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }
}

/** In-place float32 Box-Muller on d[o .. o+16): pairs (j, j+8). */
function boxMuller16(d: Float32Array, o: number): void {
  const f = Math.fround;
  for (let j = o; j < o + 8; j++) {
    const u1 = f(1 - d[j]!);
    const r = f(Math.sqrt(f(-2 * f(Math.log(u1)))));
    const theta = f(TWO_PI_F32 * d[j + 8]!);
    d[j] = r * f(Math.cos(theta));
    d[j + 8] = r * f(Math.sin(theta));
  }
}
