/** Shared fixtures: temp dirs and cached synthetic models (tiny preset, fallback vocabulary). */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tokenRows, type TextModel } from '../src/encoder/index.js';
import { defaultConfig, Sae } from '../src/sae/index.js';
import { synthModel, type SynthOptions } from '../src/synth/clip.js';

export function tmpDir(prefix = 'itd-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Writes (once per process) a tiny synthetic model and returns its directory. */
const cache = new Map<string, string>();
export function tinyModel(opts: Partial<Omit<SynthOptions, 'out'>> = {}): string {
  const key = JSON.stringify(opts);
  let dir = cache.get(key);
  if (!dir) {
    dir = path.join(tmpDir(), 'model');
    synthModel({ out: dir, preset: 'tiny', seed: 7, ...opts });
    cache.set(key, dir);
  }
  return dir;
}

/** Writes (once per process) the sdxl-tiny synthetic pipeline (two towers of different widths). */
export function tinySdxl(): string {
  return tinyModel({ preset: 'sdxl-tiny' });
}

/** python3 with numpy, for the independent references (tests skip without it). */
export function hasNumpy(): boolean {
  return spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
}

/** Arrays of an .npz file as raw float32 (read back through numpy: no npz parser in the tests). */
export function npzF32(file: string, keys: string[]): Float32Array[] {
  const code = `import numpy as np,sys; z=np.load(sys.argv[1]); [sys.stdout.buffer.write(np.int64(z[k].size).tobytes()+z[k].astype(np.float32).tobytes()) for k in sys.argv[2:]]`;
  const r = spawnSync('python3', ['-c', code, file, ...keys], { maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(String(r.stderr));
  const buf = Buffer.from(r.stdout as Buffer);
  const out: Float32Array[] = [];
  for (let o = 0; out.length < keys.length; ) {
    const size = Number(buf.readBigInt64LE(o));
    out.push(new Float32Array(buf.buffer.slice(buf.byteOffset + o + 8, buf.byteOffset + o + 8 + size * 4)));
    o += 8 + size * 4;
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Runs f with the environment variable `name` set (the native loops read theirs per call), then restores it. */
export async function withEnv<T>(name: string, value: string, f: () => Promise<T>): Promise<T> {
  const saved = process.env[name];
  process.env[name] = value;
  try {
    return await f();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

export const REPO_ROOT = path.resolve(import.meta.dirname, '..');
/** argv prefix that runs the `itd` CLI from the sources (tests never depend on a stale dist/). */
export const ITD_CLI = ['--import', 'tsx', path.join(REPO_ROOT, 'src', 'cli', 'bin.ts')];
export const SHARED_DATA = path.resolve(REPO_ROOT, '..', 'shared', 'data');

/**
 * An SAE whose decoder rows are centred activations of real content tokens plus one shared EOS
 * direction (a nearest-exemplar dictionary, tied encoder): cheap, deterministic, and
 * token-specific like a trained SAE, for tests that need meaningful features without training.
 */
export async function exemplarSae(model: TextModel, prompts: string[], layer: number, k: number): Promise<Sae> {
  const D = model.config.hiddenSize;
  const rows: Float32Array[] = [];
  const eos = new Float32Array(D);
  const b = await tokenRows(model, prompts, layer);
  for (let r = 0; r < b.n; r++) {
    const last = b.offsets[r + 1]! - 1; // the end token
    for (let i = b.offsets[r]!; i < last; i++) rows.push(b.x.subarray(i * D, (i + 1) * D));
    for (let e = 0; e < D; e++) eos[e]! += b.x[last * D + e]! / prompts.length;
  }
  rows.push(eos);
  const mean = new Float32Array(D);
  for (const r of rows) for (let e = 0; e < D; e++) mean[e]! += r[e]! / rows.length;
  const wDec = new Float32Array(rows.length * D);
  rows.forEach((r, j) => {
    let norm = 0;
    for (let e = 0; e < D; e++) norm += (r[e]! - mean[e]!) ** 2;
    for (let e = 0; e < D; e++) wDec[j * D + e] = (r[e]! - mean[e]!) / Math.sqrt(norm);
  });
  const cfg = { ...defaultConfig(D, rows.length, k, 'topk'), layer };
  return new Sae(cfg, { wEnc: wDec.slice(), bEnc: new Float32Array(rows.length), wDec, bPre: mean });
}

/** Every file under `dir` with its bytes and mtime: equal snapshots mean nothing was rewritten. */
export function treeSnapshot(dir: string): Record<string, { mtimeNs: bigint; bytes: Buffer }> {
  const out: Record<string, { mtimeNs: bigint; bytes: Buffer }> = {};
  for (const f of (fs.readdirSync(dir, { recursive: true }) as string[]).sort()) {
    const p = path.join(dir, f);
    const st = fs.statSync(p, { bigint: true });
    if (st.isFile()) out[f] = { mtimeNs: st.mtimeNs, bytes: fs.readFileSync(p) };
  }
  return out;
}

/** The PID of a process that has exited, so temp files named after it are stale. */
export function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}
