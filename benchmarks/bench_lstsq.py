"""Dense least squares 200,000 x 200: eigenlens.lstsq (sketch-and-precondition) vs numpy.linalg.lstsq and
unpreconditioned scipy.sparse.linalg.lsqr, well-conditioned and κ = 1e8, side by side in one run.

Usage: python benchmarks/bench_lstsq.py [--n 200000] [--d 200] [--repeats 3]
Backward errors are the Karlson–Waldén estimate with the exact SVD of A (relative to ‖A‖_F), the same
formula for every solver.
"""

import argparse
import json
import os
import time

import numpy as np
import scipy.sparse.linalg as sla
import torch

from eigenlens.linalg.distributed import row_blocks
from eigenlens.linalg.lstsq import _certificate, lstsq


def problem(n, d, kappa, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, d, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(A)  # orthonormal columns
    V = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
    s = torch.logspace(0, -np.log10(kappa), d, dtype=torch.float64)
    A = (Q * s) @ V.T
    b = A @ torch.randn(d, generator=g, dtype=torch.float64) + 1e-2 * torch.randn(n, generator=g, dtype=torch.float64)
    return A.contiguous(), b, s, V


def timed(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def case(kappa, args):
    A, b, s, V = problem(args.n, args.d, kappa)
    bk = row_blocks(A)
    bvec = bk.rows(b)

    def be(x):
        return _certificate(bk, bvec, x, s, V)["backward_error"]

    An, bn = A.numpy(), b.numpy()
    t_np, x_np = timed(lambda: np.linalg.lstsq(An, bn, rcond=None)[0], args.repeats)
    t_el, res = timed(lambda: lstsq(A, b, method="sketch_precondition", tol=1e-12), args.repeats)
    t_cs, res_cs = timed(lambda: lstsq(A, b, method="sketch_precondition", sketch="countsketch", tol=1e-12),
                         args.repeats)
    t_ls, out_ls = timed(lambda: sla.lsqr(An, bn, atol=1e-14, btol=1e-14, iter_lim=2000), 1)
    row = {
        "kappa": kappa,
        "numpy_s": t_np, "numpy_backward_error": be(torch.from_numpy(x_np)),
        "eigenlens_sparse_sign_s": t_el, "eigenlens_backward_error": res.backward_error,
        "eigenlens_backward_error_exact_svd": be(res.x), "eigenlens_iterations": res.iterations,
        "eigenlens_countsketch_s": t_cs, "eigenlens_countsketch_backward_error": be(res_cs.x),
        "eigenlens_countsketch_iterations": res_cs.iterations,
        "scipy_lsqr_s": t_ls, "scipy_lsqr_iterations": int(out_ls[2]),
        "scipy_lsqr_backward_error": be(torch.from_numpy(out_ls[0])),
        "speedup_vs_numpy": t_np / t_el,
        "load_avg_1min": os.getloadavg()[0],
    }
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/_work/bench_lstsq.json")
    args = ap.parse_args()
    rows = []
    for kappa in (1.0, 1e8):
        row = case(kappa, args)
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
