/**
 * Per-token gate contributions. The gate score of a prompt is the mean over its real tokens
 * (src/encoder/token-rows.ts) of each token's mean squared edit, so each token's own term, divided by their sum,
 * is its share of the score. Computed with the same Gate (selected latents, tau, scale) the
 * eraser builds from its spec; the Gate is rebuilt only when the eraser changes.
 */
import { Gate, type ConceptEraser } from '../erase/index.js';
import { erasedLatents } from '../select/eraser-file.js';
import { tokenRows } from '../encoder/index.js';

export interface TokenScore {
  position: number; // in the framed row (CLIP 1..len-1, T5 0..len-1)
  token: string;
  score: number; // this token's mean squared edit
  share: number; // score / sum over the prompt's tokens (0 when nothing fires)
}

export class TokenScorer {
  private cached: { id: string; gate: Gate } | undefined;

  /** Not safe to run beside ConceptEraser.update: call it from an exclusive batcher task. */
  async scores(eraser: ConceptEraser, prompt: string): Promise<TokenScore[]> {
    const { model, spec } = eraser;
    const b = await tokenRows(model, [prompt], spec.layer);
    const rows = b.tokenIds.length;
    const gate = await this.gateFor(eraser);
    const acts = await gate.activations(b.x, rows);
    const scores = Array.from({ length: rows }, (_, r) => gate.score(acts, r, r + 1));
    const sum = scores.reduce((a, c) => a + c, 0);
    const tokens = model.tokenizer.tokenStrings(b.tokenIds);
    return scores.map((score, r) => ({ position: b.positions[r]!, token: tokens[r]!, score, share: sum > 0 ? score / sum : 0 }));
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
