/** onnxruntime-node sessions with the settings itd uses everywhere (all cores, full graph optimisation). */
import { createRequire } from 'node:module';
import os from 'node:os';
import { statRegularFile } from '../io/files.js';
import type * as ort from 'onnxruntime-node';
import { ItdError } from '../errors.js';

export type { ort };

let lib: typeof ort | undefined;

/** onnxruntime-node, loaded on first use (its native library is ~0.1 s of every CLI start otherwise). */
function runtime(): typeof ort {
  return (lib ??= createRequire(import.meta.url)('onnxruntime-node') as typeof ort);
}

/** A tensor of any element type onnxruntime takes. */
export function tensor(type: 'float32' | 'float16' | 'int32' | 'int64' | 'uint8', data: Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array, dims: readonly number[]): ort.Tensor {
  return new (runtime().Tensor)(type, data as Float32Array, dims);
}

export interface SessionOptions {
  /** Intra-op threads; defaults to ITD_THREADS or the number of cores. */
  threads?: number;
}

/** Where a model's external initializers are (see Graph.externalInitializer and ExternalWeights). */
export interface ExternalDataOptions {
  /** Folder that file-backed external data locations are relative to. */
  dir?: string | undefined;
  /** In-memory "files" named by external data locations. */
  buffers?: { path: string; data: Uint8Array }[];
}

export function defaultThreads(): number {
  const env = Number(process.env['ITD_THREADS']);
  return Number.isInteger(env) && env > 0 ? env : os.availableParallelism();
}

/**
 * onnxruntime's Linux build carries Microsoft's 1DS telemetry client, which on the first session
 * reads /proc/self/cmdline and overflows the stack (SIGSEGV, exit 139) once argv passes ~25 kB, e.g.
 * long prompts on the command line. Its ORT_DISABLE_TELEMETRY switch is read when the runtime's
 * environment is created, so it must be set before the first session; a user's explicit value wins.
 */
function disableOrtTelemetry(): void {
  process.env['ORT_DISABLE_TELEMETRY'] ??= '1';
}

export async function createSession(model: Uint8Array | string, opts: SessionOptions = {}, external: ExternalDataOptions = {}): Promise<ort.InferenceSession> {
  disableOrtTelemetry();
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: opts.threads ?? defaultThreads(),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    // Per-session arenas never shrink: they keep the peak activations of the largest batch for
    // every session (T5 runs one per block) and push peak RSS past the weights' own size, so
    // they are off. ITD_ORT_ARENA=1 turns them on (fewer allocations, more memory).
    enableCpuMemArena: process.env['ITD_ORT_ARENA'] === '1',
    // Spinning intra-op threads starve each other when several processes share the cores (tests, servers).
    extra: { session: { intra_op: { allow_spinning: '0' }, ...(external.dir ? { model_external_initializers_file_folder_path: external.dir } : {}) } },
    ...(external.buffers?.length ? { externalData: external.buffers } : {}),
  };
  // onnxruntime opens a path itself: a FIFO there would block it forever, so check what it is first.
  if (typeof model === 'string') statRegularFile(model, 'an ONNX model file');
  return typeof model === 'string'
    ? runtime().InferenceSession.create(model, options)
    : runtime().InferenceSession.create(model, options);
}

export function f32(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return tensor('float32', data, dims);
}

export function i64(data: BigInt64Array, dims: readonly number[]): ort.Tensor {
  return tensor('int64', data, dims);
}

/** Reads a float32 output tensor's data without copying. */
export function f32Data(t: ort.Tensor | undefined, name: string): Float32Array {
  if (!t || t.type !== 'float32') throw new ItdError('internal', `onnx output '${name}' missing or not float32`, { field: name });
  return t.data as Float32Array;
}
