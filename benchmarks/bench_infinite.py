"""Infinite-width kernels: eigenlens vs neural-tangents side by side, in one process (CPU).

Run from the neural-tangents environment with eigenlens importable:

    .venv-nt/bin/pip install -c constraints.txt torch==2.13.0 && .venv-nt/bin/pip install --no-deps -e .
    .venv-nt/bin/python benchmarks/bench_infinite.py [--quick]

Cases (the same architecture built in both libraries, same stds):
1. ReLU MLP, 3 hidden layers, NNGP+NTK on N=1000 inputs of dimension 64, float32 and float64;
2. 2-conv CNN (3x3 SAME, ReLU) + global average pooling + Dense, N=64 images 8x8x3, float64;
3. Erf MLP (3 hidden) where the nonlinearity is integrated numerically (neural-tangents'
   ElementwiseNumerical at degree 25; eigenlens' adaptive quadrature with closed forms switched off),
   error measured against the analytic erf kernel.
Timings: best of --repeats after one warm-up call (neural-tangents' kernel_fn is jitted; its compile time is
reported separately). Errors: max |K − K_ref| / max |K_ref| over NNGP and NTK.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One thread each: the shared 2-core machine is oversubscribed, and torch's OpenMP pool (and XLA's Eigen pool)
# then spend more time synchronising than computing. Same setting for both libraries.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from neural_tangents import stax  # noqa: E402
from torch import nn  # noqa: E402

import eigenlens as el  # noqa: E402

W, B = 1.5, 0.1


def best(fn, repeats):
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, min(times), first


def nt_run(kernel_fn, x):
    f = jax.jit(lambda a: kernel_fn(a, None, ("nngp", "ntk")))

    def call():
        k = f(x)
        return np.asarray(k.nngp), np.asarray(k.ntk)

    return call


def el_run(model, x, **kw):
    def call():
        k = el.infinite.kernels(model, x, weight_std=W, bias_std=B, **kw)
        return k.nngp.numpy(), k.ntk.numpy(), k

    return call


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max() / np.abs(b).max())


class Erf(nn.Module):
    def forward(self, x):
        return torch.erf(x)


def mlp_torch(act, d=64, width=8, depth=3):
    layers, fan = [], d
    for _ in range(depth):
        layers += [nn.Linear(fan, width), act]
        fan = width
    layers.append(nn.Linear(fan, 1))
    with torch.device("meta"):  # only the architecture matters (stds are given)
        return nn.Sequential(*layers)


def mlp_nt(act, depth=3):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(512, W_std=W, b_std=B), act]
    layers.append(stax.Dense(1, W_std=W, b_std=B))
    return stax.serial(*layers)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    p.add_argument("--n-erf", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (XLA: one, via XLA_FLAGS)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    # 1. ReLU MLP
    n = 200 if args.quick else 1000
    x64 = rng.normal(size=(n, 64))
    for dtype, jdt, tdt in [("float32", jnp.float32, torch.float32), ("float64", jnp.float64, torch.float64)]:
        jax.config.update("jax_enable_x64", dtype == "float64")
        _, _, kfn = mlp_nt(stax.Relu())
        (nn_, nk), t_nt, c_nt = best(nt_run(kfn, jnp.asarray(x64, jdt)), args.repeats)
        (en, ek, _), t_el, _ = best(el_run(mlp_torch(nn.ReLU()), torch.tensor(x64), dtype=tdt), args.repeats)
        err = max(rel(en, nn_), rel(ek, nk))
        rows.append((f"ReLU MLP 3 hidden, N={n}, d=64, NNGP+NTK, {dtype}", t_nt, t_el, c_nt, f"agree to {err:.1e}"))
    jax.config.update("jax_enable_x64", True)

    # 2. CNN + global average pooling
    n = 16 if args.quick else 64
    ximg = rng.normal(size=(n, 8, 8, 3))
    _, _, kfn = stax.serial(
        stax.Conv(16, (3, 3), padding="SAME", W_std=W, b_std=B), stax.Relu(),
        stax.Conv(16, (3, 3), padding="SAME", W_std=W, b_std=B), stax.Relu(),
        stax.GlobalAvgPool(), stax.Dense(1, W_std=W, b_std=B),
    )
    with torch.device("meta"):
        cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))
    (nn_, nk), t_nt, c_nt = best(nt_run(kfn, jnp.asarray(ximg)), max(1, args.repeats - 2))
    xt = torch.tensor(np.transpose(ximg, (0, 3, 1, 2)))
    (en, ek, _), t_el, _ = best(el_run(cnn, xt), args.repeats)
    err = max(rel(en, nn_), rel(ek, nk))
    rows.append((f"2-conv CNN + global avg pool, N={n}, 8x8x3, float64", t_nt, t_el, c_nt, f"agree to {err:.1e}"))

    # 3. Erf MLP by numerical quadrature
    n = 50 if args.quick else args.n_erf
    xe = rng.normal(size=(n, 64))
    _, _, exact_fn = mlp_nt(stax.Erf())
    ref = exact_fn(jnp.asarray(xe), None, ("nngp", "ntk"))
    rn, rk = np.asarray(ref.nngp), np.asarray(ref.ntk)
    _, _, num_fn = mlp_nt(stax.ElementwiseNumerical(jax.scipy.special.erf, deg=25))
    (nn_, nk), t_nt, c_nt = best(nt_run(num_fn, jnp.asarray(xe)), max(1, args.repeats - 2))
    (en, ek, k), t_el, _ = best(el_run(mlp_torch(Erf()), torch.tensor(xe), closed_forms=False), args.repeats)
    e_nt = max(rel(nn_, rn), rel(nk, rk))
    e_el = max(rel(en, rn), rel(ek, rk))
    rules = sorted(set(k.quadrature_degrees.values()))
    rows.append((f"Erf MLP 3 hidden by quadrature, N={n}, d=64, float64", t_nt, t_el, c_nt,
                 f"error vs closed form: NT {e_nt:.1e}, eigenlens {e_el:.1e} (estimated {k.quadrature_error:.0e}; "
                 f"{', '.join(rules)})"))

    print("\n| case | neural-tangents (s) | eigenlens (s) | speed-up | NT jit compile (s) | accuracy |")
    print("|---|---|---|---|---|---|")
    for name, a, b, c, note in rows:
        print(f"| {name} | {a:.3g} | {b:.3g} | {a / b:.2g}x | {c - a:.3g} | {note} |")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
