/**
 * manifest.json of an activation collection (format itd-activations/1): one TypeBox schema for the
 * writer (collect) and the reader (dataset). Required are the fields a reader needs; the ones
 * `itd collect` adds to resume and to recognise a repeated run are optional, so manifests written
 * by other tools (or older itd versions) still load.
 */
import { Type, type Static } from '../io/typebox.js';
import { checkFile } from '../io/schema.js';
import { readJsonObject } from '../io/files.js';

export const TokenKindSchema = Type.Union([Type.Literal('bos'), Type.Literal('eos'), Type.Literal('pad')]);
export type TokenKind = Static<typeof TokenKindSchema>;

export const ShardEntrySchema = Type.Object({
  // A shard is a file name inside the collection directory, never a path out of it.
  file: Type.String({ pattern: '^(?!\\.\\.?$)[^\\\\/]+$', description: 'a plain file name inside the collection directory' }),
  rows: Type.Integer({ minimum: 0 }),
  sha256: Type.String(),
  prompts: Type.Optional(Type.Tuple([Type.Integer({ minimum: 0 }), Type.Integer({ minimum: 0 })], { description: '[first, end) prompt indices the shard covers' })),
});
export type ShardEntry = Static<typeof ShardEntrySchema>;

export const ActivationManifestSchema = Type.Object({
  format: Type.Literal('itd-activations/1'),
  model: Type.Object({ id: Type.String(), dir: Type.Optional(Type.String()) }),
  layer: Type.Optional(Type.Integer({ minimum: 0, description: 'encoder.layers[layer] output (hidden_states[layer+1])' })),
  hookpoint: Type.Optional(Type.String()),
  d: Type.Integer({ minimum: 1, description: 'activation width D' }),
  dtype: Type.Union([Type.Literal('F32'), Type.Literal('F16')]),
  exclude: Type.Optional(Type.Array(TokenKindSchema, { description: 'token positions left out of the data' })),
  prompts: Type.Optional(Type.Array(Type.String())),
  prompts_sha256: Type.Optional(Type.String()),
  rows: Type.Integer({ minimum: 0 }),
  complete: Type.Optional(Type.Boolean()),
  truncated_prompts: Type.Optional(Type.Integer({ minimum: 0 })),
  max_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: 'the row limit the collection was run with (null: every row)' })),
  shards: Type.Array(ShardEntrySchema),
});
export type ActivationManifest = Static<typeof ActivationManifestSchema>;

/** manifest.json of an activation collection, every field type-checked (errors name file and field). */
export function parseManifest(mpath: string): ActivationManifest {
  return checkFile(ActivationManifestSchema, readJsonObject(mpath, 'activation manifest'), mpath);
}
