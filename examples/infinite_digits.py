"""Infinite-width predictions vs a trained finite network on digits (Tensor Programs / NTK, arXiv 1902.04760).

A ReLU MLP (PyTorch's standard parameterization) is trained by full-batch gradient descent on the MSE loss
``(1/2N) Σ ||f(x) − y||²``. Its output is centred, ``g(x) = f_θ(x) − f_θ₀(x)``, so that ``g`` starts at 0 like
the mean of the infinite ensemble. ``el.infinite.predict`` gives, from the same module, the NNGP posterior
and the NTK gradient-flow mean at the same training time and at t = ∞. Reported: test accuracy of each, and
the RMS distance between the finite network's test outputs and the NTK prediction at the same time
(it shrinks as the width grows).

    .venv/bin/python examples/infinite_digits.py [--width 1024] [--steps 300] [--n-train 500]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

import eigenlens as el


def digits(n_train: int, n_test: int, seed: int = 0):
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X, dtype=torch.float64) / 16.0
    X = X - X.mean(0)
    y = torch.tensor(y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:n_train], perm[n_train : n_train + n_test]
    Y = torch.nn.functional.one_hot(y, 10).double() - 0.1
    return X[tr], Y[tr], y[tr], X[te], y[te]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--n-train", type=int, default=500)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    Xtr, Ytr, ytr, Xte, yte = digits(args.n_train, args.n_test, args.seed)
    torch.manual_seed(args.seed)  # the example's own model init
    model = nn.Sequential(nn.Linear(64, args.width), nn.ReLU(), nn.Linear(args.width, 10)).double()
    print(el.infinite.program(model, Xtr))

    # the kernel fixes a stable learning rate: η λ_max(Θ)/N = 1
    t0 = time.perf_counter()
    K = el.infinite.kernels(model, Xtr, parameterization="standard")
    lr = args.n_train / float(torch.linalg.eigvalsh(K.ntk)[-1])
    t = lr * args.steps
    pred = el.infinite.predict(model, Xtr, Ytr, Xte, t=t, parameterization="standard", diag_reg=1e-8)
    t_kernel = time.perf_counter() - t0

    init = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        opt.zero_grad()
        loss = 0.5 * ((model(Xtr) - init(Xtr) - Ytr) ** 2).sum(1).mean()
        loss.backward()
        opt.step()
    t_train = time.perf_counter() - t0
    with torch.no_grad():
        g = model(Xte) - init(Xte)

    def acc(out):
        return float((out.argmax(1) == yte).double().mean())

    rms = float(((g - pred.ntk_mean) ** 2).mean().sqrt() / (pred.ntk_mean**2).mean().sqrt())
    print(f"\n{args.n_train} train / {args.n_test} test digits, width {args.width}, {args.steps} GD steps "
          f"(t = {t:.3g})")
    print(f"  finite network (trained, centred)   test accuracy {acc(g):.3f}   [{t_train:.1f} s]")
    print(f"  NTK gradient flow at the same time  test accuracy {acc(pred.ntk_mean):.3f}   [{t_kernel:.1f} s, kernels]")
    print(f"  NTK gradient flow at t = ∞          test accuracy {acc(pred.ntk_mean_inf):.3f}")
    print(f"  NNGP posterior mean                 test accuracy {acc(pred.nngp_mean):.3f}")
    print(f"  relative RMS distance finite vs NTK(t): {rms:.3f}")


if __name__ == "__main__":
    main()
