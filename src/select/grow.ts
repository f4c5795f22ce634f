/**
 * Growing the dictionary for concepts an SAE never saw (zero-shot). A new name's tokens are
 * reconstructed by generic latents that also fire on ordinary captions, so selecting among the
 * existing latents cannot separate it. Instead, append one latent per token of the name, every
 * existing latent frozen (their rows are copied unchanged):
 *
 *   d_j   = unit(mean_c(x_j) - mean_n(x))      x_j: the name's j-th token in the build prompts,
 *                                              mean_n: over the neutral prompts' tokens
 *   pre_j = alpha_j (d_j . (x - b_pre) - c_j)  c_j = max over neutral (and retained-concept) tokens
 *                                              of d_j . (x - b_pre), so the latent never fires on them;
 *                                              alpha_j puts its mean on the concept's tokens at
 *                                              their mean top-1 SAE activation, so it enters TopK
 *   encoder row alpha_j d_j, bias -alpha_j c_j, decoder row d_j (unit, as every decoder row).
 * The grown SAE is a new file (its id changes); erasers built on the old one keep working with it.
 */
import type { TextModel } from '../encoder/index.js';
import { ItdError } from '../errors.js';
import { Graph } from '../onnx/graph.js';
import { createSession, f32, f32Data } from '../onnx/session.js';
import { Sae } from '../sae/index.js';
import { layerRows, nameTokens, type LayerRows } from './select.js';

export interface GrownLatent {
  concept: string;
  latent: number; // id in the grown SAE
  token: number; // the name's token id it detects
}

/**
 * A copy of `sae` with latents grown for each concept (see the module comment) and their ids.
 * `neutral`: the neutral prompts' block outputs (mean_n and c_j); `retained`: the retained concepts'
 * prompts, whose tokens also set c_j, so a latent grown for a sub-word token that a retained name
 * shares never fires on that name (a token as strong in the retained prompts gets no latent).
 */
export async function growSae(model: TextModel, sae: Sae, layer: number, concepts: { name: string; prompts: string[] }[], neutralPrompts: string[] | LayerRows, retained?: LayerRows): Promise<{ sae: Sae; grown: GrownLatent[] }> {
  if (sae.activation !== 'topk') throw new ItdError('unsupported', 'growing latents needs a TopK SAE', { field: 'sae' });
  const neutral = Array.isArray(neutralPrompts) ? await layerRows(model, layer, neutralPrompts) : neutralPrompts;
  const D = sae.d;
  // Each (concept, name token)'s rows in the concept's prompts.
  const dirs: { concept: string; token: number; rows: Float32Array[] }[] = [];
  for (const c of concepts) {
    const own = new Map<number, (typeof dirs)[number]>();
    for (const tok of new Set(nameTokens(model, c.name))) own.set(tok, { concept: c.name, token: tok, rows: [] });
    const rows = await layerRows(model, layer, c.prompts);
    rows.tokenIds.forEach((tok, r) => own.get(tok)?.rows.push(rows.x.subarray(r * D, (r + 1) * D)));
    dirs.push(...own.values());
  }
  const used = dirs.filter((d) => d.rows.length > 0);
  if (used.length === 0) return { sae, grown: [] };
  const nn = neutral.offsets.at(-1)!;
  const neutralMean = new Float64Array(D);
  for (let r = 0; r < nn; r++) for (let e = 0; e < D; e++) neutralMean[e]! += neutral.x[r * D + e]!;
  const g = used.length;
  const w = new Float32Array(g * D);
  used.forEach((d, j) => {
    const mean = new Float64Array(D);
    for (const x of d.rows) for (let e = 0; e < D; e++) mean[e]! += x[e]! / d.rows.length;
    let norm = 0;
    for (let e = 0; e < D; e++) norm += (mean[e]! - neutralMean[e]! / nn) ** 2;
    for (let e = 0; e < D; e++) w[j * D + e] = (mean[e]! - neutralMean[e]! / nn) / Math.sqrt(norm);
  });
  // Projections d_j . (x - b_pre): the maximum over neutral (and retained) tokens, and the concept tokens' mean with their top-1 activation.
  const cMax = new Float64Array(g).fill(-Infinity);
  for (const neg of retained ? [neutral, retained] : [neutral]) {
    const rows = neg.offsets.at(-1)!;
    const p = await projections(neg.x.subarray(0, rows * D), rows, w, g, sae.bPre); // [rows, g]
    for (let r = 0; r < rows; r++) for (let j = 0; j < g; j++) cMax[j] = Math.max(cMax[j]!, p[r * g + j]!);
  }
  const conceptProj = new Float64Array(g);
  const top1 = new Float64Array(g);
  for (const [j, d] of used.entries()) {
    const x = concatRows(d.rows, D);
    const z = await sae.encode(x, d.rows.length);
    const p = await projections(x, d.rows.length, w, g, sae.bPre);
    for (let r = 0; r < d.rows.length; r++) {
      conceptProj[j]! += p[r * g + j]! / d.rows.length;
      top1[j]! += z.values[r * z.k]! / d.rows.length;
    }
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

/** (x - b_pre) W^T for x [rows, D] and the g unit directions W [g, D]: [rows, g], as one onnxruntime Gemm. */
async function projections(x: Float32Array, rows: number, w: Float32Array, g: number, bPre: Float32Array): Promise<Float32Array> {
  const D = bPre.length;
  const graph = new Graph('grow-projections');
  const centred = graph.op('Sub', [graph.input('x', 'float32', [rows, D]), graph.initializer('b_pre', { type: 'float32', dims: [D], data: bPre })]);
  graph.output(graph.op('Gemm', [centred, graph.initializer('w', { type: 'float32', dims: [g, D], data: w })], { transB: 1 }), 'float32', [rows, g], 'p');
  const session = await createSession(graph.toModel());
  try {
    return f32Data((await session.run({ x: f32(x, [rows, D]) }))['p'], 'p');
  } finally {
    await session.release();
  }
}

function concatRows(rows: Float32Array[], D: number): Float32Array {
  const x = new Float32Array(rows.length * D);
  rows.forEach((r, i) => x.set(r, i * D));
  return x;
}
