r"""Fitting spectra to random-matrix laws: Marchenko–Pastur with outliers, power-law tails, distances.

* :func:`fit_marchenko_pastur` — noise variance from the bulk, MP edges, Tracy–Widom-calibrated outliers
  at a stated false-positive level, KS distance of the bulk. Deterministic, O(p log p), closed-form CDF.
* :func:`fit_power_law` — Clauset, Shalizi & Newman (2009, arXiv 0706.1062): continuous MLE at every
  candidate x_min, x_min by minimal KS distance, semi-parametric bootstrap p-value (seeded, vectorised).
* :func:`ks_distance`, :func:`stable_rank`, :func:`spectral_entropy`, :func:`effective_rank`,
  :func:`linear_statistic`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eigenlens._result import Result
from eigenlens.linalg.random import resolve_generator
from eigenlens.rmt._validate import as_real_array, check_positive
from eigenlens.rmt.edges import _alpha, _check_beta, edge_threshold
from eigenlens.rmt.laws import Law, MarchenkoPastur, PlaneLaw

__all__ = [
    "MPFit",
    "PowerLawFit",
    "LinearStatistic",
    "fit_marchenko_pastur",
    "fit_power_law",
    "ks_distance",
    "stable_rank",
    "spectral_entropy",
    "effective_rank",
    "linear_statistic",
]

# eigenvalues of a Gram matrix below -_NEG_TOL * max|λ| are an error; above, they are round-off and clipped
_NEG_TOL = 1e-6
# with ratio > 1, the p - n smallest eigenvalues must be zeros up to this relative tolerance
_ZERO_TOL = 1e-5


# ---------------------------------------------------------------------------------------------------
# distances
# ---------------------------------------------------------------------------------------------------
def ks_distance(samples: Any, law: Any, *, atol: float | None = None) -> float:
    """Kolmogorov–Smirnov distance sup_x |F_n(x) − F(x)| between the empirical law of ``samples`` and ``law``.

    For a real-line :class:`~eigenlens.rmt.laws.Law` (or any object with a vectorised ``cdf``, e.g. a frozen
    ``scipy.stats`` distribution) the exact supremum is computed from the order statistics, atoms included:
    D = max_i max(i/n − F(x_(i)), F(x_(i)−) − (i − 1)/n). Samples within ``atol`` of an atom are snapped to
    it (numerical zeros of a rank-deficient Gram matrix), ``atol`` defaulting to 1e-8·max|x|. For a plane law
    (:class:`~eigenlens.rmt.laws.Circular`, :class:`~eigenlens.rmt.laws.Elliptic`) the complex samples are
    compared through their radius: sup_r |P_n(radius <= r) − law.radial_cdf(r)|.

    Args:
        samples: ``[n]`` real (or complex for plane laws) tensor, array or sequence; non-empty, finite.
        law: the reference law.
        atol: snapping tolerance for atoms.

    Returns:
        D in [0, 1].

    Example:
        >>> from eigenlens.rmt.laws import semicircle
        >>> ks_distance([0.0], semicircle())
        0.5
    """
    if isinstance(law, PlaneLaw):
        from eigenlens.rmt.laws import _as_points

        z = _as_points(samples)
        if z.size == 0:
            raise ValueError("samples must be non-empty; got an empty array. Fix: pass at least one point.")
        x = np.sort(law._radius_of(z))
        n = x.size
        f = np.clip(law._radial_cdf(x), 0.0, 1.0)
        i = np.arange(1, n + 1)
        return float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))
    if not hasattr(law, "cdf"):
        raise TypeError(
            f"law must be an eigenlens.rmt law (semicircle(), marchenko_pastur(...), ...) or have a .cdf method; "
            f"got {type(law).__name__}. Fix: pass e.g. eigenlens.rmt.marchenko_pastur(ratio)."
        )
    x = np.sort(as_real_array(samples, "samples"))
    n = x.size
    atoms = tuple(getattr(law, "atoms", ()))
    if atoms:
        tol = 1e-8 * max(1.0, float(np.max(np.abs(x)))) if atol is None else float(atol)
        for loc, _ in atoms:
            x = np.where(np.abs(x - loc) <= tol, loc, x)
        x = np.sort(x)
    f = np.asarray(law.cdf(x), dtype=np.float64)
    f_left = np.asarray(law.cdf_left(x), dtype=np.float64) if hasattr(law, "cdf_left") else f
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - f), np.max(f_left - (i - 1) / n), 0.0))


# ---------------------------------------------------------------------------------------------------
# Marchenko–Pastur fit
# ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MPFit(Result):
    """A Marchenko–Pastur fit of the eigenvalues of XᵀX/n (X n×p), with Tracy–Widom outliers.

    Attributes:
        variance: fitted noise variance σ² (from the bulk).
        lower_edge: σ²(1 − √γ)².
        upper_edge: σ²(1 + √γ)² (the MP bulk edge).
        outliers: eigenvalues declared outliers (above the level-α edge test), float64 ``[k]``, descending.
        num_outliers: k.
        ks: KS distance between the bulk (non-outlier, non-zero-atom) eigenvalues and the fitted law.
        ratio: γ = p/n as given.
        alpha: the false-positive level of the outlier test: under pure noise, P(num_outliers > 0) ≈ alpha.
        threshold: the last cut applied (eigenvalues above it were outliers; the largest bulk eigenvalue is
            below it).
        num_eigenvalues: p, the number of eigenvalues given.
        num_samples: n = p/γ (rounded).
        num_bulk: eigenvalues used for the variance and the KS distance.
        beta: 1 (real data) or 2 (complex data).
    """

    variance: float
    lower_edge: float
    upper_edge: float
    outliers: Tensor
    num_outliers: int
    ks: float
    ratio: float
    alpha: float
    threshold: float
    num_eigenvalues: int
    num_samples: int
    num_bulk: int
    beta: int = 1

    @property
    def law(self) -> MarchenkoPastur:
        """The fitted :class:`~eigenlens.rmt.laws.MarchenkoPastur` law (for densities and plots)."""
        return MarchenkoPastur(self.ratio, self.variance)

    def pdf(self, x: Any) -> Any:
        """Fitted MP density at ``x`` (continuous part; see :meth:`MarchenkoPastur.pdf`)."""
        return self.law.pdf(x)

    @property
    def is_noise(self) -> bool:
        """True when no eigenvalue is beyond the noise edge at level ``alpha``."""
        return self.num_outliers == 0


def _fit_mp_core(y: np.ndarray, ratio: float, n: float, alpha: float, beta: int,
                 calibration: str = "johnstone") -> tuple[float, int, float]:
    """Sequential fit on descending eigenvalues ``y`` (all from the continuous part, γ <= 1 or the dual).

    Returns (variance, number of outliers, last threshold). The variance is the mean of the bulk
    (E λ = σ² under MP); the k-th largest eigenvalue is an outlier while it exceeds the level-α Tracy–Widom
    cut for p − k dimensions computed with the variance of the current bulk (which includes it).
    """
    p = y.size
    suffix = np.cumsum(y[::-1])[::-1]  # suffix[k] = sum(y[k:])
    unit_cuts: dict[int, float] = {}
    k = 0
    threshold = math.inf
    while k < p - 1:
        s2 = suffix[k] / (p - k)
        if s2 <= 0:
            break
        m = p - k
        if m not in unit_cuts:
            unit_cuts[m] = edge_threshold(m, n, alpha=alpha, beta=beta, calibration=calibration)
        threshold = s2 * unit_cuts[m]
        if y[k] > threshold:
            k += 1
        else:
            break
    variance = float(suffix[k] / (p - k))
    return variance, k, float(threshold)


def fit_marchenko_pastur(eigenvalues: Any, ratio: float, *, alpha: float = 0.05, beta: int = 1,
                         calibration: str = "johnstone") -> MPFit:
    r"""Fit the Marchenko–Pastur law to the eigenvalues of XᵀX/n and flag outliers at level ``alpha``.

    Model: X is n×p with iid noise entries of unknown variance σ² (plus possibly a low-rank signal),
    γ = ``ratio`` = p/n and ``eigenvalues`` are the p eigenvalues of XᵀX/n. The fit is deterministic and
    takes O(p log p) time (one sort, closed-form CDF, cached Tracy–Widom quantiles):

    1. sort descending; start with k = 0 outliers;
    2. σ² = mean of the bulk λ_{k+1..p} (E λ = σ² under MP; robust because outliers are peeled off);
    3. if λ_{k+1} exceeds the level-α Tracy–Widom cut σ²(μ + s·TW_β⁻¹(1 − α))/n for p − k dimensions
       (Johnstone 2001 centering, see :func:`~eigenlens.rmt.edges.edge_threshold`), it is an outlier:
       k ← k + 1, go to 2 (Kritchman & Nadler 2008); otherwise stop;
    4. edges σ²(1 ± √γ)² and the KS distance of the bulk to MP(γ, σ²).

    Under pure noise the chance of reporting any outlier is about ``alpha`` (tested over 200 seeds); a
    population spike above the BBP threshold 1 + √γ gives an outlier once it clears the TW margin.
    When γ > 1, XᵀX/n has p − n zero eigenvalues (the atom 1 − 1/γ): the p − n smallest values must be
    ≈ 0 and the rest are fitted through the dual n×n matrix XXᵀ/n ~ MP(1/γ, γσ²).

    Args:
        eigenvalues: the p eigenvalues (any order) as a tensor, array or sequence; finite, >= 0 up to round-off.
        ratio: γ = p/n > 0 (weight matrix W of shape [out, in] with eigenvalues of WᵀW/out: γ = in/out).
        alpha: false-positive level of the outlier test, in (0, 1).
        beta: 1 for real data, 2 for complex data.
        calibration: ``"johnstone"`` (TW quantile with Johnstone's finite-size centering) or ``"simulate"``
            (quantile of exact simulated null top eigenvalues, deterministic seed; see
            :func:`~eigenlens.rmt.edges.edge_threshold`).

    Returns:
        :class:`MPFit`.

    Raises:
        ValueError: empty or non-finite eigenvalues, ratio <= 0, alpha outside (0, 1), clearly negative
            eigenvalues, or (γ > 1) too few zero eigenvalues.

    Example:
        >>> import torch
        >>> from eigenlens.rmt.ensembles import wishart
        >>> eigs = torch.linalg.eigvalsh(wishart(800, 200, generator=torch.Generator().manual_seed(0)))
        >>> fit = fit_marchenko_pastur(eigs, ratio=0.25)
        >>> round(fit.variance, 2), fit.num_outliers, fit.upper_edge > 2.2
        (1.0, 0, True)

    References:
        Marchenko & Pastur (1967); Johnstone, arXiv math/0104033; Kritchman & Nadler, *Determining the number
        of components in a factor model from limited noisy data*, Chemom. Intell. Lab. Syst. (2008).
    """
    x = as_real_array(eigenvalues)
    g = check_positive(ratio, "ratio", "pass ratio = p/n > 0 (e.g. in_features/out_features for WᵀW/out)")
    a = _alpha(alpha)
    b = _check_beta(beta)
    if calibration not in ("johnstone", "simulate"):
        raise ValueError(f"calibration must be 'johnstone' or 'simulate'; got {calibration!r}. Fix: pass one of them.")
    p = x.size
    scale = float(np.max(np.abs(x)))
    if scale == 0.0:
        raise ValueError(
            "eigenvalues are all zero; a Marchenko–Pastur fit needs a non-zero spectrum. "
            "Fix: check that the matrix is not identically zero."
        )
    if x.min() < -_NEG_TOL * scale:
        raise ValueError(
            f"eigenvalues of XᵀX/n must be >= 0; got a minimum of {x.min():.3g} (max |λ| = {scale:.3g}). "
            "Fix: pass the eigenvalues of the Gram matrix (eigvalsh(W.T @ W / n)), or squared singular values."
        )
    y = np.sort(np.clip(x, 0.0, None))[::-1]
    n_real = p / g
    if g > 1.0:
        n = int(round(n_real))
        zeros = p - n
        if n < 1:
            raise ValueError(
                f"ratio = {g:g} with {p} eigenvalues means n = p/ratio < 1 sample. "
                "Fix: pass ratio = p/n for the matrix the eigenvalues came from."
            )
        if zeros > 0 and y[n] > _ZERO_TOL * scale:
            raise ValueError(
                f"with ratio = {g:g} > 1, XᵀX/n ({p}×{p}) has p − n = {zeros} zero eigenvalues, but the "
                f"{zeros} smallest given are not ≈ 0 (largest of them {y[n]:.3g}, max {scale:.3g}). "
                f"Fix: pass all p eigenvalues, or pass only the {n} non-zero ones with ratio = 1/ratio = {1 / g:g} "
                "(they are the spectrum of XXᵀ/n ~ MP(1/ratio, ratio·σ²)), or check ratio."
            )
        core = y[:n]
        s2_dual, k, thr = _fit_mp_core(core, 1.0 / g, float(p), a, b, calibration)
        variance = s2_dual / g
        bulk = core[k:]
        law_bulk = MarchenkoPastur(1.0 / g, s2_dual)
    else:
        if p < 2:
            raise ValueError(f"need at least 2 eigenvalues for a Marchenko–Pastur fit; got {p}. Fix: pass more.")
        variance, k, thr = _fit_mp_core(y, g, n_real, a, b, calibration)
        bulk = y[k:]
        law_bulk = MarchenkoPastur(g, variance)
    if variance <= 0:
        raise ValueError("the bulk of the spectrum is all zeros; cannot fit a noise variance. Fix: check the input.")
    ks = ks_distance(bulk, law_bulk)
    law = MarchenkoPastur(g, variance)
    return MPFit(
        variance=float(variance),
        lower_edge=float(law.lower_edge),
        upper_edge=float(law.upper_edge),
        outliers=torch.from_numpy(y[:k].copy()),
        num_outliers=int(k),
        ks=float(ks),
        ratio=g,
        alpha=a,
        threshold=float(thr),
        num_eigenvalues=int(p),
        num_samples=int(round(n_real)),
        num_bulk=int(bulk.size),
        beta=b,
    )


# ---------------------------------------------------------------------------------------------------
# power law
# ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PowerLawFit(Result):
    """A continuous power-law fit p(x) ∝ x^{−α} for x >= x_min (Clauset, Shalizi & Newman 2009).

    Attributes:
        alpha: MLE exponent α̂ = 1 + n_tail / Σ ln(x_i/x_min).
        xmin: the lower cut-off (minimal KS over candidates, or as given).
        ks: KS distance between the tail and the fitted law.
        p_value: fraction of semi-parametric bootstrap samples whose refitted KS is >= ks (None if no bootstrap);
            p > 0.1 means the power law is plausible (CSN's rule).
        num_tail: number of points >= x_min.
        num_bootstrap: bootstrap samples used (fewer than asked if the bootstrap was interrupted with Ctrl-C).
        alpha_stderr: (α̂ − 1)/√n_tail.
    """

    alpha: float
    xmin: float
    ks: float
    p_value: float | None
    num_tail: int
    num_bootstrap: int
    alpha_stderr: float

    def pdf(self, x: Any) -> Any:
        """Fitted density (α − 1)/x_min·(x/x_min)^{−α} for x >= x_min (0 below)."""
        from eigenlens.rmt._validate import apply_elementwise

        a, xm = self.alpha, self.xmin
        return apply_elementwise(lambda t: np.where(t >= xm, (a - 1) / xm * (np.maximum(t, xm) / xm) ** (-a), 0.0), x)


def _power_law_scan(xs: np.ndarray, min_tail: int, chunk_elems: int = 1 << 22) -> tuple[np.ndarray, ...]:
    """For each row of ascending ``xs`` [B, N], fit at every candidate x_min = xs[:, j] (tail >= min_tail).

    Returns (best_alpha [B], best_xmin [B], best_ks [B], best_tail [B]).
    """
    bsz, n = xs.shape
    logs = np.log(xs)
    suffix = np.cumsum(logs[:, ::-1], axis=1)[:, ::-1]  # suffix[:, j] = sum_{i>=j} log x_i
    num_cand = n - min_tail + 1
    best_ks = np.full(bsz, np.inf)
    best_alpha = np.full(bsz, np.nan)
    best_j = np.zeros(bsz, dtype=np.int64)
    rows = max(1, chunk_elems // max(n * bsz, 1))
    cols = np.arange(n)
    for j0 in range(0, num_cand, rows):
        js = np.arange(j0, min(j0 + rows, num_cand))
        m = (n - js).astype(np.float64)  # tail sizes [J]
        s = suffix[:, js] - m[None, :] * logs[:, js]  # [B, J]
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = 1.0 + m[None, :] / s
        valid = np.isfinite(alpha) & (s > 0)
        # F_j(x_i) for i >= j: 1 - exp((1 - α)(log x_i - log x_j))
        dl = logs[:, None, :] - logs[:, js][:, :, None]  # [B, J, N]
        expo = np.where(valid, 1.0 - alpha, -1.0)[:, :, None] * np.maximum(dl, 0.0)
        f = 1.0 - np.exp(expo)
        rank = cols[None, :] - js[:, None]  # i - j, [J, N]
        in_tail = (rank >= 0)[None]
        upper = (rank + 1) / m[:, None]
        lower = rank / m[:, None]
        d = np.maximum(upper[None] - f, f - lower[None])
        d = np.where(in_tail, d, -np.inf).max(axis=2)  # [B, J]
        d = np.where(valid, d, np.inf)
        arg = np.argmin(d, axis=1)
        cand = d[np.arange(bsz), arg]
        better = cand < best_ks
        best_ks = np.where(better, cand, best_ks)
        best_alpha = np.where(better, alpha[np.arange(bsz), arg], best_alpha)
        best_j = np.where(better, js[arg], best_j)
    best_xmin = xs[np.arange(bsz), best_j]
    return best_alpha, best_xmin, best_ks, (n - best_j).astype(np.int64)


def _fixed_xmin_fit(x: np.ndarray, xmin: float) -> tuple[float, float, int]:
    tail = np.sort(x[x >= xmin])
    m = tail.size
    s = float(np.sum(np.log(tail / xmin)))
    if m < 2 or s <= 0:
        raise ValueError(
            f"xmin = {xmin:g} leaves {m} point(s) (or no spread) in the tail; need at least 2 distinct values. "
            "Fix: lower xmin or pass xmin=None to choose it by minimal KS."
        )
    alpha = 1.0 + m / s
    f = 1.0 - (tail / xmin) ** (1.0 - alpha)
    i = np.arange(1, m + 1)
    ks = float(max(np.max(i / m - f), np.max(f - (i - 1) / m)))
    return alpha, ks, m


def fit_power_law(eigenvalues: Any, *, xmin: float | None = None, generator: torch.Generator | None = None,
                  num_bootstrap: int = 100, min_tail: int = 10, progress: bool = False) -> PowerLawFit:
    r"""Fit a power-law tail p(x) ∝ x^{−α}, x >= x_min, by the method of Clauset, Shalizi & Newman (2009).

    For every candidate x_min among the data (leaving at least ``min_tail`` points in the tail) the
    continuous MLE α̂ = 1 + n_tail / Σ ln(x_i/x_min) is computed and the KS distance between the tail and
    the fitted CDF 1 − (x/x_min)^{1−α̂}; the candidate with minimal KS wins (all candidates at once,
    vectorised, O(N²) memory-chunked). Goodness of fit: ``num_bootstrap`` semi-parametric samples (each
    point drawn from the fitted power law with probability n_tail/N, else resampled from the data below
    x_min) are refitted the same way, and p = fraction with KS >= the observed KS. All bootstraps are fitted
    in one batched scan; randomness only through ``generator`` (None: seeded 0).

    Args:
        eigenvalues: ``[N]`` positive values (eigenvalues of WᵀW, say); non-positive values are dropped
            (a power law lives on x > 0), at least ``min_tail`` must remain.
        xmin: fixed lower cut-off, or None to choose it by minimal KS.
        generator: torch generator for the bootstrap.
        num_bootstrap: number of bootstrap samples (0 = no p-value). CSN recommend ~2500 for ±0.01 on p.
        min_tail: smallest tail considered.
        progress: show a tqdm bar over bootstrap batches.

    Returns:
        :class:`PowerLawFit`.

    Raises:
        ValueError: empty or non-finite input, fewer than ``min_tail`` positive values, bad xmin.

    Example:
        >>> import torch
        >>> u = torch.rand(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> x = (1 - u) ** (-1 / 1.5)  # Pareto, α = 2.5, x_min = 1
        >>> fit = fit_power_law(x, num_bootstrap=0)
        >>> abs(fit.alpha - 2.5) < 0.15
        True

    References:
        A. Clauset, C. R. Shalizi, M. E. J. Newman, *Power-law distributions in empirical data*, SIAM Review 51
        (2009), arXiv 0706.1062.
    """
    x = as_real_array(eigenvalues)
    if isinstance(min_tail, bool) or not isinstance(min_tail, (int, np.integer)) or min_tail < 2:
        raise ValueError(f"min_tail must be an integer >= 2; got {min_tail!r}. Fix: pass e.g. min_tail=10.")
    if isinstance(num_bootstrap, bool) or not isinstance(num_bootstrap, (int, np.integer)) or num_bootstrap < 0:
        raise ValueError(f"num_bootstrap must be an integer >= 0; got {num_bootstrap!r}. Fix: pass e.g. 100.")
    x = np.sort(x[x > 0])
    if x.size < min_tail:
        raise ValueError(
            f"need at least min_tail = {min_tail} positive values for a power-law fit; got {x.size}. "
            "Fix: pass more eigenvalues or lower min_tail."
        )
    if xmin is not None:
        xm = check_positive(xmin, "xmin", "pass a positive cut-off or None")
        alpha, ks, m = _fixed_xmin_fit(x, xm)
    else:
        a_arr, xm_arr, ks_arr, m_arr = _power_law_scan(x[None, :], min_tail)
        alpha, xm, ks, m = float(a_arr[0]), float(xm_arr[0]), float(ks_arr[0]), int(m_arr[0])
        if not math.isfinite(alpha):
            raise ValueError("all candidate tails have no spread (repeated values); cannot fit a power law.")
    p_value = None
    done = 0
    if num_bootstrap > 0:
        p_value, done = _bootstrap_p_value(x, alpha, xm, ks, m, xmin is not None, int(num_bootstrap), min_tail,
                                           resolve_generator(generator), progress)
    return PowerLawFit(alpha=float(alpha), xmin=float(xm), ks=float(ks), p_value=p_value, num_tail=int(m),
                       num_bootstrap=int(done), alpha_stderr=float((alpha - 1.0) / math.sqrt(m)))


def _bootstrap_p_value(x: np.ndarray, alpha: float, xmin: float, ks: float, m: int, fixed: bool, num: int,
                       min_tail: int, gen: torch.Generator, progress: bool) -> tuple[float, int]:
    n = x.size
    below = x[x < xmin]
    batch = max(1, min(num, (1 << 22) // max(n * n // 2, 1)))
    count = 0
    done = 0
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=num, desc="power-law bootstrap", disable=not progress, leave=False)
    except ImportError:  # pragma: no cover
        bar = None
    try:
        while done < num:
            bsz = min(batch, num - done)
            u = torch.rand(bsz, n, 2, generator=gen, dtype=torch.float64).numpy()
            from_tail = u[:, :, 0] < m / n if below.size else np.ones((bsz, n), dtype=bool)
            pl = xmin * (1.0 - u[:, :, 1]) ** (-1.0 / (alpha - 1.0))
            if below.size:
                idx = np.minimum((u[:, :, 1] * below.size).astype(np.int64), below.size - 1)
                samples = np.where(from_tail, pl, below[idx])
            else:
                samples = pl
            samples = np.sort(samples, axis=1)
            if fixed:
                ks_b = np.array([_fixed_xmin_fit(row, xmin)[1] if np.sum(row >= xmin) >= 2 else np.inf
                                 for row in samples])
            else:
                ks_b = _power_law_scan(samples, min_tail)[2]
            count += int(np.sum(ks_b >= ks))
            done += bsz
            if bar is not None:
                bar.update(bsz)
    except KeyboardInterrupt:
        if done == 0:
            raise
        from eigenlens.linalg.exceptions import NumericalWarning  # leaf module of warning classes only

        warnings.warn(f"power-law bootstrap interrupted after {done} of {num} samples; p-value from those.",
                      NumericalWarning, stacklevel=3)
    finally:
        if bar is not None:
            bar.close()
    return count / done, done


# ---------------------------------------------------------------------------------------------------
# spectral summaries
# ---------------------------------------------------------------------------------------------------
def _nonneg(eigenvalues: Any) -> np.ndarray:
    x = as_real_array(eigenvalues)
    scale = float(np.max(np.abs(x)))
    if x.min() < -_NEG_TOL * scale:
        raise ValueError(
            f"expected eigenvalues of a positive semi-definite matrix (>= 0); got a minimum of {x.min():.3g}. "
            "Fix: pass eigenvalues of WᵀW (or squared singular values), not of W itself."
        )
    x = np.clip(x, 0.0, None)
    if x.sum() <= 0:
        raise ValueError("eigenvalues are all zero; the quantity is undefined. Fix: check the matrix is non-zero.")
    return x


def stable_rank(eigenvalues: Any) -> float:
    """Stable rank Σλ_i / max λ_i = ‖W‖_F²/‖W‖₂² for the eigenvalues λ of WᵀW (>= 0).

    Example:
        >>> stable_rank([4.0, 2.0, 2.0])
        2.0
    """
    x = _nonneg(eigenvalues)
    return float(x.sum() / x.max())


def spectral_entropy(eigenvalues: Any) -> float:
    """Normalised Shannon entropy −Σ p_i ln p_i / ln N of p = λ/Σλ (λ >= 0), in [0, 1]; 0 when N = 1.

    Example:
        >>> spectral_entropy([1.0, 1.0, 1.0, 1.0]), spectral_entropy([1.0, 0.0, 0.0])
        (1.0, 0.0)
    """
    x = _nonneg(eigenvalues)
    if x.size == 1:
        return 0.0
    p = x / x.sum()
    nz = p[p > 0]
    return float(-np.sum(nz * np.log(nz)) / math.log(x.size))


def effective_rank(eigenvalues: Any) -> float:
    """Effective rank exp(H), H = −Σ p_i ln p_i with p = λ/Σλ (Roy & Vetterli 2007).

    Example:
        >>> round(effective_rank([1.0, 1.0, 0.0]), 12)
        2.0
    """
    x = _nonneg(eigenvalues)
    p = x / x.sum()
    nz = p[p > 0]
    return float(math.exp(-np.sum(nz * np.log(nz))))


@dataclasses.dataclass(frozen=True)
class LinearStatistic(Result):
    """A linear eigenvalue statistic Σ f(λ_i) and its value expected under a limiting law.

    Attributes:
        value: Σ_i f(λ_i).
        mean: value / N.
        expected: N·∫ f dμ under the law (None without a law).
        expected_mean: ∫ f dμ (None without a law).
        num_eigenvalues: N.
    """

    value: float
    mean: float
    expected: float | None
    expected_mean: float | None
    num_eigenvalues: int


def linear_statistic(eigenvalues: Any, f: Callable[[np.ndarray], Any], law: Law | None = None) -> LinearStatistic:
    """Linear statistic Σ f(λ_i), with its expectation N·∫f dμ under ``law`` (adaptive quadrature + atoms).

    For Wigner/Wishart matrices the fluctuations of Σ f(λ_i) are O(1), not O(√N), so the difference to
    the expectation is a sharp test of the law (Johansson 1998; Bai & Silverstein 2004).

    Args:
        eigenvalues: ``[N]`` real eigenvalues.
        f: vectorised function of a float64 NumPy array (e.g. ``np.log``, ``lambda x: x**2``).
        law: a real-line law, or None.

    Example:
        >>> from eigenlens.rmt.laws import semicircle
        >>> s = linear_statistic([-1.0, 1.0], lambda x: x**2, semicircle())
        >>> s.value, round(s.expected_mean, 10)
        (2.0, 1.0)
    """
    x = as_real_array(eigenvalues)
    vals = np.asarray(f(x), dtype=np.float64)
    if vals.shape != x.shape:
        raise ValueError(
            f"f must be vectorised: f(x) for x of shape {x.shape} returned shape {vals.shape}. "
            "Fix: use NumPy ufuncs (np.log, x**2) or np.vectorize(f)."
        )
    value = float(vals.sum())
    expected_mean = None
    if law is not None:
        if not isinstance(law, Law):
            raise TypeError(f"law must be a real-line eigenlens.rmt law; got {type(law).__name__}.")
        from scipy.integrate import quad

        lo, hi = law.support
        cont_lo = getattr(law, "lower_edge", lo)
        expected_mean = float(
            quad(lambda t: float(np.asarray(f(np.array([t])))[0]) * float(law._pdf(np.array([t]))[0]),
                 cont_lo, hi, limit=200, epsabs=1e-12, epsrel=1e-10)[0]
        )
        for loc, mass in law.atoms:
            expected_mean += mass * float(np.asarray(f(np.array([loc])))[0])
    return LinearStatistic(
        value=value,
        mean=value / x.size,
        expected=None if expected_mean is None else expected_mean * x.size,
        expected_mean=expected_mean,
        num_eigenvalues=int(x.size),
    )
