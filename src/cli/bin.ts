#!/usr/bin/env node
// The `itd` executable (package.json "bin" runs its compiled form, dist/cli/bin.js).
import { main } from './index.js';

// `itd ... | head` closes stdout early: stop quietly instead of crashing on EPIPE.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
process.exitCode = await main(process.argv.slice(2));
