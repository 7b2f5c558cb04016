r"""Spectral edges and outliers: BBP transitions, eigenvector overlaps, Tracy–Widom edge tests.

Spiked covariance (Baik, Ben Arous & Péché 2005, arXiv math/0403022; Baik & Silverstein 2006, arXiv
math/0408165; Paul 2007): population covariance σ²(I + Σ (ℓ_i − 1) v_i v_iᵀ), n samples, p dimensions,
γ = p/n. A spike ℓ > 1 + √γ produces a sample eigenvalue of XᵀX/n at σ²ℓ(1 + γ/(ℓ − 1)) whose
eigenvector has squared cosine (1 − γ/(ℓ − 1)²)/(1 + γ/(ℓ − 1)) with v; below the threshold it sticks
to the edge σ²(1 + √γ)² and the overlap vanishes.

Spiked Wigner (Péché 2006; Féral & Péché 2007, arXiv math/0605624; Benaych-Georges & Nadakuditi 2011,
arXiv 0910.2120): W + θvvᵀ with W semicircular of variance σ² has an outlier at θ + σ²/θ when θ > σ,
with squared overlap 1 − σ²/θ².

Tracy–Widom: the CDFs F₁ (GOE, real data) and F₂ (GUE, complex data) are evaluated as Fredholm
determinants by Gauss–Legendre quadrature (Bornemann 2010, arXiv 0804.2543):
F₂(s) = det(I − K_Ai) on L²(s, ∞) with the Airy kernel, F₁(s) = det(I − K₁) with
K₁(x, y) = ½Ai((x + y)/2). They reproduce the published moments (TW₁ mean −1.2065, sd 1.2680;
TW₂ mean −1.7711, sd 0.9018; Tracy & Widom 1994/1996) to 4 digits (tested).

Edge test (Johnstone 2001, arXiv math/0104033, real data; El Karoui 2006, arXiv math/0503109 for the
complex case): for white Wishart data the largest eigenvalue of XᵀX (unnormalised, X n×p, σ² = 1)
satisfies (λ₁ − μ)/s → TW_β with μ = (√n' + √p)², s = (√n' + √p)(1/√n' + 1/√p)^{1/3}, n' = n − 1 for
β = 1 and n' = n for β = 2. These centerings are the finite-size calibrated ones (accurate at n, p of
a few tens). Alternatively the null is simulated exactly at the given (n, p) with the Dumitriu–Edelman
bidiagonal model (:func:`null_top_eigenvalues`, arXiv math-ph/0206043; ``calibration="simulate"``).
:func:`edge_threshold` returns the level-α cut for XᵀX/n, and :func:`count_outliers` runs
the sequential test of Kritchman & Nadler (2008): the k-th eigenvalue is tested with p − k dimensions
and the noise variance re-estimated from the remaining bulk.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eigenlens.linalg.random import resolve_generator
from eigenlens.rmt._validate import as_real_array, check_positive

__all__ = [
    "bbp_threshold",
    "bbp_outlier",
    "bbp_spike",
    "bbp_overlap",
    "wigner_outlier",
    "wigner_spike",
    "wigner_overlap",
    "tracy_widom_cdf",
    "tracy_widom_ppf",
    "edge_threshold",
    "null_top_eigenvalues",
    "count_outliers",
]


def _ratio(ratio: Any) -> float:
    return check_positive(ratio, "ratio", "pass ratio = p/n > 0 (dimensions over samples)")


def _variance(variance: Any) -> float:
    return check_positive(variance, "variance", "pass the noise variance σ² > 0, e.g. variance=1.0")


def bbp_threshold(ratio: float) -> float:
    """The BBP threshold 1 + √γ on the population spike ℓ (in units of the noise variance).

    Example:
        >>> bbp_threshold(0.25)
        1.5
    """
    return 1.0 + math.sqrt(_ratio(ratio))


def bbp_outlier(spike: float, ratio: float, variance: float = 1.0) -> float | None:
    """Limiting top sample eigenvalue of XᵀX/n for a population spike ℓ (spiked covariance, BBP 2005).

    Args:
        spike: the population covariance eigenvalue ℓ in units of ``variance`` (noise level σ²).
        ratio: γ = p/n.
        variance: the noise variance σ².

    Returns:
        σ²ℓ(1 + γ/(ℓ − 1)) when ℓ > 1 + √γ, else ``None`` (below the BBP threshold the top eigenvalue sticks
        to the edge σ²(1 + √γ)²).

    Example:
        >>> bbp_outlier(2.0, 0.25)
        2.5
        >>> bbp_outlier(1.4, 0.25) is None
        True
    """
    g, s2 = _ratio(ratio), _variance(variance)
    ell = float(spike)
    if not math.isfinite(ell):
        raise ValueError(f"spike must be finite; got {spike!r}. Fix: pass the population eigenvalue ℓ (> 0).")
    if ell <= 1.0 + math.sqrt(g):
        return None
    return s2 * ell * (1.0 + g / (ell - 1.0))


def bbp_spike(outlier: float, ratio: float, variance: float = 1.0) -> float | None:
    """Inverse of :func:`bbp_outlier`: the population spike ℓ that puts the top eigenvalue at ``outlier``.

    Solves x = ℓ + γℓ/(ℓ − 1) (x = outlier/σ²), i.e. ℓ² − (1 + x − γ)ℓ + x = 0, taking the root above
    1 + √γ. Returns ``None`` when the outlier does not exceed the edge σ²(1 + √γ)².

    Example:
        >>> round(bbp_spike(2.5, 0.25), 12)
        2.0
    """
    g, s2 = _ratio(ratio), _variance(variance)
    x = float(outlier) / s2
    if not x > (1.0 + math.sqrt(g)) ** 2:
        return None
    b = 1.0 + x - g
    return 0.5 * (b + math.sqrt(max(b * b - 4.0 * x, 0.0)))


def bbp_overlap(spike: float, ratio: float) -> float:
    """Limiting squared cosine |⟨u₁, v⟩|² between the top sample eigenvector and the population spike.

    (1 − γ/(ℓ − 1)²)/(1 + γ/(ℓ − 1)) above the threshold ℓ > 1 + √γ, 0 below (Paul 2007).

    Example:
        >>> round(bbp_overlap(2.0, 0.25), 6)
        0.6
    """
    g = _ratio(ratio)
    theta = float(spike) - 1.0
    if theta <= math.sqrt(g):
        return 0.0
    return (1.0 - g / theta**2) / (1.0 + g / theta)


def wigner_outlier(theta: float, variance: float = 1.0) -> float | None:
    """Outlier of W + θvvᵀ (W semicircular with variance σ², edge 2σ): θ + σ²/θ when θ > σ, else ``None``.

    Example:
        >>> wigner_outlier(2.0)
        2.5
    """
    s2 = _variance(variance)
    t = float(theta)
    if not t > math.sqrt(s2):
        return None
    return t + s2 / t


def wigner_spike(outlier: float, variance: float = 1.0) -> float | None:
    """Inverse of :func:`wigner_outlier`: θ = (x + √(x² − 4σ²))/2 for x > 2σ, else ``None``.

    Example:
        >>> wigner_spike(2.5)
        2.0
    """
    s2 = _variance(variance)
    x = float(outlier)
    if not x > 2.0 * math.sqrt(s2):
        return None
    return 0.5 * (x + math.sqrt(x * x - 4.0 * s2))


def wigner_overlap(theta: float, variance: float = 1.0) -> float:
    """Limiting squared cosine between the outlier eigenvector of W + θvvᵀ and v: 1 − σ²/θ² (0 if θ <= σ).

    Example:
        >>> wigner_overlap(2.0)
        0.75
    """
    s2 = _variance(variance)
    t = float(theta)
    return 0.0 if t * t <= s2 else 1.0 - s2 / (t * t)


# ---------------------------------------------------------------------------------------------------
# Tracy–Widom distributions (Bornemann's quadrature for Fredholm determinants)
# ---------------------------------------------------------------------------------------------------
def _check_beta(beta: Any) -> int:
    if beta not in (1, 2) or isinstance(beta, bool):
        raise ValueError(
            f"beta must be 1 (real data, GOE/TW₁) or 2 (complex data, GUE/TW₂); got {beta!r}. Fix: pass beta=1 or 2."
        )
    return int(beta)


@functools.lru_cache(maxsize=4)
def _gauss_legendre(m: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(m)


def _tw_cdf_scalar(s: float, beta: int, m: int = 48) -> float:
    from scipy.special import airy

    if s > 12.0:
        return 1.0
    if s < -14.0:
        return 0.0
    nodes, weights = _gauss_legendre(m)
    upper = max(s, 0.0) + 16.0  # Airy kernels decay like exp(-4/3 x^{3/2}): 16 is beyond float64 relevance
    half = 0.5 * (upper - s)
    x = s + half * (nodes + 1.0)
    w = half * weights
    sw = np.sqrt(w)
    if beta == 2:
        ai, aip, _, _ = airy(x)
        dx = x[:, None] - x[None, :]
        same = np.abs(dx) < 1e-14
        num = ai[:, None] * aip[None, :] - aip[:, None] * ai[None, :]
        kern = np.where(same, 0.0, num / np.where(same, 1.0, dx))
        diag = aip**2 - x * ai**2
        kern[np.diag_indices_from(kern)] = diag
    else:
        ai, _, _, _ = airy(0.5 * (x[:, None] + x[None, :]))
        kern = 0.5 * ai
    mat = np.eye(m) - sw[:, None] * kern * sw[None, :]
    return float(np.clip(np.linalg.det(mat), 0.0, 1.0))


def tracy_widom_cdf(s: Any, beta: int = 1) -> Any:
    """Tracy–Widom distribution function F_β(s) for β = 1 (real) or 2 (complex).

    Computed as a Fredholm determinant with 48-point Gauss–Legendre quadrature (Bornemann 2010,
    arXiv 0804.2543); absolute accuracy about 1e-12 on [−8, 8].

    Args:
        s: a float, NumPy array or tensor of points.
        beta: 1 or 2.

    Example:
        >>> round(tracy_widom_cdf(-1.2065, beta=1), 2), round(tracy_widom_cdf(0.0, beta=2), 4)
        (0.52, 0.9694)
    """
    from eigenlens.rmt._validate import apply_elementwise

    b = _check_beta(beta)
    return apply_elementwise(lambda a: np.vectorize(lambda v: _tw_cdf_scalar(float(v), b))(a).astype(np.float64), s)


#: F_β⁻¹(q) at the levels outlier tests use most, from :func:`_tw_ppf_scalar` (checked against it in the tests);
#: saves the bisection (56 Fredholm determinants, ~0.2 s) on the first fit of a session.
_TW_PPF_TABLE: dict[tuple[float, int], float] = {
    (0.9, 1): 0.450143289058, (0.95, 1): 0.97931605347, (0.975, 1): 1.453771351949,
    (0.99, 1): 2.02344928138, (0.995, 1): 2.422326585896, (0.999, 1): 3.272196059002,
    (0.9, 2): -0.596851297117, (0.95, 2): -0.232474469764, (0.975, 2): 0.091558328339,
    (0.99, 2): 0.477636047391, (0.995, 2): 0.746227081956, (0.999, 2): 1.314419480086,
}


@functools.lru_cache(maxsize=64)
def _tw_ppf_scalar(q: float, beta: int) -> float:
    lo, hi = -14.0, 12.0
    for _ in range(56):
        mid = 0.5 * (lo + hi)
        if _tw_cdf_scalar(mid, beta) >= q:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def tracy_widom_ppf(q: float, beta: int = 1) -> float:
    """Tracy–Widom quantile F_β⁻¹(q) (bisection on :func:`tracy_widom_cdf`; cached).

    Example:
        >>> round(tracy_widom_ppf(0.95, beta=1), 3), round(tracy_widom_ppf(0.95, beta=2), 3)
        (0.979, -0.232)
    """
    b = _check_beta(beta)
    qf = float(q)
    if not 0.0 < qf < 1.0:
        raise ValueError(f"q must lie strictly between 0 and 1; got {q!r}. Fix: pass a probability, e.g. 0.95.")
    tabled = _TW_PPF_TABLE.get((round(qf, 12), b))
    return tabled if tabled is not None else _tw_ppf_scalar(qf, b)


def null_top_eigenvalues(num_dims: int, num_samples: int, num_draws: int = 1000, *, beta: int = 1,
                         generator: torch.Generator | None = None) -> Tensor:
    """Exact draws of λ_max(XᵀX/n) under white noise (X n×p iid, variance 1), O(min(n, p)) per draw.

    Uses the Dumitriu–Edelman bidiagonal model (arXiv math-ph/0206043): with m = min(n, p) and N = max(n, p),
    the non-zero eigenvalues of XᵀX are those of BBᵀ, B lower bidiagonal with diagonal χ_{β(N−i)} and
    sub-diagonal χ_{β(m−1−i)} (i = 0, 1, ...), divided by β (complex entries have E|x|² = 1). The top
    eigenvalue of the tridiagonal BBᵀ is found by bisection (``scipy.linalg.eigvalsh_tridiagonal``).

    Returns:
        float64 tensor ``[num_draws]``.
    """
    from scipy.linalg import eigvalsh_tridiagonal

    b = _check_beta(beta)
    p = int(round(_count(num_dims, "num_dims")))
    n = int(round(_count(num_samples, "num_samples")))
    if isinstance(num_draws, bool) or not isinstance(num_draws, int) or num_draws < 1:
        raise ValueError(f"num_draws must be an integer >= 1; got {num_draws!r}. Fix: pass e.g. 1000.")
    g = resolve_generator(generator)
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g).item()))
    m, big = min(n, p), max(n, p)
    diag_dof = b * (big - np.arange(m))
    sub_dof = b * (m - 1 - np.arange(m - 1))
    a = np.sqrt(rng.chisquare(diag_dof, size=(num_draws, m)))
    c = np.sqrt(rng.chisquare(sub_dof, size=(num_draws, m - 1))) if m > 1 else np.zeros((num_draws, 0))
    d = a**2
    d[:, 1:] += c**2
    e = a[:, :-1] * c
    top = np.empty(num_draws)
    for i in range(num_draws):
        top[i] = eigvalsh_tridiagonal(d[i], e[i], select="i", select_range=(m - 1, m - 1))[0]
    return torch.from_numpy(top / (b * n))


@functools.lru_cache(maxsize=256)
def _simulated_cut(p: int, n: int, alpha: float, beta: int, num_null: int, seed: int) -> float:
    draws = null_top_eigenvalues(p, n, num_null, beta=beta, generator=torch.Generator().manual_seed(seed))
    return float(torch.quantile(draws, 1.0 - alpha).item())


def edge_threshold(num_dims: int, num_samples: int, *, alpha: float = 0.05, beta: int = 1,
                   variance: float = 1.0, calibration: str = "johnstone", num_null: int = 2000,
                   seed: int = 0) -> float:
    """Level-α cut for the largest eigenvalue of XᵀX/n under white noise.

    ``calibration="johnstone"`` (default, Johnstone 2001 centering): P(λ_max(XᵀX/n) > threshold) ≈ α with
    threshold = σ²(μ + s·TW_β⁻¹(1 − α))/n, μ = (√n' + √p)², s = (√n' + √p)(1/√n' + 1/√p)^{1/3},
    n' = n − 1 (β = 1) or n (β = 2). ``calibration="simulate"``: the empirical (1 − α)-quantile of
    ``num_null`` exact null draws from :func:`null_top_eigenvalues` (seeded by ``seed``; cached), exact at
    any size up to Monte Carlo error ≈ √(α(1 − α)/num_null) in probability.

    Args:
        num_dims: p (the size of the Gram matrix XᵀX).
        num_samples: n (the number of rows of X).
        alpha: false-positive level in (0, 1).
        beta: 1 for real data, 2 for complex data.
        variance: noise variance σ².
        calibration: ``"johnstone"`` or ``"simulate"``.
        num_null: null draws for ``"simulate"``.
        seed: seed of the null simulation.

    Example:
        >>> t = edge_threshold(1000, 4000)  # MP edge (1 + √0.25)² = 2.25 plus a TW margin
        >>> 2.25 < t < 2.3
        True
    """
    b = _check_beta(beta)
    a = _alpha(alpha)
    p = _count(num_dims, "num_dims")
    n = _count(num_samples, "num_samples")
    s2 = _variance(variance)
    if calibration == "simulate":
        return s2 * _simulated_cut(int(round(p)), int(round(n)), a, b, int(num_null), int(seed))
    if calibration != "johnstone":
        raise ValueError(
            f"calibration must be 'johnstone' or 'simulate'; got {calibration!r}. Fix: pass one of them."
        )
    n_eff = max(n - 1.0, 1.0) if b == 1 else float(n)
    root = math.sqrt(n_eff) + math.sqrt(p)
    mu = root**2
    scale = root * (1.0 / math.sqrt(n_eff) + 1.0 / math.sqrt(p)) ** (1.0 / 3.0)
    return s2 * (mu + scale * tracy_widom_ppf(1.0 - a, b)) / n


def _alpha(alpha: Any) -> float:
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise ValueError(
            f"alpha (false-positive level) must lie strictly between 0 and 1; got {alpha!r}. Fix: pass e.g. 0.05."
        )
    return a


def _count(value: Any, name: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and v >= 1):
        raise ValueError(f"{name} must be >= 1; got {value!r}. Fix: pass the matrix dimension.")
    return v


def count_outliers(eigenvalues: Any, ratio: float, variance: float | None = None, *, alpha: float = 0.05,
                   beta: int = 1, calibration: str = "johnstone") -> int:
    """Number of eigenvalues of XᵀX/n above the noise edge, by a sequential Tracy–Widom test at level α.

    With ``variance=None`` the noise variance is fitted from the bulk (this is
    ``fit_marchenko_pastur(...).num_outliers``); with a known σ² the k-th largest eigenvalue (k = 0, 1, ...)
    is declared an outlier while it exceeds :func:`edge_threshold` for p − k dimensions. Under pure noise
    the probability of reporting any outlier is about α (tested over 200 seeds).

    Args:
        eigenvalues: all p eigenvalues of XᵀX/n (tensor, array or sequence).
        ratio: γ = p/n.
        variance: known noise variance σ², or None to fit it.
        alpha: false-positive level.
        beta: 1 (real data) or 2 (complex data).
        calibration: ``"johnstone"`` or ``"simulate"`` (see :func:`edge_threshold`).

    Example:
        >>> count_outliers([0.5, 1.0, 1.5, 9.0], ratio=0.25, variance=1.0)
        1
    """
    if variance is None:
        from eigenlens.rmt.fits import fit_marchenko_pastur

        return fit_marchenko_pastur(eigenvalues, ratio, alpha=alpha, beta=beta, calibration=calibration).num_outliers
    x = np.sort(as_real_array(eigenvalues))[::-1]
    g, s2 = _ratio(ratio), _variance(variance)
    _alpha(alpha)
    p = x.size
    n = max(p / g, 1.0)
    k = 0
    while k < p and x[k] > edge_threshold(p - k, n, alpha=alpha, beta=beta, variance=s2, calibration=calibration):
        k += 1
    return k
