/**
 * Nudity scoring with NSFWJS: its models ship inside the npm package as JS bundles, so nothing is
 * fetched. What counts as nude is decided in nudity-rule.ts.
 */
import type { NSFWJS } from 'nsfwjs';
import type { RgbImage } from '../io/png.js';
import { NSFW_CLASSES, type NsfwClass, type NsfwScores } from './nudity-rule.js';
import { initTf, optionalImport, toTensor } from './tf.js';
import { ItdError } from '../errors.js';

export type NsfwModel = 'MobileNetV2' | 'MobileNetV2Mid' | 'InceptionV3';

export class NudityClassifier {
  private constructor(
    private readonly model: NSFWJS,
    readonly modelName: NsfwModel,
  ) {}

  static async load(modelName: NsfwModel = 'MobileNetV2'): Promise<NudityClassifier> {
    await initTf();
    const { load } = await optionalImport('nsfwjs', () => import('nsfwjs'));
    // nsfwjs announces the chosen model on console.info; keep stdout for our own results.
    const info = console.info;
    console.info = () => {};
    try {
      return new NudityClassifier(await load(modelName), modelName);
    } catch (e) {
      throw new ItdError('not_found', `could not load the bundled NSFWJS model ${modelName} (node_modules/nsfwjs/dist/models): ${(e as Error).message}`, { field: 'nudity', hint: 'reinstall the optional nsfwjs package (npm i nsfwjs)', cause: e });
    } finally {
      console.info = info;
    }
  }

  async classify(img: RgbImage): Promise<NsfwScores> {
    const input = toTensor(img);
    try {
      const preds = await this.model.classify(input, NSFW_CLASSES.length);
      const scores = Object.fromEntries(NSFW_CLASSES.map((c) => [c, 0])) as NsfwScores;
      for (const p of preds) scores[p.className as NsfwClass] = p.probability;
      return scores;
    } finally {
      input.dispose();
    }
  }

  dispose(): void {
    this.model.dispose();
  }
}
