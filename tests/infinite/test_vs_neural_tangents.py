"""Our infinite-width kernels against neural-tangents' analytic kernels (stored by
benchmarks/make_nt_reference.py), to 1e-10 relative in float64."""

import os

import numpy as np
import pytest
import torch
from torch import nn

import eigenlens as el

DATA = os.path.join(os.path.dirname(__file__), "data")


class Erf(nn.Module):
    def forward(self, x):
        return torch.erf(x)


def mlp(act, d=8, width=512):
    return nn.Sequential(nn.Linear(d, width), act, nn.Linear(width, width), act, nn.Linear(width, 1))


class ResLN(nn.Module):
    def __init__(self, d=8, width=512):
        super().__init__()
        self.lin0 = nn.Linear(d, width)
        self.lin1 = nn.Linear(width, width)
        self.ln = nn.LayerNorm(width, elementwise_affine=False)
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        h = self.lin0(x)
        h = h + self.lin1(torch.relu(h))
        return self.out(torch.relu(self.ln(h)))


def cnn_gap(c=3, width=16):
    return nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 1),
    )


class CNNMean(nn.Module):
    """Same as cnn_gap but global pooling written as a mean over spatial dims."""

    def __init__(self, c=3, width=16):
        super().__init__()
        self.c1 = nn.Conv2d(c, width, 3, padding=1)
        self.c2 = nn.Conv2d(width, width, 3, padding="same")
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        h = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.out(h.mean(dim=(2, 3)))


def cnn_pool_flatten(c=2, width=16):
    return nn.Sequential(
        nn.Conv2d(c, width, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(width * 4, 1)
    )


CASES = {
    "mlp_relu": (lambda: mlp(nn.ReLU()), {}),
    "mlp_erf": (lambda: mlp(Erf()), {}),
    "mlp_leaky": (lambda: mlp(nn.LeakyReLU(0.2)), {}),
    "mlp_relu_standard": (lambda: mlp(nn.ReLU()), {"parameterization": "standard"}),
    "cnn_gap": (cnn_gap, {}),
    "cnn_gap_mean": (CNNMean, {}),
    "cnn_gap_standard": (cnn_gap, {"parameterization": "standard"}),
    "cnn_pool_flatten": (cnn_pool_flatten, {}),
    "resnet_ln": (ResLN, {}),
}


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_neural_tangents(case):
    ref = np.load(os.path.join(DATA, case.replace("_mean", "") + ".npz"))
    build, kw = CASES[case]
    model = build()
    std = {"weight_std": float(ref["w_std"]), "bias_std": float(ref["b_std"])}
    x1, x2 = torch.from_numpy(ref["x1"]), torch.from_numpy(ref["x2"])
    k11 = el.infinite.kernels(model, x1, **std, **kw)
    k12 = el.infinite.kernels(model, x1, x2, **std, **kw)
    assert k11.quadrature_error == 0.0
    for mine, theirs in [
        (k11.nngp, ref["nngp11"]), (k11.ntk, ref["ntk11"]), (k12.nngp, ref["nngp12"]), (k12.ntk, ref["ntk12"])
    ]:
        assert mine.shape == theirs.shape
        assert _rel(mine.numpy(), theirs) < 1e-10


def test_quadrature_matches_closed_form_erf():
    """The numerical path (no closed forms) against neural-tangents' analytic Erf kernel."""
    ref = np.load(os.path.join(DATA, "mlp_erf.npz"))
    model = mlp(Erf())
    x1 = torch.from_numpy(ref["x1"])
    k = el.infinite.kernels(model, x1, weight_std=1.5, bias_std=0.1, closed_forms=False)
    assert 0 < k.quadrature_error < 1e-8
    assert _rel(k.nngp.numpy(), ref["nngp11"]) < 1e-8
    assert _rel(k.ntk.numpy(), ref["ntk11"]) < 1e-8


def test_wrong_std_is_detected():
    """The comparison can fail: a different bias std moves the kernel far beyond the tolerance."""
    ref = np.load(os.path.join(DATA, "mlp_relu.npz"))
    k = el.infinite.kernels(mlp(nn.ReLU()), torch.from_numpy(ref["x1"]), weight_std=1.5, bias_std=0.11)
    assert _rel(k.nngp.numpy(), ref["nngp11"]) > 1e-4
