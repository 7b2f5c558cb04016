"""Streaming top eigenvector of AᵀA: Oja, Kacham–Woodruff (heavy rows + sampling) and Frequent Directions.

Correlation |<v, v_true>| and memory (floats held) vs rows seen, on a random-order stream and on an
adversarial order (rows sorted by their projection on the 2nd eigenvector). Stream: 50,000 rows, d = 50,
covariance eigenvalues (2, 1, 0.8, ...), randomly rotated.
Usage: python benchmarks/bench_streaming.py [--n 50000] [--d 50]
"""

import argparse
import json
import os
import time

import torch

from eigenlens.linalg.streaming import FrequentDirections, Oja, RandomOrderTopEigenvector


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--out", default="benchmarks/_work/bench_streaming.json")
    args = ap.parse_args()
    n, d = args.n, args.d
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
    scales = torch.cat([torch.tensor([2.0, 1.0]), torch.full((d - 2,), 0.8)]).to(torch.float64).sqrt()
    X = (torch.randn(n, d, generator=g, dtype=torch.float64) * scales) @ Q.T
    evecs = torch.linalg.eigh(X.T @ X)[1]
    top, second = evecs[:, -1], evecs[:, -2]
    orders = {
        "random": torch.randperm(n, generator=g),
        "adversarial": torch.argsort((X @ second).abs(), descending=True),
    }
    checkpoints = [n // 100, n // 20, n // 5, n // 2, n]
    out = {"n": n, "d": d, "load_avg_1min": os.getloadavg()[0], "runs": []}
    for oname, order in orders.items():
        Xo = X[order]
        for name, est in (("oja", Oja(d)), ("kacham_woodruff", RandomOrderTopEigenvector(d, sample_rate=0.1)),
                          ("frequent_directions", FrequentDirections(d, 10))):
            seen, curve = 0, []
            t0 = time.perf_counter()
            for c in checkpoints:
                est.partial_fit(Xo[seen:c])
                seen = c
                curve.append({"rows": c, "corr": float((est.vector @ top).abs()), "memory_floats": est.memory_floats})
            run = {"order": oname, "method": name, "seconds": time.perf_counter() - t0, "curve": curve}
            out["runs"].append(run)
            print(json.dumps(run), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
