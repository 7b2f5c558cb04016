"""spectral_compress: exact factorisations, MP rank on planted structure, model untouched unless inplace."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eigenlens.nn.compress import LowRankLinear, spectral_compress


def _low_rank_inputs(gen, n=2000, d=60, r=4, noise=0.0):
    Z = torch.randn(n, r, generator=gen, dtype=torch.float64) * 3.0
    A = torch.randn(r, d, generator=gen, dtype=torch.float64)
    X = Z @ A
    if noise:
        X = X + noise * torch.randn(n, d, generator=gen, dtype=torch.float64)
    return X


def _model(gen, d=60, h=80, o=30):
    m = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, o)).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) / math.sqrt(p.shape[-1]))
    return m


def test_activation_source_is_exact_on_the_data_span(gen):
    X = _low_rank_inputs(gen, r=4)
    model = nn.Sequential(nn.Linear(60, 50)).double()
    res = spectral_compress(model, X, rank=0.9999999)
    layer = res.layers[0]
    assert layer.rank == 4 and layer.replaced
    assert isinstance(res.model[0], LowRankLinear) and isinstance(model[0], nn.Linear)
    torch.testing.assert_close(res.model(X), model(X), rtol=1e-9, atol=1e-9)
    assert layer.params_after == 4 * (60 + 50) + 50 and layer.params_before == 60 * 50 + 50
    assert res.params_saved == layer.params_before - layer.params_after
    assert layer.energy == pytest.approx(1.0, abs=1e-9)


def test_mp_rank_finds_planted_signal_directions(gen):
    # 4 strong directions in the inputs plus isotropic noise: the input covariance has 4 outliers above MP
    X = _low_rank_inputs(gen, n=3000, d=60, r=4, noise=1.0)
    model = nn.Sequential(nn.Linear(60, 60)).double()
    res = spectral_compress(model, (X, torch.zeros(3000)), rank="mp")
    assert res.layers[0].num_outliers == 4 and res.layers[0].rank == 4


def test_weight_source_truncated_svd(gen):
    N, M, r = 300, 120, 3
    U = torch.linalg.qr(torch.randn(N, r, generator=gen, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(M, r, generator=gen, dtype=torch.float64)).Q
    W = (U * torch.tensor([30.0, 20.0, 10.0], dtype=torch.float64)) @ V.T
    W = W + 0.01 * torch.randn(N, M, generator=gen, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(M, N)).double()
    with torch.no_grad():
        model[0].weight.copy_(W)
    res = spectral_compress(model, source="weights", rank="mp")
    assert res.layers[0].num_outliers == 3 and res.layers[0].rank == 3
    S_full, Vh = torch.linalg.svd(W, full_matrices=False)[1:]
    Wr = (res.model[0].up.weight @ res.model[0].down.weight).detach()
    # the best rank-3 approximation: error = the 4th singular value and beyond
    err = torch.linalg.matrix_norm(W - Wr, ord=2)
    assert float(err) == pytest.approx(float(S_full[3]), rel=1e-9)
    torch.testing.assert_close(res.model[0].up.bias, model[0].bias)


def test_fixed_rank_and_no_saving_is_reported(gen):
    model = _model(gen, d=10, h=12, o=3)
    X = torch.randn(200, 10, generator=gen, dtype=torch.float64)
    res = spectral_compress(model, X, rank=8)
    by = {layer.name: layer for layer in res.layers}
    assert not by["0"].replaced and "no saving at rank 8" in by["0"].reason
    assert not by["2"].replaced and by["2"].rank == 3
    assert res.params_after == res.params_before


def test_model_untouched_unless_inplace(gen):
    model = _model(gen)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    X = _low_rank_inputs(gen, n=500, r=5, noise=0.1)
    res = spectral_compress(model, [X[:250], X[250:]], rank=5, metric=lambda m: float(m(X).detach().sum()))
    assert res.model is not model and isinstance(model[0], nn.Linear) and model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert torch.equal(torch.get_rng_state(), rng)
    assert res.metric_before is not None and res.metric_after is not None
    res2 = spectral_compress(model, X, rank=5, inplace=True)
    assert res2.model is model and isinstance(model[0], LowRankLinear)


def test_to_dict_and_pandas(gen):
    model = _model(gen)
    res = spectral_compress(model, _low_rank_inputs(gen, n=400, r=3), rank=3)
    d = res.to_dict()
    assert "model" not in d and d["params_saved"] == res.params_saved
    assert list(res.to_pandas()["name"]) == ["0", "2"]


def test_errors(gen):
    model = _model(gen)
    X = torch.randn(50, 60, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match="rank: expected 'mp', 'mp-trace', an int >= 1 or an energy fraction"):
        spectral_compress(model, X, rank=0)
    with pytest.raises(ValueError, match="rank: expected"):
        spectral_compress(model, X, rank=1.5)
    with pytest.raises(ValueError, match="source: expected 'activations' or 'weights', got 'grads'"):
        spectral_compress(model, X, source="grads")
    with pytest.raises(ValueError, match="needs calibration inputs"):
        spectral_compress(model)
    with pytest.raises(ValueError, match="no nn.Linear layer"):
        spectral_compress(nn.Sequential(nn.ReLU()), X)
    with pytest.raises(ValueError, match=r"\['fc'\] are not nn.Linear layers"):
        spectral_compress(model, X, layers=["fc"])
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        spectral_compress("model", X)
    with pytest.raises(TypeError, match="data: expected model inputs"):
        spectral_compress(model, 3.0)


def test_mp_trace_rank_counts_eigenvalues_above_the_same_energy_edge(gen):
    X = _low_rank_inputs(gen, n=2000, d=60, r=3, noise=1.0)
    model = nn.Sequential(nn.Linear(60, 60)).double()
    res = spectral_compress(model, X, rank="mp-trace")
    eig = torch.linalg.eigvalsh(X.T @ X / 2000)
    edge = float(eig.mean()) * (1 + math.sqrt(60 / 2000)) ** 2
    assert res.layers[0].rank == int((eig > edge).sum()) == 3


def test_zero_directions_are_not_noise(gen):
    # inputs that never use half of the coordinates (like always-black pixels): the MP fit ignores them
    X = _low_rank_inputs(gen, n=2000, d=30, r=3, noise=1.0)
    X = torch.cat([X, torch.zeros(2000, 30, dtype=torch.float64)], dim=1)
    model = nn.Sequential(nn.Linear(60, 60)).double()
    res = spectral_compress(model, X, rank="mp")
    assert res.layers[0].num_outliers == 3
