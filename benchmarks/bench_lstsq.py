"""Dense least squares 200,000 x 200: eigenlens.lstsq (sketch-and-precondition) vs numpy.linalg.lstsq and
unpreconditioned scipy.sparse.linalg.lsqr, well-conditioned and κ = 1e8, side by side in one run.

Usage: python benchmarks/bench_lstsq.py [--n 200000] [--d 200] [--repeats 3] [--threads 0,1] [--no-lsqr]
Every timing is the median of ``--repeats`` runs; each thread count (0 = the machine's default) is run side
by side in the same process (torch.set_num_threads + threadpoolctl for NumPy/SciPy's BLAS).
Backward errors are the Karlson–Waldén estimate with the exact SVD of A (relative to ‖A‖_F), the same
formula for every solver.
"""

import argparse
import json
import os

import numpy as np
import scipy.sparse.linalg as sla
import torch
from _timing import timed
from threadpoolctl import threadpool_limits

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


def case(kappa, args, threads, prob):
    A, b, s, V = prob
    bk = row_blocks(A)
    bvec = bk.rows(b)

    def be(x):
        return _certificate(bk, bvec, x, s, V)["backward_error"]

    An, bn = A.numpy(), b.numpy()
    t_np, x_np = timed(lambda: np.linalg.lstsq(An, bn, rcond=None)[0], args.repeats)
    t_el, res = timed(lambda: lstsq(A, b, method="sketch_precondition", tol=1e-12), args.repeats)
    t_cs, res_cs = timed(lambda: lstsq(A, b, method="sketch_precondition", sketch="countsketch", tol=1e-12),
                         args.repeats)
    # the target's accuracy: LSQR tolerance 1e-10 (default sparse sign), backward error checked exactly below
    t_10, res_10 = timed(lambda: lstsq(A, b, method="sketch_precondition", tol=1e-10), args.repeats)
    row = {
        "kappa": kappa, "threads": threads, "torch_threads": torch.get_num_threads(),
        "numpy_s": t_np, "numpy_backward_error": be(torch.from_numpy(x_np)),
        "eigenlens_sparse_sign_s": t_el, "eigenlens_backward_error": res.backward_error,
        "eigenlens_backward_error_exact_svd": be(res.x), "eigenlens_iterations": res.iterations,
        "eigenlens_countsketch_s": t_cs, "eigenlens_countsketch_backward_error": be(res_cs.x),
        "eigenlens_countsketch_iterations": res_cs.iterations,
        "speedup_vs_numpy": t_np / t_el, "speedup_countsketch_vs_numpy": t_np / t_cs,
        "eigenlens_tol1e-10_s": t_10, "eigenlens_tol1e-10_backward_error_exact_svd": be(res_10.x),
        "eigenlens_tol1e-10_iterations": res_10.iterations, "speedup_tol1e-10_vs_numpy": t_np / t_10,
        "load_avg_1min": os.getloadavg()[0],
    }
    if not args.no_lsqr:
        t_ls, out_ls = timed(lambda: sla.lsqr(An, bn, atol=1e-14, btol=1e-14, iter_lim=2000), 1)
        row.update(scipy_lsqr_s=t_ls, scipy_lsqr_iterations=int(out_ls[2]),
                   scipy_lsqr_backward_error=be(torch.from_numpy(out_ls[0])))
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/_work/bench_lstsq.json")
    ap.add_argument("--threads", default="0,1", help="comma-separated thread counts; 0 = machine default")
    ap.add_argument("--no-lsqr", action="store_true", help="skip unpreconditioned scipy lsqr")
    args = ap.parse_args()
    default = torch.get_num_threads()
    rows = []
    for kappa in (1.0, 1e8):
        prob = problem(args.n, args.d, kappa)
        for t in (int(x) for x in args.threads.split(",")):
            n_t = t or default
            torch.set_num_threads(n_t)
            with threadpool_limits(limits=n_t):
                row = case(kappa, args, n_t, prob)
            rows.append(row)
            print(json.dumps(row, indent=1), flush=True)
        torch.set_num_threads(default)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
