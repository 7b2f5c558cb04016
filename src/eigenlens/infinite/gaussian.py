"""Gaussian expectations ``E[φ(u) ψ(v)]`` and ``E[∂φ ∂ψ]`` over jointly Gaussian coordinates.

These are the only nonlinear computations of the infinite-width limit (Yang, arXiv 1902.04760, Master
Theorem): for a coordinatewise ``φ`` of G-vars ``u = (u_1..u_k)`` at input ``x`` and ``ψ`` of G-vars
``v = (v_1..v_l)`` at ``x'``, the limit covariance is ``E[φ(u) ψ(v)]`` with ``(u, v)`` jointly Gaussian,
and the NTK recursion needs ``E[∂_i φ(u) ∂_j ψ(v)]`` (gradient independence).

- Closed forms: the piecewise-linear family ``φ_{a,b}(x) = a·x⁻ + b·x⁺`` (ReLU, LeakyReLU, identity;
  the arc-cosine kernel of Cho & Saul 2009), and ``erf`` (Williams 1997).
- Anything else, one G-var per side: Mehler's expansion ``E[φ(u)ψ(v)] = Σ_k ρ^k a_k b_k`` in normalised
  Hermite coefficients computed once per input (cost ``O(N·n + N²·K)``), with the rigorous tail bound
  ``ρ^{K+1} sqrt(R_a R_b)`` (Parseval remainders) choosing ``K``; pairs with ``|ρ|`` close to 1 and every
  multi-input Nonlin use tensor-product quadrature after the change of variables ``(u, v) = L z`` (``L`` the
  pivot-safe Cholesky factor, so ``x = x'`` is exact), with Gauss–Hermite or trapezoid rules whose error is
  estimated by comparing two rules on a probe subset. Derivatives come from autograd.

All tensors broadcast against each other; the result has the broadcast shape.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from eigenlens.infinite.ir import relu_slopes
from eigenlens.linalg.exceptions import NumericalWarning

__all__ = ["relu_expect", "erf_expect", "gauss_hermite", "trapezoid", "gauss_expect", "Quadrature", "DEGREES"]

#: rules tried by the adaptive choice: Gauss–Hermite degrees and trapezoid steps (consecutive ones compared)
DEGREES = (6, 8, 12, 16, 24, 32, 48, 64, 96)
STEPS = (0.5, 0.35, 0.25, 0.18, 0.125, 0.09, 0.065, 0.045)


def _safe_sqrt(x: Tensor) -> Tensor:
    return torch.sqrt(torch.clamp(x, min=0))


def relu_expect(
    ab1: tuple[float, float], ab2: tuple[float, float], q1: Tensor, q2: Tensor, c: Tensor, need_dot: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Arc-cosine kernel for the piecewise-linear ``φ_{a,b}(x) = a·x (x<0), b·x (x>0)``.

    With ``s = sqrt(q1 q2 − c²)`` and ``θ = atan2(s, c)`` (the angle between ``u`` and ``v``)::

        E[φ_{a,b}(u) φ_{a',b'}(v)] = (bb' + aa')·(s + (π − θ) c)/(2π) − (ba' + ab')·(s − θ c)/(2π)
        E[φ'_{a,b}(u) φ'_{a',b'}(v)] = (bb' + aa')·(π − θ)/(2π) + (ba' + ab')·θ/(2π)

    (ReLU: ``(a, b) = (0, 1)``; identity ``(1, 1)`` gives back ``c``.) Cho & Saul, NeurIPS 2009.

    Args:
        ab1: slopes ``(a, b)`` of the left function; ``ab2`` of the right one.
        q1: ``E u²``; q2: ``E v²``; c: ``E uv`` — broadcastable tensors.
        need_dot: also return the derivative expectation.
    """
    a1, b1 = ab1
    a2, b2 = ab2
    same = b1 * b2 + a1 * a2
    cross = b1 * a2 + a1 * b2
    k = 1 / (2 * math.pi)
    # e = (same - cross)·s/2π + c·(same·π - (same - cross)·θ)/2π ; dot = (same·π + (cross - same)·θ)/2π
    s = (q1 * q2).sub_(c * c).clamp_(min=0).sqrt_()  # not fused: s = 0 exactly when c² = q1 q2
    theta = torch.atan2(s, c)
    t = theta.mul(-(same - cross) * k).add_(same * math.pi * k)
    e = torch.addcmul(s.mul_((same - cross) * k), c, t)
    dot = theta.mul_((cross - same) * k).add_(same * math.pi * k) if need_dot else None
    return e, dot


def erf_expect(q1: Tensor, q2: Tensor, c: Tensor, need_dot: bool = True) -> tuple[Tensor, Tensor | None]:
    """Closed forms for ``erf`` (Williams, NeurIPS 1997).

    ``E[erf(u) erf(v)] = (2/π)·atan2(2c, r)`` and ``E[erf'(u) erf'(v)] = 4/(π r)`` with
    ``r = sqrt((1 + 2q1)(1 + 2q2) − 4c²)``.
    """
    r = _safe_sqrt((1 + 2 * q1) * (1 + 2 * q2) - 4 * c * c)
    e = (2 / math.pi) * torch.atan2(2 * c, r)
    dot = 4 / (math.pi * r) if need_dot else None
    return e, dot


_GH_CACHE: dict[tuple[int, torch.dtype], tuple[Tensor, Tensor]] = {}


def gauss_hermite(degree: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Nodes and weights of ``degree``-point Gauss–Hermite quadrature for the standard normal.

    ``Σ_i w_i f(z_i) ≈ E f(Z)``, ``Z ~ N(0, 1)``, exact for polynomials of degree ``≤ 2·degree − 1``.
    """
    key = (degree, dtype)
    if key not in _GH_CACHE:
        z, w = np.polynomial.hermite_e.hermegauss(degree)
        w = w / math.sqrt(2 * math.pi)
        _GH_CACHE[key] = (torch.as_tensor(z, dtype=dtype), torch.as_tensor(w, dtype=dtype))
    return _GH_CACHE[key]


def _cholesky_psd(S: Tensor) -> Tensor:
    """Lower Cholesky factor of a batch ``[M, d, d]`` of PSD matrices; zero pivots give zero columns."""
    d = S.shape[-1]
    L = torch.zeros_like(S)
    for j in range(d):
        piv = _safe_sqrt(S[:, j, j] - (L[:, j, :j] ** 2).sum(-1))
        L[:, j, j] = piv
        inv = torch.where(piv > 0, 1 / torch.where(piv > 0, piv, torch.ones_like(piv)), torch.zeros_like(piv))
        for i in range(j + 1, d):
            L[:, i, j] = (S[:, i, j] - (L[:, i, :j] * L[:, j, :j]).sum(-1)) * inv
    return L


def trapezoid(h: float, dtype: torch.dtype = torch.float64, half_width: float = 9.0) -> tuple[Tensor, Tensor]:
    """Trapezoidal rule ``z_k = k h`` on ``[-9, 9]`` with weights ``h·pdf(z_k)`` for the standard normal.

    For integrands analytic in a strip ``|Im z| < a`` the error is ``O(exp(-2πa/h))`` whatever their growth
    along the real axis, so it beats Gauss–Hermite for steep functions (``erf``/``tanh`` of a large-variance
    argument), for which Gauss–Hermite converges only sub-geometrically. Trefethen & Weideman, SIAM Rev. 2014.
    """
    key = ("trap", h, dtype)
    if key not in _GH_CACHE:
        n = int(half_width / h)
        z = torch.arange(-n, n + 1, dtype=torch.float64) * h
        w = h * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        _GH_CACHE[key] = (z.to(dtype), w.to(dtype))
    return _GH_CACHE[key]


def _rule(rule: tuple[str, float], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    kind, p = rule
    return gauss_hermite(int(p), dtype) if kind == "gh" else trapezoid(float(p), dtype)


def _grid(rule: tuple[str, float], dim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    z, w = _rule(rule, dtype)
    if dim == 0:
        return torch.zeros(1, 0, dtype=dtype), torch.ones(1, dtype=dtype)
    zs = torch.cartesian_prod(*([z] * dim)).reshape(-1, dim)
    ws = torch.cartesian_prod(*([w] * dim)).reshape(-1, dim).prod(-1)
    return zs, ws


def _joint(Sl: Sequence[Sequence[Tensor]], Sr: Sequence[Sequence[Tensor]], Cx: Sequence[Sequence[Tensor]]):
    k, l = len(Sl), len(Sr)
    tensors = [t for row in Sl for t in row] + [t for row in Sr for t in row] + [t for row in Cx for t in row]
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    d = k + l
    S = tensors[0].new_empty((*shape, d, d))
    for i in range(k):
        for j in range(k):
            S[..., i, j] = Sl[i][j]
    for i in range(l):
        for j in range(l):
            S[..., k + i, k + j] = Sr[i][j]
    for i in range(k):
        for j in range(l):
            S[..., i, k + j] = Cx[i][j]
            S[..., k + j, i] = Cx[i][j]
    return S.reshape(-1, d, d), shape


def _quad_flat(
    fl: Callable, fr: Callable, k: int, S: Tensor, rule: tuple[str, float], need_dot: bool, chunk: int
) -> tuple[Tensor, list[list[Tensor]] | None]:
    """Quadrature on flattened joint covariances ``S [M, k+l, k+l]``."""
    M, d = S.shape[0], S.shape[-1]
    l = d - k
    dtype = S.dtype
    L = _cholesky_psd(S)
    zl, wl = _grid(rule, k, dtype)
    zr, wr = _grid(rule, l, dtype)
    per = max(1, chunk // (zl.shape[0] * zr.shape[0]))
    out = torch.empty(M, dtype=dtype)
    dots = [[torch.empty(M, dtype=dtype) for _ in range(l)] for _ in range(k)] if need_dot else None
    with torch.enable_grad():
        for s in range(0, M, per):
            Lc = L[s : s + per]
            u = torch.einsum("mab,ib->mia", Lc[:, :k, :k], zl)  # [m, Gl, k]
            v = (
                torch.einsum("mab,ib->mia", Lc[:, k:, :k], zl)[:, :, None, :]
                + torch.einsum("mab,jb->mja", Lc[:, k:, k:], zr)[:, None, :, :]
            )  # [m, Gl, Gr, l]
            if need_dot:
                u = u.detach().requires_grad_(True)
                v = v.detach().requires_grad_(True)
            phi = fl(*u.unbind(-1))  # [m, Gl]
            psi = fr(*v.unbind(-1))  # [m, Gl, Gr]
            inner = psi @ wr  # [m, Gl]
            out[s : s + per] = ((phi * inner) @ wl).detach()
            if need_dot:
                gu, gv = torch.autograd.grad((phi.sum(), psi.sum()), (u, v))
                for a in range(k):
                    for b in range(l):
                        dots[a][b][s : s + per] = ((gu[..., a] * (gv[..., b] @ wr)) @ wl).detach()
    return out, dots


def gauss_expect(
    fl: Callable,
    fr: Callable,
    Sl: Sequence[Sequence[Tensor]],
    Sr: Sequence[Sequence[Tensor]],
    Cx: Sequence[Sequence[Tensor]],
    degree: int,
    need_dot: bool = True,
    chunk: int = 2**21,
) -> tuple[Tensor, list[list[Tensor]] | None]:
    """``E[fl(u) fr(v)]`` (and ``E[∂_a fl ∂_b fr]``) by tensor-product Gauss–Hermite quadrature.

    Args:
        fl: coordinatewise function of ``k`` tensors; fr: of ``l`` tensors (torch ops, differentiable).
        Sl: ``k × k`` covariances of ``u`` (tensors); Sr: ``l × l`` of ``v``; Cx: ``k × l`` cross-covariances.
        degree: points per dimension; the cost is ``degree^(k+l)`` evaluations per element.
        need_dot: also return the ``k × l`` derivative expectations.
        chunk: evaluations held in memory at once.

    Returns:
        ``(E, dots)`` with the broadcast shape of the inputs.
    """
    S, shape = _joint(Sl, Sr, Cx)
    e, dots = _quad_flat(fl, fr, len(Sl), S, ("gh", degree), need_dot, chunk)
    e = e.reshape(shape)
    if dots is not None:
        dots = [[t.reshape(shape) for t in row] for row in dots]
    return e, dots


def _hermite_table(z: Tensor, K: int) -> Tensor:
    """Orthonormal Hermite functions ``h_k(z) = He_k(z)/sqrt(k!)``, ``k = 0..K``, as columns ``[len(z), K+1]``."""
    key = ("hermite", len(z), float(z[0]), K, z.dtype)
    if key in _GH_CACHE:
        return _GH_CACHE[key]
    H = torch.empty(len(z), K + 1, dtype=z.dtype)
    H[:, 0] = 1
    if K >= 1:
        H[:, 1] = z
    for k in range(1, K):
        H[:, k + 1] = (z * H[:, k] - math.sqrt(k) * H[:, k - 1]) / math.sqrt(k + 1)
    _GH_CACHE[key] = H
    return H


def _hermite_coeffs(f: Callable, q: Tensor, K: int, need_dot: bool):
    """Hermite coefficients of ``f(sqrt(q) z)`` (and of ``f'``) and their squared norms, per element of ``q``.

    Also returns an error estimate of the 1-D integrals: the largest change (relative to ``sqrt(E f²)``) when the
    trapezoid step is doubled (exponentially small for smooth ``f``, ``O(h²)`` at kinks).
    """
    z, w = trapezoid(0.04, q.dtype)
    H = _hermite_table(z, K)
    x = torch.sqrt(torch.clamp(q.reshape(-1), min=0))[:, None] * z[None, :]
    with torch.enable_grad():
        if need_dot:
            x = x.detach().requires_grad_(True)
        y = f(x)
        g = torch.autograd.grad(y.sum(), x)[0].detach() if need_dot else None
    y = y.detach()
    shape = (*q.shape, K + 1)

    def project(vals: Tensor) -> tuple[Tensor, Tensor, float]:
        a = (vals * w) @ H
        S = (vals * vals) @ w
        a2 = (vals[:, ::2] * (2 * w[::2])) @ H[::2]
        S2 = (vals[:, ::2] ** 2) @ (2 * w[::2])
        scale = torch.sqrt(torch.clamp(S, min=1e-300))
        est = max(float(((a - a2).abs().max(-1).values / scale).max()), float(((S - S2).abs() / scale**2).max()))
        return a.reshape(shape), S.reshape(q.shape), est

    a, S, est = project(y)
    if not need_dot:
        return a, S, None, None, est
    ad, Sd, est_d = project(g)
    return a, S, ad, Sd, max(est, est_d)


def _tail(a: Tensor, S: Tensor, K: int) -> float:
    """``max sqrt(R/S)`` with ``R = S − Σ_{k≤K} a_k²`` the Parseval remainder (relative size of the tail)."""
    R = torch.clamp(S - (a[..., : K + 1] ** 2).sum(-1), min=0)
    return float(torch.sqrt(R / torch.clamp(S, min=1e-300)).max())


def _horner(rho: Tensor, a: Tensor, b: Tensor, K: int, shape: tuple[int, ...]) -> Tensor:
    acc = (a[..., K] * b[..., K]).expand(shape).clone()
    for k in range(K - 1, -1, -1):
        acc.mul_(rho).addcmul_(a[..., k], b[..., k])
    return acc


class Quadrature:
    """Rule selection and error bookkeeping for the Gaussian expectations of one kernel computation.

    Two families of 1-D rules are tensorised over the Cholesky coordinates: Gauss–Hermite (degrees
    :data:`DEGREES`; best for gentle functions) and the trapezoid rule (steps :data:`STEPS`; best for steep
    ones). For each expectation both sequences are evaluated on a probe subset; the error of a rule is
    estimated by its difference to the next finer rule of its family, and the cheapest rule whose estimate
    is within ``tol`` (relative to the largest value) is used for all elements. The estimate is recorded.

    Args:
        degree: fixed Gauss–Hermite degree (no adaptivity, error not estimated), or ``None``.
        tol: target relative error of each expectation.
        closed_forms: use the closed forms for the ReLU family and erf (``False`` forces quadrature).
        probe: number of elements used to choose the rule.
    """

    def __init__(
        self, degree: int | None = None, tol: float = 1e-9, closed_forms: bool = True, probe: int = 16
    ) -> None:
        if degree is not None and (isinstance(degree, bool) or not isinstance(degree, int) or degree < 1):
            raise ValueError(f"quad_degree must be a positive int or None (adaptive), got {degree!r}")
        if not (isinstance(tol, (int, float)) and tol > 0):
            raise ValueError(f"quad_tol must be a float > 0, got {tol!r}")
        self.fixed = degree
        self.tol = float(tol)
        self.closed_forms = closed_forms
        self.probe = probe
        self.mehler = True
        self.rules: dict[str, tuple[str, float]] = {}
        self.errors: dict[str, float] = {}

    @property
    def degrees(self) -> dict[str, str]:
        """Expectation -> rule used (``"gauss-hermite 16"`` or ``"trapezoid h=0.25"``)."""
        names = {"gh": "gauss-hermite {:g}", "trap": "trapezoid h={:g}", "mehler": "mehler K={:g}"}
        return {k: names[kind].format(p) for k, (kind, p) in self.rules.items()}

    @property
    def max_error(self) -> float:
        """Largest estimated relative error of any quadrature so far (0.0 when all were closed forms)."""
        return max(self.errors.values(), default=0.0)

    def expect(
        self,
        key: str,
        fl: Callable,
        closed_l: tuple | None,
        fr: Callable,
        closed_r: tuple | None,
        Sl: Sequence[Sequence[Tensor]],
        Sr: Sequence[Sequence[Tensor]],
        Cx: Sequence[Sequence[Tensor]],
        need_dot: bool,
    ) -> tuple[Tensor, list[list[Tensor]] | None]:
        """The expectation pair for ``key`` (one pair of Nonlin nodes), closed form when possible."""
        k, l = len(Sl), len(Sr)
        if self.closed_forms and k == 1 and l == 1 and closed_l is not None and closed_r is not None:
            q1, q2, c = Sl[0][0], Sr[0][0], Cx[0][0]
            ab1, ab2 = relu_slopes(closed_l), relu_slopes(closed_r)
            if ab1 is not None and ab2 is not None:
                e, dot = relu_expect(ab1, ab2, q1, q2, c, need_dot)
                return e, ([[dot]] if need_dot else None)
            if closed_l[0] == "erf" and closed_r[0] == "erf":
                e, dot = erf_expect(q1, q2, c, need_dot)
                return e, ([[dot]] if need_dot else None)
        if k == 1 and l == 1 and self.fixed is None and self.mehler:
            return self._mehler(key, fl, fr, Sl[0][0], Sr[0][0], Cx[0][0], need_dot)
        S, shape = _joint(Sl, Sr, Cx)
        if self.fixed is not None:
            rule = ("gh", self.fixed)
            self.rules.setdefault(key, rule)
        else:
            rule = self.rules.get(key) or self._choose(key, fl, fr, k, S, need_dot)
        e, dots = _quad_flat(fl, fr, k, S, rule, need_dot, 2**21)
        e = e.reshape(shape)
        if dots is not None:
            dots = [[t.reshape(shape) for t in row] for row in dots]
        return e, dots

    def _mehler(
        self, key: str, fl: Callable, fr: Callable, q1: Tensor, q2: Tensor, c: Tensor, need_dot: bool
    ) -> tuple[Tensor, list[list[Tensor]] | None]:
        """Mehler's expansion ``E[φ(u)ψ(v)] = Σ_k ρ^k a_k b_k`` for pairs with ``|ρ| ≤ ρ_cut``.

        ``a_k, b_k``: normalised Hermite coefficients of ``φ(sqrt(q1)·)`` and ``ψ(sqrt(q2)·)``, once per input; the tail
        is bounded by Cauchy–Schwarz and Parseval, ``|Σ_{k>K}| ≤ ρ_cut^{K+1} sqrt(R_a R_b)``. Pairs with
        ``|ρ| > ρ_cut`` (the same or nearly the same input) use 2-D quadrature. Cost ``O(N·n + N²·K)`` instead of
        ``O(N²·n²)``.
        """
        shape = torch.broadcast_shapes(q1.shape, q2.shape, c.shape)
        Kmax = 128
        a, Sa, ad, Sad, est_a = _hermite_coeffs(fl, q1, Kmax + 1, need_dot)
        b, Sb, bd, Sbd, est_b = _hermite_coeffs(fr, q2, Kmax + 1, need_dot)
        rho = c / torch.sqrt(torch.clamp(q1 * q2, min=1e-300))
        # choose K (series length) and ρ_cut (pairs beyond it use 2-D quadrature) for the least work:
        # series ~ 4·K passes over all pairs, quadrature ~ 3·n² evaluations (n ≈ 70) per near pair
        absrho = rho.abs().expand(shape).reshape(-1)
        M = absrho.numel()
        best = None
        for K in (8, 12, 16, 24, 32, 48, 64, 96, 128):
            t = _tail(a, Sa, K) * _tail(b, Sb, K)
            if need_dot:
                t = max(t, _tail(ad, Sad, K) * _tail(bd, Sbd, K))
            cut = min(0.999, (self.tol / max(t, 1e-300)) ** (1 / (K + 1)))
            n_near = int((absrho > cut).sum())
            cost = 4 * K * M + 15000 * n_near
            if best is None or cost < best[0]:
                best = (cost, K, cut, min(self.tol, cut ** (K + 1) * t))
        _, K, rho_cut, err = best
        err = max(err, est_a, est_b)
        if max(est_a, est_b) > self.tol:
            warnings.warn(
                f"Hermite coefficients for {key}: estimated relative error {max(est_a, est_b):.2e} > "
                f"quad_tol={self.tol:.0e}; the nonlinearity is probably not smooth (a kink or jump). "
                "Expected: a smooth function or a closed form (ReLU family, erf); "
                "fix: accept the reported Kernels.quadrature_error.",
                NumericalWarning,
                stacklevel=4,
            )
        e = _horner(rho, a, b, K, shape)
        dot = _horner(rho, ad, bd, K, shape) if need_dot else None
        near = (rho.abs() > rho_cut).expand(shape)
        if bool(near.any()):
            idx = near.reshape(-1).nonzero().squeeze(1)
            S, _ = _joint([[q1]], [[q2]], [[c]])
            Sn = S[idx] if S.shape[0] == near.numel() else S.expand(near.numel(), 2, 2)[idx]
            rule = self.rules.get(key + " (near pairs)") or self._choose(key + " (near pairs)", fl, fr, 1, Sn, need_dot)
            en, dn = _quad_flat(fl, fr, 1, Sn, rule, need_dot, 2**21)
            e.view(-1)[idx] = en
            if need_dot:
                dot.view(-1)[idx] = dn[0][0]
        self.rules[key] = ("mehler", K)
        self.errors[key] = max(err, self.errors.get(key, 0.0))
        return e, ([[dot]] if need_dot else None)

    def _choose(self, key: str, fl: Callable, fr: Callable, k: int, S: Tensor, need_dot: bool) -> tuple[str, float]:
        M, d = S.shape[0], S.shape[-1]
        idx = torch.unique(torch.linspace(0, M - 1, min(M, self.probe)).round().long())
        Sp = S[idx]
        best: tuple[float, float, tuple[str, float]] | None = None  # (cost, err, rule)
        fallback: tuple[float, tuple[str, float]] | None = None
        for family, params in (("gh", DEGREES), ("trap", STEPS)):
            rules = [(family, p) for p in params if len(_rule((family, p), S.dtype)[0]) ** d <= 4e6]
            prev = None
            for i, rule in enumerate(rules):
                if best is not None and i > 0 and len(_rule(rules[i - 1], S.dtype)[0]) ** d >= best[0]:
                    break  # the other family already has a cheaper verified rule
                e, dots = _quad_flat(fl, fr, k, Sp, rule, need_dot, 2**21)
                vals = [e] + ([t for row in dots for t in row] if dots else [])
                if prev is not None:
                    err = max(
                        float((a - b).abs().max() / max(float(b.abs().max()), 1e-300)) for a, b in zip(prev, vals)
                    )
                    coarse = rules[i - 1]
                    cost = len(_rule(coarse, S.dtype)[0]) ** d
                    if fallback is None or err < fallback[0]:
                        fallback = (err, rule)
                    if err <= self.tol:
                        if best is None or cost < best[0]:
                            best = (cost, err, coarse)
                        break
                prev = vals
        if best is not None:
            _, err, rule = best
        else:
            err, rule = fallback if fallback is not None else (math.inf, ("gh", DEGREES[-1]))
            warnings.warn(
                f"quadrature for {key}: estimated relative error {err:.2e} > quad_tol={self.tol:.0e} with the finest "
                f"rule; the nonlinearity is probably not smooth. Expected: a smooth function or one with a "
                f"closed form (ReLU family, erf); fix: accept the reported error (Kernels.quadrature_error) "
                f"or raise quad_tol.",
                NumericalWarning,
                stacklevel=4,
            )
        self.rules[key] = rule
        self.errors[key] = err
        return rule
