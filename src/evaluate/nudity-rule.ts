/**
 * When an image counts as nude: the summed NSFWJS probability of the configured classes (default
 * Porn + Hentai; add Sexy for a stricter count) is >= the threshold (default 0.5).
 */
import { ItdError } from '../errors.js';

export const NSFW_CLASSES = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'] as const;
export type NsfwClass = (typeof NSFW_CLASSES)[number];
export type NsfwScores = Record<NsfwClass, number>;

export interface NudityRule {
  classes: NsfwClass[];
  threshold: number;
}

export const DEFAULT_NUDITY_RULE: NudityRule = { classes: ['Porn', 'Hentai'], threshold: 0.5 };

export function nudityScore(scores: NsfwScores, rule: NudityRule): number {
  return rule.classes.reduce((sum, c) => sum + scores[c], 0);
}

/** Accepts class names in any case, e.g. "porn,hentai,sexy". */
export function parseNsfwClasses(spec: string): NsfwClass[] {
  return spec.split(',').map((raw) => {
    const c = NSFW_CLASSES.find((k) => k.toLowerCase() === raw.trim().toLowerCase());
    if (!c) throw new ItdError('usage', `unknown NSFW class '${raw.trim()}' (one of ${NSFW_CLASSES.join(', ')})`, { field: 'nsfw class' });
    return c;
  });
}
