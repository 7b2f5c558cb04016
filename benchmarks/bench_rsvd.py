"""Randomized SVD, rank 50 of a 20,000 x 2,000 matrix (fast and slow spectral decay): eigenlens.randomized_svd
vs scikit-learn's randomized_svd and ARPACK (scipy.sparse.linalg.svds), side by side in one run.

Accuracy: max relative error of the 50 singular values, and the spectral error ‖A − U S Vᵀ‖₂ / σ₅₁ (1 is
optimal), measured by 30 power iterations on the residual.
Usage: python benchmarks/bench_rsvd.py [--repeats 3] [--threads 0,1]
Timings are medians of ``--repeats`` runs (ARPACK: one run); each thread count (0 = the machine's default) is
run side by side in the same process (torch.set_num_threads + threadpoolctl for NumPy/SciPy's BLAS).
"""

import argparse
import json
import os

import numpy as np
import scipy.fft
import scipy.sparse.linalg as sla
import torch
from _timing import timed
from sklearn.utils.extmath import randomized_svd as sk_rsvd
from threadpoolctl import threadpool_limits

from eigenlens.linalg.lowrank import randomized_svd

M, N, K = 20_000, 2_000, 50


def problem(decay, seed=0):
    rng = np.random.default_rng(seed)
    # U: orthonormal columns of a randomly signed DCT basis (cheap to build), V: random orthogonal
    U = scipy.fft.dct(np.eye(M, N) * rng.choice([-1.0, 1.0], size=(M, 1)), axis=0, norm="ortho")
    U = U[rng.permutation(M)]
    V, _ = np.linalg.qr(rng.standard_normal((N, N)))
    j = np.arange(N)
    s = 0.9**j if decay == "fast" else 1.0 / (1.0 + j)
    return np.ascontiguousarray((U * s) @ V.T), s


def spectral_error(A, U, S, Vt, iters=30, seed=0):
    x = np.random.default_rng(seed).standard_normal(A.shape[1])
    for _ in range(iters):
        y = A @ x - U @ (S * (Vt @ x))
        x = A.T @ y - Vt.T @ (S * (U.T @ y))
        x /= np.linalg.norm(x)
    y = A @ x - U @ (S * (Vt @ x))
    return np.linalg.norm(y)


def case(decay, args, threads, prob):
    A, s = prob
    At = torch.from_numpy(A)
    runs = {
        "eigenlens_q2": lambda: randomized_svd(At, K, oversample=10, power_iters=2),
        "eigenlens_q4": lambda: randomized_svd(At, K, oversample=10, power_iters=4),
        "sklearn_q2": lambda: sk_rsvd(A, K, n_oversamples=10, n_iter=2, random_state=0),
        "sklearn_auto": lambda: sk_rsvd(A, K, random_state=0),
        "arpack": lambda: sla.svds(A, k=K, tol=1e-10, random_state=0),
    }
    row = {"decay": decay, "threads": threads, "load_avg_1min": os.getloadavg()[0]}
    for name, fn in runs.items():
        t, out = timed(fn, args.repeats if name != "arpack" else 1)
        if name.startswith("eigenlens"):
            U, S, Vt = out.u.numpy(), out.s.numpy(), out.v.numpy().T
        else:
            U, S, Vt = out
        order = np.argsort(S)[::-1]
        U, S, Vt = U[:, order], S[order], Vt[order]
        row[f"{name}_s"] = t
        row[f"{name}_sv_relerr"] = float(np.max(np.abs(S - s[:K]) / s[:K]))
        row[f"{name}_spectral_err_over_opt"] = float(spectral_error(A, U, S, Vt) / s[K])
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/_work/bench_rsvd.json")
    ap.add_argument("--threads", default="0,1", help="comma-separated thread counts; 0 = machine default")
    args = ap.parse_args()
    default = torch.get_num_threads()
    rows = []
    for decay in ("fast", "slow"):
        prob = problem(decay)
        for t in (int(x) for x in args.threads.split(",")):
            n_t = t or default
            torch.set_num_threads(n_t)
            with threadpool_limits(limits=n_t):
                row = case(decay, args, n_t, prob)
            rows.append(row)
            print(json.dumps(row, indent=1), flush=True)
        torch.set_num_threads(default)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
