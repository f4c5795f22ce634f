/**
 * Deactivate + classify: the ItD encode path.
 *
 *   h = output of block `layer` for the prompt framed as the pipeline frames it   [77 (CLIP) or max_sequence_length (T5), D]
 *   score = mean (or max: spec.scoreStat) over real tokens (CLIP 1..len-1, T5 0..len-1: src/encoder/token-rows.ts)
 *           of the mean over dims of Delta(h)^2   (gate.ts), Delta over the concepts' `features` only
 *           (per-concept thresholds: max over concepts of the concept's own score / its scoreNorm)
 *   erase iff score >= threshold; otherwise h passes through untouched (bit-identical output)
 *   official:  h[p] = W_dec^T z'(h[p]) + b_pre for every p but BOS, z' = TopK codes with the
 *              selected latents multiplied by `scale` (the SAE error term is dropped)
 *   residual:  h[p] = h[p] + Delta(h[p]) for every p but BOS (the SAE error term is kept)
 *   (the edit deactivates `features` and the concepts' `editOnly` latents: scored or not)
 * then the remaining blocks and the final LayerNorm run as usual. "Every p but BOS" includes the
 * padding: for T5 in FLUX.1/SD3 (no attention mask) pads attend to the prompt and carry it on, and
 * the pipeline's transformer reads all max_sequence_length rows, so an erased prompt is edited there too.
 *
 * Disguised prompts ("zеbrа" with Cyrillic letters, "z e b r a", "z3br4"): the gate also scores
 * the prompt's canonical form (src/tokenizer/canonical.ts) whenever it tokenizes differently, and
 * erases when either form crosses the threshold; a prompt erased on its canonical form is encoded
 * from the canonical form (the edit needs the concept's own tokens to remove it). Prompts that pass
 * are encoded as typed, bit-identical to plain encode. `canonical: false` scores the typed form only.
 */
import type { TextModel } from '../encoder/index.js';
import { hookpointPart, loadTextModel, tokenRowBatches, tokenRows, type PromptEncoding } from '../encoder/index.js';
import { ItdError } from '../errors.js';
import { Progress } from '../io/progress.js';
import { Canonicalizer } from '../tokenizer/canonical.js';
import { loadSae, saeIdentity, type Sae } from '../sae/index.js';
import { erasedLatents, eraserId, loadEraser, perConceptGate, scoredLatents, type EraserSpec } from '../select/eraser-file.js';
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
  /**
   * [n]: the canonical form to encode each prompt from (null: as typed), decided by the caller for
   * every part at once (an eraser set); replaces this part's own canonical check.
   */
  forms?: readonly (string | null)[];
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

export interface ClassifyOptions {
  batch?: number;
  progress?: boolean;
  /** Score the canonical form too (default: as the eraser was loaded); false: the typed form only. */
  canonical?: boolean;
}

/** classify's decisions plus the form an erased prompt is encoded from. */
export interface Classified {
  decisions: Decision[];
  /** [n] the canonical form where the gate erases that form (encode then edits it instead of the typed text), else null. */
  erasedForms: (string | null)[];
}

/** One real token's part in a prompt's gate score (see tokenScores). */
export interface TokenScore {
  position: number; // in the framed row (CLIP 1..len-1, T5 0..len-1)
  token: string;
  score: number; // this token's mean squared edit
  share: number; // score / sum over the prompt's tokens (0 when nothing fires)
}

export class ConceptEraser {
  private conceptCols: Int32Array[] = []; // per concept, its gate columns
  /** Gate columns the score reads (the concepts' features); undefined: every column (no edit-only latents). */
  private scoredCols: Int32Array | undefined;
  private conceptsOfCol: number[][] = []; // per gate column, the concepts that own it
  private canonicalizer = new Canonicalizer(); // knows the concept names (their spelling and word breaks)
  /** Per-concept thresholds: each concept's scoreNorm (Infinity where missing: added since calibration, never fires alone); undefined: one shared threshold. */
  private conceptNorms: Float64Array | undefined;

  private constructor(readonly model: TextModel, readonly sae: Sae, private specValue: EraserSpec, private gate: Gate, readonly canonical: boolean) {
    this.index();
  }

  private index(): void {
    this.conceptCols = this.specValue.concepts.map((c) => this.gate.columns(c.features.map((f) => f.latent)));
    const scored = scoredLatents(this.specValue);
    this.scoredCols = scored.length < this.gate.size ? this.gate.columns(scored) : undefined;
    this.conceptsOfCol = Array.from({ length: this.gate.size }, () => []);
    this.canonicalizer = new Canonicalizer(this.specValue.concepts.map((c) => c.name), { keepCase: this.model.tokenizer.caseSensitive });
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
    const lead = tokenizer.leadingSpecials; // CLIP's BOS is never scored nor edited (T5 has none)
    const canonical = opts.forms ? [...opts.forms] : policy === 'gate' ? await this.erasedCanonical(prompts) : prompts.map(() => null);
    if (canonical.length !== prompts.length) throw new ItdError('usage', `forms has ${canonical.length} entries for ${prompts.length} prompts`, { field: 'forms' });
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
      // The score needs the real tokens (lead..len-1); the residual edit touches every row but CLIP's BOS, padding included.
      const lengths = tok.lengths.subarray(s, s + m);
      const rows = this.specValue.mode === 'residual' ? t - lead : Math.max(...lengths) - lead;
      const acts = await this.gate.activations(afterLead(h, m, t, D, lead, rows), m * rows); // [m*rows, gate]
      const erase: number[] = [];
      for (let r = 0; r < m; r++) {
        const p = s + r;
        const d = this.decide(acts, r * rows, lengths[r]! - lead, threshold, policy);
        res.scores[p] = d.score;
        res.conceptScores.set(d.conceptScores, p * C);
        res.concepts.push(d.concepts);
        if (opts.force ? opts.force[p] === 1 : d.erase || canonical[p] !== null) {
          res.erased[p] = 1;
          erase.push(r);
        }
      }
      if (erase.length > 0) await this.deactivate(h, acts, rows, erase, t, lead);
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
  async classify(prompts: string[], opts: ClassifyOptions = {}): Promise<Decision[]> {
    return (await this.classifyForms(prompts, opts)).decisions;
  }

  /** classify, plus per prompt the canonical form encode would edit instead of the typed text (what an eraser set needs to pick one form for every part). */
  async classifyForms(prompts: string[], opts: ClassifyOptions = {}): Promise<Classified> {
    const typed = await this.classifyTyped(prompts, opts);
    const canonical = await this.canonicalDecisions(prompts, opts.batch, opts.canonical);
    // erase iff max(typed, canonical) >= threshold: the higher-scoring form decides.
    canonical.forEach((c, i) => {
      if (c && c.score > typed[i]!.score) typed[i] = { ...c, prompt: prompts[i]!, canonical: c.prompt };
    });
    return { decisions: typed, erasedForms: canonical.map((d) => (d?.erased ? d.prompt : null)) };
  }

  /**
   * Each real token's own gate score (tokens 1..len-1 of the prompt as typed: the mean over dims of
   * its Delta^2) and its share of their sum; the prompt's 'mean' score is the mean of these.
   * Shares the eraser's gate, so it is not safe beside update(): call both from one task queue.
   */
  async tokenScores(prompt: string): Promise<TokenScore[]> {
    const b = await tokenRows(this.model, [prompt], this.specValue.layer);
    const rows = b.tokenIds.length;
    const acts = await this.gate.activations(b.x, rows);
    const scores = Array.from({ length: rows }, (_, r) => this.gate.score(acts, r, r + 1, this.scoredCols));
    const sum = scores.reduce((a, c) => a + c, 0);
    const tokens = this.model.tokenizer.tokenStrings(b.tokenIds);
    return scores.map((score, r) => ({ position: b.positions[r]!, token: tokens[r]!, score, share: sum > 0 ? score / sum : 0 }));
  }

  /** Per prompt, the gate's decision on its canonical form where that tokenizes differently (null elsewhere, or when disabled). */
  private async canonicalDecisions(prompts: string[], batch?: number, on = this.canonical): Promise<(Decision | null)[]> {
    const forms = on ? prompts.map((p) => this.canonicalizer.canonicalize(p)) : [];
    // Only a form that tokenizes differently can score differently (CLIP lowercases; T5 keeps case).
    const ids = (text: string) => this.model.tokenizer.encode(text).join(',');
    const at = forms.flatMap((f, i) => (f === prompts[i] || ids(f) === ids(prompts[i]!) ? [] : [i]));
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
    const out: Decision[] = [];
    const bar = opts.progress ? new Progress({ label: 'classify', total: prompts.length, unit: 'prompts' }) : undefined;
    for await (const b of tokenRowBatches(this.model, prompts, this.specValue.layer, { batch: opts.batch ?? 32 })) {
      const acts = await this.gate.activations(b.x, b.tokenIds.length);
      for (let r = 0; r < b.n; r++) {
        const d = this.decide(acts, b.offsets[r]!, b.offsets[r + 1]! - b.offsets[r]!, threshold ?? Infinity, 'gate');
        out.push({
          prompt: prompts[out.length]!, score: d.score, threshold, erased: threshold !== null && d.erase, concepts: d.concepts,
          conceptScores: Object.fromEntries(this.specValue.concepts.map((c, j) => [c.name, d.conceptScores[j]!])),
        });
      }
      bar?.tick(b.n);
    }
    bar?.done();
    return out;
  }

  /**
   * How well the gate's threshold stands in for exact TopK on these prompts' real tokens: over
   * (token, selected latent) pairs, precision and recall of "gate active" against "in the token's TopK".
   */
  async gateAgreement(prompts: string[]): Promise<{ precision: number; recall: number; exactPairs: number; gatePairs: number }> {
    const cols = new Map<number, number>();
    this.gate.latents.forEach((l, j) => cols.set(l, j));
    let both = 0;
    let exact = 0;
    let gated = 0;
    for await (const b of tokenRowBatches(this.model, prompts, this.specValue.layer)) {
      const r = b.tokenIds.length;
      const acts = await this.gate.activations(b.x, r);
      const z = await this.sae.encode(b.x, r);
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
   * Score over a prompt's `real` rows starting at `first` (its real tokens) and the decision.
   * One shared threshold: the score is over the union of features. Per-concept thresholds
   * (ConceptEntry.scoreNorm): the score is max over concepts of own score / scoreNorm, so a
   * prompt is erased iff some concept reaches its own threshold (threshold * scoreNorm).
   */
  private decide(acts: Float32Array, first: number, real: number, threshold: number, policy: GatePolicy) {
    const stat = this.specValue.scoreStat ?? 'mean';
    const union = this.gate.score(acts, first, first + real, this.scoredCols, stat);
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

  /** Edits rows lead..t-1 of the chosen prompts of h: [m, t, D] in place. */
  private async deactivate(h: Float32Array, acts: Float32Array, actRows: number, rows: number[], t: number, lead: number): Promise<void> {
    const D = this.model.config.hiddenSize;
    if (this.specValue.mode === 'residual') {
      for (const r of rows) for (let p = lead; p < t; p++) this.gate.addDelta(acts, r * actRows + p - lead, h, (r * t + p) * D);
      return;
    }
    const e = t - lead; // edited rows per prompt
    const x = new Float32Array(rows.length * e * D);
    rows.forEach((r, i) => x.set(h.subarray((r * t + lead) * D, (r + 1) * t * D), i * e * D));
    const z = await this.sae.encode(x, rows.length * e);
    const selected = new Set(this.gate.latents);
    for (let i = 0; i < z.indices.length; i++) if (selected.has(z.indices[i]!)) z.values[i]! *= this.specValue.scale;
    const recon = this.sae.decode(z.indices, z.values, rows.length * e, z.k);
    rows.forEach((r, i) => h.set(recon.subarray(i * e * D, (i + 1) * e * D), (r * t + lead) * D));
  }

  private requireThreshold(policy: GatePolicy): number {
    const th = this.specValue.threshold;
    if (policy === 'gate' && th === null) {
      throw new ItdError('config', 'the eraser has no threshold yet: run `itd eraser calibrate` (or encode with policy always/never)', { field: 'threshold', hint: 'run itd eraser calibrate (or encode with policy always/never)' });
    }
    return th ?? Infinity;
  }
}

/** Rows lead..lead+rows-1 of every prompt: [m, t, D] -> [m*rows, D] (rows <= t-lead). */
function afterLead(h: Float32Array, m: number, t: number, D: number, lead: number, rows: number): Float32Array {
  const x = new Float32Array(m * rows * D);
  for (let r = 0; r < m; r++) x.set(h.subarray((r * t + lead) * D, (r * t + lead + rows) * D), r * rows * D);
  return x;
}

function checkCompatible(spec: EraserSpec, where: string, model: TextModel, sae: Sae, saeId: string | undefined): void {
  if (spec.modelId !== model.id) {
    throw new ItdError('mismatch', `${where}: built for model ${spec.modelId}, but ${model.dir} ${model.name} is ${model.id} (its weights, config, tokenizer or T5 max_sequence_length differ)`, { file: where, field: 'modelId', hint: 'an eraser works with the encoder (and SDXL tower) whose SAE it was built from' });
  }
  const trained = hookpointPart(sae.cfg.hookpoint);
  if (trained !== undefined && trained !== model.name) {
    throw new ItdError('mismatch', `the SAE was trained on ${trained} (hookpoint ${sae.cfg.hookpoint}), but the eraser part runs on ${model.name}`, { field: 'hookpoint' });
  }
  if (saeId !== undefined && spec.saeId !== saeId) {
    throw new ItdError('mismatch', `${where}: built for SAE ${spec.saeId}, but the SAE given is ${saeId}`, { file: where, field: 'saeId' });
  }
  if (sae.d !== model.config.hiddenSize) throw new ItdError('mismatch', `SAE input width ${sae.d} does not match the model's hidden size ${model.config.hiddenSize}`, { file: where, field: 'd_in' });
  if (sae.cfg.layer !== undefined && sae.cfg.layer !== spec.layer) throw new ItdError('mismatch', `${where}: edits layer ${spec.layer}, but the SAE was trained on layer ${sae.cfg.layer}`, { file: where, field: 'layer' });
  if (spec.layer >= model.config.numLayers) throw new ItdError('mismatch', `${where}: layer ${spec.layer} does not exist in a ${model.config.numLayers}-block model`, { file: where, field: 'layer' });
  const bad = erasedLatents(spec).find((l) => l >= sae.n);
  if (bad !== undefined) throw new ItdError('mismatch', `${where}: latent ${bad} is outside the SAE's ${sae.n} latents`, { file: where, field: 'latents' });
}
