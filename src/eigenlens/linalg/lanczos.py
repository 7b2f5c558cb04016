"""The symmetric Lanczos process with full reorthogonalisation, for one or a block of starting vectors.

Given a self-adjoint operator ``A`` (``n × n``) and a unit starting vector ``q_1``, ``m`` steps of Lanczos
build an orthonormal basis ``Q = [q_1, ..., q_m]`` of the Krylov space ``span{q_1, A q_1, ..., A^{m-1} q_1}``
and the real symmetric tridiagonal ``T = Qᴴ A Q`` (diagonal ``alpha``, off-diagonal ``beta``) such that

    A Q = Q T + r e_mᵀ,    r = beta_m q_{m+1},    Qᴴ Q = I.

This module is the Krylov core used by :func:`eigenlens.linalg.eigsh` (Ritz pairs) and by stochastic
Lanczos quadrature (:func:`eigenlens.linalg.spectral_density`, Gauss quadrature nodes and weights).

References:
    C. Lanczos, *An iteration method for the solution of the eigenvalue problem of linear differential and
    integral operators*, J. Res. Nat. Bur. Standards 45 (1950).
    L. Giraud, J. Langou, M. Rozložník, *The loss of orthogonality in the Gram-Schmidt orthogonalization
    process*, Comput. Math. Appl. 50 (2005) — "twice is enough" (CGS2).
    G. H. Golub, G. Meurant, *Matrices, Moments and Quadrature with Applications* (2010) — Lanczos and
    Gauss quadrature.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from eigenlens._result import Result
from eigenlens.linalg.exceptions import ConvergenceWarning
from eigenlens.linalg.operator import LinearOperator, aslinearoperator
from eigenlens.linalg.random import resolve_generator

__all__ = ["lanczos", "LanczosResult"]


# ---------------------------------------------------------------------------- shared helpers
def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype: float64 for real operators, complex128 for complex ones."""
    return torch.complex128 if dtype.is_complex else torch.float64


def _as_operator(op: Any, who: str) -> LinearOperator:
    if not isinstance(op, LinearOperator):
        op = aslinearoperator(op)
    return op


def _require_symmetric(op: LinearOperator, who: str) -> None:
    """Raise a ValueError (expected / got / how to fix) unless ``op`` is square and tagged symmetric."""
    if not op.is_square:
        raise ValueError(
            f"{who} needs a square operator, got shape {op.shape}; for a rectangular operator use "
            "eigenlens.svds (singular values) or apply it to op.T @ op"
        )
    if not op.is_symmetric:
        raise ValueError(
            f"{who} needs a symmetric (self-adjoint) operator, but the operator of shape {op.shape} is not tagged "
            "symmetric; tag it with el.aslinearoperator(A, symmetric=True) or "
            "el.linear_operator(matmat, shape, symmetric=True), or use op.symmetrized() for (A + Aᵀ)/2"
        )


def _check_positive_int(value: Any, name: str, meaning: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int ({meaning}), got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 ({meaning}), got {value}")
    return value


def _breakdown_rtol(n: int, dtype: torch.dtype) -> float:
    """Relative size of a residual below which the Krylov space is taken as invariant (breakdown)."""
    real = torch.empty((), dtype=dtype).real.dtype
    return 10.0 * max(n, 1) ** 0.5 * torch.finfo(real).eps


def _matvec_budget(max_matvecs: Any, default: int, need: int, why: str, who: str, what: str) -> int:
    """``max_matvecs`` checked against the ``need`` products the method cannot do without (``default`` if None).

    Raises:
        TypeError/ValueError: not a positive int; ValueError: below ``need`` (the message gives ``why``).
    """
    if max_matvecs is None:
        return default
    budget = _check_positive_int(max_matvecs, "max_matvecs", what)
    if budget < need:
        raise ValueError(
            f"max_matvecs = {budget} is too small: {who} needs at least {need} products here ({why}); "
            "raise max_matvecs"
        )
    return budget


def _check_v0(op: LinearOperator, v0: Any, cdtype: torch.dtype, who: str) -> Tensor:
    """A user's starting vector(s) ``v0`` (``[n]`` or ``[n, j]``) as a finite ``[n, j]`` block in ``cdtype``.

    Raises:
        TypeError: ``v0`` is not a tensor, or complex for a real operator.
        ValueError: wrong shape, or NaN/Inf entries.
    """
    n = op.shape[0]
    if not isinstance(v0, Tensor):
        raise TypeError(
            f"{who}: v0 must be a torch.Tensor of shape [n] or [n, j], got {type(v0).__name__}; "
            "convert with torch.as_tensor(v0)"
        )
    if v0.ndim not in (1, 2) or v0.shape[0] != n or (v0.ndim == 2 and v0.shape[1] < 1):
        raise ValueError(
            f"{who}: v0 must have shape [n] or [n, j] with n = {n} (the operator is {op.shape}) and j >= 1, "
            f"got shape {tuple(v0.shape)}"
        )
    if v0.is_complex() and not cdtype.is_complex:
        raise TypeError(f"{who}: v0 is complex ({v0.dtype}) but the operator is real ({op.dtype})")
    V = (v0.unsqueeze(1) if v0.ndim == 1 else v0).to(device=op.device, dtype=cdtype)
    if not bool(torch.isfinite(V).all()):
        raise ValueError(f"{who}: v0 contains NaN or Inf; pass finite starting vectors")
    return V


def _starting_block(
    op: LinearOperator, v0: Tensor | None, generator: torch.Generator | None, cdtype: torch.dtype, who: str
) -> tuple[Tensor, bool]:
    """Return the normalised starting block as rows ``[b, n]`` (compute dtype) and whether ``v0`` was a vector."""
    n = op.shape[0]
    if v0 is None:
        g = resolve_generator(generator)
        real = torch.float64
        V = torch.randn(n, 1, generator=g, dtype=real)
        if cdtype.is_complex:
            V = torch.complex(V, torch.randn(n, 1, generator=g, dtype=real))
        V = V.to(device=op.device, dtype=cdtype)
        vector = True
    else:
        V = _check_v0(op, v0, cdtype, who)
        vector = v0.ndim == 1
    norms = torch.linalg.vector_norm(V, dim=0)
    if bool((norms == 0).any()):
        bad = torch.nonzero(norms == 0).flatten().tolist()
        raise ValueError(f"{who}: v0 has zero column(s) {bad}; every starting vector must be non-zero")
    return (V / norms).mT.contiguous(), vector


def _matvec_rows(op: LinearOperator, rows: Tensor, cdtype: torch.dtype) -> Tensor:
    """Apply ``op`` to the vectors stored as rows ``[b, n]`` in one batched product; returns rows ``[b, n]``."""
    return (op @ rows.mT.to(op.dtype)).mT.to(cdtype)


# ---------------------------------------------------------------------------- the result
@dataclass(frozen=True)
class LanczosResult(Result):
    """The output of :func:`lanczos`.

    Layout for a single starting vector (``v0`` of shape ``[n]`` or ``None``), with ``m = steps`` the
    number of steps actually taken (``m < num_matvecs`` only after a breakdown, i.e. an invariant subspace):

    * ``alpha [m]`` float64 — diagonal of ``T``; ``beta [m]`` float64 — ``beta[:-1]`` is the off-diagonal of
      ``T`` and ``beta[-1] = ‖r‖`` is the norm of the final residual.
    * ``basis [n, m]`` (operator dtype) — ``Q`` with orthonormal columns; ``residual [n]`` — ``r``, so that
      ``A Q = Q T + r e_mᵀ``.
    * ``steps`` int.

    Layout for a block of ``b`` independent starting vectors (``v0`` of shape ``[n, b]``): a leading batch
    dimension, probe ``p`` being column ``p`` of ``v0``.

    * ``alpha [b, m]``, ``beta [b, m]`` float64, ``basis [b, n, m]``, ``residual [b, n]``, ``steps [b]``
      (int64), with ``m = num_matvecs`` (capped at ``n``).
    * A probe that breaks down early (``steps[p] < m``) is stopped; its entries ``alpha[p, s:]``,
      ``beta[p, s:]`` and ``basis[p, :, s:]`` (``s = steps[p]``) are zero padding and ``beta[p, s-1]`` is
      its (tiny) final residual norm. :meth:`tridiagonal` returns ``T_s ⊕ 0`` for it (decoupled padding).

    Attributes:
        alpha: diagonal of ``T``.
        beta: off-diagonal of ``T`` followed by the final residual norm.
        basis: the Lanczos vectors (``None`` when ``lanczos(..., return_basis=False)``).
        residual: the final residual ``r = beta_m q_{m+1}``.
        num_matvecs: number of vectors pushed through the operator (all probes together).
        steps: Lanczos steps taken (per probe for a block).
    """

    alpha: Tensor
    beta: Tensor
    basis: Tensor | None
    residual: Tensor
    num_matvecs: int
    steps: Any

    @property
    def batched(self) -> bool:
        """Whether this result holds a block of independent processes (leading batch dimension)."""
        return self.alpha.ndim == 2

    def _steps_list(self) -> list[int]:
        if self.batched:
            return [int(s) for s in torch.as_tensor(self.steps).tolist()]
        return [int(self.steps)]

    def tridiagonal(self) -> Tensor:
        """The Lanczos tridiagonal matrix ``T``: ``[m, m]`` (or ``[b, m, m]``), float64.

        For a probe that stopped after ``s < m`` steps the padded block is decoupled: ``T = T_s ⊕ 0``.
        """
        alpha = self.alpha if self.batched else self.alpha.unsqueeze(0)
        beta = self.beta if self.batched else self.beta.unsqueeze(0)
        b, m = alpha.shape
        T = torch.diag_embed(alpha)
        if m > 1:
            off = beta[:, : m - 1].clone()
            for p, s in enumerate(self._steps_list()):
                off[p, max(s - 1, 0):] = 0
            T = T + torch.diag_embed(off, offset=1) + torch.diag_embed(off, offset=-1)
        return T if self.batched else T[0]

    def _eig_per_probe(self) -> list[tuple[Tensor, Tensor]]:
        T = self.tridiagonal()
        T = T if self.batched else T.unsqueeze(0)
        return [torch.linalg.eigh(T[p, :s, :s]) for p, s in enumerate(self._steps_list())]

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Ritz values (ascending) and Ritz vectors ``Q S`` where ``T = S diag(values) Sᵀ``.

        Returns:
            ``(values [m], vectors [n, m])`` for a single probe, or ``(values [b, m], vectors [b, n, m])``
            for a block; for a probe with ``steps[p] = s < m`` the entries past ``s`` are NaN (values) and
            zero (vectors). Values are float64, vectors have the basis dtype.

        Raises:
            ValueError: if the basis was not kept (``return_basis=False``).
        """
        if self.basis is None:
            raise ValueError("ritz() needs the Lanczos basis; run lanczos(..., return_basis=True)")
        eig = self._eig_per_probe()
        basis = self.basis if self.batched else self.basis.unsqueeze(0)
        b, n, m = basis.shape
        values = torch.full((b, m), float("nan"), dtype=torch.float64, device=basis.device)
        vectors = torch.zeros((b, n, m), dtype=basis.dtype, device=basis.device)
        for p, (w, S) in enumerate(eig):
            s = w.shape[0]
            values[p, :s] = w
            vectors[p, :, :s] = basis[p, :, :s] @ S.to(basis.dtype)
        if self.batched:
            return values, vectors
        return values[0], vectors[0]

    def quadrature(self) -> tuple[Tensor, Tensor]:
        """Gauss quadrature nodes and weights of ``T`` (the basis of stochastic Lanczos quadrature).

        ``nodes`` are the eigenvalues of ``T`` and ``weights`` the squared first components of its unit
        eigenvectors, so that ``q_1ᴴ f(A) q_1 ≈ Σ_i weights_i f(nodes_i)`` (exact for polynomials of degree
        ``< 2m``); the weights of a probe sum to 1.

        Returns:
            ``(nodes [m], weights [m])`` or ``(nodes [b, m], weights [b, m])``, float64, nodes ascending;
            padding past ``steps[p]`` has node 0 and weight 0 (so plain weighted sums stay correct).
        """
        eig = self._eig_per_probe()
        m = self.alpha.shape[-1]
        nodes = torch.zeros((len(eig), m), dtype=torch.float64, device=self.alpha.device)
        weights = torch.zeros_like(nodes)
        for p, (w, S) in enumerate(eig):
            s = w.shape[0]
            nodes[p, :s] = w
            weights[p, :s] = S[0, :].abs() ** 2
        if self.batched:
            return nodes, weights
        return nodes[0], weights[0]


# ---------------------------------------------------------------------------- the algorithm
def lanczos(
    op: Any,
    num_matvecs: int,
    *,
    v0: Tensor | None = None,
    reorthogonalize: bool = True,
    generator: torch.Generator | None = None,
    return_basis: bool = True,
    progress: bool = False,
) -> LanczosResult:
    """Run ``num_matvecs`` steps of the symmetric Lanczos process (one or ``b`` independent processes at once).

    Each step applies ``A`` once to every active starting vector — a single batched product ``A @ V`` with
    ``V`` of shape ``[n, b]`` — then orthogonalises against the whole basis twice (classical Gram–Schmidt
    twice, "CGS2", which keeps ``QᴴQ = I`` to working precision) when ``reorthogonalize`` is true, or uses
    the plain three-term recurrence otherwise. All scalars (``alpha``, ``beta``, projections) and the basis
    are accumulated in float64 (complex128) even for float32 operators; only the products with ``A`` run in
    the operator's dtype.

    A probe whose residual falls below ``10·√n·eps·‖T‖`` (an invariant subspace: exact eigenpairs found) is
    stopped rather than divided by ~0; see :class:`LanczosResult` for the layout and padding. The Krylov
    dimension is capped at ``n``.

    Args:
        op: a square :class:`~eigenlens.linalg.operator.LinearOperator` tagged symmetric (explicit matrices
            are converted with :func:`~eigenlens.linalg.operator.aslinearoperator`).
        num_matvecs: Lanczos steps per starting vector ``m`` (the total cost is ``b·m`` products).
        v0: starting vector ``[n]`` or block ``[n, b]`` of ``b`` independent starting vectors (normalised
            here; need not be orthogonal to each other). ``None``: one Gaussian vector from ``generator``.
        reorthogonalize: full reorthogonalisation (CGS2). Without it, Lanczos vectors lose orthogonality once
            Ritz values converge (ghost eigenvalues) — fine for spectral densities, not for eigenvectors.
        generator: randomness for ``v0=None`` (``None``: a fresh generator seeded 0).
        return_basis: keep and return the basis (``n·m`` numbers per probe). With ``False`` and
            ``reorthogonalize=False`` only the last two vectors are kept (memory ``O(n·b)``).
        progress: show a tqdm progress bar over the steps.

    Returns:
        A :class:`LanczosResult`. If interrupted (``KeyboardInterrupt``) after at least one step, the steps
        completed so far are returned with a :class:`~eigenlens.linalg.exceptions.ConvergenceWarning`.

    Raises:
        ValueError: non-square or untagged operator (the message says how to tag it), ``num_matvecs < 1``,
            an empty operator, or a bad ``v0`` (wrong shape, zero or non-finite columns).
        TypeError: ``num_matvecs`` not an int, ``v0`` not a tensor.
        FloatingPointError: a product with ``A`` produced NaN/Inf (raised by the operator, naming the call).

    Example:
        >>> import torch, eigenlens as el
        >>> A = el.aslinearoperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
        >>> res = el.lanczos(A, 5)
        >>> [round(x, 8) for x in res.ritz()[0].tolist()]
        [1.0, 2.0, 3.0, 4.0, 5.0]

    References:
        C. Lanczos (1950); Giraud, Langou, Rozložník (2005) for CGS2; Golub & Meurant, *Matrices, Moments
        and Quadrature* (2010). Block-of-probes use as in stochastic Lanczos quadrature: Ubaru, Chen, Saad,
        SIAM J. Matrix Anal. Appl. 38 (2017); Ghorbani, Krishnan, Xiao (arXiv 1901.10159).
    """
    op = _as_operator(op, "lanczos")
    _require_symmetric(op, "lanczos")
    num_matvecs = _check_positive_int(num_matvecs, "num_matvecs", "Lanczos steps per starting vector")
    n = op.shape[0]
    if n == 0:
        raise ValueError("lanczos needs a non-empty operator, got shape (0, 0)")
    cdtype = _compute_dtype(op.dtype)
    Q0, vector = _starting_block(op, v0, generator, cdtype, "lanczos")
    b = Q0.shape[0]
    m = min(num_matvecs, n)
    store = bool(return_basis) or bool(reorthogonalize)
    dev = op.device

    alpha = torch.zeros(b, m, dtype=torch.float64, device=dev)
    beta = torch.zeros(b, m, dtype=torch.float64, device=dev)
    steps = torch.zeros(b, dtype=torch.int64, device=dev)
    residual = torch.zeros(b, n, dtype=cdtype, device=dev)
    broke = torch.zeros(b, dtype=torch.bool, device=dev)
    anorm = torch.zeros(b, dtype=torch.float64, device=dev)
    if store:
        Q = torch.zeros(b, m + 1, n, dtype=cdtype, device=dev)
        Q[:, 0] = Q0
    else:
        prev, cur = torch.zeros_like(Q0), Q0
    rtol = _breakdown_rtol(n, op.dtype)
    total = 0

    from tqdm.auto import tqdm

    bar = tqdm(total=m, desc="lanczos", unit="step", disable=not progress, leave=False)
    try:
        for j in range(m):
            active = torch.nonzero(~broke).flatten()
            if active.numel() == 0:
                break
            everyone = active.numel() == b
            sel = slice(None) if everyone else active
            qj = Q[sel, j] if store else cur[sel]
            W = _matvec_rows(op, qj, cdtype)
            total += qj.shape[0]
            if reorthogonalize:
                Qj = Q[sel, : j + 1]  # [ba, j+1, n]
                h = torch.bmm(Qj.conj(), W.unsqueeze(2))
                W = W - torch.bmm(Qj.mT, h).squeeze(2)
                h2 = torch.bmm(Qj.conj(), W.unsqueeze(2))
                W = W - torch.bmm(Qj.mT, h2).squeeze(2)
                a = (h[:, j, 0] + h2[:, j, 0]).real
            else:
                if j > 0:
                    qprev = Q[sel, j - 1] if store else prev[sel]
                    W = W - beta[sel, j - 1].unsqueeze(1).to(cdtype) * qprev
                a = (qj.conj() * W).sum(dim=1).real
                W = W - a.unsqueeze(1).to(cdtype) * qj
            bn = torch.linalg.vector_norm(W, dim=1).to(torch.float64)
            prev_beta = beta[sel, j - 1] if j > 0 else torch.zeros_like(bn)
            an = torch.maximum(anorm[sel], a.abs() + bn + prev_beta)
            stop = bn <= rtol * an
            qnext = torch.where(stop.unsqueeze(1), torch.zeros_like(W), W / torch.where(stop, 1.0, bn).unsqueeze(1))
            # commit the step (kept together so that an interrupt leaves a consistent state)
            alpha[sel, j] = a
            beta[sel, j] = bn
            anorm[sel] = an
            steps[sel] = j + 1
            if bool(stop.any()):
                idx = active[stop]
                residual[idx] = W[stop]
                broke[idx] = True
            if store:
                Q[sel, j + 1] = qnext
            else:
                if everyone:
                    prev, cur = cur, qnext
                else:
                    prev, cur = prev.clone(), cur.clone()
                    prev[active], cur[active] = cur[active], qnext
            bar.update(1)
    except KeyboardInterrupt:
        if int(steps.max()) == 0:
            raise
        warnings.warn(
            f"lanczos interrupted after {int(steps.max())} of {m} steps; returning the steps completed so far",
            ConvergenceWarning,
            stacklevel=2,
        )
    finally:
        bar.close()

    # residual of the probes that did not break down: r = beta_s q_{s+1}
    steps_list = steps.tolist()
    for p in range(b):
        s = steps_list[p]
        if not bool(broke[p]) and s > 0:
            qn = Q[p, s] if store else cur[p]
            residual[p] = beta[p, s - 1].to(cdtype) * qn
    m_out = max(steps_list) if steps_list else 0
    alpha, beta = alpha[:, :m_out].contiguous(), beta[:, :m_out].contiguous()
    basis = Q[:, :m_out].mT.to(op.dtype).contiguous() if return_basis else None  # [b, n, m]
    residual = residual.to(op.dtype)
    if vector:
        return LanczosResult(
            alpha=alpha[0],
            beta=beta[0],
            basis=None if basis is None else basis[0],
            residual=residual[0],
            num_matvecs=total,
            steps=int(steps_list[0]),
        )
    return LanczosResult(alpha=alpha, beta=beta, basis=basis, residual=residual, num_matvecs=total, steps=steps)
