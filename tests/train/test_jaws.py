"""JAWS-style weighted Jacobian penalty: weights, value vs dense Jacobian, expectation, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eigenlens.train import JAWS, jaws_penalty, jaws_weights

D64 = torch.float64


class Op(nn.Module):
    """A small periodic conv operator [B, 1, N] -> [B, 1, N]."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv1d(1, 4, 5, padding=2, padding_mode="circular")
        self.c2 = nn.Conv1d(4, 1, 5, padding=2, padding_mode="circular")

    def forward(self, u):
        return u + self.c2(torch.tanh(self.c1(u)))


def _field(B=2, N=16):
    s = torch.linspace(0, 2 * math.pi, N + 1, dtype=D64)[:-1]
    u = torch.sin(s).expand(B, 1, N).clone()
    u[:, :, N // 2 :] -= 1.5  # a shock in the middle
    return u


def _dense_rows(model, u):
    """[B, N] squared row norms of the per-example Jacobian (1 channel in and out)."""
    out = []
    for b in range(u.shape[0]):
        J = torch.func.jacrev(lambda t: model(t[None])[0])(u[b]).detach()  # [1, N, 1, N]
        J = J.reshape(u.shape[2], u.shape[2])
        out.append(J.pow(2).sum(1))
    return torch.stack(out)


def test_weights_small_at_shocks_one_when_smooth():
    u = _field()
    w = jaws_weights(u)
    N = u.shape[2]
    assert w.shape == (2, N)
    assert float(w[0, N // 2]) < 0.2 and float(w[0, N // 2 - 1]) < 0.2  # at the jump
    assert float(w[0, N // 4]) > 0.8  # smooth part
    torch.testing.assert_close(jaws_weights(torch.ones(1, 2, 8, dtype=D64)), torch.ones(1, 8, dtype=D64))
    # closed form on a linear ramp with a fixed scale: |∇u| = 1 inside, w = 1/(1 + 1/κ²)
    ramp = torch.arange(8, dtype=D64).reshape(1, 1, 8)
    assert float(jaws_weights(ramp, scale=2.0)[0, 3]) == pytest.approx(1 / (1 + 0.25))


def test_penalty_value_with_explicit_probes_vs_dense():
    model, u = Op().double(), _field()
    v = torch.randn(u.shape, generator=torch.Generator().manual_seed(0), dtype=D64)
    w = jaws_weights(u)
    Jv = torch.stack([
        torch.func.jacrev(lambda t: model(t[None])[0])(u[b]).detach().reshape(16, 16) @ v[b, 0] for b in range(2)
    ])
    expected = ((w * Jv.pow(2)).sum(1) / w.sum(1)).mean()
    pen, out = jaws_penalty(model, u, probes=v, return_outputs=True)
    assert float(pen) == pytest.approx(float(expected), rel=1e-12)
    torch.testing.assert_close(out.detach(), model(u).detach())


def test_penalty_expectation_is_weighted_row_norms():
    model, u = Op().double(), _field()
    w = jaws_weights(u)
    exact = float(((w * _dense_rows(model, u)).sum(1) / w.sum(1)).mean())
    R = 200  # R independent probes per example in ONE call: the batch holds R copies of the fields
    big = u.repeat(R, 1, 1)
    est = float(jaws_penalty(model, big, generator=torch.Generator().manual_seed(5)))
    assert est == pytest.approx(exact, rel=0.06)
    # the uniform variant weighs all locations equally
    uni = float(_dense_rows(model, u).mean())
    reg = JAWS(weight=2.0, uniform=True, generator=torch.Generator().manual_seed(6))
    assert float(reg(model, big)) / 2.0 == pytest.approx(uni, rel=0.06)


def test_penalty_gradient_vs_finite_differences():
    model, u = Op().double(), _field()
    v = torch.randn(u.shape, generator=torch.Generator().manual_seed(1), dtype=D64)
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(jaws_penalty(model, u, probes=v), list(params.values()), allow_unused=True)
    h = 1e-6
    for (name, p), g in zip(params.items(), grads):
        g = torch.zeros_like(p) if g is None else g
        idx = (0,) * p.ndim
        with torch.no_grad():
            p[idx] += h
            up = float(jaws_penalty(model, u, probes=v))
            p[idx] -= 2 * h
            down = float(jaws_penalty(model, u, probes=v))
            p[idx] += h
        assert float(g[idx]) == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9), name


def test_penalty_leaves_model_untouched():
    model, u = Op().double(), _field()
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    jaws_penalty(model, u)
    JAWS()(model, u)
    assert all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before))
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_errors():
    model, u = Op().double(), _field()
    with pytest.raises(ValueError, match=r"expected a field \[B, C, \*spatial\]"):
        jaws_weights(torch.zeros(4, 8, dtype=D64))
    with pytest.raises(TypeError, match="expected a field tensor"):
        jaws_penalty(model, [1.0])
    with pytest.raises(ValueError, match="same grid"):
        jaws_penalty(lambda t: t[..., :-1], u)
    with pytest.raises(ValueError, match="do not broadcast"):
        jaws_penalty(model, u, weights=torch.ones(3, 5, dtype=D64))
    with pytest.raises(ValueError, match="probes must have the field's shape"):
        jaws_penalty(model, u, probes=torch.ones(1, dtype=D64))
    with pytest.raises(ValueError, match="scale"):
        jaws_weights(u, scale=0.0)
    with pytest.raises(ValueError, match="weight"):
        JAWS(weight=-1)
