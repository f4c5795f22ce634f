"""Independent T5 v1.1 encoder reference in numpy (float64), for parity checks of itd's T5 encoder.

Follows Hugging Face T5EncoderModel: RMS LayerNorm (no mean, no bias), attention without
1/sqrt(d_kv) scaling plus block 0's bidirectional relative position bias (shared by every block),
gated-gelu FFN (gelu_new), final LayerNorm; hidden_states[L] is after the final LayerNorm.
Reads config.json and model.safetensors or a sharded model.safetensors.index.json directly (no itd
code).

usage: python3 t5_numpy.py T5_DIR IDS_JSON OUT.npz [MASK_JSON]
  IDS_JSON: [[id, ...], ...] (all rows the same length); MASK_JSON: same shape, 1 = attend
"""
import json
import math
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16}


def read_safetensors(path, out):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(data[begin:end], dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"]).astype(np.float64)


def read_weights(d):
    w = {}
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        for shard in sorted(set(json.load(open(index))["weight_map"].values())):
            read_safetensors(os.path.join(d, shard), w)
    else:
        read_safetensors(os.path.join(d, "model.safetensors"), w)
    return w


def rms_norm(x, w, eps):
    return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def bucket(rel, num_buckets, max_distance):
    """HF _relative_position_bucket, bidirectional; the log part in float32 as torch computes it."""
    nb = num_buckets // 2
    out = (rel > 0).astype(np.int64) * nb
    r = np.abs(rel)
    max_exact = nb // 2
    with np.errstate(divide="ignore"):
        f = np.log((r.astype(np.float32) / np.float32(max_exact)).astype(np.float32)).astype(np.float32)
    f = (f / np.float32(math.log(max_distance / max_exact))).astype(np.float32)
    f = (f * np.float32(nb - max_exact)).astype(np.float32)
    large = max_exact + np.where(np.isfinite(f), f, 0).astype(np.int64)
    large = np.minimum(large, nb - 1)
    return out + np.where(r < max_exact, r, large)


def forward(cfg, w, ids, mask):
    n, t = ids.shape
    h, dk = cfg["num_heads"], cfg["d_kv"]
    eps = cfg.get("layer_norm_epsilon", 1e-6)
    x = w["shared.weight"][ids]
    hidden = [x]
    pos = np.arange(t)
    buckets = bucket(pos[None, :] - pos[:, None], cfg.get("relative_attention_num_buckets", 32), cfg.get("relative_attention_max_distance", 128))
    bias = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][buckets].transpose(2, 0, 1)[None]  # [1, H, T, T]
    bias = bias + np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min)
    L = cfg["num_layers"]
    for i in range(L):
        p = f"encoder.block.{i}.layer."
        lin = lambda z, name: z @ w[p + name + ".weight"].T
        split = lambda z: z.reshape(n, t, h, dk).transpose(0, 2, 1, 3)
        a = rms_norm(x, w[p + "0.layer_norm.weight"], eps)
        q, k, v = (split(lin(a, "0.SelfAttention." + s)) for s in "qkv")
        s = q @ k.transpose(0, 1, 3, 2) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        x = x + lin((s @ v).transpose(0, 2, 1, 3).reshape(n, t, h * dk), "0.SelfAttention.o")
        m = rms_norm(x, w[p + "1.layer_norm.weight"], eps)
        x = x + lin(gelu_new(lin(m, "1.DenseReluDense.wi_0")) * lin(m, "1.DenseReluDense.wi_1"), "1.DenseReluDense.wo")
        if i + 1 < L:
            hidden.append(x)
    last = rms_norm(x, w["encoder.final_layer_norm.weight"], eps)
    hidden.append(last)
    return last, hidden


def main():
    d, ids_path, out = sys.argv[1:4]
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg.get("feed_forward_proj") == "gated-gelu", "reference covers T5 v1.1 (gated-gelu) only"
    ids = np.array(json.load(open(ids_path)), dtype=np.int64)
    mask = np.array(json.load(open(sys.argv[4])), dtype=np.int64) if len(sys.argv) > 4 else np.ones_like(ids)
    last, hidden = forward(cfg, read_weights(d), ids, mask)
    np.savez(out, last=last.astype(np.float32), **{f"h{i}": hs.astype(np.float32) for i, hs in enumerate(hidden)})


if __name__ == "__main__":
    main()
