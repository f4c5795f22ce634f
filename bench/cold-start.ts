/**
 * bench:cold-start — wall time of `itd --help` and `itd --version` from the compiled package
 * (node dist/cli/bin.js, no tsx), each run a fresh process, against `node -e 0` measured in the
 * same interleaved rounds (target: --help <= 0.6 s). Needs `npm run build` first.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { machine, table } from './common.js';

const bin = path.join(import.meta.dirname, '..', 'dist', 'cli', 'bin.js');
if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run npm run build first`);
const runs = Number(process.env['ITD_BENCH_RUNS'] ?? 10);
const cases: [string, string[]][] = [['node -e 0', ['-e', '0']], ['itd --help', [bin, '--help']], ['itd --version', [bin, '--version']]];

const times = new Map<string, number[]>(cases.map(([name]) => [name, []]));
for (let i = 0; i < runs; i++) {
  for (const [name, args] of cases) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, args, { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`${name} exited ${r.status}`);
    times.get(name)!.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const base = median(times.get('node -e 0')!);
console.log(`${machine()}; ${runs} interleaved runs each`);
console.log(table([['command', 'median ms', 'min ms', 'max ms', 'x node -e 0'], ...cases.map(([name]) => {
  const xs = times.get(name)!;
  return [name, median(xs), Math.min(...xs), Math.max(...xs), median(xs) / base];
})]));
