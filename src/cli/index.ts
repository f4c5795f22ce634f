/** `itd` command-line entry: dispatches to thin command modules over the library. */
import fs from 'node:fs';
import path from 'node:path';
import { ItdError, exitCodeOf } from '../errors.js';
import { helpText, parseFlags, suggest, UsageError, type CommandSpec } from './args.js';
import { encoderCommands } from './encoder.js';
import { collectCommands } from './collect.js';
import { itdCommands } from './itd.js';
import { benchCommands } from './bench.js';
import { trainCommands } from './train.js';
import { generateSpec } from './generate-run.js';
import { demoCommand } from './demo.js';
import { serveCommand } from './serve.js';
import { downloadSpec } from './download.js';
import { evalImagesSpec } from './eval-images.js';

const COMMANDS: CommandSpec[] = [demoCommand, ...encoderCommands, ...collectCommands, ...trainCommands, ...itdCommands, ...benchCommands, generateSpec(), evalImagesSpec, downloadSpec, serveCommand];

function overview(): string {
  const rows = COMMANDS.map((c) => `  ${c.name.padEnd(18)} ${c.summary}`);
  return `itd — Interpret then Deactivate: SAE-based concept erasure for text-to-image diffusion models\n\n` +
    `Usage: itd <command> [options]   (itd <command> --help for its options; itd --version)\n\nCommands:\n${rows.join('\n')}\n`;
}

/** Finds the longest command name (one or two words) matching argv's start. */
function lookup(argv: string[]): { spec: CommandSpec; rest: string[] } | undefined {
  for (const words of [2, 1]) {
    const name = argv.slice(0, words).join(' ');
    const spec = COMMANDS.find((c) => c.name === name);
    if (spec) return { spec, rest: argv.slice(words) };
  }
  return undefined;
}

/** The package version; package.json sits two levels above both src/cli and dist/cli. */
export function version(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

/** Commands under a group word (`sae`, `eraser`, `bench`). */
function group(word: string | undefined): CommandSpec[] {
  return COMMANDS.filter((c) => word !== undefined && c.name.startsWith(`${word} `));
}

function groupHelp(word: string, specs: CommandSpec[]): string {
  const rows = specs.map((c) => `  ${c.name.padEnd(18)} ${c.summary}`);
  return `Usage: itd ${word} <subcommand> [options]   (itd ${word} <subcommand> --help for its options)\n\nSubcommands:\n${rows.join('\n')}\n`;
}

const isHelp = (a: string | undefined) => a === '--help' || a === '-h';

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === '--version' || argv[0] === '-V') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (argv.length === 0 || isHelp(argv[0]) || argv[0] === 'help') {
    process.stdout.write(overview());
    return 0;
  }
  const found = lookup(argv);
  if (!found) {
    const sub = group(argv[0]);
    if (sub.length > 0 && (argv.length === 1 || isHelp(argv[1]))) {
      (argv.length === 1 ? process.stderr : process.stdout).write(groupHelp(argv[0]!, sub));
      return argv.length === 1 ? 2 : 0;
    }
    const names = sub.length > 0 ? sub.map((c) => c.name) : [...new Set(COMMANDS.map((c) => c.name.split(' ')[0]!))];
    const asked = sub.length > 0 ? argv.slice(0, 2).join(' ') : argv[0]!;
    const near = suggest(asked, names);
    process.stderr.write(`itd: unknown command '${asked}'${near ? ` (did you mean '${near}'?)` : ''}; 'itd --help' lists the commands\n`);
    return 2;
  }
  const { spec, rest } = found;
  if (rest.some(isHelp)) {
    process.stdout.write(helpText(spec));
    return 0;
  }
  try {
    const { flags, positionals } = parseFlags(spec, rest);
    await spec.run(flags, positionals);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`itd ${spec.name}: ${e.message}; 'itd ${spec.name} --help' lists the options\n`);
      return 2;
    }
    const msg = e instanceof ItdError ? e.describe() : (e as Error).message;
    process.stderr.write(`itd ${spec.name}: error: ${msg}\n`);
    if (process.env['ITD_DEBUG']) process.stderr.write(`${(e as Error).stack}\n`);
    return e instanceof ItdError ? exitCodeOf(e.code) : 1;
  }
}
