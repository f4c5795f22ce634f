/**
 * T5 v1.1 encoder configuration, read from a Hugging Face `config.json` (T5Config fields), as
 * FLUX.1 (`text_encoder_2/`) and SD3 (`text_encoder_3/`) ship it: T5-XXL is d_model 4096, d_ff 10240,
 * 24 layers, 64 heads of d_kv 64, 32 relative-position buckets up to distance 128, gated-gelu.
 */
import fs from 'node:fs';
import { configError, ItdError } from '../../errors.js';

export interface T5Config {
  vocabSize: number; // V (32128 for T5 v1.1)
  hiddenSize: number; // D
  dKv: number; // per-head width; inner = numHeads * dKv
  dFf: number; // gated FFN width
  numLayers: number; // L
  numHeads: number; // H
  numBuckets: number; // relative_attention_num_buckets
  maxDistance: number; // relative_attention_max_distance
  layerNormEps: number;
  padTokenId: number;
  eosTokenId: number;
}

/** The only feed-forward variant T5 v1.1 (FLUX.1, SD3) uses: gelu_new(wi_0 x) * wi_1 x. */
export const SUPPORTED_FEED_FORWARD = 'gated-gelu';

/** Parses and validates a config.json object; `source` names the file in errors. */
export function parseT5Config(raw: unknown, source: string): T5Config {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ItdError('config', `${source}: expected a JSON object (T5Config)`, { file: source });
  }
  const c = raw as Record<string, unknown>;
  const int = (key: string, dflt?: number, min = 1): number => {
    const v = c[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      throw configError(source, key, `must be an integer >= ${min}, got ${JSON.stringify(c[key])}`);
    }
    return v;
  };
  const ff = c['feed_forward_proj'] ?? 'relu';
  if (ff !== SUPPORTED_FEED_FORWARD) {
    throw configError(source, 'feed_forward_proj', `is ${JSON.stringify(ff)}; only '${SUPPORTED_FEED_FORWARD}' (T5 v1.1, as FLUX.1 and SD3 use) is supported`);
  }
  const eps = c['layer_norm_epsilon'] ?? 1e-6;
  if (typeof eps !== 'number' || !(eps > 0)) throw configError(source, 'layer_norm_epsilon', `must be a positive number, got ${JSON.stringify(eps)}`);
  const cfg: T5Config = {
    vocabSize: int('vocab_size', 32128),
    hiddenSize: int('d_model', 512),
    dKv: int('d_kv', 64),
    dFf: int('d_ff', 2048),
    numLayers: int('num_layers', 6),
    numHeads: int('num_heads', 8),
    numBuckets: int('relative_attention_num_buckets', 32, 4),
    maxDistance: int('relative_attention_max_distance', 128),
    layerNormEps: eps,
    padTokenId: int('pad_token_id', 0, 0),
    eosTokenId: int('eos_token_id', 1, 0),
  };
  // Bidirectional buckets: half per direction, of which half are exact offsets (HF floors both).
  const maxExact = Math.floor(Math.floor(cfg.numBuckets / 2) / 2);
  if (cfg.maxDistance <= maxExact) {
    throw configError(source, 'relative_attention_max_distance', `is ${cfg.maxDistance}; it must exceed the ${maxExact} exact buckets`);
  }
  return cfg;
}

export function readT5Config(file: string): T5Config {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ItdError(fs.existsSync(file) ? 'config' : 'not_found', `${file}: cannot read T5 config: ${(e as Error).message}`, { file, cause: e });
  }
  return parseT5Config(raw, file);
}

/** The Hugging Face config.json of a T5EncoderModel (what synth-model writes). */
export function toHfT5Config(c: T5Config): Record<string, unknown> {
  return {
    architectures: ['T5EncoderModel'],
    model_type: 't5',
    d_ff: c.dFf,
    d_kv: c.dKv,
    d_model: c.hiddenSize,
    decoder_start_token_id: 0,
    dense_act_fn: 'gelu_new',
    dropout_rate: 0.1,
    eos_token_id: c.eosTokenId,
    feed_forward_proj: SUPPORTED_FEED_FORWARD,
    initializer_factor: 1.0,
    is_encoder_decoder: true,
    is_gated_act: true,
    layer_norm_epsilon: c.layerNormEps,
    num_decoder_layers: c.numLayers,
    num_heads: c.numHeads,
    num_layers: c.numLayers,
    pad_token_id: c.padTokenId,
    relative_attention_max_distance: c.maxDistance,
    relative_attention_num_buckets: c.numBuckets,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    use_cache: true,
    vocab_size: c.vocabSize,
  };
}
