import numpy as np
import pytest
import scipy.optimize
import torch

from eigenlens.linalg.sampling import (
    SampledRows,
    leverage_scores,
    lewis_weights,
    lp_regression,
    sensitivity_sample,
)

F64 = torch.float64


def _A(n=300, d=5, seed=0, heavy=True):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, d, generator=g, dtype=F64)
    if heavy:
        A[:5] *= 30.0  # a few high-leverage rows
    return A


def test_exact_leverage_scores_closed_form():
    A = _A()
    Q, _ = np.linalg.qr(A.numpy())
    lev = leverage_scores(A)
    np.testing.assert_allclose(lev.numpy(), (Q**2).sum(1), rtol=1e-10, atol=1e-14)
    assert float(lev.sum()) == pytest.approx(5.0, rel=1e-12)
    # rank-deficient: sums to the rank
    B = torch.cat([A, A[:, :1]], dim=1)
    assert float(leverage_scores(B).sum()) == pytest.approx(5.0, rel=1e-10)


def test_sketched_leverage_scores_within_constant_factor():
    A = _A(n=3000, d=6)
    exact = leverage_scores(A)
    approx = leverage_scores(A, method="sketched", sketch_size=300, jl_dim=800)
    ratio = approx / exact
    assert 0.6 < float(ratio.min()) and float(ratio.max()) < 1.4
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.05)


def _lewis_slow(A, p):
    """Reference: solve the fixed-point equations w = (a_iᵀ(AᵀW^{1−2/p}A)⁻¹a_i)^{p/2} with a root finder."""
    An = A.numpy()

    def F(logw):
        w = np.exp(logw)
        M = An.T @ (w[:, None] ** (1 - 2 / p) * An)
        q = np.einsum("ij,ij->i", An @ np.linalg.inv(M), An)
        return logw - (p / 2) * np.log(q)

    sol = scipy.optimize.root(F, np.log(np.full(len(An), An.shape[1] / len(An))), method="hybr", tol=1e-13)
    assert sol.success
    return np.exp(sol.x)


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0])
def test_lewis_weights_match_slow_exact_fixed_point(p):
    A = _A(n=40, d=3, seed=1)
    w = lewis_weights(A, p)
    ref = _lewis_slow(A, p)
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-8)
    assert float(w.sum()) == pytest.approx(3.0, rel=1e-8)


def test_lewis_weights_p2_are_leverage_scores():
    A = _A(n=100, d=4, seed=2)
    np.testing.assert_allclose(lewis_weights(A, 2.0).numpy(), leverage_scores(A).numpy(), rtol=1e-12)


def test_sensitivity_sampling_is_an_lp_embedding():
    p = 1.0
    A = _A(n=2000, d=4, seed=3)
    smp = sensitivity_sample(A, p, 800, generator=torch.Generator().manual_seed(0))
    assert isinstance(smp, SampledRows) and smp.indices.shape == (800,)
    SA = smp.apply(A)
    g = torch.Generator().manual_seed(5)
    X = torch.randn(4, 50, generator=g, dtype=F64)
    ratio = (SA @ X).abs().sum(0) / (A @ X).abs().sum(0)
    assert 0.8 < float(ratio.min()) and float(ratio.max()) < 1.2
    # heavy rows are sampled much more often than under uniform sampling
    assert float(smp.probabilities[:5].sum()) > 10 * 5 / 2000


def test_lp_regression_full_matches_linprog_p1_and_minimize_p3():
    g = torch.Generator().manual_seed(4)
    n, d = 120, 3
    A = torch.randn(n, d, generator=g, dtype=F64)
    u = torch.rand(n, generator=g, dtype=F64) - 0.5
    laplace = torch.sign(u) * -torch.log1p(-2 * u.abs())
    b = A @ torch.tensor([1.0, -2.0, 0.5], dtype=F64) + laplace
    # p = 1 as a linear program: min Σ t s.t. -t <= Ax - b <= t
    An, bn = A.numpy(), b.numpy()
    c = np.concatenate([np.zeros(d), np.ones(n)])
    A_ub = np.block([[An, -np.eye(n)], [-An, -np.eye(n)]])
    bounds = [(None, None)] * d + [(0, None)] * n
    lp = scipy.optimize.linprog(c, A_ub=A_ub, b_ub=np.concatenate([bn, -bn]), bounds=bounds)
    res1 = lp_regression(A, b, 1.0, max_iters=500, tol=1e-13)
    assert res1.objective == pytest.approx(lp.fun, rel=1e-5)
    f3 = lambda x: np.sum(np.abs(An @ x - bn) ** 3)  # noqa: E731
    ref3 = scipy.optimize.minimize(f3, np.zeros(d), method="BFGS", options={"gtol": 1e-10})
    res3 = lp_regression(A, b, 3.0)
    assert res3.objective**3 == pytest.approx(ref3.fun, rel=1e-8)
    res2 = lp_regression(A, b, 2.0)
    np.testing.assert_allclose(res2.x.numpy(), np.linalg.lstsq(An, bn, rcond=None)[0], rtol=1e-10)


def test_lp_regression_sampled_within_1_plus_eps():
    g = torch.Generator().manual_seed(6)
    n, d = 5000, 3
    A = torch.randn(n, d, generator=g, dtype=F64)
    b = A @ torch.ones(d, dtype=F64) + torch.randn(n, generator=g, dtype=F64)
    full = lp_regression(A, b, 1.5)
    sampled = lp_regression(A, b, 1.5, sample_size=600)
    assert sampled.sample_size == 600
    assert full.objective <= sampled.objective <= 1.05 * full.objective


def test_bad_inputs():
    A = _A(n=20, d=3)
    with pytest.raises(ValueError, match="p must be a number in"):
        lewis_weights(A, 5.0)
    with pytest.raises(ValueError, match="rank deficient"):
        lewis_weights(torch.cat([A, A[:, :1]], 1), 1.0)
    with pytest.raises(ValueError, match="method must be"):
        leverage_scores(A, method="qr")
    with pytest.raises(ValueError, match="p must be a number >= 1"):
        lp_regression(A, torch.ones(20, dtype=F64), 0.5)
    with pytest.raises(ValueError, match="b must be a vector of length n=20"):
        lp_regression(A, torch.ones(19, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="m must be a positive int"):
        sensitivity_sample(A, 1.0, 0)
    bad = A.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        leverage_scores(bad)
    with pytest.raises(TypeError, match="expected a torch.Tensor"):
        leverage_scores([[1.0]])
