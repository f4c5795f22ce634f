/**
 * CLIP text-tower configuration, read from a Hugging Face `config.json` (CLIPTextConfig fields).
 * SD1.x: CLIP ViT-L/14 text (768, 12 layers, quick_gelu); SD2.x: OpenCLIP ViT-H text (1024, 23 layers, gelu).
 */
import fs from 'node:fs';

export type Activation = 'quick_gelu' | 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh';
const ACTIVATIONS: readonly Activation[] = ['quick_gelu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh'];

export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number; // D
  intermediateSize: number; // MLP width
  numLayers: number; // L
  numHeads: number; // H, D % H == 0
  maxPositions: number; // 77
  hiddenAct: Activation;
  layerNormEps: number;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number;
  projectionDim?: number;
}

/** Parses and validates a config.json object; `source` names the file in errors. */
export function parseClipConfig(raw: unknown, source: string): ClipTextConfig {
  if (typeof raw !== 'object' || raw === null) throw new Error(`${source}: expected a JSON object`);
  const o = raw as Record<string, unknown>;
  // A full CLIPModel config nests the text tower under text_config.
  const c = (typeof o['text_config'] === 'object' && o['text_config'] !== null ? o['text_config'] : o) as Record<string, unknown>;
  const int = (key: string, dflt?: number): number => {
    const v = c[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      throw new Error(`${source}: field '${key}' must be a non-negative integer, got ${JSON.stringify(c[key])}`);
    }
    return v;
  };
  const act = (c['hidden_act'] ?? 'quick_gelu') as Activation;
  if (!ACTIVATIONS.includes(act)) throw new Error(`${source}: hidden_act '${String(act)}' is not one of ${ACTIVATIONS.join(', ')}`);
  const eps = c['layer_norm_eps'] ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new Error(`${source}: layer_norm_eps must be a positive number`);
  const cfg: ClipTextConfig = {
    vocabSize: int('vocab_size', 49408),
    hiddenSize: int('hidden_size', 512),
    intermediateSize: int('intermediate_size', 2048),
    numLayers: int('num_hidden_layers', 12),
    numHeads: int('num_attention_heads', 8),
    maxPositions: int('max_position_embeddings', 77),
    hiddenAct: act,
    layerNormEps: eps,
    bosTokenId: int('bos_token_id', 49406),
    eosTokenId: int('eos_token_id', 49407),
    padTokenId: int('pad_token_id', 1),
  };
  if (typeof c['projection_dim'] === 'number') cfg.projectionDim = c['projection_dim'];
  if (cfg.hiddenSize % cfg.numHeads !== 0) {
    throw new Error(`${source}: hidden_size ${cfg.hiddenSize} is not divisible by num_attention_heads ${cfg.numHeads}`);
  }
  return cfg;
}

export function readClipConfig(file: string): ClipTextConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read CLIP text config: ${(e as Error).message}`);
  }
  return parseClipConfig(raw, file);
}

/** The Hugging Face config.json for a config (what synth-model writes). */
export function toHfConfig(c: ClipTextConfig): Record<string, unknown> {
  return {
    architectures: ['CLIPTextModel'],
    model_type: 'clip_text_model',
    attention_dropout: 0.0,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    pad_token_id: c.padTokenId,
    hidden_act: c.hiddenAct,
    hidden_size: c.hiddenSize,
    initializer_factor: 1.0,
    initializer_range: 0.02,
    intermediate_size: c.intermediateSize,
    layer_norm_eps: c.layerNormEps,
    max_position_embeddings: c.maxPositions,
    num_attention_heads: c.numHeads,
    num_hidden_layers: c.numLayers,
    projection_dim: c.projectionDim ?? c.hiddenSize,
    torch_dtype: 'float32',
    vocab_size: c.vocabSize,
  };
}
