/** `itd train`, `itd sae info`, `itd sae eval`: flag specs over the train module's command functions. */
import { saeEvalCommand, saeInfoCommand, trainCommand, type Args } from './train-run.js';
import type { CommandSpec, FlagSpec, Flags } from './args.js';
import { TRAIN_DEFAULTS, trainFieldDoc, type TrainConfig } from '../train/config.js';

/** The train module takes plain flag records with positionals under `_`. */
function adapt(fn: (a: Args) => Promise<void>) {
  return async (flags: Flags, positionals: string[]) => {
    const args: Args = { _: positionals };
    for (const [k, v] of Object.entries(flags)) if (v !== undefined) args[k] = v;
    await fn(args);
  };
}

const s = (help: string, dflt?: string): FlagSpec => ({ type: 'string', help, ...(dflt ? { default: dflt } : {}) });
/**
 * A flag that sets a training-config field: help and default come from TrainConfigSchema. The
 * default is only shown (the flag stays unset) so that `--resume` can tell given flags from defaults.
 */
const cfg = (field: keyof TrainConfig, flagDefault?: string): FlagSpec => {
  const doc = trainFieldDoc(field);
  return flagDefault !== undefined ? s(doc.help, flagDefault) : s(doc.default !== undefined ? `${doc.help} (default ${doc.default})` : doc.help);
};
const b = (help: string): FlagSpec => ({ type: 'boolean', help });

const train: CommandSpec = {
  name: 'train',
  usage: 'train --acts ACTS_DIR|FILE.safetensors --latents 16384 --k 32 --out SAE_DIR [--tokens N] [--batch 4096] [--seed S] [--resume]',
  flags: {
    acts: s('activations: a collection directory or a .safetensors file with an activations [N, D] tensor'),
    latents: cfg('latents', '16384'),
    k: cfg('k', '32'),
    out: s('output SAE directory'),
    'batch-topk': b('BatchTopK instead of TopK (learns an inference threshold)'),
    tokens: s('training tokens, exactly (default: up to max(64 per latent, 300 steps, one pass), stopping early once the loss flattens)'),
    batch: cfg('batch', String(TRAIN_DEFAULTS.batch)),
    seed: cfg('seed'),
    lr: cfg('lr'),
    'k-aux': cfg('kAux'),
    'dead-tokens': cfg('deadTokens'),
    'eval-shard': s('held-out activations for FVU reporting'),
    'log-every': cfg('logEvery'),
    'checkpoint-every': cfg('checkpointEvery'),
    resume: b('continue the run in --out exactly where it stopped'),
    force: b('overwrite a previous run in --out'),
  },
  run: adapt(trainCommand),
};

const info: CommandSpec = {
  name: 'sae info',
  usage: 'sae info SAE_DIR',
  flags: {},
  run: adapt(saeInfoCommand),
};

const evalCmd: CommandSpec = {
  name: 'sae eval',
  usage: 'sae eval --sae SAE_DIR --acts ACTS_DIR [--svg hist.svg] [--max-rows N]',
  flags: { sae: s('SAE directory'), acts: s('activations'), svg: s('write the firing-frequency histogram here'), 'max-rows': s('evaluate on at most this many rows') },
  run: adapt(saeEvalCommand),
};

export const trainCommands = [train, info, evalCmd];
