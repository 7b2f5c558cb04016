import math

import numpy as np
import pytest
import torch
from scipy import integrate

from eigenlens import rmt
from eigenlens.rmt.fits import ks_distance

REAL_LAWS = [
    pytest.param(rmt.semicircle(1.0), id="semicircle-1"),
    pytest.param(rmt.semicircle(0.3), id="semicircle-0.3"),
    pytest.param(rmt.marchenko_pastur(0.25), id="mp-0.25"),
    pytest.param(rmt.marchenko_pastur(1.0, 2.0), id="mp-1"),
    pytest.param(rmt.marchenko_pastur(0.7, 0.5), id="mp-0.7"),
    pytest.param(rmt.marchenko_pastur(2.0, 1.5), id="mp-2"),
    pytest.param(rmt.marchenko_pastur(5.0), id="mp-5"),
    pytest.param(rmt.quarter_circle(1.0), id="quarter-1"),
    pytest.param(rmt.quarter_circle(2.5), id="quarter-2.5"),
]


def _cont_range(law):
    lo, hi = law.support
    return getattr(law, "lower_edge", lo), hi


def _quad(f, a, b):
    return integrate.quad(f, a, b, limit=400, epsabs=1e-13, epsrel=1e-12)[0]


@pytest.mark.parametrize("law", REAL_LAWS)
def test_pdf_integrates_to_one_minus_atoms(law):
    a, b = _cont_range(law)
    atom = sum(m for _, m in law.atoms)
    assert _quad(law.pdf, a, b) == pytest.approx(1.0 - atom, abs=1e-9)
    # nothing outside the support
    lo, hi = law.support
    assert law.pdf(hi + 1e-9) == 0.0 and law.pdf(lo - 1.0) == 0.0


@pytest.mark.parametrize("law", REAL_LAWS)
def test_cdf_matches_integral_of_pdf(law):
    a, b = _cont_range(law)
    atom = sum(m for _, m in law.atoms)
    for x in np.linspace(a, b, 9)[1:-1]:
        assert law.cdf(x) == pytest.approx(atom + _quad(law.pdf, a, x), abs=1e-10)
    assert law.cdf(law.support[0] - 1.0) == 0.0
    assert law.cdf(b) == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("law", REAL_LAWS)
def test_moments_match_integrals(law):
    a, b = _cont_range(law)
    for k in range(1, 6):
        expected = _quad(lambda t, k=k: t**k * law.pdf(t), a, b)
        assert law.moment(k) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert law.moment(0) == 1.0
    assert law.var == pytest.approx(law.moment(2) - law.moment(1) ** 2)


@pytest.mark.parametrize("ratio,variance", [(0.25, 1.0), (1.0, 0.5), (3.0, 2.0)])
def test_marchenko_pastur_closed_forms(ratio, variance):
    law = rmt.marchenko_pastur(ratio, variance)
    assert law.mean == pytest.approx(variance)
    assert law.moment(2) == pytest.approx(variance**2 * (1 + ratio))
    assert law.var == pytest.approx(variance**2 * ratio)
    assert law.upper_edge == pytest.approx(variance * (1 + math.sqrt(ratio)) ** 2)
    assert law.lower_edge == pytest.approx(variance * (1 - math.sqrt(ratio)) ** 2)
    atom = max(0.0, 1 - 1 / ratio)
    assert law.atom_mass == pytest.approx(atom)
    assert law.cdf(0.0) == pytest.approx(atom, abs=1e-15)
    assert law.cdf_left(0.0) == 0.0
    assert law.cdf(-1e-12) == 0.0


def test_semicircle_catalan_moments_and_cdf():
    law = rmt.semicircle(2.0)
    catalan = [1, 1, 2, 5, 14, 42]
    for k, c in enumerate(catalan):
        assert law.moment(2 * k) == pytest.approx(c * 2.0**k)
        assert law.moment(2 * k + 1) == 0.0
    assert law.support == pytest.approx((-2 * math.sqrt(2), 2 * math.sqrt(2)))
    assert law.cdf(0.0) == pytest.approx(0.5)
    # F(x) + F(-x) = 1 (symmetry)
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(law.cdf(x) + law.cdf(-x), 1.0, atol=1e-15)


def test_quarter_circle_closed_forms():
    law = rmt.quarter_circle(4.0)  # σ = 2
    assert law.mean == pytest.approx(8 * 2.0 / (3 * math.pi))
    assert law.moment(2) == pytest.approx(4.0)
    assert law.moment(4) == pytest.approx(2 * 4.0**2)  # Catalan C_2 σ⁴


@pytest.mark.parametrize("law", REAL_LAWS)
def test_ppf_inverts_cdf(law):
    a, b = _cont_range(law)
    x = np.linspace(a, b, 11)[1:-1]
    np.testing.assert_allclose(law.ppf(law.cdf(x)), x, atol=1e-9 * max(1.0, b))


def test_sample_follows_law_and_is_seeded():
    law = rmt.marchenko_pastur(2.0)
    s1 = law.sample(20_000, generator=torch.Generator().manual_seed(3))
    s2 = law.sample(20_000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2) and s1.dtype == torch.float64
    assert torch.equal(law.sample(10), law.sample(10))  # None = seeded 0
    # iid draws: KS below the 1% critical value 1.63/√n; the atom is sampled exactly at 0
    assert ks_distance(s1, law) < 1.63 / math.sqrt(20_000)
    assert (s1 == 0).double().mean().item() == pytest.approx(0.5, abs=0.02)
    assert ks_distance(s1, rmt.marchenko_pastur(2.0, 1.05)) > 1.63 / math.sqrt(20_000)


def test_type_preservation():
    law = rmt.semicircle()
    assert isinstance(law.cdf(0.5), float)
    out = law.pdf(np.array([0.0, 1.0]))
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    t = law.cdf(torch.tensor([0.0, 1.0], dtype=torch.float32))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    t64 = law.pdf(torch.tensor([[0.0, 1.0]], dtype=torch.float64, requires_grad=True))
    assert t64.dtype == torch.float64 and t64.shape == (1, 2) and not t64.requires_grad
    assert law.cdf(torch.tensor([0, 1])).dtype == torch.float64  # integer tensors become float64
    assert law.pdf([0.0])[0] == pytest.approx(1 / math.pi)


def test_circular_law():
    law = rmt.circular(2.0)
    assert law.radial_cdf(1.0) == pytest.approx(0.25)
    assert law.radial_cdf(3.0) == 1.0
    z = torch.tensor([1.0 + 1.0j, 2.0 + 0.1j, -1.9j])
    assert law.contains(z).tolist() == [True, False, True]
    assert law.pdf(0j) == pytest.approx(1 / (4 * math.pi))
    assert law.abs_moment(2) == pytest.approx(2.0)  # E|z|² = R²/2
    pts = law.sample(20_000, generator=torch.Generator().manual_seed(1))
    assert pts.dtype == torch.complex128
    assert (pts.abs() ** 2).mean().item() == pytest.approx(2.0, rel=0.03)
    assert ks_distance(pts, law) < 1.63 / math.sqrt(20_000)
    assert ks_distance(pts, rmt.circular(2.1)) > 1.63 / math.sqrt(20_000)


def test_elliptic_law():
    law = rmt.elliptic(0.5)
    assert law.semi_axes == (1.5, 0.5)
    assert law.contains([1.49, 0.49j, 1.2 + 0.4j]).tolist() == [True, True, False]
    pts = law.sample(20_000, generator=torch.Generator().manual_seed(2))
    assert (pts**2).mean().real.item() == pytest.approx(0.5, abs=0.02)  # E z² = τ
    assert (pts.abs() ** 2).mean().item() == pytest.approx((1 + 0.25) / 2, rel=0.03)
    assert law.pdf(0j) == pytest.approx(1 / (math.pi * 0.75))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: rmt.marchenko_pastur(0.0), "ratio must be a finite number > 0"),
        (lambda: rmt.marchenko_pastur(-1.0), "ratio must be a finite number > 0"),
        (lambda: rmt.marchenko_pastur(0.5, variance=-1.0), "variance must be a finite number > 0"),
        (lambda: rmt.semicircle(-2.0), "variance must be a finite number > 0"),
        (lambda: rmt.quarter_circle(float("nan")), "variance must be a finite number > 0"),
        (lambda: rmt.circular(0.0), "radius must be a finite number > 0"),
        (lambda: rmt.elliptic(1.0), "tau must lie strictly between -1 and 1"),
        (lambda: rmt.semicircle().moment(-1), "moment order k must be an integer >= 0"),
        (lambda: rmt.semicircle().ppf(1.5), r"ppf needs probabilities q in \[0, 1\]"),
        (lambda: rmt.semicircle().sample(-3), "num must be an integer >= 0"),
    ],
)
def test_bad_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_complex_input_to_real_law_is_rejected():
    with pytest.raises(TypeError, match="this law lives on the real line"):
        rmt.semicircle().cdf(np.array([1 + 1j]))
    with pytest.raises(TypeError, match="ratio must be a real number"):
        rmt.marchenko_pastur("a lot")
