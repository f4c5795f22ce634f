/**
 * Growing the dictionary for concepts an SAE never saw (zero-shot). A new name's tokens are
 * reconstructed by generic latents that also fire on ordinary captions, so selecting among the
 * existing latents cannot separate it. Instead, append one latent per token of the name, every
 * existing latent frozen (their rows are copied unchanged):
 *
 *   d_j   = unit(mean_c(x_j) - mean_n(x))      x_j: the name's j-th token in the build prompts,
 *                                              mean_n: over the neutral prompts' tokens
 *   pre_j = alpha_j (d_j . (x - b_pre) - c_j)  c_j = max over neutral tokens of d_j . (x - b_pre),
 *                                              so the latent never fires on the neutral slice;
 *                                              alpha_j puts its mean on the concept's tokens at
 *                                              their mean top-1 SAE activation, so it enters TopK
 *   encoder row alpha_j d_j, bias -alpha_j c_j, decoder row d_j (unit, as every decoder row).
 * The grown SAE is a new file (its id changes); erasers built on the old one keep working with it.
 */
import { tokenRowBatches, type TextModel } from '../encoder/index.js';
import { ItdError } from '../errors.js';
import { Sae } from '../sae/index.js';
import { nameTokens } from './select.js';

export interface GrownLatent {
  concept: string;
  latent: number; // id in the grown SAE
  token: number; // the name's token id it detects
}

/** Block-`layer` rows of the prompts' real tokens with their token ids, batch by batch. */
async function forEachRow(model: TextModel, layer: number, prompts: string[], fn: (x: Float32Array, tokenId: number) => void): Promise<void> {
  const D = model.config.hiddenSize;
  for await (const b of tokenRowBatches(model, prompts, layer)) b.tokenIds.forEach((id, i) => fn(b.x.subarray(i * D, (i + 1) * D), id));
}

/** A copy of `sae` with latents grown for each concept (see the module comment) and their ids. */
export async function growSae(model: TextModel, sae: Sae, layer: number, concepts: { name: string; prompts: string[] }[], neutral: string[]): Promise<{ sae: Sae; grown: GrownLatent[] }> {
  if (sae.activation !== 'topk') throw new ItdError('unsupported', 'growing latents needs a TopK SAE', { field: 'sae' });
  const D = sae.d;
  // Mean activation of each (concept, name token) over the concept's prompts.
  const dirs: { concept: string; token: number; sum: Float64Array; n: number }[] = [];
  for (const c of concepts) {
    const ids = [...nameTokens(model, c.name)];
    const own = new Map<number, (typeof dirs)[number]>();
    for (const tok of new Set(ids)) {
      const d = { concept: c.name, token: tok, sum: new Float64Array(D), n: 0 };
      own.set(tok, d);
      dirs.push(d);
    }
    await forEachRow(model, layer, c.prompts, (x, tok) => {
      const d = own.get(tok);
      if (!d) return;
      for (let e = 0; e < D; e++) d.sum[e]! += x[e]!;
      d.n++;
    });
  }
  const used = dirs.filter((d) => d.n > 0);
  if (used.length === 0) return { sae, grown: [] };
  const neutralRows: Float32Array[] = [];
  const neutralMean = new Float64Array(D);
  await forEachRow(model, layer, neutral, (x) => {
    neutralRows.push(x.slice());
    for (let e = 0; e < D; e++) neutralMean[e]! += x[e]!;
  });
  const nn = neutralRows.length;
  const g = used.length;
  const w = new Float32Array(g * D);
  used.forEach((d, j) => {
    let norm = 0;
    for (let e = 0; e < D; e++) norm += (d.sum[e]! / d.n - neutralMean[e]! / nn) ** 2;
    for (let e = 0; e < D; e++) w[j * D + e] = (d.sum[e]! / d.n - neutralMean[e]! / nn) / Math.sqrt(norm);
  });
  // Projections d_j . (x - b_pre): the neutral maximum, and the concept tokens' mean with their top-1 activation.
  const proj = (x: Float32Array, j: number) => {
    let v = 0;
    for (let e = 0; e < D; e++) v += w[j * D + e]! * (x[e]! - sae.bPre[e]!);
    return v;
  };
  const cMax = new Float64Array(g).fill(-Infinity);
  for (const x of neutralRows) for (let j = 0; j < g; j++) cMax[j] = Math.max(cMax[j]!, proj(x, j));
  const conceptProj = new Float64Array(g);
  const top1 = new Float64Array(g);
  for (const [j, d] of used.entries()) {
    const rows: Float32Array[] = [];
    await forEachRow(model, layer, concepts.find((c) => c.name === d.concept)!.prompts, (x, tok) => {
      if (tok === d.token) rows.push(x.slice());
    });
    const z = await sae.encode(concatRows(rows, D), rows.length);
    rows.forEach((x, r) => {
      conceptProj[j]! += proj(x, j) / rows.length;
      top1[j]! += z.values[r * z.k]! / rows.length;
    });
  }
  const n = sae.n;
  const wEnc = new Float32Array((n + g) * D);
  const bEnc = new Float32Array(n + g);
  const wDec = new Float32Array((n + g) * D);
  wEnc.set(sae.wEnc);
  bEnc.set(sae.bEnc);
  wDec.set(sae.wDec);
  const grown: GrownLatent[] = [];
  used.forEach((d, j) => {
    const margin = conceptProj[j]! - cMax[j]!;
    if (!(margin > 0)) return; // this token is as common in captions as in the concept: no detector
    const alpha = Math.max(top1[j]!, 1e-3) / margin;
    for (let e = 0; e < D; e++) {
      wEnc[(n + grown.length) * D + e] = alpha * w[j * D + e]!;
      wDec[(n + grown.length) * D + e] = w[j * D + e]!;
    }
    bEnc[n + grown.length] = -alpha * cMax[j]!;
    grown.push({ concept: d.concept, latent: n + grown.length, token: d.token });
  });
  const m = n + grown.length;
  const cfg = { ...sae.cfg, num_latents: m, grown: { from: n, latents: grown } };
  return {
    sae: new Sae(cfg, { wEnc: wEnc.subarray(0, m * D), bEnc: bEnc.subarray(0, m), wDec: wDec.subarray(0, m * D), bPre: sae.bPre.slice() }),
    grown,
  };
}

function concatRows(rows: Float32Array[], D: number): Float32Array {
  const x = new Float32Array(rows.length * D);
  rows.forEach((r, i) => x.set(r, i * D));
  return x;
}
