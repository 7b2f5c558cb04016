"""Row sampling for regression: leverage scores, Lewis weights, ℓp sensitivity sampling, ℓp regression.

* Leverage scores ``ℓ_i = ‖U_i‖²`` (``U`` an orthonormal basis of ``range(A)``), exact (SVD) or sketched
  (Drineas, Magdon-Ismail, Mahoney & Woodruff, arXiv 1109.3843: ``ℓ_i ≈ ‖(A R⁻¹ G)_i‖²`` with ``R`` from
  the QR of a sketch ``S·A`` and a Gaussian JL matrix ``G``).
* ℓp Lewis weights: the unique ``w > 0`` with ``w_i = (a_iᵀ (Aᵀ W^{1−2/p} A)⁻¹ a_i)^{p/2}``, computed by the
  Cohen–Peng fixed-point iteration ``w ← (leverage scores of W^{1/2−1/p} A)^{p/2}·…`` (arXiv 1412.0588),
  a contraction for ``p < 4``; ``Σ w_i = rank(A)``.
* ℓp sensitivity sampling (Woodruff & Yasuda, "Sharper bounds for ℓp sensitivity sampling",
  arXiv 2306.00732): sample rows with probabilities ``∝`` an upper bound on the sensitivities
  ``σ_i = sup_x |a_iᵀx|^p / ‖Ax‖_p^p``; we use the Lewis-weight bound ``σ_i ≤ d^{max(0, p/2−1)} w_i``
  (equality for ``p = 2``), and rescale a kept row by ``(1/(m π_i))^{1/p}`` so ``E‖SAx‖_p^p = ‖Ax‖_p^p``.
* :func:`lp_regression`: ``min_x ‖Ax − b‖_p`` by IRLS (weights ``|r_i|^{p−2}``, with a backtracking line
  search so the objective never increases), on the full or on the sampled problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eigenlens._result import Result
from eigenlens.linalg.random import resolve_generator
from eigenlens.linalg.sketch import sketch as make_sketch

__all__ = ["leverage_scores", "lewis_weights", "sensitivity_sample", "SampledRows", "lp_regression", "LpResult"]


def _dense(A: Any, what: str) -> Tensor:
    if isinstance(A, np.ndarray):
        A = torch.from_numpy(A)
    if not isinstance(A, Tensor):
        try:
            import scipy.sparse as sp

            if sp.issparse(A):
                A = torch.from_numpy(A.toarray())
        except ImportError:  # pragma: no cover
            pass
    if not isinstance(A, Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor or numpy.ndarray, got {type(A).__name__}")
    if A.ndim != 2:
        raise ValueError(f"{what}: expected a matrix A [n, d], got shape {tuple(A.shape)}")
    if not A.dtype.is_floating_point:
        A = A.to(torch.float64)
    if not bool(torch.isfinite(A).all()):
        raise ValueError(f"{what}: A contains NaN or Inf; clean the matrix")
    return A


def _check_p(p: Any, what: str, upper: float = math.inf) -> float:
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not (0 < p < upper):
        raise ValueError(f"{what}: p must be a number in (0, {upper}), got {p!r}")
    return float(p)


def leverage_scores(
    A: Any,
    *,
    method: str = "exact",
    sketch_size: int | None = None,
    jl_dim: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Statistical leverage scores of the rows of ``A`` (``[n]``, summing to ``rank(A)``).

    Args:
        A: ``[n, d]`` matrix (torch, NumPy, SciPy sparse).
        method: ``"exact"`` (thin SVD, rank cutoff ``max(n,d)·eps·σ₁``) or ``"sketched"`` (Drineas et al.
            2012: QR of a sparse-sign sketch, then a Gaussian JL projection of ``A R⁻¹``; each score within
            a factor ``(1 ± ε)`` with high probability; ``O(nnz(A)·jl_dim + d³)`` work).
        sketch_size: rows of the sketch (default ``10·d``); jl_dim: JL dimension (default ``max(20, 4 log n)``).
        generator: randomness (None = fresh generator seeded 0).

    Example:
        >>> import torch
        >>> A = torch.eye(3, dtype=torch.float64).repeat(2, 1)   # each basis row twice
        >>> leverage_scores(A).tolist()
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    """
    A = _dense(A, "leverage_scores")
    n, d = A.shape
    if method == "exact":
        U, s, _ = torch.linalg.svd(A, full_matrices=False)
        r = int((s > max(n, d) * torch.finfo(A.dtype).eps * s[0]).sum()) if s.numel() and s[0] > 0 else 0
        return (U[:, :r] ** 2).sum(dim=1)
    if method != "sketched":
        raise ValueError(f"leverage_scores: method must be 'exact' or 'sketched', got {method!r}")
    g = resolve_generator(generator)
    m = min(n, max(10 * d, d + 20)) if sketch_size is None else int(sketch_size)
    S = make_sketch("sparse_sign", m, n, generator=g, dtype=A.dtype)
    _, R = torch.linalg.qr(S.apply(A))
    k = max(20, int(4 * math.log(max(n, 2)))) if jl_dim is None else int(jl_dim)
    G = torch.randn(d, k, generator=g, dtype=torch.float64).to(A.dtype) / math.sqrt(k)
    RinvG = torch.linalg.solve_triangular(R, G, upper=True)
    return ((A @ RinvG) ** 2).sum(dim=1)


def lewis_weights(
    A: Any,
    p: float,
    *,
    max_iters: int = 200,
    tol: float = 1e-12,
) -> Tensor:
    """ℓp Lewis weights of the rows of ``A`` by the Cohen–Peng fixed-point iteration (``0 < p < 4``).

    Iterates ``w_i ← (a_iᵀ (Aᵀ W^{1−2/p} A)⁻¹ a_i)^{p/2}`` from ``w = 1`` until the relative change is below
    ``tol``; the map is a contraction with rate ``|1 − p/2|`` (Cohen & Peng, arXiv 1412.0588, Lemma 2.4).
    For ``p = 2`` the weights are the leverage scores.

    Args:
        A: ``[n, d]`` with full column rank.
        p: the norm, ``0 < p < 4``.

    Returns:
        ``[n]`` weights with ``Σ w = d``.

    Raises:
        ValueError: ``p`` outside ``(0, 4)`` (the iteration need not converge there), rank-deficient ``A``.
    """
    A = _dense(A, "lewis_weights")
    p = _check_p(p, "lewis_weights", 4.0)
    n, d = A.shape
    w = torch.ones(n, dtype=A.dtype)
    for _ in range(max_iters):
        scale = w ** (0.5 - 1.0 / p)
        Q, R = torch.linalg.qr(scale[:, None] * A)
        dg = R.diagonal().abs()
        if float(dg.min()) <= max(n, d) * torch.finfo(A.dtype).eps * float(dg.max()):
            raise ValueError("lewis_weights: A is rank deficient; remove dependent columns first")
        tau = (Q**2).sum(dim=1)  # leverage scores of W^{1/2-1/p} A = w^{1-2/p} a_i^T M^{-1} a_i
        new = (tau * w ** (2.0 / p - 1.0)) ** (p / 2)  # = (a_iᵀ M⁻¹ a_i)^{p/2}
        change = float(torch.linalg.vector_norm(new - w) / torch.linalg.vector_norm(w))
        w = new
        if change <= tol:
            break
    return w


@dataclass
class SampledRows(Result):
    """Rows sampled with replacement for an ℓp subspace embedding.

    Attributes:
        indices: ``[m]`` row indices; weights: ``[m]`` row scales ``(1/(m π_i))^{1/p}``;
        probabilities: ``[n]`` the sampling law ``π``; total_sensitivity: the bound ``Σ σ̂_i`` used.
    """

    indices: Tensor
    weights: Tensor
    probabilities: Tensor
    total_sensitivity: float

    def apply(self, A: Any) -> Tensor:
        """The sampled and rescaled rows ``S·A`` (``[m, …]``)."""
        A = torch.as_tensor(A)
        w = self.weights.to(A.dtype)
        return A[self.indices] * (w[:, None] if A.ndim == 2 else w)


def sensitivity_sample(
    A: Any, p: float, m: int, *, generator: torch.Generator | None = None
) -> SampledRows:
    """ℓp sensitivity sampling of ``m`` rows (Woodruff & Yasuda, arXiv 2306.00732) via Lewis weights.

    Probabilities ``π_i ∝ σ̂_i = d^{max(0, p/2−1)} w_i`` (``w`` the ℓp Lewis weights for ``p < 4``; for
    ``p ≥ 4`` the ℓ2 leverage scores with the bound ``σ_i ≤ d^{p/2−1} ℓ_i``), and weights
    ``(1/(m π_i))^{1/p}`` so that ``E ‖S A x‖_p^p = ‖A x‖_p^p`` for every ``x``.
    """
    A = _dense(A, "sensitivity_sample")
    p = _check_p(p, "sensitivity_sample")
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"sensitivity_sample: m must be a positive int, got {m!r}")
    d = A.shape[1]
    w = lewis_weights(A, p) if p < 4 else leverage_scores(A)
    sens = d ** max(0.0, p / 2 - 1) * w
    sens = torch.clamp(sens, max=1.0)  # a sensitivity never exceeds 1
    pi = sens / sens.sum()
    g = resolve_generator(generator)
    idx = torch.multinomial(pi.to(torch.float64), m, replacement=True, generator=g)
    weights = (1.0 / (m * pi[idx])) ** (1.0 / p)
    return SampledRows(indices=idx, weights=weights, probabilities=pi, total_sensitivity=float(sens.sum()))


@dataclass
class LpResult(Result):
    """Solution of ``min ‖Ax − b‖_p``.

    Attributes:
        x: ``[d]``; objective: ``‖Ax − b‖_p`` on the full data; iterations; converged;
        sample_size: rows of the sampled problem (0 = the full problem).
    """

    x: Tensor
    objective: float
    iterations: int
    converged: bool
    sample_size: int = 0


def _irls(A: Tensor, b: Tensor, p: float, max_iters: int, tol: float, eps: float) -> tuple[Tensor, int, bool]:
    def obj(x: Tensor) -> float:
        return float((A @ x - b).abs().pow(p).sum())

    x = torch.linalg.lstsq(A, b[:, None], driver="gelsd").solution[:, 0]
    f = obj(x)
    if p == 2:
        return x, 0, True
    scale = float(torch.linalg.vector_norm(b)) / math.sqrt(len(b)) + 1e-300
    for it in range(1, max_iters + 1):
        r = (A @ x - b).abs()
        wt = torch.clamp(r, min=eps * scale) ** (p - 2)
        sw = torch.sqrt(wt)
        x_new = torch.linalg.lstsq(sw[:, None] * A, (sw * b)[:, None], driver="gelsd").solution[:, 0]
        step = 1.0
        f_new = obj(x_new)
        while f_new > f and step > 1e-8:  # backtracking: never increase the objective
            step /= 2
            f_new = obj(x + step * (x_new - x))
        if f_new > f:
            return x, it, True
        x_next = x + step * (x_new - x)
        rel = float(torch.linalg.vector_norm(x_next - x) / (torch.linalg.vector_norm(x) + 1e-300))
        x, f_prev, f = x_next, f, f_new
        if rel <= tol or (f_prev - f) <= tol * f_prev:
            return x, it, True
    return x, max_iters, False


def lp_regression(
    A: Any,
    b: Any,
    p: float,
    *,
    sample_size: int | None = None,
    max_iters: int = 200,
    tol: float = 1e-10,
    generator: torch.Generator | None = None,
) -> LpResult:
    """``min_x ‖A x − b‖_p`` (``p ≥ 1``) by IRLS, optionally on a sensitivity-sampled problem.

    Args:
        A: ``[n, d]``; b: ``[n]``; p: ``≥ 1``.
        sample_size: if given, solve on ``m`` rows of ``[A, b]`` drawn by :func:`sensitivity_sample`
            (a ``(1 ± ε)`` ℓp subspace embedding of ``[A, b]`` for ``m ≳ d^{max(1, p/2)} log d / ε²``), so the
            solution's objective is within ``(1+ε)/(1−ε)`` of the optimum.
        max_iters, tol: IRLS budget and relative tolerance.
        generator: sampling randomness.

    Returns:
        :class:`LpResult` (``objective`` is evaluated on the full data).

    Raises:
        ValueError: ``p < 1``, ``b`` of the wrong length, NaN/Inf.
    """
    A = _dense(A, "lp_regression")
    if not isinstance(p, (int, float)) or isinstance(p, bool) or p < 1:
        raise ValueError(f"lp_regression: p must be a number >= 1 (IRLS needs a convex objective), got {p!r}")
    b = torch.as_tensor(b).to(A.dtype)
    if b.ndim != 1 or b.shape[0] != A.shape[0]:
        raise ValueError(f"lp_regression: b must be a vector of length n={A.shape[0]}, got shape {tuple(b.shape)}")
    if not bool(torch.isfinite(b).all()):
        raise ValueError("lp_regression: b contains NaN or Inf")
    As, bs, m = A, b, 0
    if sample_size is not None:
        Ab = torch.cat([A, b[:, None]], dim=1)
        smp = sensitivity_sample(Ab, float(p), int(sample_size), generator=generator)
        Sab = smp.apply(Ab)
        As, bs, m = Sab[:, :-1], Sab[:, -1], int(sample_size)
    x, its, ok = _irls(As, bs, float(p), max_iters, tol, eps=1e-8)
    objective = float((A @ x - b).abs().pow(p).sum() ** (1.0 / p))
    return LpResult(x=x, objective=objective, iterations=its, converged=ok, sample_size=m)
