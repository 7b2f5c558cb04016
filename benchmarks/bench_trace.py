"""Benchmark: batched Hutch++ (eigenlens.trace) vs the same algorithm fed one matvec at a time, vs curvlinops.

Operators:
  * dense: a 3000 x 3000 float64 symmetric PSD matrix with eigenvalues 1/i (GEMM vs GEMV);
  * hvp: the Hessian of the mean cross-entropy of an MLP 64-128-128-10 (tanh, P = 26,122 float32
    parameters) on the 1,797 scikit-learn digits, applied by forward-over-reverse autodiff
    (torch.func.jvp of torch.func.grad); the batched version vmaps it over the probe columns.

Compared, side by side in one process (so machine load hits all of them alike), after one untimed warm-up
run each, median of REPEATS interleaved runs:
  * eigenlens-batched: el.trace(op, m, method="hutch++") -- two batched calls A @ [m/3 cols], A @ [2m/3 cols];
  * eigenlens-loop:    the same function on an operator whose _matmat loops over single columns
                       (what a matvec-at-a-time implementation pays);
  * curvlinops:        curvlinops.hutchpp_trace on the dense tensor / its HessianLinearOperator
                       (only when curvlinops is importable: run it from a venv that has it, e.g.
                       .venv-bench-<name>/bin/python benchmarks/bench_trace.py); for the HVP also
                       eigenlens' Hutch++ on curvlinops' Hessian product (same HVP code, our algorithm).

Usage:  python benchmarks/bench_trace.py [--m 90] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.func import functional_call, grad, jvp, vmap

import eigenlens as el

try:  # optional comparison
    import curvlinops  # noqa: F401
    from curvlinops import HessianLinearOperator, hutchpp_trace

    HAVE_CURVLINOPS = True
except Exception:  # pragma: no cover - depends on the venv
    HAVE_CURVLINOPS = False


def dense_problem(n: int = 3000):
    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = 1.0 / torch.arange(1, n + 1, dtype=torch.float64)
    A = (U * lam) @ U.T
    A = (A + A.T) / 2
    return A, float(lam.sum())


def mlp_problem():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.as_tensor(X / 16.0, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.int64)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 128), torch.nn.Tanh(), torch.nn.Linear(128, 10)
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def unflatten(theta):
        return {k: t.reshape(s) for k, t, s in zip(names, torch.split(theta, sizes), shapes)}

    def loss(theta):
        return loss_fn(functional_call(model, unflatten(theta), (X,)), y)

    def hvp(v):
        return jvp(grad(loss), (theta0,), (v,))[1]

    return model, loss_fn, (X, y), theta0, hvp


class Looped(el.LinearOperator):
    """Wraps a single-vector product: each batched call becomes a Python loop of matvecs."""

    def __init__(self, matvec, n, dtype):
        super().__init__((n, n), dtype=dtype, symmetric=True)
        self._mv = matvec

    def _matmat(self, X):
        return torch.stack([self._mv(X[:, j]) for j in range(X.shape[1])], dim=1)


def timed(fn):
    """Wall time and CPU time (all threads of this process) of one call."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - t, time.process_time() - c), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=90, help="matvec budget (a multiple of 3)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    m = args.m
    print(f"# bench_trace: m = {m} matvecs, median of {args.repeats}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average at start {os.getloadavg()}, "
          f"curvlinops {'yes' if HAVE_CURVLINOPS else 'not installed (skipped)'}")

    rows = []
    # ---------------------------------------------------------------- dense
    A, tr_exact = dense_problem()
    n = A.shape[0]
    op_dense = el.aslinearoperator(A, symmetric=True)  # built once (its symmetry check is not part of a trace)
    op_loop = Looped(lambda v: A @ v, n, A.dtype)
    cases = {
        "eigenlens-batched": lambda: el.trace(op_dense, m).value,
        "eigenlens-loop": lambda: el.trace(op_loop, m).value,
    }
    if HAVE_CURVLINOPS:
        cases["curvlinops"] = lambda: float(hutchpp_trace(A, m))
    rows += run_cases("dense 3000x3000 f64", cases, args.repeats, m, tr_exact)

    # ---------------------------------------------------------------- HVP
    model, loss_fn, data, theta0, hvp = mlp_problem()
    P = theta0.numel()
    batched_hvp = vmap(hvp, in_dims=1, out_dims=1)
    op_hvp = el.linear_operator(batched_hvp, (P, P), dtype=torch.float32, symmetric=True)
    op_hvp_loop = Looped(hvp, P, torch.float32)
    cases = {
        "eigenlens-batched": lambda: el.trace(op_hvp, m).value,
        "eigenlens-loop": lambda: el.trace(op_hvp_loop, m).value,
    }
    if HAVE_CURVLINOPS:
        H = HessianLinearOperator(model, loss_fn, list(model.parameters()), [data], check_deterministic=False)
        cases["curvlinops"] = lambda: float(hutchpp_trace(H, m))
        # the same eigenlens algorithm on curvlinops' Hessian product: separates algorithm from HVP implementation
        op_cl = el.linear_operator(lambda X: H @ X, (P, P), dtype=torch.float32, symmetric=True)
        cases["eigenlens-batched on curvlinops' H"] = lambda: el.trace(op_cl, m).value
    rows += run_cases(f"MLP Hessian P={P} f32 (digits, N=1797)", cases, args.repeats, m, None)

    print(f"# load average at end {os.getloadavg()}")
    print()
    print("| operator | method | wall / matvec (ms) | CPU / matvec (ms) | wall vs batched | CPU vs batched "
          "| estimate |")
    print("|---|---|---|---|---|---|---|")
    base = {}
    for op_name, name, tc, _est, _err in rows:
        if name == "eigenlens-batched":
            base[op_name] = tc
    for op_name, name, (t, c), est, err in rows:
        bt, bc = base[op_name]
        err_s = f"{est:.6g}" + (f" (rel. err {err:.1e})" if err is not None else "")
        print(f"| {op_name} | {name} | {1e3 * t / m:.1f} | {1e3 * c / m:.1f} | {t / bt:.2f}x | {c / bc:.2f}x "
              f"| {err_s} |")


def run_cases(op_name, cases, repeats, m, exact):
    times = {k: [] for k in cases}
    cpus = {k: [] for k in cases}
    ests = {}
    for fn in cases.values():  # warm-up (thread pools, vmap tracing, allocator), not timed
        torch.manual_seed(0)
        fn()
    for _ in range(repeats):  # interleaved, so load drifts hit every method alike
        for name, fn in cases.items():
            torch.manual_seed(0)  # curvlinops draws from the global RNG
            (t, c), est = timed(fn)
            times[name].append(t)
            cpus[name].append(c)
            ests[name] = est
    out = []
    for name in cases:
        t, c = statistics.median(times[name]), statistics.median(cpus[name])
        err = abs(ests[name] - exact) / abs(exact) if exact is not None else None
        out.append((op_name, name, (t, c), ests[name], err))
        print(f"{op_name:40s} {name:34s} {1e3 * t / m:8.2f} ms/matvec wall {1e3 * c / m:8.2f} cpu  est {ests[name]:.6g}"
              + (f"  rel.err {err:.1e}" if err is not None else ""))
    return out


if __name__ == "__main__":
    main()
