"""Randomized low-rank approximation: SVD (block Krylov or subspace iteration), Nyström, symmetric eigsh.

References:
    Halko, Martinsson & Tropp, "Finding structure with randomness" (arXiv 0909.4061) — range finder
    (Alg. 4.1), power iteration with re-orthonormalisation (Alg. 4.4), the a-posteriori error estimate
    (§4.3, Lemma 4.1), the direct SVD (Alg. 5.1) and eigendecomposition (Alg. 5.3).
    Musco & Musco, "Randomized block Krylov methods for stronger and faster approximate singular value
    decomposition" (NeurIPS 2015, arXiv 1504.05477) and Tropp & Webber, "Randomized algorithms for low-rank
    matrix approximation: design, analysis, and applications" (arXiv 2306.12418, randomized block Krylov
    iteration) — the default ``method="krylov"`` of :func:`randomized_svd`.
    Tropp, Yurtsever, Udell & Cevher, "Fixed-rank approximation of a positive-semidefinite matrix from
    streaming data" (arXiv 1706.05736) — numerically stable Nyström with a shift (Alg. 3).

:func:`randomized_svd` runs on any :class:`~eigenlens.linalg.distributed.RowBlocks` backend, so the same
code serves in-memory matrices, operators, Dask arrays and torch.distributed row shards (bit-for-bit equal
results for the explicit-matrix backends, see :mod:`eigenlens.linalg.distributed`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from eigenlens.linalg.distributed import LocalRows, RowBlocks, row_blocks
from eigenlens.linalg.exceptions import ConvergenceWarning
from eigenlens.linalg.operator import LinearOperator, aslinearoperator
from eigenlens.linalg.random import gaussian, resolve_generator
from eigenlens.linalg.sketch import DEFAULT_BLOCK_SIZE
from eigenlens.linalg.svds import SvdsResult

__all__ = ["RandomizedSvdResult", "SvdsResult", "LowRank", "randomized_svd", "nystrom", "randomized_eigsh"]

#: Test vectors of the a-posteriori estimate: the bound holds with probability ``1 − 10^{-NUM_PROBES}``.
NUM_PROBES = 10

#: The probes ride along with one product with ``A``; their number is raised from :data:`NUM_PROBES` (by at most
#: ``PROBE_COLUMN_MULTIPLE − 1``) so that this product has a multiple of ``PROBE_COLUMN_MULTIPLE`` columns.
#: Measured (benchmarks/RESULTS.md): MKL 2024.2's one-thread dgemm on this AMD EPYC machine runs a
#: 20,000 × 2,000 by ``2,000 × b`` product at 28–40 GF/s for b = 60, 72, 96 and at 15–25 GF/s for b = 50, 64, 70,
#: 80, so 60 + 10 probes took 1.8x the time of 60 + 12. Extra probes only make the bound hold with higher probability.
PROBE_COLUMN_MULTIPLE = 12


def _num_probes(b: int) -> int:
    """Probes riding along with a product of ``b`` columns (``NUM_PROBES`` … ``NUM_PROBES + 11``)."""
    return NUM_PROBES + (-(b + NUM_PROBES)) % PROBE_COLUMN_MULTIPLE


@dataclass(frozen=True)
class RandomizedSvdResult(SvdsResult):
    """A truncated SVD ``A ≈ u diag(s) vᴴ``: an :class:`eigenlens.linalg.svds.SvdsResult` with error estimates.

    Attributes:
        u: ``[m, k]`` left singular vectors (on torch.distributed: this rank's rows).
        s: ``[k]`` singular values, descending, float64.
        v: ``[n, k]`` right singular vectors.
        num_matvecs: products with ``A`` or ``Aᴴ`` (vectors, counting each column of a block product).
        converged: ``tol`` met (always True without ``tol``).
        residual_norms: ``[k]`` float64, ``‖Aᴴ u_i − s_i v_i‖``. Both methods return ``u s vᴴ = u uᴴ A``, for
            which this is zero up to rounding by construction: it checks the factorisation, not the accuracy
            (``‖A v_i − s_i u_i‖`` would cost one more pass); the accuracy is bounded by ``error_estimate``.
        error_estimate: HMT a-posteriori estimate ``10·√(2/π)·max_i ‖(A − u s vᴴ) ω_i‖`` over
            ``≥`` :data:`NUM_PROBES` Gaussian probes: an upper bound on the spectral error ``‖A − u s vᴴ‖₂``
            with probability ``≥ 1 − 10^{-10}``.
        frobenius_error: ``(‖A‖_F² − Σ s_i²)^{1/2}`` = ``‖A − u s vᴴ‖_F`` (exact up to cancellation).
        rank: ``k``.
    """

    error_estimate: float = float("nan")
    frobenius_error: float = float("nan")
    rank: int = 0


class LowRank(LinearOperator):
    """A low-rank operator ``U diag(values) Vᴴ`` (``V = U`` and tagged symmetric for eigen-decompositions).

    Attributes:
        U: ``[m, k]``; values: ``[k]`` (eigenvalues descending for :func:`nystrom`); V: ``[n, k]``.
        matvecs_used: products with the original operator spent to build it.
    """

    def __init__(self, U: Tensor, values: Tensor, V: Tensor | None = None, *, psd: bool = False,
                 matvecs_used: int = 0) -> None:
        sym = V is None
        super().__init__((U.shape[0], (U if V is None else V).shape[0]), dtype=U.dtype, device=U.device,
                         symmetric=sym, psd=psd and sym)
        self.U, self.values, self.V = U, values, (U if V is None else V)
        self.matvecs_used = int(matvecs_used)

    @property
    def rank(self) -> int:
        """Number of terms ``k``."""
        return int(self.values.numel())

    @property
    def eigenvalues(self) -> Tensor:
        """The values (eigenvalues when symmetric)."""
        return self.values

    def _matmat(self, X: Tensor) -> Tensor:
        return self.U @ (self.values.to(self.dtype)[:, None] * (self.V.mH @ X))

    def _adjoint(self, X: Tensor) -> Tensor:
        return self.V @ (self.values.to(self.dtype).conj()[:, None] * (self.U.mH @ X))


def _check_rank(rank: Any, limit: int, what: str) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"{what}: rank must be a positive int, got {rank!r}")
    if rank > limit:
        raise ValueError(f"{what}: rank={rank} exceeds min(shape)={limit}; ask for at most {limit}")
    return rank


#: Cholesky-QR is used between power iterations while ``min diag(C) / max diag(C)`` of the Cholesky factor of
#: ``YᴴY`` stays above this (``κ(Y)`` well below ``eps^{-1/2}``); otherwise the block-wise Householder TSQR.
CHOLQR_MIN_RATIO = 1e-5


def _orth_intermediate(bk: RowBlocks, Y: Any) -> Any:
    """Orthonormal basis of ``range(Y)`` between power iterations.

    Cholesky-QR (one Gram fold and one small triangular solve per block, a few BLAS-3 calls; the role LU plays
    in HMT Alg. 4.4 / scikit-learn), falling back to TSQR when ``Y`` is too ill-conditioned. Every decision is
    taken on replicated quantities, so all backends stay bit-for-bit equal.
    """
    G = bk.inner(Y, Y)
    C, info = torch.linalg.cholesky_ex((G + G.mH) / 2, upper=True)
    if int(info) == 0:
        dg = C.diagonal().real
        if bool(torch.isfinite(dg).all()) and float(dg.min()) > CHOLQR_MIN_RATIO * float(dg.max()):
            eye = torch.eye(C.shape[0], dtype=C.dtype, device=C.device)
            return bk.rmul(Y, torch.linalg.solve_triangular(C, eye, upper=True))
    Q, _ = bk.tsqr(Y)
    return Q


def _sq_fro(bk: RowBlocks) -> float:
    """``‖A‖_F²`` in one read pass without temporaries for dense explicit blocks (``bk.fro_norm()`` otherwise)."""
    if isinstance(bk, LocalRows) and not bk.sparse:
        parts = [(b, (torch.linalg.vector_norm(bk.A[sl]).to(torch.float64) ** 2).reshape(1))
                 for b, sl in bk._slices()]
        return float(bk.reduce(parts, (1,))[0])
    return bk.fro_norm() ** 2


def _rsvd_once(
    bk: RowBlocks, k: int, oversample: int, power_iters: int, g: torch.Generator, sq_fro: float | None = None
) -> RandomizedSvdResult:
    n, d = bk.shape
    ell = min(k + oversample, n, d)
    Omega = gaussian(d, ell, generator=g, dtype=bk.dtype, device=bk.device)
    probes = gaussian(d, _num_probes(ell), generator=g, dtype=bk.dtype, device=bk.device)
    # the probes of the a-posteriori estimate ride along with the last product with A (one pass fewer)
    X = Omega
    for i in range(power_iters + 1):
        Y = bk.matmat(torch.cat([X, probes], dim=1) if i == power_iters else X)
        if i < power_iters:
            X, _ = torch.linalg.qr(bk.rmatmat(_orth_intermediate(bk, Y)))
    Y, Yp = Y[:, :ell], Y[:, ell:]
    Q, _ = bk.tsqr(Y)  # the final orthonormalisation is always Householder (TSQR)
    Bt = bk.rmatmat(Q)  # Aᴴ Q = Bᴴ, [d, ell]
    V, s, Wh = torch.linalg.svd(Bt, full_matrices=False)  # B = W s Vᴴ
    W = Wh.mH
    u = bk.rmul(Q, W[:, :k])
    s, v = s[:k], V[:, :k]
    # a-posteriori estimate: ‖(I − u uᴴ) A ω_i‖ (= ‖(A − u s vᴴ) ω_i‖, since u uᴴ A = u s vᴴ); A ω_i = Yp
    E = bk.axpby(1.0, Yp, -1.0, bk.rmul(u, bk.inner(u, Yp)))
    est = 10 * math.sqrt(2 / math.pi) * float(torch.sqrt(bk.sqnorms(E).max()))
    fro2 = (_sq_fro(bk) if sq_fro is None else sq_fro) - float((s.to(torch.float64) ** 2).sum())
    # Aᴴ u = Aᴴ Q W_k = Bᴴ W_k: the residuals ‖Aᴴu_i − s_i v_i‖ from the product already at hand
    res = torch.linalg.vector_norm(Bt @ W[:, :k] - v * s, dim=0).to(torch.float64)
    mv = ell * (2 + 2 * power_iters) + probes.shape[1]
    return RandomizedSvdResult(u=u, s=s.to(torch.float64), v=v, num_matvecs=mv, converged=True, residual_norms=res,
                               error_estimate=est, frobenius_error=math.sqrt(max(fro2, 0.0)), rank=k)


def _hcat(a: Any, b: Any) -> Any:
    """``[a, b]``: two row vectors side by side (torch tensors, or Dask arrays for :class:`DaskRows`)."""
    if isinstance(a, Tensor):
        return torch.cat([a, b], dim=1)
    import dask.array as da

    return da.concatenate([a, b], axis=1).persist()


def _orth_against(bk: RowBlocks, Y: Any, P: Any | None) -> Any:
    """Orthonormal basis of the part of ``range(Y)`` orthogonal to the orthonormal row vector ``P`` (or None).

    Block classical Gram–Schmidt against ``P`` (one ``Pᴴ Y`` and one ``P C`` product over all earlier blocks at
    once), then an orthonormalisation of the block (Cholesky-QR, TSQR fallback), all twice ("twice is enough":
    the second round starts from an orthonormal block, so it restores orthogonality to working precision even
    when the projected ``Y`` was tiny or ill-conditioned).
    """
    for _ in range(2):
        if P is not None:
            Y = bk.axpby(1.0, Y, -1.0, bk.rmul(P, bk.inner(P, Y)))
        Y = _orth_intermediate(bk, Y)
    return Y


def _orth_small(X: Tensor, V: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """``X = V H + Q R`` with ``Q`` orthonormal and orthogonal to the orthonormal ``V`` (replicated, small).

    Two rounds of classical Gram–Schmidt against ``V``, Householder QR, one more round on ``Q``; the
    coefficients are accumulated so that the identity holds to rounding. Returns ``(Q, R, H)``.
    """
    if V is None:
        Q, R = torch.linalg.qr(X)
        return Q, R, None
    H = V.mH @ X
    X = X - V @ H
    H2 = V.mH @ X
    X = X - V @ H2
    Q, R = torch.linalg.qr(X)
    H3 = V.mH @ Q
    Q, R3 = torch.linalg.qr(Q - V @ H3)
    return Q, R3 @ R, H + H2 + H3 @ R


def _rbki(
    bk: RowBlocks, k: int, block: int, depth: int, g: torch.Generator, sq_fro: float,
    tol: float | None = None, cap: int | None = None,
) -> RandomizedSvdResult:
    """Randomized block Krylov iteration (block Golub–Kahan with full reorthogonalisation), up to ``depth`` blocks.

    ``V₁ = orth(Ω)``; for ``j = 1..s``: ``U_j`` = the part of ``A V_j`` orthogonal to ``U_{<j}``
    (orthonormalised), ``Aᴴ U_j = V_{≤j} H_j + V_{j+1} R_j``. ``U = [U₁ … U_s]`` spans
    ``A·K_s(AᴴA, Ω)`` and ``Uᴴ A = M Vᴴ`` with ``M`` (``s·b × (s+1)·b``) assembled from the coefficients
    ``[H_j; R_j]ᴴ`` of the ``Aᴴ`` products, so no further pass is needed (Tropp & Webber, arXiv 2306.12418,
    §RBKI; Musco & Musco, arXiv 1504.05477). ``M = W S Zᴴ`` gives ``u = U W_r``, ``v = V Z_r`` and
    ``u s vᴴ = u uᴴ A``, the best rank-``r`` approximation of ``A`` from ``range(U)``.

    Without ``tol``: ``s = depth`` and ``r = k``. With ``tol``: after every block the HMT estimate
    ``10·√(2/π)·max_i ‖(I − u_r u_rᴴ) A ω_i‖`` is evaluated for every rank ``r`` in ``[k, min(cap, s·b)]`` at
    once (``A ω = U c + ρ`` with ``ρ ⊥ U``: ``‖(I − u_r u_rᴴ) A ω‖² = ‖ρ‖² + Σ_{i>r} |(Wᴴ c)_i|²``, no
    cancellation), and the smallest ``r`` with estimate ``≤ tol·s₁`` is returned; the space stops growing at
    ``depth`` blocks or when the estimate at the largest rank improves by less than 2x over two blocks.
    """
    n, d = bk.shape
    Omega = gaussian(d, block, generator=g, dtype=bk.dtype, device=bk.device)
    probes = gaussian(d, _num_probes(block), generator=g, dtype=bk.dtype, device=bk.device)
    Vall, _, _ = _orth_small(Omega, None)
    Vj = Vall
    Ucat: Any = None  # [U_1 … U_j], one row vector
    nblocks = 0
    rows: list[Tensor] = []
    coef: list[Tensor] = []
    Yp = rho = None
    c_est = 10 * math.sqrt(2 / math.pi)
    r, ok, history = k, tol is None, []
    for j in range(depth):
        Y = bk.matmat(torch.cat([Vj, probes], dim=1) if j == 0 else Vj)
        if j == 0:  # the probes of the a-posteriori estimate ride along with the first product
            Y, Yp = Y[:, :block], Y[:, block:]
            rho = Yp
        Uj = _orth_against(bk, Y, Ucat)
        Ucat = Uj if Ucat is None else _hcat(Ucat, Uj)
        nblocks += 1
        X = bk.rmatmat(Uj)  # Aᴴ U_j, [d, b]
        Vj, R, H = _orth_small(X, Vall)
        rows.append(torch.cat([H, R], dim=0).mH)  # U_jᴴ A = [H; R]ᴴ [V_{≤j}, V_{j+1}]ᴴ
        Vall = torch.cat([Vall, Vj], dim=1)
        if tol is None:
            continue
        cj = bk.inner(Uj, rho)  # U_jᴴ A ω (against what the earlier blocks left: modified Gram–Schmidt)
        coef.append(cj)
        rho = bk.axpby(1.0, rho, -1.0, bk.rmul(Uj, cj))
        W, S = torch.linalg.svd(_assemble(rows, block, bk), full_matrices=False)[:2]
        tail = (W.mH @ torch.cat(coef, dim=0)).abs().square().real.flip(0).cumsum(0).flip(0)  # Σ_{i≥r}
        tail = torch.cat([tail, torch.zeros_like(tail[:1])], dim=0)
        base = bk.sqnorms(rho)
        top = max(k, min(cap if cap is not None else W.shape[0], W.shape[0]))
        est = [c_est * math.sqrt(float((base + tail[i]).max())) for i in range(k, top + 1)]
        hits = [i for i, e in enumerate(est) if e <= tol * float(S[0])]
        history.append(est[-1])
        if hits:
            r, ok = k + hits[0], True
            break
        r = top
        if len(history) >= 3 and history[-1] > 0.5 * history[-3]:
            break  # stagnated: more blocks no longer help at the largest allowed rank
    s_b = nblocks * block
    M = _assemble(rows, block, bk)
    W, s, Zh = torch.linalg.svd(M, full_matrices=False)
    u = bk.rmul(Ucat, W[:, :r].contiguous())
    Z = Zh.mH[:, :r]
    s = s[:r]
    v = Vall[:, : s_b + block] @ Z
    E = bk.axpby(1.0, Yp, -1.0, bk.rmul(u, bk.inner(u, Yp)))
    est = c_est * float(torch.sqrt(bk.sqnorms(E).max()))
    fro2 = sq_fro - float((s.to(torch.float64) ** 2).sum())
    # Aᴴ u = V Mᴴ W_r: the residuals ‖Aᴴu_i − s_i v_i‖ = ‖Mᴴ w_i − s_i z_i‖ (V orthonormal)
    res = torch.linalg.vector_norm(M.mH @ W[:, :r] - Z * s, dim=0).to(torch.float64)
    mv = 2 * block * nblocks + probes.shape[1]
    return RandomizedSvdResult(u=u, s=s.to(torch.float64), v=v, num_matvecs=mv, converged=ok, residual_norms=res,
                               error_estimate=est, frobenius_error=math.sqrt(max(fro2, 0.0)), rank=r)


def _assemble(rows: list[Tensor], block: int, bk: RowBlocks) -> Tensor:
    """``M = Uᴴ A V`` (``s·b × (s+1)·b``) from the rows ``U_jᴴ A V = [H_j; R_j]ᴴ`` (zero beyond column ``(j+1)·b``)."""
    s_b = len(rows) * block
    M = torch.zeros(s_b, s_b + block, dtype=bk.dtype, device=bk.device)
    for j, row in enumerate(rows):
        M[j * block : (j + 1) * block, : row.shape[1]] = row
    return M


def _rsvd_dispatch(
    bk: RowBlocks, k: int, oversample: int, power_iters: int, method: str, g: torch.Generator, sq_fro: float
) -> RandomizedSvdResult:
    if method == "krylov":
        n, d = bk.shape
        b = min(k + oversample, n, d)
        # the Krylov basis needs depth·b ≤ n (left) and (depth + 1)·b ≤ d (right) orthonormal columns
        depth = min(power_iters + 1, n // b, d // b - 1)
        if depth >= 1:
            return _rbki(bk, k, b, depth, g, sq_fro)
    return _rsvd_once(bk, k, oversample, power_iters, g, sq_fro)


def randomized_svd(
    A: Any,
    rank: int,
    *,
    oversample: int = 10,
    power_iters: int = 2,
    method: str = "krylov",
    tol: float | None = None,
    max_rank: int | None = None,
    generator: torch.Generator | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> RandomizedSvdResult:
    """Randomized truncated SVD ``A ≈ u diag(s) vᴴ``: block Krylov (default) or subspace iteration.

    Both draw a Gaussian ``Ω`` (``n × b``, ``b = rank + oversample``) and read ``A`` ``2·power_iters + 2``
    times (``b`` columns per pass; one pass carries 10–21 extra columns for the error estimate, see
    :data:`PROBE_COLUMN_MULTIPLE`).

    ``method="krylov"`` (randomized block Krylov iteration, Musco & Musco arXiv 1504.05477, Tropp & Webber
    arXiv 2306.12418): block Golub–Kahan bidiagonalisation with full reorthogonalisation builds orthonormal
    ``U = [U₁ … U_s]`` spanning ``A·[Ω, AᴴAΩ, …, (AᴴA)^{s−1}Ω]``, ``s = power_iters + 1``; the coefficients of
    the ``Aᴴ`` products give ``Uᴴ A`` exactly, and its SVD gives the best rank-``k`` approximation from
    ``range(U)`` (Rayleigh–Ritz without another pass). The space holds ``p(AAᴴ)AΩ`` for every polynomial
    ``p`` of degree ``< s`` (subspace iteration keeps only ``(AAᴴ)^{s−1}AΩ``), so its error contracts like a
    Chebyshev polynomial: ``q = Õ(1/√ε)`` iterations give a ``(1 + ε)``-optimal spectral error where subspace
    iteration needs ``Õ(1/ε)`` (Musco & Musco, Thm. 1). It is the default because at the same passes it is far
    more accurate, above all for slowly decaying spectra (benchmarks/RESULTS.md, rank 50 of 20,000 × 2,000,
    6 passes: maximum relative singular-value error 3e-15 vs 2e-5 (0.9^j decay) and 1e-3 vs 4e-2 (1/(1+j)
    decay)), for 10–25% more time at equal passes (the reorthogonalisation); at matched accuracy it needs
    far fewer passes. It needs ``(s + 1)·b ≤ n`` and ``s·b ≤ m``; otherwise the depth is reduced (and
    subspace iteration is used when not even ``s = 1`` fits).

    ``method="subspace"`` (Halko–Martinsson–Tropp, arXiv 0909.4061): ``Q = orth(A Ω)``, ``power_iters``
    rounds of ``Q ← orth(A orth(Aᴴ Q))`` (re-orthonormalisation after every product, HMT Alg. 4.4: needed in
    floating point when the spectrum decays slowly; between power iterations by Cholesky-QR, falling back to
    Householder TSQR when ill-conditioned, as scikit-learn uses LU there; the final ``Q`` always by TSQR),
    then the SVD of the small ``B = Qᴴ A``. The expected error obeys
    ``E‖A − u s vᴴ‖ ≤ [1 + 4√(k+p)/(p−1) · √min(m,n)]^{1/(2q+1)} σ_{k+1}`` (HMT Cor. 10.10).

    In both cases ``u s vᴴ = u uᴴ A`` (an orthogonal projection of ``A``), so ``error_estimate`` (HMT §4.3)
    bounds ``‖A − u s vᴴ‖₂`` and ``frobenius_error`` is exact.

    Args:
        A: ``[m, n]`` torch tensor, NumPy array, SciPy sparse matrix, :class:`LinearOperator` (needs ``.T``),
            Dask array or :class:`~eigenlens.linalg.distributed.RowBlocks` (torch.distributed shard).
        rank: number of singular triplets ``k`` (in ``tol`` mode: the starting rank).
        oversample: extra random vectors ``p``.
        power_iters: power iterations ``q`` (``"krylov"``: ``q + 1`` Krylov blocks); the passes over ``A`` are
            ``2q + 2`` for both methods.
        method: ``"krylov"`` (randomized block Krylov, the default) or ``"subspace"`` (HMT power iteration).
        tol: if given, return the rank (from ``rank`` up to ``max_rank``) at which ``error_estimate ≤
            tol · s[0]``. ``"krylov"``: one Krylov space grows block by block (``power_iters`` is ignored) and the
            smallest rank meeting ``tol`` is read off after every block (the estimate for every rank costs
            only small products; see :func:`_rbki`). ``"subspace"``: the rank is doubled, each try from
            scratch with ``power_iters`` iterations.
        max_rank: cap of the ``tol`` mode (default ``min(m, n)``).
        generator: randomness (None = fresh generator seeded 0).
        block_size: rows per block for explicit matrices (distributed results match for equal block sizes).

    Returns:
        :class:`RandomizedSvdResult` (an :class:`eigenlens.linalg.svds.SvdsResult`) with ``error_estimate``
        (HMT a-posteriori spectral bound) and ``frobenius_error``.

    Raises:
        ValueError: bad ``rank``/``oversample``/``power_iters``/``method``/``tol``, or NaN/Inf in ``A``.

    Warns:
        ConvergenceWarning: ``tol`` not met at ``max_rank``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> A = torch.randn(300, 8, dtype=torch.float64, generator=g)
        >>> A = A @ torch.randn(8, 200, dtype=torch.float64, generator=g)
        >>> res = randomized_svd(A, 8)
        >>> bool(torch.allclose(res.s, torch.linalg.svdvals(A)[:8], rtol=1e-10))
        True
    """
    bk = row_blocks(A, block_size=block_size)
    n, d = bk.shape
    limit = min(n, d)
    _check_rank(rank, limit, "randomized_svd")
    if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 0:
        raise ValueError(f"randomized_svd: oversample must be a nonnegative int, got {oversample!r}")
    if isinstance(power_iters, bool) or not isinstance(power_iters, int) or power_iters < 0:
        raise ValueError(f"randomized_svd: power_iters must be a nonnegative int, got {power_iters!r}")
    if method not in ("krylov", "subspace"):
        raise ValueError(f"randomized_svd: method must be 'krylov' or 'subspace', got {method!r}")
    if tol is not None and not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"randomized_svd: tol must be in (0, 1) (relative to s[0]), got {tol!r}")
    # ‖A‖_F² (for frobenius_error) doubles as the NaN/Inf check: one read pass, no temporaries
    sq_fro = _sq_fro(bk)
    if not math.isfinite(sq_fro) and isinstance(A, Tensor) and A.layout == torch.strided and not bool(
        torch.isfinite(A).all()
    ):
        raise ValueError("randomized_svd: A contains NaN or Inf; clean the matrix")
    g = resolve_generator(generator)
    if tol is None:
        return _rsvd_dispatch(bk, rank, oversample, power_iters, method, g, sq_fro)
    cap = limit if max_rank is None else _check_rank(max_rank, limit, "randomized_svd")
    b = min(rank + oversample, n, d)
    depth = min(n // b, d // b - 1)
    if method == "krylov" and depth >= 1:
        # one growing Krylov space; the rank is chosen inside it
        res = _rbki(bk, rank, b, depth, g, sq_fro, tol=tol, cap=cap)
        ok = res.converged
    else:
        res, ok = _tol_by_doubling(bk, rank, cap, oversample, power_iters, method, g, sq_fro, tol)
    if not ok:
        warnings.warn(
            f"randomized_svd: the error estimate {res.error_estimate:.2e} exceeds tol·s[0] = "
            f"{tol * float(res.s[0]):.2e} at rank {res.rank} (max_rank={cap}); raise max_rank"
            + (" or power_iters" if method == "subspace" else ""),
            ConvergenceWarning,
            stacklevel=2,
        )
    return res


def _tol_by_doubling(
    bk: RowBlocks, rank: int, cap: int, oversample: int, power_iters: int, method: str, g: torch.Generator,
    sq_fro: float, tol: float,
) -> tuple[RandomizedSvdResult, bool]:
    k, total = rank, 0
    while True:
        res = _rsvd_dispatch(bk, k, oversample, power_iters, method, g, sq_fro)
        total += res.num_matvecs
        ok = res.error_estimate <= tol * float(res.s[0]) if res.s.numel() else True
        if ok or k >= cap:
            break
        k = min(2 * k, cap)
    return dataclasses.replace(res, num_matvecs=total, converged=bool(ok)), bool(ok)


def _as_symmetric(op: Any, what: str, psd: bool = False) -> LinearOperator:
    if not isinstance(op, LinearOperator):
        op = aslinearoperator(op)
    if not op.is_symmetric:
        raise ValueError(
            f"{what}: the operator is not tagged symmetric; declare it with "
            f"eigenlens.aslinearoperator(A, symmetric=True{', psd=True' if psd else ''}) (or use randomized_svd)"
        )
    return op


def nystrom(
    op: Any,
    rank: int,
    *,
    oversample: int = 10,
    generator: torch.Generator | None = None,
) -> LowRank:
    """Stable randomized Nyström approximation ``A ≈ U diag(λ) Uᴴ`` of a PSD operator (Tropp et al. 2017).

    With an orthonormal Gaussian test matrix ``Ω`` (``n × ℓ``, ``ℓ = rank + oversample``), ``Y = A Ω``, a
    shift ``ν = √n · eps · ‖Y‖_F``: ``Y_ν = Y + νΩ``, ``C = chol(Ωᴴ Y_ν)``, ``B = Y_ν C⁻¹``,
    ``B = U Σ Wᴴ``, ``λ = max(Σ² − ν, 0)``; the ``rank`` leading terms are kept. ``ℓ`` products with ``A``.

    Args:
        op: a PSD :class:`LinearOperator` (tagged ``psd`` or ``symmetric``) or a symmetric matrix.
        rank: number of eigenpairs kept.
        oversample: extra test vectors.
        generator: randomness (None = fresh generator seeded 0).

    Returns:
        :class:`LowRank`, tagged psd, with ``values`` descending.

    Raises:
        ValueError: an operator not tagged symmetric, bad rank.

    Example:
        >>> import torch, eigenlens as el
        >>> G = torch.randn(50, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> lr = nystrom(el.aslinearoperator(G @ G.T, psd=True), 5)
        >>> bool(torch.allclose(lr.values, torch.linalg.eigvalsh(G @ G.T).flip(0)[:5], rtol=1e-8))
        True
    """
    A = _as_symmetric(op, "nystrom", psd=True)
    n = A.shape[0]
    _check_rank(rank, n, "nystrom")
    ell = min(n, rank + max(0, int(oversample)))
    g = resolve_generator(generator)
    Omega, _ = torch.linalg.qr(gaussian(n, ell, generator=g, dtype=A.dtype, device=A.device))
    Y = A @ Omega
    nu = math.sqrt(n) * torch.finfo(torch.empty((), dtype=A.dtype).real.dtype).eps * float(torch.linalg.norm(Y))
    Ynu = Y + nu * Omega
    M = Omega.mH @ Ynu
    M = (M + M.mH) / 2
    C, info = torch.linalg.cholesky_ex(M, upper=True)
    if int(info) != 0:
        raise ValueError(
            "nystrom: Ωᴴ(AΩ + νΩ) is not positive definite, so the operator is not PSD; use randomized_eigsh "
            "for symmetric indefinite operators"
        )
    B = torch.linalg.solve_triangular(C, Ynu, upper=True, left=False)
    U, S, _ = torch.linalg.svd(B, full_matrices=False)
    lam = torch.clamp(S**2 - nu, min=0.0)
    return LowRank(U[:, :rank], lam[:rank], psd=True, matvecs_used=ell)


def randomized_eigsh(
    op: Any,
    rank: int,
    *,
    which: str = "LM",
    oversample: int = 10,
    power_iters: int = 2,
    generator: torch.Generator | None = None,
) -> Any:
    """Randomized eigendecomposition of a symmetric (possibly indefinite) operator (HMT Alg. 5.3).

    ``Q`` from the range finder with ``power_iters`` rounds of ``Q ← orth(A Q)``, the Rayleigh–Ritz matrix
    ``T = Qᴴ A Q``, its eigenpairs ``(θ, W)``; the ``rank`` pairs of largest ``|θ|`` (``"LM"``), largest
    (``"LA"``) or smallest (``"SA"``) are returned with residual norms ``‖A x − θ x‖``.

    Args:
        op: a symmetric :class:`LinearOperator` (tagged) or a symmetric matrix.
        rank: number of eigenpairs.
        which: ``"LM"`` | ``"LA"`` | ``"SA"``.
        oversample, power_iters, generator: as in :func:`randomized_svd`.

    Returns:
        :class:`eigenlens.linalg.eigsh.EigshResult` (``method="randomized"``), ordered as in ``eigsh``.

    Raises:
        ValueError: untagged operator, bad ``which`` or rank.
    """
    if which not in ("LM", "LA", "SA"):
        raise ValueError(f"randomized_eigsh: which must be 'LM', 'LA' or 'SA', got {which!r}")
    A = _as_symmetric(op, "randomized_eigsh")
    n = A.shape[0]
    _check_rank(rank, n, "randomized_eigsh")
    ell = min(n, rank + max(0, int(oversample)))
    g = resolve_generator(generator)
    Q, _ = torch.linalg.qr(A @ gaussian(n, ell, generator=g, dtype=A.dtype, device=A.device))
    for _ in range(power_iters):
        Q, _ = torch.linalg.qr(A @ Q)
    AQ = A @ Q
    T = Q.mH @ AQ
    theta, W = torch.linalg.eigh((T + T.mH) / 2)
    if which == "LM":
        order = torch.argsort(theta.abs(), descending=True)[:rank]
    elif which == "LA":
        order = torch.argsort(theta, descending=True)[:rank]
    else:
        order = torch.argsort(theta)[:rank]
    theta, W = theta[order], W[:, order]
    X = Q @ W
    res = torch.linalg.vector_norm(AQ @ W - X * theta.to(X.dtype), dim=0).to(torch.float64)
    vals = theta.to(torch.float64)
    mv = ell * (2 + power_iters)
    try:
        from eigenlens.linalg.eigsh import EigshResult
    except ImportError:  # pragma: no cover - the Krylov module is optional here
        return SvdsResult(u=X, s=vals, v=X, num_matvecs=mv, converged=True)
    return EigshResult(eigenvalues=vals, eigenvectors=X, residual_norms=res, num_matvecs=mv, converged=True,
                       norm_estimate=float(vals.abs().max()), method="randomized")
