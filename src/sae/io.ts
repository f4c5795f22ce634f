/**
 * SAE files. itd writes the EleutherAI sparsify layout:
 *   SAE_DIR/sae.safetensors  encoder.weight [n, D], encoder.bias [n], W_dec [n, D], b_dec [D]
 *                            (+ threshold [n] for a jumprelu SAE: an itd extension)
 *   SAE_DIR/cfg.json         {d_in, num_latents, k, activation, multi_topk, normalize_decoder, ...}
 *
 * loadSae also reads SAELens, OpenAI / official ItD and dictionary_learning SAEs, from safetensors or
 * PyTorch zip checkpoints (.pt, .pth, .bin: see io/pickle.ts for what is refused); formats.ts
 * detects the layout and maps it onto itd's form.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ItdError } from '../errors.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { checkFile } from '../io/schema.js';
import { statInput } from '../io/files.js';
import { cachedSha256File } from '../io/hash.js';
import { writeSafetensors, writeSafetensorsAsync, type TensorIn } from '../io/safetensors.js';
import { isTorchPath, openTensorFile } from '../io/tensor-file.js';
import type { SessionOptions } from '../onnx/session.js';
import { configsBeside, detectFormat, readDictionaryLearning, readOpenAi, readSaeLens, readSparsify, type ForeignSae, type JsonCfg } from './formats.js';
import { SaeConfigFileSchema } from './cfg.js';
import { defaultConfig, isThresholdActivation, Sae, type SaeConfig } from './sae.js';

export const SAE_WEIGHTS = 'sae.safetensors';
export const SAE_CONFIG = 'cfg.json';

export interface LoadSaeOptions extends SessionOptions {
  /** k for files without a cfg.json (OpenAI layout). */
  k?: number;
}

/** Writes SAE_DIR/sae.safetensors then SAE_DIR/cfg.json, each atomically. */
export function saveSae(dir: string, sae: Sae): void {
  writeSafetensors(path.join(dir, SAE_WEIGHTS), saeTensors(dir, sae));
  saveSaeConfig(dir, sae);
}

/**
 * SAE_DIR/sae.safetensors as saveSae writes it, with the writes off the JS thread (e.g. while the SAE
 * is being evaluated); saveSaeConfig then completes the directory. The weights must not change until it resolves.
 */
export function saveSaeWeightsAsync(dir: string, sae: Sae): Promise<void> {
  return writeSafetensorsAsync(path.join(dir, SAE_WEIGHTS), saeTensors(dir, sae));
}

/** Writes SAE_DIR/cfg.json atomically. */
export function saveSaeConfig(dir: string, sae: Sae): void {
  writeJsonAtomic(path.join(dir, SAE_CONFIG), sae.cfg);
}

function saeTensors(dir: string, sae: Sae): Record<string, TensorIn> {
  fs.mkdirSync(dir, { recursive: true });
  const { n, d } = sae;
  const tensors: Record<string, TensorIn> = {
    'encoder.weight': { dtype: 'F32', shape: [n, d], data: sae.wEnc },
    'encoder.bias': { dtype: 'F32', shape: [n], data: sae.bEnc },
    W_dec: { dtype: 'F32', shape: [n, d], data: sae.wDec },
    b_dec: { dtype: 'F32', shape: [d], data: sae.bPre },
  };
  if (sae.thresholds) tensors['threshold'] = { dtype: 'F32', shape: [n], data: sae.thresholds };
  return tensors;
}

/** Weight files by framework, in the order a directory is searched. */
const KNOWN_WEIGHTS = ['sae.safetensors', 'sae_weights.safetensors', 'ae.pt', 'state_dict.pth'];

const isWeightsFile = (f: string): boolean => f.endsWith('.safetensors') || isTorchPath(f);

/** The weights file of an SAE directory or file path. */
export function saeWeightsPath(p: string): string {
  if (!statInput(p, 'an SAE (directory or weights file)').isDirectory()) return p;
  const known = KNOWN_WEIGHTS.map((f) => path.join(p, f)).find((f) => fs.existsSync(f));
  if (known) return known;
  const any = fs.readdirSync(p).filter(isWeightsFile).sort();
  if (any.length === 1) return path.join(p, any[0]!);
  throw new ItdError('not_found', `${p}: no SAE weights (looked for ${KNOWN_WEIGHTS.join(', ')}; found ${any.length ? any.join(', ') : 'no .safetensors/.pt/.pth/.bin files'})`, { file: p });
}

/** 16-hex identity of an SAE: sha256 of every byte of its weights file (erasers record it); cached by file stat. */
export function saeIdentity(p: string): string {
  return cachedSha256File(saeWeightsPath(p)).slice(0, 16);
}

/** Loads an SAE directory or weights file in any layout formats.ts knows (see there). */
export function loadSae(p: string, opts: LoadSaeOptions = {}): Sae {
  const file = saeWeightsPath(p);
  const { cfg, config } = configsBeside(file);
  const tf = openTensorFile(file);
  try {
    const format = detectFormat(tf, cfg);
    const foreign =
      format === 'sparsify' ? readSparsify(tf, cfg)
      : format === 'saelens' ? readSaeLens(tf, cfg)
      : format === 'openai' ? readOpenAi(tf, cfg, config)
      : readDictionaryLearning(tf, config);
    return new Sae(resolveCfg(file, cfg, foreign, opts.k), foreign.weights, opts);
  } finally {
    tf.close();
  }
}

/** itd's cfg.json for a loaded SAE: its own cfg.json fields (sparsify/itd files), the layout's k and thresholds. */
function resolveCfg(file: string, cfg: JsonCfg | undefined, f: ForeignSae, kOpt?: number): SaeConfig {
  const { n, d: D, activation } = f;
  const where = cfg?.path ?? file;
  const k = isThresholdActivation(activation) && f.k === undefined ? n : (f.k ?? kOpt);
  if (k === undefined) throw new ItdError('config', `${file}: k unknown: no ${SAE_CONFIG} or config.json with "k" beside it; pass the k option`, { file, field: 'k' });
  if (!Number.isInteger(k) || k <= 0 || k > n) throw new ItdError('config', `${where}: "k" must be an integer in [1, ${n}], got ${JSON.stringify(k)}`, { file: where, field: 'k' });
  if (activation === 'batchtopk' && !(typeof f.threshold === 'number' && Number.isFinite(f.threshold))) {
    throw new ItdError('config', `${where}: a batchtopk SAE needs a finite "threshold", got ${JSON.stringify(f.threshold)}`, { file: where, field: 'threshold' });
  }
  const own: Record<string, unknown> = f.format === 'sparsify' && cfg ? checkFile(SaeConfigFileSchema, cfg.json, cfg.path) : {};
  const normalization = own['normalization'] ?? 'none';
  if (normalization !== 'none') throw new ItdError('unsupported', `${where}: "normalization" ${JSON.stringify(normalization)} is not supported (only "none")`, { file: where, field: 'normalization' });
  return {
    ...defaultConfig(D, n, k, activation),
    ...own,
    ...f.extra,
    d_in: D, num_latents: n, k, activation, multi_topk: false,
    ...(activation === 'batchtopk' ? { threshold: f.threshold } : {}),
  };
}

