"""Benchmark eigenlens.rmt fits against the `powerlaw` package (what weightwatcher uses for α).

Run from the repository root with a separate venv holding `powerlaw`:

    python3 -m venv .venv-bench-rmt
    .venv-bench-rmt/bin/pip install -c constraints.txt torch==2.13.0 numpy scipy tqdm matplotlib powerlaw mpmath
    .venv-bench-rmt/bin/pip install --no-deps -e .
    .venv-bench-rmt/bin/python benchmarks/bench_rmt.py

Both tools run side by side in one process on the same eigenvalues; ratios are robust to machine load.
Reports: wall time of the power-law fit (x_min scan + MLE) and of N refits (the cost of a bootstrap
p-value), agreement of α and x_min; and the time of fit_marchenko_pastur per layer with its variance error.
"""

from __future__ import annotations

import math
import os
import time
import warnings

import torch

from eigenlens import rmt

warnings.filterwarnings("ignore")  # powerlaw prints divide-by-zero runtime warnings


def timed(fn, repeat=3):
    best = math.inf
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def spectra():
    g = torch.Generator().manual_seed(0)
    out = {}
    # random-init Linear(1024, 1024) (kaiming uniform): eigenvalues of WᵀW/out
    w = (torch.rand(1024, 1024, generator=g, dtype=torch.float64) * 2 - 1) / math.sqrt(1024)
    out["init 1024x1024 (MP bulk)"] = (torch.linalg.eigvalsh(w.T @ w / 1024).numpy(), 1.0, 1.0 / (3 * 1024))
    # heavy-tailed weights (Student-t, 3 dof): a power-law-like ESD
    t = torch.distributions.StudentT(3.0).sample((2048, 512)).double()  # global RNG is fine in a benchmark
    out["student-t 2048x512 (heavy tail)"] = (torch.linalg.eigvalsh(t.T @ t / 2048).numpy(), 0.25, None)
    # synthetic Pareto α = 2.5 on top of a uniform body
    u = torch.rand(1000, generator=g, dtype=torch.float64)
    body = torch.rand(1000, generator=g, dtype=torch.float64) * 5
    out["pareto α=2.5 + body (N=2000)"] = (torch.cat([body, 5 * (1 - u) ** (-1 / 1.5)]).numpy(), None, None)
    return out


def main():
    import powerlaw

    torch.manual_seed(0)
    rows = []
    for name, (ev, ratio, true_var) in spectra().items():
        x = ev[ev > 0]
        t_ours, ours = timed(lambda x=x: rmt.fit_power_law(x, num_bootstrap=0, min_tail=2))
        t_pl, pl = timed(lambda x=x: powerlaw.Fit(x, verbose=False))
        # powerlaw 2.0 restricts alpha to (0, 3) by default; the unconstrained fit is plain CSN like ours
        t_plu, plu = timed(lambda x=x: powerlaw.Fit(x, verbose=False, parameter_ranges={"alpha": [1, None]}),
                           repeat=1)
        nboot = 20
        t_boot, boot = timed(lambda x=x, nboot=nboot: rmt.fit_power_law(x, num_bootstrap=nboot, min_tail=2), repeat=1)
        rows.append({
            "spectrum": name, "N": x.size,
            "alpha (eigenlens)": ours.alpha, "alpha (powerlaw, default α<3)": pl.power_law.alpha,
            "alpha (powerlaw, unconstrained)": plu.power_law.alpha,
            "xmin (eigenlens)": ours.xmin, "xmin (powerlaw, default α<3)": pl.power_law.xmin,
            "xmin (powerlaw, unconstrained)": plu.power_law.xmin,
            "KS (eigenlens)": ours.ks, "KS (powerlaw, unconstrained)": plu.power_law.D,
            "fit s (eigenlens)": t_ours, "fit s (powerlaw)": t_pl,
            f"fit+{nboot} bootstraps s (eigenlens)": t_boot,
            f"{nboot} refits s (powerlaw, extrapolated)": t_pl * (nboot + 1),
        })
        if ratio is not None:
            t_mp, fit = timed(lambda ev=ev, ratio=ratio: rmt.fit_marchenko_pastur(ev, ratio), repeat=5)
            rows[-1]["MP fit ms"] = 1e3 * t_mp
            rows[-1]["MP variance rel. err"] = (fit.variance / true_var - 1) if true_var else float("nan")
            rows[-1]["MP outliers"] = fit.num_outliers
    load = os.getloadavg()[0]
    print(f"machine load average (1 min): {load:.1f} on {os.cpu_count()} cores")
    for r in rows:
        print()
        for k, v in r.items():
            print(f"  {k:45s} {v:.4g}" if isinstance(v, float) else f"  {k:45s} {v}")


if __name__ == "__main__":
    main()
