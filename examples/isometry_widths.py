"""Finite-width Jacobian spectra of a deep tanh MLP at initialisation vs the free-probability law, by width.

For a critical (χ = 1) tanh network of ``--depth`` square layers (σ_b² = 0.05, σ_w² the critical value) with
Gaussian or Haar-orthogonal weights, the exact input–output Jacobian ``J = D^L W^L ··· D^1 W^1`` of each input
is the product of the layer Jacobians, formed in float64 (``L`` dense ``N × N`` products per input); the
squared singular values are the eigenvalues of ``JJᵀ``. They are pooled over several networks (seeds) and
inputs per width — about ``--pool`` eigenvalues, and at least ``--min-inputs`` inputs, per width — and
compared with ``eigenlens.infinite.jacobian_spectrum_law`` through the Wasserstein-1 distance, normalised by
the law's mean ``m_1`` (= 1 at criticality): of the pooled spectrum, and of each input's spectrum alone.
Inputs sit at the mean-field fixed point (``q¹ = q*``), as the law assumes. Gaussian networks are cheap to
draw, so every input gets its own network; orthogonal ones (a QR per layer) share a network between
``--inputs-per-net`` inputs.
Once, at a small width, the product is checked against ``el.jacobian(model, x).to_dense()``.

Run:  OMP_NUM_THREADS=1 .venv/bin/python examples/isometry_widths.py [--depth 8] [--widths 256 512 1024 2048]
          [--pool 16384] [--min-inputs 8] [--seed 0] [--inputs-per-net 2] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn

import eigenlens as el
from eigenlens.infinite.jacobian_law import JacobianSpec, jacobian_spectrum_law, mean_field_fixed_point, wasserstein1

SB2 = 0.05
D64 = torch.float64


def chi(sw2: float, sb2: float = SB2) -> float:
    q = mean_field_fixed_point("tanh", sw2, sb2)
    z, w = np.polynomial.hermite_e.hermegauss(96)
    w = w / w.sum()
    return float(sw2 * (w @ (1 - np.tanh(math.sqrt(q) * z) ** 2) ** 2))


def critical_sw2(sb2: float = SB2) -> float:
    lo, hi = 1.0, 3.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if chi(mid, sb2) < 1 else (lo, mid)
    return 0.5 * (lo + hi)


def init_layers(
    width: int, depth: int, sw2: float, kind: str, g: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``depth`` (W, b) pairs in float64: W ~ N(0, σ_w²/N) or σ_w · Haar-orthogonal, b ~ N(0, σ_b²)."""
    layers = []
    for _ in range(depth):
        A = torch.randn(width, width, generator=g, dtype=D64)
        if kind == "orthogonal":
            Q, R = torch.linalg.qr(A)
            W = Q * torch.sign(torch.diagonal(R)) * math.sqrt(sw2)  # Haar: fix the signs of R's diagonal
        else:
            W = A * math.sqrt(sw2 / width)
        b = torch.randn(width, generator=g, dtype=D64) * math.sqrt(SB2)
        layers.append((W, b))
    return layers


def inputs_at_fixed_point(width: int, n: int, sw2: float, q_star: float, g: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, width, generator=g, dtype=D64)
    return x / x.norm(dim=1, keepdim=True) * math.sqrt(width * (q_star - SB2) / sw2)  # σ_w²‖x‖²/N + σ_b² = q*


def jacobians(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """``[B, N, N]`` exact input–output Jacobians: ``J ← diag(tanh'(h^l)) W^l J``, layer by layer."""
    J = None
    h_prev = x
    for W, b in layers:
        h = h_prev @ W.T + b
        d = 1 - torch.tanh(h) ** 2  # [B, N]
        J = d[:, :, None] * (W if J is None else W @ J)
        h_prev = torch.tanh(h)
    return J


def check_against_eigenlens(depth: int, sw2: float, q_star: float, width: int = 48) -> float:
    g = torch.Generator().manual_seed(123)
    layers = init_layers(width, depth, sw2, "gaussian", g)
    x = inputs_at_fixed_point(width, 1, sw2, q_star, g)
    mods: list[nn.Module] = []
    for W, b in layers:
        lin = nn.Linear(width, width).double()
        with torch.no_grad():
            lin.weight.copy_(W)
            lin.bias.copy_(b)
        mods += [lin, nn.Tanh()]
    ref = el.jacobian(nn.Sequential(*mods), x).to_dense()
    return float((jacobians(layers, x)[0] - ref).abs().max() / ref.abs().max())


def measure(width: int, depth: int, sw2: float, kind: str, q_star: float, samples: int, per_net: int, law,
            seed: int = 0):
    """Eigenvalues of JJᵀ pooled over ``samples`` inputs, ``per_net`` inputs per network (a fresh seed each)."""
    nets = max(1, math.ceil(samples / per_net))
    evs, traces, w1s = [], [], []
    for s in range(nets):
        g = torch.Generator().manual_seed(10**6 * seed + 1000 * width + s)
        layers = init_layers(width, depth, sw2, kind, g)
        x = inputs_at_fixed_point(width, min(per_net, samples - s * per_net), sw2, q_star, g)
        for J in jacobians(layers, x):
            ev = torch.linalg.eigvalsh(J @ J.T).clamp_min(0.0)
            evs.append(ev)
            traces.append(float(ev.mean()))
            w1s.append(wasserstein1(law, ev) / law.mean)
    return torch.cat(evs), nets, len(traces), traces, w1s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--kinds", nargs="+", default=["gaussian", "orthogonal"], choices=["gaussian", "orthogonal"])
    ap.add_argument("--pool", type=int, default=16384, help="about this many eigenvalues per width (pool // N inputs)")
    ap.add_argument("--min-inputs", type=int, default=8, help="at least this many inputs per width")
    ap.add_argument("--inputs-per-net", type=int, default=2, help="inputs per orthogonal network")
    ap.add_argument("--num-points", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0, help="base seed (a replicate draws other networks and inputs)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    sw2 = critical_sw2()
    q_star = mean_field_fixed_point("tanh", sw2, SB2)
    err = check_against_eigenlens(args.depth, sw2, q_star)
    print(f"depth {args.depth}, tanh, σ_b² = {SB2}, critical σ_w² = {sw2:.4f} (q* = {q_star:.4f}); "
          f"layer-product J vs el.jacobian(...).to_dense(): max rel. diff {err:.1e}", flush=True)
    rows = []
    for kind in args.kinds:
        t0 = time.perf_counter()
        law = jacobian_spectrum_law(JacobianSpec(args.depth, "tanh", sw2, SB2, weights=kind),
                                    num_points=args.num_points)
        print(f"{kind}: law m1 = {law.mean:.4f}, var = {law.var:.3f}, upper edge = {law.upper_edge:.3f}, "
              f"mean error {law.mean_error:.1e} [{time.perf_counter() - t0:.1f}s]", flush=True)
        for N in args.widths:
            t0 = time.perf_counter()
            samples = max(args.min_inputs, args.pool // N)
            per_net = args.inputs_per_net if kind == "orthogonal" else 1
            ev, nets, n_inputs, traces, w1s = measure(N, args.depth, sw2, kind, q_star, samples, per_net, law,
                                                      args.seed)
            w1 = wasserstein1(law, ev)
            row = dict(weights=kind, width=N, depth=args.depth, networks=nets, inputs=n_inputs, eigenvalues=ev.numel(),
                       w1=w1, w1_rel=w1 / law.mean, law_mean=law.mean, law_var=law.var, law_upper_edge=law.upper_edge,
                       mean=float(ev.mean()), var=float(ev.var()), max=float(ev.max()),
                       trace_spread=float(np.std(traces)) if len(traces) > 1 else 0.0,
                       w1_rel_single_mean=float(np.mean(w1s)), w1_rel_single_sd=float(np.std(w1s)),
                       seconds=time.perf_counter() - t0)
            rows.append(row)
            print(f"  N={N:5d}: W1/m1 pooled {row['w1_rel']:.4f}, per input {np.mean(w1s):.4f} ± {np.std(w1s):.4f}; "
                  f"mean {row['mean']:.4f} (law {law.mean:.4f}), "
                  f"var {row['var']:.3f} (law {law.var:.3f}), max {row['max']:.2f} (edge {law.upper_edge:.2f}), "
                  f"sd of tr(JJᵀ)/N over inputs {row['trace_spread']:.3f}; {n_inputs} inputs on {nets} nets "
                  f"[{row['seconds']:.0f}s]", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(dict(args=vars(args), critical_sw2=sw2, q_star=q_star, check=err, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
