"""Kernel propagation through a tensor program by the Master Theorem (Yang, arXiv 1902.04760).

For two inputs ``x, x'`` the limit of every vector's coordinates is Gaussian (G-vars) or a fixed function
of G-vars, so the program is summarised by the cross-covariances ``C(a, b) = E[Z^a(x) Z^b(x')]`` of any two
vectors ``a, b`` (one ``P_a × P_b`` block per pixel pair when they carry positions). They follow by
recursion over the program:

- ``C(Σ c_i a_i, b) = Σ c_i C(a_i, b)``; spatial maps act on their side's position axis;
- ``C(W u, W' v) = [W = W'] (σ_w² A(C(u, v)) + σ_b²)`` with ``A`` the identity (dense per position), the
  diagonal average over positions (dense after flatten), or the window average of a convolution;
  different Gaussian matrices are independent, and so are the input and any ``W u``;
- ``C(φ(u_1..u_k), ψ(v_1..v_l)) = E[φ(u) ψ(v)]`` over the joint Gaussian of the G-vars, whose own
  variances at ``x`` (and ``x'``) come from the diagonal (``x = x'``) pass;
- layer norm of a G-var divides by ``sqrt`` of its variance.

The NTK ``Θ(a, b) = <∂Z^a(x)/∂θ, ∂Z^b(x')/∂θ>`` follows the same recursion under gradient independence
(Yang, arXiv 1902.04760, §5; arXiv 2006.14548): ``Θ(W u, W v) = σ_w² A(C(u, v)) + σ_b² + σ_w² A(Θ(u, v))``
(NTK parameterisation; standard: ``fan_in·A(C) + [bias] + σ_w² A(Θ)``), ``Θ(φ(u), ψ(v)) =
Σ_ij E[∂_i φ ∂_j ψ] Θ(u_i, v_j)``, and ``Θ = 0`` at the input. Shared weights (RNNs) need nothing special:
``C(W h_t, W h'_s)`` is nonzero for every pair of uses.

Tensors are ``[*batch, P_a, P_b]`` with flattened positions; ``batch`` is ``(B,)`` for the diagonal pass
(pairs ``(x_n, x_n)``) and ``(B1, B2)`` for a block of input pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from eigenlens.infinite.gaussian import Quadrature
from eigenlens.infinite.ir import (
    Input,
    LinComb,
    MatMul,
    Nonlin,
    Normalize,
    Spatial,
    TensorProgram,
    num_positions,
)

__all__ = ["Engine", "frontier"]

_IDENTITY = ("relu", 1.0, 1.0)


def _identity(z: Tensor) -> Tensor:
    return z


def _lin(terms) -> Tensor:
    """``Σ c_i X_i`` with as few passes over memory as possible (``terms``: ``(c, X)`` pairs)."""
    terms = list(terms)
    c0, X0 = terms[0]
    if len(terms) == 1:
        return X0 if c0 == 1 else X0 * c0
    out = X0 * c0  # a fresh tensor: cached values are never modified in place
    for c, X in terms[1:]:
        out = out.add_(X, alpha=c) if out.shape == torch.broadcast_shapes(out.shape, X.shape) else out + c * X
    return out


def frontier(prog: TensorProgram, name: str) -> tuple[tuple[str, ...], Callable, tuple | None]:
    """Write vector ``name`` as ``fn(g_1, ..., g_k)`` of G-vars: returns ``(g names, fn, closed form or None)``."""
    if prog.is_gaussian(name):
        return (name,), _identity, _IDENTITY
    node = prog[name]
    if isinstance(node, (Spatial, Normalize)):
        raise ValueError(
            f"vector {name} applies {type(node).__name__} to a non-Gaussian vector and then a nonlinearity; "
            "expected pooling/normalisation of Gaussian vectors (after Linear/Conv) before a nonlinearity"
        )
    subs = [frontier(prog, s) for s in node.sources]
    if isinstance(node, Nonlin) and all(s[0] == (src,) and s[2] is _IDENTITY for s, src in zip(subs, node.sources)):
        names = tuple(dict.fromkeys(node.sources))
        if len(names) == len(node.sources):
            closed = node.closed if len(names) == 1 else None
            return names, node.fn, closed
    names = tuple(dict.fromkeys(g for s in subs for g in s[0]))
    index = [[names.index(g) for g in s[0]] for s in subs]
    fns = [s[1] for s in subs]
    if isinstance(node, Nonlin):
        outer = node.fn

        def fn(*z: Tensor) -> Tensor:
            return outer(*[f(*[z[i] for i in idx]) for f, idx in zip(fns, index)])

    else:
        coeffs = node.coeffs

        def fn(*z: Tensor) -> Tensor:
            return sum(c * f(*[z[i] for i in idx]) for c, f, idx in zip(coeffs, fns, index))

    return names, fn, None


def _window_mean(X: Tensor, in_pos: tuple[int, ...], node: MatMul | Spatial, both: bool, side: str) -> Tensor:
    """Average ``X [*b, P, P']`` over a (conv/pool) window on one side or, for ``both``, jointly on both sides.

    ``both``: ``Y(p, q) = mean_δ X(s p + d δ - pad, s q + d δ - pad)`` (weight sharing across positions).
    Otherwise (pooling one side): ``Y(p, ·) = mean_δ X(s p + δ - pad, ·)``.
    """
    nd = len(in_pos)
    k, s, p = node.kernel, node.stride, node.padding
    d = getattr(node, "dilation", ()) or (1,) * nd
    out = node.positions
    batch = X.shape[:-2]
    nb = len(batch)
    if both:
        # separable: average over the window jointly on (p_i, q_i) one spatial axis i at a time;
        # zero padding is handled by clipping the index ranges (no padded copy)
        Y = X.reshape(*batch, *in_pos, *in_pos)
        for i in range(nd):
            Y = _diag_window_1d(Y, nd, i, k[i], s[i], p[i], d[i], out[i])
        return Y.reshape(*batch, num_positions(out), num_positions(out))
    # one side: move that side's axis last
    if side == "left":
        X = X.transpose(-1, -2)
    other = X.shape[-2]
    Y = X.reshape(*batch, other, *in_pos)
    pad = []
    for pp in reversed(p):
        pad += [pp, pp]
    Y = F.pad(Y, pad) if any(p) else Y
    acc = None
    for delta in _offsets(k):
        sl = tuple(slice(dl, dl + ss * (o - 1) + 1, ss) for dl, ss, o in zip(delta, s, out))
        term = Y[(Ellipsis, *sl)]
        acc = term.clone() if acc is None else acc.add_(term)
    Y = (acc / math.prod(k)).reshape(*batch, other, num_positions(out))
    del nb
    return Y.transpose(-1, -2) if side == "left" else Y


def _diag_window_1d(X: Tensor, nd: int, i: int, k: int, s: int, p: int, d: int, o: int) -> Tensor:
    """Joint window average on spatial axis ``i`` of both sides, out-of-range indices contributing zero.

    ``Y[.., a, .., b, ..] = (1/k) Σ_δ X[.., s a + d δ − p, .., s b + d δ − p, ..]`` (axes ``-2nd+i``, ``-nd+i``).
    """
    ax1, ax2 = X.dim() - 2 * nd + i, X.dim() - nd + i
    n = X.shape[ax1]
    shape = list(X.shape)
    shape[ax1] = shape[ax2] = o
    Y = X.new_zeros(shape)
    for delta in range(k):
        off = d * delta - p
        lo = max(0, -(off // s) if off < 0 else 0)
        while s * lo + off < 0:
            lo += 1
        hi = min(o - 1, (n - 1 - off) // s)
        if hi < lo:
            continue
        src = slice(s * lo + off, s * hi + off + 1, s)
        dst = slice(lo, hi + 1)
        ix_src = [slice(None)] * X.dim()
        ix_dst = [slice(None)] * X.dim()
        ix_src[ax1] = ix_src[ax2] = src
        ix_dst[ax1] = ix_dst[ax2] = dst
        Y[tuple(ix_dst)] += X[tuple(ix_src)]
    return Y.mul_(1.0 / k)


def _offsets(kernel: tuple[int, ...]):
    if len(kernel) == 1:
        return [(i,) for i in range(kernel[0])]
    return [(i, j) for i in range(kernel[0]) for j in range(kernel[1])]


class Engine:
    """Memoised recursion for ``C(a, b)`` and ``Θ(a, b)`` on one block of input pairs.

    Args:
        prog: the program.
        K0: input covariance block ``[*batch, P0, P0']`` (``<x_p, x'_q> / d``).
        batch: ``(B,)`` for the diagonal pass, ``(B1, B2)`` for a pair block.
        diag_left, diag_right: for a pair block, the diagonal-pass values ``key -> [B1, P]`` / ``[B2, P']``
            of ``C(a, b)(x, x)`` at equal positions; ``None`` for the diagonal pass itself.
        quad: quadrature settings and error record.
        parameterization: ``"ntk"`` or ``"standard"``.
        need_ntk: also compute Θ.
        tag: key prefix for the quadrature record.
    """

    def __init__(
        self,
        prog: TensorProgram,
        K0: Tensor,
        batch: tuple[int, ...],
        diag_left: dict | None,
        diag_right: dict | None,
        quad: Quadrature,
        parameterization: str,
        need_ntk: bool,
        tag: str,
    ) -> None:
        self.prog = prog
        self.K0 = K0
        self.batch = batch
        self.pair = diag_left is not None
        self.diag_left = diag_left
        self.diag_right = diag_right
        self.quad = quad
        self.param = parameterization
        self.need_ntk = need_ntk
        self.tag = tag
        self.cov_cache: dict[tuple[str, str], Tensor] = {}
        self.ntk_cache: dict[tuple[str, str], Tensor] = {}
        self.dot_cache: dict[tuple[str, str], list[list[Tensor]]] = {}
        self.diags: dict[tuple[str, str], Tensor] = {}
        self.frontiers: dict[str, tuple] = {}

    # -------------------------------------------------------------- helpers
    def _P(self, name: str) -> int:
        return num_positions(getattr(self.prog[name], "positions", ()))

    def _zeros(self, a: str, b: str) -> Tensor:
        return self.K0.new_zeros((*self.batch, self._P(a), self._P(b)))

    def diag(self, a: str, b: str, side: str) -> Tensor:
        """``C(a, b)(x, x)`` at equal positions, shaped to broadcast against a block: left ``[.., P, 1]``."""
        if self.pair:
            src = self.diag_left if side == "left" else self.diag_right
            if (a, b) not in src:
                raise KeyError(f"internal: diagonal {a}, {b} missing from the diagonal pass")  # pragma: no cover
            v = src[(a, b)]
            return v[:, None, :, None] if side == "left" else v[None, :, None, :]
        if (a, b) not in self.diags:
            self.diags[(a, b)] = torch.diagonal(self.cov(a, b), dim1=-2, dim2=-1)
        v = self.diags[(a, b)]
        return v[..., :, None] if side == "left" else v[..., None, :]

    def _frontier(self, name: str) -> tuple:
        if name not in self.frontiers:
            self.frontiers[name] = frontier(self.prog, name)
        return self.frontiers[name]

    def _norm_scale(self, node: Normalize, side: str) -> Tensor:
        v = self.diag(node.source, node.source, side)
        if node.over == "all":
            axis = -2 if side == "left" else -1
            v = v.mean(dim=axis, keepdim=True)
        return torch.sqrt(v)

    def _spatial(self, node: Spatial, X: Tensor, side: str) -> Tensor:
        axis = -2 if side == "left" else -1
        if node.op == "global":
            return X.mean(dim=axis, keepdim=True)
        if node.op == "select":
            return X.narrow(axis, node.index, 1)
        return _window_mean(X, node.in_positions, node, both=False, side=side)

    def _dense_map(self, node: MatMul, X: Tensor) -> Tensor:
        if node.kind == "conv":
            return _window_mean(X, node.in_positions, node, both=True, side="")
        if node.flatten:
            return torch.diagonal(X, dim1=-2, dim2=-1).mean(-1)[..., None, None]
        return X

    # -------------------------------------------------------------- NNGP
    def cov(self, a: str, b: str) -> Tensor:
        """``C(a, b) = E[Z^a(x) Z^b(x')]`` for the block, ``[*batch, P_a, P_b]``."""
        key = (a, b)
        if key in self.cov_cache:
            return self.cov_cache[key]
        A, B = self.prog[a], self.prog[b]
        if isinstance(A, LinComb):
            out = _lin((c, self.cov(s, b)) for c, s in zip(A.coeffs, A.sources))
        elif isinstance(B, LinComb):
            out = _lin((c, self.cov(a, s)) for c, s in zip(B.coeffs, B.sources))
        elif isinstance(A, Spatial):
            out = self._spatial(A, self.cov(A.source, b), "left")
        elif isinstance(B, Spatial):
            out = self._spatial(B, self.cov(a, B.source), "right")
        elif isinstance(A, Normalize):
            out = self.cov(A.source, b) / self._norm_scale(A, "left")
        elif isinstance(B, Normalize):
            out = self.cov(a, B.source) / self._norm_scale(B, "right")
        elif isinstance(A, Nonlin) or isinstance(B, Nonlin):
            out = self._expect(a, b)
        elif isinstance(A, Input) and isinstance(B, Input):
            out = self.K0
        elif isinstance(A, MatMul) and isinstance(B, MatMul) and A.weight == B.weight:
            out = self._dense_map(A, self.cov(A.source, B.source)).mul(A.sigma_w2).add_(A.sigma_b2)
            out = out.expand(*self.batch, self._P(a), self._P(b)) if out.dim() < len(self.batch) + 2 else out
        else:
            out = self._zeros(a, b)
        self.cov_cache[key] = out
        return out

    def _expect(self, a: str, b: str) -> Tensor:
        ga, fa, ca = self._frontier(a)
        gb, fb, cb = self._frontier(b)
        Sl = [[self.diag(i, j, "left") for j in ga] for i in ga]
        Sr = [[self.diag(i, j, "right") for j in gb] for i in gb]
        Cx = [[self.cov(i, j) for j in gb] for i in ga]
        key = f"E[{a}·{b}]"
        e, dots = self.quad.expect(key, fa, ca, fb, cb, Sl, Sr, Cx, self.need_ntk)
        shape = (*self.batch, self._P(a), self._P(b))
        e = e.expand(shape) if e.shape != shape else e
        if dots is not None:
            self.dot_cache[(a, b)] = dots
        return e

    # -------------------------------------------------------------- NTK
    def ntk(self, a: str, b: str) -> Tensor:
        """``Θ(a, b)`` for the block, ``[*batch, P_a, P_b]`` (gradient independence)."""
        key = (a, b)
        if key in self.ntk_cache:
            return self.ntk_cache[key]
        A, B = self.prog[a], self.prog[b]
        if isinstance(A, LinComb):
            out = _lin((c, self.ntk(s, b)) for c, s in zip(A.coeffs, A.sources))
        elif isinstance(B, LinComb):
            out = _lin((c, self.ntk(a, s)) for c, s in zip(B.coeffs, B.sources))
        elif isinstance(A, Spatial):
            out = self._spatial(A, self.ntk(A.source, b), "left")
        elif isinstance(B, Spatial):
            out = self._spatial(B, self.ntk(a, B.source), "right")
        elif isinstance(A, Normalize):
            out = self.ntk(A.source, b) / self._norm_scale(A, "left")
        elif isinstance(B, Normalize):
            out = self.ntk(a, B.source) / self._norm_scale(B, "right")
        elif isinstance(A, Nonlin) or isinstance(B, Nonlin):
            self.cov(a, b)
            dots = self.dot_cache[(a, b)]
            ga, gb = self._frontier(a)[0], self._frontier(b)[0]
            terms = [(i, j, u, v) for i, u in enumerate(ga) for j, v in enumerate(gb)]
            out = None
            for i, j, u, v in terms:
                th = self.ntk(u, v)
                out = dots[i][j] * th if out is None else out.addcmul_(dots[i][j], th)
        elif (
            isinstance(A, MatMul) and isinstance(B, MatMul) and A.weight == B.weight
            and isinstance(self.prog[A.source], Input) and isinstance(self.prog[B.source], Input)
        ):  # first layer: Θ of the input is 0, only the parameter term remains
            if self.param == "ntk":
                out = self.cov(a, b)
            else:
                out = self._dense_map(A, self.cov(A.source, B.source)).mul(A.fan_in).add_(float(A.has_bias))
            out = out.expand(*self.batch, self._P(a), self._P(b)) if out.dim() < len(self.batch) + 2 else out
        elif isinstance(A, MatMul) and isinstance(B, MatMul) and A.weight == B.weight:
            back = self._dense_map(A, self.ntk(A.source, B.source))
            if self.param == "ntk":
                out = torch.add(self.cov(a, b), back, alpha=A.sigma_w2)
            else:
                param = self._dense_map(A, self.cov(A.source, B.source)).mul(A.fan_in).add_(float(A.has_bias))
                out = param.add_(back, alpha=A.sigma_w2)
            out = out.expand(*self.batch, self._P(a), self._P(b)) if out.dim() < len(self.batch) + 2 else out
        else:
            out = self._zeros(a, b)
        self.ntk_cache[key] = out
        return out
