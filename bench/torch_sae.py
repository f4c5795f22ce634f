"""PyTorch CPU TopK SAE trainer: the baseline `npm run bench:train:torch` races itd's trainer against.

Own code, written the way a PyTorch user trains a TopK SAE on a CPU (sparsify's design: an encoder
autograd function whose backward only touches the selected latents, decoding with embedding_bag),
running the same recipe as src/train/trainer.ts with every hyper-parameter passed in by the bench
(itd's resolved config), so both sides train the same model:
  init      W_dec rows random unit vectors, W_enc = W_dec, b_enc = 0, b_pre = geometric median of
            --median-sample rows (Weiszfeld from the mean, at most 100 iterations, relative tol 1e-6)
  forward   z = TopK_k(ReLU(W_enc (x - b_pre) + b_enc)), x_hat = W_dec^T z + b_pre
  loss      ||x_hat - x||^2 / V + aux_coef ||e_hat - r||^2 / V_r   (V, V_r: total variance of x, of r)
  AuxK      r = x - x_hat (constant), e_hat = W_dec[dead]^T TopK_kaux(ReLU(pre[dead])); a latent is
            dead after --dead-tokens tokens without firing
  optimiser Adam(lr, betas, eps) with linear warm-up; the decoder gradient is projected off each
            unit row before the step and the rows are renormalised after it
Data: safetensors files holding an `activations` [N, D] F32 tensor (the files itd trains on); one
seeded permutation per epoch. Writes the SAE in sparsify's layout (sae.safetensors + cfg.json, which
itd loads) and prints one JSON line: seconds per phase, the last step's FVU, held-out FVU, dead share.
Usage: python3 bench/torch_sae.py --train F --heldout F --out DIR --latents N --k K --batch B
       --tokens T --lr LR --warmup S --k-aux KA --dead-tokens DT --aux-coef C --eps E
       --median-sample M --seed S --threads T
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from sae_reference import read_safetensors

MEDIAN_ITERS = 100
MEDIAN_TOL = 1e-6
EVAL_CHUNK = 4096


class TopKEncoder(torch.autograd.Function):
    """(values, indices) = TopK_k(ReLU(x W^T - W b_pre + b)) per row; the backward is sparse in the latents."""

    @staticmethod
    def forward(ctx, x, w, b, b_pre, k):
        pre = torch.addmm(b - w @ b_pre, x, w.t())  # [B, n]; (x - b_pre) W^T without the centred copy
        values, indices = pre.topk(k, dim=1, sorted=False)
        values = values.clamp_min(0)
        ctx.save_for_backward(x, w, b_pre, indices, values)
        return values, indices

    @staticmethod
    def backward(ctx, g_values, _g_indices):
        x, w, b_pre, indices, values = ctx.saved_tensors
        B, k = indices.shape
        g = (g_values * (values > 0)).reshape(-1)  # ReLU mask, [B k]
        lat = indices.reshape(-1)
        rows = torch.arange(B).repeat_interleave(k)
        # dW[j] = sum_b g_bj x_b as a sparse [n, B] x dense [B, D] product
        gw = torch.sparse.mm(torch.sparse_coo_tensor(torch.stack([lat, rows]), g, (w.shape[0], B)), x)
        gb = torch.zeros(w.shape[0], dtype=g.dtype).index_add_(0, lat, g)
        # the -W b_pre term: dW gets -db_enc b_pre^T (so dW[j] = sum_b g_bj (x_b - b_pre)), db_pre gets -db_enc W
        return None, gw - gb[:, None] * b_pre[None, :], gb, -(gb @ w), None


def geometric_median(x):
    """Weiszfeld's iterations in float64 from the mean, as itd's geometricMedian."""
    x = x.double()
    y = x.mean(0)
    for _ in range(MEDIAN_ITERS):
        d = (x - y).norm(dim=1)
        keep = d > 0
        w = 1 / d[keep]
        nxt = (w[:, None] * x[keep]).sum(0) / w.sum()
        step = (nxt - y).pow(2).sum()
        y = nxt
        if step <= MEDIAN_TOL**2 * (y.pow(2).sum() + 1e-30):
            break
    return y.float()


def total_variance(x):
    return (x - x.mean(0)).pow(2).sum()


class Sae:
    def __init__(self, n, D, b_pre, seed):
        gen = torch.Generator().manual_seed(seed)
        w_dec = torch.randn(n, D, generator=gen)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.w_enc = w_dec.clone().requires_grad_(True)
        self.b_enc = torch.zeros(n, requires_grad=True)
        self.w_dec = w_dec.requires_grad_(True)
        self.b_pre = b_pre.clone().requires_grad_(True)

    def params(self):
        return [self.w_enc, self.b_enc, self.w_dec, self.b_pre]

    def encode(self, x, k):
        return TopKEncoder.apply(x, self.w_enc, self.b_enc, self.b_pre, k)

    def decode(self, values, indices):
        return F.embedding_bag(indices, self.w_dec, per_sample_weights=values, mode="sum") + self.b_pre


def aux_loss(sae, x, x_hat, dead, k_aux):
    """||e_hat - r||^2 / V_r over the dead latents (their pre-activations recomputed, a [B, m] product)."""
    r = (x - x_hat).detach()
    v_r = total_variance(r)
    if not v_r > 0:
        return None
    pre = F.linear(x - sae.b_pre, sae.w_enc[dead], sae.b_enc[dead])  # [B, m]
    values, local = pre.topk(min(k_aux, len(dead)), dim=1, sorted=False)
    e_hat = F.embedding_bag(dead[local], sae.w_dec, per_sample_weights=values.clamp_min(0), mode="sum")
    return (e_hat - r).pow(2).sum() / v_r


def train(a, data):
    N, D = data.shape
    gen = torch.Generator().manual_seed(a.seed)
    sample = data[torch.randperm(N, generator=gen)[: a.median_sample]]
    sae = Sae(a.latents, D, geometric_median(sample), a.seed)
    opt = torch.optim.Adam(sae.params(), lr=a.lr, betas=(0.9, 0.999), eps=a.eps, foreach=True)  # foreach: torch's faster CPU Adam
    steps = max(1, -(-a.tokens // a.batch))
    since_fired = torch.zeros(a.latents, dtype=torch.float64)
    perm, offset = torch.randperm(N, generator=gen), 0
    last = {}
    for step in range(1, steps + 1):
        parts, need = [], a.batch
        while need > 0:
            if offset == N:
                perm, offset = torch.randperm(N, generator=gen), 0
            take = min(need, N - offset)
            parts.append(perm[offset : offset + take])
            offset += take
            need -= take
        x = data[torch.cat(parts)]
        dead = torch.nonzero(since_fired >= a.dead_tokens).reshape(-1)
        values, indices = sae.encode(x, a.k)
        x_hat = sae.decode(values, indices)
        fvu = (x_hat - x).pow(2).sum() / total_variance(x)
        aux = aux_loss(sae, x, x_hat, dead, a.k_aux) if len(dead) > 0 and a.aux_coef > 0 else None
        loss = fvu if aux is None else fvu + a.aux_coef * aux
        for g in opt.param_groups:
            g["lr"] = a.lr * (min(1.0, step / a.warmup) if a.warmup > 0 else 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            w, g = sae.w_dec, sae.w_dec.grad
            g -= (g * w).sum(1, keepdim=True) * w
            opt.step()
            w /= w.norm(dim=1, keepdim=True)
            since_fired += a.batch
            since_fired[indices[values > 0]] = 0
        last = {"fvu": fvu.item(), "aux": 0.0 if aux is None else aux.item(), "dead_fraction": len(dead) / a.latents}
    return sae, steps, last


@torch.no_grad()
def heldout_fvu(sae, x, k):
    sq, s, ss = 0.0, torch.zeros(x.shape[1], dtype=torch.float64), 0.0
    for r0 in range(0, x.shape[0], EVAL_CHUNK):
        xb = x[r0 : r0 + EVAL_CHUNK]
        values, indices = sae.encode(xb, k)
        sq += (sae.decode(values, indices) - xb).double().pow(2).sum().item()
        s += xb.double().sum(0)
        ss += xb.double().pow(2).sum().item()
    return sq / (ss - s.pow(2).sum().item() / x.shape[0])


def write_sae(out, sae, k):
    os.makedirs(out, exist_ok=True)
    tensors = {"encoder.weight": sae.w_enc, "encoder.bias": sae.b_enc, "W_dec": sae.w_dec, "b_dec": sae.b_pre}
    header, blobs, pos = {}, [], 0
    for name, t in tensors.items():
        raw = t.detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(os.path.join(out, "sae.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for b in blobs:
            f.write(b)
    n, D = sae.w_dec.shape
    cfg = {"d_in": D, "num_latents": n, "k": k, "activation": "topk", "multi_topk": False, "normalize_decoder": True}
    with open(os.path.join(out, "cfg.json"), "w") as f:
        json.dump(cfg, f)


def load_activations(path):
    t, _ = read_safetensors(path)
    return torch.from_numpy(np.array(t["activations"], dtype=np.float32))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ["train", "heldout", "out"]:
        p.add_argument(f"--{name}", required=True)
    for name in ["latents", "k", "batch", "tokens", "warmup", "k-aux", "dead-tokens", "median-sample", "seed", "threads"]:
        p.add_argument(f"--{name}", type=int, required=True)
    for name in ["lr", "aux-coef", "eps"]:
        p.add_argument(f"--{name}", type=float, required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    data = load_activations(a.train)
    t_load = time.perf_counter()
    sae, steps, last = train(a, data)
    t_train = time.perf_counter()
    write_sae(a.out, sae, a.k)
    fvu = heldout_fvu(sae, load_activations(a.heldout), a.k)
    t_end = time.perf_counter()
    report = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "steps": steps,
        "load_s": t_load - t0, "train_s": t_train - t_load, "save_eval_s": t_end - t_train,
        "wall_s": t_end - t0, "cpu_s": time.process_time() - c0,
        "train_fvu": last["fvu"], "aux_loss": last["aux"], "dead_fraction": last["dead_fraction"], "heldout_fvu": fvu,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
