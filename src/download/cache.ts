/**
 * The Hugging Face hub cache, in the layout huggingface_hub (so diffusers and transformers) writes
 * and reads: `<cache>/models--<org>--<name>/blobs/<etag>` holds each file once (the ETag is the
 * sha256 for LFS files, the git blob id otherwise), `snapshots/<commit>/<path>` are relative
 * symlinks to those blobs, and `refs/<revision>` holds the commit a branch or tag resolved to.
 * Weights another tool already downloaded are reused, and what itd downloads they find.
 *
 * Own code rather than @huggingface/hub's downloadFileToCacheDir (2.17): that one neither resumes
 * nor verifies the sha256, writes no refs/, logs to the console, and files a snapshot under each
 * file's last commit instead of the revision's commit, so a multi-file snapshot is split.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { ItdError } from '../errors.js';

/** huggingface_hub's rule: HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  return join(home, 'hub');
}

/** `org/name` -> `models--org--name`, the repo's folder in the cache. */
export function repoFolderName(repo: string): string {
  return `models--${repo.split('/').join('--')}`;
}

/** One repo's folder in the hub cache. */
export class BlobCache {
  readonly dir: string;

  constructor(cacheDir: string, readonly repo: string) {
    this.dir = join(cacheDir, repoFolderName(repo));
  }

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

  snapshotDir(commit: string): string {
    return join(this.dir, 'snapshots', commit);
  }

  /** snapshots/<commit>/<path> -> ../../blobs/<key> (a copy where symlinks are refused); returns its path. */
  linkSnapshot(commit: string, path: string, key: string): string {
    const pointer = join(this.snapshotDir(commit), path);
    fs.mkdirSync(dirname(pointer), { recursive: true });
    fs.rmSync(pointer, { force: true });
    try {
      fs.symlinkSync(relative(dirname(pointer), this.blobPath(key)), pointer);
    } catch {
      fs.copyFileSync(this.blobPath(key), pointer);
    }
    return pointer;
  }

  /** refs/<revision> = commit, as huggingface_hub records a branch or tag (a commit needs no ref). */
  writeRef(revision: string, commit: string): void {
    if (revision === commit) return;
    const ref = join(this.dir, 'refs', revision);
    fs.mkdirSync(dirname(ref), { recursive: true });
    fs.writeFileSync(ref, commit);
  }

  /** The snapshot a revision names, when it is in the cache: a commit directly, a branch or tag through refs/. */
  snapshotOf(revision: string): string | undefined {
    const ref = join(this.dir, 'refs', revision);
    const commit = /^[0-9a-f]{40}$/.test(revision) ? revision : fs.existsSync(ref) ? fs.readFileSync(ref, 'utf8').trim() : undefined;
    return commit !== undefined && fs.existsSync(this.snapshotDir(commit)) ? this.snapshotDir(commit) : undefined;
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

const REPO_SPEC = /^([\w.-]+\/[\w.-]+)(?:@([\w./-]+))?$/;

/**
 * A local directory for `dirOrRepo`: the path itself when it exists, else, for `org/name[@revision]`
 * (revision default "main"), that snapshot in the hub cache, found offline. Undefined when neither.
 */
export function cachedModelDir(dirOrRepo: string, cacheDir = defaultCacheDir()): string | undefined {
  // lstat too: a dangling link or a symlink loop is the user's path, and statInput names what is wrong with it.
  if (fs.existsSync(dirOrRepo) || isLink(dirOrRepo)) return dirOrRepo;
  const m = REPO_SPEC.exec(dirOrRepo);
  return m ? new BlobCache(cacheDir, m[1]!).snapshotOf(m[2] ?? 'main') : undefined;
}

/** cachedModelDir, or a 'not_found' ItdError: "<arg>: <what> not found", with the download command when it is a repo id. */
export function localModelDir(dirOrRepo: string, what: string, cacheDir = defaultCacheDir()): string {
  const dir = cachedModelDir(dirOrRepo, cacheDir);
  if (dir !== undefined) return dir;
  const repo = REPO_SPEC.exec(dirOrRepo);
  throw new ItdError('not_found', `${dirOrRepo}: ${what} not found${repo ? ` (no such directory, nor ${repo[1]}@${repo[2] ?? 'main'} in the hub cache ${cacheDir})` : ''}`, {
    file: dirOrRepo,
    ...(repo ? { hint: `itd download ${repo[1]}${repo[2] ? ` --revision ${repo[2]}` : ''} fetches it into the cache` } : {}),
  });
}

function isLink(p: string): boolean {
  try {
    return fs.lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}
