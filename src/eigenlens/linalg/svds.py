"""The largest singular triplets of a (rectangular) operator by thick-restart Golub–Kahan–Lanczos bidiagonalisation.

With orthonormal right vectors ``P`` (``n × j``), left vectors ``Q`` (``m × j``), a small ``j × j`` matrix
``B = Qᴴ A P`` and a residual ``f ⟂ P``, the process keeps

    A P = Q B,        Aᴴ Q = P Bᴴ + f e_jᵀ.

Each step costs one product with ``A`` and one with ``Aᴴ`` and orthogonalises against the whole basis
twice (CGS2). With ``B = U Σ Wᴴ``, the Ritz triplets ``(σ_i, Q u_i, P w_i)`` satisfy ``A v − σ u = 0`` and
``‖Aᴴ u_i − σ_i v_i‖ = ‖f‖ · |U[j, i]|``, so convergence is checked without extra products. When the basis
is full, the leading Ritz vectors are kept (thick restart: ``B`` becomes ``diag(σ)`` plus one coupling
column) and the expansion continues from ``f``.

References:
    G. Golub, W. Kahan, *Calculating the singular values and pseudo-inverse of a matrix*, SIAM J. Numer.
    Anal. 2 (1965).
    J. Baglama, L. Reichel, *Augmented implicitly restarted Lanczos bidiagonalization methods*, SIAM J. Sci.
    Comput. 27 (2005) — thick restarts with Ritz vectors.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from eigenlens._result import Result
from eigenlens.linalg.exceptions import ConvergenceWarning
from eigenlens.linalg.lanczos import _breakdown_rtol, _check_positive_int, _compute_dtype, _matvec_budget
from eigenlens.linalg.operator import LinearOperator, aslinearoperator
from eigenlens.linalg.random import resolve_generator

__all__ = ["svds", "SvdsResult"]


@dataclass(frozen=True)
class SvdsResult(Result):
    """The output of :func:`svds` (and of randomized SVDs elsewhere in eigenlens).

    Attributes:
        u: ``[m, k]`` left singular vectors (operator dtype), orthonormal columns.
        s: ``[k]`` singular values, descending, float64.
        v: ``[n, k]`` right singular vectors (operator dtype), orthonormal columns; ``A v_i ≈ s_i u_i``.
        num_matvecs: products with ``A`` plus products with ``Aᴴ`` (vectors).
        converged: whether every residual ``‖Aᴴ u_i − s_i v_i‖`` met ``tol · ‖A‖_est``.
        residual_norms: ``[k]`` float64, ``‖Aᴴ u_i − s_i v_i‖`` (``A v_i − s_i u_i`` is zero by construction).
    """

    u: Tensor
    s: Tensor
    v: Tensor
    num_matvecs: int
    converged: bool
    residual_norms: Tensor | None = None


def _project(V: Tensor, w: Tensor) -> Tensor:
    """``w − V Vᴴ w`` twice (CGS2)."""
    if V.shape[1] == 0:
        return w
    for _ in range(2):
        w = w - V @ (V.mH @ w)
    return w


def svds(
    op: Any,
    k: int = 6,
    *,
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    generator: torch.Generator | None = None,
    ncv: int | None = None,
    progress: bool = False,
) -> SvdsResult:
    """The ``k`` largest singular values and vectors of an ``m × n`` operator, matrix-free.

    Thick-restart Golub–Kahan–Lanczos bidiagonalisation with full reorthogonalisation (CGS2) in float64
    (complex128); products run in the operator's dtype. A triplet is accepted when
    ``‖Aᴴ u − σ v‖ <= tol · ‖A‖_est`` (``‖A‖_est`` = the largest Ritz singular value); then ``σ`` is within
    ``tol·‖A‖_est`` of a singular value. Small problems (``ncv + 1 > min(m, n)``) are solved densely from
    ``op.to_dense()`` (``n`` products, counted). Each step costs one product with ``A`` and one with ``Aᴴ``;
    ``num_matvecs`` counts both.

    Args:
        op: a :class:`~eigenlens.linalg.operator.LinearOperator` (any shape) with an adjoint product, or an
            explicit matrix (converted with :func:`~eigenlens.linalg.operator.aslinearoperator`).
        k: number of triplets, ``1 <= k <= min(m, n)``.
        tol: relative residual tolerance (``> 0``).
        max_matvecs: budget of products with ``A`` and ``Aᴴ`` together (default ``max(40·ncv, 20·min(m, n))``).
            When exhausted, the best triplets are returned with ``converged=False`` and a ConvergenceWarning.
        generator: randomness for the starting vector and fresh directions (``None``: seeded 0).
        ncv: basis size (default ``max(2k + 1, 20)``), ``>= k + 1``.
        progress: show a tqdm progress bar.

    Returns:
        An :class:`SvdsResult` with ``s`` descending. ``KeyboardInterrupt`` returns the current best triplets
        with a ConvergenceWarning.

    Raises:
        ValueError: ``k`` outside ``[1, min(m, n)]``, ``tol <= 0``, ``ncv < k + 1``, ``max_matvecs`` below the
            ``2k`` products needed (the message gives the minimum).
        TypeError: non-integer ``k``/``max_matvecs``/``ncv``.
        FloatingPointError: a product produced NaN/Inf (raised by the operator, naming the call).

    Example:
        >>> import torch, eigenlens as el
        >>> A = torch.zeros(60, 40, dtype=torch.float64)
        >>> A[torch.arange(40), torch.arange(40)] = torch.arange(40, 0, -1, dtype=torch.float64)
        >>> res = el.svds(el.aslinearoperator(A), k=3, tol=1e-10)
        >>> [round(x, 8) for x in res.s.tolist()], res.converged
        ([40.0, 39.0, 38.0], True)

    References:
        Golub & Kahan (1965); Baglama & Reichel, SIAM J. Sci. Comput. 27 (2005).
    """
    if not isinstance(op, LinearOperator):
        op = aslinearoperator(op)
    m, n = op.shape
    r = min(m, n)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int (the number of singular triplets), got {type(k).__name__} {k!r}")
    if not 1 <= k <= r:
        raise ValueError(f"k must satisfy 1 <= k <= min(m, n) = {r} for an operator of shape {op.shape}, got k = {k}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be a positive finite float (relative to ‖A‖), got {tol!r}")
    if ncv is None:
        p = max(2 * k + 1, 20)
    else:
        p = _check_positive_int(ncv, "ncv", "the basis size")
        if p < k + 1:
            raise ValueError(f"ncv must be >= k + 1 = {k + 1}, got {p}")
    dense = p + 1 > r
    need = n if dense else 2 * k
    why = (
        f"this small problem (min(m, n) = {r}) is solved densely, which takes n = {n} products"
        if dense
        else f"k = {k} triplets need k steps of one A and one Aᴴ product each"
    )
    budget = _matvec_budget(max_matvecs, max(40 * p, 20 * r), need, why, "svds", "the budget of products with A and Aᴴ")
    cdtype = _compute_dtype(op.dtype)
    g = resolve_generator(generator)
    if dense:
        A = op.to_dense().to(cdtype)
        U, S, Wh = torch.linalg.svd(A, full_matrices=False)
        return SvdsResult(
            u=U[:, :k].to(op.dtype),
            s=S[:k].to(torch.float64),
            v=Wh[:k].mH.to(op.dtype),
            num_matvecs=n,
            converged=True,
            residual_norms=torch.zeros(k, dtype=torch.float64, device=op.device),
        )
    return _gkl(op, k, tol, budget, p, g, cdtype, progress)


def _random(n: int, g: torch.Generator, cdtype: torch.dtype, device: torch.device) -> Tensor:
    x = torch.randn(n, 1, generator=g, dtype=torch.float64)
    if cdtype.is_complex:
        x = torch.complex(x, torch.randn(n, 1, generator=g, dtype=torch.float64))
    x = x.to(device=device, dtype=cdtype)
    return x / torch.linalg.vector_norm(x)


def _gkl(
    op: LinearOperator,
    k: int,
    tol: float,
    budget: int,
    p: int,
    g: torch.Generator,
    cdtype: torch.dtype,
    progress: bool,
) -> SvdsResult:
    m, n = op.shape
    dev = op.device
    rtol = _breakdown_rtol(max(m, n), op.dtype)
    P = torch.zeros(n, p, dtype=cdtype, device=dev)
    Q = torch.zeros(m, p, dtype=cdtype, device=dev)
    B = torch.zeros(p, p, dtype=cdtype, device=dev)
    f = _random(n, g, cdtype, dev)  # the next right vector direction (normalised below)
    j = 0
    anorm = 0.0
    total = 0
    converged = interrupted = False

    def fresh(V: Tensor, size: int) -> Tensor:
        x = _random(size, g, cdtype, dev)
        x = _project(V, x)
        return x / torch.linalg.vector_norm(x)

    def ritz() -> tuple[Tensor, Tensor, Tensor, Tensor]:
        U, S, Wh = torch.linalg.svd(B[:j, :j])
        res = float(torch.linalg.vector_norm(f)) * U[j - 1, :].abs().to(torch.float64)
        return U, S.to(torch.float64), Wh.mH, res

    from tqdm.auto import tqdm

    bar = tqdm(total=budget, desc="svds", unit="matvec", disable=not progress, leave=False)
    try:
        while total + 2 <= budget:
            # ---- right vector p_{j+1} = f / ‖f‖ (fresh direction on breakdown)
            beta = float(torch.linalg.vector_norm(f))
            pv = fresh(P[:, :j], n) if beta <= rtol * (anorm if j else 1.0) else f / beta
            w = (op @ pv.to(op.dtype)).to(cdtype)
            c = Q[:, :j].mH @ w if j else w.new_zeros(0, 1)
            w = w - Q[:, :j] @ c if j else w
            c2 = Q[:, :j].mH @ w if j else c
            w = w - Q[:, :j] @ c2 if j else w
            alpha = float(torch.linalg.vector_norm(w))
            anorm = max(anorm, alpha)
            qv = fresh(Q[:, :j], m) if alpha <= rtol * max(anorm, 1e-300) else w / alpha
            if alpha <= rtol * max(anorm, 1e-300):
                alpha = 0.0
            gv = (op.T @ qv.to(op.dtype)).to(cdtype)
            total += 2
            bar.update(2)
            Pj = torch.cat([P[:, :j], pv], dim=1)
            gv = _project(Pj, gv)
            # commit
            P[:, j : j + 1] = pv
            Q[:, j : j + 1] = qv
            if j:
                B[:j, j] = (c + c2)[:, 0]
            B[j, j] = alpha
            f = gv
            j += 1
            U, S, W, res = ritz()
            anorm = max(anorm, float(S[0]))
            thr = tol * max(anorm, torch.finfo(torch.float64).tiny)
            nconv = int((res[:k] <= thr).sum()) if j >= k else 0
            bar.set_postfix(converged=f"{nconv}/{k}")
            if j >= k and nconv == k:
                converged = True
                break
            if j < p:
                continue
            # ---- thick restart: keep the leading Ritz triplets, B = diag(σ) (+ coupling column next step)
            keep = min(p - 1, max(k, (p + k) // 2))
            Pk, Qk = P[:, :j] @ W[:, :keep].to(cdtype), Q[:, :j] @ U[:, :keep]
            P.zero_()
            Q.zero_()
            B.zero_()
            P[:, :keep], Q[:, :keep] = Pk, Qk
            B[:keep, :keep] = torch.diag(S[:keep]).to(cdtype)
            j = keep
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()

    if j < k:
        if interrupted:
            raise KeyboardInterrupt
        raise RuntimeError("svds: internal error, fewer Ritz triplets than k")  # pragma: no cover
    U, S, W, res = ritz()
    thr = tol * max(anorm, torch.finfo(torch.float64).tiny)
    converged = bool((res[:k] <= thr).all())
    if not converged or interrupted:
        reason = "was interrupted" if interrupted else f"used its budget of max_matvecs = {budget} products"
        warnings.warn(
            f"svds {reason} with {int((res[:k] <= thr).sum())} of {k} triplets converged to tol = {tol:g} "
            f"(largest residual {float(res[:k].max()):.3g}, threshold {thr:.3g}); returning the best Ritz "
            "triplets (raise max_matvecs, ncv or tol)",
            ConvergenceWarning,
            stacklevel=3,
        )
    u = (Q[:, :j] @ U[:, :k]).to(op.dtype)
    v = (P[:, :j] @ W[:, :k].to(cdtype)).to(op.dtype)
    return SvdsResult(u=u, s=S[:k], v=v, num_matvecs=total, converged=converged, residual_norms=res[:k])
