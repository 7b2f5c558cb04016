"""A few eigenpairs of a large symmetric operator: block Krylov–Schur (thick-restart Lanczos) on torch tensors.

The method keeps an orthonormal basis ``V = [V_lock, V_act]`` and a pending block ``P`` with

    A V_act = V_act H + P B,        A V_lock ≈ V_lock Θ_lock,

where ``H = V_actᴴ A V_act`` is symmetric and ``B`` is the coupling of the next block. Each step applies ``A`` once
to the pending block (one batched product of ``block_size`` columns), removes its coefficients on the recent
vectors (the only ones it couples to, by symmetry), then reorthogonalises against the whole basis (classical
Gram–Schmidt, repeated when it cancels, the DGKS criterion) and appends it; on the CPU this runs in NumPy on views
of the same memory, whose calls cost a fraction of torch's. The Ritz pairs ``(θ_i, V_act s_i)`` of ``H`` have
residuals ``‖A v_i − θ_i v_i‖ = ‖B s_i‖``, known without extra products; they are checked after every step until
the first restart, then less often (see ``_RR_SIZE``). When the basis is full, the wanted Ritz vectors and a few
next ones (ARPACK's adaptive count) are kept (thick restart: Wu & Simon 2000; Krylov–Schur: Stewart 2001),
converged wanted pairs are locked (deflated and kept out of further Rayleigh–Ritz), and the expansion continues
from the pending block.

References:
    G. W. Stewart, *A Krylov–Schur algorithm for large eigenproblems*, SIAM J. Matrix Anal. Appl. 23 (2001).
    K. Wu, H. Simon, *Thick-restart Lanczos method for large symmetric eigenvalue problems*,
    SIAM J. Matrix Anal. Appl. 22 (2000).
    Y. Zhou, Y. Saad, *Block Krylov–Schur method for large symmetric eigenvalue problems*,
    Numer. Algorithms 47 (2008).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from eigenlens._result import Result
from eigenlens.linalg.exceptions import ConvergenceWarning
from eigenlens.linalg.lanczos import (
    _as_operator,
    _breakdown_rtol,
    _check_positive_int,
    _check_v0,
    _compute_dtype,
    _matvec_budget,
    _require_symmetric,
)
from eigenlens.linalg.operator import LinearOperator
from eigenlens.linalg.random import resolve_generator

__all__ = ["eigsh", "EigshResult"]

_WHICH = ("LA", "SA", "LM", "BE")
#: lock (deflate) converged wanted Ritz pairs at restarts
_LOCK = True
#: Rayleigh–Ritz (an ``O(m³)`` eigensolve of the ``m × m`` active matrix) runs after every step until the
#: first restart while ``m < 2·_RR_SIZE`` (quick convergence, e.g. a Hessian's top eigenvalues in ~20
#: products, is seen at once), then after every ``max(2, ⌊m / _RR_SIZE⌋)``-th step (or later, see
#: ``_LOG_FASTEST``), and always before a restart (never while fewer than ``k`` Ritz pairs exist): for cheap
#: products the eigensolve would otherwise cost a large part of each step, for expensive ones at most
#: ``max(2, ⌊m / _RR_SIZE⌋) − 1`` extra products are spent past convergence in a long run.
_RR_SIZE = 20
#: after the first restart, a check is also skipped while the slowest unconverged wanted residual is so far
#: above the threshold that even a reduction by this factor per step (faster than the Lanczos convergence
#: seen on hard problems, which reach a restart) could not close the gap: ``⌊log(res/thr) / log(8)⌋`` steps
_LOG_FASTEST = math.log(8.0)
#: on the CPU, run the expansion in NumPy on views of the basis (see :func:`_expand_orthogonalize`)
_HOST_NUMPY = True


@dataclass(frozen=True)
class EigshResult(Result):
    """The output of :func:`eigsh`.

    Attributes:
        eigenvalues: ``[k]`` float64. Order: ``"LA"`` descending, ``"SA"`` ascending, ``"LM"`` by descending
            magnitude, ``"BE"`` ascending (the ``⌊k/2⌋`` smallest then the ``⌈k/2⌉`` largest).
        eigenvectors: ``[n, k]`` in the operator's dtype, orthonormal columns matching ``eigenvalues``.
        residual_norms: ``[k]`` float64, ``‖A v_i − θ_i v_i‖`` (from the Krylov relation; exact up to
            round-off, no extra products).
        num_matvecs: products with ``A`` (vectors, counting each column of a block product).
        converged: whether every residual met ``tol · ‖A‖_est``.
        norm_estimate: ``‖A‖_est``, the largest Ritz value magnitude seen (a lower bound on ``‖A‖₂``).
        method: ``"krylov-schur"`` or ``"dense"`` (small problems, see :func:`eigsh`).
        num_restarts: number of thick restarts.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor
    residual_norms: Tensor
    num_matvecs: int
    converged: bool
    norm_estimate: float = 0.0
    method: str = "krylov-schur"
    num_restarts: int = 0


# ---------------------------------------------------------------------------- selection helpers
def _preference(theta: np.ndarray, which: str) -> np.ndarray:
    """Indices of ``theta`` (``[m]`` float64) from most to least wanted (stable among ties)."""
    if which == "LA":
        return np.argsort(-theta, kind="stable")
    if which == "SA":
        return np.argsort(theta, kind="stable")
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")
    asc = np.argsort(theta, kind="stable").tolist()  # BE: alternate largest, smallest, ...
    out, lo, hi = [], 0, len(asc) - 1
    while lo <= hi:
        out.append(asc[hi])
        hi -= 1
        if lo <= hi:
            out.append(asc[lo])
            lo += 1
    return np.asarray(out, dtype=np.int64)


def _output_order(theta: np.ndarray, which: str) -> np.ndarray:
    if which == "LA":
        return np.argsort(-theta, kind="stable")
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")
    return np.argsort(theta, kind="stable")


# ---------------------------------------------------------------------------- orthogonalisation
class _Orth:
    """Orthonormalise new blocks against a basis (CGS2), replacing dependent directions by random ones."""

    def __init__(self, n: int, cdtype: torch.dtype, device: torch.device, generator: torch.Generator, rtol: float):
        self.n, self.cdtype, self.device, self.g, self.rtol = n, cdtype, device, generator, rtol

    def project(self, V: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
        """``W − V (Vᴴ W)`` twice; returns the projected block and the coefficients ``Vᴴ W``."""
        if V.shape[1] == 0:
            return W, W.new_zeros(0, W.shape[1])
        C = V.mH @ W
        W = W - V @ C
        C2 = V.mH @ W
        W = W - V @ C2
        return W, C + C2

    def random_direction(self, V: Tensor) -> Tensor:
        x = torch.randn(self.n, 1, generator=self.g, dtype=torch.float64)
        if self.cdtype.is_complex:
            x = torch.complex(x, torch.randn(self.n, 1, generator=self.g, dtype=torch.float64))
        x = x.to(device=self.device, dtype=self.cdtype)
        for _ in range(2):
            x, _ = self.project(V, x / torch.linalg.vector_norm(x))
        return x / torch.linalg.vector_norm(x)

    def orthonormalize(self, V: Tensor, W: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(Qn [n, w], R [w, w], C [nv, w])`` with ``W ≈ V C + Qn R``, ``[V, Qn]`` orthonormal.

        ``W`` must already be orthogonal to ``V`` (projected). A column whose remaining norm is below
        ``rtol · scale`` is taken as dependent (breakdown): it is replaced by a random direction orthogonal
        to everything and its row of ``R`` is zero.
        """
        w = W.shape[1]
        Qn = torch.zeros(self.n, w, dtype=self.cdtype, device=self.device)
        R = torch.zeros(w, w, dtype=self.cdtype, device=self.device)
        C = torch.zeros(V.shape[1], w, dtype=self.cdtype, device=self.device)
        for i in range(w):
            u = W[:, i : i + 1]
            nrm0 = float(torch.linalg.vector_norm(u))
            if i > 0:
                u, c = self.project(Qn[:, :i], u)
                R[:i, i] = c[:, 0]
            r = float(torch.linalg.vector_norm(u))
            if 0 < r < 0.5 * nrm0:  # cancellation inside the block: one more pass against everything
                u, c = self.project(torch.cat([V, Qn[:, :i]], dim=1), u)
                C[:, i] += c[: V.shape[1], 0]
                R[:i, i] += c[V.shape[1] :, 0]
                r = float(torch.linalg.vector_norm(u))
            if r <= self.rtol * scale or r == 0.0:
                Qn[:, i : i + 1] = self.random_direction(torch.cat([V, Qn[:, :i]], dim=1))
            else:
                Qn[:, i : i + 1] = u / r
                R[i, i] = r
        return Qn, R, C


def _host(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.resolve_conj().cpu().numpy()


def _expand_orthogonalize(V: Any, W: Any, lo: int, nv: int, b: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """Orthogonalise ``W = A P`` (``P = V[:, nv:nv+b]``) against ``V[:, :nv+b]``.

    ``V`` (``[n, ≥ nv+b]``) and ``W`` (``[n, b]``) are both torch tensors, or both NumPy views of host memory:
    the code is the same for either (only operations torch and NumPy share), and on the host NumPy is used
    because each of its calls costs a fraction of a torch call. That matters when ``A`` is cheap, and most
    when a large product has just flushed the caches: there the expansion takes 1.5–2× less time in NumPy
    (measured at n = 3,000 with 31 and 62 basis vectors).

    Returns ``(W⊥, C, norms)``: the projected block (a new array; ``W`` itself is never written), ``C = Vᴴ W``
    (NumPy ``[nv + b, b]``) and the column norms of ``W⊥`` (NumPy ``[b]``; NaN or Inf when ``W`` holds any).
    By symmetry ``W`` couples only to the recent vectors ``V[:, lo:nv+b]`` (the previous block and ``P``;
    every kept Ritz vector right after a restart), so those coefficients are removed first in a narrow pass
    that does not read the whole basis. One full classical Gram–Schmidt pass then cleans up, repeated when
    it removes more than 30% of the norm (the DGKS criterion; Daniel, Gragg, Kaufman, Stewart 1976; the norm
    before a pass is ``√(‖after‖² + ‖c‖²)`` by Pythagoras, so it costs no extra reduction). This is full
    reorthogonalisation at about half the memory traffic of two blind passes. Products are written as
    ``(Wᴴ V)ᴴ`` so that only the small block is conjugated, never the basis.
    """
    recent = V[:, lo : nv + b]
    E = (W.conj().T @ recent).conj().T
    W = W - recent @ E
    basis = V[:, : nv + b]
    C = None
    for _ in range(3):
        c = (W.conj().T @ basis).conj().T
        W -= basis @ c
        C = c if C is None else C + c
        after2 = (W.conj().T @ W).diagonal().real  # squared column norms (Gram diagonal: one BLAS call for b = 1)
        if bool((0.49 * (c.conj().T @ c).diagonal().real <= 0.51 * after2).all()):  # after >= 0.7·before
            break
    C[lo:] += E
    return W, _host(C), _host(after2) ** 0.5


# ---------------------------------------------------------------------------- argument checks
def _check_args(op: LinearOperator, k: Any, which: Any, tol: Any, block_size: Any) -> tuple[int, str, float, int]:
    n = op.shape[0]
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int (the number of eigenpairs), got {type(k).__name__} {k!r}")
    if not 1 <= k < n:
        raise ValueError(
            f"k must satisfy 1 <= k < n = {n} for an operator of shape {op.shape}, got k = {k}; "
            "for all eigenvalues of a small operator use torch.linalg.eigvalsh(op.to_dense())"
        )
    if not isinstance(which, str) or which.upper() not in _WHICH:
        raise ValueError(
            f"which must be one of 'LA' (largest algebraic), 'SA' (smallest algebraic), 'LM' (largest "
            f"magnitude), 'BE' (both ends), got {which!r}"
        )
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be a positive finite float (relative to ‖A‖), got {tol!r}")
    block_size = _check_positive_int(block_size, "block_size", "vectors per batched product")
    if block_size > n - k:
        raise ValueError(
            f"block_size must be <= n - k = {n - k} (n = {n}, k = {k}), got {block_size}; lower block_size"
        )
    return k, which.upper(), float(tol), block_size


def _start_block(
    op: LinearOperator, v0: Any, b: int, g: torch.Generator, cdtype: torch.dtype
) -> Tensor:
    """Starting block ``[n, b]`` from ``v0`` (``[n]`` or ``[n, j]``) and random columns."""
    n = op.shape[0]

    def rand(cols: int) -> Tensor:
        X = torch.randn(n, cols, generator=g, dtype=torch.float64)
        if cdtype.is_complex:
            X = torch.complex(X, torch.randn(n, cols, generator=g, dtype=torch.float64))
        return X.to(device=op.device, dtype=cdtype)

    if v0 is None:
        return rand(b)
    X = _check_v0(op, v0, cdtype, "eigsh")
    if float(torch.linalg.vector_norm(X)) == 0.0:
        raise ValueError("eigsh: v0 is zero; pass a non-zero starting vector (or None for a random one)")
    j = X.shape[1]
    if j < b:
        return torch.cat([X, rand(b - j)], dim=1)
    if j > b:  # random combinations: the Krylov space of Σ c_i u_i contains all the u_i (warm start)
        G = torch.randn(j, b, generator=g, dtype=torch.float64).to(device=op.device, dtype=cdtype)
        return X @ G
    return X


def _restart_size(k: int, k_rem: int, nconv: int, p: int) -> int:
    """Active Ritz vectors kept at a thick restart: ARPACK's adaptive rule (``dsaup2``).

    ARPACK keeps ``nev + min(nconv, (ncv - nev) / 2)`` vectors (``nconv`` = converged wanted pairs), and
    ``ncv / 2`` when that is 1. Here the locked pairs count towards ``nev``, so the active part is the
    ``k_rem`` unconverged wanted pairs plus the same extra.
    """
    extra = min(nconv, (p - k) // 2)
    if k + extra == 1 and p >= 6:
        extra = p // 2 - 1
    elif k + extra == 1 and p > 2:
        extra = 1
    return k_rem + extra


def _default_ncv(k: int, b: int) -> int:
    """``max(3k + b, 30, k + 10·b)`` basis vectors (ARPACK's default is ``max(2k + 1, 20)``).

    A larger basis costs memory (``ncv`` vectors of length ``n``) and orthogonalisation per step, but needs
    fewer products with ``A``, which dominate for the operators eigenlens is for (Hessian-vector products).
    Measured (tol 1e-8, ``benchmarks/bench_eigsh.py`` problems): 2-D Laplacian with 100,000 unknowns, products
    for top-1 / top-5 / top-10 / top-20: 2,507 / 4,409 / 10,636 / 4,938 at ARPACK's sizes (20, 20, 21, 41) vs
    1,522 / 2,755 / 2,814 / 2,887 at (30, 30, 31, 61); on random dense spectra (separated, clustered,
    indefinite; k = 1, 3, 5) 8% fewer products at 30 than at 20.
    """
    return max(3 * k + b, 30, k + 10 * b)


# ---------------------------------------------------------------------------- the public function
def eigsh(
    op: Any,
    k: int = 6,
    *,
    which: str = "LA",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    block_size: int = 1,
    generator: torch.Generator | None = None,
    v0: Tensor | None = None,
    ncv: int | None = None,
    progress: bool = False,
) -> EigshResult:
    """``k`` eigenpairs at one or both ends of the spectrum of a symmetric operator, matrix-free.

    A block Krylov–Schur (thick-restart Lanczos) method with full reorthogonalisation, locking and
    random fresh directions on breakdown. A Ritz pair ``(θ, v)`` is accepted when its residual
    ``‖A v − θ v‖ <= tol · ‖A‖_est`` (``‖A‖_est`` = largest Ritz value magnitude seen); the eigenvalue
    error is then at most ``tol·‖A‖_est`` and, for a simple eigenvalue with gap ``δ`` to the rest of the
    spectrum, at most ``(tol·‖A‖_est)² / δ``. Products with ``A`` run in the operator's dtype; everything
    else in float64 (complex128).

    Repeated or tightly clustered eigenvalues: a single-vector Krylov space holds only one direction of
    each eigenspace, so with ``block_size=1`` a multiplicity-``r`` eigenvalue may be returned once (as with
    ARPACK). Use ``block_size >= r`` — each step then applies ``A`` to ``block_size`` vectors in one
    batched product, which is also faster per vector for operators like Hessian-vector products.

    Small problems: when the basis would span the whole space (``ncv + block_size > n``; e.g. ``n <= 30``
    or ``k`` close to ``n``) the operator is materialised with ``op.to_dense()`` (``n`` products, counted in
    ``num_matvecs``) and solved by ``torch.linalg.eigh`` in float64 (``method="dense"``).

    Args:
        op: a square :class:`~eigenlens.linalg.operator.LinearOperator` tagged symmetric (explicit matrices
            are converted with :func:`~eigenlens.linalg.operator.aslinearoperator`).
        k: number of eigenpairs, ``1 <= k < n``.
        which: ``"LA"`` largest algebraic, ``"SA"`` smallest algebraic, ``"LM"`` largest magnitude, ``"BE"``
            both ends (``⌈k/2⌉`` largest and ``⌊k/2⌋`` smallest).
        tol: relative residual tolerance (``> 0``).
        max_matvecs: budget of products with ``A`` (default ``max(10·n, 50·ncv)``). When exhausted, the
            best Ritz pairs are returned with ``converged=False`` and a ConvergenceWarning.
        block_size: vectors per batched product (``1 <= block_size <= n - k``).
        generator: randomness for the starting block and fresh directions (``None``: seeded 0).
        v0: warm start ``[n]`` or ``[n, j]`` (e.g. eigenvectors of a previous, nearby operator). With
            ``j > block_size`` the starting block is ``block_size`` random combinations of the columns (a
            Krylov space of ``Σ c_i u_i`` contains all the ``u_i``); with ``j < block_size`` random columns
            are added.
        ncv: basis size (default ``max(3k + block_size, 30, k + 10·block_size)``); must be ``>= k + block_size``.
        progress: show a tqdm progress bar.

    Returns:
        An :class:`EigshResult`. A ``KeyboardInterrupt`` stops the iteration and returns the current best
        Ritz pairs (``converged`` tells whether they met ``tol``) with a ConvergenceWarning.

    Raises:
        ValueError: non-square operator, operator not tagged symmetric (the message says how to tag it),
            ``k`` outside ``[1, n)``, unknown ``which``, ``tol <= 0``, bad ``block_size``/``ncv``/``v0``,
            ``max_matvecs`` below what the method needs (the message gives the minimum).
        TypeError: non-integer ``k``/``block_size``/``max_matvecs``, ``v0`` not a tensor.
        FloatingPointError: a product with ``A`` produced NaN/Inf (raised by the operator, naming the call).

    Example:
        >>> import torch, eigenlens as el
        >>> A = el.aslinearoperator(torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64)))
        >>> res = el.eigsh(A, k=3, which="LA", tol=1e-10)
        >>> [round(x, 8) for x in res.eigenvalues.tolist()], res.converged
        ([100.0, 99.0, 98.0], True)

    References:
        Stewart (2001), SIAM J. Matrix Anal. Appl. 23; Wu & Simon (2000), SIAM J. Matrix Anal. Appl. 22;
        Zhou & Saad (2008), Numer. Algorithms 47 (block Krylov–Schur).
    """
    op = _as_operator(op, "eigsh")
    _require_symmetric(op, "eigsh")
    n = op.shape[0]
    k, which, tol, b = _check_args(op, k, which, tol, block_size)
    if ncv is None:
        p = _default_ncv(k, b)
    else:
        p = _check_positive_int(ncv, "ncv", "the basis size")
        if p < k + b:
            raise ValueError(f"ncv must be >= k + block_size = {k + b}, got {p}")
    dense = p + b > n
    need = n if dense else b * math.ceil(k / b)
    why = (
        f"this small problem (n = {n}) is solved densely, which takes n products"
        if dense
        else f"k = {k} Ritz pairs need a basis of at least {need} vectors (block_size = {b})"
    )
    budget = _matvec_budget(max_matvecs, max(10 * n, 50 * p), need, why, "eigsh", "the budget of products with A")
    cdtype = _compute_dtype(op.dtype)
    g = resolve_generator(generator)
    start = _start_block(op, v0, b, g, cdtype)
    if dense:
        return _dense(op, k, which, tol)
    return _krylov_schur(op, k, which, tol, budget, b, p, start, g, cdtype, progress)


def _dense(op: LinearOperator, k: int, which: str, tol: float) -> EigshResult:
    n = op.shape[0]
    A = op.to_dense().to(_compute_dtype(op.dtype))
    A = (A + A.mH) / 2
    theta, S = torch.linalg.eigh(A)
    th = theta.to(torch.float64).cpu().numpy()
    sel = _preference(th, which)[:k]
    sel = torch.from_numpy(sel[_output_order(th[sel], which)]).to(A.device)
    vals, vecs = theta[sel], S[:, sel]
    res = torch.linalg.vector_norm(A @ vecs - vecs * vals.to(vecs.dtype), dim=0).to(torch.float64)
    anorm = float(theta.abs().max())
    return EigshResult(
        eigenvalues=vals.to(torch.float64),
        eigenvectors=vecs.to(op.dtype),
        residual_norms=res,
        num_matvecs=n,
        converged=True,
        norm_estimate=anorm,
        method="dense",
        num_restarts=0,
    )


def _krylov_schur(
    op: LinearOperator,
    k: int,
    which: str,
    tol: float,
    budget: int,
    b: int,
    p: int,
    start: Tensor,
    g: torch.Generator,
    cdtype: torch.dtype,
    progress: bool,
) -> EigshResult:
    n, dev = op.shape[0], op.device
    orth = _Orth(n, cdtype, dev, g, _breakdown_rtol(n, op.dtype))
    V = torch.zeros(p + b, n, dtype=cdtype, device=dev).mT  # [n, p + b], column j contiguous in memory
    host = _HOST_NUMPY and dev.type == "cpu"
    Vx = V.numpy() if host else V  # the same memory; the expansion runs in NumPy on the host
    blocks = [V[:, j : j + b] for j in range(p + 1)]  # the blocks A is applied to (slicing a tensor costs µs)
    # the small projected matrix lives in NumPy (host): its many tiny updates cost ~1 µs there, ~5 µs as torch ops
    np_dtype = np.complex128 if cdtype.is_complex else np.float64
    heevd = scipy.linalg.lapack.zheevd if cdtype.is_complex else scipy.linalg.lapack.dsyevd
    H = np.zeros((p + b, p + b), dtype=np_dtype)  # H[lock:nv, lock:nv] active, H[nv:nv+b] coupling
    Qs, _, _ = orth.orthonormalize(V[:, :0], start / torch.linalg.vector_norm(start, dim=0).clamp_min(1e-300), 1.0)
    V[:, :b] = Qs
    nlock, nv, recent, since_check, far = 0, 0, 0, 0, 0
    lock_vals = np.zeros(0)
    lock_res = np.zeros(0)
    anorm = 0.0
    total, restarts = 0, 0
    converged = False
    interrupted = False
    tiny = float(np.finfo(np.float64).tiny)

    def rayleigh_ritz() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # LAPACK's divide and conquer through SciPy's thin wrapper: for these 10-60 sized matrices about 2× less
        # time than torch.linalg.eigh right after a large product (torch's dispatcher is out of the caches) and
        # as fast otherwise. It reads the lower triangle (H is symmetric to round-off).
        theta, S, info = heevd(H[nlock:nv, nlock:nv], compute_v=1, lower=1)
        if info:
            raise np.linalg.LinAlgError(f"eigsh: the projected eigenproblem failed (LAPACK info {info})")
        res = np.linalg.norm(H[nv : nv + b, nlock:nv] @ S, axis=0)
        return theta, S, res

    def wanted(theta: np.ndarray, res: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Preference order over locked + active candidates; returns (order, values, is_converged)."""
        vals = np.concatenate([lock_vals, theta]) if nlock else theta
        conv = np.concatenate([np.ones(nlock, dtype=bool), res <= thr]) if nlock else res <= thr
        return _preference(vals, which), vals, conv

    def to_torch(M: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(M)).to(device=dev, dtype=cdtype)

    from tqdm.auto import tqdm

    bar = tqdm(total=budget, desc="eigsh", unit="matvec", disable=not progress, leave=False)
    try:
        while True:
            # ---- expand: one batched product with the pending block
            if total + b > budget:
                break
            P = blocks[nv]
            # NaN/Inf in A P reaches the norms computed below, which are checked instead of a pass over A P
            W = op.matmat(P if op.dtype == cdtype else P.to(op.dtype), check_finite=False)
            if W.dtype != cdtype:
                W = W.to(cdtype)
            total += b
            if host:  # a view of the same memory (detach() is a dispatcher call, made only when needed)
                W = (W.detach() if W.requires_grad else W).numpy()
            # (a NaN/Inf product is reported by the norm check below, without NumPy's RuntimeWarnings first;
            # the user's product itself runs under the user's NumPy error settings)
            with np.errstate(invalid="ignore", over="ignore"):
                W, C, wnorm = _expand_orthogonalize(Vx, W, recent, nv, b)
            if not np.isfinite(wnorm).all():
                raise op._nonfinite_error("A @ x", b)
            # the scale for breakdown: ‖A‖_est, or ‖A P‖ >= max |C| before the first Rayleigh–Ritz
            scale = anorm or float(np.abs(C).max())
            r0 = float(wnorm[0])
            if b == 1 and r0 > orth.rtol * scale:  # the common case: normalise straight into V
                Vx[:, nv + 1 : nv + 2] = W / r0
                R = Rh = r0
            else:
                Qn, Rt, C2 = orth.orthonormalize(V[:, : nv + b], torch.from_numpy(W) if host else W, scale)
                C += _host(C2)
                R = _host(Rt)
                Rh = R.conj().T
                V[:, nv + b : nv + 2 * b] = Qn
            # commit: H gets column block nv:nv+b, its symmetric counterpart, and the coupling R to the next
            # block (rows and columns past nv + b are still zero: H is cleared at every restart)
            H[nlock : nv + b, nv : nv + b] = C[nlock:]
            H[nv : nv + b, nlock:nv] = C[nlock:nv].conj().T
            H[nv + b : nv + 2 * b, nv : nv + b] = R
            H[nv : nv + b, nv + b : nv + 2 * b] = Rh
            recent = nv  # the next block couples (by symmetry) only to this block and itself
            nv += b

            # ---- Rayleigh–Ritz on the active part, convergence check (thinned out for large active bases)
            since_check += 1
            if nv + b <= p and (
                nv < k or since_check < max(1 if restarts == 0 else 2, (nv - nlock) // _RR_SIZE, far)
            ):  # (fewer than k Ritz pairs cannot satisfy the check)
                if progress:
                    bar.update(b)
                continue
            since_check = 0
            theta, S, res = rayleigh_ritz()
            if theta.size:
                anorm = max(anorm, -float(theta[0]), float(theta[-1]))  # eigh sorts ascending
            thr = tol * max(anorm, tiny)
            order, vals, conv = wanted(theta, res, thr)
            nconv = int(conv[order[:k]].sum()) if vals.size >= k else 0
            if restarts and vals.size >= k and nconv < k:  # steps the slowest wanted pair needs at best
                top = order[:k]
                gap = float(res[top[~conv[top]] - nlock].max()) / thr
                far = int(math.log(gap) / _LOG_FASTEST)
            if progress:
                bar.update(b)
                bar.set_postfix(converged=f"{nconv}/{k}")
            if vals.size >= k and nconv == k:
                converged = True
                break
            if nv + b <= p:
                continue

            # ---- thick restart with locking
            top = order[:k].tolist()
            new_lock = [i - nlock for i in top if i >= nlock and bool(conv[i])] if _LOCK else []
            keep_lock = [i for i in top if i < nlock]  # previously locked and still wanted
            room = p - b - len(keep_lock) - len(new_lock)
            rest = [i - nlock for i in order.tolist() if i >= nlock and (i - nlock) not in new_lock]
            k_rem = max(k - len(keep_lock) - len(new_lock), 1)
            nkeep = min(room, _restart_size(k, k_rem, nconv, p))
            keep_act = rest[:nkeep]
            Va = V[:, nlock:nv]
            # (Sᵀ Vᵀ)ᵀ: computed on the row-major storage so that the products and copies stay contiguous
            Ylock = (to_torch(S[:, new_lock]).mT @ Va.mT).mT if new_lock else V[:, :0]
            Yact = (to_torch(S[:, keep_act]).mT @ Va.mT).mT
            coupling = H[nv : nv + b, nlock:nv] @ S[:, keep_act]
            old_nv = nv
            old_lock = V[:, keep_lock] if keep_lock else V[:, :0]  # advanced indexing: already a copy
            new_lock_vals = np.concatenate([lock_vals[keep_lock], theta[new_lock]])
            new_lock_res = np.concatenate([lock_res[keep_lock], res[new_lock]])
            # commit
            nlock = len(keep_lock) + len(new_lock)
            nv = nlock + len(keep_act)
            # nv <= old_nv, so the writes below the new pending slot never touch the old one
            pending = V[:, old_nv : old_nv + b] if nv + b <= old_nv else V[:, old_nv : old_nv + b].clone()
            V[:, : len(keep_lock)] = old_lock
            V[:, len(keep_lock) : nlock] = Ylock
            V[:, nlock:nv] = Yact
            V[:, nv : nv + b] = pending
            H[:] = 0
            H[nlock:nv, nlock:nv] = np.diag(theta[keep_act])
            H[nv : nv + b, nlock:nv] = coupling
            H[nlock:nv, nv : nv + b] = coupling.conj().T
            lock_vals, lock_res = new_lock_vals, new_lock_res
            recent = nlock  # every kept Ritz vector couples to the pending block
            restarts += 1
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()

    if nv - nlock + lock_vals.size < k:  # only possible when interrupted before k Ritz pairs exist
        raise KeyboardInterrupt
    theta, S, res = rayleigh_ritz()
    thr = tol * max(anorm, tiny)
    order, vals, conv = wanted(theta, res, thr)
    sel = order[:k]
    allres = np.concatenate([lock_res, res])
    vecs = torch.cat([V[:, :nlock], V[:, nlock:nv] @ to_torch(S)], dim=1)[:, torch.from_numpy(sel).to(dev)]
    vals, allres = vals[sel], allres[sel]
    out = _output_order(vals, which)
    converged = bool(conv[sel].all())
    if not converged or interrupted:
        reason = "was interrupted" if interrupted else f"used its budget of max_matvecs = {budget} products"
        warnings.warn(
            f"eigsh {reason} with {int(conv[sel].sum())} of {k} eigenpairs converged to tol = {tol:g} "
            f"(largest residual {float(allres.max()):.3g}, threshold {thr:.3g}); returning the best Ritz "
            "pairs (raise max_matvecs, ncv or tol, or warm-start with v0)",
            ConvergenceWarning,
            stacklevel=3,
        )
    vals_t = torch.from_numpy(np.ascontiguousarray(vals[out])).to(dev)
    res_t = torch.from_numpy(np.ascontiguousarray(allres[out])).to(dev)
    vecs = vecs[:, torch.from_numpy(out).to(dev)]
    return EigshResult(
        eigenvalues=vals_t,
        eigenvectors=vecs.to(op.dtype),
        residual_norms=res_t,
        num_matvecs=total,
        converged=converged,
        norm_estimate=anorm,
        method="krylov-schur",
        num_restarts=restarts,
    )
