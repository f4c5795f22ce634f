"""Independent CLIP text-tower reference in numpy (float64), for parity checks of itd's encoder.

Reads a Hugging Face CLIPTextModel / CLIPTextModelWithProjection safetensors file and config.json
directly (no itd code), runs the forward pass for the given token ids and writes
last_hidden_state, every hidden state, pooler_output and (with a projection) text_embeds.
The --sdxl mode follows diffusers' StableDiffusionXLPipeline.encode_prompt: prompt_embeds =
concat(hidden_states[-(clip_skip + 2)] of text_encoder and text_encoder_2) on the last axis,
pooled_prompt_embeds = text_encoder_2's text_embeds.

usage: python3 clip_numpy.py TEXT_ENCODER_DIR IDS_JSON OUT.npz
       python3 clip_numpy.py --sdxl PIPELINE_DIR IDS_1_JSON IDS_2_JSON OUT.npz [CLIP_SKIP]
  IDS_JSON: [[id, ...], ...] (all rows the same length)
"""
import json
import math
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if info["dtype"] == "BF16":
            raw = np.frombuffer(data[begin:end], dtype=np.uint16).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"]).astype(np.float64)
    return out


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def act(x, kind):
    if kind == "quick_gelu":
        return x / (1 + np.exp(-1.702 * x))
    if kind == "gelu":
        erf = np.vectorize(math.erf)
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(cfg, w, ids):
    p = "text_model."
    n, t = ids.shape
    d, h = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = d // h
    x = w[p + "embeddings.token_embedding.weight"][ids] + w[p + "embeddings.position_embedding.weight"][:t]
    hidden = [x]
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        q = f"{p}encoder.layers.{i}."
        lin = lambda z, name: z @ w[q + name + ".weight"].T + w[q + name + ".bias"]
        a = layer_norm(x, w[q + "layer_norm1.weight"], w[q + "layer_norm1.bias"], cfg["layer_norm_eps"])
        split = lambda z: z.reshape(n, t, h, hd).transpose(0, 2, 1, 3)
        qq, kk, vv = split(lin(a, "self_attn.q_proj") / math.sqrt(hd)), split(lin(a, "self_attn.k_proj")), split(lin(a, "self_attn.v_proj"))
        s = qq @ kk.transpose(0, 1, 3, 2) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ vv).transpose(0, 2, 1, 3).reshape(n, t, d)
        x = x + lin(ctx, "self_attn.out_proj")
        m = layer_norm(x, w[q + "layer_norm2.weight"], w[q + "layer_norm2.bias"], cfg["layer_norm_eps"])
        x = x + lin(act(lin(m, "mlp.fc1"), cfg["hidden_act"]), "mlp.fc2")
        hidden.append(x)
    last = layer_norm(x, w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"], cfg["layer_norm_eps"])
    # transformers' pooling: with the legacy eos_token_id 2 the argmax id (EOS is CLIP's largest),
    # otherwise the first position holding eos_token_id.
    if cfg.get("eos_token_id", 2) == 2:
        pos = ids.argmax(-1)
    else:
        pos = (ids == cfg["eos_token_id"]).astype(np.int64).argmax(-1)
    pooled = last[np.arange(n), pos]
    text_embeds = pooled @ w["text_projection.weight"].T if "text_projection.weight" in w else None
    return last, hidden, pooled, text_embeds


def load(te):
    import os
    cfg = json.load(open(f"{te}/config.json"))
    name = "model.safetensors" if os.path.exists(f"{te}/model.safetensors") else "model.fp16.safetensors"
    return cfg, read_safetensors(f"{te}/{name}")


def main():
    if sys.argv[1] == "--sdxl":
        root, ids1, ids2, out = sys.argv[2:6]
        skip = int(sys.argv[6]) if len(sys.argv) > 6 else 0
        states = []
        for sub, ids_path in (("text_encoder", ids1), ("text_encoder_2", ids2)):
            cfg, w = load(f"{root}/{sub}")
            _, hidden, _, text_embeds = forward(cfg, w, np.array(json.load(open(ids_path)), dtype=np.int64))
            states.append(hidden[-(skip + 2)])
        np.savez(out, prompt_embeds=np.concatenate(states, -1).astype(np.float32), pooled_prompt_embeds=text_embeds.astype(np.float32))
        return
    te, ids_path, out = sys.argv[1:4]
    cfg, w = load(te)
    ids = np.array(json.load(open(ids_path)), dtype=np.int64)
    last, hidden, pooled, text_embeds = forward(cfg, w, ids)
    extra = {} if text_embeds is None else {"text_embeds": text_embeds.astype(np.float32)}
    np.savez(out, last=last.astype(np.float32), pooler=pooled.astype(np.float32), **extra, **{f"h{i}": hs.astype(np.float32) for i, hs in enumerate(hidden)})


if __name__ == "__main__":
    main()
