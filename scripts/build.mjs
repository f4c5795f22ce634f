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

fs.rmSync(dist, { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

const { build } = await import('esbuild');
const web = path.join(root, 'src', 'web');
await build({ entryPoints: [path.join(web, 'app.ts')], bundle: true, outfile: path.join(dist, 'web', 'assets', 'app.js'), format: 'esm', target: 'es2020', minify: true, logLevel: 'warning' });
for (const f of ['index.html', 'style.css']) fs.copyFileSync(path.join(web, f), path.join(dist, 'web', f));
fs.chmodSync(path.join(dist, 'cli', 'bin.js'), 0o755);
