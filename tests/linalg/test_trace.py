"""Trace and diagonal estimators against exact dense float64 references.

Rates are checked on spectra where theory predicts them: Hutchinson's error is ``‖A‖_F-ish/√m``
(exactly ``√(2 Σ_{i≠j} A_ij² / m)`` RMS for Rademacher probes), Hutch++/XTrace's is ``~1/m`` on the
spectrum ``λ_i = 1/i`` (the deflated tail has Frobenius norm ``~ k^{-1/2}``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import eigenlens as el
from eigenlens.linalg.trace import diagonal, trace

SEEDS = range(24)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sym_with_spectrum(lam: torch.Tensor, seed: int = 0) -> torch.Tensor:
    n = lam.numel()
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=_gen(seed), dtype=torch.float64))
    A = (U * lam) @ U.T
    return (A + A.T) / 2


@pytest.fixture(scope="module")
def decay_matrix() -> torch.Tensor:
    """n = 600, λ_i = 1/i (PSD, slow-ish decay where Hutch++ beats Hutchinson by a factor √m)."""
    return _sym_with_spectrum(1.0 / torch.arange(1, 601, dtype=torch.float64), seed=1)


def _rms_error(A, m, method, seeds=SEEDS):
    truth = float(torch.trace(A))
    errs = [trace(A, m, method=method, generator=_gen(s)).value - truth for s in seeds]
    return math.sqrt(float(np.mean(np.square(errs))))


# ---------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("method,m", [("hutch++", 18), ("xtrace", 14)])
def test_exact_when_rank_below_sketch(method, m):
    n, r = 300, 5  # hutch++: sketch of 6 > 5; xtrace: leave-one-out sketches of 6 > 5
    B = torch.randn(n, r, generator=_gen(3), dtype=torch.float64)
    psd = B @ B.T
    nonsym = B @ torch.randn(r, n, generator=_gen(4), dtype=torch.float64)  # range(A) = range(B), any square A
    for A in (psd, nonsym):
        est = trace(A, m, method=method, generator=_gen(0))
        truth = float(torch.trace(A))
        assert est.value == pytest.approx(truth, rel=1e-10, abs=1e-9)
        assert est.stderr <= 1e-8 * abs(truth) + 1e-9
        assert est.num_matvecs == m


def test_diagpp_exact_for_symmetric_low_rank():
    B = torch.randn(200, 4, generator=_gen(5), dtype=torch.float64)
    A = B @ B.T
    est = diagonal(A, 15, method="diag++")
    torch.testing.assert_close(est.values, A.diagonal(), rtol=1e-10, atol=1e-10)
    assert float(est.stderr.max()) < 1e-9


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace"])
def test_budget_at_least_n_is_exact(method):
    A = torch.randn(10, 10, generator=_gen(0), dtype=torch.float64)
    est = trace(A, 10, method=method)
    assert est.method == "exact" and est.stderr == 0.0 and est.num_matvecs == 10
    assert est.value == pytest.approx(float(torch.trace(A)), rel=1e-13)
    d = diagonal(A, 12)
    torch.testing.assert_close(d.values, A.diagonal())
    assert d.method == "exact" and d.num_matvecs == 10


# ---------------------------------------------------------------------------- rates
def test_hutchinson_error_matches_theory_and_rate():
    A = _sym_with_spectrum(torch.linspace(-1.0, 2.0, 400, dtype=torch.float64), seed=2)
    off = 2 * (float((A**2).sum()) - float((A.diagonal() ** 2).sum()))  # Var of ωᵀAω, Rademacher
    rms = {}
    for m in (8, 128):
        rms[m] = _rms_error(A, m, "hutchinson", seeds=range(48))
        # the observed RMS error over 48 draws is within ±35% of the exact sqrt(Var/m)
        assert rms[m] == pytest.approx(math.sqrt(off / m), rel=0.35)
    ratio = rms[8] / rms[128]
    assert 2.6 < ratio < 6.0  # 1/√m rate: 4; a 1/m rate would give 16


@pytest.mark.parametrize("method", ["hutch++", "xtrace"])
def test_deflated_estimators_reach_one_over_m(method, decay_matrix):
    small, large = (15, 150) if method == "hutch++" else (16, 160)
    e_small = _rms_error(decay_matrix, small, method)
    e_large = _rms_error(decay_matrix, large, method)
    # 1/m predicts a ratio of 10; Hutchinson's 1/√m would give 3.2
    assert e_small / e_large > 6.0
    # and far more accurate than Hutchinson at the same budget
    assert e_large < 0.2 * _rms_error(decay_matrix, large, "hutchinson")
    # within 2x of Hutchinson's error on the optimally deflated tail, √(2 Σ_{i>k} λ_i² / l)
    lam = 1.0 / torch.arange(1, 601, dtype=torch.float64)
    k, l = (large // 3, large - 2 * (large // 3)) if method == "hutch++" else (large // 2, large // 2)
    assert e_large < 2 * math.sqrt(2 * float((lam[k:] ** 2).sum()) / l)


# ---------------------------------------------------------------------------- calibration / unbiasedness
@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace"])
def test_stderr_is_calibrated(method, decay_matrix):
    truth = float(torch.trace(decay_matrix))
    z = []
    for s in range(40):
        est = trace(decay_matrix, 60, method=method, generator=_gen(100 + s))
        assert 0 < est.stderr < math.inf
        z.append((est.value - truth) / est.stderr)
    z = np.asarray(z)
    assert np.mean(np.abs(z) < 3) >= 0.85  # the truth lies within 3 stderr in nearly every draw
    assert 0.4 < math.sqrt(np.mean(z**2)) < 2.0  # and the stderr is not a vacuous overestimate


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace"])
def test_unbiased_for_nonsymmetric(method):
    n = 200
    A = torch.randn(n, n, generator=_gen(7), dtype=torch.float64) + 5 * torch.eye(n, dtype=torch.float64)
    A[:, :3] += 20 * torch.randn(n, 3, generator=_gen(8), dtype=torch.float64)
    truth = float(torch.trace(A))
    vals = np.array([trace(A, 30, method=method, generator=_gen(s)).value for s in range(40)])
    se_of_mean = vals.std(ddof=1) / math.sqrt(len(vals))
    assert abs(vals.mean() - truth) < 4 * se_of_mean
    assert se_of_mean > 0


def test_diagonal_hutchinson_error_and_stderr():
    n, m = 300, 40
    A = torch.randn(n, n, generator=_gen(9), dtype=torch.float64)  # not symmetric
    est = diagonal(A, m, generator=_gen(1))
    var = (A**2).sum(dim=1) - A.diagonal() ** 2  # exact per-entry variance of ω_j (Aω)_j
    err = est.values - A.diagonal()
    # RMS over entries matches the exact per-entry error to 15%
    assert float(err.pow(2).mean().sqrt()) == pytest.approx(float((var / m).mean().sqrt()), rel=0.15)
    # the per-entry stderr tracks the exact one and covers the truth
    assert float((est.stderr / (var / m).sqrt()).median()) == pytest.approx(1.0, abs=0.15)
    assert float(((err.abs() < 3 * est.stderr).double()).mean()) >= 0.97


def test_diagpp_beats_hutchinson_on_decay(decay_matrix):
    truth = decay_matrix.diagonal()
    e_h = float((diagonal(decay_matrix, 90, method="hutchinson").values - truth).norm())
    dpp = diagonal(decay_matrix, 90, method="diag++")
    e_pp = float((dpp.values - truth).norm())
    assert e_pp < 0.5 * e_h
    assert float(((dpp.values - truth).abs() < 4 * dpp.stderr).double().mean()) >= 0.95


def test_diagpp_unbiased_for_nonsymmetric():
    n = 120
    A = torch.randn(n, n, generator=_gen(11), dtype=torch.float64)
    vals = torch.stack([diagonal(A, 24, method="diag++", generator=_gen(s)).values for s in range(40)])
    se = vals.std(dim=0) / math.sqrt(40)
    z = (vals.mean(dim=0) - A.diagonal()) / se
    assert float((z.abs() < 3.5).double().mean()) >= 0.97


# ---------------------------------------------------------------------------- batching, randomness, dtypes
@pytest.mark.parametrize(
    "fn,method,m,calls",
    [
        (trace, "hutchinson", 30, 1),
        (trace, "hutch++", 30, 2),
        (trace, "xtrace", 30, 2),
        (diagonal, "hutchinson", 30, 1),
        (diagonal, "diag++", 30, 2),
    ],
)
def test_one_batched_call_per_stage(fn, method, m, calls):
    A = _sym_with_spectrum(torch.linspace(0.0, 1.0, 80, dtype=torch.float64))
    widths = []

    def matmat(X):
        widths.append(X.shape[1])
        return A @ X

    op = el.linear_operator(matmat, (80, 80), symmetric=True)
    est = fn(op, m, method=method)
    assert len(widths) == calls
    assert sum(widths) == m == est.num_matvecs == op.num_matvecs


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace"])
def test_deterministic_and_global_rng_untouched(method):
    A = torch.randn(50, 50, generator=_gen(0), dtype=torch.float64)
    state = torch.get_rng_state()
    a = trace(A, 20, method=method)
    b = trace(A, 20, method=method)
    assert torch.equal(state, torch.get_rng_state())
    assert a == b
    c = trace(A, 20, method=method, generator=_gen(5))
    assert c.value != a.value
    d1 = diagonal(A, 20)
    d2 = diagonal(A, 20)
    assert torch.equal(d1.values, d2.values)


def test_float32_operator():
    A = _sym_with_spectrum(1.0 / torch.arange(1, 301, dtype=torch.float64), seed=4)
    est = trace(A.float(), 60, method="hutch++")
    assert isinstance(est.value, float)
    assert abs(est.value - float(torch.trace(A))) < 4 * est.stderr + 1e-4


def test_complex_hermitian_low_rank_exact():
    n, r = 100, 3
    B = torch.randn(n, r, generator=_gen(2), dtype=torch.complex128)
    A = B @ B.mH
    for method, m in (("hutch++", 12), ("xtrace", 10)):
        est = trace(A, m, method=method)
        assert est.value == pytest.approx(complex(torch.trace(A)), rel=1e-10)
    d = diagonal(A, 12, method="diag++")
    torch.testing.assert_close(d.values, A.diagonal(), rtol=1e-10, atol=1e-10)


def test_result_serialises():
    A = torch.randn(20, 20, generator=_gen(0), dtype=torch.float64)
    out = trace(A, 9).to_dict()
    assert set(out) == {"value", "stderr", "num_matvecs", "method"}
    d = diagonal(A, 9).to_dict()
    assert len(d["values"]) == 20


# ---------------------------------------------------------------------------- bad input
def test_errors():
    sq = torch.eye(30, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"needs a square operator, got shape \(30, 20\)"):
        trace(torch.ones(30, 20, dtype=torch.float64), 10)
    with pytest.raises(ValueError, match=r"needs a square operator"):
        diagonal(torch.ones(30, 20, dtype=torch.float64), 10)
    with pytest.raises(ValueError, match=r"unknown method 'hutch'; expected one of"):
        trace(sq, 10, method="hutch")
    with pytest.raises(ValueError, match=r"unknown method 'xtrace'"):
        diagonal(sq, 10, method="xtrace")
    with pytest.raises(ValueError, match=r"method='hutch\+\+'\) needs num_matvecs >= 3 .*got 2"):
        trace(sq, 2, method="hutch++")
    with pytest.raises(ValueError, match=r"method='hutchinson'\) needs num_matvecs >= 2 .*got 1"):
        trace(sq, 1, method="hutchinson")
    with pytest.raises(ValueError, match=r"method='xtrace'\) needs num_matvecs >= 2"):
        trace(sq, 0, method="xtrace")
    with pytest.raises(ValueError, match=r"needs an even num_matvecs .* got 11; use 10 or 12"):
        trace(sq, 11, method="xtrace")
    with pytest.raises(ValueError, match=r"method='diag\+\+'\) needs num_matvecs >= 3"):
        diagonal(sq, 2, method="diag++")
    with pytest.raises(TypeError, match=r"num_matvecs must be an int, got float"):
        trace(sq, 10.0)


def test_nan_product_is_reported():
    def bad(X):
        return X * float("nan")

    op = el.linear_operator(bad, (40, 40))
    with pytest.raises(FloatingPointError, match="NaN or Inf"):
        trace(op, 10)
