"""Independent CLIP text-tower reference in numpy (float64), for parity checks of itd's encoder.

Reads a Hugging Face CLIPTextModel safetensors file and config.json directly (no itd code), runs
the forward pass for the given token ids and writes last_hidden_state and every hidden state.

usage: python3 clip_numpy.py TEXT_ENCODER_DIR IDS_JSON OUT.npz
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
    return last, hidden


def main():
    te, ids_path, out = sys.argv[1:4]
    cfg = json.load(open(f"{te}/config.json"))
    import os
    name = "model.safetensors" if os.path.exists(f"{te}/model.safetensors") else "model.fp16.safetensors"
    w = read_safetensors(f"{te}/{name}")
    ids = np.array(json.load(open(ids_path)), dtype=np.int64)
    last, hidden = forward(cfg, w, ids)
    np.savez(out, last=last.astype(np.float32), **{f"h{i}": hs.astype(np.float32) for i, hs in enumerate(hidden)})


if __name__ == "__main__":
    main()
