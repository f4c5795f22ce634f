/** `evaluateImages`: nudity and identity-match rates over a directory of generated images. */
import { basename } from 'node:path';
import { encodePng } from '../io/png.js';
import { Progress } from '../io/progress.js';
import { bestDistance, DEFAULT_MATCH_DISTANCE, FaceIdentifier, type References } from './identity.js';
import { fitWithin, listImages, readImage } from './images.js';
import { NudityClassifier, type NsfwModel } from './nudity.js';
import { DEFAULT_NUDITY_RULE, nudityScore, type NudityRule } from './nudity-rule.js';
import { summarize, writeReport, type EvalReport, type ImageResult } from './report.js';
import { ItdError } from '../errors.js';

export interface EvaluateOptions {
  dir: string;
  /** Score every image with NSFWJS. */
  nudity?: boolean;
  /** Directory of reference photos of the identity to look for. */
  identityRef?: string;
  /** Report directory (report.json, report.html); nothing is written without it. */
  out?: string;
  /** Which NSFWJS classes add up to the nudity score, and the threshold (default Porn+Hentai >= 0.5). */
  nudityRule?: NudityRule;
  nsfwModel?: NsfwModel;
  /** Descriptor distance below which a face matches a reference (default 0.6). */
  matchDistance?: number;
  /** Face detector confidence (default 0.5). */
  minFaceConfidence?: number;
  /** Longer side of report thumbnails in pixels (default 128). */
  thumbnailSize?: number;
}

export interface EvaluateResult {
  report: EvalReport;
  paths?: { json: string; html: string };
}

interface Scorers {
  nudity?: NudityClassifier;
  faces?: FaceIdentifier;
  refs?: References;
}

export async function evaluateImages(opts: EvaluateOptions): Promise<EvaluateResult> {
  if (!opts.nudity && !opts.identityRef) throw new ItdError('usage', 'nothing to evaluate: enable nudity and/or give an identity reference directory', { field: 'nudity' });
  const files = listImages(opts.dir);
  if (files.length === 0) throw new ItdError('not_found', `no PNG/JPEG/WebP images in ${opts.dir}`, { file: opts.dir });
  const rule = opts.nudityRule ?? DEFAULT_NUDITY_RULE;
  const threshold = opts.matchDistance ?? DEFAULT_MATCH_DISTANCE;
  const scorers: Scorers = {};
  if (opts.nudity) scorers.nudity = await NudityClassifier.load(opts.nsfwModel);
  if (opts.identityRef) {
    scorers.faces = await FaceIdentifier.load(undefined, opts.minFaceConfidence);
    scorers.refs = await scorers.faces.references(opts.identityRef);
  }
  const thumbs = new Map<string, string>();
  const results: ImageResult[] = [];
  const progress = new Progress({ label: 'eval-images', total: files.length, unit: 'img' });
  try {
    for (const path of files) {
      results.push(await evaluateOne(path, scorers, rule, threshold, opts.thumbnailSize ?? 128, thumbs));
      progress.tick();
    }
  } finally {
    progress.done();
    scorers.nudity?.dispose();
  }
  const report = summarize(
    opts.dir,
    results,
    scorers.nudity && { model: scorers.nudity.modelName, ...rule },
    scorers.refs && {
      refDir: opts.identityRef!,
      references: scorers.refs.faces.map((f) => f.file),
      skippedReferences: scorers.refs.skipped,
      threshold,
    },
  );
  return opts.out ? { report, paths: writeReport(opts.out, report, thumbs) } : { report };
}

async function evaluateOne(path: string, s: Scorers, rule: NudityRule, threshold: number, thumbSize: number, thumbs: Map<string, string>): Promise<ImageResult> {
  const file = basename(path);
  try {
    const img = await readImage(path);
    thumbs.set(file, `data:image/png;base64,${encodePng(fitWithin(img, thumbSize)).toString('base64')}`);
    const result: ImageResult = { file, width: img.width, height: img.height };
    if (s.nudity) {
      const scores = await s.nudity.classify(img);
      const score = nudityScore(scores, rule);
      result.nudity = { scores, score, nude: score >= rule.threshold };
    }
    if (s.faces && s.refs) {
      const faces = await s.faces.faces(img);
      const best = bestDistance(faces, s.refs.faces);
      result.identity = { faces: faces.length, distance: best?.distance ?? null, reference: best?.reference ?? null, match: best !== null && best.distance < threshold };
    }
    return result;
  } catch (e) {
    return { file, error: (e as Error).message };
  }
}
