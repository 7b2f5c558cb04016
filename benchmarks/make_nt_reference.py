"""Write neural-tangents reference kernels to tests/infinite/data/*.npz (run in .venv-nt).

    python3 -m venv .venv-nt && .venv-nt/bin/pip install jax==0.4.30 jaxlib==0.4.30 neural-tangents tf2jax==0.3.6
    .venv-nt/bin/python benchmarks/make_nt_reference.py

Inputs are dyadic rationals (multiples of 1/8) so the input kernel <x, x'>/d is exact in float64 on both
sides; every case stores x1, x2 (PyTorch layout), the stds and neural-tangents' NNGP/NTK for (x1, x1) and
(x1, x2). tests/infinite/test_vs_neural_tangents.py builds the same architecture in PyTorch.
"""

from __future__ import annotations

import os

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
from neural_tangents import stax  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "infinite", "data")
W, B = 1.5, 0.1  # W_std, b_std


def dyadic(rng, shape):
    return np.round(rng.normal(size=shape) * 8) / 8


def mlp(act, param="ntk"):
    return stax.serial(
        stax.Dense(512, W_std=W, b_std=B, parameterization=param), act,
        stax.Dense(512, W_std=W, b_std=B, parameterization=param), act,
        stax.Dense(1, W_std=W, b_std=B, parameterization=param),
    )


def cases():
    yield "mlp_relu", mlp(stax.Relu()), (10, 8), (6, 8)
    yield "mlp_erf", mlp(stax.Erf()), (10, 8), (6, 8)
    yield "mlp_leaky", mlp(stax.LeakyRelu(0.2)), (10, 8), (6, 8)
    yield "mlp_relu_standard", mlp(stax.Relu(), "standard"), (10, 8), (6, 8)
    yield "cnn_gap", stax.serial(
        stax.Conv(16, (3, 3), padding="SAME", W_std=W, b_std=B), stax.Relu(),
        stax.Conv(16, (3, 3), padding="SAME", W_std=W, b_std=B), stax.Relu(),
        stax.GlobalAvgPool(), stax.Dense(1, W_std=W, b_std=B),
    ), (5, 8, 8, 3), (3, 8, 8, 3)
    yield "cnn_gap_standard", stax.serial(
        stax.Conv(16, (3, 3), padding="SAME", W_std=W, b_std=B, parameterization="standard"), stax.Relu(),
        stax.Conv(16, (3, 3), padding="SAME", W_std=W, b_std=B, parameterization="standard"), stax.Relu(),
        stax.GlobalAvgPool(), stax.Dense(1, W_std=W, b_std=B, parameterization="standard"),
    ), (5, 8, 8, 3), (3, 8, 8, 3)
    yield "cnn_pool_flatten", stax.serial(
        stax.Conv(16, (3, 3), padding="VALID", W_std=W, b_std=B), stax.Relu(),
        stax.AvgPool((2, 2), strides=(2, 2)), stax.Flatten(), stax.Dense(1, W_std=W, b_std=B),
    ), (5, 6, 6, 2), (3, 6, 6, 2)
    yield "resnet_ln", stax.serial(
        stax.Dense(512, W_std=W, b_std=B),
        stax.FanOut(2),
        stax.parallel(stax.serial(stax.Relu(), stax.Dense(512, W_std=W, b_std=B)), stax.Identity()),
        stax.FanInSum(),
        stax.LayerNorm(axis=-1),
        stax.Relu(),
        stax.Dense(1, W_std=W, b_std=B),
    ), (10, 8), (6, 8)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (_, _, kernel_fn), s1, s2 in cases():
        x1, x2 = dyadic(rng, s1), dyadic(rng, s2)
        k11 = kernel_fn(x1, None, ("nngp", "ntk"))
        k12 = kernel_fn(x1, x2, ("nngp", "ntk"))
        to_torch = (lambda x: np.transpose(x, (0, 3, 1, 2))) if x1.ndim == 4 else (lambda x: x)
        np.savez(
            os.path.join(OUT, f"{name}.npz"),
            x1=to_torch(x1), x2=to_torch(x2), w_std=W, b_std=B,
            nngp11=np.asarray(k11.nngp), ntk11=np.asarray(k11.ntk),
            nngp12=np.asarray(k12.nngp), ntk12=np.asarray(k12.ntk),
        )
        print(name, np.asarray(k11.nngp).shape, float(np.asarray(k12.ntk)[0, 0]))


if __name__ == "__main__":
    main()
