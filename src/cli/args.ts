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

/** A command's flags and implementation; its one-line summary lives in src/cli/index.ts's table. */
export interface CommandSpec {
  name: string;
  usage: string;
  flags: Record<string, FlagSpec>;
  run(flags: Flags, positionals: string[]): Promise<void>;
}

export class UsageError extends Error {}

/** Closest candidate within edit distance 2 (or that `word` is a prefix of), for did-you-mean hints. */
export function suggest(word: string, candidates: string[]): string | undefined {
  let best: { c: string; d: number } | undefined;
  for (const c of candidates) {
    const d = c.startsWith(word) ? 1 : editDistance(word, c);
    if (d <= 2 && (!best || d < best.d)) best = { c, d };
  }
  return best?.c;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length]!;
}

/** Positional placeholders of a command: the upper-case words its usage line gives before any option. */
export function positionalNames(spec: CommandSpec): string[] {
  const words = spec.usage.slice(spec.name.length).trim().split(/\s+/);
  const end = words.findIndex((w) => !/^[A-Z][A-Z0-9_]*$/.test(w));
  return end === -1 ? words.filter(Boolean) : words.slice(0, end);
}

/**
 * Checks argv against the spec before node's parseArgs sees it: an unknown option is one line with a
 * did-you-mean, and a dash-led word after a value option is that option's value (`--scale -8`),
 * not a short flag.
 */
function normalize(spec: CommandSpec, argv: string[]): string[] {
  const out: string[] = [];
  const shorts = new Set(Object.values(spec.flags).flatMap((f) => (f.short ? [f.short] : [])));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return [...out, ...argv.slice(i)];
    if (a.startsWith('--')) {
      const name = a.slice(2).split('=')[0]!;
      const f = spec.flags[name];
      if (!f) {
        const near = suggest(name, Object.keys(spec.flags));
        throw new UsageError(`unknown option --${name}${near ? ` (did you mean --${near}?)` : ''}`);
      }
      const next = argv[i + 1];
      if (f.type === 'string' && !a.includes('=') && next !== undefined && next.startsWith('-') && !next.startsWith('--')) {
        out.push(`${a}=${next}`); // `--scale -8`, `--layer -1`: the value, not a short flag
        i++;
        continue;
      }
    } else if (/^-[A-Za-z]/.test(a) && ![...a.slice(1)].every((c) => shorts.has(c))) {
      throw new UsageError(`unknown option ${a}`);
    }
    out.push(a);
  }
  return out;
}

/** Every command that decides with an eraser (encode, classify, serve) takes this. */
export const NO_CANONICAL_FLAG = {
  'no-canonical': { type: 'boolean', help: 'score only the prompt as typed, not also its canonical form (disguise defence off)' },
} as const;

/** How `eraser build` and `bench erase` build an eraser: the official ItD settings by default. */
export const BUILD_FLAGS = {
  'k-sel': { type: 'string', default: '128', help: 'features per prompt (ItD: 128 celebrities/nudity, 256 styles)' },
  scale: { type: 'string', default: '-8', help: 'multiplier of the selected latents (official -8; any real, e.g. 0..1 to dampen)' },
  mode: { type: 'string', default: 'official', help: 'official (replace by the SAE reconstruction) or residual (keep the SAE error)' },
} as const;

export function parseFlags(spec: CommandSpec, argv: string[]): { flags: Flags; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const [name, f] of Object.entries(spec.flags)) {
    options[name] = { type: f.type, ...(f.multiple ? { multiple: true } : {}), ...(f.short ? { short: f.short } : {}) };
  }
  let parsed: { values: Flags; positionals: string[] };
  try {
    parsed = parseArgs({ args: normalize(spec, argv), options, allowPositionals: true, strict: true }) as { values: Flags; positionals: string[] };
  } catch (e) {
    if (e instanceof UsageError) throw e;
    // node's messages end with a hint about '--' that does not apply to itd; keep the first sentence.
    throw new UsageError((e as Error).message.split('. ')[0]!.replace(/\.$/, ''));
  }
  const allowed = positionalNames(spec);
  const stray = parsed.positionals.slice(allowed.length);
  if (stray.length > 0) {
    throw new UsageError(`unexpected argument '${stray[0]}'${allowed.length ? ` (takes ${allowed.join(' ')})` : ' (this command takes options only)'}`);
  }
  const flags: Flags = {};
  for (const [name, f] of Object.entries(spec.flags)) flags[name] = parsed.values[name] ?? f.default;
  return { flags, positionals: parsed.positionals };
}

export function helpText(spec: CommandSpec, summary: string): string {
  const rows = Object.entries(spec.flags).map(([name, f]) => {
    const flag = `--${name}${f.type === 'string' ? ' <value>' : ''}`;
    const dflt = f.default !== undefined && f.default !== false ? ` (default: ${String(f.default)})` : '';
    return `  ${flag.padEnd(28)} ${f.help}${f.multiple ? ' (repeatable)' : ''}${dflt}`;
  });
  return `${summary}\n\nUsage: itd ${spec.usage}\n\nOptions:\n${rows.join('\n')}\n`;
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

/** A block index: 0..L-1, or negative counting from the last block (-1 = layers[L-1]), as Python indexes. */
export function layerIndex(flags: Flags, name: string, numLayers: number): number {
  const raw = str(flags, name);
  const v = Number(raw);
  if (!Number.isInteger(v) || v < -numLayers || v >= numLayers) {
    throw new UsageError(`--${name} must be an integer in ${-numLayers}..${numLayers - 1} (the model has ${numLayers} blocks; negative counts from the last), got '${raw}'`);
  }
  return v < 0 ? numLayers + v : v;
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
