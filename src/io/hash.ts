/**
 * Content hashes of files, streamed (weights and shards can be GBs). Identities of models and SAEs
 * hash every byte; so that loading stays fast, the digest of a file is cached in the itd cache
 * directory under its (real path, device, inode, size, mtime, ctime): any write changes mtime and
 * ctime (ctime cannot be set back by a user), so a changed file is always hashed anew.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from './atomic.js';
import { openRegularFile } from './files.js';

export function sha256File(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = openRegularFile(file, 'a file to hash');
  try {
    const buf = Buffer.allocUnsafe(8 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Where itd keeps small caches: $ITD_CACHE_DIR, else $XDG_CACHE_HOME/itd, else ~/.cache/itd. */
export function itdCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['ITD_CACHE_DIR']) return env['ITD_CACHE_DIR'];
  return path.join(env['XDG_CACHE_HOME'] || path.join(os.homedir(), '.cache'), 'itd');
}

/**
 * File timestamps tick at the kernel's coarse clock (milliseconds), so two writes within one tick
 * can leave identical stats (git's "racily clean" problem): files changed this recently are hashed
 * but not cached.
 */
const RACY_NS = 2_000_000_000n;

function statKey(file: string): { key: string; racy: boolean } {
  const st = fs.statSync(file, { bigint: true });
  const changed = st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs;
  const racy = BigInt(Date.now()) * 1_000_000n - changed < RACY_NS;
  return { key: JSON.stringify([fs.realpathSync(file), String(st.dev), String(st.ino), String(st.size), String(st.mtimeNs), String(st.ctimeNs)]), racy };
}

/** Entries kept in the digest cache; past this the older half goes (entries are ~300 bytes each). */
const CACHE_MAX_ENTRIES = 1024;

/** Bounds the cache directory: files of deleted or rewritten models would otherwise pile up forever. */
function pruneCache(dir: string): void {
  const names = fs.readdirSync(dir).filter((n) => n.endsWith('.json'));
  if (names.length < CACHE_MAX_ENTRIES) return;
  const byAge = names.map((n) => ({ n, t: fs.statSync(path.join(dir, n)).mtimeMs })).sort((a, b) => a.t - b.t);
  for (const { n } of byAge.slice(0, names.length - CACHE_MAX_ENTRIES / 2)) fs.rmSync(path.join(dir, n), { force: true });
}

/**
 * sha256 of a file's bytes, from the cache when the file's identity and timestamps are unchanged.
 * The cache is best effort: an unwritable cache directory only costs a re-hash next time.
 */
export function cachedSha256File(file: string): string {
  return cachedFileFact(file, 'sha256', (v) => /^[0-9a-f]{64}$/.test(v), () => sha256File(file));
}

/**
 * Runs `check` (which throws on a bad file) unless it already passed on this very file, as the
 * digest cache knows it (same identity and timestamps); `what` names the check, so different
 * checks of one file are remembered apart.
 */
export function checkFileOnce(file: string, what: string, check: () => void): void {
  cachedFileFact(file, `check-${crypto.createHash('sha256').update(what).digest('hex').slice(0, 16)}`, (v) => v === 'ok', () => {
    check();
    return 'ok';
  });
}

/** A value computed from a file's bytes, cached under `kind` (the directory, and the entry's field) by the file's identity and timestamps. */
function cachedFileFact(file: string, kind: string, valid: (v: string) => boolean, compute: () => string): string {
  const { key, racy } = statKey(file);
  const entry = path.join(itdCacheDir(), kind, `${crypto.createHash('sha256').update(key).digest('hex')}.json`);
  try {
    const cached = JSON.parse(fs.readFileSync(entry, 'utf8')) as Record<string, unknown>;
    const value = cached[kind];
    if (cached.key === key && typeof value === 'string' && valid(value)) {
      const now = new Date();
      fs.utimesSync(entry, now, now); // recently used entries survive pruning
      return value;
    }
  } catch {
    // no entry yet, or an unreadable one: compute it
  }
  const value = compute();
  // The file may have changed while it was read; only a value of a file still in that state is cached.
  if (!racy && statKey(file).key === key) {
    try {
      fs.mkdirSync(path.dirname(entry), { recursive: true });
      pruneCache(path.dirname(entry));
      writeFileAtomic(entry, JSON.stringify({ key, [kind]: value }));
    } catch {
      // read-only cache directory: fine, just slower next time
    }
  }
  return value;
}

/**
 * Identity of a set of named files: sha256 over each name and the sha256 of its file's bytes, in
 * name order; 16 hex digits. Names are the caller's roles for the files (e.g. "config.json",
 * "tokenizer/merges.txt"), so the id depends on content and role, not on where the files live.
 */
export function filesIdentity(files: Readonly<Record<string, string>>): string {
  const h = crypto.createHash('sha256');
  for (const name of Object.keys(files).sort()) h.update(`${name}\0${cachedSha256File(files[name]!)}\n`);
  return h.digest('hex').slice(0, 16);
}
