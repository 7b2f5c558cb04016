import numpy as np
import pytest
import torch

import eigenlens as el
from eigenlens.linalg.exceptions import ConvergenceWarning

F64 = torch.float64


def prescribed_rect(m, n, s, seed=0):
    """U diag(s) Vᵀ with seeded random orthonormal U [m, r], V [n, r]."""
    s = torch.as_tensor(s, dtype=F64)
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, s.numel(), generator=g, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(n, s.numel(), generator=g, dtype=F64))
    return (U * s) @ V.T


SPECTRA = {
    "separated": lambda r: torch.linspace(10.0, 1.0, r, dtype=F64),
    "clustered": lambda r: torch.cat([10.0 * (1 - 1e-3 * torch.arange(8, dtype=F64)), torch.linspace(9.0, 0.1, r - 8)]),
    "fast_decay": lambda r: 0.7 ** torch.arange(r, dtype=F64),
    "slow_decay": lambda r: 1.0 / torch.arange(1, r + 1, dtype=F64) ** 0.5,
}


def check_triplets(A, res, tol, anorm):
    u, s, v = res.u.to(F64), res.s, res.v.to(F64)
    k = s.numel()
    assert float(torch.linalg.vector_norm(A @ v - u * s, dim=0).max()) <= 2 * tol * anorm
    assert float(torch.linalg.vector_norm(A.T @ u - v * s, dim=0).max()) <= 2 * tol * anorm
    assert float((u.T @ u - torch.eye(k, dtype=F64)).abs().max()) < 1e-9
    assert float((v.T @ v - torch.eye(k, dtype=F64)).abs().max()) < 1e-9
    assert torch.all(s[:-1] >= s[1:])


@pytest.mark.parametrize("kind", sorted(SPECTRA))
@pytest.mark.parametrize("shape", [(300, 200), (200, 300)])
def test_matches_numpy_svd(kind, shape):
    m, n = shape
    A = prescribed_rect(m, n, SPECTRA[kind](min(m, n)), seed=1)
    ref = np.linalg.svd(A.numpy(), compute_uv=False)
    calls = {"A": 0, "AT": 0}

    def mm(X):
        calls["A"] += X.shape[1]
        return A @ X

    def rmm(X):
        calls["AT"] += X.shape[1]
        return A.T @ X

    op = el.linear_operator(mm, (m, n), adjoint=rmm)
    res = el.svds(op, 6, tol=1e-10)
    assert res.converged
    assert res.u.shape == (m, 6) and res.s.shape == (6,) and res.v.shape == (n, 6)
    assert res.num_matvecs == calls["A"] + calls["AT"] and calls["A"] == calls["AT"] > 0
    np.testing.assert_allclose(res.s.numpy(), ref[:6], rtol=0, atol=1e-9 * ref[0])
    check_triplets(A, res, 1e-10, float(ref[0]))
    np.testing.assert_allclose(
        res.residual_norms.numpy(), torch.linalg.vector_norm(A.T @ res.u - res.v * res.s, dim=0).numpy(),
        rtol=1e-2, atol=1e-12 * float(ref[0]),
    )


def test_large_sparse_rectangular():
    m, n = 5000, 3000
    s = torch.cat([torch.tensor([20.0, 18.0, 17.0, 16.5], dtype=F64), torch.linspace(15.0, 0.5, n - 4, dtype=F64)])
    # A = H_m [diag(s); 0] H_n with Householder reflections: exact singular values s, O(m + n) per product
    g = torch.Generator().manual_seed(2)
    a = torch.randn(m, generator=g, dtype=F64)
    b = torch.randn(n, generator=g, dtype=F64)
    a, b = a / a.norm(), b / b.norm()

    def refl(X, u):
        return X - 2.0 * u[:, None] * (u @ X)[None, :]

    def mm(X):
        Y = s[:, None] * refl(X, b)
        return refl(torch.cat([Y, torch.zeros(m - n, X.shape[1], dtype=F64)]), a)

    def rmm(X):
        return refl(s[:, None] * refl(X, a)[:n], b)

    res = el.svds(el.linear_operator(mm, (m, n), adjoint=rmm), 4, tol=1e-9)
    assert res.converged
    np.testing.assert_allclose(res.s.numpy(), [20.0, 18.0, 17.0, 16.5], atol=1e-8 * 20)


@pytest.mark.parametrize("shape,k", [((8, 5), 5), ((30, 12), 4), ((12, 40), 12)])
def test_small_falls_back_to_dense(shape, k):
    A = prescribed_rect(*shape, torch.linspace(3.0, 1.0, min(shape), dtype=F64), seed=3)
    res = el.svds(el.aslinearoperator(A), k)
    assert res.converged and res.num_matvecs == shape[1]
    ref = np.linalg.svd(A.numpy(), compute_uv=False)[:k]
    np.testing.assert_allclose(res.s.numpy(), ref, atol=1e-12)
    check_triplets(A, res, 1e-12, 3.0)


def test_float32_operator():
    A = prescribed_rect(300, 200, torch.linspace(10.0, 1.0, 200, dtype=F64), seed=4)
    res = el.svds(el.aslinearoperator(A.float()), 3, tol=1e-5)
    assert res.converged and res.u.dtype == torch.float32 and res.s.dtype == F64
    np.testing.assert_allclose(res.s.numpy(), np.linalg.svd(A.numpy(), compute_uv=False)[:3], atol=1e-4)


def test_budget_exhausted_warns():
    A = prescribed_rect(300, 200, SPECTRA["clustered"](200), seed=5)
    with pytest.warns(ConvergenceWarning, match="used its budget of max_matvecs = 20"):
        res = el.svds(el.aslinearoperator(A), 3, max_matvecs=20)
    assert not res.converged and res.num_matvecs == 20
    ref = np.linalg.svd(A.numpy(), compute_uv=False)[:3]
    assert np.all(res.s.numpy() <= ref + 1e-12)  # Ritz singular values are lower bounds


def test_deterministic():
    A = prescribed_rect(100, 80, torch.linspace(5.0, 1.0, 80, dtype=F64), seed=6)
    op = el.aslinearoperator(A)
    state = torch.get_rng_state()
    r1, r2 = el.svds(op, 2), el.svds(op, 2)
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(r1.s, r2.s)


def test_low_rank_breakdown():
    A = prescribed_rect(120, 90, torch.tensor([3.0, 2.0], dtype=F64), seed=7)  # rank 2
    res = el.svds(el.aslinearoperator(A), 4, tol=1e-10)
    np.testing.assert_allclose(res.s.numpy(), [3.0, 2.0, 0.0, 0.0], atol=1e-9)


def test_errors():
    op = el.aslinearoperator(prescribed_rect(60, 40, torch.linspace(2.0, 1.0, 40, dtype=F64)))
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= min\(m, n\) = 40 .*got k = 0"):
        el.svds(op, 0)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= min\(m, n\) = 40 .*got k = 41"):
        el.svds(op, 41)
    with pytest.raises(TypeError, match="k must be an int"):
        el.svds(op, "3")
    with pytest.raises(ValueError, match="tol must be a positive finite float"):
        el.svds(op, 2, tol=-1.0)
    with pytest.raises(ValueError, match=r"max_matvecs = 5 is too small: svds needs at least 6 products"):
        el.svds(op, 3, max_matvecs=5)
    with pytest.raises(ValueError, match=r"ncv must be >= k \+ 1 = 4"):
        el.svds(op, 3, ncv=3)


def test_nan_from_matvec_message_survives():
    A = prescribed_rect(60, 40, torch.linspace(2.0, 1.0, 40, dtype=F64))
    calls = [0]

    def mm(X):
        calls[0] += 1
        return A @ X * (float("nan") if calls[0] == 3 else 1.0)

    with pytest.raises(FloatingPointError, match=r"product call #3 .*produced NaN or Inf"):
        el.svds(el.linear_operator(mm, (60, 40), adjoint=lambda X: A.T @ X), 2)
