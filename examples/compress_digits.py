"""Spectral compression of a digits MLP: keep the directions beyond the Marchenko–Pastur edge (RMT-KD style).

Train an MLP 64-256-256-10 on scikit-learn's digits (offline, seconds), then replace each Linear layer by a
low-rank pair of Linears with :func:`eigenlens.spectral_compress`, choosing the rank as the number of
eigenvalues above the fitted MP edge, from the layer-input activations (``source="activations"``) or from
the weights (``source="weights"``). Reports parameters and test accuracy before and after (no fine-tuning).

    .venv/bin/python examples/compress_digits.py
"""

from __future__ import annotations

import time

import torch
from _digits import digits  # examples/_digits.py (the script's folder is on sys.path)
from torch import nn

import eigenlens as el


def train_mlp(X, y, hidden=256, epochs=300, seed=0):
    torch.manual_seed(seed)  # the example's own model init
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return model.eval()


def main() -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    Xtr, ytr, Xte, yte = digits()
    model = train_mlp(Xtr, ytr)

    def accuracy(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(Xte).argmax(1) == yte).float().mean())

    print(f"MLP 64-256-256-10 on digits (1200 train / 597 test), trained in {time.perf_counter() - t0:.1f} s")
    print()
    print("| source | rank rule | ranks (layer 0, 2, 4) | eigenvalues beyond the edge | params before "
          "| params after | saved | test acc. before | test acc. after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for source, rank in [("activations", "mp"), ("weights", "mp"), ("activations", "mp-trace"),
                         ("weights", "mp-trace"), ("activations", 0.99), ("weights", 0.9)]:
        t = time.perf_counter()
        res = el.spectral_compress(model, Xtr if source == "activations" else None, rank=rank, source=source,
                                   metric=accuracy)
        ranks = ", ".join(f"{la.rank}{'' if la.replaced else ' (kept)'}" for la in res.layers)
        outl = ", ".join(str(la.num_outliers) if la.num_outliers >= 0 else "-" for la in res.layers)
        print(f"| {source} | {rank} | {ranks} | {outl} | {res.params_before} | {res.params_after} | "
              f"{100 * (1 - res.compression_ratio):.0f}% | {res.metric_before:.3f} | {res.metric_after:.3f} |"
              f"  <!-- {time.perf_counter() - t:.2f} s -->")
    print(f"\ntotal time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
