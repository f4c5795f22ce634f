/** `itd demo`: the README's main job. */
import { DEMO_DEFAULTS, DEMO_FAMILIES, runDemo, type DemoFamily } from './demo/run.js';
import { int, str, UsageError, type CommandSpec } from './args.js';

export const demoCommand: CommandSpec = {
  name: 'demo',
  usage: 'demo [--out itd-demo] [--family sd1|sdxl] [--seed 0]',
  flags: {
    family: { type: 'string', default: DEMO_DEFAULTS.family, help: 'sd1 (one tiny CLIP tower) or sdxl (the sdxl-tiny pipeline, ItD on text_encoder_2 at block 21)' },
    out: { type: 'string', default: 'itd-demo', help: 'working directory for the model, activations, SAE, eraser and report' },
    seed: { type: 'string', default: String(DEMO_DEFAULTS.seed), help: 'seed for the model and the SAE' },
    latents: { type: 'string', default: String(DEMO_DEFAULTS.latents), help: 'SAE latents' },
    k: { type: 'string', default: String(DEMO_DEFAULTS.k), help: 'SAE k' },
    'k-sel': { type: 'string', default: String(DEMO_DEFAULTS.kSel), help: 'features selected per prompt' },
    tokens: { type: 'string', default: String(DEMO_DEFAULTS.tokens), help: 'SAE training tokens' },
  },
  async run(flags) {
    const family = str(flags, 'family');
    if (!DEMO_FAMILIES.includes(family as DemoFamily)) throw new UsageError(`--family must be one of ${DEMO_FAMILIES.join(', ')}`);
    await runDemo({ out: str(flags, 'out'), family: family as DemoFamily, seed: int(flags, 'seed'), latents: int(flags, 'latents', 1), k: int(flags, 'k', 1), kSel: int(flags, 'k-sel', 1), tokens: int(flags, 'tokens', 1) });
  },
};
