/** Flag parsing shared by every subcommand (node:util parseArgs, strict: unknown flags are errors). */
import { parseArgs } from 'node:util';

export type Flags = Record<string, string | boolean | string[] | undefined>;

export interface FlagSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
  default?: string | boolean;
  help: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  flags: Record<string, FlagSpec>;
  run(flags: Flags, positionals: string[]): Promise<void>;
}

export class UsageError extends Error {}

/** Every command that decides with an eraser (encode, classify, serve) takes this. */
export const NO_CANONICAL_FLAG = {
  'no-canonical': { type: 'boolean', help: 'score only the prompt as typed, not also its canonical form (disguise defence off)' },
} as const;

export function parseFlags(spec: CommandSpec, argv: string[]): { flags: Flags; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const [name, f] of Object.entries(spec.flags)) {
    options[name] = { type: f.type, ...(f.multiple ? { multiple: true } : {}), ...(f.short ? { short: f.short } : {}) };
  }
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    const flags: Flags = {};
    for (const [name, f] of Object.entries(spec.flags)) flags[name] = (values as Flags)[name] ?? f.default;
    return { flags, positionals };
  } catch (e) {
    throw new UsageError(`${spec.name}: ${(e as Error).message}`);
  }
}

export function helpText(spec: CommandSpec): string {
  const rows = Object.entries(spec.flags).map(([name, f]) => {
    const flag = `--${name}${f.type === 'string' ? ' <value>' : ''}`;
    const dflt = f.default !== undefined && f.default !== false ? ` (default: ${String(f.default)})` : '';
    return `  ${flag.padEnd(28)} ${f.help}${f.multiple ? ' (repeatable)' : ''}${dflt}`;
  });
  return `${spec.summary}\n\nUsage: itd ${spec.usage}\n\nOptions:\n${rows.join('\n')}\n`;
}

/** Typed accessors that turn missing/invalid flags into usage errors naming the flag. */
export function str(flags: Flags, name: string): string {
  const v = flags[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`missing required --${name}`);
  return v;
}

export function optStr(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function list(flags: Flags, name: string): string[] {
  const v = flags[name];
  if (v === undefined || typeof v === 'boolean') return [];
  return Array.isArray(v) ? v : [v];
}

export function int(flags: Flags, name: string, min = 0): number {
  const raw = str(flags, name);
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) throw new UsageError(`--${name} must be an integer >= ${min}, got '${raw}'`);
  return v;
}

export function num(flags: Flags, name: string): number {
  const raw = str(flags, name);
  const v = Number(raw);
  if (!Number.isFinite(v)) throw new UsageError(`--${name} must be a finite number, got '${raw}'`);
  return v;
}

export function bool(flags: Flags, name: string): boolean {
  return flags[name] === true;
}
