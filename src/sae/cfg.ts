/**
 * SAE_DIR/cfg.json: EleutherAI sparsify's fields (d_in, num_latents, k, activation, multi_topk,
 * normalize_decoder) plus itd's provenance and training record, as one TypeBox schema. Unknown
 * fields (a foreign layout's extras such as its source format) are kept.
 */
import { Type, type Static } from '../io/typebox.js';

export const SaeActivationSchema = Type.Union([Type.Literal('topk'), Type.Literal('batchtopk'), Type.Literal('jumprelu'), Type.Literal('relu')]);
export type SaeActivation = Static<typeof SaeActivationSchema>;

export const SaeConfigSchema = Type.Object({
  d_in: Type.Integer({ minimum: 1, description: 'activation width D' }),
  num_latents: Type.Integer({ minimum: 1, description: 'latents n' }),
  k: Type.Integer({ minimum: 1, description: 'active latents per row (topk); n for threshold activations' }),
  activation: SaeActivationSchema,
  multi_topk: Type.Literal(false),
  normalize_decoder: Type.Boolean(),
  normalization: Type.Literal('none'),
  hookpoint: Type.Optional(Type.String({ description: 'e.g. text_model.encoder.layers.8' })),
  layer: Type.Optional(Type.Integer({ minimum: 0 })),
  model_id: Type.Optional(Type.String()),
  threshold: Type.Optional(Type.Number({ description: 'BatchTopK inference threshold' })),
  training: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: "the training run's config and final statistics" })),
});
export type SaeConfig = Static<typeof SaeConfigSchema> & Record<string, unknown>;

/** A sparsify / itd cfg.json as read: every field optional, each one typed when present. */
export const SaeConfigFileSchema = Type.Partial(SaeConfigSchema);
