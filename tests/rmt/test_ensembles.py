"""Each ensemble's empirical spectral distribution against its limiting law at n ≈ 1000, fixed seeds.

Bounds: eigenvalues of Hermitian ensembles are rigid, so the KS distance to the limit is O(log n / n)
(Erdős–Yau–Yin local laws), far below the iid rate 1/√n; we allow 5/n (5/p for Wishart). For
non-Hermitian ensembles the radial KS distance is dominated by the edge, which spreads over O(1/√n);
we allow 1/√n. Each test also checks that a 5% wrong law is rejected by the same bound.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from eigenlens import rmt
from eigenlens.rmt.fits import ks_distance

N = 1000


def G(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("complex_", [False, True])
def test_wigner_semicircle(complex_):
    H = rmt.wigner(N, complex=complex_, generator=G(0))
    assert H.dtype == (torch.complex128 if complex_ else torch.float64)
    assert torch.equal(H, H.mH)
    ev = torch.linalg.eigvalsh(H)
    bound = 5 / N
    assert ks_distance(ev, rmt.semicircle()) < bound
    assert ks_distance(ev, rmt.semicircle(1.05)) > bound
    assert abs(ev.max().item() - 2.0) < 0.05


@pytest.mark.parametrize("n,p", [(2000, 500), (300, 600)])
def test_wishart_marchenko_pastur(n, p):
    W = rmt.wishart(n, p, variance=0.5, generator=G(1))
    assert W.shape == (p, p) and torch.equal(W, W.T)
    ev = torch.linalg.eigvalsh(W)
    law = rmt.marchenko_pastur(p / n, 0.5)
    bound = 5 / p
    assert ks_distance(ev, law) < bound  # the p - n numerical zeros are snapped onto the atom
    assert ks_distance(ev, rmt.marchenko_pastur(p / n, 0.5 * 1.05)) > bound


def test_ginibre_singular_values_quarter_circle():
    n = 600
    sv = torch.linalg.svdvals(rmt.ginibre(n, generator=G(2)))
    assert ks_distance(sv, rmt.quarter_circle()) < 5 / n
    assert ks_distance(sv, rmt.quarter_circle(1.05)) > 5 / n


@pytest.mark.parametrize(
    "complex_,n", [(False, 500), (True, 500), pytest.param(False, 2000, marks=pytest.mark.slow),
                   pytest.param(True, 1000, marks=pytest.mark.slow)])
def test_ginibre_circular_law(complex_, n):
    X = rmt.ginibre(n, complex=complex_, generator=G(3))
    ev = np.linalg.eigvals(X.numpy())
    bound = 1 / math.sqrt(n)
    assert ks_distance(ev, rmt.circular()) < bound
    assert ks_distance(ev, rmt.circular(1.05)) > bound


@pytest.mark.parametrize(
    "profile,n", [("periodic", 1000), ("block", 500), pytest.param("periodic", 2000, marks=pytest.mark.slow),
                  pytest.param("block", 2000, marks=pytest.mark.slow)])
def test_band_matrix_circular_law_bandwidth_n_to_0_9(profile, n):
    width = n**0.9  # 501 non-zeros per row at n = 1000
    S = rmt.band_profile(n, width, profile)
    torch.testing.assert_close(S.sum(0), torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(S.sum(1), torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-12)
    nnz = (S > 0).sum(1)
    low = round(width) - 1 if profile == "periodic" else width / 2  # blocks: ceil(n/W) near-equal blocks
    assert (nnz <= round(width) + 1).all() and (nnz >= low).all()
    X = rmt.band(n, width, profile=profile, generator=G(4))
    assert torch.equal(X == 0, S == 0)  # the band structure
    ev = np.linalg.eigvals(X.numpy())
    radii = np.abs(ev)
    bound = 1 / math.sqrt(n)
    # radial CDF r² (circular law)
    assert ks_distance(ev, rmt.circular()) < bound
    assert ks_distance(ev, rmt.circular(1.05)) > bound
    assert radii.max() < 1.1


def test_band_periodic_pattern_and_full_width():
    S = rmt.band_profile(6, 3)
    expected = torch.tensor(
        [[1, 1, 0, 0, 0, 1], [1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1],
         [1, 0, 0, 0, 1, 1]], dtype=torch.float64) / 3
    torch.testing.assert_close(S, expected)
    torch.testing.assert_close(rmt.band_profile(5, 7), torch.full((5, 5), 0.2, dtype=torch.float64))
    blocks = rmt.band_profile(7, 3, "block")  # 3 blocks: sizes 3, 2, 2
    assert blocks[0, :3].tolist() == pytest.approx([1 / 3] * 3) and blocks[3, 3:5].tolist() == [0.5, 0.5]


def test_band_user_profile_and_sinkhorn():
    raw = torch.rand(50, 50, generator=G(5), dtype=torch.float64) + torch.eye(50, dtype=torch.float64)
    S = rmt.doubly_stochastic(raw)
    torch.testing.assert_close(S.sum(0), torch.ones(50, dtype=torch.float64), atol=1e-9, rtol=0)
    X = rmt.band(50, 0, profile=S, generator=G(6))
    assert X.shape == (50, 50)
    with pytest.raises(ValueError, match="profile must be doubly stochastic"):
        rmt.band(50, 0, profile=raw)
    with pytest.raises(ValueError, match=r"profile must have shape \(50, 50\)"):
        rmt.band(50, 0, profile=S[:10, :10])
    with pytest.raises(ValueError, match="profile must be 'periodic', 'block' or an n×n tensor"):
        rmt.band(50, 5, profile="diagonal")
    with pytest.raises(ValueError, match="bandwidth must be a finite number >= 1"):
        rmt.band(50, 0.0)
    with pytest.raises(ValueError, match="all-zero row or column"):
        rmt.doubly_stochastic(torch.zeros(3, 3))


def test_elliptic_ensemble():
    tau, n = 0.5, 500
    X = rmt.elliptic_ensemble(n, tau, generator=G(7))
    off = ~torch.eye(n, dtype=torch.bool)
    assert (X * X.T)[off].mean().item() * n == pytest.approx(tau, abs=0.01)
    assert (X * X)[off].mean().item() * n == pytest.approx(1.0, abs=0.01)
    ev = np.linalg.eigvals(X.numpy())
    assert ks_distance(ev, rmt.elliptic(tau)) < 1 / math.sqrt(n)
    assert ks_distance(ev, rmt.elliptic(0.35)) > 1 / math.sqrt(n)


def test_haar_orthogonal_and_unitary():
    Q = rmt.haar_orthogonal(200, generator=G(8))
    torch.testing.assert_close(Q.T @ Q, torch.eye(200, dtype=torch.float64), atol=1e-12, rtol=0)
    U = rmt.haar_unitary(200, generator=G(9))
    torch.testing.assert_close(U.mH @ U, torch.eye(200, dtype=torch.complex128), atol=1e-11, rtol=0)
    # Haar unitary eigenphases are uniform (and rigid: KS O(log n / n))
    phases = (np.angle(np.linalg.eigvals(U.numpy())) / (2 * np.pi)) % 1.0
    assert ks_distance(phases, stats.uniform()) < 5 / 200
    # Haar invariance needs the sign/phase fix of the QR: E Q_00 = 0 and E Q_00² = 1/n over many draws
    g = G(10)
    q00 = torch.tensor([rmt.haar_orthogonal(8, generator=g)[0, 0].item() for _ in range(1000)])
    assert abs(q00.mean().item()) < 3 * math.sqrt(1 / 8 / 1000)
    assert (q00**2).mean().item() == pytest.approx(1 / 8, rel=0.1)


def test_spiked_wishart_bbp_outlier_within_2_percent():
    # n = 4000, p = 1000, ℓ = 2: predicted top eigenvalue 2(1 + 0.25/1) = 2.5 (REFERENCES.md: 2.47 measured)
    C, V = rmt.spiked_wishart(4000, 1000, [2.0], generator=G(11), return_vectors=True)
    ev, vecs = torch.linalg.eigh(C)
    predicted = rmt.bbp_outlier(2.0, 0.25)
    assert predicted == 2.5
    assert abs(ev[-1].item() / predicted - 1) < 0.02
    # the second eigenvalue sticks to the MP edge 2.25
    assert abs(ev[-2].item() - 2.25) < 0.05
    overlap = (vecs[:, -1] @ V[:, 0]).item() ** 2
    assert overlap == pytest.approx(rmt.bbp_overlap(2.0, 0.25), abs=0.1)


def test_spiked_wigner_outliers_and_overlaps():
    H, V = rmt.spiked_wigner(N, [3.0, 1.5, 0.5], generator=G(12), return_vectors=True)
    torch.testing.assert_close(H, H.T)
    ev, vecs = torch.linalg.eigh(H)
    # outliers fluctuate by O(1/√n) ≈ 0.04 here; the wrong location θ would be 0.33 and 0.67 away
    assert ev[-1].item() == pytest.approx(rmt.wigner_outlier(3.0), abs=0.15)  # 3 + 1/3
    assert ev[-2].item() == pytest.approx(rmt.wigner_outlier(1.5), abs=0.15)  # 1.5 + 1/1.5
    assert rmt.wigner_outlier(0.5) is None and ev[-3].item() < 2.05  # below threshold: sticks to the edge
    assert (vecs[:, -1] @ V[:, 0]).item() ** 2 == pytest.approx(rmt.wigner_overlap(3.0), abs=0.05)
    assert (vecs[:, -2] @ V[:, 1]).item() ** 2 == pytest.approx(rmt.wigner_overlap(1.5), abs=0.1)


def test_seeding_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = rmt.wigner(50)
    b = rmt.wigner(50)
    assert torch.equal(a, b)  # None = fresh generator seeded 0
    assert not torch.equal(rmt.wigner(50, generator=G(1)), a)
    for make in (lambda: rmt.wishart(30, 10), lambda: rmt.ginibre(20, complex=True), lambda: rmt.band(40, 9),
                 lambda: rmt.spiked_wishart(30, 10, 3.0), lambda: rmt.haar_unitary(10)):
        assert torch.equal(make(), make())
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: rmt.wigner(0), "n must be an integer >= 1"),
        (lambda: rmt.wishart(10, 2.5), "p must be an integer >= 1"),
        (lambda: rmt.wishart(10, 5, variance=-1.0), "variance must be a finite number > 0"),
        (lambda: rmt.spiked_wishart(10, 5, [0.5]), r"spikes must be finite and > 1"),
        (lambda: rmt.spiked_wishart(10, 2, [2.0, 3.0, 4.0]), "at most p = 2 spikes"),
        (lambda: rmt.elliptic_ensemble(10, 1.0), "tau must lie strictly between -1 and 1"),
    ],
)
def test_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()
