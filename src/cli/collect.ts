/** `itd collect`: block-output activations of a prompt set, as safetensors shards + manifest. */
import { collectActivations, TOKEN_KINDS, type TokenKind } from '../collect/collect.js';
import { readPrompts } from '../io/prompts.js';
import { bool, int, layerIndex, list, optStr, str, UsageError, type CommandSpec } from './args.js';
import { ENCODER_FLAG, itdPart, UTF8_REPLACE_FLAG } from './encoder.js';

const collect: CommandSpec = {
  name: 'collect',
  usage: 'collect --model DIR [--encoder 1|2] [--layer N] --prompts FILE... --out ACTS_DIR [--exclude bos,pad] [--dtype f32|f16] [--max-tokens N]',
  flags: {
    model: { type: 'string', help: 'model directory' },
    ...ENCODER_FLAG,
    layer: { type: 'string', help: "block whose output is collected (0-indexed, negative counts from the last; Hugging Face hidden_states[layer+1]); default: ItD's relative depth, 8 of 12 blocks (21 of SDXL's 32)" },
    prompts: { type: 'string', multiple: true, help: 'prompt files' },
    out: { type: 'string', help: 'output directory' },
    exclude: { type: 'string', default: 'bos,pad', help: "token positions left out: any of bos, eos, pad, or 'none'" },
    dtype: { type: 'string', default: 'f32', help: 'stored dtype: f32 or f16' },
    batch: { type: 'string', default: '32', help: 'prompts per encoder call' },
    'shard-rows': { type: 'string', default: '65536', help: 'rows per shard' },
    'max-tokens': { type: 'string', help: 'stop after this many rows' },
    force: { type: 'boolean', help: 'overwrite an existing, different collection in --out' },
    'utf8-replace': UTF8_REPLACE_FLAG,
  },
  async run(flags) {
    const files = list(flags, 'prompts');
    if (files.length === 0) throw new UsageError('give at least one --prompts FILE');
    const prompts = files.flatMap((f) => readPrompts(f, { replaceInvalidUtf8: bool(flags, 'utf8-replace') }));
    const exclude = parseExclude(str(flags, 'exclude'));
    const dtype = str(flags, 'dtype').toUpperCase();
    if (dtype !== 'F32' && dtype !== 'F16') throw new UsageError('--dtype must be f32 or f16');
    const model = await itdPart(flags);
    const maxTokens = optStr(flags, 'max-tokens') === undefined ? undefined : int(flags, 'max-tokens', 1);
    const m = await collectActivations(model, {
      out: str(flags, 'out'), layer: optStr(flags, 'layer') === undefined ? model.defaultLayer : layerIndex(flags, 'layer', model.config.numLayers), prompts, exclude, dtype,
      batch: int(flags, 'batch', 1), shardRows: int(flags, 'shard-rows', 1), force: bool(flags, 'force'), log: (line) => void process.stderr.write(`${line}\n`),
      ...(maxTokens !== undefined ? { maxTokens } : {}),
    });
    process.stdout.write(`wrote ${str(flags, 'out')}: ${m.rows} rows x ${m.d} from ${prompts.length} prompts in ${m.shards.length} shard(s)\n`);
  },
};

function parseExclude(spec: string): TokenKind[] {
  if (spec === 'none' || spec === '') return [];
  const kinds = spec.split(',').map((s) => s.trim());
  for (const k of kinds) if (!TOKEN_KINDS.includes(k as TokenKind)) throw new UsageError(`--exclude: '${k}' is not one of ${TOKEN_KINDS.join(', ')}, none`);
  return kinds as TokenKind[];
}

export const collectCommands = [collect];
