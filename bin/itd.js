#!/usr/bin/env node
// Entry point for `npx itd`: registers tsx so the TypeScript sources run without a build step.
import { register } from 'tsx/esm/api';

register();
// `itd ... | head` closes stdout early: stop quietly instead of crashing on EPIPE.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
const { main } = await import('../src/cli/index.ts');
process.exitCode = await main(process.argv.slice(2));
