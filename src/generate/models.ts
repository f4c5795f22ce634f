/**
 * The UNet and VAE decoder sessions, fed in whatever dtypes the export declares: float32 data is
 * handed to onnxruntime without copying; float16 exports convert on the way in and out; the
 * timestep goes in as int64/int32 (truncated, as numpy's astype does in diffusers' ONNX pipeline)
 * or as a float.
 */
import type { InferenceSession } from 'onnxruntime-node';
import { f16ArrayToF32, f32ArrayToF16, f32ToF16 } from '../io/safetensors.js';
import { createSession, tensor, type ort, type SessionOptions } from '../onnx/session.js';
import type { UnetIo, VaeIo } from './layout.js';
import type { ValueSignature } from './onnx-signature.js';
import { ItdError } from '../errors.js';

/** `data` as a tensor of v's float type. */
export function floatTensor(v: ValueSignature, data: Float32Array, dims: readonly number[]): ort.Tensor {
  return v.type === 'float16' ? tensor('float16', f32ArrayToF16(data), dims) : tensor('float32', data, dims);
}

/** A float output as float32 (no copy when it already is). */
export function floatOutput(out: InferenceSession.ReturnType, name: string, file: string): Float32Array {
  const t = out[name];
  if (t?.type === 'float32') return t.data as Float32Array;
  if (t?.type === 'float16') return f16ArrayToF32(t.data as Uint16Array);
  throw new ItdError('format', `${file}: output '${name}' is ${t ? t.type : 'missing'}, expected float32 or float16`, { file, field: name });
}

/** Checks the fixed (numeric) dims of v against the leading dims a run needs. */
export function checkDims(v: ValueSignature, dims: readonly number[], file: string, what: string): void {
  const bad = dims.some((d, i) => typeof v.dims[i] === 'number' && v.dims[i] !== d);
  if (bad) {
    throw new ItdError('mismatch', `${file}: '${v.name}' is fixed at [${v.dims.map((d) => d ?? '?').join(', ')}] but ${what} needs [${dims.join(', ')}]`, { file, field: v.name });
  }
}

export interface AddedTensors {
  textEmbeds: ort.Tensor;
  timeIds: ort.Tensor;
}

export class UnetModel {
  private constructor(
    readonly io: UnetIo,
    private readonly session: InferenceSession,
  ) {}

  /** Builds the session from the file path, so external weight files next to it are found. */
  static async load(io: UnetIo, opts: SessionOptions = {}): Promise<UnetModel> {
    return new UnetModel(io, await createSession(io.file, opts));
  }

  /** encoder_hidden_states [n, T, D] as the tensor fed on every step (converted once). */
  hiddenTensor(hidden: Float32Array, dims: readonly number[]): ort.Tensor {
    return floatTensor(this.io.hidden, hidden, dims);
  }

  /** SDXL's added conditioning for the UNet batch: text_embeds [n, P] and time_ids [n, 6] (converted once). */
  addedTensors(textEmbeds: Float32Array, timeIds: Float32Array, n: number): AddedTensors | undefined {
    const a = this.io.added;
    if (!a) return undefined;
    return { textEmbeds: floatTensor(a.textEmbeds, textEmbeds, [n, textEmbeds.length / n]), timeIds: floatTensor(a.timeIds, timeIds, [n, timeIds.length / n]) };
  }

  /**
   * One UNet call: sample [n, 4, h, w] at timestep t with hidden [n, T, D] (+ SDXL's added
   * conditioning) -> model output [n, 4, h, w]. The timestep is a scalar, [1], or [n] when the
   * export fixes that dimension.
   */
  async run(sample: Float32Array, dims: readonly number[], t: number, hidden: ort.Tensor, added?: AddedTensors): Promise<Float32Array> {
    const feeds: Record<string, ort.Tensor> = {
      [this.io.sample.name]: floatTensor(this.io.sample, sample, dims),
      [this.io.timestep.name]: this.timestepTensor(t, dims[0]!),
      [this.io.hidden.name]: hidden,
    };
    if (this.io.added) {
      if (!added) throw new ItdError('mismatch', `${this.io.file}: this UNet needs text_embeds and time_ids (an SDXL UNet)`, { file: this.io.file, field: 'text_embeds' });
      feeds[this.io.added.textEmbeds.name] = added.textEmbeds;
      feeds[this.io.added.timeIds.name] = added.timeIds;
    }
    const out = await this.session.run(feeds);
    return floatOutput(out, this.io.output.name, this.io.file);
  }

  private timestepTensor(t: number, batch: number): ort.Tensor {
    const v = this.io.timestep;
    const fixed = v.dims[0];
    const n = typeof fixed === 'number' ? fixed : 1;
    const dims = v.dims.length === 0 ? [] : [n];
    if (n !== 1 && n !== batch) throw new ItdError('mismatch', `${this.io.file}: timestep is fixed at [${n}] but the batch is ${batch}`, { file: this.io.file, field: 'timestep' });
    switch (v.type) {
      case 'int64':
        return tensor('int64', new BigInt64Array(n).fill(BigInt(Math.trunc(t))), dims);
      case 'int32':
        return tensor('int32', new Int32Array(n).fill(Math.trunc(t)), dims);
      case 'float16':
        return tensor('float16', new Uint16Array(n).fill(f32ToF16(t)), dims);
      default:
        return tensor('float32', new Float32Array(n).fill(t), dims);
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export class VaeDecoder {
  private constructor(
    readonly io: VaeIo,
    private readonly session: InferenceSession,
  ) {}

  static async load(io: VaeIo, opts: SessionOptions = {}): Promise<VaeDecoder> {
    return new VaeDecoder(io, await createSession(io.file, opts));
  }

  /** latents [n, 4, h, w] (already divided by the scaling factor) -> image [n, 3, 8h, 8w] in about [-1, 1]. */
  async decode(latents: Float32Array, dims: readonly number[]): Promise<Float32Array> {
    const out = await this.session.run({ [this.io.input.name]: floatTensor(this.io.input, latents, dims) });
    return floatOutput(out, this.io.output.name, this.io.file);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
