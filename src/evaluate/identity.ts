/**
 * Identity matching with @vladmandic/face-api: SSD MobileNet v1 face detection, 68-point landmarks
 * for alignment, and 128-d face descriptors. Two faces are the same person when their descriptors
 * are closer than a Euclidean distance threshold (0.6, face-api's customary value). The model
 * weights ship in the npm package (model/) and are read from disk.
 */
import * as fs from 'node:fs';
import { basename, join } from 'node:path';
import type * as FaceApi from '@vladmandic/face-api/dist/face-api.node-wasm.js';
import type { RgbImage } from '../io/png.js';
import { listImages, readImage } from './images.js';
import { initTf, optionalImport, optionalPackageDir, toTensor } from './tf.js';
import { ItdError } from '../errors.js';

export const DEFAULT_MATCH_DISTANCE = 0.6;
const MODELS = ['ssd_mobilenetv1_model', 'face_landmark_68_model', 'face_recognition_model'];

export interface Face {
  score: number;
  box: { x: number; y: number; width: number; height: number };
  descriptor: Float32Array;
}

export interface Reference {
  file: string;
  descriptor: Float32Array;
}

export interface References {
  faces: Reference[];
  /** Reference photos skipped, with why (no face, unreadable). */
  skipped: { file: string; reason: string }[];
}

export function defaultFaceModelDir(): string {
  return join(optionalPackageDir('@vladmandic/face-api'), 'model');
}

/** Smallest descriptor distance between any detected face and any reference, or null without faces. */
export function bestDistance(faces: Face[], refs: Reference[]): { distance: number; reference: string } | null {
  let best: { distance: number; reference: string } | null = null;
  for (const f of faces) {
    for (const r of refs) {
      const distance = Math.hypot(...f.descriptor.map((v, i) => v - r.descriptor[i]!));
      if (!best || distance < best.distance) best = { distance, reference: r.file };
    }
  }
  return best;
}

export class FaceIdentifier {
  private constructor(
    private readonly faceapi: typeof FaceApi,
    private readonly minConfidence: number,
  ) {}

  static async load(modelDir = defaultFaceModelDir(), minConfidence = 0.5): Promise<FaceIdentifier> {
    const missing = MODELS.flatMap((m) => [`${m}-weights_manifest.json`, `${m}.bin`]).filter((f) => !fs.existsSync(join(modelDir, f)));
    if (missing.length > 0) {
      throw new ItdError('not_found', `face-api model files missing in ${modelDir}: ${missing.join(', ')} (the @vladmandic/face-api npm package ships them in model/; reinstall it)`, { file: modelDir });
    }
    await initTf();
    const faceapi = await optionalImport('@vladmandic/face-api', () => import('@vladmandic/face-api/dist/face-api.node-wasm.js'));
    await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
    await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
    await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
    return new FaceIdentifier(faceapi, minConfidence);
  }

  async faces(img: RgbImage): Promise<Face[]> {
    const input = toTensor(img);
    try {
      // face-api bundles its own copy of the tfjs typings; at run time both are the same tfjs module.
      const found = await this.faceapi
        .detectAllFaces(input as unknown as FaceApi.TNetInput, new this.faceapi.SsdMobilenetv1Options({ minConfidence: this.minConfidence }))
        .withFaceLandmarks()
        .withFaceDescriptors();
      return found.map((f) => {
        const { x, y, width, height } = f.detection.box;
        return { score: f.detection.score, box: { x, y, width, height }, descriptor: f.descriptor };
      });
    } finally {
      input.dispose();
    }
  }

  /** The most confident face of each reference photo; a photo should show the person to match. */
  async references(dir: string): Promise<References> {
    const out: References = { faces: [], skipped: [] };
    for (const path of listImages(dir)) {
      const file = basename(path);
      try {
        const [face] = (await this.faces(await readImage(path))).sort((a, b) => b.score - a.score);
        if (face) out.faces.push({ file, descriptor: face.descriptor });
        else out.skipped.push({ file, reason: 'no face detected' });
      } catch (e) {
        out.skipped.push({ file, reason: (e as Error).message });
      }
    }
    if (out.faces.length === 0) {
      const why = out.skipped.map((s) => `${s.file}: ${s.reason}`).join('; ');
      throw new ItdError('not_found', `no usable reference face in ${dir}${why ? ` (${why})` : ' (no PNG/JPEG/WebP files)'}`, { file: dir, field: 'identity' });
    }
    return out;
  }
}
