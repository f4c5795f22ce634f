// Builds the package into dist/: tsc (ESM JS + .d.ts), the web playground bundled once with esbuild
// (so the server needs no bundler at run time), its static files, and an executable CLI entry.
// Plain JS so that `npm ci` / `npm pack` can run it from `prepare` without tsx.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const dist = path.join(root, 'dist');
const require = createRequire(import.meta.url);

let tscBin;
try {
  tscBin = require.resolve('typescript/bin/tsc');
} catch {
  // `npm ci --omit=dev` in a checkout (a production image built from a checkout): no compiler.
  if (fs.existsSync(path.join(dist, 'cli', 'bin.js'))) {
    console.error('itd: typescript is not installed (--omit=dev); keeping the dist/ built before');
    process.exit(0);
  }
  console.error('itd: cannot build dist/: typescript is not installed (--omit=dev); run `npm run build` with the dev dependencies first, or install the package from `npm pack`');
  process.exit(1);
}
fs.rmSync(dist, { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [tscBin, '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

const { build } = await import('esbuild');
// TypeBox is hundreds of ES modules; loaded one by one they would double the CLI's cold start. Bundle the
// parts itd uses into dist/io/typebox.js (the .d.ts keeps referring to the @sinclair/typebox package).
const typebox = path.join(dist, 'io', 'typebox.js');
let typeboxDir = path.dirname(require.resolve('@sinclair/typebox')); // its exports hide package.json: walk up to it
while (!fs.existsSync(path.join(typeboxDir, 'license')) && path.dirname(typeboxDir) !== typeboxDir) typeboxDir = path.dirname(typeboxDir);
const typeboxLicense = fs.readFileSync(path.join(typeboxDir, 'license'), 'utf8');
await build({
  entryPoints: [typebox], bundle: true, outfile: typebox, allowOverwrite: true, format: 'esm', platform: 'node', target: 'node20', minify: true, logLevel: 'warning',
  banner: { js: `/*! Bundled from @sinclair/typebox (https://github.com/sinclairzx81/typebox):\n${typeboxLicense.replaceAll('*/', '* /')}*/` },
});
const web = path.join(root, 'src', 'web');
await build({ entryPoints: [path.join(web, 'app.ts')], bundle: true, outfile: path.join(dist, 'web', 'assets', 'app.js'), format: 'esm', target: 'es2020', minify: true, logLevel: 'warning' });
for (const f of ['index.html', 'style.css']) fs.copyFileSync(path.join(web, f), path.join(dist, 'web', f));
fs.chmodSync(path.join(dist, 'cli', 'bin.js'), 0o755);
