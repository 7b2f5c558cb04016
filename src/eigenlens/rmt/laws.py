r"""Limiting spectral laws of random matrix theory, in closed form.

Real-line laws (:class:`Semicircle`, :class:`MarchenkoPastur`, :class:`QuarterCircle`) share the
:class:`Law` interface: ``pdf``, ``cdf``, ``ppf``, ``support``, ``mean``, ``var``, ``moment(k)``,
``atoms`` and ``sample``. Complex-plane laws (:class:`Circular`, :class:`Elliptic`) share
:class:`PlaneLaw`: ``pdf`` (density w.r.t. area), ``contains``, ``radius_of`` and ``radial_cdf``.

Evaluation is vectorised and type-preserving: a ``torch.Tensor`` in gives a tensor out (same device;
float64 unless the input was a floating dtype; no autograd), a NumPy array or a sequence gives a NumPy
array, a scalar gives a ``float``. All arithmetic is float64 NumPy.

Conventions (X is n×p with iid entries of mean 0 and variance σ² = ``variance``; γ = ``ratio`` = p/n):

* semicircle: Wigner H with off-diagonal variance σ²/n; density √(4σ² − x²)/(2πσ²) on [−2σ, 2σ].
* Marchenko–Pastur: eigenvalues of XᵀX/n (p×p); edges λ± = σ²(1 ± √γ)²; density
  √((λ₊ − λ)(λ − λ₋))/(2πσ²γλ) and an atom of mass 1 − 1/γ at 0 when γ > 1.
* quarter circle: singular values of a square X/√n; density √(4σ² − x²)/(πσ²) on [0, 2σ].
* circular: eigenvalues of X/√n (square, σ² = 1) fill the disk of radius 1 uniformly: P(|z| ≤ r) = r².
* elliptic: E X_ij X_ji = τ; uniform on the ellipse with semi-axes 1 + τ and 1 − τ.

References:
    Marchenko & Pastur, Math. USSR-Sbornik 1 (1967); Wigner, Ann. Math. 67 (1958); Girko (1985) and
    Tao & Vu (arXiv 0807.4898) for the circular law; Sommers, Crisanti, Sompolinsky & Stein, PRL 60 (1988)
    for the elliptic law; Bai & Silverstein, *Spectral Analysis of Large Dimensional Random Matrices* (2010).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eigenlens.linalg.random import resolve_generator
from eigenlens.rmt._validate import apply_elementwise, as_complex_array, check_positive

__all__ = [
    "Law",
    "PlaneLaw",
    "Semicircle",
    "MarchenkoPastur",
    "QuarterCircle",
    "Circular",
    "Elliptic",
    "semicircle",
    "marchenko_pastur",
    "quarter_circle",
    "circular",
    "elliptic",
]


def _catalan(k: int) -> int:
    return math.comb(2 * k, k) // (k + 1)


def _check_order(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"moment order k must be an integer >= 0; got {k!r}. Fix: pass e.g. k=2.")
    return int(k)


class Law:
    """A probability law on the real line with closed-form density and distribution function.

    Subclasses implement ``_pdf`` and ``_cdf`` on float64 NumPy arrays (the absolutely continuous part's
    density; ``cdf`` includes the atoms and is right-continuous), ``support``, ``atoms`` and ``moment``.
    """

    name = "law"

    # --- to implement -------------------------------------------------------------------------
    def _pdf(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cdf(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def support(self) -> tuple[float, float]:  # pragma: no cover - abstract
        """``(lower, upper)``: the closed interval carrying all the mass (atoms included)."""
        raise NotImplementedError

    def moment(self, k: int) -> float:  # pragma: no cover - abstract
        """The k-th raw moment E[X^k] (closed form)."""
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------
    @property
    def atoms(self) -> tuple[tuple[float, float], ...]:
        """``((location, mass), ...)`` of the point masses; empty for a continuous law."""
        return ()

    @property
    def mean(self) -> float:
        """E[X]."""
        return self.moment(1)

    @property
    def var(self) -> float:
        """Var[X] = E[X²] − E[X]²."""
        return self.moment(2) - self.moment(1) ** 2

    def pdf(self, x: Any) -> Any:
        """Density of the absolutely continuous part at ``x`` (0 outside the support; atoms excluded)."""
        return apply_elementwise(self._pdf, x)

    def cdf(self, x: Any) -> Any:
        """Distribution function P(X <= x), atoms included (right-continuous)."""
        return apply_elementwise(lambda a: np.clip(self._cdf(a), 0.0, 1.0), x)

    def cdf_left(self, x: Any) -> Any:
        """Left limit P(X < x): the CDF minus any atom located exactly at ``x``."""

        def left(a: np.ndarray) -> np.ndarray:
            out = np.clip(self._cdf(a), 0.0, 1.0)
            for loc, mass in self.atoms:
                out = out - mass * (a == loc)
            return np.clip(out, 0.0, 1.0)

        return apply_elementwise(left, x)

    def _ppf(self, q: np.ndarray) -> np.ndarray:
        lo, hi = self.support
        a = np.full(q.shape, lo, dtype=np.float64)
        b = np.full(q.shape, hi, dtype=np.float64)
        # bisection: inf {x : F(x) >= q}; 60 halvings reach float64 resolution of the support
        for _ in range(60):
            mid = 0.5 * (a + b)
            right = np.clip(self._cdf(mid), 0.0, 1.0) >= q
            b = np.where(right, mid, b)
            a = np.where(right, a, mid)
        for loc, mass in self.atoms:  # quantiles that fall inside an atom are exactly its location
            below = np.clip(self._cdf(np.array(loc)), 0.0, 1.0) - mass
            b = np.where((q > below) & (q <= below + mass), loc, b)
        return b

    def ppf(self, q: Any) -> Any:
        """Quantile function inf{x : F(x) >= q} for q in [0, 1] (vectorised bisection on the closed-form CDF).

        Raises:
            ValueError: if some q lies outside [0, 1].
        """

        def f(a: np.ndarray) -> np.ndarray:
            if np.any((a < 0) | (a > 1)) or not np.isfinite(a).all():
                raise ValueError(
                    "ppf needs probabilities q in [0, 1]; got values outside. Fix: clip q to [0, 1]."
                )
            return self._ppf(a)

        return apply_elementwise(f, q)

    def sample(self, num: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``num`` iid draws as a float64 tensor ``[num]`` by inverse-CDF sampling (seeded via ``generator``)."""
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 0:
            raise ValueError(f"num must be an integer >= 0; got {num!r}. Fix: pass e.g. num=1000.")
        g = resolve_generator(generator)
        u = torch.rand(int(num), generator=g, dtype=torch.float64)
        return torch.from_numpy(self._ppf(u.numpy()))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def _params(self) -> dict[str, float]:
        return {}


class Semicircle(Law):
    r"""Wigner's semicircle law with variance σ²: density √(4σ² − x²)/(2πσ²) on [−2σ, 2σ].

    The limit of the eigenvalues of a Wigner matrix whose off-diagonal entries have variance σ²/n.
    CDF: F(x) = ½ + (u√(1 − u²) + arcsin u)/π with u = x/(2σ). Moments: E X^{2k} = C_k σ^{2k}
    (Catalan numbers), odd moments vanish.

    Example:
        >>> law = Semicircle(1.0)
        >>> law.support, law.cdf(0.0), law.moment(4)
        ((-2.0, 2.0), 0.5, 2.0)
    """

    name = "semicircle"

    def __init__(self, variance: float = 1.0) -> None:
        self.variance = check_positive(variance, "variance", "pass the entry variance σ² > 0, e.g. variance=1.0")
        self.radius = 2.0 * math.sqrt(self.variance)

    def _params(self) -> dict[str, float]:
        return {"variance": self.variance}

    @property
    def support(self) -> tuple[float, float]:
        return (-self.radius, self.radius)

    def _pdf(self, x: np.ndarray) -> np.ndarray:
        r2 = self.radius**2
        return np.sqrt(np.clip(r2 - x * x, 0.0, None)) / (2.0 * math.pi * self.variance)

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        u = np.clip(x / self.radius, -1.0, 1.0)
        return 0.5 + (u * np.sqrt(1.0 - u * u) + np.arcsin(u)) / math.pi

    def moment(self, k: int) -> float:
        k = _check_order(k)
        return 0.0 if k % 2 else float(_catalan(k // 2)) * self.variance ** (k // 2)


class MarchenkoPastur(Law):
    r"""The Marchenko–Pastur law of the eigenvalues of XᵀX/n, X n×p iid with variance σ², ratio γ = p/n.

    Edges λ± = σ²(1 ± √γ)². Continuous density ρ(λ) = √((λ₊ − λ)(λ − λ₋))/(2πσ²γλ) on [λ₋, λ₊] with total
    mass min(1, 1/γ), plus an atom of mass 1 − 1/γ at 0 when γ > 1.

    The CDF is closed form. With a = λ₋, b = λ₊, m = (a + b)/2, h = (b − a)/2 and R(t) = (b − t)(t − a),
    an antiderivative of √R(t)/t is

        G(t) = √R(t) + m·arcsin((t − m)/h) − √(ab)·arcsin(((a + b)t − 2ab)/((b − a)t)),

    (split √R/t = −t/√R + (a + b)/√R − ab/(t√R) and integrate each term), so
    F(x) = atom + (G(x) − G(a))/(2πσ²γ) for a <= x <= b; G(b) − G(a) = π(m − √(ab)) gives the mass
    min(1, 1/γ). Moments (Narayana polynomials): E λ^k = σ^{2k} Σ_{r=0}^{k−1} γ^r/(r+1)·C(k, r)·C(k−1, r),
    so E λ = σ², E λ² = σ⁴(1 + γ).

    Example:
        >>> law = MarchenkoPastur(ratio=0.25, variance=1.0)
        >>> law.support, law.mean, law.moment(2)
        ((0.25, 2.25), 1.0, 1.25)
        >>> round(MarchenkoPastur(ratio=2.0).cdf(0.0), 12)  # the atom 1 - 1/γ
        0.5
    """

    name = "marchenko_pastur"

    def __init__(self, ratio: float, variance: float = 1.0) -> None:
        self.ratio = check_positive(ratio, "ratio", "pass ratio = p/n > 0 (columns over rows of X)")
        self.variance = check_positive(variance, "variance", "pass the entry variance σ² > 0, e.g. variance=1.0")
        s = math.sqrt(self.ratio)
        self.lower_edge = self.variance * (1.0 - s) ** 2
        self.upper_edge = self.variance * (1.0 + s) ** 2

    def _params(self) -> dict[str, float]:
        return {"ratio": self.ratio, "variance": self.variance}

    @property
    def support(self) -> tuple[float, float]:
        lo = 0.0 if self.ratio > 1 else self.lower_edge
        return (lo, self.upper_edge)

    @property
    def atoms(self) -> tuple[tuple[float, float], ...]:
        return ((0.0, 1.0 - 1.0 / self.ratio),) if self.ratio > 1 else ()

    @property
    def atom_mass(self) -> float:
        """Mass 1 − 1/γ of the atom at 0 (0 when γ <= 1)."""
        return max(0.0, 1.0 - 1.0 / self.ratio)

    def _pdf(self, x: np.ndarray) -> np.ndarray:
        a, b = self.lower_edge, self.upper_edge
        inside = (x > a) & (x < b) & (x > 0)
        xs = np.where(inside, x, 0.5 * (a + b))
        dens = np.sqrt(np.clip((b - xs) * (xs - a), 0.0, None)) / (2.0 * math.pi * self.variance * self.ratio * xs)
        return np.where(inside, dens, 0.0)

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        a, b = self.lower_edge, self.upper_edge
        m, h = 0.5 * (a + b), 0.5 * (b - a)
        sab = math.sqrt(a * b)
        xs = np.clip(x, a, b)
        xs = np.where(xs > 0, xs, h)  # guard the γ = 1 case (a = 0); the √(ab) term vanishes there
        root = np.sqrt(np.clip((b - xs) * (xs - a), 0.0, None))
        t1 = m * (np.arcsin(np.clip((xs - m) / h, -1.0, 1.0)) + 0.5 * math.pi)
        t2 = sab * (np.arcsin(np.clip(((a + b) * xs - 2.0 * a * b) / ((b - a) * xs), -1.0, 1.0)) + 0.5 * math.pi)
        cont = (root + t1 - t2) / (2.0 * math.pi * self.variance * self.ratio)
        cont = np.where(x <= a, 0.0, np.where(x >= b, min(1.0, 1.0 / self.ratio), cont))
        return cont + self.atom_mass * (x >= 0)

    def moment(self, k: int) -> float:
        k = _check_order(k)
        if k == 0:
            return 1.0
        g = self.ratio
        total = sum(g**r / (r + 1) * math.comb(k, r) * math.comb(k - 1, r) for r in range(k))
        return float(total) * self.variance**k


class QuarterCircle(Law):
    r"""The quarter-circle law of the singular values of a square X/√n with iid entries of variance σ².

    Density √(4σ² − x²)/(πσ²) on [0, 2σ] (the law of |S| for S semicircular);
    CDF F(x) = (2/π)(u√(1 − u²) + arcsin u) with u = x/(2σ); moments
    E X^k = (2σ)^k·(2/π)·B((k + 1)/2, 3/2), so E X² = σ² and E X = 8σ/(3π).

    Example:
        >>> law = QuarterCircle(1.0)
        >>> law.support, law.cdf(2.0), round(law.moment(2), 12)
        ((0.0, 2.0), 1.0, 1.0)
    """

    name = "quarter_circle"

    def __init__(self, variance: float = 1.0) -> None:
        self.variance = check_positive(variance, "variance", "pass the entry variance σ² > 0, e.g. variance=1.0")
        self.radius = 2.0 * math.sqrt(self.variance)

    def _params(self) -> dict[str, float]:
        return {"variance": self.variance}

    @property
    def support(self) -> tuple[float, float]:
        return (0.0, self.radius)

    def _pdf(self, x: np.ndarray) -> np.ndarray:
        inside = (x >= 0) & (x <= self.radius)
        return np.where(inside, np.sqrt(np.clip(self.radius**2 - x * x, 0.0, None)) / (math.pi * self.variance), 0.0)

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        u = np.clip(x / self.radius, 0.0, 1.0)
        return (2.0 / math.pi) * (u * np.sqrt(1.0 - u * u) + np.arcsin(u))

    def moment(self, k: int) -> float:
        k = _check_order(k)
        if k == 0:
            return 1.0
        from scipy.special import beta

        return float(self.radius**k * (2.0 / math.pi) * beta((k + 1) / 2.0, 1.5))


class PlaneLaw:
    """A law on the complex plane, uniform on a region: ``pdf`` (per unit area), ``contains``, radial CDF.

    ``radius_of(z)`` maps a point to its normalised radius and ``radial_cdf(r)`` is the CDF of that
    radius under the law, which is what :func:`eigenlens.rmt.ks_distance` compares samples against.
    """

    name = "plane_law"
    area = 1.0

    def _contains(self, z: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _radius_of(self, z: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _radial_cdf(self, r: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def contains(self, z: Any) -> Any:
        """Boolean membership of the points ``z`` (complex) in the closed support."""
        return apply_elementwise(self._contains, z, complex_input=True)

    def pdf(self, z: Any) -> Any:
        """Density with respect to area (1/area inside the support, 0 outside)."""
        return apply_elementwise(lambda a: self._contains(a) / self.area, z, complex_input=True)

    def radius_of(self, z: Any) -> Any:
        """The normalised radius of each point (the statistic whose CDF is :meth:`radial_cdf`)."""
        return apply_elementwise(self._radius_of, z, complex_input=True)

    def radial_cdf(self, r: Any) -> Any:
        """P(radius_of(Z) <= r)."""
        return apply_elementwise(lambda a: np.clip(self._radial_cdf(a), 0.0, 1.0), r)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._params().items())})"

    def _params(self) -> dict[str, float]:
        return {}


class Circular(PlaneLaw):
    r"""The circular law: uniform on the disk |z| <= R (R = ``radius``).

    The limit of the eigenvalues of X/√n for a square X with iid entries of variance R² (Ginibre for
    Gaussian entries; also band matrices with a doubly-stochastic variance profile). ``radius_of(z) = |z|``
    and P(|Z| <= r) = (r/R)². E Z^k = 0 for k >= 1 and E|Z|² = R²/2.

    Example:
        >>> law = Circular(1.0)
        >>> law.radial_cdf(0.5), bool(law.contains(0.3 + 0.4j)), law.contains([1.5])
        (0.25, True, array([False]))
    """

    name = "circular"

    def __init__(self, radius: float = 1.0) -> None:
        self.radius = check_positive(radius, "radius", "pass the disk radius R > 0, e.g. radius=1.0")
        self.area = math.pi * self.radius**2

    def _params(self) -> dict[str, float]:
        return {"radius": self.radius}

    @property
    def support(self) -> tuple[float, float]:
        """``(0, R)``: the range of |z|."""
        return (0.0, self.radius)

    def _contains(self, z: np.ndarray) -> np.ndarray:
        return np.abs(z) <= self.radius

    def _radius_of(self, z: np.ndarray) -> np.ndarray:
        return np.abs(z)

    def _radial_cdf(self, r: np.ndarray) -> np.ndarray:
        return np.clip(r / self.radius, 0.0, 1.0) ** 2

    def abs_moment(self, k: float) -> float:
        """E|Z|^k = 2R^k/(k + 2)."""
        return 2.0 * self.radius**k / (k + 2.0)

    def sample(self, num: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``num`` uniform points of the disk, complex128 ``[num]``."""
        g = resolve_generator(generator)
        u = torch.rand(2, int(num), generator=g, dtype=torch.float64)
        return torch.polar(self.radius * u[0].sqrt(), 2.0 * math.pi * u[1])


class Elliptic(PlaneLaw):
    r"""The elliptic law: uniform on the ellipse (x/(1+τ))² + (y/(1−τ))² <= 1, −1 < τ < 1.

    The limit of the eigenvalues of X/√n when the entries have variance 1 and E X_ij X_ji = τ
    (τ = 0 is the circular law; τ → 1 degenerates to the semicircle on [−2, 2]). ``radius_of(z)`` is
    the elliptic radius √((x/(1+τ))² + (y/(1−τ))²), with P(radius <= r) = r². E Z² = τ and
    E|Z|² = (1 + τ²)/2.

    Example:
        >>> law = Elliptic(0.5)
        >>> bool(law.contains(1.4 + 0j)), bool(law.contains(0.6j)), law.radial_cdf(0.5)
        (True, False, 0.25)
    """

    name = "elliptic"

    def __init__(self, tau: float) -> None:
        try:
            t = float(tau)
        except (TypeError, ValueError) as err:
            raise TypeError(f"tau must be a real number in (-1, 1); got {type(tau).__name__}.") from err
        if not (-1.0 < t < 1.0):
            raise ValueError(
                f"tau must lie strictly between -1 and 1; got {tau!r}. Fix: tau = E[X_ij X_ji] is a correlation; "
                "tau = ±1 degenerates to a real/imaginary semicircle (use semicircle())."
            )
        self.tau = t
        self.semi_axes = (1.0 + t, 1.0 - t)
        self.area = math.pi * (1.0 + t) * (1.0 - t)

    def _params(self) -> dict[str, float]:
        return {"tau": self.tau}

    def _radius_of(self, z: np.ndarray) -> np.ndarray:
        a, b = self.semi_axes
        return np.sqrt((z.real / a) ** 2 + (z.imag / b) ** 2)

    def _contains(self, z: np.ndarray) -> np.ndarray:
        return self._radius_of(z) <= 1.0

    def _radial_cdf(self, r: np.ndarray) -> np.ndarray:
        return np.clip(r, 0.0, 1.0) ** 2

    def sample(self, num: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``num`` uniform points of the ellipse, complex128 ``[num]``."""
        z = Circular(1.0).sample(num, generator=generator)
        a, b = self.semi_axes
        return torch.complex(a * z.real, b * z.imag)


def semicircle(variance: float = 1.0) -> Semicircle:
    """The semicircle law with variance σ² (support [−2σ, 2σ]); see :class:`Semicircle`."""
    return Semicircle(variance)


def marchenko_pastur(ratio: float, variance: float = 1.0) -> MarchenkoPastur:
    """The Marchenko–Pastur law of XᵀX/n with γ = p/n = ``ratio``; see :class:`MarchenkoPastur`."""
    return MarchenkoPastur(ratio, variance)


def quarter_circle(variance: float = 1.0) -> QuarterCircle:
    """The quarter-circle law of singular values of a square X/√n; see :class:`QuarterCircle`."""
    return QuarterCircle(variance)


def circular(radius: float = 1.0) -> Circular:
    """The circular law on the disk of radius ``radius``; see :class:`Circular`."""
    return Circular(radius)


def elliptic(tau: float) -> Elliptic:
    """The elliptic law with correlation τ = E X_ij X_ji; see :class:`Elliptic`."""
    return Elliptic(tau)


def _as_points(z: Any) -> np.ndarray:  # used by ks_distance for plane laws
    return as_complex_array(z, "samples").reshape(-1)
