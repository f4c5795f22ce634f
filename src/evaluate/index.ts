export { decodePng, encodePng, ImageFormatError, type RgbImage } from '../io/png.js';
export { evaluateImages, type EvaluateOptions, type EvaluateResult } from './evaluate.js';
export { bestDistance, DEFAULT_MATCH_DISTANCE, defaultFaceModelDir, FaceIdentifier, type Face, type Reference, type References } from './identity.js';
export { fitWithin, listImages, readImage } from './images.js';
export { NudityClassifier, type NsfwModel } from './nudity.js';
export { DEFAULT_NUDITY_RULE, NSFW_CLASSES, nudityScore, parseNsfwClasses, type NsfwClass, type NsfwScores, type NudityRule } from './nudity-rule.js';
export { renderHtml, summarize, summaryLines, writeReport, type EvalReport, type ImageResult } from './report.js';
