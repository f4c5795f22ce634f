"""Independent numpy reference for the TopK SAE forward pass and losses (used by test/sae.test.ts).

Reads a safetensors file (parsed by hand: u64 header length, JSON header, raw little-endian data)
holding W_enc [n, D], b_enc [n], W_dec [n, D], b_pre [D], x [B, D] and dead (U8 [n]), with k, k_aux
and aux_coef in its metadata; prints JSON:
  indices/values  TopK_k(ReLU(W_enc (x - b_pre) + b_enc)) per row, descending
  x_hat           W_dec^T z + b_pre
  fvu             ||x_hat - x||^2 / sum_b ||x_b - mean(x)||^2
  aux             ||e_hat - r||^2 / sum_b ||r_b - mean(r)||^2, r = x - x_hat,
                  e_hat = W_dec[dead]^T TopK_k_aux(ReLU(pre[dead]))
  loss            fvu + aux_coef * aux
Usage: python3 bench/sae_reference.py FILE
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "U8": np.uint8, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(raw[base + b : base + e], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
    return out, meta


def topk_rows(a, k):
    """Indices and values of the k largest entries per row, descending."""
    idx = np.argsort(-a, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(a, idx, axis=1)


def main(path):
    t, meta = read_safetensors(path)
    k, k_aux, aux_coef = int(meta["k"]), int(meta["k_aux"]), float(meta["aux_coef"])
    x = t["x"].astype(np.float64)
    w_enc, b_enc = t["W_enc"].astype(np.float64), t["b_enc"].astype(np.float64)
    w_dec, b_pre = t["W_dec"].astype(np.float64), t["b_pre"].astype(np.float64)
    pre = (x - b_pre) @ w_enc.T + b_enc
    idx, vals = topk_rows(np.maximum(pre, 0), k)
    z = np.zeros_like(pre)
    np.put_along_axis(z, idx, vals, axis=1)
    x_hat = z @ w_dec + b_pre
    variance = ((x - x.mean(0)) ** 2).sum()
    fvu = ((x_hat - x) ** 2).sum() / variance
    dead = np.flatnonzero(t["dead"])
    aux = 0.0
    if len(dead) > 0:
        r = x - x_hat
        a_idx, a_vals = topk_rows(np.maximum(pre[:, dead], 0), min(k_aux, len(dead)))
        z_aux = np.zeros((x.shape[0], len(dead)))
        np.put_along_axis(z_aux, a_idx, a_vals, axis=1)
        e_hat = z_aux @ w_dec[dead]
        aux = ((e_hat - r) ** 2).sum() / ((r - r.mean(0)) ** 2).sum()
    json.dump(
        {
            "indices": idx.tolist(),
            "values": vals.tolist(),
            "x_hat": x_hat.tolist(),
            "fvu": fvu,
            "aux": aux,
            "loss": fvu + aux_coef * aux,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv[1])
