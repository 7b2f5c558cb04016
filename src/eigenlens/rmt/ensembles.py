r"""Random matrix ensembles, float64 (complex128), seeded through an explicit ``generator``.

Every function returns a dense tensor whose spectrum converges to a law of :mod:`eigenlens.rmt.laws`:

========================  ==========================================  =============================
ensemble                  construction                                limit
========================  ==========================================  =============================
``wigner``                (A + Aᵀ)/√(2n), A iid N(0, 1) (GOE; GUE)    semicircle on [−2, 2]
``wishart``               XᴴX/n, X n×p iid N(0, σ²) (real/complex)    Marchenko–Pastur(p/n, σ²)
``ginibre``               X/√n (real or complex, E|x|² = 1)           circular law, unit disk
``band``                  √S ∘ G, S doubly stochastic, width W        circular law, unit disk
``elliptic_ensemble``     √((1+τ)/2)·S + √((1−τ)/2)·A, sym./antisym.  elliptic law
``spiked_wigner``         wigner + Σ θ_i v_i v_iᵀ                     semicircle + outliers θ + 1/θ
``spiked_wishart``        rows ~ N(0, σ²(I + Σ(ℓ_i − 1)v_i v_iᵀ))     MP + BBP outliers
``haar_orthogonal``       QR of a Gaussian matrix, signs fixed        Haar on O(n)
``haar_unitary``          same, complex                               Haar on U(n)
========================  ==========================================  =============================

The global torch RNG is never touched; ``generator=None`` means a fresh generator seeded 0, so two
identical calls return identical matrices.

References:
    Mezzadri, *How to generate random matrices from the classical compact groups* (arXiv math-ph/0609050);
    Baik, Ben Arous & Péché (arXiv math/0403022); Jain, Jana, Luh & O'Rourke, *The circular law for random
    band matrices* (arXiv 2112.05000) and its improved-bandwidth sequel (doubly-stochastic profiles,
    bandwidth n^γ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from eigenlens.linalg.random import resolve_generator
from eigenlens.rmt._validate import check_positive

__all__ = [
    "wigner",
    "wishart",
    "ginibre",
    "band",
    "band_profile",
    "doubly_stochastic",
    "elliptic_ensemble",
    "spiked_wigner",
    "spiked_wishart",
    "haar_orthogonal",
    "haar_unitary",
]

_F64 = torch.float64


def _size(n: Any, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {n!r}. Fix: pass e.g. {name}=1000.")
    return n


def _randn(shape: tuple[int, ...], gen: torch.Generator, complex: bool = False) -> Tensor:
    if complex:
        re = torch.randn(shape, generator=gen, dtype=_F64)
        im = torch.randn(shape, generator=gen, dtype=_F64)
        return torch.complex(re, im) / math.sqrt(2.0)  # E|z|² = 1
    return torch.randn(shape, generator=gen, dtype=_F64)


def wigner(n: int, *, complex: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """GOE (real) or GUE (complex) matrix scaled so the spectrum fills [−2, 2] (semicircle, variance 1).

    H = (A + Aᴴ)/√(2n) with A iid standard (complex: E|a|² = 1): off-diagonal entries have variance 1/n.

    Args:
        n: size.
        complex: GUE instead of GOE.
        generator: torch generator (None: seeded 0).

    Returns:
        ``[n, n]`` float64 (complex128) symmetric (Hermitian) tensor.

    Example:
        >>> H = wigner(200)
        >>> bool(torch.allclose(H, H.T)), abs(torch.linalg.eigvalsh(H).max().item() - 2.0) < 0.15
        (True, True)
    """
    n = _size(n)
    g = resolve_generator(generator)
    a = _randn((n, n), g, complex)
    return (a + a.mH) / math.sqrt(2.0 * n)


def wishart(n: int, p: int, *, variance: float = 1.0, complex: bool = False,
            generator: torch.Generator | None = None) -> Tensor:
    """Sample covariance XᴴX/n (p×p) of X (n×p) with iid N(0, σ²) entries; spectrum -> MP(p/n, σ²).

    ``complex=True`` draws circular complex entries with E|x|² = σ² (the β = 2 case of the edge tests).

    Example:
        >>> W = wishart(400, 100)
        >>> W.shape, abs(torch.trace(W).item() / 100 - 1.0) < 0.02
        (torch.Size([100, 100]), True)
    """
    n, p = _size(n), _size(p, "p")
    s2 = check_positive(variance, "variance", "pass the entry variance σ² > 0")
    g = resolve_generator(generator)
    x = _randn((n, p), g, complex) * math.sqrt(s2)
    c = x.mH @ x / n
    return 0.5 * (c + c.mH)  # exactly Hermitian (BLAS does not guarantee it)


def ginibre(n: int, *, complex: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """Ginibre matrix X/√n (iid entries, E|x|² = 1); its eigenvalues fill the unit disk uniformly.

    Example:
        >>> ev = torch.linalg.eigvals(ginibre(200))
        >>> bool((ev.abs() < 1.2).all())
        True
    """
    n = _size(n)
    g = resolve_generator(generator)
    return _randn((n, n), g, complex) / math.sqrt(n)


def doubly_stochastic(profile: Tensor, *, tol: float = 1e-10, max_iter: int = 10_000) -> Tensor:
    """Sinkhorn–Knopp scaling of a non-negative square matrix to rows and columns summing to 1.

    Raises:
        ValueError: negative/non-finite entries, a zero row/column, or no convergence (e.g. no total support).
    """
    s = torch.as_tensor(profile, dtype=_F64).clone()
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"profile must be a square matrix; got shape {tuple(s.shape)}. Fix: pass an n×n tensor.")
    if not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError("profile entries must be finite and >= 0 (they are variances). Fix: use s.abs() or clip.")
    if (s.sum(0) == 0).any() or (s.sum(1) == 0).any():
        raise ValueError("profile has an all-zero row or column; it cannot be made doubly stochastic.")
    for _ in range(max_iter):
        s = s / s.sum(1, keepdim=True)
        s = s / s.sum(0, keepdim=True)
        if (s.sum(1) - 1).abs().max() < tol:
            return s
    raise ValueError(
        f"Sinkhorn scaling did not converge in {max_iter} iterations (the pattern may lack total support). "
        "Fix: use a profile with a positive diagonal, e.g. add a small multiple of the identity."
    )


def band_profile(n: int, bandwidth: float, profile: str = "periodic") -> Tensor:
    """Doubly-stochastic variance profile S (n×n, rows and columns sum to 1) of a band matrix.

    ``bandwidth`` W is the number of non-zero entries per row (a float such as ``n**0.9`` is rounded,
    then clamped to [1, n]):

    * ``"periodic"``: a circulant band, S_ij = 1/W when (j − i) mod n is one of the W offsets
      −⌊(W − 1)/2⌋, …, ⌈(W − 1)/2⌉ (symmetric pattern for odd W); W = n gives S = 1/n (Ginibre).
    * ``"block"``: block-diagonal with ⌈n/W⌉ nearly equal blocks (sizes differ by at most one); a block of
      size m has entries 1/m.

    Raises:
        ValueError: bandwidth < 1 or not finite, or an unknown profile name.
    """
    n = _size(n)
    try:
        bw = float(bandwidth)
    except (TypeError, ValueError) as err:
        raise TypeError(f"bandwidth must be a number; got {type(bandwidth).__name__}.") from err
    if not math.isfinite(bw) or bw < 0.5:
        raise ValueError(
            f"bandwidth must be a finite number >= 1 (non-zeros per row); got {bandwidth!r}. Fix: pass e.g. n**0.9."
        )
    w = min(int(round(bw)), n)
    idx = torch.arange(n)
    if profile == "periodic":
        if w == n:
            return torch.full((n, n), 1.0 / n, dtype=_F64)
        lo = (w - 1) // 2
        offset = (idx[None, :] - idx[:, None] + lo) % n  # (j - i + lo) mod n in [0, w) on the band
        return (offset < w).to(_F64) / w
    if profile == "block":
        num_blocks = max(1, math.ceil(n / w))
        sizes = [n // num_blocks + (1 if i < n % num_blocks else 0) for i in range(num_blocks)]
        s = torch.zeros(n, n, dtype=_F64)
        start = 0
        for m in sizes:
            s[start:start + m, start:start + m] = 1.0 / m
            start += m
        return s
    raise ValueError(
        f"profile must be 'periodic', 'block' or an n×n tensor; got {profile!r}. "
        "Fix: pass profile='periodic' or a doubly-stochastic variance matrix."
    )


def band(n: int, bandwidth: float, *, profile: str | Tensor = "periodic", complex: bool = False,
         generator: torch.Generator | None = None, rtol: float = 1e-6) -> Tensor:
    """Non-Hermitian band matrix X_ij = √S_ij·g_ij with a doubly-stochastic variance profile S.

    Since every row and column of S sums to 1, the spectrum converges to the circular law on the unit disk
    once the bandwidth grows polynomially (proved for Gaussian entries with bandwidth n^γ, γ > 5/6; see the
    module references). ``bandwidth`` may be given as ``n**gamma``.

    Args:
        n: size.
        bandwidth: non-zeros per row W (see :func:`band_profile`); ignored when ``profile`` is a tensor.
        profile: ``"periodic"``, ``"block"`` or an n×n non-negative tensor S with rows/columns summing to 1
            (make one with :func:`doubly_stochastic`).
        complex: complex Gaussian entries (E|g|² = 1).
        generator: torch generator.
        rtol: tolerance on the row/column sums of a user profile.

    Returns:
        ``[n, n]`` float64 (complex128) tensor.

    Example:
        >>> X = band(200, 200**0.9)
        >>> bool(torch.linalg.eigvals(X).abs().max() < 1.3)
        True
    """
    n = _size(n)
    if isinstance(profile, str):
        s = band_profile(n, bandwidth, profile)
    else:
        s = torch.as_tensor(profile, dtype=_F64)
        if s.shape != (n, n):
            raise ValueError(f"profile must have shape ({n}, {n}); got {tuple(s.shape)}. Fix: pass an n×n tensor.")
        if not torch.isfinite(s).all() or (s < 0).any():
            raise ValueError("profile entries must be finite and >= 0 (variances). Fix: clip or take abs().")
        rows, cols = (s.sum(1) - 1).abs().max().item(), (s.sum(0) - 1).abs().max().item()
        if max(rows, cols) > rtol:
            raise ValueError(
                f"profile must be doubly stochastic (rows and columns summing to 1); got deviations "
                f"{rows:.2e} (rows), {cols:.2e} (columns). Fix: eigenlens.rmt.doubly_stochastic(profile)."
            )
    g = resolve_generator(generator)
    return s.sqrt() * _randn((n, n), g, complex)


def elliptic_ensemble(n: int, tau: float, *, generator: torch.Generator | None = None) -> Tensor:
    """Real matrix with E X_ij² = 1/n and E X_ij X_ji = τ/n (i ≠ j); spectrum -> elliptic law (semi-axes 1 ± τ).

    X = (√(1 + τ)·S + √(1 − τ)·A)/√(2n), S = (G + Gᵀ)/√2 and A = (G' − G'ᵀ)/√2 from independent Gaussians.
    """
    n = _size(n)
    t = float(tau)
    if not -1.0 < t < 1.0:
        raise ValueError(f"tau must lie strictly between -1 and 1; got {tau!r}. Fix: pass a correlation in (-1, 1).")
    g = resolve_generator(generator)
    a, b = _randn((n, n), g), _randn((n, n), g)
    sym = (a + a.T) / math.sqrt(2.0)
    anti = (b - b.T) / math.sqrt(2.0)
    return (math.sqrt(1.0 + t) * sym + math.sqrt(1.0 - t) * anti) / math.sqrt(2.0 * n)


def _spikes(spikes: Any, name: str, minimum: float | None) -> list[float]:
    vals = [float(spikes)] if isinstance(spikes, (int, float)) else [float(s) for s in spikes]
    for v in vals:
        if not math.isfinite(v) or (minimum is not None and v <= minimum):
            raise ValueError(
                f"{name} must be finite" + ("" if minimum is None else f" and > {minimum:g}") + f"; got {v!r}. "
                + ("Fix: population eigenvalues ℓ > 1 (ℓ = 1 is no spike)." if minimum is not None else "")
            )
    return vals


def _orthonormal(n: int, k: int, gen: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(_randn((n, k), gen))
    return q * torch.sign(torch.diagonal(r))[None, :]


def spiked_wigner(n: int, spikes: float | Sequence[float], *, generator: torch.Generator | None = None,
                  return_vectors: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """GOE ``wigner(n)`` plus Σ θ_i v_i v_iᵀ with random orthonormal v_i; θ > 1 gives an outlier θ + 1/θ.

    Returns:
        ``[n, n]`` float64 matrix, and with ``return_vectors=True`` also the spike directions ``[n, k]``.
    """
    n = _size(n)
    th = _spikes(spikes, "spikes", None)
    g = resolve_generator(generator)
    h = wigner(n, generator=g)
    if len(th) > n:
        raise ValueError(f"at most n = {n} spikes; got {len(th)}.")
    v = _orthonormal(n, len(th), g)
    h = h + (v * torch.tensor(th, dtype=_F64)[None, :]) @ v.T
    return (h, v) if return_vectors else h


def spiked_wishart(n: int, p: int, spikes: float | Sequence[float], *, variance: float = 1.0,
                   generator: torch.Generator | None = None,
                   return_vectors: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Sample covariance XᵀX/n of n rows ~ N(0, σ²Σ), Σ = I + Σ_i (ℓ_i − 1) v_i v_iᵀ (spikes ℓ_i > 1).

    X = Z Σ^{1/2} with Σ^{1/2} = I + Σ (√ℓ_i − 1) v_i v_iᵀ, never forming a p×p covariance. A spike above
    1 + √(p/n) gives an outlier near :func:`eigenlens.rmt.edges.bbp_outlier`.

    Returns:
        ``[p, p]`` float64 matrix, and with ``return_vectors=True`` also the spike directions ``[p, k]``.

    Example:
        >>> import torch
        >>> top = torch.linalg.eigvalsh(spiked_wishart(800, 200, [4.0])).max().item()
        >>> abs(top - 4.0 * (1 + 0.25 / 3.0)) < 0.5
        True
    """
    n, p = _size(n), _size(p, "p")
    ells = _spikes(spikes, "spikes", 1.0)
    if len(ells) > p:
        raise ValueError(f"at most p = {p} spikes; got {len(ells)}.")
    s2 = check_positive(variance, "variance", "pass the noise variance σ² > 0")
    g = resolve_generator(generator)
    z = _randn((n, p), g)
    v = _orthonormal(p, len(ells), g)
    root = torch.tensor([math.sqrt(ell) - 1.0 for ell in ells], dtype=_F64)
    x = (z + ((z @ v) * root[None, :]) @ v.T) * math.sqrt(s2)
    c = x.T @ x / n
    c = 0.5 * (c + c.T)
    return (c, v) if return_vectors else c


def _haar(n: int, complex: bool, generator: torch.Generator | None) -> Tensor:
    n = _size(n)
    g = resolve_generator(generator)
    q, r = torch.linalg.qr(_randn((n, n), g, complex))
    d = torch.diagonal(r)
    phase = d / d.abs()
    return q * phase[None, :] if complex else q * torch.sign(d)[None, :]


def haar_orthogonal(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Haar-distributed orthogonal matrix (QR of a Gaussian with R's diagonal made positive; Mezzadri 2007).

    Example:
        >>> Q = haar_orthogonal(50)
        >>> bool(torch.allclose(Q.T @ Q, torch.eye(50, dtype=torch.float64), atol=1e-12))
        True
    """
    return _haar(n, False, generator)


def haar_unitary(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Haar-distributed unitary matrix (complex128), eigenvalues uniform on the unit circle in the limit."""
    return _haar(n, True, generator)
