"""Finite networks converge to our infinite-width kernels with error ~ 1/sqrt(width), also where
neural-tangents has no rule (tanh/GELU by quadrature, an RNN with a shared weight)."""

import math

import pytest
import torch
from torch import nn

import eigenlens as el
from eigenlens.nn.ntk import empirical_ntk

SW, SB = 1.4, 0.3
F64 = torch.float64


def _init(model, gen):
    """Fill a model built on the meta device with N(0, SW²/fan_in) weights and N(0, SB²) biases."""
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0, SW / math.sqrt(m.in_features), generator=gen)
                if m.bias is not None:
                    m.bias.normal_(0, SB, generator=gen)
    return model


class MLP(nn.Module):
    def __init__(self, act, d, n, depth=1):
        super().__init__()
        self.l1, self.out, self.act = nn.Linear(d, n, dtype=F64), nn.Linear(n, 1, dtype=F64), act
        self.hidden = nn.ModuleList([nn.Linear(n, n, dtype=F64) for _ in range(depth - 1)])

    def features(self, x):
        h = self.act(self.l1(x))
        for lin in self.hidden:
            h = self.act(lin(h))
        return h

    def forward(self, x):
        return self.out(self.features(x))


class RNN(nn.Module):
    """tanh RNN unrolled over T steps: the same `inp` and `rec` at every step."""

    def __init__(self, d, n, T=3):
        super().__init__()
        self.inp, self.rec = nn.Linear(d, n, dtype=F64), nn.Linear(n, n, bias=False, dtype=F64)
        self.out, self.T = nn.Linear(n, 1, dtype=F64), T

    def features(self, x):
        h = torch.tanh(self.inp(x[:, 0]))
        for t in range(1, self.T):
            h = torch.tanh(self.inp(x[:, t]) + self.rec(h))
        return h

    def forward(self, x):
        return self.out(self.features(x))


def _builders():
    return {
        "tanh": (lambda n: MLP(nn.Tanh(), 4, n), (6, 4)),
        "gelu": (lambda n: MLP(nn.GELU(), 4, n), (6, 4)),
        "gelu_deep": (lambda n: MLP(nn.GELU(), 4, n, depth=2), (6, 4)),
        "tanh_deep": (lambda n: MLP(nn.Tanh(), 4, n, depth=2), (6, 4)),
        "rnn": (lambda n: RNN(3, n), (5, 3, 3)),
    }


def _errors(name, widths, seeds, kind):
    build, shape = _builders()[name]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    inf = el.infinite.kernels(build(8), x, weight_std=SW, bias_std=SB,
                              parameterization="standard" if kind == "ntk" else "ntk", get=kind)
    errs = []
    for n in widths:
        with torch.device("meta"):
            shell = build(n)  # only the widths matter: stds are given, no weights are read
        ref = getattr(el.infinite.kernels(shell, x, weight_std=SW, bias_std=SB, parameterization="standard",
                                          get=kind), kind) if kind == "ntk" else inf.nngp
        e = []
        for s in range(seeds):
            with torch.device("meta"):
                model = build(n)
            model = _init(model, torch.Generator().manual_seed(100 + s))
            if kind == "nngp":
                with torch.no_grad():
                    z = model.features(x)
                emp = SW**2 * z @ z.T / n + SB**2
            else:
                emp = empirical_ntk(model, x)
            e.append(float(torch.linalg.norm(emp - ref) / torch.linalg.norm(ref)))
        errs.append(math.sqrt(sum(v * v for v in e) / len(e)))
    return errs


@pytest.mark.parametrize("name,seeds,widths", [
    ("tanh", 12, [256, 1024, 4096]), ("gelu", 12, [256, 1024, 4096]), ("rnn", 6, [128, 512, 2048])
])
def test_nngp_converges_like_inverse_sqrt_width(name, seeds, widths):
    errs = _errors(name, widths, seeds=seeds, kind="nngp")
    # 16x the width -> 4x smaller error; allow Monte Carlo scatter
    assert errs[-1] < 0.05
    assert 2.0 < errs[0] / errs[-1] < 8.0
    slope = math.log(errs[-1] / errs[0]) / math.log(widths[-1] / widths[0])
    assert -0.8 < slope < -0.25


@pytest.mark.parametrize("name", ["tanh", "rnn"])
def test_ntk_converges_like_inverse_sqrt_width(name):
    widths = [128, 512, 2048]
    errs = _errors(name, widths, seeds=6, kind="ntk")
    assert errs[-1] < 0.08
    assert 2.0 < errs[0] / errs[-1] < 8.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gelu_deep", "tanh_deep"])
def test_deep_nngp_converges_slow(name):
    widths = [256, 1024, 4096]
    errs = _errors(name, widths, seeds=12, kind="nngp")
    assert errs[-1] < 0.05
    assert 2.0 < errs[0] / errs[-1] < 8.0


def test_monte_carlo_detects_a_wrong_kernel():
    """The check can fail: a kernel with the wrong nonlinearity is far from the finite networks."""
    build, shape = _builders()["tanh"]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    wrong = el.infinite.kernels(MLP(nn.Sigmoid(), 4, 8), x, weight_std=SW, bias_std=SB).nngp
    with torch.device("meta"):
        model = build(4096)
    model = _init(model, torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = model.features(x)
    emp = SW**2 * z @ z.T / 4096 + SB**2
    assert float(torch.linalg.norm(emp - wrong) / torch.linalg.norm(wrong)) > 0.2
