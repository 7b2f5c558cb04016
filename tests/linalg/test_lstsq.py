import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import eigenlens as el
from eigenlens.linalg.exceptions import ConvergenceWarning
from eigenlens.linalg.lstsq import LstsqResult, lstsq

F64 = torch.float64


def _problem(n, d, kappa, *, seed=0, rank=None, noise=1e-3):
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=F64)).Q
    V = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64)).Q
    s = torch.logspace(0, -np.log10(kappa), d, dtype=F64)
    if rank is not None:
        s[rank:] = 0
    A = (U * s) @ V.T
    b = A @ torch.randn(d, generator=g, dtype=F64) + noise * torch.randn(n, generator=g, dtype=F64)
    return A, b


def _true_backward_error(A, b, x):
    """Exact normwise backward error of LS (Waldén, Karlson & Sun 1995), relative to ‖A‖_F."""
    A, b, x = A.numpy(), b.numpy(), x.numpy()
    r = b - A @ x
    xn, rn = np.linalg.norm(x), np.linalg.norm(r)
    mu = rn / xn
    M = np.hstack([A, mu * (np.eye(len(b)) - np.outer(r, r) / rn**2)])
    return min(mu, np.linalg.svd(M, compute_uv=False)[-1 if M.shape[0] <= M.shape[1] else 0]) / np.linalg.norm(A)


@pytest.mark.parametrize("kappa", [1.0, 1e4, 1e8, 1e10])
def test_sketch_precondition_matches_numpy_across_condition_numbers(kappa):
    n, d = 3000, 30
    A, b = _problem(n, d, kappa, seed=1)
    res = lstsq(A, b, method="sketch_precondition")
    x_np, *_ = np.linalg.lstsq(A.numpy(), b.numpy(), rcond=None)
    r_np = np.linalg.norm(b.numpy() - A.numpy() @ x_np)
    assert isinstance(res, LstsqResult) and res.converged and res.preconditioner == "qr"
    # the residual is optimal to ~1e-12 relative (a wrong x would have a visibly larger residual)
    assert res.residual_norm <= r_np * (1 + 1e-10)
    # forward error within the LS perturbation bound κ·u + κ²·u·‖r‖/(‖A‖‖x‖), with u = 1e-15
    xn = np.linalg.norm(x_np)
    bound = 1e-14 * kappa * (1 + kappa * r_np / xn)
    assert np.linalg.norm(res.x.numpy() - x_np) / xn <= max(bound, 1e-12)
    # the certificate and the iteration count do not depend on κ
    assert res.backward_error <= 1e-12
    assert res.iterations <= 30
    assert kappa / 2 <= res.condition_estimate <= 2 * kappa
    assert 1.0 <= res.preconditioned_condition <= 3.0  # κ(A R⁻¹) for m = 10d: (1+√.1)/(1−√.1) ≈ 1.9


def test_backward_error_certificate_tracks_the_exact_one():
    n, d = 400, 8
    A, b = _problem(n, d, 1e3, seed=2, noise=0.1)
    res = lstsq(A, b, method="sketch_precondition", sketch_size=200)
    exact_x = torch.from_numpy(np.linalg.lstsq(A.numpy(), b.numpy(), rcond=None)[0])
    # perturb the solution so the backward error is far above round-off, then compare certificates
    x_bad = exact_x + 1e-6 * torch.randn(d, dtype=F64, generator=torch.Generator().manual_seed(0))
    from eigenlens.linalg.distributed import row_blocks
    from eigenlens.linalg.lstsq import _certificate

    bk = row_blocks(A)
    s = torch.linalg.svd(A, full_matrices=False)
    cert = _certificate(bk, bk.rows(b), x_bad, s.S, s.Vh.mH)["backward_error"]
    true = _true_backward_error(A, b, x_bad)
    assert true / 2 <= cert <= 2 * true  # Karlson–Waldén is within √2 of the truth (Grcar 2003)
    assert res.backward_error < 1e-13 < cert


def test_rank_deficient_auto_falls_back_to_svd_min_norm():
    A, b = _problem(2000, 20, 1e2, seed=3, rank=12)
    res = lstsq(A, b, method="sketch_precondition")
    x_np, *_ = np.linalg.lstsq(A.numpy(), b.numpy(), rcond=1e-10)  # the minimum-norm solution
    assert res.preconditioner == "svd" and res.rank == 12
    np.testing.assert_allclose(res.x.numpy(), x_np, rtol=1e-9, atol=1e-10 * np.linalg.norm(x_np))
    with pytest.raises(ValueError, match="rank deficient.*preconditioner='svd'"):
        lstsq(A, b, method="sketch_precondition", preconditioner="qr")
    res_svd = lstsq(A, b, method="sketch_precondition", preconditioner="svd")
    np.testing.assert_allclose(res_svd.x.numpy(), x_np, rtol=1e-9, atol=1e-10 * np.linalg.norm(x_np))


@pytest.mark.parametrize("kind", ["sparse_sign", "countsketch", "gaussian", "srct"])
def test_sketch_kinds_all_precondition(kind):
    A, b = _problem(2500, 15, 1e6, seed=4)
    res = lstsq(A, b, method="sketch_precondition", sketch=kind)
    x_np, *_ = np.linalg.lstsq(A.numpy(), b.numpy(), rcond=None)
    r_np = np.linalg.norm(b.numpy() - A.numpy() @ x_np)
    assert res.residual_norm <= r_np * (1 + 1e-10) and res.backward_error < 1e-12


def test_sketch_and_solve_residual_within_1_plus_eps():
    n, d, m = 4000, 10, 400
    A, b = _problem(n, d, 10.0, seed=5, noise=1.0)
    x_np, *_ = np.linalg.lstsq(A.numpy(), b.numpy(), rcond=None)
    r_np = np.linalg.norm(b.numpy() - A.numpy() @ x_np)
    res = lstsq(A, b, method="sketch_and_solve", sketch="gaussian", sketch_size=m)
    # Gaussian embedding of [A, b] (d+1 dims) with ε ≈ √((d+1)/m) + 3/√m ⇒ ‖r‖ ≤ (1+ε)/(1−ε)·‖r*‖
    eps = np.sqrt((d + 1) / m) + 3 / np.sqrt(m)
    assert r_np <= res.residual_norm <= (1 + eps) / (1 - eps) * r_np
    assert res.residual_norm > r_np * (1 + 1e-6)  # it is an approximation, not the exact solution
    assert res.iterations == 0 and res.method == "sketch_and_solve"


@pytest.mark.parametrize("method", ["kaczmarz", "sketch_and_project"])
def test_kaczmarz_methods_solve_consistent_systems(method):
    A, _ = _problem(600, 10, 5.0, seed=6)
    x_true = torch.linspace(-1, 1, 10, dtype=F64)
    b = A @ x_true
    res = lstsq(A, b, method=method, tol=1e-10)
    assert res.converged
    assert torch.linalg.vector_norm(res.x - x_true) <= 1e-8 * torch.linalg.vector_norm(x_true)


def test_kaczmarz_on_inconsistent_system_warns():
    A, b = _problem(300, 5, 2.0, seed=7, noise=1.0)
    with pytest.warns(ConvergenceWarning, match="consistent systems"):
        res = lstsq(A, b, method="kaczmarz", tol=1e-10, max_iters=600)
    assert not res.converged


def test_lsqr_budget_exhausted_warns():
    A, b = _problem(2000, 20, 1e6, seed=8)
    with pytest.warns(ConvergenceWarning, match="LSQR stopped after 2 iterations"):
        res = lstsq(A, b, method="sketch_precondition", max_iters=2)
    assert not res.converged and res.iterations == 2


def test_direct_and_auto_and_input_types():
    A, b = _problem(300, 6, 1e3, seed=9)
    x_np, *_ = np.linalg.lstsq(A.numpy(), b.numpy(), rcond=None)
    small = lstsq(A[:100], b[:100])  # n < 2·sketch_size = 120: the dense solver
    assert small.method == "direct"
    np.testing.assert_allclose(small.x.numpy(), np.linalg.lstsq(A[:100].numpy(), b[:100].numpy(), rcond=None)[0],
                               rtol=1e-10)
    assert lstsq(A, b).method == "sketch_precondition"
    res_np = lstsq(A.numpy(), b.numpy(), method="sketch_precondition")
    np.testing.assert_allclose(res_np.x.numpy(), x_np, rtol=1e-9)
    res_sp = lstsq(sp.csr_matrix(A.numpy()), b.numpy(), method="sketch_precondition")
    np.testing.assert_allclose(res_sp.x.numpy(), x_np, rtol=1e-9)
    res_op = lstsq(el.aslinearoperator(A), b, method="sketch_precondition")
    np.testing.assert_allclose(res_op.x.numpy(), x_np, rtol=1e-9)
    d = res_np.to_dict()
    assert d["method"] == "sketch_precondition" and len(d["x"]) == 6


def test_deterministic_and_global_rng_untouched():
    A, b = _problem(2000, 10, 1e3, seed=10)
    state = torch.get_rng_state()
    r1 = lstsq(A, b, method="sketch_precondition")
    r2 = lstsq(A, b, method="sketch_precondition")
    assert torch.equal(r1.x, r2.x)
    assert torch.equal(state, torch.get_rng_state())


def test_bad_inputs():
    A, b = _problem(500, 5, 10.0, seed=11)
    with pytest.raises(ValueError, match="b must be a vector of length n=500"):
        lstsq(A, b[:-1])
    with pytest.raises(ValueError, match="b must be a vector of length n=500"):
        lstsq(A, torch.stack([b, b], 1))
    bad_b = b.clone()
    bad_b[0] = float("nan")
    with pytest.raises(ValueError, match="b contains NaN"):
        lstsq(A, bad_b)
    bad_A = A.clone()
    bad_A[3, 2] = float("inf")
    with pytest.raises(ValueError, match="A has non-finite entries|A contains NaN"):
        lstsq(bad_A, b, method="sketch_precondition")
    with pytest.raises(ValueError, match="A contains NaN"):
        lstsq(bad_A, b, method="direct")
    with pytest.raises(ValueError, match="unknown method 'qr'"):
        lstsq(A, b, method="qr")
    with pytest.raises(ValueError, match="oblivious subspace embedding"):
        lstsq(A, b, sketch="uniform")
    with pytest.raises(ValueError, match="tol must be in"):
        lstsq(A, b, tol=0)
    with pytest.raises(ValueError, match="preconditioner must be"):
        lstsq(A, b, preconditioner="cholesky")
    with pytest.raises(ValueError, match="fewer rows than columns"):
        lstsq(A.T, b[:5])
    with pytest.raises(ValueError, match="sketch_size must be in"):
        lstsq(A, b, method="sketch_precondition", sketch_size=3)
    with pytest.raises(ValueError, match="A is zero"):
        lstsq(torch.zeros(100, 3, dtype=F64), torch.ones(100, dtype=F64), method="sketch_precondition")
    with pytest.raises(TypeError, match="expected a torch.Tensor"):
        lstsq("A", b)
    warnings.simplefilter("error")  # no stray warnings on a clean solve
    lstsq(A, b, method="sketch_precondition")


def test_lsqr_triangular_preconditioner_matches_explicit_inverse():
    from eigenlens.linalg.distributed import row_blocks
    from eigenlens.linalg.lstsq import lsqr

    g = torch.Generator().manual_seed(5)
    A = torch.randn(900, 8, generator=g, dtype=torch.float64) * torch.logspace(0, -5, 8, dtype=torch.float64)
    b = torch.randn(900, generator=g, dtype=torch.float64)
    R = torch.linalg.qr(A[::7]).R
    bk = row_blocks(A, block_size=256)
    y_r, info_r = lsqr(bk, bk.rows(b), R=R, tol=1e-13)
    y_p, _ = lsqr(bk, bk.rows(b), torch.linalg.inv(R), tol=1e-13)
    x_np = np.linalg.lstsq(A.numpy(), b.numpy(), rcond=None)[0]
    x_r = torch.linalg.solve_triangular(R, y_r[:, None], upper=True)[:, 0]
    np.testing.assert_allclose(x_r.numpy(), x_np, rtol=1e-8)
    torch.testing.assert_close(y_r, y_p, rtol=1e-8, atol=0)
    assert info_r["converged"]
    bb = bk.rows(b)
    before = bb.clone()
    lsqr(bk, bb, R=R)  # the right-hand side is not modified by the in-place updates
    assert torch.equal(bb, before)
    with pytest.raises(ValueError, match="not both"):
        lsqr(bk, bb, torch.linalg.inv(R), R=R)


def test_default_sketch_size_grows_for_very_tall_problems():
    from eigenlens.linalg.lstsq import _default_sketch_size

    assert _default_sketch_size(3000, 20) == 800  # n ≥ 4·d²: 40·d
    assert _default_sketch_size(1000, 20) == 200  # otherwise 10·d
    assert _default_sketch_size(300, 100) == 300  # at most n
    g = torch.Generator().manual_seed(3)
    A = torch.randn(3000, 20, generator=g, dtype=torch.float64)
    b = torch.randn(3000, generator=g, dtype=torch.float64)
    res = lstsq(A, b, method="sketch_precondition")
    assert res.sketch_size == 800 and res.converged and res.iterations <= 16
    np.testing.assert_allclose(res.x.numpy(), np.linalg.lstsq(A.numpy(), b.numpy(), rcond=None)[0], atol=1e-11)
    assert lstsq(A[:390], b[:390]).method == "direct"  # "auto" keeps its 2·10·d threshold


@pytest.mark.parametrize("kappa", [1.0, 1e8])
def test_fused_lsqr_over_blocks_and_cache_subblocks_matches_numpy(kappa, monkeypatch):
    # several row blocks, each cut into cache sub-blocks (320 rows at d = 100): the one-pass LSQR step
    import eigenlens.linalg.distributed as dist_mod
    from eigenlens.linalg.distributed import fused_subblock_rows

    monkeypatch.setattr(dist_mod, "FUSED_SUBBLOCK_BYTES", 2**18)
    n, d = 6000, 100
    assert fused_subblock_rows(d, 8) < 1024
    A, b = _problem(n, d, kappa, seed=4, noise=1e-2)
    res = lstsq(A, b, method="sketch_precondition", block_size=1024)
    x_np, *_ = np.linalg.lstsq(A.numpy(), b.numpy(), rcond=None)
    xn = np.linalg.norm(x_np)
    r_np = np.linalg.norm(b.numpy() - A.numpy() @ x_np)
    assert res.converged and res.iterations <= 30
    assert res.residual_norm <= r_np * (1 + 1e-10)
    bound = 1e-14 * kappa * (1 + kappa * r_np / xn)
    assert np.linalg.norm(res.x.numpy() - x_np) / xn <= max(bound, 1e-12)
    assert res.backward_error <= 1e-12
    # the certificate's one-pass residual equals the direct one (to the rounding of b − A x: ‖A‖‖x‖u/‖r‖)
    r_direct = float(torch.linalg.vector_norm(b - A @ res.x))
    scale = float(torch.linalg.matrix_norm(A, 2) * torch.linalg.vector_norm(res.x)) / r_direct
    np.testing.assert_allclose(res.residual_norm, r_direct, rtol=1e-14 * max(1.0, scale))
