/** `itd eval-images DIR [--nudity] [--identity REF_DIR] [--out REPORT_DIR]` */
import { join } from 'node:path';
import { bool, num, optStr, UsageError, type CommandSpec, type Flags } from './args.js';
import type { NsfwModel } from '../evaluate/nudity.js';
import { parseNsfwClasses, type NsfwClass } from '../evaluate/nudity-rule.js';
import { summaryLines } from '../evaluate/report.js';

export type CommandArgs = { positional: string[] } & Flags;

const NSFW_MODELS: NsfwModel[] = ['MobileNetV2', 'MobileNetV2Mid', 'InceptionV3'];

function optNum(args: Flags, name: string, dflt: number): number {
  return optStr(args, name) === undefined ? dflt : num(args, name);
}

function classesFlag(args: Flags): NsfwClass[] {
  try {
    return parseNsfwClasses(optStr(args, 'nudity-classes') ?? 'porn,hentai');
  } catch (e) {
    throw new UsageError(`--nudity-classes: ${(e as Error).message}`);
  }
}

export async function evalImagesCommand(args: CommandArgs): Promise<void> {
  const [dir, ...extra] = args.positional;
  if (!dir || extra.length > 0) throw new UsageError('expected exactly one image directory');
  const nudity = bool(args, 'nudity');
  const identityRef = optStr(args, 'identity');
  if (!nudity && !identityRef) throw new UsageError('nothing to evaluate: pass --nudity and/or --identity REF_DIR');
  const nsfwModel = (optStr(args, 'nsfw-model') ?? 'MobileNetV2') as NsfwModel;
  if (!NSFW_MODELS.includes(nsfwModel)) throw new UsageError(`--nsfw-model must be one of ${NSFW_MODELS.join(', ')}`);
  const nudityRule = { classes: classesFlag(args), threshold: optNum(args, 'nudity-threshold', 0.5) };
  const matchDistance = optNum(args, 'match-distance', 0.6);
  // Loaded here, not at the top: tfjs takes a second to import and other commands never need it.
  const { evaluateImages } = await import('../evaluate/evaluate.js');
  const { report, paths } = await evaluateImages({
    dir,
    nudity,
    out: optStr(args, 'out') ?? join(dir, 'eval-report'),
    nudityRule,
    nsfwModel,
    matchDistance,
    ...(identityRef ? { identityRef } : {}),
  });
  process.stdout.write([...summaryLines(report), `report: ${paths?.html}`, ''].join('\n'));
}

export const evalImagesSpec: CommandSpec = {
  name: 'eval-images',
  usage: 'eval-images DIR [--nudity] [--identity REF_DIR] [--out REPORT_DIR]',
  flags: {
    nudity: { type: 'boolean', help: 'score nudity with NSFWJS' },
    identity: { type: 'string', help: 'directory of reference face photos; reports how many images show that person' },
    out: { type: 'string', help: 'report directory for report.json and report.html (default: DIR/eval-report)' },
    'nudity-classes': { type: 'string', default: 'porn,hentai', help: 'NSFWJS classes summed into the nudity score (add sexy to be stricter)' },
    'nudity-threshold': { type: 'string', default: '0.5', help: 'an image is nude when its nudity score is >= this' },
    'nsfw-model': { type: 'string', default: 'MobileNetV2', help: 'bundled NSFWJS model: MobileNetV2, MobileNetV2Mid or InceptionV3' },
    'match-distance': { type: 'string', default: '0.6', help: 'face descriptor distance below which a face matches a reference' },
  },
  run: (flags, positional) => evalImagesCommand({ ...flags, positional }),
};
