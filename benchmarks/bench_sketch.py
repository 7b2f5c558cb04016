"""Cost of applying sketches to a dense 200,000 x 200 matrix, relative to one read pass over A (A.T @ v).

Target (issue 6): the sparse-sign apply (k = 8 nonzeros per column, m = 2,000) within 5x of one read pass.
"cold" includes drawing the random numbers from the counter-based generator (best of 2); "warm" reuses them
(cached; median of 5 rounds in which every sketch and the read pass run in turn).
"sparse_sign_coo" is the previous implementation of the sparse-sign block product (a torch COO product per
block, same S, same fold), kept here as the before/after reference. Each thread count (0 = the machine's
default) and sketch size runs side by side in one process (torch.set_num_threads + threadpoolctl).
Usage: python benchmarks/bench_sketch.py [--n 200000] [--d 200] [--m 2000,8000] [--threads 0,1]
"""

import argparse
import json
import os
import statistics
import time

import torch
from threadpoolctl import threadpool_limits

from eigenlens.linalg.sketch import fold, sketch


def best(fn, repeats=3):
    t = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def coo_apply(S, A):
    """The previous sparse-sign apply: ``torch.sparse.mm`` of a COO ``S_b`` per block, folded in block order."""
    m = S.shape[0]

    def parts():
        for b in range(S.num_blocks):
            r0, r1 = S.block_range(b)
            rnd = S.block_randomness(b)
            nb, k = rnd["rows"].shape
            idx = torch.stack([rnd["rows"].flatten(), torch.arange(nb).repeat_interleave(k)])
            Sb = torch.sparse_coo_tensor(idx, rnd["signs"].flatten(), (m, nb), check_invariants=False)
            yield torch.sparse.mm(Sb, A[r0:r1])

    return fold(parts(), (m, A.shape[1]), A.dtype)


def run(args, m, A, v):
    row = {"n": args.n, "d": args.d, "m": m, "threads": torch.get_num_threads()}
    # the trig sketches are for the sketch-and-solve regime, not for speed: only at m = 2,000
    kinds = [k for k in ("sparse_sign", "sparse_sign_coo", "countsketch", "srct", "srht")
             if k not in ("srct", "srht") or m <= 2000]
    applies, ops = {"read": lambda: A.T @ v}, {}
    for kind in kinds:
        base = "sparse_sign" if kind == "sparse_sign_coo" else kind
        apply = coo_apply if kind == "sparse_sign_coo" else (lambda S, X: S.apply(X))
        row[f"{kind}_cold_s"] = best(lambda base=base, apply=apply: apply(sketch(base, m, args.n, seed=1), A), 2)
        ops[kind] = S = sketch(base, m, args.n, seed=1)
        apply(S, A)
        applies[kind] = lambda S=S, apply=apply: apply(S, A)
    # warm applications and the read pass interleaved (medians of 5 rounds), so load drifts hit all alike
    times = {k: [] for k in applies}
    for _ in range(5):
        for k, fn in applies.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    read = row["read_pass_s"] = statistics.median(times["read"])
    for kind in kinds:
        row[f"{kind}_warm_s"] = statistics.median(times[kind])
        row[f"{kind}_cold_over_read"] = row[f"{kind}_cold_s"] / read
        row[f"{kind}_warm_over_read"] = row[f"{kind}_warm_s"] / read
        print(m, row["threads"], kind, json.dumps({k: v for k, v in row.items() if k.startswith(kind)}), flush=True)
    row["load_avg_1min"] = os.getloadavg()[0]
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=200)
    ap.add_argument("--m", default="2000,8000", help="comma-separated sketch sizes (8,000 = lstsq's 40·d)")
    ap.add_argument("--threads", default="0,1", help="comma-separated thread counts; 0 = machine default")
    ap.add_argument("--out", default="benchmarks/_work/bench_sketch.json")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    A = torch.randn(args.n, args.d, generator=g, dtype=torch.float64)
    v = torch.randn(args.n, dtype=torch.float64)
    default = torch.get_num_threads()
    rows = []
    for m in (int(x) for x in args.m.split(",")):
        for t in (int(x) for x in args.threads.split(",")):
            n_t = t or default
            torch.set_num_threads(n_t)
            with threadpool_limits(limits=n_t):
                rows.append(run(args, m, A, v))
        torch.set_num_threads(default)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(rows, fh, indent=1)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
