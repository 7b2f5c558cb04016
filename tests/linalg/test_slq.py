"""Stochastic Lanczos quadrature against exact spectra (numpy.linalg.eigvalsh / prescribed eigenvalues)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import eigenlens as el
from eigenlens.linalg.slq import SpectralDensity, spectral_density


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sym_with_spectrum(lam: torch.Tensor, seed: int = 0) -> torch.Tensor:
    n = lam.numel()
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=_gen(seed), dtype=torch.float64))
    A = (U * lam) @ U.T
    return (A + A.T) / 2


@pytest.fixture(scope="module")
def bulk_outliers():
    """n = 300: a bulk on [0.1, 1] plus five outliers (the shape of a trained network's Hessian/GGN)."""
    n = 300
    lam = torch.cat([torch.linspace(0.1, 1.0, n - 5, dtype=torch.float64),
                     torch.tensor([3.0, 5.0, 8.0, 10.0, 20.0], dtype=torch.float64)])
    return _sym_with_spectrum(lam, seed=1), lam


def test_quadrature_is_exact_for_polynomials_below_2m():
    n, m, b = 60, 6, 3
    lam = torch.linspace(0.5, 1.5, n, dtype=torch.float64)
    A = _sym_with_spectrum(lam, seed=2)
    V = torch.randn(n, b, generator=_gen(1), dtype=torch.float64)
    dens = spectral_density(A, num_matvecs=m, v0=V)
    assert dens.nodes.shape == dens.weights.shape == (b, m)
    torch.testing.assert_close(dens.weights.sum(dim=1), torch.ones(b, dtype=torch.float64))
    got = dens.moments(2 * m - 1, per_probe=True)  # [b, 2m]
    U = V / V.norm(dim=0)
    Aj = U.clone()
    for j in range(2 * m):
        exact = (U * Aj).sum(dim=0)  # uᵀ A^j u
        torch.testing.assert_close(got[:, j], exact, rtol=1e-10, atol=1e-12)
        Aj = A @ Aj
    # the three-term recurrence without reorthogonalisation gives the same rule while orthogonality holds
    plain = spectral_density(A, num_matvecs=m, v0=V, reorthogonalize=False)
    torch.testing.assert_close(plain.moments(2 * m - 1, per_probe=True), got, rtol=1e-8, atol=1e-10)
    # degree 2m is NOT exact in general: the test above is not vacuous
    exact_2m = (U * Aj).sum(dim=0)
    assert float((dens.moments(2 * m, per_probe=True)[:, -1] - exact_2m).abs().max()) > 1e-8


def test_full_krylov_space_recovers_the_probe_measure():
    lam = torch.tensor([-2.0, -0.5, 0.0, 1.0, 1.0, 3.0], dtype=torch.float64)  # indefinite, repeated
    n = lam.numel()
    A = _sym_with_spectrum(lam, seed=3)
    v = torch.randn(n, 1, generator=_gen(2), dtype=torch.float64)
    dens = spectral_density(A, num_matvecs=n, v0=v)
    w_exact = (torch.linalg.eigh(A).eigenvectors.T @ (v[:, 0] / v.norm())) ** 2  # |u_jᵀ v|²
    ev = torch.linalg.eigvalsh(A)
    for x in (-1.0, 0.5, 1.0, 2.0, 5.0):
        assert float(dens.cdf(x)) == pytest.approx(float(w_exact[ev <= x + 1e-12].sum()), abs=1e-10)


def test_extreme_ritz_values_converge(bulk_outliers):
    A, lam = bulk_outliers
    dens = spectral_density(A, num_probes=4, num_matvecs=40)
    lo, hi = dens.support
    assert hi == pytest.approx(20.0, rel=1e-10)
    assert lo == pytest.approx(0.1, rel=1e-2)
    assert float(dens.nodes.max()) <= 20.0 + 1e-9 and float(dens.nodes[dens.weights > 0].min()) >= 0.1 - 1e-9


def test_wasserstein_shrinks_with_probes(bulk_outliers):
    A, lam = bulk_outliers
    ev = np.linalg.eigvalsh(A.numpy())
    np.testing.assert_allclose(np.sort(ev), lam.numpy(), atol=1e-10)
    # 192 independent probes in one batched run; densities from disjoint groups of b probes are independent
    full = spectral_density(A, num_probes=192, num_matvecs=25, generator=_gen(10))
    w_raw, w_smooth = {}, {}
    for b in (2, 32):
        raw, smooth = [], []
        for start in range(0, 192, b)[:12]:
            dens = SpectralDensity(full.nodes[start:start + b], full.weights[start:start + b], full.dim)
            raw.append(dens.wasserstein1(ev))
            smooth.append(dens.wasserstein1(ev, sigma=dens.default_sigma()))
        w_raw[b], w_smooth[b] = np.mean(raw), np.mean(smooth)
    # Monte-Carlo rate 1/√b predicts a factor 4; demand at least 2
    assert w_raw[2] / w_raw[32] > 2.0
    assert w_smooth[2] / w_smooth[32] > 2.0
    assert w_smooth[32] < 0.05  # in eigenvalue units, on a spectrum spanning [0.1, 20]


def test_wasserstein_helper_is_exact_on_atoms():
    dens = SpectralDensity(
        nodes=torch.tensor([[0.0, 1.0]], dtype=torch.float64),
        weights=torch.tensor([[0.5, 0.5]], dtype=torch.float64),
        dim=2,
    )
    assert dens.wasserstein1([0.0, 1.0]) == pytest.approx(0.0, abs=1e-15)
    assert dens.wasserstein1([0.5, 1.5]) == pytest.approx(0.5, abs=1e-12)  # shift of every atom by 0.5
    assert dens.wasserstein1([0.0, 1.0], sigma=0.01) == pytest.approx(0.01 * math.sqrt(2 / math.pi), rel=1e-3)


def test_logdet_matches_slogdet():
    n, b = 250, 16
    lam = torch.exp(torch.linspace(-3.0, 2.0, n, dtype=torch.float64))  # SPD, κ = e^5
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=_gen(4), dtype=torch.float64))
    A = (U * lam) @ U.T
    A = (A + A.T) / 2
    sign, logabsdet = torch.linalg.slogdet(A)
    assert float(sign) == 1.0
    truth = float(logabsdet)
    L = (U * lam.log()) @ U.T  # log(A): Rademacher-probe variance of n·uᵀ log(A) u is 2 Σ_{i≠j} L_ij²
    se_theory = math.sqrt(2 * (float((L**2).sum()) - float((L.diagonal() ** 2).sum())) / b)
    z = []
    full = spectral_density(A, num_probes=4 * b, num_matvecs=30, generator=_gen(0))  # 4 independent groups
    assert full.trace_function(torch.log).num_matvecs == 4 * b * 30
    for start in range(0, 4 * b, b):
        part = SpectralDensity(full.nodes[start:start + b], full.weights[start:start + b], n, b * 30)
        est = part.trace_function(torch.log)
        assert est.method == "slq" and est.num_matvecs == b * 30
        assert 0.5 * se_theory < est.stderr < 1.6 * se_theory
        z.append((est.value - truth) / est.stderr)
    assert max(abs(v) for v in z) < 3.5
    assert abs(np.mean(z)) < 2.5  # no visible quadrature bias at m = 30 (≫ √κ ≈ 12)


def test_trace_function_of_polynomial_is_hutchinson_exact():
    # with Rademacher probes (‖v‖² = n), n·vᵀAv/‖v‖² = vᵀAv, so SLQ's tr(A) is Hutchinson's estimate exactly
    A = _sym_with_spectrum(torch.linspace(-1.0, 2.0, 80, dtype=torch.float64), seed=5)
    V = el.linalg.random.rademacher(80, 5, generator=_gen(3))
    est = spectral_density(A, num_matvecs=4, v0=V).trace_function(lambda x: x)
    assert est.value == pytest.approx(float((V * (A @ V)).sum()) / 5, rel=1e-12)


def test_pdf_and_cdf_are_consistent(bulk_outliers):
    A, _ = bulk_outliers
    dens = spectral_density(A, num_probes=8, num_matvecs=30)
    sigma = dens.default_sigma()
    assert sigma > 0
    x = torch.linspace(-2.0, 22.0, 24001, dtype=torch.float64)
    p = dens.pdf(x)
    assert float(p.min()) >= 0
    assert float(torch.trapezoid(p, x)) == pytest.approx(1.0, abs=1e-6)
    F = dens.cdf(x, sigma=sigma)
    F_num = torch.cumulative_trapezoid(p, x)
    torch.testing.assert_close(F[1:], F_num + float(F[0]), atol=1e-6, rtol=0)
    step = dens.cdf(x)
    assert float(step[0]) == 0.0 and float(step[-1]) == pytest.approx(1.0, abs=1e-12)
    assert bool((step[1:] >= step[:-1]).all())
    assert dens.pdf(0.5).ndim == 0 and dens.cdf(0.5).ndim == 0


def test_one_batched_product_per_lanczos_step():
    A = _sym_with_spectrum(torch.linspace(0.0, 1.0, 100, dtype=torch.float64))
    widths = []

    def matmat(X):
        widths.append(X.shape[1])
        return A @ X

    op = el.linear_operator(matmat, (100, 100), symmetric=True)
    dens = spectral_density(op, num_probes=7, num_matvecs=12)
    assert widths == [7] * 12
    assert dens.num_matvecs == 84 == op.num_matvecs


def test_deterministic_global_rng_untouched_and_gaussian_probes():
    A = _sym_with_spectrum(torch.linspace(0.0, 1.0, 60, dtype=torch.float64))
    state = torch.get_rng_state()
    a = spectral_density(A, num_probes=3, num_matvecs=10)
    b = spectral_density(A, num_probes=3, num_matvecs=10)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a.nodes, b.nodes) and torch.equal(a.weights, b.weights)
    c = spectral_density(A, num_probes=3, num_matvecs=10, generator=_gen(9))
    assert not torch.equal(a.weights, c.weights)
    g = spectral_density(A, num_probes=64, num_matvecs=10, probes="gaussian")
    assert float(g.moments(1)[1]) == pytest.approx(float(torch.trace(A)) / 60, rel=0.05)


def test_float32_operator_and_result_roundtrip():
    lam = torch.linspace(1.0, 2.0, 50, dtype=torch.float64)
    A = _sym_with_spectrum(lam, seed=6).float()
    dens = spectral_density(A, num_probes=4, num_matvecs=20)
    assert dens.nodes.dtype == torch.float64
    assert dens.support[0] == pytest.approx(1.0, abs=1e-4) and dens.support[1] == pytest.approx(2.0, abs=1e-4)
    d = dens.to_dict()
    assert d["dim"] == 50 and len(d["nodes"]) == 4


def test_breakdown_padding_is_harmless():
    A = torch.diag(torch.tensor([1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 4.0, 4.0], dtype=torch.float64))  # 3 distinct
    dens = spectral_density(A, num_probes=3, num_matvecs=6)
    assert bool(((dens.weights > 0).sum(dim=1) <= 3).all())
    assert dens.trace_function(torch.log).value == pytest.approx(
        float(torch.log(A.diagonal()).sum()), abs=4 * dens.trace_function(torch.log).stderr + 1e-12
    )
    assert float(dens.cdf(3.0)) == pytest.approx(float(dens.weights[dens.nodes <= 3.0].sum()) / 3)


def test_plot_returns_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    A = _sym_with_spectrum(torch.linspace(0.0, 1.0, 40, dtype=torch.float64))
    dens = spectral_density(A, num_probes=2, num_matvecs=8)
    fig, ax = plt.subplots()
    assert dens.plot(ax, log=True) is ax
    assert len(ax.lines) == 1 and ax.get_yscale() == "log"
    ax2 = dens.plot()
    assert len(ax2.lines) == 1
    plt.close("all")


# ---------------------------------------------------------------------------- bad input
def test_errors():
    sym = torch.eye(20, dtype=torch.float64)
    nonsym = el.linear_operator(lambda X: X, (20, 20))
    with pytest.raises(ValueError, match=r"not tagged symmetric; tag it with el.aslinearoperator\(A, symmetric=True\)"):
        spectral_density(nonsym)
    with pytest.raises(ValueError, match=r"spectral_density needs a square operator, got shape \(20, 10\)"):
        spectral_density(torch.ones(20, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"num_probes must be >= 1 \(random probes\), got 0"):
        spectral_density(sym, num_probes=0)
    with pytest.raises(ValueError, match=r"num_matvecs must be >= 1 \(Lanczos steps per probe\), got 0"):
        spectral_density(sym, num_matvecs=0)
    with pytest.raises(TypeError, match=r"num_matvecs must be an int"):
        spectral_density(sym, num_matvecs=2.5)
    with pytest.raises(ValueError, match=r"unknown probes 'sphere'; expected one of"):
        spectral_density(sym, probes="sphere")
    with pytest.raises(ValueError, match=r"v0 must be a probe block tensor of shape \[n, b\] = \[20, b\]"):
        spectral_density(sym, v0=torch.ones(20, dtype=torch.float64))

    indefinite = torch.diag(torch.linspace(-1.0, 1.0, 20, dtype=torch.float64))
    dens = spectral_density(indefinite, num_probes=2, num_matvecs=20)
    with pytest.raises(ValueError, match=r"f returned NaN/Inf at the Ritz value .*log needs a positive definite"):
        dens.trace_function(torch.log)
    with pytest.raises(ValueError, match=r"sigma must be a finite positive smoothing width, got -1"):
        dens.pdf(0.0, sigma=-1.0)
    with pytest.raises(ValueError, match=r"k must be an int >= 0"):
        dens.moments(-1)
    with pytest.raises(ValueError, match=r"x must be a scalar or a 1-D grid"):
        dens.pdf(torch.zeros(2, 2))
