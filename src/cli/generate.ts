/** `itd generate`: the image pipeline with an optional eraser wired in as its conditioner. */
import { ConceptEraser, encodeErased } from '../erase/index.js';
import type { TextConditioning } from '../encoder/index.js';
import { generateSpec } from '../generate/cli.js';
import type { Conditioner } from '../generate/conditioning.js';
import { loadSae, saeIdentity } from '../sae/index.js';
import { optStr, UsageError, type CommandSpec } from './args.js';

/** ConceptEraser as a pipeline conditioner: prompts -> erased prompt_embeds [n, 77, W] (+ pooled_prompt_embeds). */
export async function eraserConditioner(eraserPath: string, saePath: string, text: TextConditioning): Promise<Conditioner> {
  const eraser = await ConceptEraser.load({ model: text.defaultPart, sae: loadSae(saePath), eraser: eraserPath, saeId: saeIdentity(saePath) });
  return async (prompts) => {
    const { embeds, erased } = await encodeErased(text, eraser, prompts);
    return { embeddings: embeds.promptEmbeds, ...(embeds.pooledPromptEmbeds ? { pooled: embeds.pooledPromptEmbeds } : {}), erased };
  };
}

const base = generateSpec();

export const generateCommand: CommandSpec = {
  ...base,
  usage: `${base.usage} [--sae SAE_DIR (with --eraser)]`,
  flags: { ...base.flags, sae: { type: 'string', help: 'SAE directory the eraser was built with (needed by --eraser)' } },
  async run(flags, positionals) {
    const saePath = optStr(flags, 'sae');
    if (optStr(flags, 'eraser') && !saePath) throw new UsageError('--eraser needs --sae SAE_DIR');
    const { sae: _unused, ...rest } = flags;
    const spec = generateSpec({ loadConditioner: (eraserPath, model) => eraserConditioner(eraserPath, saePath!, model) });
    await spec.run(rest, positionals);
  },
};
