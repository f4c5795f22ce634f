/**
 * Minimal Hugging Face hub HTTP client: repo listing, per-file metadata (HEAD on the resolve URL, as
 * huggingface_hub does) and resumable, verified transfers.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
const MAX_RELATIVE_REDIRECTS = 5;

export class HubError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'HubError';
  }
}

/** Downloaded bytes do not match the size or sha256 the hub announced; the partial file was removed. */
export class ChecksumError extends HubError {
  override name = 'ChecksumError';
}

export interface HubAuth {
  endpoint: string;
  token?: string;
}

export interface RepoListing {
  /** The commit the revision resolved to; files are fetched at this commit so a moving branch cannot mix versions. */
  commit: string;
  files: string[];
}

export interface FileMeta {
  path: string;
  /**
   * The hub URL to GET (after renames). LFS files redirect from there to short-lived signed storage
   * URLs, so each try asks the hub afresh; fetch drops the token on that cross-origin redirect.
   */
  url: string;
  /** Unquoted ETag: the sha256 of the content for LFS files, the git blob id otherwise. */
  etag?: string;
  size?: number;
}

export function isSha256(etag: string | undefined): etag is string {
  return etag !== undefined && /^[0-9a-f]{64}$/.test(etag);
}

export function normalizeEtag(raw: string | null): string | undefined {
  if (!raw) return undefined;
  return raw.replace(/^W\//, '').replace(/^"(.*)"$/, '$1') || undefined;
}

function repoPath(repo: string): string {
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repo)) throw new HubError(`invalid repo id '${repo}' (expected owner/name)`);
  return repo;
}

export function resolveUrl(endpoint: string, repo: string, revision: string, path: string): string {
  const file = path.split('/').map(encodeURIComponent).join('/');
  return `${endpoint}/${repoPath(repo)}/resolve/${encodeURIComponent(revision)}/${file}`;
}

function headers(auth: HubAuth, extra: Record<string, string> = {}): Record<string, string> {
  // identity: Content-Length must be the file size, and bytes must land on disk as stored.
  const h: Record<string, string> = { 'user-agent': 'itd', 'accept-encoding': 'identity', ...extra };
  // Every URL fetched here is on the hub; fetch drops the token when redirected to storage elsewhere.
  if (auth.token) h.authorization = `Bearer ${auth.token}`;
  return h;
}

/** Turns a failed hub response into an error that says what to do about it. */
async function failure(res: Response, what: string, auth: HubAuth): Promise<HubError> {
  await res.body?.cancel();
  const code = res.headers.get('x-error-code');
  const tag = `HTTP ${res.status}${code ? `, ${code}` : ''}`;
  if (res.status === 401 || res.status === 403) {
    const hint = auth.token
      ? 'HF_TOKEN is set but grants no access: accept the model terms on its hub page, or use a token of an account that can read it'
      : 'if it exists, set HF_TOKEN to a hub access token (and accept the model terms on its hub page if it is gated)';
    return new HubError(`${what}: access denied (${tag}); the repo is gated, private or does not exist; ${hint}`, res.status);
  }
  if (res.status === 404) {
    const thing = code === 'RevisionNotFound' ? 'revision' : code === 'EntryNotFound' ? 'file' : 'repo or revision';
    return new HubError(`${what}: ${thing} not found (${tag})`, res.status);
  }
  const message = res.headers.get('x-error-message');
  return new HubError(`${what}: ${tag} ${res.statusText}${message ? `: ${message}` : ''}`, res.status);
}

/** fetch, with network failures (refused, DNS, TLS) turned into errors that name the host. */
async function request(url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw new HubError(`${what}: cannot reach ${new URL(url).origin}: ${causeOf(e)}`);
  }
}

function causeOf(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (e as Error).message;
}

export async function listRepo(auth: HubAuth, repo: string, revision: string): Promise<RepoListing> {
  const url = `${auth.endpoint}/api/models/${repoPath(repo)}/revision/${encodeURIComponent(revision)}`;
  const res = await request(url, { headers: headers(auth) }, `${repo}@${revision}`);
  if (!res.ok) throw await failure(res, `${repo}@${revision}`, auth);
  const body = (await res.json()) as { sha?: unknown; siblings?: unknown };
  const siblings = Array.isArray(body.siblings) ? (body.siblings as { rfilename?: unknown }[]) : undefined;
  if (typeof body.sha !== 'string' || !siblings || siblings.some((s) => typeof s?.rfilename !== 'string')) {
    throw new HubError(`${repo}@${revision}: unexpected listing from ${url} (no sha/siblings)`);
  }
  return { commit: body.sha, files: siblings.map((s) => s.rfilename as string) };
}

function isRelative(location: string): boolean {
  return !/^([a-z][a-z0-9+.-]*:)?\/\//i.test(location);
}

/** HEAD without following storage redirects: their response carries the LFS sha256 and size. */
export async function fileMeta(auth: HubAuth, repo: string, revision: string, path: string): Promise<FileMeta> {
  let url = resolveUrl(auth.endpoint, repo, revision, path);
  for (let hop = 0; hop <= MAX_RELATIVE_REDIRECTS; hop++) {
    const res = await request(url, { method: 'HEAD', redirect: 'manual', headers: headers(auth) }, `${repo}/${path}`);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      // Relative redirects are hub-side renames: follow them; absolute ones point at the storage.
      if (isRelative(location)) {
        url = new URL(location, url).href;
        continue;
      }
      return metaFrom(res, path, url);
    }
    if (!res.ok) throw await failure(res, `${repo}/${path}`, auth);
    return metaFrom(res, path, url);
  }
  throw new HubError(`${repo}/${path}: more than ${MAX_RELATIVE_REDIRECTS} redirects`);
}

function metaFrom(res: Response, path: string, url: string): FileMeta {
  const h = res.headers;
  const size = Number(h.get('x-linked-size') ?? h.get('content-length') ?? NaN);
  return {
    path,
    url,
    etag: normalizeEtag(h.get('x-linked-etag') ?? h.get('etag')),
    size: Number.isSafeInteger(size) && size >= 0 ? size : undefined,
  };
}

export interface TransferOptions {
  /** Called with each chunk's length as it is written. */
  onBytes?: (n: number) => void;
  /** Tries in all, each resuming where the previous one stopped (default 5). */
  attempts?: number;
  /** Back-off before try k is k times this (default 1000 ms). */
  retryDelayMs?: number;
}

interface PartialState {
  have: number;
  hash: Hash;
}

/** Hashes what an earlier run left in `partial`, so the digest covers the whole file without a second pass. */
async function openPartial(partial: string, size: number | undefined): Promise<PartialState> {
  const have = await fsp.stat(partial).then((s) => s.size, () => 0);
  if (have === 0 || (size !== undefined && have > size)) {
    await fsp.writeFile(partial, new Uint8Array());
    return { have: 0, hash: createHash('sha256') };
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(partial)) hash.update(chunk as Buffer);
  return { have, hash };
}

/**
 * Downloads `file` into `partial`, continuing an existing partial file with Range requests and
 * retrying broken transfers. Verifies the size; returns the sha256 (hex) of the complete file.
 */
export async function fetchToFile(auth: HubAuth, file: FileMeta, partial: string, opts: TransferOptions = {}): Promise<string> {
  const attempts = opts.attempts ?? 5;
  const state = await openPartial(partial, file.size);
  for (let attempt = 1; ; attempt++) {
    try {
      await transferOnce(auth, file, partial, state, opts.onBytes);
      if (file.size === undefined || state.have === file.size) return state.hash.digest('hex');
      if (state.have > file.size) {
        await fsp.rm(partial, { force: true });
        throw new ChecksumError(`${file.path}: got ${state.have} bytes, expected ${file.size}; the partial file was removed`);
      }
      throw new HubError(`${file.path}: connection closed after ${state.have} of ${file.size} bytes`);
    } catch (e) {
      if (!isTransient(e) || attempt >= attempts) throw asHubError(e, file.path);
      await new Promise((r) => setTimeout(r, (opts.retryDelayMs ?? 1000) * attempt));
    }
  }
}

async function transferOnce(auth: HubAuth, file: FileMeta, partial: string, state: PartialState, onBytes?: (n: number) => void): Promise<void> {
  const range: Record<string, string> = state.have > 0 ? { range: `bytes=${state.have}-` } : {};
  const res = await request(file.url, { headers: headers(auth, range) }, file.path);
  if (res.status === 416 && state.have === file.size) {
    await res.body?.cancel(); // An earlier run already got every byte.
    return;
  }
  if (!res.ok) throw await failure(res, file.path, auth);
  const start = res.status === 206 ? rangeStart(res.headers.get('content-range')) : 0;
  if (start !== state.have) {
    // The server ignored or misapplied the Range header: start over rather than corrupt the file.
    await fsp.truncate(partial, 0);
    state.have = 0;
    state.hash = createHash('sha256');
    if (start !== 0) {
      await res.body?.cancel();
      throw new HubError(`${file.path}: server answered a range from byte ${start}, asked for ${range.range}`);
    }
  }
  if (!res.body) return;
  const reader = res.body.getReader();
  const fh = await fsp.open(partial, 'a');
  try {
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      await fh.appendFile(r.value);
      state.hash.update(r.value);
      state.have += r.value.length;
      onBytes?.(r.value.length);
    }
  } finally {
    await fh.close();
  }
}

function rangeStart(contentRange: string | null): number {
  const m = /^bytes (\d+)-/.exec(contentRange ?? '');
  return m ? Number(m[1]) : -1;
}

/** Network failures, early closes and server-side errors are worth another (resumed) try. */
function isTransient(e: unknown): boolean {
  if (e instanceof ChecksumError) return false;
  if (e instanceof HubError) return e.status === undefined || e.status >= 500 || e.status === 429;
  return e instanceof TypeError; // a body cut off mid-way ("terminated")
}

function asHubError(e: unknown, path: string): HubError {
  return e instanceof HubError ? e : new HubError(`${path}: download failed: ${(e as Error).message} (${causeOf(e)})`);
}
