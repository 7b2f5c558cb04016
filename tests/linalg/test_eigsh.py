import importlib

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch

import eigenlens as el
from eigenlens.linalg.exceptions import ConvergenceWarning
from tests.matrices import prescribed, random_hermitian

F64 = torch.float64
#: the module (``eigenlens.linalg.eigsh`` as an attribute is the function), for its private switches
EIGSH = importlib.import_module("eigenlens.linalg.eigsh")



def clustered(n, m=8):
    top = 10.0 * (1 - 1e-3 * torch.arange(m, dtype=F64))  # m eigenvalues at relative gaps 1e-3 over a bulk
    return torch.cat([top, torch.linspace(0.0, 9.0, n - m, dtype=F64)])


SPECTRA = {
    "separated": (lambda n: torch.linspace(1.0, 10.0, n, dtype=F64), "LA SA LM BE"),
    "clustered": (clustered, "LA SA LM BE"),
    "indefinite": (lambda n: torch.linspace(-3.0, 5.0, n, dtype=F64), "LA SA LM BE"),
    "fast_decay": (lambda n: 0.7 ** torch.arange(n, dtype=F64), "LA LM"),
    "slow_decay": (lambda n: 1.0 / torch.arange(1, n + 1, dtype=F64) ** 0.5, "LA LM"),
}
CASES = [(kind, which) for kind, (_, whiches) in SPECTRA.items() for which in whiches.split()]


def reference(ev, k, which):
    ev = np.sort(ev)
    if which == "LA":
        return ev[::-1][:k]
    if which == "SA":
        return ev[:k]
    if which == "LM":
        return ev[np.argsort(-np.abs(ev), kind="stable")][:k]
    return np.sort(np.concatenate([ev[: k // 2], ev[len(ev) - (k - k // 2) :]]))


def check_pairs(A, res, tol, anorm):
    V, lam = res.eigenvectors.to(F64), res.eigenvalues
    true_res = torch.linalg.vector_norm(A @ V - V * lam, dim=0)
    assert float(true_res.max()) <= 2 * tol * anorm
    np.testing.assert_allclose(res.residual_norms.numpy(), true_res.numpy(), rtol=1e-2, atol=1e-3 * tol * anorm)
    assert float((V.T @ V - torch.eye(V.shape[1], dtype=F64)).abs().max()) < 1e-9


@pytest.mark.parametrize("kind,which", CASES)
def test_matches_eigvalsh(kind, which):
    n, k, tol = 300, 6, 1e-10
    A = prescribed(SPECTRA[kind][0](n), seed=1)
    ev = np.linalg.eigvalsh(A.numpy())
    anorm = float(np.abs(ev).max())
    res = el.eigsh(el.aslinearoperator(A, symmetric=True), k, which=which, tol=tol)
    assert res.method == "krylov-schur" and res.converged
    assert res.eigenvalues.shape == (k,) and res.eigenvectors.shape == (n, k) and res.residual_norms.shape == (k,)
    np.testing.assert_allclose(res.eigenvalues.numpy(), reference(ev, k, which), rtol=0, atol=1e-9 * anorm)
    check_pairs(A, res, tol, anorm)


@pytest.mark.parametrize("which", ["LA", "SA", "BE"])
def test_agrees_with_scipy_arpack(which):
    n, k = 400, 5
    A = prescribed(clustered(n) - 4.0, seed=2)
    ours = el.eigsh(el.aslinearoperator(A, symmetric=True), k, which=which, tol=1e-10)
    theirs = np.sort(sla.eigsh(A.numpy(), k, which=which, tol=1e-10, return_eigenvectors=False))
    np.testing.assert_allclose(np.sort(ours.eigenvalues.numpy()), theirs, atol=1e-9)


def test_output_orders():
    A = prescribed(torch.linspace(-3.0, 5.0, 200, dtype=F64), seed=3)
    op = el.aslinearoperator(A, symmetric=True)
    la = el.eigsh(op, 4, which="LA", tol=1e-10).eigenvalues
    sa = el.eigsh(op, 4, which="SA", tol=1e-10).eigenvalues
    lm = el.eigsh(op, 4, which="LM", tol=1e-10).eigenvalues
    be = el.eigsh(op, 5, which="BE", tol=1e-10).eigenvalues
    assert torch.all(la[:-1] > la[1:]) and torch.all(sa[:-1] < sa[1:])
    assert torch.all(lm.abs()[:-1] >= lm.abs()[1:])
    assert torch.all(be[:-1] < be[1:])
    assert int((be < 0).sum()) == 2 and int((be > 0).sum()) == 3  # ⌊k/2⌋ smallest, ⌈k/2⌉ largest


@pytest.mark.parametrize("block_size", [3, 4])
def test_repeated_eigenvalues_with_block(block_size):
    n, k = 300, 5
    d = torch.cat([torch.full((3,), 5.0, dtype=F64), torch.linspace(-4.0, 4.0, n - 3, dtype=F64)])
    g = torch.Generator().manual_seed(4)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    A = (Q * d) @ Q.T
    A = (A + A.T) / 2
    calls = []

    def mm(X):
        calls.append(X.shape[1])
        return A @ X

    op = el.linear_operator(mm, (n, n), symmetric=True)
    res = el.eigsh(op, k, which="LA", tol=1e-10, block_size=block_size)
    assert res.converged
    assert set(calls) == {block_size}  # every product is one batched block
    assert res.num_matvecs == sum(calls) == block_size * len(calls)
    np.testing.assert_allclose(res.eigenvalues.numpy(), [5.0, 5.0, 5.0, 4.0, 4.0 - 8.0 / (n - 4)], atol=1e-9)
    # the three returned vectors span the whole eigenspace of 5
    P = Q[:, :3].T @ res.eigenvectors[:, :3]
    np.testing.assert_allclose(torch.linalg.svdvals(P).numpy(), np.ones(3), atol=1e-9)
    check_pairs(A, res, 1e-10, 5.0)


def test_block_size_one_makes_one_vector_products():
    A = prescribed(torch.linspace(1.0, 10.0, 150, dtype=F64), seed=5)
    calls = []

    def mm(X):
        calls.append(X.shape[1])
        return A @ X

    res = el.eigsh(el.linear_operator(mm, (150, 150), symmetric=True), 3, tol=1e-8)
    assert set(calls) == {1} and res.num_matvecs == len(calls)


def householder_operator(d, seeds=(0, 1)):
    """A = H2 H1 diag(d) H1 H2 with Householder reflections: exact spectrum d, applied in O(n)."""
    n = d.numel()
    us = []
    for s in seeds:
        u = torch.randn(n, generator=torch.Generator().manual_seed(s), dtype=F64)
        us.append(u / torch.linalg.vector_norm(u))

    def reflect(X, u):
        return X - 2.0 * u[:, None] * (u @ X)[None, :]

    def mm(X):
        Y = reflect(reflect(X, us[1]), us[0])
        return reflect(reflect(d[:, None] * Y, us[0]), us[1])

    return el.linear_operator(mm, (n, n), symmetric=True)


@pytest.mark.parametrize("which", ["LA", "SA", "BE"])
def test_large_operator_n5000(which):
    n, k = 5000, 5
    d = torch.cat([torch.tensor([12.0, 11.5, 11.0, 10.9, 10.8], dtype=F64), torch.linspace(-2.0, 10.0, n - 5)])
    d = torch.cat([torch.tensor([-6.0, -5.5, -5.2], dtype=F64), d[: n - 3]]).to(F64)
    op = householder_operator(d)
    res = el.eigsh(op, k, which=which, tol=1e-9)
    assert res.converged
    np.testing.assert_allclose(res.eigenvalues.numpy(), reference(d.numpy(), k, which), atol=1e-8 * 12)


@pytest.mark.parametrize("n,k", [(10, 3), (12, 11), (30, 20)])
def test_small_problems_fall_back_to_dense(n, k):
    A = prescribed(torch.linspace(-1.0, 2.0, n, dtype=F64), seed=6)
    res = el.eigsh(el.aslinearoperator(A, symmetric=True), k, which="SA")
    assert res.method == "dense" and res.converged and res.num_matvecs == n
    np.testing.assert_allclose(res.eigenvalues.numpy(), np.linalg.eigvalsh(A.numpy())[:k], atol=1e-12)
    check_pairs(A, res, 1e-12, 2.0)


def test_float32_operator():
    n = 300
    A = prescribed(torch.linspace(-3.0, 5.0, n, dtype=F64), seed=7)
    res = el.eigsh(el.aslinearoperator(A.float(), symmetric=True), 4, which="LA", tol=1e-5)
    assert res.converged and res.eigenvectors.dtype == torch.float32 and res.eigenvalues.dtype == F64
    ev = np.linalg.eigvalsh(A.numpy())[::-1][:4]
    np.testing.assert_allclose(res.eigenvalues.numpy(), ev, atol=1e-5 * 5)
    V = res.eigenvectors.double()
    assert float(torch.linalg.vector_norm(A @ V - V * res.eigenvalues, dim=0).max()) < 1e-4


def test_complex_hermitian():
    A = random_hermitian(200, seed=8)
    res = el.eigsh(el.aslinearoperator(A, symmetric=True), 3, which="LA", tol=1e-10)
    ev = np.linalg.eigvalsh(A.numpy())[::-1][:3]
    np.testing.assert_allclose(res.eigenvalues.numpy(), ev, atol=1e-8)
    V = res.eigenvectors
    assert float(torch.linalg.vector_norm(A @ V - V * res.eigenvalues, dim=0).max()) < 1e-8 * float(abs(ev).max())


def test_warm_start_saves_products():
    n = 400
    A = prescribed(torch.linspace(1.0, 10.0, n, dtype=F64), seed=9)
    cold = el.eigsh(el.aslinearoperator(A, symmetric=True), 4, tol=1e-9)
    E = prescribed(torch.linspace(-1.0, 1.0, n, dtype=F64), seed=10)
    B = A + 1e-7 * E
    warm = el.eigsh(el.aslinearoperator(B, symmetric=True), 4, tol=1e-9, v0=cold.eigenvectors)
    again = el.eigsh(el.aslinearoperator(B, symmetric=True), 4, tol=1e-9)
    np.testing.assert_allclose(warm.eigenvalues.numpy(), np.linalg.eigvalsh(B.numpy())[::-1][:4], atol=1e-8)
    assert warm.num_matvecs < again.num_matvecs / 2
    one = el.eigsh(el.aslinearoperator(B, symmetric=True), 1, tol=1e-9, v0=cold.eigenvectors[:, 0])
    assert one.num_matvecs < again.num_matvecs / 2


def test_budget_exhausted_warns_and_returns_best():
    A = prescribed(clustered(300), seed=11)
    with pytest.warns(ConvergenceWarning, match="used its budget of max_matvecs = 30"):
        res = el.eigsh(el.aslinearoperator(A, symmetric=True), 3, max_matvecs=30)
    assert not res.converged and res.num_matvecs <= 30
    assert res.eigenvalues.shape == (3,)
    # Ritz values are lower bounds of the top eigenvalues (Cauchy interlacing)
    assert torch.all(res.eigenvalues <= torch.tensor(np.linalg.eigvalsh(A.numpy())[::-1][:3].copy()) + 1e-12)


def test_interrupt_returns_best_so_far():
    A = prescribed(torch.linspace(1.0, 10.0, 200, dtype=F64), seed=12)
    count = [0]

    def mm(X):
        count[0] += 1
        if count[0] == 40:
            raise KeyboardInterrupt
        return A @ X

    with pytest.warns(ConvergenceWarning, match="was interrupted"):
        res = el.eigsh(el.linear_operator(mm, (200, 200), symmetric=True), 2, tol=1e-12)
    assert res.num_matvecs == 39
    assert abs(float(res.eigenvalues[0]) - 10.0) < 1e-3


def test_deterministic_and_global_rng_untouched():
    A = prescribed(torch.linspace(1.0, 10.0, 200, dtype=F64), seed=13)
    op = el.aslinearoperator(A, symmetric=True)
    state = torch.get_rng_state()
    r1, r2 = el.eigsh(op, 3), el.eigsh(op, 3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(r1.eigenvalues, r2.eigenvalues) and r1.num_matvecs == r2.num_matvecs
    assert r1.to_dict()["converged"] is True


def test_zero_and_low_rank_operators_break_down_cleanly():
    n = 100
    zero = el.linear_operator(lambda X: torch.zeros_like(X), (n, n), symmetric=True)
    res = el.eigsh(zero, 2, tol=1e-8)
    assert res.converged and torch.all(res.eigenvalues == 0)
    u = torch.randn(n, 2, generator=torch.Generator().manual_seed(14), dtype=F64)
    A = u @ u.T
    res = el.eigsh(el.aslinearoperator(A, symmetric=True), 4, which="LA", tol=1e-10)
    ev = np.linalg.eigvalsh(A.numpy())[::-1][:4]
    np.testing.assert_allclose(res.eigenvalues.numpy(), ev, atol=1e-9 * ev[0])


# ---------------------------------------------------------------------------- bad input
def test_errors():
    A = prescribed(torch.linspace(1.0, 2.0, 50, dtype=F64), seed=15)
    op = el.aslinearoperator(A, symmetric=True)
    with pytest.raises(ValueError, match=r"eigsh needs a square operator, got shape \(3, 4\)"):
        el.eigsh(el.aslinearoperator(torch.ones(3, 4, dtype=F64)), 1)
    N = torch.arange(2500.0, dtype=F64).reshape(50, 50)
    with pytest.raises(ValueError, match=r"tag it with el\.aslinearoperator\(A, symmetric=True\)"):
        el.eigsh(el.aslinearoperator(N), 2)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k < n = 50 .*got k = 0"):
        el.eigsh(op, 0)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k < n = 50 .*got k = 50"):
        el.eigsh(op, 50)
    with pytest.raises(ValueError, match=r"1 <= k < n = 1"):
        el.eigsh(el.aslinearoperator(torch.ones(1, 1, dtype=F64), symmetric=True), 1)
    with pytest.raises(TypeError, match="k must be an int"):
        el.eigsh(op, 2.0)
    with pytest.raises(ValueError, match=r"which must be one of 'LA' .*got 'XX'"):
        el.eigsh(op, 2, which="XX")
    with pytest.raises(ValueError, match="tol must be a positive finite float"):
        el.eigsh(op, 2, tol=0.0)
    with pytest.raises(ValueError, match=r"max_matvecs = 3 is too small: eigsh needs at least 4 products"):
        el.eigsh(op, 4, max_matvecs=3)
    with pytest.raises(ValueError, match=r"max_matvecs = 5 is too small: eigsh needs at least 10 products"):
        el.eigsh(el.aslinearoperator(A[:10, :10], symmetric=True), 2, max_matvecs=5)
    with pytest.raises(TypeError, match="max_matvecs must be an int"):
        el.eigsh(op, 2, max_matvecs=10.5)
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        el.eigsh(op, 2, block_size=0)
    with pytest.raises(ValueError, match=r"block_size must be <= n - k = 48"):
        el.eigsh(op, 2, block_size=49)
    with pytest.raises(ValueError, match=r"ncv must be >= k \+ block_size = 3"):
        el.eigsh(op, 2, ncv=2)
    with pytest.raises(ValueError, match=r"v0 must have shape \[n\] or \[n, j\] with n = 50"):
        el.eigsh(op, 2, v0=torch.ones(49, dtype=F64))
    with pytest.raises(ValueError, match="v0 is zero"):
        el.eigsh(op, 2, v0=torch.zeros(50, dtype=F64))
    with pytest.raises(TypeError, match="v0 must be a torch.Tensor"):
        el.eigsh(op, 2, v0=np.ones(50))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("block_size", [1, 2])
def test_nonfinite_matvec_names_the_call(bad, block_size):
    # eigsh skips the operator's own pass over A P and checks the norms it computes: one bad entry must reach them
    A = prescribed(torch.linspace(1.0, 2.0, 60, dtype=F64), seed=16)
    calls = [0]

    def mm(X):
        calls[0] += 1
        Y = A @ X
        if calls[0] == 7:
            Y[13, -1] = bad
        return Y

    message = rf"product call #7 \(A @ x, {block_size} vectors\) produced NaN or Inf"
    with pytest.raises(FloatingPointError, match=message):
        el.eigsh(el.linear_operator(mm, (60, 60), symmetric=True), 2, block_size=block_size)


def test_restart_size_follows_arpack_rule():
    from eigenlens.linalg.eigsh import _restart_size

    # nev + min(nconv, (ncv - nev) / 2), minus the locked pairs; nev = 1 keeps ncv / 2
    assert _restart_size(5, 5, 0, 20) == 5
    assert _restart_size(5, 3, 2, 20) == 5
    assert _restart_size(5, 1, 4, 20) == 5
    assert _restart_size(20, 10, 10, 41) == 20
    assert _restart_size(20, 5, 15, 41) == 15
    assert _restart_size(1, 1, 0, 20) == 10


@pytest.mark.parametrize("k", [1, 5, 20])
def test_clustered_laplacian_matvecs_close_to_arpack(k):
    import scipy.sparse as sp

    n1, n2 = 40, 64
    T1 = sp.diags([-np.ones(n1 - 1), 2 * np.ones(n1), -np.ones(n1 - 1)], [-1, 0, 1])
    T2 = sp.diags([-np.ones(n2 - 1), 2 * np.ones(n2), -np.ones(n2 - 1)], [-1, 0, 1])
    L = (sp.kron(sp.identity(n2), T1) + sp.kron(T2, sp.identity(n1))).tocsr()
    res = el.eigsh(el.aslinearoperator(L, symmetric=True), k, which="LA", tol=1e-8)
    count = [0]

    def mv(x):
        count[0] += 1
        return L @ x

    v0 = np.random.default_rng(0).standard_normal(L.shape[0])
    ref = sla.eigsh(sla.LinearOperator(L.shape, matvec=mv, dtype=float), k, which="LA", tol=1e-8, v0=v0)[0]
    assert res.converged
    np.testing.assert_allclose(np.sort(res.eigenvalues.numpy()), np.sort(ref), rtol=1e-12)
    assert res.num_matvecs <= 1.1 * count[0]


# ---------------------------------------------------------------------------- host (NumPy) and torch expansion
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("b", [1, 3])
def test_expansion_same_on_numpy_views_and_tensors(complex_, b):
    # one function serves both backends: the NumPy views of host memory (CPU) and torch tensors (devices)
    from eigenlens.linalg.eigsh import _expand_orthogonalize

    n, nv, lo = 300, 12, 9
    g = torch.Generator().manual_seed(3)
    dt = torch.complex128 if complex_ else F64
    V, _ = torch.linalg.qr(torch.randn(n, nv + b, generator=g, dtype=F64).to(dt))
    # large components along old vectors (not among the recent ones) force a second (DGKS) pass
    old = V[:, :3] @ torch.randn(3, b, generator=g, dtype=F64).to(dt)
    W = torch.randn(n, b, generator=g, dtype=F64).to(dt) + 100 * old
    W0 = W.clone()
    Wt, Ct, nt = _expand_orthogonalize(V, W, lo, nv, b)
    Wn, Cn, nn_ = _expand_orthogonalize(V.numpy(), W.numpy(), lo, nv, b)
    assert torch.equal(W, W0)  # the input block is never written
    np.testing.assert_allclose(Wn, Wt.numpy(), atol=1e-13)
    np.testing.assert_allclose(Cn, Ct, atol=1e-13)
    np.testing.assert_allclose(nn_, nt, rtol=1e-13)
    # exact references: C = Vᴴ W, W⊥ = W − V C orthogonal to V, norms its column norms
    np.testing.assert_allclose(Cn, (V.mH @ W0).numpy(), atol=1e-13)
    np.testing.assert_allclose(Wn, (W0 - V @ (V.mH @ W0)).numpy(), atol=1e-13)
    assert float(torch.linalg.matrix_norm(V.mH @ torch.from_numpy(Wn))) < 1e-14
    np.testing.assert_allclose(nn_, np.linalg.norm(Wn, axis=0), rtol=1e-14)


@pytest.mark.parametrize("host", [True, False])
@pytest.mark.parametrize("complex_", [False, True])
def test_torch_and_host_paths_agree(monkeypatch, host, complex_):
    monkeypatch.setattr(EIGSH, "_HOST_NUMPY", host)
    A = random_hermitian(400, seed=12) if complex_ else prescribed(clustered(400), seed=12)
    for k, b in ((1, 1), (5, 1), (6, 3)):
        res = el.eigsh(el.aslinearoperator(A, symmetric=True), k, which="LA", tol=1e-10, block_size=b)
        ev = np.linalg.eigvalsh(A.numpy())[::-1][:k]
        assert res.converged
        np.testing.assert_allclose(res.eigenvalues.numpy(), ev, atol=1e-9 * abs(ev).max())
        Vk = res.eigenvectors
        assert float(torch.linalg.matrix_norm(Vk.mH @ Vk - torch.eye(k, dtype=Vk.dtype))) < 1e-12


@pytest.mark.parametrize("k", [1, 5, 12])
def test_skipped_checks_cost_no_products(monkeypatch, k):
    # after the first restart, Rayleigh–Ritz is skipped while the slowest wanted residual is too far above the
    # threshold to close at 8× per step; on slow (restarting) problems that must not delay the stop by a product
    spectrum = clustered(1500, m=30)
    op = el.aslinearoperator(prescribed(spectrum, seed=4), symmetric=True)
    skipping = el.eigsh(op, k, tol=1e-9)
    monkeypatch.setattr(EIGSH, "_LOG_FASTEST", float("inf"))  # never skip
    every = el.eigsh(op, k, tol=1e-9)
    assert skipping.num_restarts >= 2 and skipping.converged
    assert skipping.num_matvecs == every.num_matvecs
    np.testing.assert_allclose(skipping.eigenvalues.numpy(), spectrum[:k].numpy(), atol=1e-12)


def test_product_runs_under_the_users_numpy_error_settings():
    # eigsh silences NumPy's warnings only around its own arithmetic, never around the user's product
    A = prescribed(torch.linspace(1.0, 2.0, 80, dtype=F64), seed=5)
    seen = set()

    def mm(X):
        seen.add(np.geterr()["invalid"])
        return A @ X

    with np.errstate(invalid="raise"):
        el.eigsh(el.linear_operator(mm, (80, 80), symmetric=True), 2)
    assert seen == {"raise"}
