"""Randomized least squares ``min_x ‖A x − b‖₂`` for tall ``A`` (``n × d``, ``n ≫ d``).

Methods:
``"sketch_precondition"`` (Rokhlin & Tygert 2008; Avron, Maymounkov & Toledo, "Blendenpik", 2010;
    Meng, Saunders & Mahoney, "LSRN", arXiv 1109.5981): sketch ``S·A`` (``m = sketch_size`` rows,
    default ``10·d``, ``40·d`` for very tall ``A``), factor ``S·A = Q R`` (or, if ``S·A`` is numerically rank
    deficient, the SVD ``S·A = U Σ Vᵀ`` truncated at ``rcond``), warm start from the sketch-and-solve solution
    ``x₀ = R⁻¹ Qᵀ S b``, then LSQR (Paige & Saunders, ACM TOMS 8(1), 1982) on the preconditioned
    problem ``min_y ‖A R⁻¹ y − b‖``. ``κ(A R⁻¹) ≤ (1+ε)/(1−ε)`` for a subspace embedding of distortion
    ``ε``, so the iteration count depends only on ``tol`` and ``d/m``, not on ``κ(A)``. With the SVD
    preconditioner ``P = V_r Σ_r⁻¹`` the iterates stay in the row space, giving the minimum-norm solution.
    Each LSQR step reads ``A`` once (``u ← A R⁻¹ v − α u``, ``‖u‖`` and ``Aᵀu`` per cache-sized row block,
    :meth:`~eigenlens.linalg.distributed.RowBlocks.update_rmatmat`), as do the warm-start residual and the
    certificate (``r``, ``‖r‖``, ``Aᵀr`` and ``‖A‖_F`` together).
``"sketch_and_solve"``: ``x = argmin ‖S A x − S b‖``, one pass, accuracy ``(1+ε)`` in the residual; with
    a dense sketch (``gaussian``/``srht``) it is also accurate coordinate-wise, the ℓ∞ regime
    ("A nearly-optimal bound for fast regression with ℓ∞ guarantee", Price, Song & Woodruff, arXiv 2302.00248).
``"kaczmarz"``: randomized Kaczmarz (Strohmer & Vershynin, arXiv math/0702226), rows sampled ``∝ ‖a_i‖²``;
    for consistent systems.
``"sketch_and_project"``: block Kaczmarz / sketch-and-project (Gower & Richtárik, arXiv 1506.03296); each
    step projects onto ``{x : A_τ x = b_τ}`` for a random block ``τ`` of rows; for consistent systems.
``"direct"``: dense LAPACK ``gelsd`` (the reference; used by ``"auto"`` when ``n < 2·sketch_size``).

Certificates: ``backward_error`` is the Karlson–Waldén estimate (Karlson & Waldén, BIT 37, 1997; Grcar,
"Optimal sensitivity analysis of linear least squares", 2003) ``‖(AᵀA + μI)^{-1/2} Aᵀ r‖ / ‖x‖`` with
``μ = ‖r‖²/‖x‖²``, taking ``AᵀA ≈ (SA)ᵀ(SA)``, capped by ``‖r‖/‖x‖`` and divided by ``‖A‖_F`` (a relative
normwise backward error, within a small factor of the true one). ``normal_residual`` is
``‖Aᵀ r‖ / (‖A‖_F ‖r‖)``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eigenlens._result import Result
from eigenlens.linalg.distributed import LocalRows, OperatorRows, RowBlocks, row_blocks
from eigenlens.linalg.exceptions import ConvergenceWarning
from eigenlens.linalg.random import resolve_generator
from eigenlens.linalg.sketch import DEFAULT_BLOCK_SIZE, KINDS
from eigenlens.linalg.sketch import sketch as make_sketch

__all__ = ["LstsqResult", "lstsq", "lsqr"]

METHODS = ("auto", "sketch_precondition", "sketch_and_solve", "kaczmarz", "sketch_and_project", "direct")


@dataclass
class LstsqResult(Result):
    """Solution of ``min ‖A x − b‖``.

    Attributes:
        x: ``[d]`` solution (dtype of ``A``).
        residual_norm: ``‖b − A x‖``.
        iterations: LSQR / Kaczmarz iterations (0 for direct and sketch-and-solve).
        method: the method actually used.
        backward_error: relative normwise backward error estimate (see module docstring); ``≈ 1e-16`` is exact.
        condition_estimate: ``κ(A)`` estimated from the sketch (``σ_max(SA)/σ_min(SA)`` over the kept rank).
        preconditioned_condition: ``κ₂(A R⁻¹)`` estimated from the singular values of LSQR's Golub–Kahan
            bidiagonal (Ritz values; NaN when not applicable).
        normal_residual: ``‖Aᵀ r‖ / (‖A‖_F ‖r‖)`` (0 when ``r = 0``).
        rank: numerical rank used (``d`` unless the SVD fallback truncated it).
        preconditioner: ``"qr"``, ``"svd"`` or ``""``.
        converged: whether the stopping test was met.
        sketch_size: rows of the sketch (0 if none).
        history: per-iteration LSQR estimate of ``‖Mᵀr‖/(‖M‖‖r‖)`` for the preconditioned ``M``.
    """

    x: Tensor
    residual_norm: float
    iterations: int
    method: str
    backward_error: float = float("nan")
    condition_estimate: float = float("nan")
    preconditioned_condition: float = float("nan")
    normal_residual: float = float("nan")
    rank: int = 0
    preconditioner: str = ""
    converged: bool = True
    sketch_size: int = 0
    history: list[float] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ LSQR
def lsqr(
    bk: RowBlocks,
    b: Any,
    P: Tensor | None = None,
    *,
    R: Tensor | None = None,
    y0: Tensor | None = None,
    tol: float = 1e-12,
    max_iters: int = 1000,
) -> tuple[Tensor, dict[str, Any]]:
    """LSQR (Paige & Saunders 1982) for ``min_y ‖A P y − b‖`` on a row-block backend; returns ``(y, info)``.

    Args:
        bk: the matrix ``A`` as a :class:`~eigenlens.linalg.distributed.RowBlocks`.
        b: right-hand side as a row vector of ``bk`` (``[n, 1]``).
        P: ``[d, r]`` right preconditioner (None = identity).
        R: ``[d, d]`` upper-triangular preconditioner applied as ``R⁻¹`` by triangular solves (instead of ``P``).
        y0: ``[r]`` starting point (the iteration solves for the correction).
        tol: stop when ``‖Mᵀr‖ ≤ tol·‖M‖·‖r‖`` or ``‖r‖ ≤ tol·‖b‖`` (``M = A P``, LSQR's running ``‖M‖_F``).
        max_iters: iteration budget.

    Returns:
        ``y`` and a dict with ``iterations``, ``converged``, ``acond`` (``κ(M)`` estimate), ``history``.
    """
    dt = bk.dtype
    if P is not None and R is not None:
        raise ValueError("lsqr: give P or R, not both")
    r = P.shape[1] if P is not None else bk.shape[1]

    def precond(v: Tensor) -> Tensor:  # P v, or R⁻¹ v
        if R is not None:
            return torch.linalg.solve_triangular(R, v, upper=True)
        return P @ v if P is not None else v

    def precond_t(g: Tensor) -> Tensor:  # Pᴴ g, or R⁻ᴴ g
        if R is not None:
            return torch.linalg.solve_triangular(R.mH, g, upper=False)
        return P.mT.conj() @ g if P is not None else g

    # One pass over A per step: bk.update_rmatmat forms û ← A P v − α u, ‖û‖² and Aᴴû block by block while
    # each block is in cache (Aᴴ of the new vector computed directly, not by a recurrence). The Golub–Kahan
    # vector u = û/β is kept unnormalised (û, β): the next step uses α u = (α/β) û, so no pass over u is
    # spent on scaling it. Row vectors that are torch tensors (in memory, torch.distributed) are updated in
    # place, so û starts as our own copy of b.
    bnorm = float(torch.sqrt(bk.sqnorms(b)[0]))
    y = torch.zeros(r, 1, dtype=dt, device=bk.device) if y0 is None else y0.reshape(r, 1).clone()
    u = b.clone() if isinstance(b, Tensor) else b
    if y0 is None:
        beta2, g = bk.sqnorms(u), bk.rmatmat(u)
    else:  # û ← b − A P y₀ = A (−P y₀) − (−1)·b, its norm and Aᴴû in one pass
        u, beta2, g, _ = bk.update_rmatmat(-precond(y), -1.0, u)
    beta = float(torch.sqrt(beta2[0]))
    info: dict[str, Any] = {"iterations": 0, "converged": True, "acond": float("nan"), "history": []}
    if beta == 0.0:
        return y[:, 0], info
    v = precond_t(g / beta)
    alpha = float(torch.linalg.vector_norm(v))
    if alpha == 0.0:
        return y[:, 0], info
    v = v / alpha
    w = v.clone()
    phibar, rhobar = beta, alpha
    anorm = ddnorm = 0.0
    converged = False
    it = 0
    alphas, betas = [alpha], []
    for it in range(1, max_iters + 1):  # noqa: B007 (it is reported after the loop)
        u, beta2, g, _ = bk.update_rmatmat(precond(v), alpha / beta, u)  # û ← A P v − α·(û/β)
        beta = float(torch.sqrt(beta2[0]))
        anorm = math.sqrt(anorm**2 + alpha**2 + beta**2)
        if beta > 0:
            v = precond_t(g / beta) - beta * v
            alpha = float(torch.linalg.vector_norm(v))
            if alpha > 0:
                v = v / alpha
        alphas.append(alpha)
        betas.append(beta)
        rho = math.hypot(rhobar, beta)
        c, s = rhobar / rho, beta / rho
        theta = s * alpha
        rhobar = -c * alpha
        phi = c * phibar
        phibar = s * phibar
        y = y + (phi / rho) * w
        ddnorm += float(torch.linalg.vector_norm(w)) ** 2 / rho**2
        w = v - (theta / rho) * w
        rnorm = phibar
        arnorm = alpha * abs(c) * phibar
        test2 = arnorm / (anorm * rnorm) if rnorm > 0 else 0.0
        info["history"].append(test2)
        if test2 <= tol or rnorm <= tol * bnorm or beta == 0 or alpha == 0:
            converged = True
            break
    # κ(M) from the Golub–Kahan bidiagonal B_k (diag α_1..α_k, subdiagonal β_2..β_{k+1}): its extreme
    # singular values are Ritz approximations of those of M (from inside, so this is a lower estimate)
    k = len(betas)
    B = torch.zeros(k + 1, k, dtype=torch.float64)
    idx = torch.arange(k)
    B[idx, idx] = torch.tensor(alphas[:k], dtype=torch.float64)
    B[idx + 1, idx] = torch.tensor(betas, dtype=torch.float64)
    sv = torch.linalg.svdvals(B)
    acond = float(sv[0] / sv[-1]) if sv.numel() and sv[-1] > 0 else float("inf")
    info.update(iterations=it, converged=converged, acond=acond, acond_frobenius=anorm * math.sqrt(ddnorm))
    return y[:, 0], info


# ------------------------------------------------------------------------------------------ helpers
def _check_b(bk: RowBlocks, b: Any) -> Any:
    n = bk.shape[0]
    if isinstance(b, RowBlocks):
        raise TypeError("lstsq: b must be a vector, not a matrix wrapper")
    shape = tuple(b.shape) if hasattr(b, "shape") else None
    if shape is None:
        b = np.asarray(b)
        shape = b.shape
    local = getattr(bk, "n_local", n)
    if len(shape) != 1 or shape[0] not in (n, local):
        raise ValueError(
            f"lstsq: b must be a vector of length n={n} (the number of rows of A), got shape {shape}; "
            "for several right-hand sides call lstsq once per column"
        )
    if isinstance(b, Tensor) and not bool(torch.isfinite(b).all()):
        raise ValueError("lstsq: b contains NaN or Inf; clean the right-hand side")
    if isinstance(b, np.ndarray) and not np.isfinite(b).all():
        raise ValueError("lstsq: b contains NaN or Inf; clean the right-hand side")
    return bk.rows(b)


def _factor(
    SA: Tensor, Sb: Tensor, preconditioner: str, rcond: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, str, int]:
    """Factor the sketch: ``(P [d, r], z₀ = Q_rᴴ S b [r], σ [r], V [d, r], kind, rank)``.

    ``P = R`` (QR ``S·A = Q R``, ``Q_r = Q``; the preconditioner is ``R⁻¹``, applied by triangular solves)
    or ``P = V_r Σ_r⁻¹`` (SVD, ``Q_r = U_r``; applied by a product); ``σ, V`` are the singular values and
    right singular vectors of ``S·A`` (used by the backward-error certificate). The QR is that of
    ``[S·A, S·b]`` without forming ``Q``: its ``R`` holds ``R`` and ``Qᴴ S b`` (Golub & Van Loan, §5.3.3).
    """
    d = SA.shape[1]
    if preconditioner in ("qr", "auto"):
        Raug = torch.linalg.qr(torch.cat([SA, Sb[:, None]], dim=1), mode="r").R
        R, z0 = Raug[:d, :d].contiguous(), Raug[:d, d].contiguous()
        _, sv, Vh = torch.linalg.svd(R)
        if sv[-1] > rcond * sv[0]:
            return R, z0, sv, Vh.mH, "qr", d
        if preconditioner == "qr":
            raise ValueError(
                f"lstsq: A is numerically rank deficient (σ_min/σ_max of the sketch = {float(sv[-1] / sv[0]):.1e} "
                f"<= rcond={rcond:.1e}), so the QR preconditioner R is singular; use preconditioner='svd' "
                "(or 'auto') for the minimum-norm solution, or remove dependent columns"
            )
    U, s, Vh = torch.linalg.svd(SA, full_matrices=False)
    rank = int((s > rcond * s[0]).sum()) if s[0] > 0 else 0
    if rank == 0:
        raise ValueError("lstsq: A is zero (the sketch of A has no nonzero singular value)")
    V = Vh[:rank].mH
    return V / s[:rank], U[:, :rank].mH @ Sb, s[:rank], V, "svd", rank


def _certificate(bk: RowBlocks, b: Any, x: Tensor, sv: Tensor | None, V: Tensor | None) -> dict[str, float]:
    # r = b − A x = A(−x) − (−1)·b, ‖r‖², Aᴴr and ‖A‖_F² in one pass over A (b is not modified)
    r0 = b.clone() if isinstance(b, Tensor) else b
    _, rn2, g, f2 = bk.update_rmatmat(-x[:, None], -1.0, r0, fro=True)
    rn = float(torch.sqrt(rn2[0]))
    g = g[:, 0]
    normA = math.sqrt(float(f2[0]))
    xn = float(torch.linalg.vector_norm(x))
    gn = float(torch.linalg.vector_norm(g))
    normal = gn / (normA * rn) if rn > 0 and normA > 0 else 0.0
    if rn == 0 or normA == 0:
        be = 0.0
    elif xn == 0:
        be = normal
    else:
        mu = rn**2 / xn**2
        if sv is not None and V is not None:
            h = V.mH @ g
            kw = float(torch.linalg.vector_norm(h / torch.sqrt(sv**2 + mu))) / xn
            # the part of g outside span(V) (numerically zero for the minimum-norm solution)
            rest = float(torch.linalg.vector_norm(g - V @ h)) / math.sqrt(mu) / xn
            kw = math.hypot(kw, rest)
        else:
            kw = gn / math.sqrt(mu) / xn
        be = min(rn / xn, kw) / normA
    return {"residual_norm": rn, "backward_error": be, "normal_residual": normal}


def _default_sketch_size(n: int, d: int) -> int:
    """``10·d`` rows, raised to ``40·d`` for very tall ``A`` (``n ≥ 4·d²``).

    LSQR on ``A R⁻¹`` contracts by about ``√(d/m)`` per iteration, so ``m = 40·d`` needs ~14 iterations to
    ``tol = 1e-12`` instead of ~21 at ``10·d``: 14 fewer passes over ``A`` for a QR of ``S·A`` that costs
    ``2·m·d²`` flops — worth it when ``d² ≪ n`` (the sketch apply itself does not grow with ``m``).
    """
    base = max(10 * d, d + 20)
    return min(n, 4 * base if n >= 4 * d * d else base)


# ------------------------------------------------------------------------------------------ public
def lstsq(
    A: Any,
    b: Any,
    *,
    method: str = "auto",
    sketch: str = "sparse_sign",
    tol: float = 1e-12,
    generator: torch.Generator | None = None,
    sketch_size: int | None = None,
    preconditioner: str = "auto",
    rcond: float | None = None,
    max_iters: int | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    seed: int | None = None,
) -> LstsqResult:
    """Solve ``min_x ‖A x − b‖₂`` with randomized preconditioning or sketching (see the module docstring).

    Args:
        A: ``[n, d]`` torch tensor, NumPy array, SciPy sparse matrix, :class:`LinearOperator`, Dask array, or a
            :class:`~eigenlens.linalg.distributed.RowBlocks` (e.g. a torch.distributed shard).
        b: ``[n]`` right-hand side (on torch.distributed: the local rows, or all ``n`` rows).
        method: ``"auto"`` (sketch-and-precondition, or ``"direct"`` for small problems),
            ``"sketch_precondition"``, ``"sketch_and_solve"``, ``"kaczmarz"``, ``"sketch_and_project"``,
            ``"direct"``.
        sketch: the sketch kind (see :func:`eigenlens.linalg.sketch.sketch`).
        tol: LSQR stopping tolerance on ``‖Mᵀr‖/(‖M‖‖r‖)`` (and ``‖r‖/‖b‖``); Kaczmarz: on
            ``‖r‖/‖b‖``.
        generator: randomness (None = fresh generator seeded 0); ``seed`` fixes the sketch seed directly.
        sketch_size: rows of the sketch (default ``10·d``, ``40·d`` when ``n ≥ 4·d²``; at most ``n``).
        preconditioner: ``"auto"`` (QR; falls back to the SVD if ``S·A`` is rank deficient — documented,
            reported in ``result.preconditioner``), ``"qr"`` (raises on rank deficiency), ``"svd"``.
        rcond: relative singular-value cutoff for the rank (default ``max(m, d)·eps``).
        max_iters: iteration budget (default ``max(200, 4d)`` for LSQR, ``50·n`` row steps for Kaczmarz).
        block_size: rows per counter block of the sketch (must match the row blocks of distributed ``A``).

    Returns:
        :class:`LstsqResult`.

    Raises:
        ValueError: bad method/sketch/preconditioner/tol, ``b`` of the wrong length, NaN/Inf in ``A`` or ``b``,
            rank-deficient ``A`` with ``preconditioner="qr"``, an underdetermined ``A`` (``n < d``).
        TypeError: an unsupported type of ``A``.

    Warns:
        ConvergenceWarning: the iteration budget ran out before ``tol`` was met.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> A = torch.randn(3000, 20, dtype=torch.float64, generator=g)
        >>> x_true = torch.arange(20, dtype=torch.float64)
        >>> res = lstsq(A, A @ x_true, method="sketch_precondition")
        >>> bool(torch.allclose(res.x, x_true, atol=1e-9)), res.method
        (True, 'sketch_precondition')
    """
    if method not in METHODS:
        raise ValueError(f"lstsq: unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if sketch not in KINDS or sketch in ("uniform", "importance"):
        raise ValueError(
            f"lstsq: sketch must be an oblivious subspace embedding, one of gaussian, rademacher, sparse_sign, "
            f"countsketch, srht, srct; got {sketch!r}"
        )
    if preconditioner not in ("auto", "qr", "svd"):
        raise ValueError(f"lstsq: preconditioner must be 'auto', 'qr' or 'svd', got {preconditioner!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"lstsq: tol must be in (0, 1), got {tol!r}")
    bk = row_blocks(A, block_size=block_size)
    n, d = bk.shape
    if n < d:
        raise ValueError(
            f"lstsq: A has shape ({n}, {d}) with fewer rows than columns; this solver is for overdetermined "
            "(tall) problems. For the minimum-norm solution of an underdetermined system use torch.linalg.lstsq"
        )
    if n == 0 or d == 0:
        raise ValueError(f"lstsq: A must be non-empty, got shape ({n}, {d})")
    bvec = _check_b(bk, b)
    m = _default_sketch_size(n, d) if sketch_size is None else int(sketch_size)
    if not d <= m <= n:
        raise ValueError(f"lstsq: sketch_size must be in [d, n] = [{d}, {n}], got {m}")
    if rcond is None:
        rcond = max(m, d) * torch.finfo(bk.dtype).eps
    if method == "auto":
        small = n < 2 * (min(n, max(10 * d, d + 20)) if sketch_size is None else m)
        method = "direct" if (isinstance(bk, LocalRows) and type(bk) is LocalRows and small) else (
            "sketch_precondition"
        )
    if method == "direct":
        return _direct(bk, bvec)
    if method in ("kaczmarz", "sketch_and_project"):
        return _kaczmarz(bk, bvec, method, tol, max_iters, generator)

    S = make_sketch(sketch, m, n, generator=generator if seed is None else None, seed=seed,
                    block_size=block_size, dtype=bk.dtype, device=bk.device)
    SA = bk.sketch(S)
    if not bool(torch.isfinite(SA).all()):
        raise ValueError("lstsq: the sketch of A contains NaN or Inf, so A has non-finite entries; clean the matrix")
    Sb = bk.sketch_rows(S, bvec)[:, 0]
    P, z0, sv, V, kind, rank = _factor(
        SA, Sb, "svd" if method == "sketch_and_solve" and preconditioner == "auto" else preconditioner, rcond
    )
    cond = float(sv[0] / sv[-1])

    def precondition(y: Tensor) -> Tensor:
        if kind == "qr":
            return torch.linalg.solve_triangular(P, y[:, None], upper=True)[:, 0]
        return P @ y

    if method == "sketch_and_solve":
        x = precondition(z0)
        cert = _certificate(bk, bvec, x, sv, V)
        return LstsqResult(x=x, iterations=0, method="sketch_and_solve", condition_estimate=cond, rank=rank,
                           preconditioner=kind, sketch_size=m, **cert)
    its = max(200, 4 * d) if max_iters is None else int(max_iters)
    y, info = lsqr(bk, bvec, None if kind == "qr" else P, R=P if kind == "qr" else None, y0=z0, tol=tol,
                   max_iters=its)
    x = precondition(y)
    if not info["converged"]:
        warnings.warn(
            f"lstsq: LSQR stopped after {info['iterations']} iterations without meeting tol={tol:g} "
            f"(last ‖Mᵀr‖/(‖M‖‖r‖) = {info['history'][-1] if info['history'] else float('nan'):.2e}); "
            "raise max_iters or sketch_size",
            ConvergenceWarning,
            stacklevel=2,
        )
    cert = _certificate(bk, bvec, x, sv, V)
    return LstsqResult(
        x=x, iterations=info["iterations"], method="sketch_precondition", condition_estimate=cond,
        preconditioned_condition=info["acond"], rank=rank, preconditioner=kind, converged=info["converged"],
        sketch_size=m, history=info["history"], **cert,
    )


def _dense(bk: RowBlocks, what: str) -> Tensor:
    A = None
    if isinstance(bk, LocalRows) and type(bk) is LocalRows:
        A = torch.from_numpy(bk.A.toarray()) if bk.sparse else bk.A
    elif isinstance(bk, OperatorRows):
        A = bk.op.to_dense()
    if A is not None:
        if not bool(torch.isfinite(A).all()):
            raise ValueError("lstsq: A contains NaN or Inf; clean the matrix")
        return A
    raise ValueError(f"lstsq: method={what!r} needs the whole matrix in memory; use method='sketch_precondition'")


def _direct(bk: RowBlocks, b: Tensor) -> LstsqResult:
    A = _dense(bk, "direct")
    driver = "gelsd" if A.device.type == "cpu" else None
    x = torch.linalg.lstsq(A, b, driver=driver).solution[:, 0]
    U, s, Vh = torch.linalg.svd(A, full_matrices=False)
    rank = int((s > max(A.shape) * torch.finfo(A.dtype).eps * s[0]).sum()) if s.numel() and s[0] > 0 else 0
    cert = _certificate(bk, b, x, s[:rank], Vh[:rank].mH)
    cond = float(s[0] / s[rank - 1]) if rank else float("inf")
    return LstsqResult(x=x, iterations=0, method="direct", condition_estimate=cond, rank=rank, **cert)


def _kaczmarz(bk: RowBlocks, b: Tensor, method: str, tol: float, max_iters: int | None,
              generator: torch.Generator | None) -> LstsqResult:
    A = _dense(bk, method)
    n, d = A.shape
    bb = b[:, 0]
    g = resolve_generator(generator)
    rown = (A * A.conj()).real.sum(dim=1)
    if bool((rown == 0).all()):
        raise ValueError("lstsq: A is zero")
    p = rown / rown.sum()
    bnorm = float(torch.linalg.vector_norm(bb))
    x = torch.zeros(d, dtype=A.dtype, device=A.device)
    block = 1 if method == "kaczmarz" else min(n, max(d, 8))
    budget = (50 * n if method == "kaczmarz" else 50 * -(-n // block)) if max_iters is None else int(max_iters)
    check = max(1, n // (4 * block))
    it = 0
    converged = False
    rel = float("inf")
    while it < budget:
        steps = min(check, budget - it)
        idx_all = torch.multinomial(p.cpu(), steps * block, replacement=True, generator=g).to(A.device)
        for s in range(steps):
            idx = idx_all[s * block : (s + 1) * block]
            Ai = A[idx]
            ri = bb[idx] - Ai @ x
            if block == 1:
                x = x + (ri[0] / rown[idx[0]]) * Ai[0].conj()
            else:
                x = x + torch.linalg.lstsq(Ai, ri[:, None], driver="gelsd" if A.device.type == "cpu" else None
                                           ).solution[:, 0]
        it += steps
        rel = float(torch.linalg.vector_norm(bb - A @ x)) / max(bnorm, 1e-300)
        if rel <= tol:
            converged = True
            break
    if not converged:
        warnings.warn(
            f"lstsq: {method} stopped after {it} steps with ‖r‖/‖b‖ = {rel:.2e} > tol={tol:g}; Kaczmarz methods "
            "converge only for consistent systems (b in the range of A). Use method='sketch_precondition' for "
            "least squares, or raise max_iters",
            ConvergenceWarning,
            stacklevel=3,
        )
    cert = _certificate(bk, b, x, None, None)
    return LstsqResult(x=x, iterations=it, method=method, converged=converged, **cert)

