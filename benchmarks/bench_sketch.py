"""Cost of applying sketches to a dense 200,000 x 200 matrix, relative to one read pass over A (A.T @ v).

Target (issue 6): the sparse-sign apply (k = 8 nonzeros per column, m = 2,000) within 5x of one read pass.
"cold" includes drawing the random numbers from the counter-based generator; "warm" reuses them (cached).
Usage: python benchmarks/bench_sketch.py [--n 200000] [--d 200] [--m 2000]
"""

import argparse
import json
import os
import time

import torch

from eigenlens.linalg.sketch import sketch


def best(fn, repeats=3):
    t = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=200)
    ap.add_argument("--m", type=int, default=2000)
    ap.add_argument("--out", default="benchmarks/_work/bench_sketch.json")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    A = torch.randn(args.n, args.d, generator=g, dtype=torch.float64)
    v = torch.randn(args.n, dtype=torch.float64)
    read = best(lambda: A.T @ v, 5)
    row = {"n": args.n, "d": args.d, "m": args.m, "read_pass_s": read, "load_avg_1min": os.getloadavg()[0]}
    for kind in ("sparse_sign", "countsketch", "srct", "srht"):
        cold = best(lambda kind=kind: sketch(kind, args.m, args.n, seed=1).apply(A), 2)
        S = sketch(kind, args.m, args.n, seed=1)
        S.apply(A)
        warm = best(lambda S=S: S.apply(A), 3)
        row[f"{kind}_cold_s"], row[f"{kind}_warm_s"] = cold, warm
        row[f"{kind}_cold_over_read"], row[f"{kind}_warm_over_read"] = cold / read, warm / read
        print(kind, json.dumps({k: v for k, v in row.items() if k.startswith(kind)}), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(row, fh, indent=1)
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
