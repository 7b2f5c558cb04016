"""Dynamical isometry: a 32-layer tanh MLP at several weight variances — measured vs predicted Jacobian spectra.

For each (σ_w², weight kind) the free-probability law of the squared singular values of the input–output
Jacobian at initialisation (``eigenlens.infinite.jacobian_law``; Pennington, Schoenholz, Ganguli,
arXiv 1711.04735) is compared with the spectrum of real finite-width networks (inputs at the mean-field
fixed point q*): exact eigenvalues for small widths, SLQ (``el.spectral_density`` on JᵀJ, matrix-free) for
large ones, and the Wasserstein-1 distance between them. Next to it: trainability — the same deep network
(plus an input and a readout layer) trained for a few hundred SGD steps on scikit-learn's digits.

Run:  .venv/bin/python examples/isometry_demo.py [--widths 64 128 256 1024] [--train-steps 150] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import eigenlens as el
from eigenlens.infinite.jacobian_law import JacobianSpec, jacobian_spectrum_law, mean_field_fixed_point, wasserstein1

DEPTH, SB2 = 32, 0.05


def chi(sw2: float) -> float:
    q = mean_field_fixed_point("tanh", sw2, SB2)
    z, w = np.polynomial.hermite_e.hermegauss(96)
    w = w / w.sum()
    return float(sw2 * (w @ (1 - np.tanh(math.sqrt(q) * z) ** 2) ** 2))


def critical_sw2() -> float:
    lo, hi = 1.0, 3.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if chi(mid) < 1 else (lo, mid)
    return 0.5 * (lo + hi)


def deep_tanh(width: int, sw2: float, kind: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(DEPTH):
        lin = nn.Linear(width, width)
        if kind == "orthogonal":
            nn.init.orthogonal_(lin.weight, gain=math.sqrt(sw2))
        else:
            nn.init.normal_(lin.weight, std=math.sqrt(sw2 / width))
        nn.init.normal_(lin.bias, std=math.sqrt(SB2))
        layers += [lin, nn.Tanh()]
    return nn.Sequential(*layers)


def measured(width: int, sw2: float, kind: str, seed: int, slq_above: int):
    net = deep_tanh(width, sw2, kind, seed).double()
    q = mean_field_fixed_point("tanh", sw2, SB2)
    x = torch.randn(1, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x / x.norm() * math.sqrt(width * (q - SB2) / sw2)  # q¹ = σ_w² ‖x‖²/N + σ_b² = q*
    J = el.jacobian(net, x)
    if width <= slq_above:
        ev = torch.linalg.eigvalsh((lambda A: A @ A.T)(J.to_dense()))
        return ev, "exact"
    dens = el.spectral_density(el.aslinearoperator(J.T @ J, psd=True), num_probes=4, num_matvecs=60,
                               generator=torch.Generator().manual_seed(seed))
    return dens, "slq"


def trainability(sw2: float, kind: str, steps: int, width: int = 64, seed: int = 0):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    tr, te = perm[:1400], perm[1400:]
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, width), nn.Tanh(), deep_tanh(width, sw2, kind, seed), nn.Linear(width, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for _ in range(steps):
        idx = tr[torch.randint(0, len(tr), (64,), generator=g)]
        opt.zero_grad()
        loss = F.cross_entropy(net(X[idx]), y[idx])
        loss.backward()
        opt.step()
    with torch.no_grad():
        train_loss = float(F.cross_entropy(net(X[tr]), y[tr]))
        test_acc = float((net(X[te]).argmax(1) == y[te]).float().mean())
    return train_loss, test_acc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--slq-above", type=int, default=512)
    ap.add_argument("--pool", type=int, default=512, help="networks per width: pool // width (1..8)")
    ap.add_argument("--train-steps", type=int, default=150)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    crit = critical_sw2()
    cases = [(1.2, "gaussian"), (crit, "gaussian"), (crit, "orthogonal"), (2.5, "gaussian"), (2.5, "orthogonal")]
    print(f"depth {DEPTH}, tanh, σ_b² = {SB2}; critical σ_w² (χ = 1) = {crit:.4f}")
    rows = []
    for sw2, kind in cases:
        t0 = time.perf_counter()
        law = jacobian_spectrum_law(JacobianSpec(DEPTH, "tanh", sw2, SB2, weights=kind), num_points=300)
        t_law = time.perf_counter() - t0
        row = dict(sw2=sw2, weights=kind, chi=law.chi[0], q_star=law.q[0], law_mean=law.mean, law_var=law.var,
                   law_upper_edge=law.upper_edge, law_seconds=t_law, widths={})
        for N in args.widths:
            t0 = time.perf_counter()
            nets = max(1, min(8, args.pool // N))  # pool eigenvalues over several networks (and inputs)
            parts = [measured(N, sw2, kind, seed=s, slq_above=args.slq_above) for s in range(nets)]
            how = parts[0][1]
            if how == "exact":
                meas = torch.cat([p[0] for p in parts])
                w1 = wasserstein1(law, meas)
                mean = float(meas.mean())
            else:
                w1 = sum(wasserstein1(law, p[0]) for p in parts) / nets
                mean = sum(float(p[0].moments(1)[1]) for p in parts) / nets
            row["widths"][N] = dict(method=how, networks=nets, w1=w1, w1_rel=w1 / law.mean, mean=mean,
                                    seconds=time.perf_counter() - t0)
        row["train_loss"], row["test_acc"] = trainability(sw2, kind, args.train_steps)
        rows.append(row)
        ws = "  ".join(f"N={N}: W1/m1={v['w1_rel']:.3f}, mean {v['mean']:.3g} ({v['networks']} nets, {v['method']})"
                       for N, v in row["widths"].items())
        print(f"σ_w²={sw2:.3f} {kind:10s} χ={row['chi']:.3f} m1={law.mean:.3g} edge={law.upper_edge:.3g} "
              f"[law {t_law:.1f}s] | {ws} | digits after {args.train_steps} steps: train loss "
              f"{row['train_loss']:.3f}, test acc {row['test_acc']:.3f}", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(dict(args=vars(args), critical_sw2=crit, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
