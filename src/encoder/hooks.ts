/**
 * The hook pattern every text tower shares (CLIP, T5): argument checks, and encode / resume built
 * on the tower's own forward pass, so each family implements only embed and forward.
 */
import { ItdError } from '../errors.js';
import type { EncodeOptions, EncodeResult, TokenBatch } from './text-encoder.js';

export interface ForwardPass<B extends TokenBatch> {
  readonly numLayers: number;
  /** Whether hidden_states[L] is after the final norm (T5) rather than the last block's raw output (CLIP). */
  readonly lastStateNormed: boolean;
  embed(batch: B): Float32Array;
  /** Blocks from..L-1 on h (the edit after its block), final norm and pooling; collects the wanted hidden_states >= from+1. */
  forward(h: Float32Array, batch: B, from: number, want: Set<number>, edit: EncodeOptions['edit']): Promise<EncodeResult>;
}

export async function encodeTower<B extends TokenBatch>(t: ForwardPass<B>, batch: B, opts: EncodeOptions): Promise<EncodeResult> {
  const want = wantedStates(t.numLayers, opts.hiddenStates ?? [], 0);
  if (opts.edit) checkLayer(t.numLayers, opts.edit.layer);
  const h = t.embed(batch);
  const r = await t.forward(h, batch, 0, want, opts.edit);
  if (want.has(0)) r.hiddenStates.set(0, h);
  return r;
}

/** Continues from the output of block `layer` (h); hidden_states >= layer+1 on request. */
export async function resumeTower<B extends TokenBatch>(t: ForwardPass<B>, h: Float32Array, batch: B, layer: number, hiddenStates: readonly number[]): Promise<EncodeResult> {
  checkLayer(t.numLayers, layer);
  const want = wantedStates(t.numLayers, hiddenStates, layer + 1);
  const r = await t.forward(h, batch, layer + 1, want, undefined);
  if (want.has(layer + 1) && !(t.lastStateNormed && layer + 1 === t.numLayers)) r.hiddenStates.set(layer + 1, h);
  return r;
}

export function wantedStates(numLayers: number, indices: readonly number[], min: number): Set<number> {
  for (const i of indices) {
    if (!Number.isInteger(i) || i < min || i > numLayers) throw new ItdError('usage', `hidden_states index ${i} is outside ${min}..${numLayers}`, { field: 'hidden_states' });
  }
  return new Set(indices);
}

export function checkLayer(numLayers: number, layer: number): void {
  if (!Number.isInteger(layer) || layer < 0 || layer >= numLayers) {
    throw new ItdError('usage', `layer ${layer} is outside 0..${numLayers - 1} (the model has ${numLayers} blocks)`, { field: 'layer' });
  }
}

export function checkRange(numLayers: number, from: number, to: number): void {
  if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from <= to && to <= numLayers)) {
    throw new ItdError('usage', `block range ${from}..${to} is outside 0..${numLayers}`, { field: 'layer' });
  }
}
