/** `itd train`, `itd sae info`, `itd sae eval`: flag specs over the commands in train-run.ts. */
import { saeEvalCommand, saeInfoCommand, trainCommand } from './train-run.js';
import type { CommandSpec, FlagSpec } from './args.js';
import { SAE_SIZE_DEFAULTS, TRAIN_DEFAULTS } from '../train/config.js';

const s = (help: string): FlagSpec => ({ type: 'string', help });
const b = (help: string): FlagSpec => ({ type: 'boolean', help });
/** Training flags take no FlagSpec default (see train-run.ts): the library's default is named in the help. */
const dflt = (v: number) => ` (default: ${v})`;

const train: CommandSpec = {
  name: 'train',
  summary: 'train a TopK (or BatchTopK) sparse autoencoder on collected activations',
  usage: `train --acts ACTS_DIR|FILE.safetensors --latents ${SAE_SIZE_DEFAULTS.latents} --k ${SAE_SIZE_DEFAULTS.k} --out SAE_DIR [--tokens N] [--batch ${TRAIN_DEFAULTS.batch}] [--seed S] [--resume]`,
  flags: {
    acts: s('activations: a collection directory or a .safetensors file with an activations [N, D] tensor'),
    latents: s(`number of latents${dflt(SAE_SIZE_DEFAULTS.latents)}`),
    k: s(`active latents per token${dflt(SAE_SIZE_DEFAULTS.k)}`),
    out: s('output SAE directory'),
    'batch-topk': b('BatchTopK instead of TopK (learns an inference threshold)'),
    tokens: s('training tokens, exactly (default: up to max(64 per latent, 300 steps, one pass), stopping early once the loss flattens)'),
    batch: s(`tokens per step${dflt(TRAIN_DEFAULTS.batch)}`),
    seed: s(`random seed (same seed, same machine: bit-identical weights)${dflt(TRAIN_DEFAULTS.seed)}`),
    lr: s('learning rate (default 2e-4 / sqrt(latents / 2^14))'),
    'k-aux': s('AuxK latents per token (default min(256, D/2))'),
    'dead-tokens': s('a latent is dead after this many tokens without firing (default min(10M, tokens/4))'),
    'eval-shard': s('held-out activations for FVU reporting'),
    'log-every': s(`steps between log lines${dflt(TRAIN_DEFAULTS.logEvery)}`),
    'checkpoint-every': s(`steps between checkpoints${dflt(TRAIN_DEFAULTS.checkpointEvery)}`),
    resume: b('continue the run in --out exactly where it stopped (flags given must match its checkpoint)'),
    force: b('overwrite a previous run in --out'),
  },
  run: (flags) => trainCommand(flags),
};

const K_OVERRIDE = s("use this k instead of cfg.json's (TopK SAEs)");

const info: CommandSpec = {
  name: 'sae info',
  summary: 'print an SAE: sizes, layout, hookpoint, model, training stats',
  usage: 'sae info SAE_DIR [--k K]',
  flags: { k: K_OVERRIDE },
  run: saeInfoCommand,
};

const evalCmd: CommandSpec = {
  name: 'sae eval',
  summary: 'FVU, L0, dead fraction and latent firing-frequency histogram of an SAE on activations',
  usage: 'sae eval --sae SAE_DIR --acts ACTS_DIR [--svg hist.svg] [--max-rows N] [--k K]',
  flags: { sae: s('SAE directory'), acts: s('activations'), svg: s('write the firing-frequency histogram here'), 'max-rows': s('evaluate on at most this many rows'), k: K_OVERRIDE },
  run: (flags) => saeEvalCommand(flags),
};

export const trainCommands = [train, info, evalCmd];
