import math

import numpy as np
import pytest
import torch
from scipy import stats

from eigenlens import rmt


def G(seed):
    return torch.Generator().manual_seed(seed)


def _wishart_eigs(n, p, variance=1.0, seed=0):
    return torch.linalg.eigvalsh(rmt.wishart(n, p, variance=variance, generator=G(seed)))


# --------------------------------------------------------------------------------------------------
# Marchenko–Pastur fit
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n,p,variance", [(2000, 500, 1.0), (600, 600, 0.3), (3000, 300, 0.01), (300, 900, 2.0), (400, 500, 5.0)]
)
def test_mp_fit_recovers_variance_within_1_percent(n, p, variance):
    ev = _wishart_eigs(n, p, variance, seed=1)
    fit = rmt.fit_marchenko_pastur(ev, p / n)
    assert fit.variance == pytest.approx(variance, rel=0.01)
    assert fit.num_outliers == 0 and fit.is_noise and fit.outliers.shape == (0,)
    law = rmt.marchenko_pastur(p / n, fit.variance)
    assert fit.upper_edge == pytest.approx(law.upper_edge) and fit.lower_edge == pytest.approx(law.lower_edge)
    assert fit.ks < 5 / min(n, p)
    assert fit.num_eigenvalues == p and fit.num_samples == n
    # a 1% error in the variance would already move the edge by ~1%: the fit is much tighter than that
    assert abs(fit.upper_edge / (variance * (1 + math.sqrt(p / n)) ** 2) - 1) < 0.01


def test_mp_fit_false_positive_rate_over_200_seeds():
    # pure noise, variance fitted: the reported outlier count should be > 0 in about alpha = 5% of the seeds.
    # Binomial(200, 0.05) ∈ [2, 20] with probability > 0.999.
    flagged = sum(rmt.fit_marchenko_pastur(_wishart_eigs(120, 30, seed=s), 0.25).num_outliers > 0
                  for s in range(200))
    assert 2 <= flagged <= 20
    flagged_01 = sum(rmt.fit_marchenko_pastur(_wishart_eigs(120, 30, seed=s), 0.25, alpha=0.01).num_outliers > 0
                     for s in range(200))
    assert flagged_01 <= flagged and flagged_01 <= 8


def test_mp_fit_finds_all_planted_spikes_above_threshold():
    spikes = [3.0, 5.0, 8.0, 12.0]
    ev = torch.linalg.eigvalsh(rmt.spiked_wishart(2000, 500, spikes, variance=0.5, generator=G(2)))
    fit = rmt.fit_marchenko_pastur(ev, 0.25)
    assert fit.num_outliers == 4
    predicted = torch.tensor([rmt.bbp_outlier(s, 0.25, 0.5) for s in sorted(spikes, reverse=True)], dtype=torch.float64)
    torch.testing.assert_close(fit.outliers, predicted, rtol=0.05, atol=0)
    assert fit.variance == pytest.approx(0.5, rel=0.01)
    # the inverse map recovers the population spikes from the observed outliers
    est = [rmt.bbp_spike(x, 0.25, fit.variance) for x in fit.outliers.tolist()]
    np.testing.assert_allclose(est, sorted(spikes, reverse=True), rtol=0.1)


def test_mp_fit_low_rank_signal_in_weight_matrix():
    # W = noise + rank-3 signal; eigenvalues of WᵀW/n with ratio p/n
    n, p = 1024, 256
    g = G(3)
    W = torch.randn(n, p, generator=g, dtype=torch.float64) * 0.1
    u = torch.linalg.qr(torch.randn(n, 3, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(p, 3, generator=g, dtype=torch.float64))[0]
    W = W + u @ torch.diag(torch.tensor([8.0, 6.0, 4.0], dtype=torch.float64)) @ v.T
    ev = torch.linalg.eigvalsh(W.T @ W / n)
    fit = rmt.fit_marchenko_pastur(ev, p / n)
    assert fit.num_outliers == 3
    assert fit.variance == pytest.approx(0.01, rel=0.02)


def test_mp_fit_ratio_above_one_uses_the_atom():
    n, p = 200, 500
    ev = _wishart_eigs(n, p, 2.0, seed=4)
    fit = rmt.fit_marchenko_pastur(ev, p / n)
    assert fit.variance == pytest.approx(2.0, rel=0.01)
    assert fit.num_bulk == n and fit.num_outliers == 0
    # the same spectrum without its zeros is a clear error, with the fix in the message
    with pytest.raises(ValueError, match="zero eigenvalues, but the"):
        rmt.fit_marchenko_pastur(ev[-n:], p / n)
    dual = rmt.fit_marchenko_pastur(ev[-n:], n / p)  # the fix: the n×n dual XXᵀ/n ~ MP(n/p, (p/n)σ²)
    assert dual.variance == pytest.approx(2.0 * p / n, rel=0.01)


def test_mp_fit_is_deterministic_and_serialisable():
    ev = _wishart_eigs(600, 200, seed=5).numpy()
    a = rmt.fit_marchenko_pastur(ev, 1 / 3)
    b = rmt.fit_marchenko_pastur(list(ev[::-1]), 1 / 3)  # order and container do not matter
    assert (a.variance, a.num_outliers, a.ks, a.threshold) == (b.variance, b.num_outliers, b.ks, b.threshold)
    d = a.to_dict()
    assert set(d) >= {"variance", "lower_edge", "upper_edge", "outliers", "num_outliers", "ks", "alpha"}
    assert isinstance(d["outliers"], list)
    assert a.law.upper_edge == a.upper_edge
    assert a.pdf(1.0) == pytest.approx(rmt.marchenko_pastur(1 / 3, a.variance).pdf(1.0))
    assert a.to_pandas().shape[0] == 1


@pytest.mark.parametrize(
    "eigs,ratio,kwargs,match",
    [
        ([], 0.5, {}, "eigenvalues must be non-empty"),
        ([1.0, float("nan")], 0.5, {}, "eigenvalues must be finite"),
        ([1.0, float("inf"), 2.0], 0.5, {}, "eigenvalues must be finite"),
        ([1.0, 2.0], 0.0, {}, "ratio must be a finite number > 0"),
        ([1.0, 2.0], -1.0, {}, "ratio must be a finite number > 0"),
        ([1.0, 2.0], 0.5, {"alpha": 1.5}, "alpha .* must lie strictly between 0 and 1"),
        ([1.0, -2.0], 0.5, {}, r"eigenvalues of XᵀX/n must be >= 0"),
        ([0.0, 0.0], 0.5, {}, "eigenvalues are all zero"),
        ([[1.0, 2.0]], 0.5, {}, "eigenvalues must be 1-D"),
        ([1.0, 2.0], 0.5, {"beta": 3}, "beta must be 1"),
    ],
)
def test_mp_fit_bad_input(eigs, ratio, kwargs, match):
    with pytest.raises(ValueError, match=match):
        rmt.fit_marchenko_pastur(eigs, ratio, **kwargs)


def test_mp_fit_rejects_complex_and_non_numeric():
    with pytest.raises(TypeError, match="eigenvalues must be real"):
        rmt.fit_marchenko_pastur(torch.tensor([1 + 1j, 2.0]), 0.5)
    with pytest.raises(TypeError, match="eigenvalues must hold real numbers"):
        rmt.fit_marchenko_pastur(["a", "b"], 0.5)


# --------------------------------------------------------------------------------------------------
# power law
# --------------------------------------------------------------------------------------------------
def _pareto(n, alpha, xmin=1.0, seed=0):
    u = torch.rand(n, generator=G(seed), dtype=torch.float64)
    return xmin * (1 - u) ** (-1 / (alpha - 1))


@pytest.mark.parametrize("alpha", [2.0, 3.5])
def test_power_law_recovers_alpha_on_pareto(alpha):
    x = _pareto(1000, alpha, xmin=2.0, seed=1)
    fit = rmt.fit_power_law(x, num_bootstrap=0)
    assert abs(fit.alpha - alpha) < 3 * fit.alpha_stderr + 0.05
    assert fit.xmin >= 2.0 and fit.p_value is None
    # with x_min fixed at the truth, the MLE is the closed form 1 + n / Σ ln(x/x_min)
    fixed = rmt.fit_power_law(x, xmin=2.0, num_bootstrap=0)
    assert fixed.alpha == pytest.approx(1 + 1000 / torch.log(x / 2.0).sum().item(), rel=1e-12)
    assert fixed.num_tail == 1000


def test_power_law_finds_xmin_above_a_non_power_law_body():
    body = torch.rand(600, generator=G(2), dtype=torch.float64) * 5.0  # uniform on [0, 5]
    tail = _pareto(400, 2.5, xmin=5.0, seed=3)
    fit = rmt.fit_power_law(torch.cat([body, tail]), num_bootstrap=0)
    assert fit.xmin == pytest.approx(5.0, rel=0.3)
    assert abs(fit.alpha - 2.5) < 0.3


def test_power_law_bootstrap_p_value_is_seeded_and_discriminates():
    x = _pareto(300, 2.5, seed=4)
    a = rmt.fit_power_law(x, num_bootstrap=60, generator=G(0))
    b = rmt.fit_power_law(x, num_bootstrap=60, generator=G(0))
    c = rmt.fit_power_law(x, num_bootstrap=60)  # None = seeded 0
    assert a.p_value == b.p_value == c.p_value
    assert a.p_value > 0.1  # a true power law is plausible
    # an exponential sample is not a power law over its tail: small p-value
    e = torch.from_numpy(stats.expon.rvs(size=300, random_state=np.random.default_rng(5)))
    assert rmt.fit_power_law(e, num_bootstrap=60, min_tail=100).p_value < 0.1


def test_power_law_ks_is_exact():
    x = np.sort(_pareto(200, 3.0, seed=6).numpy())
    fit = rmt.fit_power_law(x, xmin=float(x[0]), num_bootstrap=0)
    ref = stats.kstest(x, stats.pareto(fit.alpha - 1, scale=x[0]).cdf).statistic
    assert fit.ks == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"eigenvalues": []}, "eigenvalues must be non-empty"),
        ({"eigenvalues": [1.0, float("nan")]}, "eigenvalues must be finite"),
        ({"eigenvalues": [1.0, 2.0, 3.0]}, "need at least min_tail = 10 positive values"),
        ({"eigenvalues": list(range(1, 30)), "xmin": 100.0}, "leaves 0 point"),
        ({"eigenvalues": list(range(1, 30)), "num_bootstrap": -1}, "num_bootstrap must be an integer >= 0"),
        ({"eigenvalues": list(range(1, 30)), "min_tail": 1}, "min_tail must be an integer >= 2"),
    ],
)
def test_power_law_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rmt.fit_power_law(**kwargs)


# --------------------------------------------------------------------------------------------------
# distances and summaries
# --------------------------------------------------------------------------------------------------
def test_ks_distance_matches_scipy_for_continuous_laws():
    x = stats.norm.rvs(size=500, random_state=np.random.default_rng(0))
    assert rmt.ks_distance(x, stats.norm()) == pytest.approx(stats.kstest(x, "norm").statistic, abs=1e-14)
    law = rmt.semicircle()
    y = law.sample(300, generator=G(1)).numpy()
    assert rmt.ks_distance(y, law) == pytest.approx(stats.kstest(y, law.cdf).statistic, abs=1e-14)


def test_ks_distance_with_an_atom():
    law = rmt.marchenko_pastur(2.0)  # atom 1/2 at 0
    assert rmt.ks_distance(np.zeros(5), law) == pytest.approx(0.5)
    assert rmt.ks_distance(np.full(5, -1e-14), law) == pytest.approx(0.5)  # round-off zeros are snapped
    # half zeros and half bulk quantiles: a tiny distance
    q = law.ppf(0.5 + (np.arange(500) + 0.5) / 1000)
    assert rmt.ks_distance(np.concatenate([np.zeros(500), q]), law) < 1e-3
    with pytest.raises(TypeError, match="law must be an eigenlens.rmt law"):
        rmt.ks_distance([1.0], "semicircle")


def test_stable_rank_entropy_effective_rank():
    g = G(7)
    W = torch.randn(50, 20, generator=g, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(W.T @ W)
    assert rmt.stable_rank(ev) == pytest.approx(
        (torch.linalg.matrix_norm(W) ** 2 / torch.linalg.matrix_norm(W, 2) ** 2).item(), rel=1e-12)
    p = ev / ev.sum()
    h = -(p * p.log()).sum().item()
    assert rmt.spectral_entropy(ev) == pytest.approx(h / math.log(20), rel=1e-12)
    assert rmt.effective_rank(ev) == pytest.approx(math.exp(h), rel=1e-12)
    assert rmt.spectral_entropy(np.ones(7)) == pytest.approx(1.0)
    assert rmt.effective_rank([3.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert rmt.stable_rank([2.0, 2.0, 2.0]) == 3.0
    with pytest.raises(ValueError, match="expected eigenvalues of a positive semi-definite matrix"):
        rmt.stable_rank([1.0, -1.0])
    with pytest.raises(ValueError, match="eigenvalues are all zero"):
        rmt.spectral_entropy([0.0, 0.0])
    with pytest.raises(ValueError, match="eigenvalues must be non-empty"):
        rmt.effective_rank([])


def test_linear_statistics_against_closed_forms():
    ev = _wishart_eigs(2000, 500, seed=8)
    law = rmt.marchenko_pastur(0.25)
    sq = rmt.linear_statistic(ev, lambda x: x**2, law)
    assert sq.expected_mean == pytest.approx(1.25, rel=1e-9)  # σ⁴(1 + γ)
    inv = rmt.linear_statistic(ev, lambda x: 1 / x, law)
    assert inv.expected_mean == pytest.approx(1 / (1 - 0.25), rel=1e-8)  # E 1/λ = 1/(σ²(1 − γ))
    # fluctuations of a linear statistic are O(1), not O(√N)
    assert abs(sq.value - sq.expected) < 2.0 and abs(inv.value - inv.expected) < 2.0
    atom = rmt.linear_statistic([0.0, 1.0], lambda x: x + 1, rmt.marchenko_pastur(2.0))
    assert atom.expected_mean == pytest.approx(2.0, rel=1e-9)  # E λ + 1 with the atom counted
    assert rmt.linear_statistic([1.0, 2.0], np.log).expected is None
    with pytest.raises(ValueError, match="f must be vectorised"):
        rmt.linear_statistic([1.0, 2.0], lambda x: 1.0)


def test_power_law_bootstrap_interrupt_keeps_what_was_computed(monkeypatch):
    import eigenlens.rmt.fits as fits
    from eigenlens.linalg.exceptions import NumericalWarning

    real_scan = fits._power_law_scan
    calls = {"n": 0}

    def scan(xs, min_tail, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_scan(xs, min_tail, **kw)  # the observed fit
        if calls["n"] <= 3:  # two bootstrap batches of one sample, each with a larger KS than observed
            return (np.array([2.0]), np.array([1.0]), np.array([np.inf]), np.array([10]))
        raise KeyboardInterrupt

    monkeypatch.setattr(fits, "_power_law_scan", scan)
    x = _pareto(3000, 2.5, seed=9)  # large enough that the bootstrap runs one sample per batch
    with pytest.warns(NumericalWarning, match="interrupted after 2 of 50 samples"):
        fit = rmt.fit_power_law(x, num_bootstrap=50)
    assert fit.p_value == 1.0 and fit.num_bootstrap == 2


def test_mp_fit_accepts_float32_spectra_of_float32_weights():
    g = G(11)
    W = torch.randn(1024, 256, generator=g) * 0.05  # float32 weights, variance 0.0025
    ev32 = torch.linalg.eigvalsh(W.T @ W / 1024)
    assert ev32.dtype == torch.float32
    fit = rmt.fit_marchenko_pastur(ev32, 0.25)
    assert fit.variance == pytest.approx(0.0025, rel=0.01) and fit.num_outliers == 0
    assert fit.outliers.dtype == torch.float64
    # WWᵀ/1024 = (1/4)·XᵀX/256 with X = Wᵀ (256×1024, ratio 4) ~ MP(4, σ²/4); its 768 float32 round-off
    # zeros are recognised as the atom
    big = torch.linalg.eigvalsh(W @ W.T / 1024)
    fit_big = rmt.fit_marchenko_pastur(big, 4.0)
    assert fit_big.num_bulk == 256 and fit_big.num_outliers == 0
    assert fit_big.variance == pytest.approx(0.0025 / 4, rel=0.01)
