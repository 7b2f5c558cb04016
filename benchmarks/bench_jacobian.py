"""Jacobian lens benchmark: batched matrix-free Jacobian products and top singular values vs the usual tools.

Side by side in one run (ratios are what to read: the machine is shared):
1. ``J @ V`` for ``k`` vectors: ``el.jacobian`` (one vmapped JVP) vs a Python loop of ``torch.func.jvp``
   and vs ``torch.autograd.functional.jvp`` (double-backward trick) per vector.
2. Top-5 singular values of one example's input Jacobian (a field model, D = O = n): eigenlens
   (matrix-free Krylov on the Gram matrix) vs materialising the Jacobian with ``torch.func.jacrev`` and
   ``torch.linalg.svdvals``; relative error of the top singular value.

Run:  .venv/bin/python benchmarks/bench_jacobian.py [--n 512 2048] [--k 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

import eigenlens as el
from eigenlens.nn.jacobian import _top_singular_values


class Field(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(1, width, 5, padding=2, padding_mode="circular"), nn.GELU(),
            nn.Conv1d(width, width, 5, padding=2, padding_mode="circular"), nn.GELU(),
            nn.Conv1d(width, 1, 5, padding=2, padding_mode="circular"),
        )

    def forward(self, u):
        return u + self.net(u)


def best(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), out


def bench(model: nn.Module, n: int, k: int, repeats: int) -> None:
    import copy

    u = torch.randn(1, 1, n)
    J = el.jacobian(model, u)
    V = torch.randn(n, k)
    t_el, JV = best(lambda: J @ V, repeats)

    def loop_func():
        return torch.stack([torch.func.jvp(model, (u,), (v.reshape(1, 1, n),))[1].reshape(-1) for v in V.T], 1)

    def loop_autograd():
        return torch.stack([torch.autograd.functional.jvp(model, u, v.reshape(1, 1, n))[1].reshape(-1) for v in V.T], 1)

    t_f, JV_f = best(loop_func, repeats)
    t_a, _ = best(loop_autograd, repeats)
    err = float((JV - JV_f).abs().max() / JV_f.abs().max())
    print(f"| {n} | J @ V, k={k} | {t_el:.3f} | loop of torch.func.jvp | {t_f:.3f} | {t_f / t_el:.1f}x | "
          f"max rel diff {err:.1e} |")
    print(f"| {n} | J @ V, k={k} | {t_el:.3f} | loop of autograd.functional.jvp | {t_a:.3f} | {t_a / t_el:.1f}x | |")
    m64, u64 = copy.deepcopy(model).double(), u.double()
    Jd = el.jacobian(m64, u64)
    t_top, s = best(lambda: _top_singular_values(Jd, 5, 1e-8, torch.Generator().manual_seed(0)), 1)

    def dense():
        return torch.linalg.svdvals(torch.func.jacrev(m64)(u64).detach().reshape(n, n))

    t_dense, s_dense = best(dense, 1)
    rel = abs(float(s[0]) - float(s_dense[0])) / float(s_dense[0])
    print(f"| {n} | top-5 singular values (float64) | {t_top:.3f} | jacrev + svdvals | {t_dense:.3f} | "
          f"{t_dense / t_top:.1f}x | σ₁ rel. err {rel:.1e} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = Field()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; torch {torch.__version__}")
    print("| n | task | eigenlens s | baseline | baseline s | ratio (baseline/eigenlens) | check |")
    print("|---|---|---|---|---|---|---|")
    for n in args.n:
        bench(model, n, args.k, args.repeats)


if __name__ == "__main__":
    main()
