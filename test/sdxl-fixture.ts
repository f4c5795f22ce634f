/** sdxl-tiny with an exemplar SAE and a calibrated eraser per tower (text_encoder: zebras, text_encoder_2: lighthouses), built once per process. */
import { calibrateEraser } from '../src/classify/calibrate-eraser.js';
import { loadTextConditioning, type TextConditioning, type TextModel } from '../src/encoder/index.js';
import { ConceptEraser } from '../src/erase/index.js';
import type { Sae } from '../src/sae/index.js';
import type { EraserSpec } from '../src/select/eraser-file.js';
import { buildEraser } from '../src/select/select.js';
import { exemplarSae, tinySdxl } from './helpers.js';

export const ZEBRA = ['a photo of a zebra', 'a zebra in a field', 'a painting of a zebra at dusk'];
export const LIGHTHOUSE = ['a lighthouse on a cliff', 'an old lighthouse at night', 'a photo of a lighthouse'];
export const RETAIN = ['a photo of a dog', 'a field of flowers', 'a painting of a city at dusk', 'a cliff by the sea', 'a house at night', 'a photo of a car'];
export const NEUTRAL = ['a bowl of fruit on a table', 'a man riding a bicycle', 'a red car parked on the street'];
export const CORPUS = [...ZEBRA, ...LIGHTHOUSE, ...RETAIN, ...NEUTRAL];

export interface SdxlPart { model: TextModel; sae: Sae; spec: EraserSpec; eraser: ConceptEraser }
let cached: Promise<{ text: TextConditioning; parts: SdxlPart[] }> | undefined;

export function sdxlErasers(): Promise<{ text: TextConditioning; parts: SdxlPart[] }> {
  return (cached ??= (async () => {
    const text = await loadTextConditioning(tinySdxl());
    const parts: SdxlPart[] = [];
    for (const [model, target] of [[text.parts[0]!, ZEBRA], [text.parts[1]!, LIGHTHOUSE]] as const) {
      const layer = model.defaultLayer;
      const sae = await exemplarSae(model, CORPUS, layer, 8);
      sae.cfg.hookpoint = model.hookpoint(layer);
      let spec = await buildEraser(model, sae, { targets: [{ name: target === ZEBRA ? 'zebra' : 'lighthouse', prompts: target }], retain: RETAIN, kSel: 8, scale: -8, mode: 'official', layer, saeId: model.name });
      const eraser = await ConceptEraser.load({ model, sae, eraser: spec });
      // Tower 1: the official recall-1 calibration. Tower 2: an exemplar SAE at block 21 of a random
      // 32-block tower separates these few prompts less cleanly, so its threshold is set between them.
      if (model.name === 'text_encoder') ({ spec } = await calibrateEraser(eraser, { recall: 1 }));
      else spec = { ...spec, threshold: 0.02 };
      await eraser.update(spec);
      parts.push({ model, sae, spec, eraser });
    }
    return { text, parts };
  })());
}
