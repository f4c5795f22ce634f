/** Downloads a hub repo snapshot (or some of its top-level folders) into a plain directory. */
import * as fs from 'node:fs';
import { dirname, isAbsolute, join, normalize, posix, sep } from 'node:path';
import { Progress } from '../io/progress.js';
import { BlobCache, defaultCacheDir } from './cache.js';
import {
  ChecksumError,
  DEFAULT_ENDPOINT,
  fetchToFile,
  fileMeta,
  HubError,
  isSha256,
  listRepo,
  type FileMeta,
  type HubAuth,
} from './hub.js';

export interface DownloadOptions {
  /** owner/name */
  repo: string;
  /** Branch, tag or commit (default "main"). */
  revision?: string;
  /** Top-level folders (or root files) to fetch; the root model_index.json always comes along. */
  include?: string[];
  /** A plain directory to put the files in too (hard links into the cache); default: only the cache. */
  out?: string;
  /** Default: env HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Default: env HF_TOKEN; pass '' to download anonymously. */
  token?: string;
  /** The Hugging Face hub cache (default: see defaultCacheDir()). */
  cacheDir?: string;
  /** Tries per file, each resuming the previous one (default 5). */
  attempts?: number;
  /** Back-off unit between tries (default 1000 ms). */
  retryDelayMs?: number;
}

export interface DownloadedFile {
  path: string;
  size: number;
  /** sha256 of the content, when it was downloaded now or the hub announced it. */
  sha256?: string;
  fromCache: boolean;
}

export interface DownloadResult {
  repo: string;
  revision: string;
  commit: string;
  /** `out`, or the snapshot directory in the cache when no `out` was given. */
  out: string;
  files: DownloadedFile[];
}

/** Pickled / TF / Flax weights, redundant where a folder also ships safetensors. */
const LEGACY_WEIGHTS = /\.(bin|ckpt|pt|pth|msgpack|h5)$/;
const HEAD_CONCURRENCY = 8;

export function selectFiles(files: string[], include?: string[]): string[] {
  const wanted = include?.length ? new Set(include.map((i) => i.replace(/^\/+|\/+$/g, ''))) : undefined;
  const picked = wanted ? files.filter((f) => f === 'model_index.json' || wanted.has(f.split('/')[0]!)) : files;
  const withSafetensors = new Set(picked.filter((f) => f.endsWith('.safetensors')).map((f) => posix.dirname(f)));
  return picked.filter((f) => !(LEGACY_WEIGHTS.test(f) && withSafetensors.has(posix.dirname(f))));
}

/** Joins a hub path under `out`, refusing paths that would escape it. */
function destPath(out: string, path: string): string {
  const rel = normalize(path);
  if (isAbsolute(rel) || rel === '..' || rel.startsWith(`..${sep}`)) throw new HubError(`refusing unsafe path '${path}' from the hub`);
  return join(out, rel);
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

const mb = (bytes: number) => Math.round(bytes / 1e5) / 10;

export async function downloadRepo(opts: DownloadOptions): Promise<DownloadResult> {
  const auth: HubAuth = {
    endpoint: (opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, ''),
    token: (opts.token ?? process.env.HF_TOKEN) || undefined,
  };
  const revision = opts.revision ?? 'main';
  const listing = await listRepo(auth, opts.repo, revision);
  const paths = selectFiles(listing.files, opts.include);
  if (paths.length === 0) throw new HubError(`${opts.repo}@${revision}: no file matches --include ${opts.include?.join(',')}`);
  const metas = await mapLimit(paths, HEAD_CONCURRENCY, (p) => fileMeta(auth, opts.repo, listing.commit, p));
  const cache = new BlobCache(opts.cacheDir ?? defaultCacheDir(), opts.repo);
  const cached = (m: FileMeta) => m.etag !== undefined && cache.has(cache.key(m.etag), m.size);

  const remaining = metas.filter((m) => !cached(m)).reduce((sum, m) => sum + (m.size ?? 0), 0);
  const progress = new Progress({ label: `download ${opts.repo}`, total: mb(remaining), unit: 'MB' });
  let done = 0;
  const onBytes = (n: number) => progress.set(mb((done += n)));
  const files: DownloadedFile[] = [];
  try {
    for (const meta of metas) files.push(await materialize(meta, { auth, cache, commit: listing.commit, out: opts.out, opts, onBytes }));
  } finally {
    progress.done();
  }
  cache.writeRef(revision, listing.commit);
  return { repo: opts.repo, revision, commit: listing.commit, out: opts.out ?? cache.snapshotDir(listing.commit), files };
}

interface FileContext {
  auth: HubAuth;
  cache: BlobCache;
  commit: string;
  out: string | undefined;
  opts: DownloadOptions;
  onBytes: (n: number) => void;
}

async function materialize(meta: FileMeta, ctx: FileContext): Promise<DownloadedFile> {
  const pointer = destPath(ctx.cache.snapshotDir(ctx.commit), meta.path);
  const dest = ctx.out === undefined ? undefined : destPath(ctx.out, meta.path);
  if (dest) fs.mkdirSync(dirname(dest), { recursive: true });
  const expected = isSha256(meta.etag) ? meta.etag : undefined;
  const key = meta.etag === undefined ? undefined : ctx.cache.key(meta.etag);
  const place = (k: string) => {
    ctx.cache.linkSnapshot(ctx.commit, meta.path, k);
    if (dest) ctx.cache.materialize(k, dest);
    return fs.statSync(dest ?? pointer).size;
  };
  if (key !== undefined && ctx.cache.has(key, meta.size)) return { path: meta.path, size: place(key), sha256: expected, fromCache: true };
  // Without an ETag there is no content address: download straight to the destination, uncached.
  const target = dest ?? pointer;
  if (key === undefined) fs.mkdirSync(dirname(target), { recursive: true });
  const partial = key === undefined ? `${target}.incomplete` : ctx.cache.partialPath(key);
  const transfer = { onBytes: ctx.onBytes, attempts: ctx.opts.attempts, retryDelayMs: ctx.opts.retryDelayMs };
  const sha256 = await fetchToFile(ctx.auth, meta, partial, transfer);
  if (expected !== undefined && sha256 !== expected) {
    fs.rmSync(partial, { force: true });
    throw new ChecksumError(`${meta.path}: sha256 mismatch (expected ${expected}, got ${sha256}); the corrupt download was removed, run the command again`);
  }
  if (key === undefined) {
    fs.renameSync(partial, target);
    return { path: meta.path, size: fs.statSync(target).size, sha256, fromCache: false };
  }
  ctx.cache.commit(key);
  return { path: meta.path, size: place(key), sha256, fromCache: false };
}
