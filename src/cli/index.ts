/** `itd` command-line entry: dispatches to thin command modules over the library. */
import fs from 'node:fs';
import path from 'node:path';
import { ItdError, exitCodeOf } from '../errors.js';
import { helpText, parseFlags, suggest, UsageError, type CommandSpec } from './args.js';

/**
 * Each command module, loaded only when one of its commands runs (or prints its help), so that
 * `itd --help` and `itd --version` import no library code, onnxruntime, fastify or tokenizers.
 */
const load = {
  demo: async () => [(await import('./demo.js')).demoCommand],
  encoder: async () => (await import('./encoder.js')).encoderCommands,
  collect: async () => (await import('./collect.js')).collectCommands,
  train: async () => (await import('./train.js')).trainCommands,
  itd: async () => (await import('./itd.js')).itdCommands,
  bench: async () => (await import('./bench.js')).benchCommands,
  generate: async () => [(await import('./generate-run.js')).generateSpec()],
  evalImages: async () => [(await import('./eval-images.js')).evalImagesSpec],
  download: async () => [(await import('./download.js')).downloadSpec],
  serve: async () => [(await import('./serve.js')).serveCommand],
} satisfies Record<string, () => Promise<CommandSpec[]>>;

interface CommandEntry {
  name: string;
  summary: string;
  load: () => Promise<CommandSpec[]>;
}

const COMMANDS: CommandEntry[] = [
  { name: 'demo', summary: 'run ItD end to end on the embedded synthetic model (synthesize, collect, train, select, calibrate, erase, report)', load: load.demo },
  { name: 'synth-model', summary: 'write a synthetic diffusers-layout model with deterministic random weights', load: load.encoder },
  { name: 'tokenize', summary: 'print the framed token ids of each prompt as JSON (77 for CLIP, max_sequence_length for T5)', load: load.encoder },
  { name: 'encode', summary: 'encode prompts to conditioning (safetensors: prompt_embeds [+ pooled_prompt_embeds], input_ids, hidden states)', load: load.encoder },
  { name: 'collect', summary: 'collect the output of encoder.layers[LAYER] for every token of the prompts', load: load.collect },
  { name: 'train', summary: 'train a TopK (or BatchTopK) sparse autoencoder on collected activations', load: load.train },
  { name: 'sae info', summary: 'print an SAE: sizes, layout, hookpoint, model, training stats', load: load.train },
  { name: 'sae eval', summary: 'FVU, L0, dead fraction and latent firing-frequency histogram of an SAE on activations', load: load.train },
  { name: 'features', summary: "per token, the SAE latents that fire most (Interpret)", load: load.itd },
  { name: 'explain', summary: 'the collected tokens and prompts that fire a latent most', load: load.itd },
  { name: 'eraser build', summary: "the paper's rules: select the features of target concepts (minus retain features) and write an eraser (for names the SAE never saw, eraser create --sae grows latents)", load: load.itd },
  { name: 'eraser add', summary: 'add concepts to an eraser: latents grown for the new names (every other latent frozen), features selected against its stored retain set, an FPR-calibrated eraser recalibrated', load: load.itd },
  { name: 'eraser remove', summary: 'remove concepts from an eraser', load: load.itd },
  { name: 'eraser show', summary: 'print an eraser: concepts, features, threshold and calibration', load: load.itd },
  { name: 'eraser calibrate', summary: 'set the erase threshold from target vs retain scores; prints AUROC, TPR, FPR', load: load.itd },
  { name: 'eraser create', summary: 'one command from a model to a calibrated eraser: collect, train an SAE to convergence (unless --sae), select, calibrate, report', load: load.itd },
  { name: 'classify', summary: 'per prompt: erase or pass, the score against the threshold, and which concepts fired (per encoder with an eraser set)', load: load.itd },
  { name: 'eraser join', summary: 'combine per-encoder erasers (one SAE each, e.g. SDXL text_encoder + text_encoder_2) into an eraser set', load: load.itd },
  { name: 'bench erase', summary: 'text-space evaluation: Acc_e/Acc_r/H_o, gate AUROC/TPR/FPR, neutral drift, latency; JSON + HTML report', load: load.bench },
  { name: 'bench attack', summary: "gate evasion: recall on target prompts whose concept name is disguised (zero-width, confusables, fullwidth, combining marks, spaced, dotted, casing, leetspeak) and neutral FPR, with the canonical-form defence off and on, at the eraser's threshold", load: load.bench },
  { name: 'generate', summary: 'text-to-image with an ONNX Stable Diffusion 1.x/2.x or SDXL pipeline (optionally through an eraser)', load: load.generate },
  { name: 'eval-images', summary: 'nudity rate (NSFWJS) and identity-match rate (face-api) of a directory of PNG/JPEG/WebP images', load: load.evalImages },
  { name: 'download', summary: 'download a Hugging Face hub model repo (resumable, sha256-verified, cached)', load: load.download },
  { name: 'serve', summary: 'HTTP API (encode, classify, concepts, features, metrics) and web playground', load: load.serve },
];

/** The entry's spec from its module. */
async function specOf(entry: CommandEntry): Promise<CommandSpec> {
  const spec = (await entry.load()).find((c) => c.name === entry.name);
  if (!spec) throw new ItdError('internal', `command module of '${entry.name}' does not define it`);
  return spec;
}

function overview(): string {
  const rows = COMMANDS.map((c) => `  ${c.name.padEnd(18)} ${c.summary}`);
  return `itd — Interpret then Deactivate: SAE-based concept erasure for text-to-image diffusion models\n\n` +
    `Usage: itd <command> [options]   (itd <command> --help for its options; itd --version)\n\nCommands:\n${rows.join('\n')}\n`;
}

/** Finds the longest command name (one or two words) matching argv's start. */
function lookup(argv: string[]): { entry: CommandEntry; rest: string[] } | undefined {
  for (const words of [2, 1]) {
    const name = argv.slice(0, words).join(' ');
    const entry = COMMANDS.find((c) => c.name === name);
    if (entry) return { entry, rest: argv.slice(words) };
  }
  return undefined;
}

/** The package version; package.json sits two levels above both src/cli and dist/cli. */
export function version(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

/** Commands under a group word (`sae`, `eraser`, `bench`). */
function group(word: string | undefined): CommandEntry[] {
  return COMMANDS.filter((c) => word !== undefined && c.name.startsWith(`${word} `));
}

function groupHelp(word: string, specs: CommandEntry[]): string {
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
  const { entry, rest } = found;
  const spec = await specOf(entry);
  if (rest.some(isHelp)) {
    process.stdout.write(helpText(spec, entry.summary));
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
