import math

import pytest
import torch
from torch import nn

import eigenlens as el
from eigenlens.infinite.posterior import nngp_posterior, ntk_gradient_flow


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    xt = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.randn(12, 2, generator=g, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 2))
    return net, x, xt, y


def test_predict_matches_dense_formulas():
    net, x, xt, y = _problem()
    kw = {"weight_std": 1.3, "bias_std": 0.2}
    p = el.infinite.predict(net, x, y, xt, t=[0.0, 3.0], diag_reg=1e-3, **kw)
    K = el.infinite.kernels(net, x, **kw)
    Kt = el.infinite.kernels(net, xt, x, **kw)
    Ktt = el.infinite.kernels(net, xt, **kw)
    lam = 1e-3 * K.nngp.diagonal().mean()
    A = K.nngp + lam * torch.eye(12, dtype=torch.float64)
    assert torch.allclose(p.nngp_mean, Kt.nngp @ torch.linalg.solve(A, y), atol=1e-10)
    var = Ktt.nngp.diagonal() - (Kt.nngp @ torch.linalg.solve(A, Kt.nngp.T)).diagonal()
    assert torch.allclose(p.nngp_var, var, atol=1e-10)
    lam = 1e-3 * K.ntk.diagonal().mean()
    T = K.ntk + lam * torch.eye(12, dtype=torch.float64)
    assert torch.allclose(p.ntk_mean_inf, Kt.ntk @ torch.linalg.solve(T, y), atol=1e-9)
    # t = 0: the ensemble mean is the zero function; t = 3 by the matrix exponential
    assert torch.allclose(p.ntk_mean[0], torch.zeros_like(y[:5]), atol=1e-12)
    M = torch.eye(12, dtype=torch.float64) - torch.linalg.matrix_exp(-3.0 * T / 12)
    assert torch.allclose(p.ntk_mean[1], Kt.ntk @ torch.linalg.solve(T, M @ y), atol=1e-9)


def test_gradient_flow_against_euler_integration():
    """Integrate d f/dt = -(1/N) Θ (f - y) on the train set explicitly and compare at t = 2."""
    net, x, _, y = _problem()
    K = el.infinite.kernels(net, x, weight_std=1.3, bias_std=0.2).ntk
    f = torch.zeros_like(y)
    dt, steps = 1e-3, 2000
    for _ in range(steps):
        f = f - dt * K @ (f - y) / 12
    mean_t, _ = ntk_gradient_flow(K, K, y, t=dt * steps)
    assert torch.allclose(mean_t, f, atol=2e-3 * float(y.abs().max()))
    assert not torch.allclose(mean_t, y, atol=1e-2)  # not yet converged: the check can fail


def test_interpolates_training_data_without_regulariser():
    net, x, _, y = _problem()
    p = el.infinite.predict(net, x, y, x, weight_std=1.3, bias_std=0.2, diag_reg=0.0)
    assert torch.allclose(p.ntk_mean_inf, y, atol=1e-8)
    assert torch.allclose(p.nngp_mean, y, atol=1e-8)
    assert p.nngp_var.abs().max() < 1e-8


def test_errors():
    net, x, xt, y = _problem()
    with pytest.raises(ValueError, match="y_train must be"):
        el.infinite.predict(net, x, y[:3], xt, weight_std=1.0)
    with pytest.raises(ValueError, match="diag_reg must be"):
        el.infinite.predict(net, x, y, xt, diag_reg=-1.0)
    with pytest.raises(ValueError, match="get must be"):
        el.infinite.predict(net, x, y, xt, get="gp")
    with pytest.raises(TypeError, match="y_train must be a torch.Tensor"):
        el.infinite.predict(net, x, [1.0], xt)
    K = torch.ones(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="not positive definite"):
        nngp_posterior(K, K, K.diagonal(), torch.ones(3), 0.0)
    with pytest.raises(ValueError, match="singular"):
        ntk_gradient_flow(K, K, torch.ones(3))
    with pytest.raises(ValueError, match="t must be >= 0"):
        ntk_gradient_flow(K + torch.eye(3), K, torch.ones(3), t=-1.0)
    with pytest.raises(ValueError, match="train kernel must be square"):
        ntk_gradient_flow(K[:2], K, torch.ones(3), t=1.0)
    assert math.isfinite(float(ntk_gradient_flow(K + torch.eye(3), K, torch.ones(3), t=math.inf)[0].sum()))
