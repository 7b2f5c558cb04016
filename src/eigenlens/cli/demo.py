"""The main job on a built-in default: train a small MLP on digits and show its curvature spectrum.

``eigenlens demo [--out eigenlens-demo]`` trains a 64-128-128-10 MLP on scikit-learn's digits (1797 real
8×8 images, shipped with scikit-learn: no download) with Adam for 8 epochs (a few seconds), then prints the curvature
summary of the Hessian of the training loss (top/bottom eigenvalues, trace, SLQ density, outliers vs
classes, learning-rate advice, batch-size scaling) and writes into ``--out``:

* ``density.png`` — the Hessian eigenvalue density (log scale) with the extreme eigenvalues and bulk edge;
* ``batch_sizes.png`` — the largest stable learning rate vs batch size, measured vs theory;
* ``summary.json`` — every number.

Under two minutes on 2 CPU cores; ``--quick`` shrinks everything for smoke tests.
"""

from __future__ import annotations

import argparse
import os
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="eigenlens-demo", help="output folder (default ./eigenlens-demo)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8, a few seconds)")
    parser.add_argument("--quick", action="store_true", help="tiny model and budgets (smoke test)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def digits_tensors() -> tuple:
    """scikit-learn's digits (1797 real 8×8 images, shipped offline): ``X [1797, 64]`` float32 in [0, 1], ``y``."""
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target, dtype=torch.int64)


def train_classifier(model, X, y, *, epochs: int, lr: float = 2e-3, batch_size: int = 64, seed: int = 0):
    """Adam on the cross-entropy over shuffled mini-batches (order seeded); leaves ``model`` in eval mode.

    Returns:
        The optimizer (its Adam state feeds the learning-rate advice).
    """
    import torch
    from torch import nn

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return opt


def _train(epochs: int, quick: bool) -> tuple:
    import torch
    from torch import nn

    from eigenlens.nn._model import rng_guard

    X, y = digits_tensors()
    if quick:
        X, y = X[:300], y[:300]
    width = 16 if quick else 128
    with rng_guard():  # leave the user's global RNG alone
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    t0 = time.perf_counter()
    opt = train_classifier(model, X, y, epochs=epochs)
    with torch.no_grad():
        acc = float((model(X).argmax(1) == y).float().mean())
        loss = float(nn.functional.cross_entropy(model(X), y))
    return model, opt, X, y, epochs, time.perf_counter() - t0, acc, loss


def run(args: argparse.Namespace) -> int:
    import torch
    from torch import nn

    from eigenlens.diagnostics.curvature import curvature_summary

    print("eigenlens demo: training a small MLP on scikit-learn's digits ...", flush=True)
    model, opt, X, y, epochs, secs, acc, loss = _train(args.epochs, args.quick)
    P = sum(p.numel() for p in model.parameters())
    print(f"  {epochs} epochs in {secs:.1f} s: train accuracy {acc:.1%}, loss {loss:.4f}, P = {P:,} parameters")
    data = (X, y)  # one batch: the Hessian keeps its gradient graph and each product is one double-backward
    t0 = time.perf_counter()
    try:
        summary = curvature_summary(
            model, nn.CrossEntropyLoss(), data, k=3 if args.quick else 5, optimizer=opt,
            tol=1e-4 if args.quick else 1e-6, max_matvecs=60 if args.quick else 150,
            trace_matvecs=30 if args.quick else 99,
            density_probes=4 if args.quick else 8, density_matvecs=20 if args.quick else 40,
            batch_sizes=[16, 64, 256] if args.quick else [16, 32, 64, 128, 256, 512],
            batch_size_repeats=1 if args.quick else 3,
            generator=torch.Generator().manual_seed(0), progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print("interrupted before any result was computed")
        return 130
    print(f"\n{summary}\n  (curvature analysis took {time.perf_counter() - t0:.1f} s)")
    os.makedirs(args.out, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    plots = (("density.png", summary.density, summary.plot_density),
             ("batch_sizes.png", summary.batch_size_scaling, summary.plot_batch_sizes))
    for name, data, plot in plots:
        if data is None:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        plot(ax)
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, name), dpi=120)
        plt.close(fig)
        written.append(name)
    record = summary.to_dict()
    record["training"] = {"epochs": epochs, "seconds": secs, "accuracy": acc, "loss": loss, "num_params": P}
    import json

    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump(record, fh, indent=2)
    written.append("summary.json")
    print(f"wrote {', '.join(os.path.join(args.out, w) for w in written)}")
    return 130 if summary.interrupted else 0
