/**
 * Interpret: what the SAE's latents say about prompts (per-token top latents) and, the other way
 * round, which collected tokens fire a latent most (from an activation collection).
 */
import path from 'node:path';
import type { TextModel } from '../encoder/index.js';
import { openActivations } from '../collect/dataset.js';
import { SafetensorsFile } from '../io/safetensors.js';
import type { Sae } from '../sae/index.js';
import { promptCodes } from './select.js';

export interface TokenFeatures {
  position: number; // of the real token (CLIP 1..len-1: BOS is never shown; T5 0..len-1)
  token: string;
  latents: { latent: number; value: number }[]; // descending
}

export async function tokenFeatures(model: TextModel, sae: Sae, layer: number, prompt: string, top = 8): Promise<TokenFeatures[]> {
  const [codes] = await promptCodes(model, sae, layer, [prompt]);
  const strings = model.tokenizer.tokenStrings(codes!.tokens);
  return codes!.tokens.map((_, r) => {
    const latents: { latent: number; value: number }[] = [];
    for (let j = 0; j < codes!.k && latents.length < top; j++) {
      const value = codes!.values[r * codes!.k + j]!;
      if (value > 0) latents.push({ latent: codes!.indices[r * codes!.k + j]!, value });
    }
    return { position: r + model.tokenizer.leadingSpecials, token: strings[r]!, latents }; // real tokens start after CLIP's BOS, at 0 for T5
  });
}

export interface LatentExample {
  value: number; // pre-activation of the latent on this token
  prompt: string;
  promptIndex: number;
  position: number;
  tokenId: number;
}

/**
 * The `top` collected tokens with the largest pre-activation of `latent` (one SAE row: cost
 * independent of the SAE width), with their prompts from the collection manifest.
 */
export async function explainLatent(sae: Sae, actsDir: string, latent: number, top = 20, chunkRows = 1 << 15): Promise<LatentExample[]> {
  if (!Number.isInteger(latent) || latent < 0 || latent >= sae.n) throw new Error(`--latent ${latent} is outside 0..${sae.n - 1}`);
  const acts = openActivations(actsDir);
  try {
    if (!acts.meta) throw new Error(`${actsDir}: explain needs a collection directory (manifest.json lists the prompts)`);
    if (acts.d !== sae.d) throw new Error(`${actsDir}: activations have D=${acts.d}, the SAE expects ${sae.d}`);
    const best: { value: number; row: number }[] = [];
    const sel = Int32Array.of(latent);
    for (let s = 0; s < acts.rows; s += chunkRows) {
      const r = Math.min(chunkRows, acts.rows - s);
      const pre = await sae.encodePre(acts.readRange(s, r), r, sel); // [r, 1]
      for (let i = 0; i < r; i++) best.push({ value: pre[i]!, row: s + i });
      best.sort((a, b) => b.value - a.value);
      best.length = Math.min(best.length, top);
    }
    const meta = rowMeta(actsDir, acts.meta.shards);
    return best.map(({ value, row }) => {
      const m = meta(row);
      return { value, prompt: acts.meta!.prompts?.[m.promptIndex] ?? '', ...m };
    });
  } finally {
    acts.close();
  }
}

/** Row -> (prompt index, position, token id) from the shards' index tensors. */
function rowMeta(dir: string, shards: { file: string; rows: number }[]) {
  const cache = new Map<number, { p: Int32Array; pos: Int32Array; tok: Int32Array }>();
  const starts: number[] = [];
  shards.reduce((acc, sh) => (starts.push(acc), acc + sh.rows), 0);
  return (row: number) => {
    let i = starts.length - 1;
    while (starts[i]! > row) i--;
    let t = cache.get(i);
    if (!t) {
      const f = SafetensorsFile.open(path.join(dir, shards[i]!.file));
      t = { p: f.readI32('prompt_index'), pos: f.readI32('position'), tok: f.readI32('token_id') };
      f.close();
      cache.set(i, t);
    }
    const o = row - starts[i]!;
    return { promptIndex: t.p[o]!, position: t.pos[o]!, tokenId: t.tok[o]! };
  };
}
