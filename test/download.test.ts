// `itd download` against a mock hub served by this test on 127.0.0.1 (no network).
import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { downloadCommand } from '../src/cli/download.js';
import { BlobCache, cachedModelDir, ChecksumError, downloadRepo, HubError, selectFiles } from '../src/download/index.js';
import { loadTextModel } from '../src/encoder/index.js';
import { ItdError } from '../src/errors.js';
import { tinyModel } from './helpers.js';

process.env.ITD_QUIET = '1';
delete process.env.HF_TOKEN;
delete process.env.HF_ENDPOINT;

interface MockFile {
  content: Buffer;
  lfs: boolean;
  /** The first storage GET sends half the bytes, then drops the connection. */
  cutOnce?: boolean;
  /** Storage serves other bytes than the announced sha256. */
  corrupt?: boolean;
  /** Storage answers Range requests with the whole file (200), as some mirrors do. */
  ignoreRange?: boolean;
}

interface MockRepo {
  sha: string;
  files: Record<string, MockFile>;
  token?: string;
}

interface Logged {
  method: string;
  path: string;
  range?: string;
  auth?: string;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitBlobId = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

class MockHub {
  readonly log: Logged[] = [];
  readonly repos = new Map<string, MockRepo>();
  private readonly cut = new Set<string>();
  private servers: Server[] = [];
  url = '';
  /** LFS storage, on another origin like a real CDN. */
  cdnUrl = '';

  async start(): Promise<void> {
    [this.url, this.cdnUrl] = await Promise.all([this.listen(), this.listen()]);
  }

  private async listen(): Promise<string> {
    const server = createServer((req, res) => this.handle(req, res));
    this.servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const s of this.servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }

  /** Requests that transferred file bytes (GET on resolve or storage URLs). */
  gets(): Logged[] {
    return this.log.filter((l) => l.method === 'GET' && !l.path.startsWith('/api/'));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = decodeURIComponent(new URL(req.url!, this.url).pathname);
    this.log.push({ method: req.method!, path, range: req.headers.range, auth: req.headers.authorization });
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(path);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(path);
    if (api) return this.listing(req, res, api[1]!);
    if (resolve) return this.resolve(req, res, resolve[1]!, resolve[3]!);
    if (cdn) return this.storage(req, res, cdn[1]!);
    res.writeHead(404).end();
  }

  /** Applies the repo's access rule; answers the request itself when it fails. */
  private admit(req: IncomingMessage, res: ServerResponse, name: string): MockRepo | undefined {
    const repo = this.repos.get(name);
    if (!repo) {
      res.writeHead(404, { 'X-Error-Code': 'RepoNotFound' }).end();
      return undefined;
    }
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) {
      res.writeHead(401, { 'X-Error-Code': 'GatedRepo' }).end();
      return undefined;
    }
    return repo;
  }

  private listing(req: IncomingMessage, res: ServerResponse, name: string): void {
    const repo = this.admit(req, res, name);
    if (!repo) return;
    const body = JSON.stringify({ id: name, sha: repo.sha, siblings: Object.keys(repo.files).map((rfilename) => ({ rfilename })) });
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
  }

  private resolve(req: IncomingMessage, res: ServerResponse, name: string, file: string): void {
    const repo = this.admit(req, res, name);
    if (!repo) return;
    const f = repo.files[file];
    if (!f) {
      res.writeHead(404, { 'X-Error-Code': 'EntryNotFound' }).end();
      return;
    }
    if (f.lfs) {
      res.writeHead(302, {
        Location: `${this.cdnUrl}/cdn/${sha256(f.content)}`,
        'X-Repo-Commit': repo.sha,
        'X-Linked-Etag': `"${sha256(f.content)}"`,
        'X-Linked-Size': String(f.content.length),
        ETag: '"not-the-content-hash"',
      });
      res.end();
      return;
    }
    this.serveBytes(req, res, f.content, { 'X-Repo-Commit': repo.sha, ETag: `"${gitBlobId(f.content)}"` });
  }

  private storage(req: IncomingMessage, res: ServerResponse, sha: string): void {
    const f = [...this.repos.values()].flatMap((r) => Object.values(r.files)).find((x) => sha256(x.content) === sha);
    if (!f) {
      res.writeHead(404).end();
      return;
    }
    const bytes = f.corrupt ? Buffer.from(f.content).fill(0x55, 0, 16) : f.content;
    if (f.cutOnce && !this.cut.has(sha) && req.method === 'GET') {
      this.cut.add(sha);
      res.writeHead(200, { 'Content-Length': String(bytes.length) });
      res.write(bytes.subarray(0, bytes.length >> 1), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    this.serveBytes(req, res, bytes, {}, f.ignoreRange);
  }

  private serveBytes(req: IncomingMessage, res: ServerResponse, bytes: Buffer, headers: Record<string, string>, ignoreRange = false): void {
    const m = ignoreRange ? null : /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    if (start >= bytes.length && m) {
      res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` }).end();
      return;
    }
    const body = bytes.subarray(start);
    const range = m ? { 'Content-Range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` } : {};
    res.writeHead(m ? 206 : 200, { ...headers, ...range, 'Content-Length': String(body.length), 'Accept-Ranges': 'bytes' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

const hub = new MockHub();
const SHA = 'a'.repeat(40);
const files: Record<string, MockFile> = {
  'model_index.json': { content: Buffer.from('{"_class_name":"StableDiffusionPipeline"}'), lfs: false },
  'README.md': { content: Buffer.from('# model\n'), lfs: false },
  'unet/config.json': { content: Buffer.from('{"sample_size":64}'), lfs: false },
  'unet/diffusion_pytorch_model.safetensors': { content: randomBytes(300_000), lfs: true, cutOnce: true },
  'unet/diffusion_pytorch_model.bin': { content: randomBytes(1000), lfs: true },
  'text_encoder/model.safetensors': { content: randomBytes(50_000), lfs: true },
  'tokenizer/vocab.json': { content: Buffer.from('{"a":0}'), lfs: false },
  'vae_decoder/model.onnx': { content: randomBytes(2000), lfs: true },
};
let work: string;

before(async () => {
  await hub.start();
  hub.repos.set('org/sd', { sha: SHA, files });
  hub.repos.set('org/gated', {
    sha: 'b'.repeat(40),
    files: { 'model_index.json': files['model_index.json']!, 'unet/w.safetensors': { content: randomBytes(3000), lfs: true } },
    token: 'secret',
  });
  hub.repos.set('org/broken', {
    sha: 'c'.repeat(40),
    files: { 'model_index.json': files['model_index.json']!, 'unet/w.safetensors': { content: randomBytes(5000), lfs: true, corrupt: true } },
  });
});
after(() => hub.stop());
beforeEach(() => {
  work = fs.mkdtempSync(join(tmpdir(), 'itd-dl-'));
  hub.log.length = 0;
});
afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

const opts = (extra: Partial<Parameters<typeof downloadRepo>[0]> = {}) => ({
  repo: 'org/sd',
  out: join(work, 'out'),
  endpoint: hub.url,
  token: '',
  cacheDir: join(work, 'cache'),
  retryDelayMs: 5,
  ...extra,
});

function assertSame(out: string, paths: string[]): void {
  for (const p of paths) assert.ok(fs.readFileSync(join(out, p)).equals(files[p]!.content), `${p} differs`);
}

test('selectFiles: include picks top-level folders plus model_index.json; legacy weights dropped beside safetensors', () => {
  const all = Object.keys(files);
  assert.deepEqual(selectFiles(all), all.filter((f) => f !== 'unet/diffusion_pytorch_model.bin'));
  assert.deepEqual(selectFiles(all, ['unet', 'tokenizer/']), [
    'model_index.json',
    'unet/config.json',
    'unet/diffusion_pytorch_model.safetensors',
    'tokenizer/vocab.json',
  ]);
  // A folder with only pickled weights keeps them.
  assert.deepEqual(selectFiles(['a/w.bin', 'b/w.bin', 'b/w.safetensors', 'c.ckpt']), ['a/w.bin', 'b/w.safetensors', 'c.ckpt']);
});

test('downloads the included folders, following the storage redirect and resuming a cut transfer', async () => {
  const r = await downloadRepo(opts({ include: ['unet', 'tokenizer'] }));
  const want = ['model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'tokenizer/vocab.json'];
  assert.equal(r.commit, SHA);
  assert.deepEqual(r.files.map((f) => f.path), want);
  assertSame(r.out, want);
  assert.ok(!fs.existsSync(join(r.out, 'unet/diffusion_pytorch_model.bin')));
  assert.ok(!fs.existsSync(join(r.out, 'text_encoder')));
  const big = files['unet/diffusion_pytorch_model.safetensors']!.content;
  assert.equal(r.files[2]!.sha256, sha256(big));
  // Files are fetched at the listed commit, not at the moving branch name.
  assert.ok(hub.log.filter((l) => l.path.includes('/resolve/')).every((l) => l.path.includes(`/resolve/${SHA}/`)));
  const cdn = hub.gets().filter((l) => l.path === `/cdn/${sha256(big)}`);
  assert.equal(cdn.length, 2, 'one cut transfer, one resumed');
  assert.equal(cdn[0]!.range, undefined);
  assert.match(cdn[1]!.range ?? '', /^bytes=[1-9]\d*-$/);
  assert.deepEqual(fs.readdirSync(join(work, 'cache', 'models--org--sd', 'blobs')).filter((f) => f.endsWith('.incomplete')), []);
});

test('a second download of the same files is served from the cache without any GET', async () => {
  await downloadRepo(opts({ include: ['text_encoder', 'tokenizer'] }));
  hub.log.length = 0;
  const r = await downloadRepo(opts({ include: ['text_encoder', 'tokenizer'], out: join(work, 'again') }));
  assert.deepEqual(hub.gets(), []);
  assert.ok(r.files.every((f) => f.fromCache));
  assertSame(r.out, ['model_index.json', 'text_encoder/model.safetensors', 'tokenizer/vocab.json']);
});

test('continues a partial file left by an earlier run with a Range request', async () => {
  const content = files['text_encoder/model.safetensors']!.content;
  const cache = new BlobCache(join(work, 'cache'), 'org/sd');
  fs.writeFileSync(cache.partialPath(sha256(content)), content.subarray(0, 12_345));
  const r = await downloadRepo(opts({ include: ['text_encoder'] }));
  assertSame(r.out, ['text_encoder/model.safetensors']);
  const cdn = hub.gets().filter((l) => l.path.startsWith('/cdn/'));
  assert.deepEqual(cdn.map((l) => l.range), ['bytes=12345-']);
});

test('a storage host that ignores Range: the transfer restarts from zero and still verifies', async () => {
  const content = randomBytes(40_000);
  hub.repos.set('org/norange', { sha: 'd'.repeat(40), files: { 'unet/w.safetensors': { content, lfs: true, cutOnce: true, ignoreRange: true } } });
  const r = await downloadRepo(opts({ repo: 'org/norange' }));
  assert.ok(fs.readFileSync(join(r.out, 'unet/w.safetensors')).equals(content));
  assert.equal(r.files[0]!.sha256, sha256(content));
  assert.equal(hub.gets().filter((l) => l.path.startsWith('/cdn/')).length, 2);
});

test('checksum mismatch: error, corrupt download removed, nothing cached', async () => {
  await assert.rejects(downloadRepo(opts({ repo: 'org/broken' })), (e: unknown) => {
    assert.ok(e instanceof ChecksumError);
    assert.match(e.message, /unet\/w\.safetensors: sha256 mismatch/);
    return true;
  });
  const blobs = fs.readdirSync(join(work, 'cache', 'models--org--broken', 'blobs'));
  const bad = sha256(hub.repos.get('org/broken')!.files['unet/w.safetensors']!.content);
  assert.ok(!blobs.some((b) => b.startsWith(bad)), `left ${blobs.join(', ')}`);
  assert.ok(!fs.existsSync(join(work, 'out', 'unet', 'w.safetensors')));
});

test('gated repo: 401 tells the user to set HF_TOKEN; the token works and never reaches the storage host', async () => {
  await assert.rejects(downloadRepo(opts({ repo: 'org/gated' })), (e: unknown) => {
    assert.ok(e instanceof HubError);
    assert.equal(e.status, 401);
    assert.match(e.message, /gated/);
    assert.match(e.message, /set HF_TOKEN/);
    return true;
  });
  const r = await downloadRepo(opts({ repo: 'org/gated', token: 'secret' }));
  assert.deepEqual(r.files.map((f) => f.path), ['model_index.json', 'unet/w.safetensors']);
  assert.ok(hub.log.some((l) => l.path.includes('/resolve/') && l.auth === 'Bearer secret'));
  const storage = hub.log.filter((l) => l.path.startsWith('/cdn/'));
  assert.equal(storage.length, 1);
  assert.equal(storage[0]!.auth, undefined);
});

test('unknown repo: 404 error naming the repo', async () => {
  await assert.rejects(downloadRepo(opts({ repo: 'org/nope' })), /org\/nope@main: repo or revision not found \(HTTP 404, RepoNotFound\)/);
});

test('unreachable hub: error names the host', async () => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise((r) => closed.close(r));
  await assert.rejects(downloadRepo(opts({ endpoint: url })), new RegExp(`org/sd@main: cannot reach ${url}: ECONNREFUSED`));
});

test('downloadCommand: comma-separated --include, --endpoint and --cache flags', async () => {
  const out = join(work, 'cli');
  const write = process.stdout.write;
  let printed = '';
  // Keep forwarding the test reporter's own output, which shares this stream.
  process.stdout.write = ((s: string, ...rest: never[]) =>
    typeof s === 'string' && s.startsWith('org/sd@') ? ((printed += s), true) : write.call(process.stdout, s, ...rest)) as typeof write;
  try {
    await downloadCommand({ positional: ['org/sd'], include: 'vae_decoder, tokenizer', out, endpoint: hub.url, cache: join(work, 'cache') });
  } finally {
    process.stdout.write = write;
  }
  assertSame(out, ['model_index.json', 'vae_decoder/model.onnx', 'tokenizer/vocab.json']);
  assert.match(printed, new RegExp(`org/sd@${SHA}: 3 files`));
  await assert.rejects(downloadCommand({ positional: [], out }), /REPO_ID/);
});

/** vocab.json is a plain git file: its ETag (and blob name) is its git blob id. */
const tokenizerEtag = () => (files['tokenizer/vocab.json']!.lfs ? sha256 : gitBlobId)(files['tokenizer/vocab.json']!.content);

test('the Hugging Face cache layout: blobs, snapshots/<commit> symlinks, refs/main; a repo id then resolves offline', async () => {
  const cacheDir = join(work, 'cache');
  const r = await downloadRepo({ ...opts({ include: ['tokenizer'] }), out: undefined });
  const repoDir = join(cacheDir, 'models--org--sd');
  assert.equal(r.out, join(repoDir, 'snapshots', SHA));
  assert.equal(fs.readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), SHA);
  const link = join(r.out, 'tokenizer', 'vocab.json');
  assert.ok(fs.lstatSync(link).isSymbolicLink());
  assert.equal(fs.readlinkSync(link), join('..', '..', '..', 'blobs', tokenizerEtag()));
  assertSame(r.out, ['model_index.json', 'tokenizer/vocab.json']);
  assert.equal(cachedModelDir('org/sd', cacheDir), r.out);
  assert.equal(cachedModelDir(`org/sd@${SHA}`, cacheDir), r.out);
  assert.equal(cachedModelDir('org/sd@v2', cacheDir), undefined);
  assert.equal(cachedModelDir('org/other', cacheDir), undefined);
});

test('--model org/name[@rev] loads a snapshot that another tool left in HF_HUB_CACHE, without the network', async (t) => {
  // The layout huggingface_hub writes, built by hand: blobs named by sha256, relative symlinks, a ref.
  const cacheDir = join(work, 'hub');
  const repoDir = join(cacheDir, 'models--someone--tiny-sd');
  const commit = 'c'.repeat(40);
  const src = tinyModel();
  for (const file of fs.readdirSync(src, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())) {
    const rel = join(file.parentPath, file.name).slice(src.length + 1);
    const bytes = fs.readFileSync(join(src, rel));
    const blob = join(repoDir, 'blobs', sha256(bytes));
    fs.mkdirSync(dirname(blob), { recursive: true });
    fs.writeFileSync(blob, bytes);
    const pointer = join(repoDir, 'snapshots', commit, rel);
    fs.mkdirSync(dirname(pointer), { recursive: true });
    fs.symlinkSync(relative(dirname(pointer), blob), pointer);
  }
  fs.mkdirSync(join(repoDir, 'refs'));
  fs.writeFileSync(join(repoDir, 'refs', 'main'), commit);
  const before = process.env.HF_HUB_CACHE;
  process.env.HF_HUB_CACHE = cacheDir;
  t.after(() => (before === undefined ? delete process.env.HF_HUB_CACHE : (process.env.HF_HUB_CACHE = before)));
  const want = await loadTextModel(src);
  for (const spec of ['someone/tiny-sd', 'someone/tiny-sd@main', `someone/tiny-sd@${commit}`]) {
    const m = await loadTextModel(spec);
    assert.equal(m.dir, join(repoDir, 'snapshots', commit));
    assert.equal(m.id, want.id);
  }
  await assert.rejects(loadTextModel('someone/absent'), (e: unknown) => e instanceof ItdError && e.code === 'not_found' && /hub cache/.test(e.message) && /itd download someone\/absent/.test(e.hint ?? ''));
});
