/**
 * SAE files. itd writes the EleutherAI sparsify layout:
 *   SAE_DIR/sae.safetensors  encoder.weight [n, D], encoder.bias [n], W_dec [n, D], b_dec [D]
 *   SAE_DIR/cfg.json         {d_in, num_latents, k, activation, multi_topk, normalize_decoder, ...}
 *
 * loadSae also reads the OpenAI / official-ItD key layout: encoder.weight [n, D], decoder.weight [D, n],
 * pre_bias [D], latent_bias [n] (k from cfg.json beside the file, else the `k` option). Their
 * checkpoints are PyTorch pickles, which itd never loads; convert once where you trust the file:
 *
 *   python -c "import torch; from safetensors.torch import save_file; sd=torch.load('ae.pt', map_location='cpu'); save_file({k: v.contiguous() for k,v in sd.items()}, 'sae.safetensors')"
 */
import fs from 'node:fs';
import { asObject, optBoolean, optInt, optNumber, optOneOf, optString } from '../io/fields.js';
import { readJsonObject, statInput } from '../io/files.js';
import { cachedSha256File } from '../io/hash.js';
import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import type { SessionOptions } from '../onnx/session.js';
import { defaultConfig, Sae, type SaeActivation, type SaeConfig, type SaeWeights } from './sae.js';

export const SAE_WEIGHTS = 'sae.safetensors';
export const SAE_CONFIG = 'cfg.json';

export interface LoadSaeOptions extends SessionOptions {
  /** k for files without a cfg.json (OpenAI layout). */
  k?: number;
}

/** Writes SAE_DIR/sae.safetensors then SAE_DIR/cfg.json, each atomically. */
export function saveSae(dir: string, sae: Sae): void {
  fs.mkdirSync(dir, { recursive: true });
  const { n, d } = sae;
  writeSafetensors(path.join(dir, SAE_WEIGHTS), {
    'encoder.weight': { dtype: 'F32', shape: [n, d], data: sae.wEnc },
    'encoder.bias': { dtype: 'F32', shape: [n], data: sae.bEnc },
    W_dec: { dtype: 'F32', shape: [n, d], data: sae.wDec },
    b_dec: { dtype: 'F32', shape: [d], data: sae.bPre },
  });
  writeJsonAtomic(path.join(dir, SAE_CONFIG), sae.cfg);
}

/** The weights file of an SAE directory or file path. */
export function saeWeightsPath(p: string): string {
  if (!statInput(p, 'an SAE (directory or .safetensors file)').isDirectory()) return p;
  const direct = path.join(p, SAE_WEIGHTS);
  if (fs.existsSync(direct)) return direct;
  const any = fs.readdirSync(p).filter((f) => f.endsWith('.safetensors')).sort();
  if (any.length === 1) return path.join(p, any[0]!);
  throw new Error(`${p}: no ${SAE_WEIGHTS} (found ${any.length ? any.join(', ') : 'no .safetensors files'})`);
}

/** 16-hex identity of an SAE: sha256 of every byte of its weights file (erasers record it); cached by file stat. */
export function saeIdentity(p: string): string {
  return cachedSha256File(saeWeightsPath(p)).slice(0, 16);
}

/** Loads an SAE directory or .safetensors file in the sparsify or OpenAI layout. */
export function loadSae(p: string, opts: LoadSaeOptions = {}): Sae {
  const file = saeWeightsPath(p);
  const cfgPath = path.join(path.dirname(file), SAE_CONFIG);
  const cfgJson = fs.existsSync(cfgPath) ? readCfg(cfgPath) : undefined;
  const st = SafetensorsFile.open(file);
  try {
    const layout = st.has('W_dec') ? 'sparsify' : st.has('decoder.weight') ? 'openai' : undefined;
    if (!layout) {
      throw new Error(`${file}: neither the sparsify layout (W_dec, b_dec, encoder.*) nor the OpenAI layout (decoder.weight, pre_bias, latent_bias, encoder.weight); has ${st.names().join(', ')}`);
    }
    const enc = st.info(need(st, 'encoder.weight'));
    if (enc.shape.length !== 2) throw new Error(`${file}: tensor "encoder.weight" must be [n, D], got ${JSON.stringify(enc.shape)}`);
    const [n, D] = enc.shape as [number, number];
    const weights = layout === 'sparsify' ? readSparsify(st, n, D) : readOpenAi(st, n, D);
    const cfg = resolveCfg(file, cfgPath, cfgJson, n, D, opts.k);
    return new Sae(cfg, weights, opts);
  } finally {
    st.close();
  }
}

function need(st: SafetensorsFile, name: string): string {
  if (!st.has(name)) throw new Error(`${st.path}: missing tensor "${name}" (has ${st.names().join(', ')})`);
  return name;
}

/** Reads a tensor and checks its shape. */
function readShaped(st: SafetensorsFile, name: string, shape: number[]): Float32Array {
  const got = st.info(need(st, name)).shape;
  if (got.length !== shape.length || got.some((v, i) => v !== shape[i])) {
    throw new Error(`${st.path}: tensor "${name}" has shape ${JSON.stringify(got)}, expected ${JSON.stringify(shape)}`);
  }
  return st.readF32(name);
}

function readSparsify(st: SafetensorsFile, n: number, D: number): SaeWeights {
  return {
    wEnc: st.readF32('encoder.weight'),
    bEnc: readShaped(st, 'encoder.bias', [n]),
    wDec: readShaped(st, 'W_dec', [n, D]),
    bPre: readShaped(st, 'b_dec', [D]),
  };
}

/** OpenAI stores decoder.weight as [D, n] (columns are latents); itd keeps latent rows [n, D]. */
function readOpenAi(st: SafetensorsFile, n: number, D: number): SaeWeights {
  const dec = readShaped(st, 'decoder.weight', [D, n]);
  const wDec = new Float32Array(n * D);
  for (let t = 0; t < D; t++) for (let j = 0; j < n; j++) wDec[j * D + t] = dec[t * n + j]!;
  return {
    wEnc: st.readF32('encoder.weight'),
    bEnc: readShaped(st, 'latent_bias', [n]),
    wDec,
    bPre: readShaped(st, 'pre_bias', [D]),
  };
}

/** cfg.json as an object whose known fields have their documented types (errors name file and field). */
function readCfg(cfgPath: string): Record<string, unknown> {
  const o = readJsonObject(cfgPath, 'SAE config');
  for (const key of ['d_in', 'num_latents', 'k']) optInt(o, key, cfgPath, 1);
  optInt(o, 'layer', cfgPath, 0);
  optNumber(o, 'threshold', cfgPath);
  for (const key of ['hookpoint', 'model_id']) optString(o, key, cfgPath);
  optOneOf(o, 'activation', cfgPath, ['topk', 'batchtopk']);
  optOneOf(o, 'normalization', cfgPath, ['none']);
  for (const key of ['normalize_decoder', 'multi_topk']) optBoolean(o, key, cfgPath);
  if (o['training'] !== undefined) asObject(o['training'], cfgPath, 'training');
  return o;
}

/** Merges cfg.json (if any) with the tensor shapes; a field that contradicts the weights is an error. */
function resolveCfg(file: string, cfgPath: string, json: Record<string, unknown> | undefined, n: number, D: number, kOpt?: number): SaeConfig {
  const mismatch = (field: string, want: number) => {
    if (json && json[field] !== undefined && json[field] !== want) {
      throw new Error(`${cfgPath}: "${field}" is ${JSON.stringify(json[field])} but ${file} holds ${want}`);
    }
  };
  mismatch('d_in', D);
  mismatch('num_latents', n);
  const k = json?.['k'] ?? kOpt;
  if (k === undefined) throw new Error(`${file}: k unknown: no ${SAE_CONFIG} beside it; pass the k option`);
  if (!Number.isInteger(k) || (k as number) <= 0 || (k as number) > n) {
    throw new Error(`${json?.['k'] !== undefined ? cfgPath : file}: "k" must be an integer in [1, ${n}], got ${JSON.stringify(k)}`);
  }
  const activation = (json?.['activation'] ?? 'topk') as SaeActivation;
  if (activation !== 'topk' && activation !== 'batchtopk') {
    throw new Error(`${cfgPath}: "activation" must be "topk" or "batchtopk", got ${JSON.stringify(activation)}`);
  }
  const threshold = json?.['threshold'];
  if (activation === 'batchtopk' && (typeof threshold !== 'number' || !Number.isFinite(threshold))) {
    throw new Error(`${cfgPath}: a batchtopk SAE needs a finite "threshold", got ${JSON.stringify(threshold)}`);
  }
  const normalization = json?.['normalization'] ?? 'none';
  if (normalization !== 'none') throw new Error(`${cfgPath}: "normalization" ${JSON.stringify(normalization)} is not supported (only "none")`);
  return { ...defaultConfig(D, n, k as number, activation), ...json, d_in: D, num_latents: n, k: k as number, activation, multi_topk: false };
}
