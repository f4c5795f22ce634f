/** Whether an SAE was made for a text model: its input width, hook layer and recorded model identity. */
import type { TextModel } from '../encoder/index.js';
import { ItdError } from '../errors.js';
import type { Sae } from './sae.js';

/** itd's model identities are 16 hex digits (encoder/model-dir.ts); other tools' model names are not compared. */
const ITD_MODEL_ID = /^[0-9a-f]{16}$/;

/** Throws a 'mismatch' ItdError naming the SAE file and field when `sae` cannot read `model`'s residual stream. */
export function checkSaeForModel(sae: Sae, model: TextModel, saeFile?: string): void {
  const where = saeFile ? { file: saeFile } : {};
  if (sae.d !== model.config.hiddenSize) {
    throw new ItdError('mismatch', `the SAE reads ${sae.d}-wide activations, but ${model.dir} has hidden size ${model.config.hiddenSize}`, { ...where, field: 'd_in' });
  }
  const layer = sae.cfg.layer;
  if (layer !== undefined && (layer < 0 || layer >= model.config.numLayers)) {
    throw new ItdError('mismatch', `the SAE hooks layer ${layer}, which a ${model.config.numLayers}-block model does not have`, { ...where, field: 'layer' });
  }
  const id = sae.cfg.model_id;
  if (typeof id === 'string' && ITD_MODEL_ID.test(id) && id !== model.id) {
    throw new ItdError('mismatch', `the SAE was trained on activations of model ${id}, but ${model.dir} is model ${model.id}`, {
      ...where, field: 'model_id', hint: 'give the --model the SAE was trained on (itd sae info shows it)',
    });
  }
}
