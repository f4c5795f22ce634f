/**
 * The CLIP tower's blocks on the addon's C forward (src/native/forward.c) rather than
 * onnxruntime: the same block (see graph.ts), with each GEMM on packed weights applying its bias,
 * scale, activation or residual to its tile while it is in the cache. Measured reason (BENCHMARKS.md,
 * issue 15): onnxruntime's graph of the block ran at 75-79 % of its own best sgemm.
 *
 * Every output element is one fixed-order sum computed by one task, so a prompt's output does not
 * depend on the thread count, on the batch it is in, or on where a span of blocks starts (a read
 * or an edit at any block costs no rebuild). The blocks are packed on first use, all at once, from
 * files opened when the encoder was created (a checkpoint replaced on disk meanwhile cannot mix in).
 *
 * ITD_ENCODER=onnxruntime (or the `backend` option) runs the onnxruntime graphs instead; so do a
 * CPU without AVX2 + FMA, an addon that was not built, ITD_NATIVE=0 and ITD_NATIVE_ISA=generic.
 */
import { ItdError } from '../../errors.js';
import { HeldFiles } from '../../io/files.js';
import { readF32At } from '../../io/safetensors.js';
import { loadAddon, type ClipAddon } from '../../util/addon.js';
import type { Activation, ClipTextConfig } from './config.js';
import type { BlockKey, BlockRefs, WeightRef } from './weights.js';

export type EncoderBackend = 'native' | 'onnxruntime';

const ACT: Record<Activation, number> = { quick_gelu: 0, gelu: 1, gelu_new: 2, gelu_pytorch_tanh: 2 };

/** The addon's CLIP forward when `backend` (default ITD_ENCODER, else native where built) asks for it and it is there. */
export function nativeClip(backend: EncoderBackend | undefined): ClipAddon | undefined {
  const want = backend ?? (process.env['ITD_ENCODER'] as EncoderBackend | undefined) ?? 'native';
  if (want !== 'native' && want !== 'onnxruntime') {
    throw new ItdError('usage', `ITD_ENCODER=${want}: expected native or onnxruntime`, { field: 'ITD_ENCODER' });
  }
  const clip = want === 'native' && process.env['ITD_NATIVE'] !== '0' ? loadAddon()?.clip : undefined;
  // ITD_NATIVE_ISA=generic (or any build the forward lacks) means no vector build: the graphs run.
  const isa = process.env['ITD_NATIVE_ISA'];
  return clip && (!isa || clip.isas.includes(isa)) ? clip : undefined;
}

/**
 * One C forward at a time per process: each already uses every thread, and two at once would have
 * their phase barriers wait on each other's threads (a server answering concurrent requests).
 */
let queue: Promise<unknown> = Promise.resolve();
function serialized<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn);
  queue = run.catch(() => undefined);
  return run;
}

export class NativeClipBlocks {
  /** The packed blocks and the final LayerNorm's weights [D] each, from the first forward to release(). */
  private packedState: { handles: object[]; finalW: Float32Array; finalB: Float32Array } | undefined;
  private readonly files: HeldFiles;
  private readonly isa: string;

  constructor(
    private readonly clip: ClipAddon,
    private readonly cfg: ClipTextConfig,
    private readonly blockRefs: readonly BlockRefs[],
    private readonly finalRefs: { w: WeightRef; b: WeightRef },
    private readonly threads: number,
  ) {
    this.isa = process.env['ITD_NATIVE_ISA'] || clip.isas[0]!;
    const refs = [...blockRefs.flatMap((r) => Object.values(r)), finalRefs.w, finalRefs.b];
    this.files = new HeldFiles(refs.flatMap((r) => ('file' in r ? [r.file] : [])), 'a safetensors file');
  }

  /**
   * Blocks a..b-1 on h [n, t, D] (h is not changed): 'y' = the last block's output, 'last' = its
   * final LayerNorm (b = L only; with a = b, the final LayerNorm of h alone).
   */
  async run(a: number, b: number, h: Float32Array, n: number, t: number, fetch: readonly string[]): Promise<Record<string, Float32Array>> {
    const D = this.cfg.hiddenSize;
    const y = h.slice(0, n * t * D);
    const status = new Int32Array(1);
    const last = fetch.includes('last') ? new Float32Array(n * t * D) : undefined;
    // The weights are taken when the forward starts: a release() while it waited packs them again.
    await serialized(() => {
      const { handles, finalW, finalB } = this.packed();
      const final = last ? { last, finalW, finalB, finalEps: this.cfg.layerNormEps } : {};
      return this.clip.forward({ blocks: handles.slice(a, b), y, n, t, D, threads: this.threads, status, ...final });
    });
    if (status[0] !== 0) throw new ItdError('internal', `native CLIP forward of ${n} x ${t} tokens ran out of memory or threads`);
    return { ...(fetch.includes('y') ? { y } : {}), ...(last ? { last } : {}) };
  }

  /** Packs every block now (what a first forward would do). */
  prepare(): void {
    this.packed();
  }

  /** Frees the packed blocks and closes the files; a later forward packs again from the paths. */
  release(): void {
    for (const h of this.packedState?.handles ?? []) this.clip.free(h);
    this.packedState = undefined;
    this.files.close();
  }

  private packed(): { handles: object[]; finalW: Float32Array; finalB: Float32Array } {
    if (this.packedState) return this.packedState;
    const { hiddenSize: D, intermediateSize: I, numHeads: H, hiddenAct, layerNormEps: eps } = this.cfg;
    const handles: object[] = [];
    let finalW: Float32Array, finalB: Float32Array;
    try {
      for (const refs of this.blockRefs) {
        // Tensors in the block's first file go as offsets (the addon reads them there); others as values.
        const file = Object.values(refs).find((r): r is WeightRef & { file: string } => 'file' in r)?.file;
        const w = Object.fromEntries(Object.entries(refs).map(([k, r]) => [k, 'file' in r && r.file === file ? r.offset : this.read(r)])) as Record<BlockKey, Float32Array | number>;
        const args: Record<string, Float32Array | number | string> = { isa: this.isa, threads: this.threads, D, I, H, act: ACT[hiddenAct], eps, ...w };
        if (file !== undefined) args['fd'] = this.files.fd(file);
        try {
          handles.push(this.clip.packBlock(args));
        } catch (e) {
          // The addon only fails here on memory or on a file that changed size since it was checked.
          throw new ItdError('format', `${file ?? 'text encoder weights'}: block ${handles.length} could not be loaded (${(e as Error).message})`, { ...(file ? { file } : {}), hint: 'reload the model; check free memory and that the checkpoint is complete' });
        }
      }
      finalW = this.read(this.finalRefs.w);
      finalB = this.read(this.finalRefs.b);
    } catch (e) {
      handles.forEach((h) => this.clip.free(h));
      throw e;
    }
    this.packedState = { handles, finalW, finalB };
    return this.packedState;
  }

  private read(ref: WeightRef): Float32Array {
    if ('data' in ref) return ref.data;
    return readF32At(ref.file, this.files.fd(ref.file), ref.offset, ref.length / 4);
  }
}
