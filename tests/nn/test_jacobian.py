"""Jacobian operators vs torch.func.jacrev; singular values vs dense SVD; the model is never touched."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import eigenlens as el
from eigenlens.nn.jacobian import JacobianOperator, jacobian, jacobian_spectrum
from tests.operator_harness import OperatorChecks

D64 = torch.float64


def _mlp(seed=0, d_in=3, width=5, d_out=2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, d_out)).double()


def _x(B=4, d=3, seed=1):
    return torch.randn(B, d, generator=torch.Generator().manual_seed(seed), dtype=D64)


def _dense_inputs(model, x):
    """Full batch Jacobian [B·O, B·D] by jacrev (not block-diagonal by construction)."""
    J = torch.func.jacrev(lambda t: model(t))(x)  # [B, *out, B, *in]
    B = x.shape[0]
    return J.reshape(B * (J.numel() // (B * x.numel())), x.numel()).detach()


def _dense_params(model, x):
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    J = torch.func.jacrev(lambda p: torch.func.functional_call(model, p, (x,)))(params)
    rows = model(x).numel()
    return torch.cat([J[n].reshape(rows, -1) for n in names], dim=1).detach()


class TestInputsMLP(OperatorChecks):
    def make(self):
        model, x = _mlp(), _x()
        return jacobian(model, x), _dense_inputs(model, x)


class TestParamsMLP(OperatorChecks):
    def make(self):
        model, x = _mlp(), _x()
        return jacobian(model, x, wrt="params"), _dense_params(model, x)


class Conv(nn.Module):
    """[B, 2, 6] -> [B, 3, 6]: checks the row-major flattening of multi-dimensional inputs and outputs."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3, padding=1, padding_mode="circular")
        self.c2 = nn.Conv1d(4, 3, 3, padding=1)

    def forward(self, u):
        return self.c2(torch.tanh(self.c1(u)))


class TestInputsConv(OperatorChecks):
    def make(self):
        torch.manual_seed(3)
        model = Conv().double()
        x = torch.randn(2, 2, 6, generator=torch.Generator().manual_seed(4), dtype=D64)
        return jacobian(model, x), _dense_inputs(model, x)


class TestParamsConvSubset(OperatorChecks):
    def make(self):
        torch.manual_seed(3)
        model = Conv().double()
        x = torch.randn(2, 2, 6, generator=torch.Generator().manual_seed(4), dtype=D64)
        J = jacobian(model, x, wrt="params", params="c2.*")
        full = _dense_params(model, x)
        n1 = sum(p.numel() for n, p in model.named_parameters() if n.startswith("c1"))
        return J, full[:, n1:]


class TestParameterFreeModel(OperatorChecks):
    def make(self):
        x = _x(3, 4)
        return jacobian(nn.Tanh(), x), torch.diag((1 - torch.tanh(x) ** 2).reshape(-1))


def test_block_diagonal_structure_and_example_block():
    model, x = _mlp(), _x()
    J = jacobian(model, x)
    dense = J.to_dense()
    for i in range(4):
        blk = torch.func.jacrev(model)(x[i]).detach()
        torch.testing.assert_close(dense[2 * i : 2 * i + 2, 3 * i : 3 * i + 3], blk, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(J.example(i).to_dense(), blk, rtol=1e-12, atol=1e-12)
    off = dense.clone()
    for i in range(4):
        off[2 * i : 2 * i + 2, 3 * i : 3 * i + 3] = 0
    assert float(off.abs().max()) == 0.0
    assert J.output_shape == (2,) and J.input_shape == (3,) and J.batch_size == 4


def test_float32_model_and_float64_evaluation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(2, 3)
    J32 = jacobian(model, x)
    assert J32.dtype == torch.float32
    J64 = jacobian(model, x, dtype=D64)
    assert J64.dtype == D64
    torch.testing.assert_close(J64.to_dense(), _dense_inputs(model.double(), x.double()), rtol=1e-12, atol=1e-12)


def test_chunked_products_agree():
    model, x = _mlp(), _x()
    V = torch.randn(12, 7, dtype=D64, generator=torch.Generator().manual_seed(0))
    U = torch.randn(8, 7, dtype=D64, generator=torch.Generator().manual_seed(1))
    J, Jc = jacobian(model, x), jacobian(model, x, chunk_size=2)
    torch.testing.assert_close(J @ V, Jc @ V)
    torch.testing.assert_close(J.T @ U, Jc.T @ U)


def _snapshot(model):
    return (
        [p.detach().clone() for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
        torch.get_rng_state(),
    )


def _assert_same(model, snap):
    vals, grads, req, modes, rng = snap
    for p, v, g, r in zip(model.parameters(), vals, grads, req):
        assert torch.equal(p.detach(), v)
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
        assert p.requires_grad == r
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)


def test_model_untouched_by_products_and_spectrum():
    model, x = _mlp(), _x()
    model(x).sum().backward()  # a .grad the measurement must not change
    model[0].bias.requires_grad_(False)
    model.train()
    snap = _snapshot(model)
    for wrt in ("inputs", "params"):
        J = jacobian(model, x, wrt=wrt, params=None if wrt == "inputs" else ["0.weight", "2.*"])
        J @ torch.ones(J.shape[1], dtype=D64)
        J.T @ torch.ones(J.shape[0], dtype=D64)
    jacobian_spectrum(model, x, k=1, num_probes=2, num_matvecs=3)
    _assert_same(model, snap)


def test_model_untouched_when_an_error_is_raised():
    model, x = _mlp(), _x()
    snap = _snapshot(model)
    J = jacobian(model, x)
    with pytest.raises(ValueError, match="shape mismatch"):
        J @ torch.ones(5, dtype=D64)
    with pytest.raises(TypeError, match="dtype mismatch"):
        J @ torch.ones(12)
    _assert_same(model, snap)


class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2).double()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom")
        return self.lin(x)


def test_model_untouched_when_the_forward_raises():
    model = Boom()
    x = torch.randn(2, 2, dtype=D64)
    J = jacobian(model, x)
    snap = _snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        J @ torch.ones(4, dtype=D64)
    _assert_same(model, snap)


def test_errors():
    model, x = _mlp(), _x()
    with pytest.raises(ValueError, match="wrt: expected 'inputs' or 'params'"):
        jacobian(model, x, wrt="weights")
    with pytest.raises(TypeError, match="needs one tensor"):
        jacobian(model, (x,))
    with pytest.raises(TypeError, match="needs floating inputs"):
        jacobian(nn.Embedding(5, 2), torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="only used with wrt='params'"):
        jacobian(model, x, params="0.*")
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        jacobian(lambda t: t, x)
    drop = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).double().train()
    with pytest.raises(ValueError, match="dropout"):
        jacobian(drop, x)

    class Tup(nn.Module):
        def forward(self, t):
            return t, t

    with pytest.raises(TypeError, match="returning one tensor"):
        jacobian(Tup(), x)

    class Sum(nn.Module):
        def forward(self, t):
            return t.sum()

    with pytest.raises(ValueError, match="batch dimension first"):
        jacobian(Sum(), x)
    with pytest.raises(ValueError, match="B >= 1"):
        jacobian(model, torch.zeros(0, 3, dtype=D64))
    with pytest.raises(ValueError, match="chunk_size"):
        jacobian(model, x, chunk_size=0)
    with pytest.raises(ValueError, match="wrt='inputs'"):
        jacobian(model, x, wrt="params").example(0)


def test_top_level_export():
    assert el.jacobian is jacobian
    assert isinstance(el.jacobian(_mlp(), _x()), JacobianOperator)


# ---------------------------------------------------------------------------- spectrum
def test_spectrum_vs_dense_svd():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5)).double()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(2), dtype=D64)
    res = jacobian_spectrum(model, x, k=3, num_probes=4, num_matvecs=20, tol=1e-10)
    kry = jacobian_spectrum(model, x, k=3, num_probes=4, num_matvecs=20, tol=1e-10, dense_limit=0)  # Krylov path
    torch.testing.assert_close(kry.singular_values, res.singular_values, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(kry.smallest_singular_values, res.smallest_singular_values, rtol=1e-7, atol=1e-9)
    sv_all = []
    for i in range(5):
        s = torch.linalg.svdvals(torch.func.jacrev(model)(x[i]).detach())
        sv_all.append(s)
        torch.testing.assert_close(res.singular_values[i], s[:3], rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(res.smallest_singular_values[i], s[-1], rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(res.condition_numbers[i], s[0] / s[-1], rtol=1e-6, atol=0)
    pooled = torch.cat(sv_all).sort(descending=True).values
    torch.testing.assert_close(res.pooled_singular_values, pooled[:3], rtol=1e-7, atol=1e-9)
    assert res.condition_number == pytest.approx(float(pooled[0] / pooled[-1]), rel=1e-6)
    assert res.gram == "JJᵀ" and res.num_examples == 5 and res.num_matvecs > 0
    # the SLQ density of JJᵀ (25 eigenvalues, 20 Lanczos steps): the mean is exact up to probe noise
    exact = (pooled**2).mean()
    assert float(res.density.moments(1)[1]) == pytest.approx(float(exact), rel=0.3)
    assert res.density.wasserstein1(pooled**2) < 0.15 * float(exact)
    assert res.isometry_fraction == 0.0
    d = res.to_dict()
    assert d["num_examples"] == 5


def test_isometry_fraction_and_condition_on_orthogonal_linear():
    torch.manual_seed(0)
    lin = nn.Linear(6, 6, bias=False).double()
    nn.init.orthogonal_(lin.weight)
    x = torch.randn(3, 6, dtype=D64)
    res = jacobian_spectrum(lin, x, k=2, num_probes=2, num_matvecs=6)
    assert res.isometry_fraction == 1.0
    assert res.condition_number == pytest.approx(1.0, abs=1e-8)
    with torch.no_grad():
        lin.weight.mul_(1.2)  # singular values 1.2: outside a 10% tolerance, inside 25%
    assert jacobian_spectrum(lin, x, k=1, num_probes=2, num_matvecs=4).isometry_fraction == 0.0
    assert jacobian_spectrum(lin, x, k=1, isometry_tol=0.25, num_probes=2, num_matvecs=4).isometry_fraction == 1.0


def test_spectrum_errors():
    model, x = _mlp(), _x()
    with pytest.raises(ValueError, match="k: expected a positive int"):
        jacobian_spectrum(model, x, k=0)
    with pytest.raises(ValueError, match="isometry_tol"):
        jacobian_spectrum(model, x, isometry_tol=0)
    with pytest.raises(ValueError, match="max_examples"):
        jacobian_spectrum(model, x, max_examples=0)


def test_spectrum_deterministic_default_generator():
    model, x = _mlp(), _x()
    a = jacobian_spectrum(model, x, k=1, num_probes=2, num_matvecs=4)
    b = jacobian_spectrum(model, x, k=1, num_probes=2, num_matvecs=4)
    assert torch.equal(a.density.nodes, b.density.nodes)
    assert math.isfinite(a.condition_number)
