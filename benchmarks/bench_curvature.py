"""Curvature benchmark: eigenlens vs PyHessian, curvlinops + SciPy eigsh, hessian-eigenthings — side by side.

Run in the bench venv (see the RESULTS.md section ``## curvature``)::

    .venv-bench-curvature/bin/python benchmarks/bench_curvature.py [--quick] [--json benchmarks/_work/curvature.json]

Models: the digits MLP 64-128-128-10 (26,122 parameters) and a small CNN, trained for a few epochs with Adam
(fixed seed), Hessian of the mean cross-entropy over all 1,797 digits (one batch, float32). Reference: the
top-5 eigenvalues of the same Hessian evaluated in float64 by eigenlens' eigsh at tol 1e-11 (a dense Hessian
of 26k parameters would need 5.4 GB). Every tool runs in this one process, one after the other, so machine load
affects all of them alike: compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from _timing import timed
from torch import nn

from eigenlens.cli.demo import digits_tensors, train_classifier

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_work", "he"))  # hessian-eigenthings (GitHub master), extracted here


def make_model(kind):
    torch.manual_seed(0)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10),
    )


def train(model, X, y, epochs):
    train_classifier(model, X, y, epochs=epochs)
    model.zero_grad()
    return float((model(X).argmax(1) == y).float().mean())


def relerr(vals, ref):
    v = np.sort(np.asarray(vals, dtype=np.float64))[::-1][: len(ref)]
    return float(np.max(np.abs(v - ref) / np.abs(ref)))


def bench(kind, quick):
    import eigenlens as el

    X, y = digits_tensors()
    model = make_model(kind)
    acc = train(model, X, y, 3 if quick else 10)
    crit = nn.CrossEntropyLoss()
    P = sum(p.numel() for p in model.parameters())
    row = {"model": kind, "P": P, "N": len(y), "train_accuracy": acc}
    print(f"\n== {kind}: P = {P:,}, N = {len(y)}, train accuracy {acc:.3f}", flush=True)

    # reference: float64 evaluation, tight eigsh
    H64 = el.hessian(model, crit, (X, y), dtype=torch.float64)
    ref = el.eigsh(H64, k=5, which="LA", tol=1e-11)
    ref_vals = ref.eigenvalues.numpy()
    row["reference_top5"] = ref_vals.tolist()
    row["reference_matvecs"] = ref.num_matvecs
    print("reference top-5 (float64, tol 1e-11):", ref_vals, f"({ref.num_matvecs} HVPs)", flush=True)

    # gradient vs HVP cost
    def grad():
        model.zero_grad()
        crit(model(X), y).backward()

    t_grad, _ = timed(grad, repeats=5)
    model.zero_grad()
    H = el.hessian(model, crit, (X, y))
    v1 = torch.randn(P, 1, generator=torch.Generator().manual_seed(1))
    V10 = torch.randn(P, 10, generator=torch.Generator().manual_seed(2))
    H @ v1
    t_hvp, _ = timed(lambda: H @ v1, repeats=5)
    t_hvp10, _ = timed(lambda: H @ V10, repeats=3)
    row.update(grad_s=t_grad, hvp_s=t_hvp, hvp_over_grad=t_hvp / t_grad, hvp_batched10_per_vector_s=t_hvp10 / 10)
    print(f"gradient {t_grad * 1e3:.1f} ms; eigenlens HVP {t_hvp * 1e3:.1f} ms = {t_hvp / t_grad:.2f}x gradient; "
          f"10 vectors in one pass: {t_hvp10 / 10 * 1e3:.1f} ms per vector", flush=True)

    results = {}

    # eigenlens
    def run_el():
        Hl = el.hessian(model, crit, (X, y))
        r = el.eigsh(Hl, k=5, which="LA", tol=1e-6)
        return r, Hl.num_matvecs + 1  # + the determinism probe's one product

    t, (r, n) = timed(run_el, repeats=1 if quick else 2)
    results["eigenlens eigsh (float32)"] = dict(seconds=t, hvps=n, relerr=relerr(r.eigenvalues.numpy(), ref_vals))

    def run_el64():
        Hl = el.hessian(model, crit, (X, y), dtype=torch.float64)
        r = el.eigsh(Hl, k=5, which="LA", tol=1e-6)
        return r, Hl.num_matvecs + 1

    t, (r, n) = timed(run_el64, repeats=1)
    results["eigenlens eigsh (float64 eval)"] = dict(seconds=t, hvps=n, relerr=relerr(r.eigenvalues.numpy(), ref_vals))

    # PyHessian (PyPI 0.1): power iteration with deflation, tol 1e-3 (its default), maxIter 100
    try:
        import pyhessian  # noqa: F401  (its __init__ shadows the submodule name with the class)

        ph = sys.modules["pyhessian.hessian"]

        count = {"n": 0}
        orig = ph.hessian_vector_product

        def counted(*a, **k):
            count["n"] += 1
            return orig(*a, **k)

        ph.hessian_vector_product = counted

        def run_ph():
            count["n"] = 0
            hc = ph.hessian(model, crit, data=(X, y), cuda=False)
            vals, _ = hc.eigenvalues(maxIter=100, tol=1e-3, top_n=5)
            model.zero_grad()
            return vals, count["n"]

        t, (vals, n) = timed(run_ph, repeats=1 if quick else 2)
        results["PyHessian power iteration (tol 1e-3)"] = dict(seconds=t, hvps=n, relerr=relerr(vals, ref_vals))
        ph.hessian_vector_product = orig
    except Exception as err:  # noqa: BLE001
        results["PyHessian"] = {"error": repr(err)[:200]}

    # curvlinops + SciPy eigsh (ARPACK), tol 1e-6
    try:
        import scipy.sparse.linalg as sla
        from curvlinops import HessianLinearOperator

        params = [p for p in model.parameters() if p.requires_grad]

        def run_cl():
            Hc = HessianLinearOperator(model, crit, params, [(X, y)], check_deterministic=False)
            S = Hc.to_scipy()
            count = {"n": 0}

            def mv(x):
                count["n"] += 1 if x.ndim == 1 else x.shape[1]
                return S @ x

            L = sla.LinearOperator(S.shape, matvec=mv, dtype=S.dtype)
            vals = sla.eigsh(L, k=5, which="LA", tol=1e-6, return_eigenvectors=False)
            return vals, count["n"]

        t, (vals, n) = timed(run_cl, repeats=1 if quick else 2)
        results["curvlinops + scipy eigsh (tol 1e-6)"] = dict(seconds=t, hvps=n, relerr=relerr(vals, ref_vals))
    except Exception as err:  # noqa: BLE001
        results["curvlinops"] = {"error": repr(err)[:200]}

    # hessian-eigenthings (GitHub master 1.0.0a6): Lanczos, tol 1e-6
    try:
        from hessian_eigenthings.algorithms import lanczos as he_lanczos
        from hessian_eigenthings.loss_fns import supervised_loss
        from hessian_eigenthings.operators import HessianOperator

        def run_he(max_iter):
            op = HessianOperator(model=model, dataloader=[(X, y)], loss_fn=supervised_loss(nn.functional.cross_entropy))
            count = {"n": 0}
            orig_mv = op.matvec

            def mv(v):
                count["n"] += 1 if v.ndim == 1 else v.shape[-1]
                return orig_mv(v)

            op.matvec = mv
            r = he_lanczos(op, k=5, max_iter=max_iter, tol=1e-6, which="LA", seed=0)
            model.zero_grad()
            return r.eigenvalues.numpy(), count["n"]

        # no stopping rule: it runs max_iter steps (default 2k = 10); full reorthogonalisation only up to 50
        for max_iter in (None, 20, 40):
            t, (vals, n) = timed(lambda m=max_iter: run_he(m), repeats=1)
            name = f"hessian-eigenthings lanczos (max_iter={max_iter or 'default 10'})"
            results[name] = dict(seconds=t, hvps=n, relerr=relerr(vals, ref_vals))
    except Exception as err:  # noqa: BLE001
        results["hessian-eigenthings"] = {"error": repr(err)[:200]}

    ph_t = results.get("PyHessian power iteration (tol 1e-3)", {}).get("seconds")
    for name, res in results.items():
        extra = f", {res['seconds'] / ph_t:.2f}x PyHessian's time" if ph_t and "seconds" in res else ""
        if "error" in res:
            print(f"  {name:42s} ERROR {res['error']}")
        else:
            print(f"  {name:42s} {res['hvps']:4d} HVPs  {res['seconds']:7.2f} s  rel. error {res['relerr']:.1e}{extra}",
                  flush=True)
    row["top5"] = results

    # trace: Hutch++ with 99 matvecs (divisible by 3 for curvlinops)
    trace = {}
    # like for like: curvlinops below runs without its determinism check, so eigenlens is timed without its
    # probe too, and once more with the probe on (its default); medians of 3 runs (the first pays warm-up)
    for name, check in (("eigenlens hutch++ (99)", False), ("eigenlens hutch++ (99), probe on", True)):
        t, tr = timed(
            lambda check=check: el.trace(el.hessian(model, crit, (X, y), check_deterministic=check), 99,
                                         method="hutch++"),
            repeats=1 if quick else 3,
        )
        trace[name] = dict(seconds=t, value=float(tr.value), stderr=float(tr.stderr))
    try:
        from curvlinops import HessianLinearOperator
        from curvlinops.trace.meyer2020hutch import hutchpp_trace

        params = [p for p in model.parameters() if p.requires_grad]

        def run_cltr():
            torch.manual_seed(0)
            Hc = HessianLinearOperator(model, crit, params, [(X, y)], check_deterministic=False)
            return float(hutchpp_trace(Hc, 99))

        t, val = timed(run_cltr, repeats=1 if quick else 3)
        trace["curvlinops hutchpp_trace (99)"] = dict(seconds=t, value=val)
    except Exception as err:  # noqa: BLE001
        trace["curvlinops"] = {"error": repr(err)[:200]}
    for name, res in trace.items():
        print(f"  trace {name:32s} {res}", flush=True)
    row["trace"] = trace
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--json", default=os.path.join(HERE, "_work", "curvature.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    print(f"torch {torch.__version__}, 1 thread, load average {load[0]:.1f}", flush=True)
    rows = [bench(kind, args.quick) for kind in args.models.split(",")]
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump({"load_before": load, "load_after": os.getloadavg(), "rows": rows}, fh, indent=2)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}; wrote {args.json}")


if __name__ == "__main__":
    main()
