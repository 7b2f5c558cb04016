import math

import numpy as np
import pytest
import torch

from eigenlens import rmt


def G(seed):
    return torch.Generator().manual_seed(seed)


def test_bbp_formulas_and_inverse():
    assert rmt.bbp_threshold(0.25) == 1.5
    assert rmt.bbp_outlier(2.0, 0.25) == 2.5
    assert rmt.bbp_outlier(2.0, 0.25, variance=2.0) == 5.0
    assert rmt.bbp_outlier(1.5, 0.25) is None  # exactly at the threshold
    assert rmt.bbp_outlier(1.2, 0.25) is None
    # continuity at the threshold: the outlier leaves the edge σ²(1+√γ)²
    assert rmt.bbp_outlier(1.5 + 1e-9, 0.25) == pytest.approx(2.25, abs=1e-6)
    for ell in (1.6, 2.0, 5.0, 40.0):
        for ratio in (0.1, 0.25, 1.0, 3.0):
            if ell <= 1 + math.sqrt(ratio):
                continue
            x = rmt.bbp_outlier(ell, ratio, variance=0.7)
            assert rmt.bbp_spike(x, ratio, variance=0.7) == pytest.approx(ell, rel=1e-12)
    assert rmt.bbp_spike(2.2, 0.25) is None
    assert rmt.bbp_overlap(2.0, 0.25) == pytest.approx((1 - 0.25) / (1 + 0.25))
    assert rmt.bbp_overlap(1.4, 0.25) == 0.0


def test_wigner_spike_formulas():
    assert rmt.wigner_outlier(2.0) == 2.5
    assert rmt.wigner_outlier(0.9) is None
    assert rmt.wigner_outlier(4.0, variance=4.0) == 5.0  # σ = 2: θ + σ²/θ
    assert rmt.wigner_spike(rmt.wigner_outlier(3.0, 2.0), 2.0) == pytest.approx(3.0)
    assert rmt.wigner_spike(1.9) is None
    assert rmt.wigner_overlap(2.0) == 0.75 and rmt.wigner_overlap(0.5) == 0.0


def test_tracy_widom_moments_and_quantiles_match_published_values():
    # Published: TW1 mean -1.2065335745820, sd 1.2680; TW2 mean -1.7710868074, sd 0.9018
    # (Tracy & Widom 1994/96; Prähofer & Spohn tables; Bornemann 2010).
    s = np.linspace(-10.0, 8.0, 361)
    for beta, mean, sd in ((1, -1.2065335746, 1.2680), (2, -1.7710868074, 0.9018)):
        F = rmt.tracy_widom_cdf(s, beta=beta)
        assert F[0] < 1e-12 and F[-1] > 1 - 1e-8 and np.all(np.diff(F) >= -1e-14)
        # moments by parts from the CDF: E X = s_hi - ∫F ds (+ lower tail), E X² likewise
        from scipy.integrate import simpson

        m1 = s[-1] - simpson(F, x=s) + s[0] * 0  # F(s_lo) ≈ 0
        m2 = s[-1] ** 2 - simpson(2 * s * F, x=s)
        assert m1 == pytest.approx(mean, abs=2e-4)
        assert math.sqrt(m2 - m1**2) == pytest.approx(sd, abs=2e-4)
    # quantiles (Bejan 2005 / Johnstone 2001 tables): TW1 0.95 -> 0.9793, 0.99 -> 2.0234; TW2 0.95 -> -0.2325
    assert rmt.tracy_widom_ppf(0.95, beta=1) == pytest.approx(0.9793, abs=5e-4)
    assert rmt.tracy_widom_ppf(0.99, beta=1) == pytest.approx(2.0234, abs=5e-4)
    assert rmt.tracy_widom_ppf(0.95, beta=2) == pytest.approx(-0.2325, abs=5e-4)
    assert rmt.tracy_widom_cdf(rmt.tracy_widom_ppf(0.3, 2), 2) == pytest.approx(0.3, abs=1e-9)
    t = rmt.tracy_widom_cdf(torch.tensor([0.0]), beta=1)
    assert isinstance(t, torch.Tensor) and t.item() == pytest.approx(0.8319, abs=1e-4)


@pytest.mark.parametrize("n,p", [(100, 25), (40, 60)])
def test_edge_test_false_positive_rate_over_200_seeds(n, p):
    # pure noise, known variance: P(any outlier) should be about alpha = 0.05; Binomial(200, 0.05) lies in
    # [2, 20] with probability > 0.999. Without the TW margin (cut at the MP edge) the rate is about
    # 1 - F_TW1(0) ≈ 0.17.
    hits = 0
    hits_no_margin = 0
    for seed in range(200):
        ev = torch.linalg.eigvalsh(rmt.wishart(n, p, generator=G(seed)))
        hits += rmt.count_outliers(ev, p / n, variance=1.0, alpha=0.05) > 0
        hits_no_margin += ev.max().item() > (1 + math.sqrt(p / n)) ** 2
    assert 2 <= hits <= 20
    assert hits_no_margin > 20


def test_edge_threshold_calibration_and_monotonicity():
    t05 = rmt.edge_threshold(1000, 4000, alpha=0.05)
    t01 = rmt.edge_threshold(1000, 4000, alpha=0.01)
    assert 2.25 < t05 < t01 < 2.32
    assert rmt.edge_threshold(1000, 4000, alpha=0.05, variance=3.0) == pytest.approx(3 * t05)
    # complex data (β = 2) have a tighter edge
    assert rmt.edge_threshold(1000, 4000, alpha=0.05, beta=2) < t05


def test_count_outliers_finds_planted_spikes():
    ev = torch.linalg.eigvalsh(rmt.spiked_wishart(2000, 400, [3.0, 5.0, 9.0], generator=G(1)))
    assert rmt.count_outliers(ev, 0.2, variance=1.0) == 3
    assert rmt.count_outliers(ev, 0.2) == 3  # variance fitted from the bulk


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: rmt.bbp_outlier(2.0, 0.0), "ratio must be a finite number > 0"),
        (lambda: rmt.bbp_outlier(2.0, 0.25, variance=-1.0), "variance must be a finite number > 0"),
        (lambda: rmt.bbp_outlier(float("nan"), 0.25), "spike must be finite"),
        (lambda: rmt.tracy_widom_cdf(0.0, beta=4), "beta must be 1"),
        (lambda: rmt.tracy_widom_ppf(1.0), "q must lie strictly between 0 and 1"),
        (lambda: rmt.edge_threshold(100, 400, alpha=0.0), "alpha .* must lie strictly between 0 and 1"),
        (lambda: rmt.count_outliers([], 0.5, variance=1.0), "eigenvalues must be non-empty"),
        (lambda: rmt.count_outliers([1.0, float("inf")], 0.5, variance=1.0), "eigenvalues must be finite"),
        (lambda: rmt.count_outliers([1.0, 2.0], -0.5, variance=1.0), "ratio must be a finite number > 0"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_complex_data_use_tw2_and_stay_calibrated():
    # complex Wishart (β = 2): the TW₂ cut holds the false-positive level; the real-data (β = 1) cut is looser
    hits2 = hits1 = 0
    for seed in range(200):
        W = rmt.wishart(100, 25, complex=True, generator=G(seed))
        assert W.dtype == torch.complex128 and torch.equal(W, W.mH)
        ev = torch.linalg.eigvalsh(W)
        hits2 += rmt.count_outliers(ev, 0.25, variance=1.0, beta=2) > 0
        hits1 += rmt.count_outliers(ev, 0.25, variance=1.0, beta=1) > 0
    assert 2 <= hits2 <= 20
    assert hits1 <= hits2
    fit = rmt.fit_marchenko_pastur(ev, 0.25, beta=2)
    assert fit.beta == 2 and fit.variance == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("n,p,beta", [(100, 25, 1), (40, 60, 1), (100, 25, 2)])
def test_null_top_eigenvalues_match_direct_simulation(n, p, beta):
    # Dumitriu–Edelman bidiagonal draws vs eigvalsh of dense Wishart matrices: means agree within 4 SE
    fast = rmt.null_top_eigenvalues(p, n, 4000, beta=beta, generator=G(0))
    direct = torch.tensor([torch.linalg.eigvalsh(rmt.wishart(n, p, complex=beta == 2, generator=G(s))).max().item()
                           for s in range(400)], dtype=torch.float64)
    se = math.sqrt(direct.var().item() / 400 + fast.var().item() / 4000)
    assert abs(fast.mean().item() - direct.mean().item()) < 4 * se
    assert fast.std().item() == pytest.approx(direct.std().item(), rel=0.15)
    # and the Johnstone cut is close to the simulated one (finite-size calibration at n, p of tens)
    t_j = rmt.edge_threshold(p, n, beta=beta)
    t_s = rmt.edge_threshold(p, n, beta=beta, calibration="simulate")
    assert t_s == pytest.approx(t_j, rel=0.03)


def test_simulated_calibration_false_positive_rate():
    flagged = 0
    for seed in range(200):
        ev = torch.linalg.eigvalsh(rmt.wishart(100, 25, generator=G(seed)))
        flagged += rmt.fit_marchenko_pastur(ev, 0.25, calibration="simulate").num_outliers > 0
    assert 2 <= flagged <= 20
    with pytest.raises(ValueError, match="calibration must be 'johnstone' or 'simulate'"):
        rmt.fit_marchenko_pastur(ev, 0.25, calibration="bootstrap")
    with pytest.raises(ValueError, match="calibration must be 'johnstone' or 'simulate'"):
        rmt.edge_threshold(25, 100, calibration="exact")


def test_tracy_widom_quantile_table_matches_the_fredholm_computation():
    from eigenlens.rmt.edges import _TW_PPF_TABLE, _tw_ppf_scalar

    for (q, beta), value in _TW_PPF_TABLE.items():
        assert abs(_tw_ppf_scalar(q, beta) - value) < 1e-10, (q, beta)
