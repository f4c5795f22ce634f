/** Bundles the playground (app.ts and its imports) with esbuild once per process; everything is served from memory. */
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';

export interface WebAsset {
  type: string;
  body: Buffer;
}

const DIR = import.meta.dirname;
let cached: Promise<Map<string, WebAsset>> | undefined;

/** URL path -> asset. */
export function webAssets(): Promise<Map<string, WebAsset>> {
  return (cached ??= bundle());
}

async function bundle(): Promise<Map<string, WebAsset>> {
  const js = await build({ entryPoints: [path.join(DIR, 'app.ts')], bundle: true, write: false, format: 'esm', target: 'es2020', minify: true, logLevel: 'silent' });
  const file = (name: string) => fs.readFileSync(path.join(DIR, name));
  return new Map([
    ['/', { type: 'text/html; charset=utf-8', body: file('index.html') }],
    ['/assets/app.js', { type: 'text/javascript; charset=utf-8', body: Buffer.from(js.outputFiles[0]!.contents) }],
    ['/assets/style.css', { type: 'text/css; charset=utf-8', body: file('style.css') }],
  ]);
}
