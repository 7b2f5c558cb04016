import numpy as np
import pytest
import torch

import eigenlens as el
from eigenlens.linalg.exceptions import ConvergenceWarning
from tests.matrices import prescribed, random_hermitian

F64 = torch.float64



SPECTRA = {
    "separated": lambda n: torch.linspace(1.0, 10.0, n, dtype=F64),
    "indefinite": lambda n: torch.linspace(-3.0, 5.0, n, dtype=F64),
    "fast_decay": lambda n: 0.5 ** torch.arange(n, dtype=F64),
    "slow_decay": lambda n: 1.0 / torch.arange(1, n + 1, dtype=F64),
    "repeated": lambda n: torch.cat([torch.full((3,), 4.0, dtype=F64), torch.linspace(-1.0, 2.0, n - 3, dtype=F64)]),
}


def check_identities(A, res, tol=1e-12):
    Q, T, r = res.basis, res.tridiagonal(), res.residual
    m = Q.shape[1]
    em = torch.zeros(m, dtype=F64)
    em[-1] = 1.0
    scale = float(torch.linalg.matrix_norm(A, 2))
    assert float((A @ Q - Q @ T - torch.outer(r, em)).abs().max()) <= tol * scale
    assert float((Q.T @ Q - torch.eye(m, dtype=F64)).abs().max()) <= tol
    assert float(torch.linalg.vector_norm(r)) == pytest.approx(float(res.beta[-1]), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("kind", sorted(SPECTRA))
@pytest.mark.parametrize("n,m", [(60, 25), (200, 40)])
def test_lanczos_identities(kind, n, m):
    A = prescribed(SPECTRA[kind](n), seed=n)
    res = el.lanczos(el.aslinearoperator(A, symmetric=True), m)
    assert res.basis.shape == (n, m) and res.alpha.shape == (m,) and res.beta.shape == (m,)
    assert res.steps == m and res.num_matvecs == m
    assert res.alpha.dtype == F64 and res.beta.dtype == F64
    check_identities(A, res)
    # T is the projection Qᵀ A Q
    torch.testing.assert_close(res.basis.T @ A @ res.basis, res.tridiagonal(), atol=1e-12, rtol=0)


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_exact_recovery_at_m_equals_n(n):
    d = torch.linspace(-2.0, 3.0, n, dtype=F64) if n > 1 else torch.tensor([2.5], dtype=F64)
    A = prescribed(d, seed=3)
    res = el.lanczos(el.aslinearoperator(A, symmetric=True), n + 5)  # capped at n
    assert res.steps <= n
    values, vectors = res.ritz()
    np.testing.assert_allclose(values.numpy(), np.linalg.eigvalsh(A.numpy()), atol=1e-12)
    # Ritz vectors are eigenvectors
    assert float((A @ vectors - vectors * values).abs().max()) < 1e-11


def test_block_runs_independent_processes_in_one_product_per_step():
    n, m, b = 80, 15, 4
    A = prescribed(SPECTRA["indefinite"](n), seed=1)
    calls = []

    def mm(X):
        calls.append(X.shape[1])
        return A @ X

    op = el.linear_operator(mm, (n, n), symmetric=True)
    V = torch.randn(n, b, generator=torch.Generator().manual_seed(2), dtype=F64)
    res = el.lanczos(op, m, v0=V)
    assert calls == [b] * m  # one batched product per step
    assert res.num_matvecs == b * m
    assert res.alpha.shape == (b, m) and res.beta.shape == (b, m)
    assert res.basis.shape == (b, n, m) and res.residual.shape == (b, n)
    assert res.steps.tolist() == [m] * b
    assert res.tridiagonal().shape == (b, m, m)
    for p in range(b):
        single = el.lanczos(el.aslinearoperator(A, symmetric=True), m, v0=V[:, p])
        torch.testing.assert_close(res.alpha[p], single.alpha, atol=1e-12, rtol=0)
        torch.testing.assert_close(res.beta[p], single.beta, atol=1e-12, rtol=0)
        torch.testing.assert_close(res.basis[p], single.basis, atol=1e-11, rtol=0)
        torch.testing.assert_close(res.tridiagonal()[p], single.tridiagonal(), atol=1e-12, rtol=0)


def test_block_breakdown_stops_probe_and_pads():
    n = 30
    d = torch.linspace(-1.0, 3.0, n, dtype=F64)
    A = torch.diag(d)
    V = torch.randn(n, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    V[3:, 0] = 0  # probe 0 lives in a 3-dimensional invariant subspace
    res = el.lanczos(el.aslinearoperator(A, symmetric=True), 8, v0=V)
    assert res.steps.tolist() == [3, 8, 8]
    assert res.num_matvecs == 3 + 8 + 8
    assert float(res.beta[0, 2]) < 1e-14
    assert torch.all(res.alpha[0, 3:] == 0) and torch.all(res.beta[0, 3:] == 0)
    assert torch.all(res.basis[0, :, 3:] == 0)
    T = res.tridiagonal()[0]
    assert torch.all(T[3:, :] == 0) and torch.all(T[:, 3:] == 0)
    values, vectors = res.ritz()
    np.testing.assert_allclose(values[0, :3].numpy(), d[:3].numpy(), atol=1e-13)
    assert torch.isnan(values[0, 3:]).all() and torch.all(vectors[0, :, 3:] == 0)
    nodes, weights = res.quadrature()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3, dtype=F64), atol=1e-13, rtol=0)
    assert torch.all(weights[0, 3:] == 0) and torch.all(nodes[0, 3:] == 0)
    # the exact weights of the 3-point measure: squared components of the normalised probe
    q = V[:3, 0] / torch.linalg.vector_norm(V[:3, 0])
    torch.testing.assert_close(weights[0, :3], q**2, atol=1e-12, rtol=0)


def test_single_probe_breakdown_truncates():
    d = torch.arange(1.0, 11.0, dtype=F64)
    v = torch.zeros(10, dtype=F64)
    v[[2, 5]] = 1.0
    res = el.lanczos(el.aslinearoperator(torch.diag(d), symmetric=True), 6, v0=v)
    assert res.steps == 2 and res.alpha.shape == (2,) and res.basis.shape == (10, 2)
    assert res.num_matvecs == 2
    np.testing.assert_allclose(res.ritz()[0].numpy(), [3.0, 6.0], atol=1e-14)


def test_quadrature_is_exact_for_low_degree_polynomials():
    n, m = 50, 6
    A = prescribed(SPECTRA["slow_decay"](n) * 3 - 1, seed=4)
    v = torch.randn(n, generator=torch.Generator().manual_seed(5), dtype=F64)
    q = v / torch.linalg.vector_norm(v)
    nodes, weights = el.lanczos(el.aslinearoperator(A, symmetric=True), m, v0=v).quadrature()
    x = q.clone()
    for k in range(2 * m):  # Gauss quadrature: exact up to degree 2m - 1
        exact = float(q @ x)
        assert float((weights * nodes**k).sum()) == pytest.approx(exact, abs=1e-12)
        x = A @ x


def test_without_reorthogonalization_matches_early_steps_and_can_drop_basis():
    n = 100
    A = prescribed(SPECTRA["separated"](n), seed=6)
    op = el.aslinearoperator(A, symmetric=True)
    full = el.lanczos(op, 8)
    plain = el.lanczos(op, 8, reorthogonalize=False)
    torch.testing.assert_close(plain.alpha, full.alpha, atol=1e-10, rtol=0)
    torch.testing.assert_close(plain.beta, full.beta, atol=1e-10, rtol=0)
    light = el.lanczos(op, 8, reorthogonalize=False, return_basis=False)
    assert light.basis is None
    torch.testing.assert_close(light.alpha, plain.alpha, atol=0, rtol=0)
    torch.testing.assert_close(light.residual, plain.residual, atol=1e-14, rtol=0)
    with pytest.raises(ValueError, match="return_basis=True"):
        light.ritz()
    V = torch.randn(n, 3, generator=torch.Generator().manual_seed(7), dtype=F64)
    blk = el.lanczos(op, 8, v0=V, reorthogonalize=False, return_basis=False)
    for p in range(3):
        torch.testing.assert_close(blk.alpha[p], el.lanczos(op, 8, v0=V[:, p]).alpha, atol=1e-10, rtol=0)


def test_float32_operator_accumulates_in_float64():
    n, m = 300, 40
    A = prescribed(SPECTRA["indefinite"](n), seed=8)
    res = el.lanczos(el.aslinearoperator(A.float(), symmetric=True), m)
    assert res.alpha.dtype == F64 and res.beta.dtype == F64 and res.basis.dtype == torch.float32
    Q = res.basis.double()
    assert float((Q.T @ Q - torch.eye(m, dtype=F64)).abs().max()) < 1e-6
    ref = el.lanczos(el.aslinearoperator(A, symmetric=True), m)
    # the extreme Ritz values agree with the float64 run to float32 accuracy
    assert float(res.ritz()[0][-1]) == pytest.approx(float(ref.ritz()[0][-1]), abs=5e-5)
    assert float(res.ritz()[0][0]) == pytest.approx(float(ref.ritz()[0][0]), abs=5e-5)


def test_complex_hermitian():
    n, m = 40, 12
    A = random_hermitian(n, seed=9)
    res = el.lanczos(el.aslinearoperator(A, symmetric=True), m)
    Q, T = res.basis, res.tridiagonal().to(A.dtype)
    em = torch.zeros(m, dtype=A.dtype)
    em[-1] = 1
    assert float((A @ Q - Q @ T - torch.outer(res.residual, em)).abs().max()) < 1e-12 * float(A.abs().max()) * n
    assert float((Q.mH @ Q - torch.eye(m, dtype=A.dtype)).abs().max()) < 1e-12
    full = el.lanczos(el.aslinearoperator(A, symmetric=True), n)
    np.testing.assert_allclose(full.ritz()[0].numpy(), np.linalg.eigvalsh(A.numpy()), atol=1e-11)


def test_deterministic_and_leaves_global_rng_alone():
    A = prescribed(SPECTRA["separated"](30), seed=10)
    op = el.aslinearoperator(A, symmetric=True)
    state = torch.get_rng_state()
    r1, r2 = el.lanczos(op, 10), el.lanczos(op, 10)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(r1.alpha, r2.alpha) and torch.equal(r1.basis, r2.basis)
    r3 = el.lanczos(op, 10, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(r1.alpha, r3.alpha)


def test_interrupt_returns_completed_steps():
    A = prescribed(SPECTRA["separated"](30), seed=11)
    count = [0]

    def mm(X):
        count[0] += 1
        if count[0] == 5:
            raise KeyboardInterrupt
        return A @ X

    op = el.linear_operator(mm, (30, 30), symmetric=True)
    with pytest.warns(ConvergenceWarning, match="interrupted after 4"):
        res = el.lanczos(op, 10)
    assert res.steps == 4 and res.basis.shape == (30, 4)
    check_identities(A, res)


def test_result_serialises():
    res = el.lanczos(el.aslinearoperator(torch.diag(torch.arange(1.0, 4.0, dtype=F64)), symmetric=True), 2)
    d = res.to_dict()
    assert d["steps"] == 2 and d["num_matvecs"] == 2 and len(d["alpha"]) == 2


# ---------------------------------------------------------------------------- bad input
def test_errors():
    sym = el.aslinearoperator(torch.eye(4, dtype=F64), symmetric=True)
    with pytest.raises(ValueError, match="needs a square operator, got shape"):
        el.lanczos(el.aslinearoperator(torch.ones(3, 4, dtype=F64)), 2)
    A = torch.arange(16.0, dtype=F64).reshape(4, 4)
    with pytest.raises(ValueError, match=r"tag it with el\.aslinearoperator\(A, symmetric=True\)"):
        el.lanczos(el.aslinearoperator(A), 2)
    with pytest.raises(ValueError, match=r"num_matvecs must be >= 1 .*got 0"):
        el.lanczos(sym, 0)
    with pytest.raises(TypeError, match="num_matvecs must be an int"):
        el.lanczos(sym, 2.5)
    with pytest.raises(ValueError, match=r"v0 must have shape \[n\] or \[n, j\] with n = 4"):
        el.lanczos(sym, 2, v0=torch.ones(5, dtype=F64))
    with pytest.raises(TypeError, match="v0 must be a torch.Tensor"):
        el.lanczos(sym, 2, v0=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match=r"zero column\(s\) \[1\]"):
        el.lanczos(sym, 2, v0=torch.tensor([[1.0, 0.0]] * 4, dtype=F64))
    with pytest.raises(ValueError, match="v0 contains NaN or Inf"):
        el.lanczos(sym, 2, v0=torch.tensor([1.0, float("nan"), 0.0, 0.0], dtype=F64))
    with pytest.raises(ValueError, match="non-empty operator"):
        el.lanczos(el.linear_operator(lambda X: X, (0, 0), symmetric=True), 2)


def test_nan_from_matvec_names_the_call():
    calls = [0]

    def mm(X):
        calls[0] += 1
        d = torch.arange(1.0, 11.0, dtype=F64)[:, None]
        return d * X * (float("nan") if calls[0] == 3 else 1.0)

    op = el.linear_operator(mm, (10, 10), symmetric=True)
    with pytest.raises(FloatingPointError, match=r"product call #3 .*produced NaN or Inf"):
        el.lanczos(op, 5)
