/**
 * Per-token gate contributions. The gate score of a prompt is the mean over its real tokens
 * (1..len-1) of each token's mean squared edit, so each token's own term, divided by their sum,
 * is its share of the score. Computed with the same Gate (selected latents, tau, scale) the
 * eraser builds from its spec; the Gate is rebuilt only when the eraser changes.
 */
import { Gate, type ConceptEraser } from '../erase/index.js';
import { erasedLatents } from '../select/eraser-file.js';

export interface TokenScore {
  position: number; // 1..len-1
  token: string;
  score: number; // this token's mean squared edit
  share: number; // score / sum over the prompt's tokens (0 when nothing fires)
}

export class TokenScorer {
  private cached: { id: string; gate: Gate } | undefined;

  /** Not safe to run beside ConceptEraser.update: call it from an exclusive batcher task. */
  async scores(eraser: ConceptEraser, prompt: string): Promise<TokenScore[]> {
    const { model, spec } = eraser;
    const D = model.config.hiddenSize;
    const f = model.tokenizer.frame(prompt);
    const h = await model.encoder.layerOutput({ ids: f.ids.subarray(0, f.length), n: 1, t: f.length }, spec.layer);
    const rows = f.length - 1;
    const gate = await this.gateFor(eraser);
    const acts = await gate.activations(h.subarray(D), rows);
    const scores = Array.from({ length: rows }, (_, r) => gate.score(acts, r, r + 1));
    const sum = scores.reduce((a, b) => a + b, 0);
    const tokens = model.tokenizer.tokenStrings(f.ids.subarray(1, f.length));
    return scores.map((score, r) => ({ position: r + 1, token: tokens[r]!, score, share: sum > 0 ? score / sum : 0 }));
  }

  async release(): Promise<void> {
    await this.cached?.gate.release();
    this.cached = undefined;
  }

  private async gateFor(eraser: ConceptEraser): Promise<Gate> {
    if (this.cached?.id !== eraser.id) {
      const s = eraser.spec;
      const gate = await Gate.create(eraser.sae, erasedLatents(s), s.activationThreshold, s.scale);
      await this.release();
      this.cached = { id: eraser.id, gate };
    }
    return this.cached.gate;
  }
}
