"""eigenlens.eigsh vs SciPy ARPACK eigsh, side by side on the same operators (one process, same load).

Problems:
  (a) dense 3,000 x 3,000 symmetric matrix Q diag(d) Qᵀ with a clustered top (the top 30 eigenvalues
      10(1 - 1e-3 i), relative gaps 1e-3) over a bulk in [0, 9]; both tools use the same NumPy call ``A @ x``
      (eigenlens through ``el.linear_operator``), since torch's BLAS (MKL) and NumPy's (OpenBLAS) differ by
      ~10% per product on this CPU (the torch-tensor product cost is printed for reference);
  (b) 2-D Dirichlet Laplacian on a 250 x 400 grid (100,000 unknowns), 5-point stencil; eigenvalues
      4 - 2cos(pi i/251) - 2cos(pi j/401) in closed form. Both tools use the same SciPy CSR product (eigenlens
      gets ``el.aslinearoperator(L)``, a ``SparseMatrixOperator`` calling SciPy's kernels on shared memory); the
      per-product cost of that operator and of a torch sparse CSR tensor are printed, and "wall - products"
      subtracts the product time.
For each, the top-1 / top-5 / top-20 (which="LA") at tol=1e-8. Reported: products with A (matvecs), wall time
(median of --repeats), and the max relative eigenvalue error against the exact spectrum. ARPACK's matvecs are
counted in a separate, identical run (same v0) through a counting wrapper so that its timing uses the raw matrix.

Run:  .venv/bin/python benchmarks/bench_eigsh.py [--threads 1] [--repeats 2] [--problems dense,laplacian]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def clustered_dense(n: int = 3000):
    """Problem (a): ``Q diag(d) Qᵀ`` (float64 torch tensor, symmetric) and its eigenvalues ``d`` (NumPy)."""
    import numpy as np
    import torch

    top = 10.0 * (1 - 1e-3 * np.arange(30))
    d = np.concatenate([top, np.linspace(0.0, 9.0, n - 30)])
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = (Q * torch.as_tensor(d)) @ Q.T
    return (A + A.T) / 2, d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="BLAS/torch threads for both tools (default 1)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--problems", default="dense,laplacian")
    ap.add_argument("--ks", default="1,5,20")
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--block-size", type=int, default=1)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla
    import torch

    import eigenlens as el

    torch.set_num_threads(args.threads)
    ks = [int(x) for x in args.ks.split(",")]

    def per_product(o, x, reps=200):
        o @ x
        t = time.perf_counter()
        for _ in range(reps):
            o @ x
        return (time.perf_counter() - t) / reps

    def problem_dense():
        A, d = clustered_dense()
        n = A.shape[0]
        An = A.numpy()
        # the same NumPy (OpenBLAS) product as ARPACK's; torch's own BLAS (MKL here) is printed for reference
        x = torch.randn(n, 1, dtype=torch.float64)
        print(f"# dense per-product cost, torch tensor (torch's BLAS): "
              f"{1e3 * per_product(el.aslinearoperator(A, symmetric=True), x):.3f} ms")
        def numpy_product(X):  # exactly ARPACK's call for one vector (1-D An @ x: BLAS gemv)
            Xn = X.numpy()
            return torch.from_numpy(An @ Xn[:, 0])[:, None] if Xn.shape[1] == 1 else torch.from_numpy(An @ Xn)

        op = el.linear_operator(numpy_product, (n, n), dtype=torch.float64, symmetric=True)
        return "dense 3000 (clustered top)", op, An, np.sort(d)[::-1]

    def problem_laplacian():
        n1, n2 = 250, 400
        T1 = sp.diags([-np.ones(n1 - 1), 2 * np.ones(n1), -np.ones(n1 - 1)], [-1, 0, 1])
        T2 = sp.diags([-np.ones(n2 - 1), 2 * np.ones(n2), -np.ones(n2 - 1)], [-1, 0, 1])
        L = (sp.kron(sp.identity(n2), T1) + sp.kron(T2, sp.identity(n1))).tocsr()
        i, j = np.arange(1, n1 + 1), np.arange(1, n2 + 1)
        ev = (2 - 2 * np.cos(np.pi * i / (n1 + 1)))[:, None] + (2 - 2 * np.cos(np.pi * j / (n2 + 1)))[None, :]
        Lt = torch.sparse_csr_tensor(
            torch.as_tensor(L.indptr, dtype=torch.int64),
            torch.as_tensor(L.indices, dtype=torch.int64),
            torch.as_tensor(L.data, dtype=torch.float64),
            size=L.shape,
        )
        op = el.aslinearoperator(L, symmetric=True)  # a SparseMatrixOperator: SciPy's CSR kernels, no copies
        x = torch.randn(L.shape[0], 1, dtype=torch.float64)
        for what, o in (("torch CSR", el.DenseOperator(Lt, symmetric=True)), ("SciPy CSR (el.aslinearoperator)", op)):
            print(f"# Laplacian per-product cost, {what}: {1e3 * per_product(o, x):.3f} ms")
        return "2-D Laplacian 250x400 (100,000 unknowns)", op, L, np.sort(ev.ravel())[::-1]

    problems = {"dense": problem_dense, "laplacian": problem_laplacian}
    rows = []

    def best_minus(r, t_mv):
        return r[1] - r[0] * t_mv

    print(f"# threads={args.threads} repeats={args.repeats} tol={args.tol:g} block_size={args.block_size}")
    print(f"# load average before: {os.getloadavg()}")
    for name in args.problems.split(","):
        label, op, M, exact = problems[name]()
        n = op.shape[0]
        x1 = torch.randn(n, 1, dtype=torch.float64)
        t_ours = float(np.median([per_product(op, x1, 20) for _ in range(5)]))
        t_raw = float(np.median([per_product(M, x1.numpy()[:, 0], 20) for _ in range(5)]))
        print(f"# {label}: per-product cost, eigenlens operator {1e3 * t_ours:.3f} ms, "
              f"raw (ARPACK) {1e3 * t_raw:.3f} ms")
        v0 = np.random.default_rng(0).standard_normal(n)
        for k in ks:
            ref = exact[:k]
            # ---- eigenlens and ARPACK (raw matrix) timed alternately, so that load bursts hit both alike
            times, times_a = [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                res = el.eigsh(op, k, which="LA", tol=args.tol, block_size=args.block_size)
                times.append(time.perf_counter() - t)
                t = time.perf_counter()
                w = sla.eigsh(M, k, which="LA", tol=args.tol, v0=v0, return_eigenvectors=True)[0]
                times_a.append(time.perf_counter() - t)
            ours = (res.num_matvecs, float(np.median(times)),
                    float(np.max(np.abs(res.eigenvalues.numpy() - ref) / np.abs(ref))), res.converged)
            best = float(np.median(times_a))
            # ---- ARPACK's matvecs through a counter (same v0, identical run)
            count = [0]

            def mv(x, M=M, count=count):
                count[0] += 1 if x.ndim == 1 else x.shape[1]
                return M @ x

            C = sla.LinearOperator((n, n), matvec=mv, matmat=mv, dtype=np.float64)
            sla.eigsh(C, k, which="LA", tol=args.tol, v0=v0, return_eigenvectors=False)
            arpack = (count[0], best, float(np.max(np.abs(np.sort(w)[::-1] - ref) / np.abs(ref))), True)
            row = (label, k, *ours, *arpack, best_minus(ours, t_ours), best_minus(arpack, t_raw))
            rows.append(row)
            print(
                f"{label} | top-{k} | eigenlens {ours[0]} mv, {ours[1]:.3f} s, err {ours[2]:.1e}, conv {ours[3]} | "
                f"ARPACK {arpack[0]} mv, {arpack[1]:.3f} s, err {arpack[2]:.1e} | "
                f"mv ratio {ours[0] / arpack[0]:.2f}, time ratio {ours[1] / arpack[1]:.2f}",
                flush=True,
            )
    print(f"# load average after: {os.getloadavg()}")
    print()
    print("| problem | k | eigenlens matvecs | ARPACK matvecs | eigenlens time (s) | ARPACK time (s) "
          "| matvec ratio | time ratio | eigenlens wall - products (s) | ARPACK wall - products (s) "
          "| eigenlens max rel. err | ARPACK max rel. err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[6]} | {r[3]:.3f} | {r[7]:.3f} | {r[2] / r[6]:.2f} | "
              f"{r[3] / r[7]:.2f} | {r[10]:.3f} | {r[11]:.3f} | {r[4]:.1e} | {r[8]:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
