"""Randomized SVD, rank 50 of a 20,000 x 2,000 matrix (fast 0.9^j and slow 1/(1+j) spectral decay): eigenlens
randomized_svd vs scikit-learn's randomized_svd and ARPACK (scipy.sparse.linalg.svds), side by side in one run,
compared at matched accuracy.

Accuracy of a rank-50 result ``U S Vᵀ``: the maximum relative error of the 50 singular values, and the
spectral error ``‖A − U S Vᵀ‖₂ / σ₅₁`` (1 is optimal). The spectral error is exact (no power-method
underestimate): with ``A = Uₜ Σ Vₜᵀ`` known and ``U = Uₜ P + Q₂R₂``, ``A − U S Vᵀ = [Uₜ Q₂] [Σ Vₜᵀ − P S Vᵀ;
−R₂ S Vᵀ]`` and the norm of the small ``2050 × 2000`` factor comes from Lanczos (ARPACK, tol 1e-12).

Randomized methods run with ``--seeds`` seeds (generator / random_state 0, 1, …): their errors are the worst
over the seeds, their time the median over seeds of the median of ``--repeats`` runs. ARPACK runs ``--repeats``
times with one seed (v0 from random_state=0). All settings run round robin (each repeat runs every setting
once), so load bursts on a shared machine hit all of them alike.

Matching: for every compared run (scikit-learn at n_iter = 2, 4 and its default 'auto', ARPACK at tol 1e-3,
1e-6, 1e-10) the table shows the fastest eigenlens setting whose
*worst-seed* errors are at most the compared run's *best-seed* errors on both measures (errors below the
machine-precision floors 1e-14 (singular values) and 1 + 1e-10 (spectral ratio) count as equal).

Usage: python benchmarks/bench_rsvd.py [--repeats 3] [--seeds 3] [--threads 0,1] [--decays fast,slow]
Each thread count (0 = the machine's default) is run side by side in the same process (torch.set_num_threads
+ threadpoolctl for NumPy/SciPy's BLAS). Full results go to benchmarks/_work/bench_rsvd.json.
"""

import argparse
import functools
import json
import os
import statistics

import numpy as np
import scipy.fft
import scipy.sparse.linalg as sla
import torch
from _timing import timed
from sklearn.utils.extmath import randomized_svd as sk_rsvd
from threadpoolctl import threadpool_limits

from eigenlens.linalg.lowrank import randomized_svd

M, N, K = 20_000, 2_000, 50
SV_FLOOR, RATIO_FLOOR = 1e-14, 1 + 1e-10

#: eigenlens settings tried: (method, oversample p, power_iters q); every one reads A 2q + 2 times with
#: b = 50 + p columns. p = 10, 22, 46 give b = 60, 72, 96: MKL's one-thread dgemm on the AMD EPYC test machine
#: is 1.5-2x faster for multiples of 12 columns (see RESULTS.md)
EIGENLENS = [("krylov", 10, 1), ("krylov", 22, 1), ("krylov", 46, 1), ("krylov", 10, 2), ("krylov", 22, 2),
             ("krylov", 10, 3), ("krylov", 10, 4), ("krylov", 22, 5), ("krylov", 10, 6), ("subspace", 10, 2)]
SKLEARN = [2, 4, "auto"]
ARPACK_TOLS = [1e-3, 1e-6, 1e-10]


def problem(decay, seed=0):
    rng = np.random.default_rng(seed)
    # U: orthonormal columns of a randomly signed DCT basis (cheap to build), V: random orthogonal
    U = scipy.fft.dct(np.eye(M, N) * rng.choice([-1.0, 1.0], size=(M, 1)), axis=0, norm="ortho")
    U = U[rng.permutation(M)]
    V, _ = np.linalg.qr(rng.standard_normal((N, N)))
    j = np.arange(N)
    s = 0.9**j if decay == "fast" else 1.0 / (1.0 + j)
    return np.ascontiguousarray((U * s) @ V.T), s, U, V


def spectral_error(prob, U, S, V):
    """Exact ‖A − U diag(S) Vᵀ‖₂ for ``A = Uₜ diag(s) Vₜᵀ`` (``U`` orthonormal columns)."""
    _, s, Ut, Vt = prob
    P = Ut.T @ U
    _, R2 = np.linalg.qr(U - Ut @ P)
    SVt = S[:, None] * V.T
    small = np.vstack([s[:, None] * Vt.T - P @ SVt, -R2 @ SVt])
    op = sla.LinearOperator((N, N), matvec=lambda x: small.T @ (small @ x), dtype=np.float64)
    lam = sla.eigsh(op, k=1, which="LA", tol=1e-12, return_eigenvectors=False, v0=np.ones(N))[0]
    return float(np.sqrt(lam))


def accuracy(prob, U, S, V):
    s = prob[1]
    order = np.argsort(S)[::-1]
    U, S, V = U[:, order], S[order], V[:, order]
    return float(np.max(np.abs(S - s[:K]) / s[:K])), spectral_error(prob, U, S, V) / s[K]


def runners(A, At):
    out = {}
    for method, p, q in EIGENLENS:
        def fn(seed, method=method, p=p, q=q):
            r = randomized_svd(At, K, oversample=p, power_iters=q, method=method,
                               generator=torch.Generator().manual_seed(seed))
            return r.u.numpy(), r.s.numpy(), r.v.numpy()
        out[f"eigenlens {method} p={p} q={q}"] = ("eigenlens", fn)
    for it in SKLEARN:
        def fn(seed, it=it):
            U, S, Vt = sk_rsvd(A, K, n_oversamples=10, n_iter=it, random_state=seed)
            return U, S, Vt.T
        out[f"sklearn n_iter={it}"] = ("sklearn", fn)
    for tol in ARPACK_TOLS:
        def fn(seed, tol=tol):
            U, S, Vt = sla.svds(A, k=K, tol=tol, random_state=0)
            return U, S, Vt.T
        out[f"arpack tol={tol:g}"] = ("arpack", fn)
    return out


def case(decay, prob, threads, args):
    A = prob[0]
    At = torch.from_numpy(A)
    todo = runners(A, At)
    times = {name: {} for name in todo}
    errs = {name: [] for name in todo}
    # round robin (every repeat runs every setting once) so that load bursts on a shared machine hit all alike
    for seed in range(args.seeds):
        for rep in range(args.repeats):
            for name, (tool, fn) in todo.items():
                if tool == "arpack" and seed > 0:
                    continue  # deterministic start vector: one seed
                t, out = timed(functools.partial(fn, seed), 1)
                times[name].setdefault(seed, []).append(t)
                if rep == 0:
                    errs[name].append(accuracy(prob, *out))
    rows = {}
    for name, (tool, _) in todo.items():
        sv, ratio = zip(*errs[name])
        per_seed = [statistics.median(v) for v in times[name].values()]
        rows[name] = {"tool": tool, "s": statistics.median(per_seed), "sv_relerr_worst": max(sv),
                      "sv_relerr_best": min(sv), "ratio_worst": max(ratio), "ratio_best": min(ratio),
                      "times": per_seed, "sv_relerr": list(sv), "ratio": list(ratio)}
    matched = []
    for name, r in rows.items():
        if r["tool"] == "eigenlens":
            continue
        ok = [(e["s"], en) for en, e in rows.items() if e["tool"] == "eigenlens"
              and e["sv_relerr_worst"] <= max(r["sv_relerr_best"], SV_FLOOR)
              and e["ratio_worst"] <= max(r["ratio_best"], RATIO_FLOOR)]
        best = min(ok)[1] if ok else None
        matched.append({"decay": decay, "threads": threads, "compared": name, "compared_s": r["s"],
                        "compared_sv_relerr_best": r["sv_relerr_best"], "compared_ratio_best": r["ratio_best"],
                        "eigenlens": best, "eigenlens_s": rows[best]["s"] if best else None,
                        "eigenlens_sv_relerr_worst": rows[best]["sv_relerr_worst"] if best else None,
                        "eigenlens_ratio_worst": rows[best]["ratio_worst"] if best else None})
    return rows, matched


def fmt_table(matched):
    head = (f"{'decay':5} {'thr':>3} | {'compared run':20} {'time s':>7} {'sv err':>8} {'‖E‖/σ51':>12} | "
            f"{'eigenlens setting (fastest matched)':34} {'time s':>7} {'sv err':>8} {'‖E‖/σ51':>12} | {'speed-up':>8}")
    lines = [head, "-" * len(head)]
    for m in matched:
        left = (f"{m['decay']:5} {m['threads']:>3} | {m['compared']:20} {m['compared_s']:7.3f} "
                f"{m['compared_sv_relerr_best']:8.1e} {m['compared_ratio_best']:12.9f} | ")
        if m["eigenlens"] is None:
            lines.append(left + "no eigenlens setting tried is as accurate")
            continue
        lines.append(left + f"{m['eigenlens'][10:]:34} {m['eigenlens_s']:7.3f} {m['eigenlens_sv_relerr_worst']:8.1e} "
                     f"{m['eigenlens_ratio_worst']:12.9f} | {m['compared_s'] / m['eigenlens_s']:7.2f}x")
    return "\n".join(lines)


def markdown_table(matched):
    lines = ["| decay | threads | compared run: time, σ err, ‖E‖/σ₅₁ (best seed) | fastest eigenlens setting at "
             "least as accurate: time, σ err, ‖E‖/σ₅₁ (worst seed) | speed-up |", "|---|---|---|---|---|"]
    for m in matched:
        left = (f"| {m['decay']} | {m['threads']} | {m['compared']}: {m['compared_s']:.2f} s, "
                f"{m['compared_sv_relerr_best']:.1e}, {m['compared_ratio_best']:.6f} | ")
        if m["eigenlens"] is None:
            lines.append(left + "none of the settings tried | – |")
        else:
            lines.append(left + f"{m['eigenlens'][10:]}: {m['eigenlens_s']:.2f} s, "
                         f"{m['eigenlens_sv_relerr_worst']:.1e}, {m['eigenlens_ratio_worst']:.6f} | "
                         f"**{m['compared_s'] / m['eigenlens_s']:.2f}×** |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/_work/bench_rsvd.json")
    ap.add_argument("--threads", default="0,1", help="comma-separated thread counts; 0 = machine default")
    ap.add_argument("--decays", default="fast,slow", help="comma-separated spectra: fast (0.9^j), slow (1/(1+j))")
    args = ap.parse_args()
    default = torch.get_num_threads()
    results, matched = [], []
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}", flush=True)
    for decay in args.decays.split(","):
        prob = problem(decay)
        for t in (int(x) for x in args.threads.split(",")):
            n_t = t or default
            torch.set_num_threads(n_t)
            with threadpool_limits(limits=n_t):
                rows, m = case(decay, prob, n_t, args)
            torch.set_num_threads(default)
            results.append({"decay": decay, "threads": n_t, "load_avg_1min": os.getloadavg()[0], "runs": rows})
            matched.extend(m)
            print(f"\n{decay} decay, {n_t} thread(s), load average {os.getloadavg()[0]:.2f}: all runs "
                  "(errors: worst over seeds)", flush=True)
            for name, r in rows.items():
                print(f"  {name:34} {r['s']:7.3f} s  sv err {r['sv_relerr_worst']:8.1e}  "
                      f"‖E‖/σ51 {r['ratio_worst']:.9f}", flush=True)
    print("\nMatched accuracy: compared run (best of its seeds) vs the fastest eigenlens setting whose worst seed is "
          "at least as accurate\n")
    print(fmt_table(matched))
    print("\nMarkdown (benchmarks/RESULTS.md):\n")
    print(markdown_table(matched))
    print(f"\nload average (1 min) at end: {os.getloadavg()[0]:.2f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"results": results, "matched": matched}, fh, indent=1)


if __name__ == "__main__":
    main()
