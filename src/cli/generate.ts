/** `itd generate`: the image pipeline with an optional eraser wired in as its conditioner. */
import { erasedConditioner } from '../erase/index.js';
import type { TextConditioning } from '../encoder/index.js';
import { generateSpec } from './generate-run.js';
import type { Conditioner } from '../generate/conditioning.js';
import { optStr, type CommandSpec } from './args.js';
import { loadErasers } from './encoder.js';

/** ConceptEraser as a pipeline conditioner: prompts -> erased prompt_embeds [n, 77, W] (+ pooled_prompt_embeds). */
export async function eraserConditioner(eraserPath: string, saePath: string | undefined, text: TextConditioning): Promise<Conditioner> {
  return erasedConditioner(text, await loadErasers(eraserPath, saePath, undefined, text));
}

const base = generateSpec();

export const generateCommand: CommandSpec = {
  ...base,
  usage: `${base.usage} [--sae SAE_DIR (with --eraser)]`,
  flags: { ...base.flags, sae: { type: 'string', help: 'SAE directory the eraser was built with (needed by --eraser, except for an eraser set)' } },
  async run(flags, positionals) {
    const saePath = optStr(flags, 'sae');
    const { sae: _unused, ...rest } = flags;
    const spec = generateSpec({ loadConditioner: (eraserPath, text) => eraserConditioner(eraserPath, saePath, text) });
    await spec.run(rest, positionals);
  },
};
