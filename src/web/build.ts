/**
 * The playground's assets, read once per process and served from memory. From dist/ the bundle
 * that `npm run build` wrote is read; from the sources (tsx, development) app.ts is bundled with
 * esbuild, a devDependency, so edits show up without a build.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface WebAsset {
  type: string;
  body: Buffer;
}

const DIR = import.meta.dirname;
const BUNDLE = path.join(DIR, 'assets', 'app.js');
let cached: Promise<Map<string, WebAsset>> | undefined;

/** URL path -> asset. */
export function webAssets(): Promise<Map<string, WebAsset>> {
  return (cached ??= load());
}

async function appJs(): Promise<Buffer> {
  if (fs.existsSync(BUNDLE)) return fs.readFileSync(BUNDLE);
  const { build } = await import('esbuild');
  const js = await build({ entryPoints: [path.join(DIR, 'app.ts')], bundle: true, write: false, format: 'esm', target: 'es2020', minify: true, logLevel: 'silent' });
  return Buffer.from(js.outputFiles[0]!.contents);
}

async function load(): Promise<Map<string, WebAsset>> {
  const file = (name: string) => fs.readFileSync(path.join(DIR, name));
  return new Map([
    ['/', { type: 'text/html; charset=utf-8', body: file('index.html') }],
    ['/assets/app.js', { type: 'text/javascript; charset=utf-8', body: await appJs() }],
    ['/assets/style.css', { type: 'text/css; charset=utf-8', body: file('style.css') }],
  ]);
}
