"""Top eigenvector / low-rank sketches of ``AᵀA`` from a stream of rows, in bounded memory.

All estimators take rows with ``partial_fit(rows [k, d])`` (any number of calls, any chunk sizes) and hold
``O(d)`` to ``O(ℓ d)`` numbers whatever the stream length.

* :class:`Oja` — Oja's rule ``w ← normalize(w + η_t a (aᵀ w))`` (Oja 1982) with the learning-rate schedule
  ``η_t = c / (λ̂_t (t₀ + t))``, ``λ̂_t`` the running mean of ``(aᵀw)²`` (an estimate of ``λ₁`` of the
  covariance, floored at ``mean ‖a‖² / d``): the ``Θ(1/(λ t))`` schedule analysed by Jain et al.
  (arXiv 1602.06929) for random-order streams; with a spectral gap it also tracks arbitrary orders
  (Price & Xun, FOCS 2024).
* :class:`RandomOrderTopEigenvector` — Kacham & Woodruff (arXiv 2412.11963): rows whose squared norm is
  large relative to the running mass (*heavy* rows) are kept exactly, the rest are sampled at rate ``q``
  and reweighted by ``1/q``; the top eigenvector of the kept Gram matrix is returned.
* :class:`FrequentDirections` — Liberty (arXiv 1206.0594): a ``2ℓ × d`` sketch ``B`` with
  ``0 ⪯ AᵀA − BᵀB ⪯ ‖A − A_k‖_F² / (ℓ − k) · I``; deterministic, order-independent guarantee.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from eigenlens.linalg.random import resolve_generator

__all__ = ["Oja", "RandomOrderTopEigenvector", "FrequentDirections"]


def _rows(rows: Any, d: int, dtype: torch.dtype, what: str) -> Tensor:
    R = torch.as_tensor(rows)
    if R.ndim == 1:
        R = R[None, :]
    if R.ndim != 2 or R.shape[1] != d:
        raise ValueError(f"{what}.partial_fit: expected rows of shape [k, {d}], got {tuple(R.shape)}")
    R = R.to(dtype)
    if not bool(torch.isfinite(R).all()):
        raise ValueError(f"{what}.partial_fit: the rows contain NaN or Inf; clean the stream")
    return R


def _check_dim(d: Any, what: str) -> int:
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"{what}: d must be a positive int (the row length), got {d!r}")
    return d


class Oja:
    """Oja's streaming top eigenvector of ``AᵀA``.

    Args:
        d: row length.
        lr: ``c`` in ``η_t = c / (λ̂_t (t₀ + t))`` (float), or a callable ``t -> η_t`` (absolute step).
        t0: schedule offset ``t₀`` (larger = more cautious early steps).
        generator: the random start (None = fresh generator seeded 0).
        dtype: working dtype.

    Attributes:
        vector: ``[d]`` the current unit-norm estimate. ``rows_seen``. ``eigenvalue``: running Rayleigh
        quotient estimate of ``λ₁(AᵀA)/rows_seen`` (exponential average of ``(aᵀw)²``).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(4000, 5, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1, 1, 1, 1])
        >>> oja = Oja(5).partial_fit(X)
        >>> bool(oja.vector[0].abs() > 0.99)
        True
    """

    def __init__(self, d: int, *, lr: float | Callable[[int], float] = 2.0, t0: float = 100.0,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> None:
        self.d = _check_dim(d, "Oja")
        if not callable(lr) and not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"Oja: lr must be a positive float or a callable t -> step, got {lr!r}")
        self.lr, self.t0, self.dtype = lr, float(t0), dtype
        g = resolve_generator(generator)
        w = torch.randn(d, generator=g, dtype=torch.float64).to(dtype)
        self.vector = w / torch.linalg.vector_norm(w)
        self.rows_seen = 0
        self._nu = 0.0
        self.eigenvalue = 0.0

    def partial_fit(self, rows: Any) -> Oja:
        """Consume rows ``[k, d]`` (or one row ``[d]``) in order; returns ``self``."""
        R = _rows(rows, self.d, self.dtype, "Oja")
        w = self.vector
        for a in R:
            self.rows_seen += 1
            t = self.rows_seen
            sq = float(a @ a)
            self._nu += (sq - self._nu) / t
            proj = float(a @ w)
            if callable(self.lr):
                eta = float(self.lr(t))
            else:
                scale = max(self.eigenvalue, self._nu / self.d, 1e-300)
                eta = self.lr / (scale * (self.t0 + t))
            w = w + (eta * proj) * a
            w = w / torch.linalg.vector_norm(w)
            self.eigenvalue += (proj * proj - self.eigenvalue) / t
        self.vector = w
        return self

    @property
    def memory_floats(self) -> int:
        """Numbers held (``d`` + a few scalars)."""
        return self.d + 3


class RandomOrderTopEigenvector:
    """Kacham–Woodruff random-order estimator: heavy rows kept exactly, the rest sampled (arXiv 2412.11963).

    A row ``a`` is *heavy* when ``‖a‖² ≥ heavy_fraction · M_t`` where ``M_t`` is the squared Frobenius mass
    seen so far; heavy rows (only ``O(log(n)/heavy_fraction)`` rows can be heavy on arrival
    in a random-order stream, since ``Σ‖a‖² = M``) are accumulated into the Gram matrix exactly, the light
    ones with probability ``q = sample_rate`` and weight ``1/q``. The estimate is the top eigenvector of
    ``G = Σ_heavy a aᵀ + Σ_sampled a aᵀ / q`` (unbiased for ``AᵀA``).
    Memory: the ``d × d`` Gram matrix (``O(d²)``, independent of the stream length).

    Args:
        d: row length.
        sample_rate: ``q`` in ``(0, 1]``.
        heavy_fraction: the heaviness threshold.
        generator: sampling randomness (None = fresh generator seeded 0).
    """

    def __init__(self, d: int, *, sample_rate: float = 0.1, heavy_fraction: float = 0.01,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> None:
        self.d = _check_dim(d, "RandomOrderTopEigenvector")
        if not 0 < sample_rate <= 1:
            raise ValueError(f"RandomOrderTopEigenvector: sample_rate must be in (0, 1], got {sample_rate!r}")
        if not 0 < heavy_fraction < 1:
            raise ValueError(f"RandomOrderTopEigenvector: heavy_fraction must be in (0, 1), got {heavy_fraction!r}")
        self.q, self.h, self.dtype = float(sample_rate), float(heavy_fraction), dtype
        self._g = resolve_generator(generator)
        self.gram = torch.zeros(d, d, dtype=dtype)
        self.mass = 0.0
        self.rows_seen = 0
        self.num_heavy = 0
        self.num_sampled = 0

    def partial_fit(self, rows: Any) -> RandomOrderTopEigenvector:
        """Consume rows ``[k, d]``; returns ``self``."""
        R = _rows(rows, self.d, self.dtype, "RandomOrderTopEigenvector")
        sq = (R * R).sum(dim=1)
        mass = self.mass + torch.cumsum(sq, 0)  # running mass including the row itself
        heavy = sq >= self.h * mass
        coins = torch.rand(R.shape[0], generator=self._g, dtype=torch.float64) < self.q
        keep_light = (~heavy) & coins
        H, L = R[heavy], R[keep_light]
        self.gram += H.T @ H + (L.T @ L) / self.q
        self.mass = float(mass[-1]) if R.shape[0] else self.mass
        self.rows_seen += R.shape[0]
        self.num_heavy += int(heavy.sum())
        self.num_sampled += int(keep_light.sum())
        return self

    @property
    def vector(self) -> Tensor:
        """``[d]`` the top eigenvector of the kept Gram matrix."""
        _, V = torch.linalg.eigh(self.gram)
        return V[:, -1]

    @property
    def eigenvalue(self) -> float:
        """Estimate of ``λ₁(AᵀA)``."""
        return float(torch.linalg.eigvalsh(self.gram)[-1])

    @property
    def memory_floats(self) -> int:
        return self.d * self.d


class FrequentDirections:
    """Frequent Directions (Liberty 2013, arXiv 1206.0594): a ``2ℓ × d`` sketch ``B`` of the row stream.

    Guarantee (Ghashami, Liberty, Phillips & Woodruff, arXiv 1501.01711): for every ``k < ℓ``,
    ``0 ⪯ AᵀA − BᵀB`` and ``‖AᵀA − BᵀB‖₂ ≤ ‖A − A_k‖_F² / (ℓ − k)``.

    Args:
        d: row length.
        ell: sketch rank ``ℓ`` (the buffer holds ``2ℓ`` rows).
    """

    def __init__(self, d: int, ell: int, *, dtype: torch.dtype = torch.float64) -> None:
        self.d = _check_dim(d, "FrequentDirections")
        if isinstance(ell, bool) or not isinstance(ell, int) or ell < 1:
            raise ValueError(f"FrequentDirections: ell must be a positive int, got {ell!r}")
        self.ell, self.dtype = min(ell, d), dtype
        self.B = torch.zeros(2 * self.ell, d, dtype=dtype)
        self.filled = 0
        self.rows_seen = 0
        self.shrinkage = 0.0  # Σ δ: total shrinkage, ‖AᵀA − BᵀB‖₂ ≤ shrinkage

    def _shrink(self) -> None:
        _, s, Vh = torch.linalg.svd(self.B[: self.filled], full_matrices=False)
        delta = float(s[self.ell - 1] ** 2) if s.numel() >= self.ell else 0.0
        s2 = torch.clamp(s**2 - delta, min=0.0)
        k = min(self.ell, s.numel())
        self.B.zero_()
        self.B[:k] = torch.sqrt(s2[:k])[:, None] * Vh[:k]
        self.filled = int((s2[:k] > 0).sum())
        self.shrinkage += delta

    def partial_fit(self, rows: Any) -> FrequentDirections:
        """Consume rows ``[k, d]``; returns ``self``."""
        R = _rows(rows, self.d, self.dtype, "FrequentDirections")
        i = 0
        while i < R.shape[0]:
            take = min(R.shape[0] - i, 2 * self.ell - self.filled)
            self.B[self.filled : self.filled + take] = R[i : i + take]
            self.filled += take
            i += take
            if self.filled == 2 * self.ell:
                self._shrink()
        self.rows_seen += R.shape[0]
        return self

    @property
    def sketch(self) -> Tensor:
        """``B`` (``[≤ 2ℓ, d]``) with ``BᵀB ≈ AᵀA``."""
        return self.B[: self.filled].clone()

    @property
    def vector(self) -> Tensor:
        """``[d]`` top right singular vector of the sketch."""
        B = self.B[: max(self.filled, 1)]
        return torch.linalg.svd(B, full_matrices=False)[2][0]

    @property
    def memory_floats(self) -> int:
        return 2 * self.ell * self.d


