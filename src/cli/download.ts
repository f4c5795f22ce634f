/** `itd download REPO_ID --out DIR`: fetches a hub model repo (or some of its folders) into DIR. */
import { list, optStr, str, UsageError, type CommandSpec, type Flags } from './args.js';
import { downloadRepo } from '../download/repo.js';

export type CommandArgs = { positional: string[] } & Flags;

export async function downloadCommand(args: CommandArgs): Promise<void> {
  const [repo, ...extra] = args.positional;
  if (!repo || extra.length > 0) throw new UsageError('expected exactly one REPO_ID (owner/name)');
  const include = list(args, 'include').flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
  const endpoint = optStr(args, 'endpoint');
  const cacheDir = optStr(args, 'cache');
  const result = await downloadRepo({
    repo,
    revision: optStr(args, 'revision') ?? 'main',
    ...(optStr(args, 'out') ? { out: str(args, 'out') } : {}),
    ...(include.length ? { include } : {}),
    ...(endpoint ? { endpoint } : {}),
    ...(cacheDir ? { cacheDir } : {}),
  });
  const bytes = result.files.reduce((s, f) => s + f.size, 0);
  const reused = result.files.filter((f) => f.fromCache).length;
  process.stdout.write(
    `${result.repo}@${result.commit}: ${result.files.length} files, ${(bytes / 1e6).toFixed(1)} MB ` +
      `(${reused} from cache) in ${result.out}\n`,
  );
}

export const downloadSpec: CommandSpec = {
  name: 'download',
  usage: 'download REPO_ID [--out DIR] [--revision R] [--include text_encoder,tokenizer,unet,...] [--endpoint URL] [--cache DIR]',
  flags: {
    out: { type: 'string', help: 'also put the files in this directory (default: only the hub cache, where --model REPO_ID finds them)' },
    revision: { type: 'string', default: 'main', help: 'branch, tag or commit' },
    include: {
      type: 'string',
      multiple: true,
      help: 'top-level folders to fetch, comma-separated (model_index.json always comes along); default: all, minus .bin/.ckpt/.pt/.msgpack/.h5 weights where safetensors exist',
    },
    endpoint: { type: 'string', help: 'hub URL (default: env HF_ENDPOINT, else https://huggingface.co); token from env HF_TOKEN' },
    cache: { type: 'string', help: 'Hugging Face hub cache (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)' },
  },
  run: (flags, positional) => downloadCommand({ ...flags, positional }),
};
