// scripts/prune-binaries.mjs (itd's install step) on a fake install tree laid out like
// onnxruntime-node 1.30 and tokenizers 0.23: it runs from node_modules/itd/scripts as npm runs it,
// resolves the hoisted packages from there, and removes only what this machine's loaders never load.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT, tmpDir } from './helpers.js';

const ORT_TARGETS = ['darwin/arm64', 'linux/arm64', 'linux/x64', 'win32/arm64', 'win32/x64'];
const TOK_TARGETS = ['darwin-universal', 'darwin-arm64', 'darwin-x64', 'linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'linux-arm-gnueabihf', 'win32-x64-msvc', 'win32-ia32-msvc', 'android-arm64'];

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

/** A project whose node_modules holds itd (with the script), onnxruntime-node and tokenizers. */
function fakeInstall(): string {
  const nm = path.join(tmpDir('itd-prune-'), 'node_modules');
  write(path.join(nm, 'itd', 'package.json'), JSON.stringify({ name: 'itd' }));
  fs.mkdirSync(path.join(nm, 'itd', 'scripts'));
  fs.copyFileSync(path.join(REPO_ROOT, 'scripts', 'prune-binaries.mjs'), path.join(nm, 'itd', 'scripts', 'prune-binaries.mjs'));
  write(path.join(nm, 'onnxruntime-node', 'package.json'), JSON.stringify({ name: 'onnxruntime-node', main: 'dist/index.js' }));
  write(path.join(nm, 'onnxruntime-node', 'dist', 'index.js'), '');
  for (const t of ORT_TARGETS) {
    write(path.join(nm, 'onnxruntime-node', 'bin', 'napi-v6', t, 'onnxruntime_binding.node'), 'x'.repeat(1000));
    write(path.join(nm, 'onnxruntime-node', 'bin', 'napi-v6', t, 'libonnxruntime.so.1'), 'x'.repeat(1000));
  }
  write(path.join(nm, 'tokenizers', 'package.json'), JSON.stringify({ name: 'tokenizers' }));
  write(path.join(nm, 'tokenizers', 'index.js'), '');
  for (const t of TOK_TARGETS) write(path.join(nm, 'tokenizers', `tokenizers.${t}.node`), 'x');
  return nm;
}

function prune(nm: string, env: Record<string, string> = {}): string {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'ITD_KEEP_ALL_PLATFORMS' && !k.startsWith('npm_config_')));
  const r = spawnSync(process.execPath, [path.join(nm, 'itd', 'scripts', 'prune-binaries.mjs')], { encoding: 'utf8', env: { ...clean, ...env } });
  assert.equal(r.status, 0, 'the install step never fails');
  return r.stderr;
}

const ortLeft = (nm: string) => fs.readdirSync(path.join(nm, 'onnxruntime-node', 'bin', 'napi-v6')).flatMap((os) => fs.readdirSync(path.join(nm, 'onnxruntime-node', 'bin', 'napi-v6', os)).map((c) => `${os}/${c}`));
const tokLeft = (nm: string) => fs.readdirSync(path.join(nm, 'tokenizers')).filter((f) => f.endsWith('.node')).map((f) => f.slice('tokenizers.'.length, -'.node'.length));

test('install step keeps exactly the binaries this platform loads', () => {
  const here = `${process.platform}/${process.arch}`;
  if (!ORT_TARGETS.includes(here)) return; // the fake tree has no binary for this machine (covered below)
  const nm = fakeInstall();
  const err = prune(nm);
  assert.deepEqual(ortLeft(nm), [here]);
  assert.deepEqual(fs.readdirSync(path.join(nm, 'onnxruntime-node', 'bin', 'napi-v6')), [process.platform], 'no empty directories of other systems remain');
  const tok = tokLeft(nm).sort();
  const want = TOK_TARGETS.filter((t) => t.startsWith(`${process.platform}-${process.arch}-`) || t === `${process.platform}-${process.arch}` || (process.platform === 'darwin' && t === 'darwin-universal')).sort();
  assert.ok(want.length > 0);
  assert.deepEqual(tok, want, 'every ABI variant (glibc/musl) of this platform and arch stays');
  const entries = new Set(ORT_TARGETS.map((t) => (t.startsWith(`${process.platform}/`) ? t : t.split('/')[0]!))).size - 1;
  assert.match(err, new RegExp(`onnxruntime-node: removed ${entries} other-platform entries`));
  assert.match(err, new RegExp(`tokenizers: removed ${TOK_TARGETS.length - want.length} other-platform entries`));
  // Files the package loads are untouched; running it again removes nothing more.
  prune(nm);
  assert.deepEqual(ortLeft(nm), [here]);
  assert.deepEqual(tokLeft(nm).sort(), want);
});

test('install step changes nothing when told not to, installing for another platform, or without this machine\'s binary', () => {
  const full = (nm: string) => assert.equal(ortLeft(nm).length + tokLeft(nm).length, ORT_TARGETS.length + TOK_TARGETS.length);
  const other = process.arch === 'arm64' ? 'x64' : 'arm64';
  for (const [env, why] of [
    [{ ITD_KEEP_ALL_PLATFORMS: '1' }, /ITD_KEEP_ALL_PLATFORMS is set/],
    [{ npm_config_cpu: other }, new RegExp(`npm installs for cpu=${other}`)],
    [{ npm_config_os: 'freebsd' }, /npm installs for os=freebsd/],
    [{ npm_config_libc: 'musl' }, /npm installs for libc=musl/],
  ] as const) {
    const nm = fakeInstall();
    assert.match(prune(nm, env), why);
    full(nm);
  }
  // An unknown layout (this machine's binary absent): that package is left whole.
  const nm = fakeInstall();
  fs.rmSync(path.join(nm, 'onnxruntime-node', 'bin', 'napi-v6', process.platform), { recursive: true, force: true });
  const before = ortLeft(nm);
  assert.match(prune(nm), /left onnxruntime-node alone \(no bin\/napi-v6\//);
  assert.deepEqual(ortLeft(nm), before);
  // A package itd cannot resolve: reported, not fatal.
  fs.rmSync(path.join(nm, 'tokenizers'), { recursive: true });
  assert.match(prune(nm), /left tokenizers alone \(Cannot find module/);
});
