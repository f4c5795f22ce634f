/**
 * SAE layouts of other frameworks, read into itd's form (W_enc [n, D], b_enc [n], W_dec [n, D],
 * b_pre [D], an activation and its k / thresholds) so that encode and decode give the numbers the
 * source framework computes. The layout is detected from the tensor names and checked against the
 * config file beside the weights:
 *
 *   sparsify   encoder.weight [n, D], encoder.bias [n], W_dec [n, D], b_dec [D]; cfg.json {d_in, num_latents, k, ...}
 *              (EleutherAI sparsify and itd's own files; encode = TopK(ReLU(enc(x - b_dec))))
 *   saelens    W_enc [D, n], b_enc [n], W_dec [n, D], b_dec [D], threshold [n] (jumprelu);
 *              cfg.json {d_in, d_sae, architecture: standard | jumprelu | topk, k, apply_b_dec_to_input, ...}
 *   openai     encoder.weight [n, D], decoder.weight [D, n], pre_bias [D], latent_bias [n]
 *              (the official ItD SAE: TopK, k from config.json, cfg.json or the caller;
 *              openai/sparse_autoencoder state dicts naming their activation: ReLU)
 *   dictionary_learning  encoder.weight [n, D], encoder.bias [n], decoder.weight [D, n], b_dec [D],
 *              k [], threshold []; config.json {trainer: {dict_class: BatchTopKSAE | AutoEncoderTopK}}
 */
import fs from 'node:fs';
import path from 'node:path';
import { configError, formatError, ItdError } from '../errors.js';
import { readJsonObject } from '../io/files.js';
import type { TensorFile } from '../io/tensor-file.js';
import type { SaeActivation, SaeWeights } from './sae.js';

export type SaeFormat = 'sparsify' | 'saelens' | 'openai' | 'dictionary_learning';

/** What a layout reader produces: itd-form weights plus the activation that reproduces the source's forward. */
export interface ForeignSae {
  format: SaeFormat;
  weights: SaeWeights;
  n: number;
  d: number;
  activation: SaeActivation;
  k?: number;
  threshold?: number;
  /** Fields to keep in itd's cfg.json (hookpoint, source format, ...). */
  extra: Record<string, unknown>;
}

/** A JSON config beside the weights (cfg.json or config.json), with its path for messages. */
export interface JsonCfg {
  path: string;
  json: Record<string, unknown>;
}

export function readJsonCfg(p: string): JsonCfg | undefined {
  return fs.existsSync(p) ? { path: p, json: readJsonObject(p, 'SAE config') } : undefined;
}

const LAYOUTS: Record<SaeFormat, string> = {
  sparsify: 'sparsify (encoder.weight, encoder.bias, W_dec, b_dec)',
  saelens: 'SAELens (W_enc, b_enc, W_dec, b_dec)',
  openai: 'OpenAI / official ItD (encoder.weight, decoder.weight, pre_bias, latent_bias)',
  dictionary_learning: 'dictionary_learning (encoder.weight, encoder.bias, decoder.weight, b_dec, k, threshold)',
};

/** The layout of a weights file, from its tensor names; the configs must agree with it. */
export function detectFormat(tf: TensorFile, cfg: JsonCfg | undefined): SaeFormat {
  const has = (...names: string[]) => names.every((n) => tf.has(n));
  const found: SaeFormat[] = [];
  if (has('W_enc', 'W_dec')) found.push('saelens');
  if (has('encoder.weight', 'W_dec')) found.push('sparsify');
  if (has('decoder.weight', 'pre_bias')) found.push('openai');
  if (has('decoder.weight', 'b_dec')) found.push('dictionary_learning');
  if (found.length === 0) {
    throw formatError(tf.path, undefined, `not a known SAE layout; expected one of ${Object.values(LAYOUTS).join('; ')}; has ${tf.names().join(', ')}`);
  }
  if (found.length > 1) {
    throw formatError(tf.path, undefined, `ambiguous SAE layout: its tensors match ${found.map((f) => LAYOUTS[f]).join(' and ')}`);
  }
  const format = found[0]!;
  const saelensCfg = cfg !== undefined && ('d_sae' in cfg.json || 'architecture' in cfg.json);
  if (saelensCfg !== (format === 'saelens') && cfg) {
    throw new ItdError('mismatch', `${cfg.path} is ${saelensCfg ? 'a SAELens config (d_sae / architecture)' : 'not a SAELens config (no d_sae)'} but ${tf.path} holds the ${LAYOUTS[format]} layout`, { file: cfg.path });
  }
  return format;
}

function checkShape(tf: TensorFile, name: string, shape: number[]): void {
  if (!tf.has(name)) throw formatError(tf.path, undefined, `missing tensor "${name}" (expected shape [${shape.join(', ')}]; has ${tf.names().join(', ')})`);
  const got = tf.info(name).shape;
  if (got.length !== shape.length || got.some((v, i) => v !== shape[i])) {
    throw formatError(tf.path, undefined, `tensor "${name}" has shape ${JSON.stringify(got)}, expected ${JSON.stringify(shape)}`);
  }
}

/** Reads a tensor after checking its shape. */
export function readShaped(tf: TensorFile, name: string, shape: number[]): Float32Array {
  checkShape(tf, name, shape);
  return tf.readF32(name);
}

/** Shape of a rank-2 tensor that fixes n and D. */
function dims2(tf: TensorFile, name: string): [number, number] {
  if (!tf.has(name)) throw formatError(tf.path, undefined, `missing tensor "${name}"`);
  const s = tf.info(name).shape;
  if (s.length !== 2) throw formatError(tf.path, undefined, `tensor "${name}" must be rank 2, got ${JSON.stringify(s)}`);
  return s as [number, number];
}

/** [rows, cols] -> [cols, rows]: the frameworks keep some matrices as nn.Linear weights, others as their transpose. */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = src[i * cols + j]!;
  return out;
}

/** [rows, cols] tensor `name` read as its transpose [cols, rows] (shape checked). */
function readTransposed(tf: TensorFile, name: string, rows: number, cols: number): Float32Array {
  checkShape(tf, name, [rows, cols]);
  return tf.readF32Transposed ? tf.readF32Transposed(name) : transpose(tf.readF32(name), rows, cols);
}

/** One numeric scalar tensor (dictionary_learning's k and threshold buffers). */
function scalar(tf: TensorFile, name: string): number {
  const v = readShaped(tf, name, []);
  return v[0]!;
}

/** A config field that, when present, must equal what the tensors say. */
function agree(cfg: JsonCfg | undefined, field: string, want: number, file: string): void {
  const v = cfg?.json[field];
  if (v !== undefined && v !== want) throw new ItdError('mismatch', `${cfg!.path}: "${field}" is ${JSON.stringify(v)} but ${file} holds ${want}`, { file: cfg!.path, field });
}

export function readSparsify(tf: TensorFile, cfg: JsonCfg | undefined): ForeignSae {
  const [n, d] = dims2(tf, 'encoder.weight');
  const j = cfg?.json ?? {};
  agree(cfg, 'd_in', d, tf.path);
  if (j['num_latents'] !== 0) agree(cfg, 'num_latents', n, tf.path);
  else if (typeof j['expansion_factor'] === 'number' && j['expansion_factor'] * d !== n) {
    // sparsify: num_latents 0 means d_in * expansion_factor
    throw new ItdError('mismatch', `${cfg!.path}: num_latents 0 and expansion_factor ${j['expansion_factor']} mean ${j['expansion_factor'] * d} latents, but ${tf.path} holds ${n}`, { file: cfg!.path, field: 'expansion_factor' });
  }
  for (const f of ['skip_connection', 'transcode', 'embed_skip', 'gram_lookup'] as const) {
    if (j[f] === true) throw new ItdError('unsupported', `${cfg!.path}: "${f}": true is not supported (itd reads plain sparse autoencoders)`, { file: cfg!.path, field: f });
  }
  if (tf.has('W_skip')) throw new ItdError('unsupported', `${tf.path}: tensor "W_skip" (a skip connection) is not supported`, { file: tf.path, field: 'W_skip' });
  const activation = (j['activation'] ?? 'topk') as SaeActivation;
  if (!['topk', 'batchtopk', 'jumprelu', 'relu'].includes(activation)) {
    throw new ItdError(typeof activation === 'string' ? 'unsupported' : 'config', `${cfg?.path ?? tf.path}: "activation" must be topk, batchtopk, jumprelu or relu, got ${JSON.stringify(activation)}`, { file: cfg?.path ?? tf.path, field: 'activation' });
  }
  return {
    format: 'sparsify', n, d, activation,
    k: j['k'] as number | undefined,
    threshold: j['threshold'] as number | undefined,
    weights: {
      wEnc: tf.readF32('encoder.weight'),
      bEnc: readShaped(tf, 'encoder.bias', [n]),
      wDec: readShaped(tf, 'W_dec', [n, d]),
      bPre: readShaped(tf, 'b_dec', [d]),
      ...(activation === 'jumprelu' ? { thresholds: readShaped(tf, 'threshold', [n]) } : {}),
    },
    extra: {},
  };
}

/** SAELens architectures whose forward itd reproduces, and the activation that does it. */
const SAELENS_ARCH: Record<string, SaeActivation> = { standard: 'relu', jumprelu: 'jumprelu', topk: 'topk' };

export function readSaeLens(tf: TensorFile, cfg: JsonCfg | undefined): ForeignSae {
  if (!cfg) throw new ItdError('config', `${tf.path}: a SAELens SAE needs its cfg.json (d_in, d_sae, architecture) beside it`, { file: tf.path });
  const j = cfg.json;
  const [d, n] = dims2(tf, 'W_enc');
  agree(cfg, 'd_in', d, tf.path);
  agree(cfg, 'd_sae', n, tf.path);
  const arch = String(j['architecture'] ?? 'standard');
  // SAELens < 6 wrote TopK SAEs as architecture "standard" with activation_fn_str "topk".
  const fn = j['activation_fn_str'] ?? j['activation_fn'];
  const activation = fn === 'topk' && arch === 'standard' ? 'topk' : SAELENS_ARCH[arch];
  if (!activation) throw new ItdError('unsupported', `${cfg.path}: SAELens architecture ${JSON.stringify(arch)} is not supported (only ${Object.keys(SAELENS_ARCH).join(', ')})`, { file: cfg.path, field: 'architecture' });
  const norm = j['normalize_activations'] ?? 'none';
  // "expected_average_only_in" is identity inside SAELens's forward (its scale is applied outside, by the activation store).
  if (![null, 'none', false, 'expected_average_only_in', true].includes(norm as string | boolean | null)) {
    throw new ItdError('unsupported', `${cfg.path}: normalize_activations ${JSON.stringify(norm)} rescales each token at run time; itd supports "none" and "expected_average_only_in"`, { file: cfg.path, field: 'normalize_activations' });
  }
  if (j['finetuning_scaling_factor'] === true) throw new ItdError('unsupported', `${cfg.path}: "finetuning_scaling_factor": true is not supported`, { file: cfg.path, field: 'finetuning_scaling_factor' });
  const rescale = j['rescale_acts_by_decoder_norm'] === true;
  if (rescale && activation !== 'topk') throw new ItdError('unsupported', `${cfg.path}: "rescale_acts_by_decoder_norm" is supported for topk SAEs only`, { file: cfg.path, field: 'rescale_acts_by_decoder_norm' });
  // SAELens drops an all-ones scaling_factor and refuses any other without finetuning_scaling_factor.
  if (tf.has('scaling_factor') && tf.readF32('scaling_factor').some((v) => v !== 1)) {
    throw new ItdError('unsupported', `${tf.path}: tensor "scaling_factor" is not all ones (a finetuning scaling factor is not supported)`, { file: tf.path, field: 'scaling_factor' });
  }
  const kwargs = j['activation_fn_kwargs'] as Record<string, unknown> | undefined;
  const k = activation === 'topk' ? (j['k'] ?? kwargs?.['k']) : undefined;
  if (activation === 'topk' && k === undefined) throw configError(cfg.path, 'k', 'is required for a topk SAE');
  const weights: SaeWeights = {
    wEnc: readTransposed(tf, 'W_enc', d, n),
    bEnc: readShaped(tf, 'b_enc', [n]),
    wDec: readShaped(tf, 'W_dec', [n, d]),
    bPre: readShaped(tf, 'b_dec', [d]),
    ...(activation === 'jumprelu' ? { thresholds: jumpThresholds(tf, n) } : {}),
  };
  // apply_b_dec_to_input false (Gemma Scope): pre = W_enc x + b_enc = W_enc (x - b_dec) + (b_enc + W_enc b_dec).
  if (j['apply_b_dec_to_input'] === false) foldInputBias(weights, n, d);
  if (rescale) foldDecoderNorm(weights, n, d);
  return { format: 'saelens', n, d, activation, k: k as number | undefined, weights, extra: { source_format: 'saelens', source_architecture: arch, ...hookOf(j) } };
}

/** SAELens hook_name (metadata in >= 6, top level before); a Hugging Face CLIP block name also gives itd's layer. */
function hookOf(j: Record<string, unknown>): Record<string, unknown> {
  const hook = ((j['metadata'] ?? {}) as Record<string, unknown>)['hook_name'] ?? j['hook_name'];
  if (typeof hook !== 'string') return {};
  const m = /^(?:text_model\.)?encoder\.layers\.(\d+)$/.exec(hook);
  return { hookpoint: hook, ...(m ? { layer: Number(m[1]) } : {}) };
}

/** JumpReLU thresholds: `threshold`, or a training checkpoint's `log_threshold` (SAELens keeps exp of it). */
function jumpThresholds(tf: TensorFile, n: number): Float32Array {
  if (!tf.has('threshold') && tf.has('log_threshold')) return readShaped(tf, 'log_threshold', [n]).map(Math.exp);
  return readShaped(tf, 'threshold', [n]);
}

/**
 * b_enc += W_enc b_dec, so itd's `x - b_pre` centring matches an SAE that does not centre its input.
 * A one-time O(n D) pass at load (the same order as reading the weights), accumulated in float64.
 */
function foldInputBias(w: SaeWeights, n: number, d: number): void {
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let t = 0; t < d; t++) s += w.wEnc[j * d + t]! * w.bPre[t]!;
    w.bEnc[j] = w.bEnc[j]! + s;
  }
}

/**
 * SAELens TopK with rescale_acts_by_decoder_norm: z = TopK(pre * |W_dec[j]|) and x_hat = sum z_j
 * W_dec[j] / |W_dec[j]| + b_dec. Scaling W_enc[j], b_enc[j] by |W_dec[j]| and W_dec[j] by its inverse
 * gives the same z and x_hat from itd's plain forward (another one-time O(n D) pass).
 */
function foldDecoderNorm(w: SaeWeights, n: number, d: number): void {
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let t = 0; t < d; t++) s += w.wDec[j * d + t]! ** 2;
    const norm = Math.sqrt(s);
    if (norm === 0) continue; // a zero decoder row decodes nothing either way
    for (let t = 0; t < d; t++) {
      w.wEnc[j * d + t]! *= norm;
      w.wDec[j * d + t]! /= norm;
    }
    w.bEnc[j]! *= norm;
  }
}

export function readOpenAi(tf: TensorFile, cfg: JsonCfg | undefined, config: JsonCfg | undefined): ForeignSae {
  const [n, d] = dims2(tf, 'encoder.weight');
  // The official ItD SAE's config.json: {n_dirs_local, d_model, k, auxk, dead_steps_threshold}.
  agree(config, 'n_dirs_local', n, tf.path);
  agree(config, 'd_model', d, tf.path);
  const act = tf.values?.get('activation');
  // openai/sparse_autoencoder's from_state_dict: "TopK" also switches on a per-token input LayerNorm
  // (and its inverse on the output), which itd's linear SAE cannot reproduce.
  if (act === 'TopK') {
    throw new ItdError('unsupported', `${tf.path}: an openai/sparse_autoencoder TopK state dict normalizes every input token (LayerNorm in, its inverse out); itd supports SAEs without per-token normalization`, { file: tf.path, field: 'activation' });
  }
  if (act !== undefined && act !== 'ReLU') {
    throw new ItdError('unsupported', `${tf.path}: OpenAI activation ${JSON.stringify(act)} is not supported (only ReLU)`, { file: tf.path, field: 'activation' });
  }
  const k = cfg?.json['k'] ?? config?.json['k'];
  return {
    format: 'openai', n, d,
    activation: act === 'ReLU' ? 'relu' : 'topk',
    k: k as number | undefined,
    weights: {
      wEnc: tf.readF32('encoder.weight'),
      bEnc: readShaped(tf, 'latent_bias', [n]),
      wDec: readTransposed(tf, 'decoder.weight', d, n),
      bPre: readShaped(tf, 'pre_bias', [d]),
    },
    extra: { source_format: 'openai' },
  };
}

export function readDictionaryLearning(tf: TensorFile, config: JsonCfg | undefined): ForeignSae {
  const [n, d] = dims2(tf, 'encoder.weight');
  const trainer = (config?.json['trainer'] ?? {}) as Record<string, unknown>;
  const cls = trainer['dict_class'];
  if (config) {
    if (trainer['activation_dim'] !== undefined && trainer['activation_dim'] !== d) throw new ItdError('mismatch', `${config.path}: trainer.activation_dim is ${JSON.stringify(trainer['activation_dim'])} but ${tf.path} holds ${d}`, { file: config.path, field: 'trainer.activation_dim' });
    if (trainer['dict_size'] !== undefined && trainer['dict_size'] !== n) throw new ItdError('mismatch', `${config.path}: trainer.dict_size is ${JSON.stringify(trainer['dict_size'])} but ${tf.path} holds ${n}`, { file: config.path, field: 'trainer.dict_size' });
  }
  if (cls === undefined) {
    throw new ItdError('config', `${tf.path}: a dictionary_learning SAE is a BatchTopKSAE or an AutoEncoderTopK (same tensors, different encode); put its config.json (trainer.dict_class) beside it`, { file: tf.path, field: 'trainer.dict_class' });
  }
  if (cls !== 'BatchTopKSAE' && cls !== 'AutoEncoderTopK') {
    throw new ItdError('unsupported', `${config!.path}: dict_class ${JSON.stringify(cls)} is not supported (only BatchTopKSAE and AutoEncoderTopK)`, { file: config!.path, field: 'trainer.dict_class' });
  }
  // Newer dictionary_learning state dicts carry their constructor arguments (PyTorchModelHubMixin).
  const decoderType = tf.values?.get('_hub_mixin_config.decoder_type');
  if (decoderType !== undefined && decoderType !== 'linear') {
    throw new ItdError('unsupported', `${tf.path}: decoder_type ${JSON.stringify(decoderType)} is not supported (only "linear")`, { file: tf.path, field: '_hub_mixin_config.decoder_type' });
  }
  const k = scalar(tf, 'k');
  const weights: SaeWeights = {
    wEnc: tf.readF32('encoder.weight'),
    bEnc: readShaped(tf, 'encoder.bias', [n]),
    wDec: readTransposed(tf, 'decoder.weight', d, n),
    bPre: readShaped(tf, 'b_dec', [d]),
  };
  // BatchTopKSAE.encode (use_threshold): f = ReLU(pre); f * (f > threshold). threshold -1 (never
  // calibrated) leaves plain ReLU, which is what dictionary_learning then computes too.
  return cls === 'BatchTopKSAE'
    ? { format: 'dictionary_learning', n, d, activation: 'batchtopk', k, threshold: scalar(tf, 'threshold'), weights, extra: { source_format: 'dictionary_learning' } }
    : { format: 'dictionary_learning', n, d, activation: 'topk', k, weights, extra: { source_format: 'dictionary_learning' } };
}

/** cfg.json (sparsify, SAELens, itd) and config.json (dictionary_learning, official ItD) beside a weights file. */
export function configsBeside(file: string): { cfg?: JsonCfg; config?: JsonCfg } {
  const dir = path.dirname(file);
  const cfg = readJsonCfg(path.join(dir, 'cfg.json'));
  const config = readJsonCfg(path.join(dir, 'config.json'));
  return { ...(cfg ? { cfg } : {}), ...(config ? { config } : {}) };
}
