/**
 * Content-addressed blob cache: one file per hub ETag (the sha256 for LFS files, the git blob id
 * otherwise), so the same weights downloaded for two repos or two output folders are fetched once.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** `$HF_HOME/itd` when HF_HOME is set, else `~/.cache/itd/hub`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.HF_HOME ? join(env.HF_HOME, 'itd') : join(homedir(), '.cache', 'itd', 'hub');
}

export class BlobCache {
  constructor(readonly dir: string) {}

  /** File name for an ETag; odd ETags (not a plain token) are hashed so they stay safe names. */
  key(etag: string): string {
    return /^[A-Za-z0-9._-]{1,128}$/.test(etag) ? etag : createHash('sha256').update(etag).digest('hex');
  }

  blobPath(key: string): string {
    return join(this.dir, 'blobs', key);
  }

  /** Where a transfer accumulates; it survives a crash so the next run resumes it. */
  partialPath(key: string): string {
    fs.mkdirSync(join(this.dir, 'blobs'), { recursive: true });
    return `${this.blobPath(key)}.incomplete`;
  }

  has(key: string, size: number | undefined): boolean {
    const st = fs.statSync(this.blobPath(key), { throwIfNoEntry: false });
    return st !== undefined && (size === undefined || st.size === size);
  }

  /** Moves a verified transfer into the cache. */
  commit(key: string): void {
    fs.renameSync(this.partialPath(key), this.blobPath(key));
  }

  /** Puts the blob at `dest`: a hard link when the file systems allow it, a copy otherwise. */
  materialize(key: string, dest: string): void {
    const blob = this.blobPath(key);
    const dst = fs.statSync(dest, { throwIfNoEntry: false });
    if (dst) {
      const src = fs.statSync(blob);
      if (dst.ino === src.ino && dst.dev === src.dev) return;
      fs.rmSync(dest);
    }
    try {
      fs.linkSync(blob, dest);
    } catch {
      fs.copyFileSync(blob, dest);
    }
  }
}
