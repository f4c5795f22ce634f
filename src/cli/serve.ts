/** `itd serve` with the image pipeline wired in for /v1/generate. */
import { StableDiffusionPipeline } from '../generate/index.js';
import { encodePng } from '../io/png.js';
import { serveSpec } from './serve-run.js';
import type { ImagePipeline } from '../serve/context.js';

/** src/generate's pipeline behind the server's ImagePipeline: one PNG per prompt, conditioned by the server's eraser. */
export async function loadImagePipeline(dir: string): Promise<ImagePipeline> {
  const pipe = await StableDiffusionPipeline.load(dir);
  return {
    text: pipe.text,
    async generate(prompts, o) {
      const { condition, erase: _erase, ...req } = o;
      const r = await pipe.generate({ prompts, ...req }, condition);
      return r.images.map((img) => ({ png: encodePng(img, { prompt: img.prompt, seed: String(img.seed) }) }));
    },
    release: () => pipe.release(),
  };
}

export const serveCommand = serveSpec({ loadPipeline: loadImagePipeline });
