"""What eigsh costs besides the products: versions of eigenlens.eigsh (git revisions) and ARPACK, side by side.

On the dense 3,000 x 3,000 problem of bench_eigsh.py (clustered top, which="LA", tol=1e-8) every product streams
72 MB through the caches, so everything else a step does runs with cold caches. This script times each solver with
the products timed inside the operator and subtracted ("wall - products"), all solvers alternating in one process
so that load bursts hit them alike. The eigsh of each git revision is loaded from `git show REV:src/...` into its
own module (it imports the current package's helpers, which older revisions share). ARPACK gets the same NumPy
product through a SciPy LinearOperator, whose Python wrapper is then part of its figure.

Run:  .venv/bin/python benchmarks/bench_eigsh_overhead.py [--revs 49980c8,HEAD] [--repeats 7] [--ks 5,20]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--revs", default="HEAD", help="comma-separated git revisions of eigsh (default HEAD)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--ks", default="5,20")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"

    import numpy as np
    import scipy.sparse.linalg as sla
    import torch

    import eigenlens as el

    torch.set_num_threads(1)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    solvers = {}
    tmp = tempfile.mkdtemp()
    for i, rev in enumerate(args.revs.split(",")):
        src = subprocess.run(["git", "show", f"{rev}:src/eigenlens/linalg/eigsh.py"], cwd=root, check=True,
                             capture_output=True, text=True).stdout
        path = os.path.join(tmp, f"eigsh_rev{i}.py")
        with open(path, "w") as f:
            f.write(src)
        spec = importlib.util.spec_from_file_location(f"eigsh_rev{i}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # (dataclasses look their module up)
        spec.loader.exec_module(mod)
        solvers[f"eigsh@{rev}"] = mod.eigsh

    from bench_eigsh import clustered_dense  # this directory is on sys.path when the script runs

    An = clustered_dense()[0].numpy()
    n = An.shape[0]
    spent = [0.0]

    def product(X):  # the eigenlens operator: the NumPy call, timed
        x = X.numpy()[:, 0]
        t = time.perf_counter()
        y = An @ x
        spent[0] += time.perf_counter() - t
        return torch.from_numpy(y)[:, None]

    def matvec(x):  # ARPACK's product: the same call, timed
        t = time.perf_counter()
        y = An @ x
        spent[0] += time.perf_counter() - t
        return y

    op = el.linear_operator(product, (n, n), dtype=torch.float64, symmetric=True)
    C = sla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(n)
    print(f"# revisions {args.revs}; repeats {args.repeats}; load average before {os.getloadavg()}")
    print("| k | solver | products | wall - products (ms, median) | min |")
    print("|---|---|---|---|---|")
    for k in [int(x) for x in args.ks.split(",")]:
        runs = {name: [] for name in [*solvers, "ARPACK"]}
        counts = {}
        for _ in range(args.repeats):
            for name, solve in solvers.items():
                spent[0] = 0.0
                t = time.perf_counter()
                counts[name] = solve(op, k, which="LA", tol=1e-8).num_matvecs
                runs[name].append(time.perf_counter() - t - spent[0])
            spent[0] = 0.0
            t = time.perf_counter()
            sla.eigsh(C, k, which="LA", tol=1e-8, v0=v0, return_eigenvectors=False)
            runs["ARPACK"].append(time.perf_counter() - t - spent[0])
        for name, r in runs.items():
            print(f"| {k} | {name} | {counts.get(name, '-')} | {1e3 * np.median(r):.1f} | {1e3 * np.min(r):.1f} |",
                  flush=True)
    print(f"# load average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
