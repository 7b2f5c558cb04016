"""Weight spectra: eigenlens.weight_spectra vs weightwatcher.analyze() on the same random-init models.

Run with a venv that has both (weightwatcher is not a dependency of eigenlens):

    python3 -m venv .venv-bench-spectra
    .venv-bench-spectra/bin/pip install -c constraints.txt torch==2.13.0 weightwatcher
    .venv-bench-spectra/bin/pip install --no-deps -e .
    .venv-bench-spectra/bin/python benchmarks/bench_weights.py [--repeats 1]

Timed side by side in one process (contention hits both equally), per model:
  * ww.analyze()                 (weightwatcher default: SVD + power-law fit per layer)
  * ww.analyze(mp_fit=True)      (plus its Marchenko-Pastur fit)
  * el.weight_spectra(model)     (eigvalsh + MP fit + outlier test + power-law α/x_min; the 100-sample bootstrap
                                  p-value runs only on layers with MP outliers, so rarely on random init)
  * el.weight_spectra(model, num_bootstrap=0)   (the same work as ww mp_fit=True: MP fit + α/x_min, no p-value)
  * el.weight_spectra(model, fit_power_law=False)
Agreement on the deterministic columns for Linear layers (weightwatcher's eigenvalues are the unnormalised
squared singular values, ours are divided by N: we compare N·λ_max; stable rank is scale-free). Conv layers are
timed but not compared per value: weightwatcher splits a conv kernel into kh·kw [c_out, c_in] slices, eigenlens
analyses the [c_out, c_in·kh·kw] reshape (documented in eigenlens.nn.weights).
"""

from __future__ import annotations

import os

# One BLAS/LAPACK thread for both tools: on the shared, oversubscribed 2-core machine multi-threaded LAPACK
# spin-waits (torch eigvalsh of 1024x1024: 23.6 s with 2 threads vs 0.40 s with 1 at load average 19).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def mlp_square() -> nn.Module:
    layers = []
    for _ in range(6):
        layers += [nn.Linear(1024, 1024), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def mlp_rect() -> nn.Module:
    dims = [784, 2048, 512, 256, 10]
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def cnn4() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
        nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10),
    )


MODELS = {"mlp 6x1024": mlp_square, "mlp 784-2048-512-256-10": mlp_rect, "cnn 4-conv": cnn4}


def timed(fn, repeats: int):
    best = math.inf
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import weightwatcher as ww

    import eigenlens as el

    torch.set_num_threads(1)  # with OMP/OPENBLAS/MKL_NUM_THREADS=1 (set below, before numpy loads): see docstring
    load0 = os.getloadavg()
    print(f"torch {torch.__version__}, weightwatcher {ww.__version__}, threads {torch.get_num_threads()}, "
          f"load average at start {load0[0]:.2f}")
    rows = []
    agree = []
    for mname, make in MODELS.items():
        torch.manual_seed(0)  # the benchmark's own models; eigenlens never touches the global RNG
        model = make()
        watcher = ww.WeightWatcher(model=model)
        d_plain, t_ww = timed(lambda w=watcher: w.analyze(), args.repeats)
        d_mp, t_ww_mp = timed(lambda w=watcher: w.analyze(mp_fit=True), args.repeats)
        spectra, t_el = timed(lambda m=model: el.weight_spectra(m, progress=False), args.repeats)
        _, t_el_nb = timed(lambda m=model: el.weight_spectra(m, num_bootstrap=0, progress=False), args.repeats)
        _, t_el_nopl = timed(lambda m=model: el.weight_spectra(m, fit_power_law=False, progress=False), args.repeats)
        rows.append((mname, len([s for s in spectra if not s.skipped]), t_ww, t_ww_mp, t_el, t_el_nb, t_el_nopl))
        ours = {s.name: s for s in spectra}
        for _, r in d_mp.iterrows():
            name = str(r["name"])
            s = ours.get(name)
            if s is None or s.skipped or s.kind != "linear":
                continue
            N = s.matrix_shape[0]
            pl = s.power_law_candidate
            agree.append(
                dict(
                    model=mname, layer=name, shape=f"{N}x{s.matrix_shape[1]}",
                    lmax_rel=abs(s.lambda_max * N - r["lambda_max"]) / r["lambda_max"],
                    srank_rel=abs(s.stable_rank - r["stable_rank"]) / r["stable_rank"],
                    alpha_ww=r["alpha"], alpha_el=pl.alpha if pl else math.nan,
                    xmin_ww=r["xmin"], xmin_el=pl.xmin * N if pl else math.nan,
                    p_el=s.power_law_p_value if s.power_law_p_value is not None else math.nan,
                    spikes_ww=int(r["num_spikes"]), outliers_el=s.num_outliers,
                    sigma2_ww=float(r["sigma_mp"]) ** 2, var_el=s.mp.variance, init_var=1.0 / (3 * s.shape[1]),
                )
            )
    load1 = os.getloadavg()
    print()
    print("| model | layers | ww analyze() s | ww analyze(mp_fit=True) s | el default s | el num_bootstrap=0 s "
          "| el fit_power_law=False s | ww mp_fit / el default | ww mp_fit / el no bootstrap | ww / el no bootstrap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m, nl, a, b, c, d, e in rows:
        print(f"| {m} | {nl} | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} | {e:.2f} | {b / c:.1f}x | {b / d:.1f}x "
              f"| {a / d:.1f}x |")
    tot = [sum(r[i] for r in rows) for i in range(2, 7)]
    print(f"| total | | {tot[0]:.2f} | {tot[1]:.2f} | {tot[2]:.2f} | {tot[3]:.2f} | {tot[4]:.2f} | "
          f"{tot[1] / tot[2]:.1f}x | {tot[1] / tot[3]:.1f}x | {tot[0] / tot[3]:.1f}x |")
    print()
    print("| model | layer | N x M | λ_max rel. diff | stable rank rel. diff | α ww | α el | xmin ww "
          "| xmin el (×N) | p(α) el | ww num_spikes | el outliers | el MP σ² / init σ² |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for a in agree:
        print(f"| {a['model']} | {a['layer']} | {a['shape']} | {a['lmax_rel']:.1e} | {a['srank_rel']:.1e} | "
              f"{a['alpha_ww']:.2f} | {a['alpha_el']:.2f} | {a['xmin_ww']:.4g} | {a['xmin_el']:.4g} | "
              f"{a['p_el']:.2f} | {a['spikes_ww']} | {a['outliers_el']} | {a['var_el'] / a['init_var']:.4f} |")
    lm = max(a["lmax_rel"] for a in agree)
    sr = max(a["srank_rel"] for a in agree)
    al = [abs(a["alpha_ww"] - a["alpha_el"]) / a["alpha_ww"] for a in agree if np.isfinite(a["alpha_el"])]
    print(f"\nmax rel. diff: λ_max {lm:.1e}, stable rank {sr:.1e}; α median rel. diff "
          f"{np.median(al) if al else float('nan'):.2e} over {len(al)} layers")
    print(f"load average at end {load1[0]:.2f}")


if __name__ == "__main__":
    main()
