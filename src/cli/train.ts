/** `itd train`, `itd sae info`, `itd sae eval`: flag specs over the commands in train-run.ts. */
import { saeEvalCommand, saeInfoCommand, trainCommand } from './train-run.js';
import type { CommandSpec, FlagSpec } from './args.js';
import { SAE_SIZE_DEFAULTS, TRAIN_DEFAULTS, trainFieldDoc, type TrainConfig } from '../train/config.js';

const s = (help: string): FlagSpec => ({ type: 'string', help });
/**
 * A flag that sets a training-config field: its help and default come from TrainConfigSchema (the
 * SAE size from SAE_SIZE_DEFAULTS). The default is only named in the help, never a FlagSpec
 * default, so that `--resume` compares only the flags a user typed (see train-run.ts).
 */
const cfg = (field: keyof TrainConfig): FlagSpec => {
  const doc = trainFieldDoc(field);
  const d = field === 'latents' || field === 'k' ? String(SAE_SIZE_DEFAULTS[field]) : doc.default;
  return s(d !== undefined ? `${doc.help} (default: ${d})` : doc.help);
};
const b = (help: string): FlagSpec => ({ type: 'boolean', help });

const train: CommandSpec = {
  name: 'train',
  usage: `train --acts ACTS_DIR|FILE.safetensors --latents ${SAE_SIZE_DEFAULTS.latents} --k ${SAE_SIZE_DEFAULTS.k} --out SAE_DIR [--tokens N] [--batch ${TRAIN_DEFAULTS.batch}] [--seed S] [--resume]`,
  flags: {
    acts: s('activations: a collection directory or a .safetensors file with an activations [N, D] tensor'),
    latents: cfg('latents'),
    k: cfg('k'),
    out: s('output SAE directory'),
    'batch-topk': b('BatchTopK instead of TopK (learns an inference threshold)'),
    tokens: s('training tokens, exactly (default: up to max(64 per latent, 300 steps, one pass), stopping early once the loss flattens)'),
    batch: cfg('batch'),
    seed: cfg('seed'),
    lr: cfg('lr'),
    'k-aux': cfg('kAux'),
    'dead-tokens': cfg('deadTokens'),
    'eval-shard': s('held-out activations for FVU reporting'),
    'log-every': cfg('logEvery'),
    'checkpoint-every': cfg('checkpointEvery'),
    resume: b('continue the run in --out exactly where it stopped (flags given must match its checkpoint)'),
    force: b('overwrite a previous run in --out'),
  },
  run: (flags) => trainCommand(flags),
};

const K_OVERRIDE = s("use this k instead of cfg.json's (TopK SAEs)");

const info: CommandSpec = {
  name: 'sae info',
  usage: 'sae info SAE_DIR [--k K]',
  flags: { k: K_OVERRIDE },
  run: saeInfoCommand,
};

const evalCmd: CommandSpec = {
  name: 'sae eval',
  usage: 'sae eval --sae SAE_DIR --acts ACTS_DIR [--svg hist.svg] [--max-rows N] [--k K]',
  flags: { sae: s('SAE directory'), acts: s('activations'), svg: s('write the firing-frequency histogram here'), 'max-rows': s('evaluate on at most this many rows'), k: K_OVERRIDE },
  run: (flags) => saeEvalCommand(flags),
};

export const trainCommands = [train, info, evalCmd];
