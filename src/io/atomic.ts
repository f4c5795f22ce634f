// Atomic file writes: readers never observe a half-written file, even if we crash mid-write.
import * as fs from 'node:fs';
import { dirname, join } from 'node:path';

/** `<name>.tmp-<pid>`: the temp file of an atomic write by process pid. */
const TEMP_RE = /\.tmp-(\d+)$/;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: existence check only
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // alive, but another user's
  }
}

/**
 * Removes the temp files that killed writers left in `dir` (`*.tmp-PID` whose PID no longer runs);
 * a live writer's temp file, this process's own and anything else are kept. Returns the names removed.
 * A PID reused by an unrelated process only keeps a stale file a while longer, never loses data.
 */
export function removeStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return []; // no directory yet: nothing left behind
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = Number(TEMP_RE.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || pidAlive(pid)) continue;
    try {
      if (!fs.lstatSync(join(dir, name)).isFile()) continue;
      fs.rmSync(join(dir, name));
      removed.push(name);
    } catch {
      // raced with another cleaner, or not ours to remove: leave it
    }
  }
  return removed;
}

/** Directories already swept by this process (a sweep per write would rescan big shard dirs). */
const swept = new Set<string>();

/** Writes every byte of `data` at the current position of `fd` (writeSync may write partially). */
export function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
}

/**
 * Calls `write(fd)` on `${path}.tmp-<pid>` (same directory, so rename cannot cross filesystems),
 * fsyncs it, then renames it over `path`. The temp file is removed on failure; the first write into a
 * directory also removes the temp files of writers that were killed there (removeStaleTemps).
 */
export function writeAtomicWith(path: string, write: (fd: number) => void): void {
  const tmp = tempPath(path);
  const fd = fs.openSync(tmp, 'w');
  let ok = false;
  try {
    try {
      write(fd);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path); // fails e.g. when `path` is a directory: the temp file must not stay
    ok = true;
  } finally {
    if (!ok) fs.rmSync(tmp, { force: true });
  }
  syncDir(dirname(path));
}

/** writeAtomicWith with the writes, fsync and rename on libuv's threads (the JS thread is free meanwhile). */
export async function writeAtomicWithAsync(path: string, write: (fh: fs.promises.FileHandle) => Promise<void>): Promise<void> {
  const tmp = tempPath(path);
  const fh = await fs.promises.open(tmp, 'w');
  let ok = false;
  try {
    try {
      await write(fh);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, path);
    ok = true;
  } finally {
    if (!ok) await fs.promises.rm(tmp, { force: true });
  }
  syncDir(dirname(path));
}

/** This process's temp file for `path`, after the first sweep of its directory. */
function tempPath(path: string): string {
  const dir = dirname(path);
  if (!swept.has(dir)) {
    removeStaleTemps(dir);
    swept.add(dir);
  }
  return `${path}.tmp-${process.pid}`;
}

/** Writes every byte of `data` at the current position of `fh`. */
export async function writeAllAsync(fh: fs.promises.FileHandle, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length; ) off += (await fh.write(data, off, data.length - off)).bytesWritten;
}

/** Persists the rename itself; directories cannot be fsynced on every platform, so this is best effort. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Not supported here (e.g. Windows); the rename is still atomic, only less durable.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  writeAtomicWith(path, (fd) => writeAll(fd, bytes));
}

export function writeJsonAtomic(path: string, obj: unknown): void {
  writeFileAtomic(path, JSON.stringify(obj, null, 2) + '\n');
}
