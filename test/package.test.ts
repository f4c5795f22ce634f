// The published package as a user gets it: `npm pack`, install the tarball into a fresh project
// (from the local npm cache, no optional dependencies), then use it there with plain node (ESM and
// CommonJS), type-check a consumer under --strict, and run the CLI. Skipped only when npm cannot pack.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { REPO_ROOT, tmpDir } from './helpers.js';

const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string; devDependencies: Record<string, string> };
const quiet = { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' };

function run(cmd: string, args: string[], cwd: string): { code: number; out: string; err: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: quiet, timeout: 120_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** The README's library example (the ```js block after its "tested by test/package.test.ts" marker). */
function readmeExample(): string {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const m = /<!-- tested by test\/package\.test\.ts -->\s*```js\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README.md has a library example marked for this test');
  return m[1]!;
}

test('npm pack -> install into a fresh project -> ESM, CommonJS, strict types, npx itd', { timeout: 240_000 }, async (t) => {
  const work = tmpDir('itd-pack-');
  const pack = run('npm', ['pack', '--silent', '--pack-destination', work], REPO_ROOT);
  if (pack.code !== 0 && /not found|ENOENT/.test(pack.err)) return t.skip(`npm pack is not possible here: ${pack.err.trim()}`);
  assert.equal(pack.code, 0, pack.err);
  const tarball = path.join(work, pack.out.trim().split('\n').pop()!);
  const files = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n');
  for (const f of ['package/dist/index.js', 'package/dist/index.d.ts', 'package/dist/cli/bin.js', 'package/dist/web/assets/app.js', 'package/dist/web/index.html', 'package/src/native/binding.gyp']) {
    assert.ok(files.includes(f), `${f} is in the tarball`);
  }
  assert.ok(!files.some((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), 'no TypeScript sources are shipped');

  const app = path.join(work, 'app');
  fs.mkdirSync(app);
  // The consumer setup the README gives: itd's install script (node-gyp, the C kernels) approved,
  // onnxruntime-node's (a CUDA download) denied, fastify's cookie held at a Node 20 version.
  const consumer = { name: 'app', private: true, type: 'module', allowScripts: { [`file:${tarball}`]: true, 'onnxruntime-node': false }, overrides: { cookie: '1.1.1' } };
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify(consumer));
  fs.copyFileSync(path.join(REPO_ROOT, '.npmrc'), path.join(app, '.npmrc'));
  const types = `@types/node@${pkg.devDependencies['@types/node']}`;
  const install = run('npm', ['i', '--prefer-offline', '--omit=optional', '--no-audit', '--no-fund', tarball, types], app);
  assert.equal(install.code, 0, install.err);
  assert.doesNotMatch(install.err, /npm warn/i, 'installing itd prints no npm warning');
  // itd's install step removed the other platforms' native binaries (scripts/prune-binaries.mjs).
  assert.deepEqual(fs.readdirSync(path.join(app, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6')), [process.platform]);
  assert.ok(fs.readdirSync(path.join(app, 'node_modules', 'tokenizers')).filter((f) => f.endsWith('.node')).every((f) => f.startsWith(`tokenizers.${process.platform}-`)));

  // ESM with plain node: the core library, and the README example exactly as written.
  fs.writeFileSync(path.join(app, 'example.mjs'), readmeExample());
  const esm = run(process.execPath, ['example.mjs'], app);
  assert.equal(esm.code, 0, esm.err);
  assert.match(esm.out, /^1 77 64 4928$/m, 'the README example prints n, t, d and the embedding size');

  // CommonJS through dynamic import(), and every subpath export loads without the optional packages.
  fs.writeFileSync(path.join(app, 'cjs.cjs'), `(async () => {
  const itd = await import('itd');
  const subs = await Promise.all(['itd/generate', 'itd/serve', 'itd/evaluate', 'itd/train'].map((s) => import(s)));
  console.log(typeof itd.loadTextModel, typeof itd.ConceptEraser, subs.map((m) => Object.keys(m).length > 0).join(','));
  console.log('kernels', subs[3].defaultKernels().name);
  console.log('tokenizers', typeof require('tokenizers').Tokenizer.fromString);
  await subs[2].NudityClassifier.load().catch((e) => console.log(e.code, e.hint));
})();\n`);
  const cjs = run(process.execPath, ['cjs.cjs'], app);
  assert.equal(cjs.code, 0, cjs.err);
  assert.match(cjs.out, /^function function true,true,true,true$/m);
  assert.match(cjs.out, /^tokenizers function$/m, 'the pruned tokenizers still loads its binding');
  // The C addon node-gyp built inside the installed package is found from dist/ (only asserted
  // where the checkout could build it too, i.e. the machine has a compiler and Node headers).
  const native = fs.existsSync(path.join(REPO_ROOT, 'src', 'native', 'build', 'Release', 'itd_native.node'));
  assert.match(cjs.out, native ? /^kernels native$/m : /^kernels /m);
  assert.match(cjs.out, /^unsupported npm i @tensorflow\/tfjs@/m, 'a missing optional package names its install command');

  // A strict TypeScript consumer type-checks against the shipped .d.ts.
  fs.writeFileSync(path.join(app, 'consumer.ts'), `import { loadTextModel, encodePrompts, ItdError, type PromptEncoding } from 'itd';
import { StableDiffusionPipeline } from 'itd/generate';
export async function embed(dir: string, prompts: string[]): Promise<PromptEncoding> {
  const model = await loadTextModel(dir);
  const e = await encodePrompts(model, prompts);
  const first: number = e.lastHiddenState[0] ?? 0;
  if (Number.isNaN(first)) throw new ItdError('numeric', 'NaN');
  return e;
}
export const pipelineLoader: typeof StableDiffusionPipeline.load = StableDiffusionPipeline.load;
`);
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const check = run(process.execPath, [tsc, '--strict', '--noEmit', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', 'consumer.ts'], app);
  assert.equal(check.code, 0, check.out + check.err);

  // The CLI runs compiled JS from the installed package: --version, then a tiny encode.
  const ver = run('npx', ['--no-install', 'itd', '--version'], app);
  assert.equal(ver.code, 0, ver.err);
  assert.equal(ver.out.trim(), pkg.version);
  assert.equal(ver.err, '', 'npx itd prints nothing on stderr');
  assert.equal(run('npx', ['--no-install', 'itd', 'synth-model', '--out', 'm', '--preset', 'tiny'], app).code, 0);
  const enc = run('npx', ['--no-install', 'itd', 'encode', '--model', 'm', '--prompt', 'a photo of a cat', '--out', 'c.safetensors'], app);
  assert.equal(enc.code, 0, enc.err);
  const st = SafetensorsFile.open(path.join(app, 'c.safetensors'));
  assert.deepEqual(st.info('last_hidden_state').shape, [1, 77, 64]);
});
