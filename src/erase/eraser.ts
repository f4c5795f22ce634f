/**
 * Deactivate + classify: the ItD encode path.
 *
 *   h = output of encoder.layers[layer] for the 77-token prompt         [77, D]
 *   score = mean (or max: spec.scoreStat) over real tokens (1..len-1) of the mean over dims of Delta(h)^2   (gate.ts)
 *           (per-concept thresholds: max over concepts of the concept's own score / its scoreNorm)
 *   erase iff score >= threshold; otherwise h passes through untouched (bit-identical output)
 *   official:  h[p] = W_dec^T z'(h[p]) + b_pre for every p but BOS, z' = TopK codes with the
 *              selected latents multiplied by `scale` (the SAE error term is dropped)
 *   residual:  h[p] = h[p] + Delta(h[p]) for every p but BOS (the SAE error term is kept)
 * then the remaining blocks and the final LayerNorm run as usual.
 *
 * Disguised prompts ("zеbrа" with Cyrillic letters, "z e b r a", "z3br4"): the gate also scores
 * the prompt's canonical form (src/tokenizer/canonical.ts) whenever it tokenizes differently, and
 * erases when either form crosses the threshold; a prompt erased on its canonical form is encoded
 * from the canonical form (the edit needs the concept's own tokens to remove it). Prompts that pass
 * are encoded as typed, bit-identical to plain encode. `canonical: false` scores the typed form only.
 */
import type { TextModel } from '../encoder/index.js';
import { hookpointPart, loadTextModel, type PromptEncoding } from '../encoder/index.js';
import { ItdError } from '../errors.js';
import { Progress } from '../io/progress.js';
import { cleanText } from '../tokenizer/normalize.js';
import { Canonicalizer } from '../tokenizer/canonical.js';
import { loadSae, saeIdentity, type Sae } from '../sae/index.js';
import { erasedLatents, eraserId, loadEraser, perConceptGate, type EraserSpec } from '../select/eraser-file.js';
import { Gate } from './gate.js';

export type GatePolicy = 'gate' | 'always' | 'never';

export interface EraseOptions {
  batch?: number;
  /** 'gate' (default) erases prompts whose score crosses the threshold; 'always'/'never' override it. */
  policy?: GatePolicy;
  progress?: boolean;
  /** hidden_states (indices above the edited layer) to return from the edited run, e.g. what prompt_embeds needs. */
  hiddenStates?: readonly number[];
  /** [n]: erase exactly the prompts marked 1 (a multi-part eraser's joint decision), whatever this part's own score. */
  force?: Uint8Array;
}

export interface EraseResult extends PromptEncoding {
  erased: Uint8Array; // [n] 1 where the prompt was erased
  scores: Float32Array; // [n] gate score
  conceptScores: Float32Array; // [n, concepts] each concept's own score
  concepts: string[][]; // per prompt, the concepts that fired
  canonical: (string | null)[]; // per prompt, the canonical form encoded instead of it (null: encoded as typed)
}

export interface Decision {
  prompt: string;
  score: number;
  threshold: number | null;
  erased: boolean;
  concepts: string[];
  conceptScores: Record<string, number>;
  /** The canonical form, when it scored higher than the prompt as typed (and so decided). */
  canonical?: string;
}

export class ConceptEraser {
  private conceptCols: Int32Array[] = []; // per concept, its gate columns
  private conceptsOfCol: number[][] = []; // per gate column, the concepts that own it
  private canonicalizer = new Canonicalizer(); // knows the concept names (their spelling and word breaks)
  /** Per-concept thresholds: each concept's scoreNorm (Infinity where missing: added since calibration, never fires alone); undefined: one shared threshold. */
  private conceptNorms: Float64Array | undefined;

  private constructor(readonly model: TextModel, readonly sae: Sae, private specValue: EraserSpec, private gate: Gate, readonly canonical: boolean) {
    this.index();
  }

  private index(): void {
    this.conceptCols = this.specValue.concepts.map((c) => this.gate.columns(c.features.map((f) => f.latent)));
    this.conceptsOfCol = Array.from({ length: this.gate.size }, () => []);
    this.canonicalizer = new Canonicalizer(this.specValue.concepts.map((c) => c.name));
    this.conceptNorms = perConceptGate(this.specValue) ? Float64Array.from(this.specValue.concepts, (c) => c.scoreNorm ?? Infinity) : undefined;
    this.conceptCols.forEach((cols, c) => cols.forEach((j) => this.conceptsOfCol[j]!.push(c)));
  }

  /** Loads (or takes) model, SAE and eraser, and checks that the eraser was built for this pair. */
  static async load(opts: { model: string | TextModel; sae: string | Sae; eraser: string | EraserSpec; saeId?: string; canonical?: boolean }): Promise<ConceptEraser> {
    const spec = typeof opts.eraser === 'string' ? loadEraser(opts.eraser) : opts.eraser;
    const where = typeof opts.eraser === 'string' ? opts.eraser : 'eraser';
    const model = typeof opts.model === 'string' ? await loadTextModel(opts.model) : opts.model;
    const sae = typeof opts.sae === 'string' ? loadSae(opts.sae) : opts.sae;
    const saeId = opts.saeId ?? (typeof opts.sae === 'string' ? saeIdentity(opts.sae) : undefined);
    checkCompatible(spec, where, model, sae, saeId);
    const gate = await Gate.create(sae, erasedLatents(spec), spec.activationThreshold, spec.scale);
    return new ConceptEraser(model, sae, spec, gate, opts.canonical ?? true);
  }

  get spec(): EraserSpec {
    return this.specValue;
  }

  get id(): string {
    return eraserId(this.specValue);
  }

  /** Swaps in an edited eraser (concepts added/removed, recalibrated) without reloading model or SAE. */
  async update(spec: EraserSpec): Promise<void> {
    checkCompatible(spec, 'eraser', this.model, this.sae, undefined);
    const gate = await Gate.create(this.sae, erasedLatents(spec), spec.activationThreshold, spec.scale);
    const old = this.gate;
    this.specValue = spec;
    this.gate = gate;
    this.index();
    await old.release();
  }

  /** Erased conditioning for SD: same outputs as plain encode plus the gate's decisions. */
  async encode(prompts: string[], opts: EraseOptions = {}): Promise<EraseResult> {
    const policy = opts.policy ?? 'gate';
    const threshold = this.requireThreshold(policy);
    const { tokenizer, encoder } = this.model;
    const canonical = policy === 'gate' ? await this.erasedCanonical(prompts) : prompts.map(() => null);
    const tok = tokenizer.batch(prompts.map((p, i) => canonical[i] ?? p));
    const n = prompts.length;
    const t = tok.maxLength;
    const D = this.model.config.hiddenSize;
    const C = this.specValue.concepts.length;
    const res: EraseResult = {
      n, t, d: D, p: encoder.pooledSize, inputIds: tok.ids, lengths: tok.lengths, truncated: tok.truncated,
      lastHiddenState: new Float32Array(n * t * D), pooler: new Float32Array(n * encoder.pooledSize),
      hiddenStates: new Map((opts.hiddenStates ?? []).map((i) => [i, new Float32Array(n * t * D)])),
      erased: new Uint8Array(n), scores: new Float32Array(n), conceptScores: new Float32Array(n * C), concepts: [], canonical,
    };
    const batchSize = opts.batch ?? 16;
    const bar = opts.progress ? new Progress({ label: 'encode (erase)', total: n, unit: 'prompts' }) : undefined;
    for (let s = 0; s < n; s += batchSize) {
      const m = Math.min(batchSize, n - s);
      const batch = { ids: tok.ids.subarray(s * t, (s + m) * t), n: m, t };
      const h = await encoder.layerOutput(batch, this.specValue.layer); // [m, t, D]
      // The score needs rows 1..len-1; the residual edit touches every row but BOS.
      const lengths = tok.lengths.subarray(s, s + m);
      const rows = this.specValue.mode === 'residual' ? t - 1 : Math.max(...lengths) - 1;
      const acts = await this.gate.activations(withoutBos(h, m, t, D, rows), m * rows); // [m*rows, gate]
      const erase: number[] = [];
      for (let r = 0; r < m; r++) {
        const p = s + r;
        const d = this.decide(acts, r * rows, lengths[r]! - 1, threshold, policy);
        res.scores[p] = d.score;
        res.conceptScores.set(d.conceptScores, p * C);
        res.concepts.push(d.concepts);
        if (opts.force ? opts.force[p] === 1 : d.erase || canonical[p] !== null) {
          res.erased[p] = 1;
          erase.push(r);
        }
      }
      if (erase.length > 0) await this.deactivate(h, acts, rows, erase, t);
      const out = await encoder.resume(h, batch, this.specValue.layer, opts.hiddenStates);
      res.lastHiddenState.set(out.lastHiddenState, s * t * D);
      for (const [i, x] of out.hiddenStates) res.hiddenStates.get(i)!.set(x, s * t * D);
      res.pooler.set(out.pooler, s * encoder.pooledSize);
      bar?.tick(m);
    }
    bar?.done();
    return res;
  }

  /** Gate decisions only (the typed and the canonical form): runs blocks 0..layer, never the full SAE nor the later blocks. */
  async classify(prompts: string[], opts: { batch?: number; progress?: boolean } = {}): Promise<Decision[]> {
    const typed = await this.classifyTyped(prompts, opts);
    // erase iff max(typed, canonical) >= threshold: the higher-scoring form decides.
    (await this.canonicalDecisions(prompts, opts.batch)).forEach((c, i) => {
      if (c && c.score > typed[i]!.score) typed[i] = { ...c, prompt: prompts[i]!, canonical: c.prompt };
    });
    return typed;
  }

  /** Per prompt, the gate's decision on its canonical form where that tokenizes differently (null elsewhere, or when disabled). */
  private async canonicalDecisions(prompts: string[], batch?: number): Promise<(Decision | null)[]> {
    const forms = this.canonical ? prompts.map((p) => this.canonicalizer.canonicalize(p)) : [];
    const at = forms.flatMap((f, i) => (cleanText(f) === cleanText(prompts[i]!) ? [] : [i]));
    const out = prompts.map((): Decision | null => null);
    (await this.classifyTyped(at.map((i) => forms[i]!), { batch })).forEach((d, j) => (out[at[j]!] = d));
    return out;
  }

  /** Per prompt, its canonical form where the gate erases that form (null elsewhere). */
  private async erasedCanonical(prompts: string[]): Promise<(string | null)[]> {
    return (await this.canonicalDecisions(prompts)).map((d) => (d?.erased ? d.prompt : null));
  }

  private async classifyTyped(prompts: string[], opts: { batch?: number; progress?: boolean } = {}): Promise<Decision[]> {
    const threshold = this.specValue.threshold;
    const { tokenizer, encoder } = this.model;
    const D = this.model.config.hiddenSize;
    const out: Decision[] = [];
    const batchSize = opts.batch ?? 32;
    const bar = opts.progress ? new Progress({ label: 'classify', total: prompts.length, unit: 'prompts' }) : undefined;
    for (let s = 0; s < prompts.length; s += batchSize) {
      const framed = prompts.slice(s, s + batchSize).map((p) => tokenizer.frame(p));
      const t = Math.max(...framed.map((f) => f.length)); // causal mask: padding to the longest is exact
      const ids = new Int32Array(framed.length * t);
      framed.forEach((f, r) => ids.set(f.ids.subarray(0, t), r * t));
      const h = await encoder.layerOutput({ ids, n: framed.length, t }, this.specValue.layer);
      const acts = await this.gate.activations(withoutBos(h, framed.length, t, D), framed.length * (t - 1));
      framed.forEach((f, r) => {
        const d = this.decide(acts, r * (t - 1), f.length - 1, threshold ?? Infinity, 'gate');
        out.push({
          prompt: prompts[s + r]!, score: d.score, threshold, erased: threshold !== null && d.erase, concepts: d.concepts,
          conceptScores: Object.fromEntries(this.specValue.concepts.map((c, j) => [c.name, d.conceptScores[j]!])),
        });
      });
      bar?.tick(framed.length);
    }
    bar?.done();
    return out;
  }

  /**
   * How well the gate's threshold stands in for exact TopK on these prompts' real tokens: over
   * (token, selected latent) pairs, precision and recall of "gate active" against "in the token's TopK".
   */
  async gateAgreement(prompts: string[]): Promise<{ precision: number; recall: number; exactPairs: number; gatePairs: number }> {
    const D = this.model.config.hiddenSize;
    const cols = new Map<number, number>();
    this.gate.latents.forEach((l, j) => cols.set(l, j));
    let both = 0;
    let exact = 0;
    let gated = 0;
    for (const p of prompts) {
      const f = this.model.tokenizer.frame(p);
      const h = await this.model.encoder.layerOutput({ ids: f.ids.subarray(0, f.length), n: 1, t: f.length }, this.specValue.layer);
      const x = h.subarray(D, f.length * D); // tokens 1..len-1
      const r = f.length - 1;
      const acts = await this.gate.activations(x, r);
      const z = await this.sae.encode(x, r);
      for (let i = 0; i < r; i++) {
        const inTopK = new Set<number>();
        for (let j = 0; j < z.k; j++) {
          const col = cols.get(z.indices[i * z.k + j]!);
          if (col !== undefined && z.values[i * z.k + j]! > 0) inTopK.add(col);
        }
        for (let c = 0; c < this.gate.size; c++) {
          const g = acts[i * this.gate.size + c]! > 0;
          const e = inTopK.has(c);
          gated += g ? 1 : 0;
          exact += e ? 1 : 0;
          both += g && e ? 1 : 0;
        }
      }
    }
    return { precision: gated ? both / gated : 1, recall: exact ? both / exact : 1, exactPairs: exact, gatePairs: gated };
  }

  async release(): Promise<void> {
    await this.gate.release();
  }

  /**
   * Score over a prompt's `real` rows starting at `first` (its tokens 1..len-1) and the decision.
   * One shared threshold: the score is over the union of features. Per-concept thresholds
   * (ConceptEntry.scoreNorm): the score is max over concepts of own score / scoreNorm, so a
   * prompt is erased iff some concept reaches its own threshold (threshold * scoreNorm).
   */
  private decide(acts: Float32Array, first: number, real: number, threshold: number, policy: GatePolicy) {
    const stat = this.specValue.scoreStat ?? 'mean';
    const union = this.gate.score(acts, first, first + real, undefined, stat);
    // Fail closed: a NaN score compares false with every threshold, which would let any prompt through.
    if (!Number.isFinite(union)) {
      throw new ItdError('numeric', `the gate's score is ${union}: activations overflowed (model or SAE weights out of range)`, { field: 'score' });
    }
    // Only concepts owning a latent that fired can score above 0 (usually none or one).
    const conceptScores = new Float32Array(this.conceptCols.length);
    if (union > 0) for (const c of this.firedConcepts(acts, first, first + real)) conceptScores[c] = this.gate.score(acts, first, first + real, this.conceptCols[c], stat);
    const norms = this.conceptNorms;
    // Ratios, not threshold * norm: a tiny threshold times a norm can underflow to 0, which every score reaches.
    const own = norms ? Array.from(conceptScores, (v, c) => v / norms[c]!) : Array.from(conceptScores);
    const score = norms ? Math.max(0, ...own) : union;
    const erase = policy === 'always' || (policy === 'gate' && score >= threshold);
    const names = this.specValue.concepts.map((c) => c.name);
    let concepts = names.filter((_, j) => own[j]! >= threshold && own[j]! > 0);
    // Erased on the union's score alone: name the concept that contributed most.
    if (erase && concepts.length === 0 && names.length > 0) {
      concepts = [names[conceptScores.indexOf(Math.max(...conceptScores))]!];
    }
    return { score, conceptScores, erase, concepts: policy === 'never' ? [] : concepts };
  }

  /** Concepts (indices) with a latent active on some row in [from, to). */
  private firedConcepts(acts: Float32Array, from: number, to: number): Set<number> {
    const fired = new Set<number>();
    for (const j of this.gate.activeColumns(acts, from, to)) for (const c of this.conceptsOfCol[j]!) fired.add(c);
    return fired;
  }

  /** Edits rows 1..t-1 of the chosen prompts of h: [m, t, D] in place. */
  private async deactivate(h: Float32Array, acts: Float32Array, actRows: number, rows: number[], t: number): Promise<void> {
    const D = this.model.config.hiddenSize;
    if (this.specValue.mode === 'residual') {
      for (const r of rows) for (let p = 1; p < t; p++) this.gate.addDelta(acts, r * actRows + p - 1, h, (r * t + p) * D);
      return;
    }
    const x = new Float32Array(rows.length * (t - 1) * D);
    rows.forEach((r, i) => x.set(h.subarray((r * t + 1) * D, (r + 1) * t * D), i * (t - 1) * D));
    const z = await this.sae.encode(x, rows.length * (t - 1));
    const selected = new Set(this.gate.latents);
    for (let i = 0; i < z.indices.length; i++) if (selected.has(z.indices[i]!)) z.values[i]! *= this.specValue.scale;
    const recon = this.sae.decode(z.indices, z.values, rows.length * (t - 1), z.k);
    rows.forEach((r, i) => h.set(recon.subarray(i * (t - 1) * D, (i + 1) * (t - 1) * D), (r * t + 1) * D));
  }

  private requireThreshold(policy: GatePolicy): number {
    const th = this.specValue.threshold;
    if (policy === 'gate' && th === null) {
      throw new Error('the eraser has no threshold yet: run `itd eraser calibrate` (or encode with policy always/never)');
    }
    return th ?? Infinity;
  }
}

/** Rows 1..rows of every prompt: [m, t, D] -> [m*rows, D] (rows <= t-1). */
function withoutBos(h: Float32Array, m: number, t: number, D: number, rows = t - 1): Float32Array {
  const x = new Float32Array(m * rows * D);
  for (let r = 0; r < m; r++) x.set(h.subarray((r * t + 1) * D, (r * t + 1 + rows) * D), r * rows * D);
  return x;
}

function checkCompatible(spec: EraserSpec, where: string, model: TextModel, sae: Sae, saeId: string | undefined): void {
  if (spec.modelId !== model.id) {
    throw new ItdError('mismatch', `${where}: built for model ${spec.modelId}, but ${model.dir} ${model.name} is ${model.id} (its weights, config or tokenizer differ)`, { file: where, field: 'modelId', hint: 'an eraser works with the encoder (and SDXL tower) whose SAE it was built from' });
  }
  const trained = hookpointPart(sae.cfg.hookpoint);
  if (trained !== undefined && trained !== model.name) {
    throw new ItdError('mismatch', `the SAE was trained on ${trained} (hookpoint ${sae.cfg.hookpoint}), but the eraser part runs on ${model.name}`, { field: 'hookpoint' });
  }
  if (saeId !== undefined && spec.saeId !== saeId) {
    throw new ItdError('mismatch', `${where}: built for SAE ${spec.saeId}, but the SAE given is ${saeId}`, { file: where, field: 'saeId' });
  }
  if (sae.d !== model.config.hiddenSize) throw new Error(`SAE input width ${sae.d} does not match the model's hidden size ${model.config.hiddenSize}`);
  if (sae.cfg.layer !== undefined && sae.cfg.layer !== spec.layer) throw new Error(`${where}: edits layer ${spec.layer}, but the SAE was trained on layer ${sae.cfg.layer}`);
  if (spec.layer >= model.config.numLayers) throw new Error(`${where}: layer ${spec.layer} does not exist in a ${model.config.numLayers}-block model`);
  const bad = erasedLatents(spec).find((l) => l >= sae.n);
  if (bad !== undefined) throw new Error(`${where}: latent ${bad} is outside the SAE's ${sae.n} latents`);
}
