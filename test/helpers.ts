/** Shared fixtures: temp dirs and cached synthetic models (tiny preset, fallback vocabulary). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export const REPO_ROOT = path.resolve(import.meta.dirname, '..');
export const SHARED_DATA = path.resolve(REPO_ROOT, '..', 'shared', 'data');
