"""The plain-BLAS baseline of bench:encode: a CLIP text-tower forward in numpy float32 (OpenBLAS
sgemm), written the way one would for speed without a framework: weights viewed straight from the
safetensors bytes, every Linear one 2-D GEMM over all n*t rows, attention as batched GEMMs on
contiguous per-head arrays, element-wise work in place. It is timed as a whole process (python
start, weight reading, forward, writing last_hidden_state) against `itd encode` on the same ids.
Independent of itd's code; the float64 oracle for parity is test/reference/clip_numpy.py.

usage: python3 clip_f32_numpy.py TEXT_ENCODER_DIR IDS_JSON OUT.npy
"""
import json
import math
import struct
import sys

import numpy as np


def read_f32(path):
    """Every tensor of a safetensors file as a read-only float32 view of the file's bytes (no copy)."""
    raw = open(path, "rb").read()
    n = struct.unpack_from("<Q", raw)[0]
    tensors = {k: v for k, v in json.loads(raw[8:8 + n]).items() if k != "__metadata__"}
    bad = [k for k, v in tensors.items() if v["dtype"] != "F32"]
    if bad:
        raise SystemExit(f"{path}: {bad[0]} is not F32; this baseline reads F32 checkpoints")
    return {k: np.frombuffer(raw, np.float32, (v["data_offsets"][1] - v["data_offsets"][0]) // 4, 8 + n + v["data_offsets"][0]).reshape(v["shape"]) for k, v in tensors.items()}


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    y = x - mu
    var = np.mean(y * y, -1, keepdims=True)
    y /= np.sqrt(var + np.float32(eps))
    y *= w
    y += b
    return y


def forward(cfg, w, ids):
    p = "text_model." if "text_model.embeddings.token_embedding.weight" in w else ""
    n, t = ids.shape
    d, h = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = d // h
    eps = cfg.get("layer_norm_eps", 1e-5)
    x = (w[p + "embeddings.token_embedding.weight"][ids] + w[p + "embeddings.position_embedding.weight"][:t]).reshape(n * t, d)
    mask = np.triu(np.full((t, t), -np.inf, dtype=np.float32), 1)
    scale = np.float32(1 / math.sqrt(hd))
    for i in range(cfg["num_hidden_layers"]):
        q = f"{p}encoder.layers.{i}."
        lin = lambda z, name: z @ w[q + name + ".weight"].T + w[q + name + ".bias"]
        heads = lambda z: np.ascontiguousarray(z.reshape(n, t, h, hd).transpose(0, 2, 1, 3))
        a = layer_norm(x, w[q + "layer_norm1.weight"], w[q + "layer_norm1.bias"], eps)
        qq, kk, vv = heads(lin(a, "self_attn.q_proj") * scale), heads(lin(a, "self_attn.k_proj")), heads(lin(a, "self_attn.v_proj"))
        s = qq @ kk.transpose(0, 1, 3, 2)
        s += mask
        s -= s.max(-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ vv).transpose(0, 2, 1, 3).reshape(n * t, d)
        x = x + lin(ctx, "self_attn.out_proj")
        u = lin(layer_norm(x, w[q + "layer_norm2.weight"], w[q + "layer_norm2.bias"], eps), "mlp.fc1")
        if cfg.get("hidden_act", "quick_gelu") != "quick_gelu":
            raise SystemExit("this baseline implements quick_gelu (the sd1 bench model)")
        g = u * np.float32(-1.702)
        np.exp(g, out=g)
        g += 1
        u /= g
        x = x + lin(u, "mlp.fc2")
    return layer_norm(x, w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"], eps).reshape(n, t, d)


def main():
    te, ids_path, out = sys.argv[1:4]
    cfg = json.load(open(f"{te}/config.json"))
    w = read_f32(f"{te}/model.safetensors")
    np.save(out, forward(cfg, w, np.array(json.load(open(ids_path)), dtype=np.int64)))


if __name__ == "__main__":
    main()
