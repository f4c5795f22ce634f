"""FLUX.1 and SD3 prompt embeddings from the independent numpy references (clip_numpy.py, t5_numpy.py),
combined as diffusers' FluxPipeline.encode_prompt and StableDiffusion3Pipeline.encode_prompt do.

usage: python3 t5_pipelines_numpy.py --flux PIPELINE_DIR CLIP_IDS_JSON T5_IDS_JSON OUT.npz
       python3 t5_pipelines_numpy.py --sd3 PIPELINE_DIR IDS_1_JSON IDS_2_JSON IDS_3_JSON OUT.npz [CLIP_SKIPS]
  CLIP_SKIPS: comma-separated (default 0); SD3 writes prompt_embeds_K for each K (and pooled_prompt_embeds)
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_numpy  # noqa: E402
import t5_numpy  # noqa: E402


def ids(path):
    return np.array(json.load(open(path)), dtype=np.int64)


def clip(root, sub, ids_path):
    cfg, w = clip_numpy.load(f"{root}/{sub}")
    return clip_numpy.forward(cfg, w, ids(ids_path))  # last, hidden, pooled, text_embeds


def t5(root, sub, ids_path):
    d = f"{root}/{sub}"
    cfg = json.load(open(f"{d}/config.json"))
    x = ids(ids_path)
    last, _ = t5_numpy.forward(cfg, t5_numpy.read_weights(d), x, np.ones_like(x))  # FLUX/SD3 pass no mask
    return last


def main():
    if sys.argv[1] == "--flux":
        root, ids1, ids2, out = sys.argv[2:6]
        _, _, pooled, _ = clip(root, "text_encoder", ids1)  # CLIPTextModel pooler_output
        np.savez(out, prompt_embeds=t5(root, "text_encoder_2", ids2).astype(np.float32), pooled_prompt_embeds=pooled.astype(np.float32))
        return
    root, ids1, ids2, ids3, out = sys.argv[2:7]
    skips = [int(k) for k in sys.argv[7].split(",")] if len(sys.argv) > 7 else [0]
    l = clip(root, "text_encoder", ids1)
    g = clip(root, "text_encoder_2", ids2)
    t = t5(root, "text_encoder_3", ids3)
    embeds = {}
    for skip in skips:
        states = np.concatenate([l[1][-(skip + 2)], g[1][-(skip + 2)]], -1)
        states = np.pad(states, ((0, 0), (0, 0), (0, t.shape[-1] - states.shape[-1])))
        embeds[f"prompt_embeds_{skip}"] = np.concatenate([states, t], -2).astype(np.float32)
    pooled = np.concatenate([l[3], g[3]], -1)
    np.savez(out, pooled_prompt_embeds=pooled.astype(np.float32), **embeds)


if __name__ == "__main__":
    main()
