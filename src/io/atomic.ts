// Atomic file writes: readers never observe a half-written file, even if we crash mid-write.
import * as fs from 'node:fs';
import { dirname } from 'node:path';

/** Writes every byte of `data` at the current position of `fd` (writeSync may write partially). */
export function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
}

/**
 * Calls `write(fd)` on `${path}.tmp-<pid>` (same directory, so rename cannot cross filesystems),
 * fsyncs it, then renames it over `path`. The temp file is removed on failure.
 */
export function writeAtomicWith(path: string, write: (fd: number) => void): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  let ok = false;
  try {
    write(fd);
    fs.fsyncSync(fd);
    ok = true;
  } finally {
    fs.closeSync(fd);
    if (!ok) fs.rmSync(tmp, { force: true });
  }
  fs.renameSync(tmp, path);
  syncDir(dirname(path));
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
