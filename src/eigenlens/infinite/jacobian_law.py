"""The limiting spectrum of the input–output Jacobian of a deep network at initialisation (free probability).

For a network ``h^l = W^l x^{l-1} + b^l``, ``x^l = φ(h^l)`` (``l = 1..L``, width ``N``, weights with variance
``σ_w²/N``, biases with variance ``σ_b²``) the input–output Jacobian is ``J = D^L W^L ··· D^1 W^1`` with
``D^l = diag(φ'(h^l))``. As ``N → ∞`` the matrices ``W^l W^lᵀ`` and ``(D^l)²`` become asymptotically free, so
the spectral law of ``J Jᵀ`` (the squared singular values of ``J``) is the free multiplicative
convolution of the layer factors, computed through Voiculescu's S-transform:

``S_{JJᵀ}(y) = ∏_l S_{(D^l)²}(y) · S_{W^l W^lᵀ}(y)``,

with ``S_{WWᵀ}(y) = 1/(σ_w² (1 + y))`` for Gaussian weights (a square Wishart matrix) and ``1/σ_w²`` for
(scaled) orthogonal weights. The law of ``(D^l)²`` is that of ``φ'(√q^l z)²`` with ``z ~ N(0, 1)``,
``q^l`` the pre-activation variance of the mean-field recursion ``q^l = σ_w² E[φ(√q^{l-1} z)²] + σ_b²``;
at the fixed point ``q*`` all layers share it (Pennington, Schoenholz and Ganguli, arXiv 1711.04735).

Conventions (those of the paper): for a measure ``ρ``, ``ψ(w) = ∫ ρ(t) wt/(1 − wt) dt`` (the moment
generating function ``Σ m_k w^k``), ``χ = ψ^{-1}``, ``S(y) = (1 + y)/y · χ(y)``. The density follows from
``G(z) = (1 + ψ(1/z))/z`` and ``ρ(x) = −Im G(x + i0)/π``. Numerically: the law of ``(D^l)²`` is discretised
by Gauss–Hermite quadrature, and for every ``x`` of the grid the system ``ψ_{D_k}(g_k) = ψ``,
``χ_J(ψ) = 1/z`` is solved by Newton's method, continued from ``Im z`` large (where ``ψ ≈ m_1/z``) down to
``Im z = 1e-7·x``, vectorised over the grid. Moments come exactly from the power series of the S-transform.

References:
    J. Pennington, S. S. Schoenholz, S. Ganguli. *Resurrecting the sigmoid in deep learning through
    dynamical isometry: theory and practice.* NeurIPS 2017, arXiv 1711.04735.
    G. Yang. *Tensor Programs I* (arXiv 1902.04760), where Jacobian singular values are re-derived.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eigenlens._result import Result
from eigenlens.linalg.exceptions import ConvergenceWarning, NumericalWarning

__all__ = [
    "JacobianSpec",
    "JacobianLaw",
    "jacobian_spectrum_law",
    "mean_field_fixed_point",
    "wasserstein1",
]

_NONLINEARITIES: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "linear": lambda t: t,
    "identity": lambda t: t,
    "hard_tanh": lambda t: torch.clamp(t, -1.0, 1.0),
    "erf": torch.erf,
    "sigmoid": torch.sigmoid,
    "gelu": torch.nn.functional.gelu,
    "silu": torch.nn.functional.silu,
}
_WEIGHTS = ("gaussian", "orthogonal")


# ---------------------------------------------------------------------------- the network description
@dataclass(frozen=True)
class JacobianSpec:
    """A homogeneous deep network at initialisation: ``depth`` blocks of ``Linear(N, N)`` then ``φ``.

    Attributes:
        depth: the number of layers ``L`` (each a square weight matrix followed by the nonlinearity).
        nonlinearity: a name (``"tanh"``, ``"relu"``, ``"linear"``, ``"hard_tanh"``, ``"erf"``, ``"sigmoid"``,
            ``"gelu"``, ``"silu"``) or an elementwise callable on float64 tensors (differentiated by autograd).
        weight_variance: ``σ_w²``; weights have variance ``σ_w²/N`` (Gaussian) or are ``σ_w`` times a
            Haar-orthogonal matrix.
        bias_variance: ``σ_b²``.
        weights: ``"gaussian"`` or ``"orthogonal"``.
        input_second_moment: ``‖x⁰‖²/N`` of the inputs; ``None`` puts the inputs at the mean-field fixed point
            (``q¹ = q*``), as in arXiv 1711.04735.
    """

    depth: int
    nonlinearity: str | Callable[[Tensor], Tensor] = "tanh"
    weight_variance: float = 1.0
    bias_variance: float = 0.0
    weights: str = "gaussian"
    input_second_moment: float | None = None


@dataclass(frozen=True)
class _Layer:
    """One ``Linear`` (+ optional activation) block: ``σ_w²``, ``σ_b²``, the weight kind and ``φ`` (or None)."""

    weight_variance: float
    bias_variance: float
    weights: str
    phi: Callable[[Tensor], Tensor] | None
    phi_key: Any


def _resolve_phi(nonlinearity: Any) -> tuple[Callable[[Tensor], Tensor] | None, Any]:
    if isinstance(nonlinearity, str):
        key = nonlinearity.lower().replace("-", "_")
        if key not in _NONLINEARITIES:
            raise ValueError(
                f"nonlinearity: expected one of {sorted(_NONLINEARITIES)} or an elementwise callable, "
                f"got {nonlinearity!r}"
            )
        if key in ("linear", "identity"):
            return None, None
        return _NONLINEARITIES[key], key
    if callable(nonlinearity):
        return nonlinearity, nonlinearity
    raise TypeError(f"nonlinearity: expected a name or a callable, got {type(nonlinearity).__name__}")


def _layers_from_spec(spec: JacobianSpec) -> list[_Layer]:
    if not isinstance(spec.depth, (int, np.integer)) or isinstance(spec.depth, bool) or spec.depth < 1:
        raise ValueError(f"depth: expected a positive integer, got {spec.depth!r}")
    if not (spec.weight_variance > 0 and math.isfinite(spec.weight_variance)):
        raise ValueError(f"weight_variance: expected a finite positive σ_w², got {spec.weight_variance!r}")
    if not (spec.bias_variance >= 0 and math.isfinite(spec.bias_variance)):
        raise ValueError(f"bias_variance: expected a finite σ_b² >= 0, got {spec.bias_variance!r}")
    if spec.weights not in _WEIGHTS:
        raise ValueError(f"weights: expected 'gaussian' or 'orthogonal', got {spec.weights!r}")
    phi, key = _resolve_phi(spec.nonlinearity)
    layer = _Layer(float(spec.weight_variance), float(spec.bias_variance), spec.weights, phi, key)
    return [layer] * int(spec.depth)


def _is_elementwise_activation(m: nn.Module) -> bool:
    excluded = (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.MultiheadAttention, nn.GLU, nn.Softmax2d)
    return isinstance(m, nn.Module) and m.__module__ == "torch.nn.modules.activation" and not isinstance(m, excluded)


def _leaf_modules(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        out: list[nn.Module] = []
        for m in model:
            out.extend(_leaf_modules(m))
        return out
    return [model]


def _layers_from_model(model: nn.Module, weights: str) -> tuple[list[_Layer], int]:
    """Read ``σ_w² = fan_in · mean(W²)``, ``σ_b² = mean(b²)`` and the weight kind of each square Linear layer."""
    fix = "pass a JacobianSpec(depth=..., nonlinearity=..., weight_variance=...) instead"
    mods = [m for m in _leaf_modules(model) if not isinstance(m, (nn.Identity, nn.Dropout))]
    layers: list[_Layer] = []
    width = None
    i = 0
    while i < len(mods):
        m = mods[i]
        if not isinstance(m, nn.Linear):
            raise ValueError(
                "jacobian_spectrum_law(model): expected an nn.Sequential of square nn.Linear layers, each "
                f"optionally followed by an elementwise activation; got {type(m).__name__} at position {i}; {fix}"
            )
        W = m.weight.detach().to(torch.float64)
        if W.shape[0] != W.shape[1] or (width is not None and W.shape[0] != width):
            raise ValueError(
                "jacobian_spectrum_law(model): the law is for square layers of one width N; got a Linear "
                f"layer of shape {tuple(W.shape)} (in_features -> out_features = {W.shape[1]} -> {W.shape[0]})"
                f"{'' if width is None else f' after width {width}'}; {fix}"
            )
        width = W.shape[0]
        sw2 = float(W.shape[1] * W.pow(2).mean())
        sb2 = float(m.bias.detach().to(torch.float64).pow(2).mean()) if m.bias is not None else 0.0
        kind = weights
        if weights == "auto":
            gram = W @ W.T / sw2
            dev = float((gram - torch.eye(W.shape[0], dtype=torch.float64)).abs().max())
            kind = "orthogonal" if dev < 1e-4 else "gaussian"
        phi = key = None
        if i + 1 < len(mods) and not isinstance(mods[i + 1], nn.Linear):
            act = mods[i + 1]
            if not _is_elementwise_activation(act):
                raise ValueError(
                    f"jacobian_spectrum_law(model): expected an elementwise activation after Linear layer at "
                    f"position {i}, got {type(act).__name__}; {fix}"
                )
            phi, key = (lambda t, a=act: a(t)), repr(act)
            i += 1
        layers.append(_Layer(sw2, sb2, kind, phi, key))
        i += 1
    if not layers:
        raise ValueError(f"jacobian_spectrum_law(model): the model has no nn.Linear layer; {fix}")
    return layers, int(width)


# ---------------------------------------------------------------------------- Gaussian expectations
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / w.sum()


def _phi_and_dphi(phi: Callable[[Tensor], Tensor], h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.tensor(h, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        y = phi(t)
        if y.shape != t.shape:
            raise ValueError(f"nonlinearity: expected an elementwise function, got output shape {tuple(y.shape)}")
        (dy,) = torch.autograd.grad(y.sum(), t, allow_unused=True)
    if dy is None:
        dy = torch.zeros_like(t)
    return y.detach().numpy(), dy.detach().numpy()


def _second_moment(phi: Callable[[Tensor], Tensor] | None, q: float, nodes: np.ndarray, w: np.ndarray) -> float:
    if phi is None:
        return q
    y, _ = _phi_and_dphi(phi, math.sqrt(max(q, 0.0)) * nodes)
    return float(w @ (y * y))


def mean_field_fixed_point(
    nonlinearity: str | Callable[[Tensor], Tensor] = "tanh",
    weight_variance: float = 1.0,
    bias_variance: float = 0.0,
    *,
    q0: float = 1.0,
    quadrature: int = 128,
) -> float:
    """The fixed point ``q*`` of ``q ↦ σ_w² E[φ(√q z)²] + σ_b²`` reached from ``q0`` (arXiv 1711.04735, eq. 2).

    The map is increasing in ``q`` for the usual nonlinearities, so iteration from ``q0`` moves monotonically
    to the nearest fixed point in its direction; it is located by bracketing on a log grid and Brent's method.

    Args:
        nonlinearity: as in :class:`JacobianSpec`.
        weight_variance, bias_variance: ``σ_w²``, ``σ_b²``.
        q0: the starting pre-activation variance.
        quadrature: Gauss–Hermite nodes for the Gaussian expectation.

    Returns:
        ``q*`` (``0.0`` when the iteration collapses to zero, e.g. tanh with ``σ_b = 0`` and ``σ_w² <= 1``).

    Raises:
        ValueError: the recursion diverges (no fixed point above ``q0``, e.g. ReLU with ``σ_w² > 2``).

    Example:
        >>> round(mean_field_fixed_point("linear", 0.5, 1.0), 6)  # q = q/2 + 1
        2.0
    """
    from scipy.optimize import brentq

    phi, _ = _resolve_phi(nonlinearity)
    nodes, w = _hermite(quadrature)

    def f(q: float) -> float:
        return weight_variance * _second_moment(phi, q, nodes, w) + bias_variance - q

    f0 = f(q0)
    if abs(f0) <= 1e-14 * max(q0, 1.0):
        return float(q0)
    if f0 > 0:  # q increases: the smallest root above q0
        grid = q0 * np.geomspace(1.0, 1e12, 241)[1:]
        prev = q0
        for q in grid:
            if f(q) <= 0:
                return float(brentq(f, prev, q, xtol=1e-14 * q, rtol=1e-13))
            prev = q
        raise ValueError(
            f"mean-field recursion diverges: σ_w² E[φ(√q z)²] + σ_b² > q for all q up to {grid[-1]:.1e} "
            f"(σ_w² = {weight_variance}, σ_b² = {bias_variance}); use a smaller weight_variance or a bounded φ"
        )
    # q decreases: the largest root below q0 (or 0)
    grid = q0 * np.geomspace(1.0, 1e-14, 281)[1:]
    prev = q0
    for q in grid:
        if f(q) >= 0:
            return float(brentq(f, q, prev, xtol=1e-15 * prev, rtol=1e-13))
        prev = q
    return 0.0


# ---------------------------------------------------------------------------- power series helpers
def _mul(a: np.ndarray, b: np.ndarray, K: int) -> np.ndarray:
    return np.convolve(a, b)[: K + 1]


def _compose(f: np.ndarray, g: np.ndarray, K: int) -> np.ndarray:
    """``f(g(w))`` truncated at degree ``K`` for ``g(0) = 0`` (coefficient arrays from degree 0)."""
    out = np.zeros(K + 1)
    power = np.zeros(K + 1)
    power[0] = 1.0
    for c in f[: K + 1]:
        out += c * power
        power = _mul(power, g, K)
    return out


def _inverse(f: np.ndarray, K: int) -> np.ndarray:
    """The compositional inverse of ``f`` (``f(0) = 0``, ``f'(0) ≠ 0``) to degree ``K``."""
    g = np.zeros(K + 1)
    g[1] = 1.0 / f[1]
    ident = np.zeros(K + 1)
    ident[1] = 1.0
    for _ in range(K + 1):
        g = g - (_compose(f, g, K) - ident) / f[1]
    return g


# ---------------------------------------------------------------------------- the law object
@dataclass
class JacobianLaw(Result):
    """The limiting law of the squared singular values of the input–output Jacobian (eigenvalues of ``JJᵀ``).

    Attributes:
        grid: ``[n]`` float64 points ``x`` where the density was solved for (increasing).
        density: ``[n]`` the absolutely continuous part ``ρ(x)`` on ``grid``.
        atom: mass at ``0`` (e.g. ``1/2`` for ReLU: half of every ``D`` is zero).
        moments: ``[K]`` exact moments ``m_k = ∫ x^k dμ`` for ``k = 1..K`` from the S-transform series.
        upper_edge: the right edge of the support (a critical point of ``z(ψ) = 1/χ(ψ)`` on the real axis).
        q: the pre-activation variance of each layer (mean-field recursion), length ``L``.
        chi: ``σ_w² E[φ'(√q z)²]`` of each layer (``χ = 1`` is criticality; ``m_1 = ∏ χ_l``).
        weights: the kind of each weight factor.
        mean_error: ``|∫xρ(x)dx − m_1| / m_1`` on the grid, a check of the solved density (~1e-4).
        mass_below_grid: ``1 − atom − ∫ρ`` over the grid: the mass below ``grid[0]`` (deep Gaussian networks put
            much of their mass at tiny singular values; the CDF accounts for it by integrating from the top).
    """

    grid: Tensor
    density: Tensor
    atom: float
    moments: Tensor
    upper_edge: float
    q: list[float]
    chi: list[float]
    weights: list[str]
    mean_error: float
    mass_below_grid: float
    _cdf: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    @property
    def mean(self) -> float:
        """``m_1 = ∏_l σ_w,l² E[φ'(h^l)²]``."""
        return float(self.moments[0])

    @property
    def var(self) -> float:
        """``m_2 − m_1²``."""
        return float(self.moments[1] - self.moments[0] ** 2)

    @property
    def support(self) -> tuple[float, float]:
        """``(0, upper_edge)``: the grid's lower end is where the density was resolved, not an edge."""
        return 0.0, float(self.upper_edge)

    def pdf(self, x: Any) -> Tensor:
        """The density (continuous part) at ``x`` by linear interpolation on the grid; 0 outside it."""
        xs = np.asarray(torch.as_tensor(x, dtype=torch.float64).cpu(), dtype=np.float64)
        out = np.interp(xs, self.grid.numpy(), self.density.numpy(), left=0.0, right=0.0)
        return torch.as_tensor(out, dtype=torch.float64)

    def cdf(self, x: Any) -> Tensor:
        """``μ([0, x])``, integrating the density from the top (so mass below the grid is exact)."""
        xs = np.asarray(torch.as_tensor(x, dtype=torch.float64).cpu(), dtype=np.float64)
        g = self.grid.numpy()
        lo_val = self._cdf[0]
        out = np.interp(xs, g, self._cdf, left=np.nan, right=1.0)
        below = xs < g[0]
        # below the grid: linear from (0, atom) to (grid[0], cdf[0])
        out[below] = np.where(xs[below] < 0, 0.0, self.atom + (lo_val - self.atom) * xs[below] / g[0])
        return torch.as_tensor(out, dtype=torch.float64)

    def quantile(self, u: Any) -> Tensor:
        """The generalised inverse of :meth:`cdf` for ``u`` in ``[0, 1]``."""
        us = np.asarray(torch.as_tensor(u, dtype=torch.float64).cpu(), dtype=np.float64)
        g = np.concatenate([[0.0], self.grid.numpy()])
        c = np.concatenate([[self.atom], self._cdf])
        c = np.maximum.accumulate(c)
        out = np.interp(us, c, g)
        out[us <= self.atom] = 0.0
        return torch.as_tensor(out, dtype=torch.float64)

    def plot(self, ax: Any = None, *, log: bool = True, **kwargs: Any) -> Any:
        """Plot the density (log-x by default, as in arXiv 1711.04735). Returns the axes."""
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots()
        ax.plot(self.grid.numpy(), self.density.numpy(), **kwargs)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel("squared singular value of J")
        ax.set_ylabel("density")
        return ax


def wasserstein1(law: JacobianLaw, measured: Any, *, max_points: int = 20000) -> float:
    """Wasserstein-1 distance ``∫|F_law(x) − F_measured(x)| dx`` between the law and measured spectra.

    Args:
        law: a :class:`JacobianLaw`.
        measured: squared singular values (a 1-D tensor/array of samples, e.g. ``svdvals(J)**2`` pooled over
            networks), or an object with a ``cdf(x)`` method (e.g. an SLQ ``SpectralDensity`` of ``JᵀJ``).
        max_points: integration points for a ``cdf`` object.

    Returns:
        The distance, in the units of the squared singular values (divide by ``law.mean`` for a relative one).

    Raises:
        ValueError: ``measured`` is empty or holds negative or non-finite values.
    """
    if hasattr(measured, "cdf") and not isinstance(measured, (Tensor, np.ndarray)):
        top = max(law.upper_edge, 1e-300)
        xs = np.concatenate([[0.0], law.grid.numpy(), np.linspace(0.0, 3.0 * top, max_points)])
        xs = np.unique(xs)
        fm = np.asarray(torch.as_tensor(measured.cdf(torch.as_tensor(xs))).cpu(), dtype=np.float64)
        fl = law.cdf(xs).numpy()
        return float(np.trapezoid(np.abs(fl - fm), xs))
    s = np.sort(np.asarray(torch.as_tensor(measured, dtype=torch.float64).cpu()).reshape(-1))
    if s.size == 0:
        raise ValueError("measured: expected at least one squared singular value, got an empty array")
    if not np.isfinite(s).all() or s[0] < -1e-12 * max(1.0, abs(s[-1])):
        raise ValueError(
            "measured: expected finite, non-negative squared singular values (eigenvalues of JJᵀ); "
            f"got min {s[0]:.3g}; pass svdvals(J)**2, not the singular values of a non-Jacobian matrix"
        )
    s = np.clip(s, 0.0, None)
    n = s.size
    # the integral of |F_law − F_emp|: exact on each interval where F_emp is constant, law cdf interpolated
    pts = np.unique(np.concatenate([[0.0], s, law.grid.numpy(), [max(s[-1], law.upper_edge) * 1.01]]))
    pts = np.unique(np.concatenate([pts, (pts[:-1] + pts[1:]) / 2]))
    fl = law.cdf(pts).numpy()
    fe = np.searchsorted(s, pts, side="right") / n
    # F_emp is right-continuous; average the two sides at each jump by the trapezoid rule on a fine grid
    return float(np.trapezoid(np.abs(fl - fe), pts))


# ---------------------------------------------------------------------------- the solver
class _FreeProduct:
    """``S_J(ψ) = ∏_k S_{D_k}(ψ)^{n_k} · ∏ S_W(ψ)``: D-laws as weighted atoms, W factors in closed form."""

    def __init__(self, atoms: list[np.ndarray], probs: list[np.ndarray], mult: list[int], n_gauss: int,
                 log_c: float) -> None:
        self.atoms = atoms
        self.probs = probs
        self.mult = np.asarray(mult, dtype=np.float64)
        self.n_d = float(sum(mult))
        self.n_gauss = n_gauss
        self.log_c = log_c  # log ∏ σ_w² over all weight factors

    # ψ_D(g) and its derivative, vectorised over the grid (g: [n])
    def psi_d(self, k: int, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, p = self.atoms[k], self.probs[k]
        gx = g[:, None] * x[None, :]
        inv = 1.0 / (1.0 - gx)
        val = inv @ p - 1.0  # Σ p gx/(1 − gx)
        der = (inv * inv) @ (p * x)
        return val, der

    def log_chi(self, psi: np.ndarray, g: list[np.ndarray]) -> np.ndarray:
        out = (1.0 - self.n_d) * (np.log(psi) - np.log1p(psi)) - self.n_gauss * np.log1p(psi) - self.log_c
        for k, gk in enumerate(g):
            out = out + self.mult[k] * np.log(gk)
        return out

    def moments(self, K: int) -> np.ndarray:
        s_series = np.zeros(K + 1)
        s_series[0] = math.exp(-self.log_c)
        inv1p = np.array([(-1.0) ** j for j in range(K + 1)])  # 1/(1+y)
        for _ in range(self.n_gauss):
            s_series = _mul(s_series, inv1p, K)
        for k in range(len(self.atoms)):
            mu = np.array([0.0] + [float(self.probs[k] @ self.atoms[k] ** j) for j in range(1, K + 2)])
            chi = _inverse(mu[: K + 2], K + 1)  # χ_D(y) = Σ c_j y^j
            s_d = _mul(np.array([1.0, 1.0]), chi[1:], K)  # (1 + y) χ(y)/y
            for _ in range(int(self.mult[k])):
                s_series = _mul(s_series, s_d, K)
        # χ_J(y) = y/(1+y) S_J(y); ψ_J = χ_J^{-1}
        chi_j = np.zeros(K + 2)
        chi_j[1:] = _mul(s_series, inv1p, K)
        psi = _inverse(chi_j, K + 1)
        return psi[1 : K + 1]

    def real_branch(self, psi: np.ndarray) -> np.ndarray:
        """``z(ψ) = 1/χ_J(ψ)`` for real ``ψ > 0`` (g_k real in ``(0, 1/max x_k)``), for the upper edge."""
        gs = []
        for k in range(len(self.atoms)):
            xmax = float(self.atoms[k].max())
            lo = np.zeros_like(psi)
            hi = np.full_like(psi, 1.0 / xmax if xmax > 0 else 1e300)
            for _ in range(110):
                mid = 0.5 * (lo + hi)
                val, _ = self.psi_d(k, mid)
                big = val > psi
                hi = np.where(big, mid, hi)
                lo = np.where(big, lo, mid)
            gs.append(0.5 * (lo + hi))
        with np.errstate(over="ignore"):  # far along the branch z(ψ) overflows to inf, which the scan skips
            return np.exp(-self.log_chi(psi, gs))

    def _newton(self, psi: np.ndarray, gk: list[np.ndarray], logz: np.ndarray, iters: int) -> np.ndarray:
        """Damped Newton steps on the arrow-shaped system; updates ``psi``/``gk`` in place, returns the residual."""
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return self._newton_steps(psi, gk, logz, iters)

    def _newton_steps(self, psi: np.ndarray, gk: list[np.ndarray], logz: np.ndarray, iters: int) -> np.ndarray:
        active = np.arange(psi.size)
        for _ in range(iters):
            p, lz = psi[active], logz[active]
            g = [gg[active] for gg in gk]
            e0 = self.log_chi(p, g) + lz
            e0 = e0.real + 1j * np.angle(np.exp(1j * e0.imag))  # modulo 2πi
            denom = ((1.0 - self.n_d) * (1.0 / p - 1.0 / (1.0 + p)) - self.n_gauss / (1.0 + p)).astype(complex)
            rhs = -e0
            eks, dks = [], []
            for k, gg in enumerate(g):
                val, der = self.psi_d(k, gg)
                eks.append(val - p)
                dks.append(der)
                denom = denom + self.mult[k] / (gg * der)
                rhs = rhs + self.mult[k] * eks[k] / (gg * der)
            dpsi = rhs / denom
            dgs = [(dpsi - eks[k]) / dks[k] for k in range(len(g))]
            # damping: never move ψ or any g by more than half its modulus in one step
            scale = np.minimum(1.0, 0.5 * np.abs(p) / np.maximum(np.abs(dpsi), 1e-300))
            for gg, dg in zip(g, dgs):
                scale = np.minimum(scale, 0.5 * np.abs(gg) / np.maximum(np.abs(dg), 1e-300))
            psi[active] = p + scale * dpsi
            for k in range(len(gk)):
                gk[k][active] = g[k] + scale * dgs[k]
            step = np.abs(scale * dpsi) / np.abs(p)
            for gg, dg in zip(g, dgs):
                step = np.maximum(step, np.abs(scale * dg) / np.abs(gg))
            active = active[step > 1e-12]
            if active.size == 0:
                break
        e0 = self.log_chi(psi, gk) + logz
        return np.hypot(e0.real, np.angle(np.exp(1j * e0.imag)))

    def solve(self, x: np.ndarray, x_scale: float, m1: float, m2: float, tau: float = 1e-7,
              ratio: float = 0.5, iters: int = 6) -> tuple[np.ndarray, float]:
        """``ψ_J(1/z)`` at ``z = x + iη`` for every ``x``, continued in ``η`` from ``10·x_scale`` to ``τx``."""
        eta0 = 10.0 * x_scale
        eta_min = tau * x
        z = x + 1j * eta0
        psi = m1 / z + m2 / z**2
        gk: list[np.ndarray] = []
        for k in range(len(self.atoms)):
            mu1 = float(self.probs[k] @ self.atoms[k])
            mu2 = float(self.probs[k] @ self.atoms[k] ** 2)
            gk.append(psi / mu1 - mu2 * psi**2 / mu1**3)  # χ_D(ψ) ≈ ψ/μ1 − μ2 ψ²/μ1³
        eta = np.full(x.size, eta0)
        steps = int(math.ceil(math.log(eta0 / max(float(eta_min.min()), 1e-300)) / math.log(1.0 / ratio))) + 1
        res = np.zeros(x.size)
        for step in range(steps + 1):
            if step:
                eta = np.maximum(eta * ratio, eta_min)
            res = self._newton(psi, gk, np.log(x + 1j * eta), iters if step < steps else 6 * iters)
        return psi, float(res.max()) if res.size else 0.0


# ---------------------------------------------------------------------------- the public function
def jacobian_spectrum_law(
    model_or_spec: nn.Module | JacobianSpec,
    *,
    weights: str = "auto",
    input_second_moment: float | None = None,
    num_points: int = 400,
    decades: float = 10.0,
    quadrature: int = 64,
    num_moments: int = 4,
) -> JacobianLaw:
    """The limiting density of the squared singular values of the input–output Jacobian at initialisation.

    The law of ``JJᵀ`` for ``J = D^L W^L ··· D^1 W^1`` is the free multiplicative convolution of the laws of
    ``W^l W^lᵀ`` (Marchenko–Pastur with ratio 1 for Gaussian weights, a point mass for orthogonal ones) and
    of ``(D^l)² = diag(φ'(h^l))²``, where ``h^l ~ N(0, q^l)`` follows the mean-field recursion; see the
    module docstring for the equations (arXiv 1711.04735, section 2).

    Args:
        model_or_spec: a :class:`JacobianSpec`, or an ``nn.Sequential`` of square ``nn.Linear(N, N)`` layers
            each optionally followed by an elementwise activation module; ``σ_w² = fan_in · mean(W²)`` and
            ``σ_b² = mean(b²)`` are read off the model's actual initialisation.
        weights: for a model: ``"auto"`` (orthogonal when ``WWᵀ`` is a multiple of the identity to 1e-4,
            Gaussian otherwise), ``"gaussian"`` or ``"orthogonal"``. Ignored for a spec (it says).
        input_second_moment: ``‖x⁰‖²/N`` of the inputs; ``None`` places ``q¹`` at the fixed point ``q*`` of
            the first layer's map (a spec's own ``input_second_moment`` takes precedence when given).
        num_points: grid size (log-spaced over ``decades`` below the upper edge, plus a linear part).
        decades: how far below the upper edge the density is resolved.
        quadrature: Gauss–Hermite nodes discretising the law of ``φ'(h)²``.
        num_moments: how many exact moments to return.

    Returns:
        A :class:`JacobianLaw` (grid, density, atom at 0, moments, upper edge, per-layer ``q`` and ``χ``).

    Raises:
        TypeError: ``model_or_spec`` is neither a spec nor an ``nn.Module``.
        ValueError: the model is not a stack of square Linear layers and elementwise activations, a parameter
            is out of range, or the mean-field recursion diverges.

    Warns:
        ConvergenceWarning: Newton's method did not reach its tolerance at some grid point.

    Example:
        >>> law = jacobian_spectrum_law(JacobianSpec(depth=1, nonlinearity="linear"))  # a square Wishart
        >>> [round(m, 8) for m in law.moments.tolist()[:3]]  # Catalan numbers: MP(1) moments
        [1.0, 2.0, 5.0]
        >>> round(law.upper_edge, 4)
        4.0
    """
    if isinstance(model_or_spec, JacobianSpec):
        layers = _layers_from_spec(model_or_spec)
        if model_or_spec.input_second_moment is not None:
            input_second_moment = model_or_spec.input_second_moment
    elif isinstance(model_or_spec, nn.Module):
        if weights not in ("auto", *_WEIGHTS):
            raise ValueError(f"weights: expected 'auto', 'gaussian' or 'orthogonal', got {weights!r}")
        layers, _ = _layers_from_model(model_or_spec, weights)
    else:
        raise TypeError(
            "model_or_spec: expected a JacobianSpec or an nn.Sequential of Linear layers and activations, "
            f"got {type(model_or_spec).__name__}"
        )
    if num_points < 16:
        raise ValueError(f"num_points: expected at least 16 grid points, got {num_points}")
    if input_second_moment is not None and not (input_second_moment >= 0 and math.isfinite(input_second_moment)):
        raise ValueError(f"input_second_moment: expected a finite value >= 0, got {input_second_moment!r}")

    nodes, w = _hermite(quadrature)
    # mean-field recursion for the pre-activation variances q^l
    first = layers[0]
    if input_second_moment is None:
        q_prev_post = None
        q1 = mean_field_fixed_point(
            first.phi if first.phi is not None else "linear", first.weight_variance, first.bias_variance,
            quadrature=quadrature,
        ) if first.phi is not None else None
        if q1 is None and all(layer.phi is None for layer in layers):
            q_prev_post = 1.0  # a linear network: the variances do not enter the Jacobian
        elif q1 is None:
            raise ValueError(
                "input_second_moment=None puts the inputs at the mean-field fixed point, but the first layer has "
                "no nonlinearity; pass input_second_moment= (‖x‖²/N of the inputs)"
            )
    else:
        q_prev_post = float(input_second_moment)
        q1 = None
    qs: list[float] = []
    for i, layer in enumerate(layers):
        if i == 0 and q1 is not None:
            q = q1
        else:
            q = layer.weight_variance * q_prev_post + layer.bias_variance  # type: ignore[operator]
        qs.append(float(q))
        q_prev_post = _second_moment(layer.phi, q, nodes, w)
        if not math.isfinite(q_prev_post):
            raise ValueError(f"mean-field recursion overflowed at layer {i + 1}; the network is far from critical")

    # group the D-laws by (φ, q)
    groups: dict[tuple[Any, float], int] = {}
    phis: dict[tuple[Any, float], Callable[[Tensor], Tensor]] = {}
    chis: list[float] = []
    for layer, q in zip(layers, qs):
        if layer.phi is None:
            chis.append(layer.weight_variance)
            continue
        key = (layer.phi_key, round(q, 12))
        groups[key] = groups.get(key, 0) + 1
        phis[key] = layer.phi
    atoms, probs, mult = [], [], []
    atom0 = 0.0
    chis = []
    for layer, q in zip(layers, qs):
        if layer.phi is None:
            chis.append(layer.weight_variance)
        else:
            _, d = _phi_and_dphi(layer.phi, math.sqrt(max(q, 0.0)) * nodes)
            chis.append(layer.weight_variance * float(w @ (d * d)))
    for key, count in groups.items():
        _, d = _phi_and_dphi(phis[key], math.sqrt(max(key[1], 0.0)) * nodes)
        x2 = d * d
        if not np.isfinite(x2).all():
            raise ValueError("nonlinearity: its derivative is not finite on the Gaussian quadrature nodes")
        zero = x2 <= 1e-300
        atom0 = max(atom0, float(w[zero].sum()))
        if zero.all():
            raise ValueError("nonlinearity: its derivative vanishes almost everywhere; the Jacobian is zero")
        # merge equal atoms (φ' even: the nodes ±z give the same value) and drop negligible weights
        keys = np.round(x2 / max(float(x2.max()), 1e-300), 13)
        uniq, inverse = np.unique(keys, return_inverse=True)
        xs_u = np.zeros(uniq.size)
        ps_u = np.zeros(uniq.size)
        np.add.at(ps_u, inverse, w)
        np.add.at(xs_u, inverse, w * x2)
        xs_u = xs_u / np.maximum(ps_u, 1e-300)
        keep = ps_u > 1e-16
        atoms.append(xs_u[keep])
        probs.append(ps_u[keep] / ps_u[keep].sum())
        mult.append(count)
    if not atoms:  # a linear network: D = I
        atoms, probs, mult = [np.ones(1)], [np.ones(1)], [1]
    n_gauss = sum(1 for layer in layers if layer.weights == "gaussian")
    log_c = float(sum(math.log(layer.weight_variance) for layer in layers))
    fp = _FreeProduct(atoms, probs, mult, n_gauss, log_c)

    moments = fp.moments(max(num_moments, 2))
    m1, m2 = float(moments[0]), float(moments[1])

    # the upper edge: first local minimum of z(ψ) on the real branch ψ > 0
    psi_r = np.geomspace(1e-10, 1e10, 4001)
    zr = fp.real_branch(psi_r)
    ok = np.isfinite(zr)
    idx = np.flatnonzero(ok[1:-1] & (zr[1:-1] <= zr[:-2]) & (zr[1:-1] <= zr[2:])) + 1
    if idx.size:
        from scipy.optimize import minimize_scalar

        i0 = int(idx[0])
        res = minimize_scalar(
            lambda t: float(fp.real_branch(np.array([math.exp(t)]))[0]),
            bracket=(math.log(psi_r[i0 - 1]), math.log(psi_r[i0]), math.log(psi_r[i0 + 1])),
            options={"xtol": 1e-10},
        )
        upper = float(min(res.fun, zr[i0]))
    else:  # no edge found on the scan: fall back to a moment bound
        upper = float(max(moments[-1], 1e-300) ** (1.0 / len(moments)) * 4.0)

    if moments[1] - moments[0] ** 2 <= 1e-12 * moments[0] ** 2:
        # a point mass (e.g. an orthogonal linear network): a box of relative width 2e-9 around m_1
        grid = m1 * np.array([1.0 - 1e-9, 1.0 + 1e-9])
        dens = np.full(2, 1.0 / (grid[1] - grid[0]))
        return JacobianLaw(
            grid=torch.as_tensor(grid), density=torch.as_tensor(dens), atom=0.0,
            moments=torch.as_tensor(moments[:num_moments]), upper_edge=float(grid[1]), q=qs, chi=chis,
            weights=[layer.weights for layer in layers], mean_error=0.0, mass_below_grid=0.0,
            _cdf=np.array([0.0, 1.0]),
        )
    n_log = num_points - num_points // 4
    grid_log = upper * np.geomspace(10.0 ** (-decades), 1.0, n_log, endpoint=False)
    grid_lin = upper * np.linspace(0.0, 1.0, num_points // 4 + 1)[1:]
    grid = np.unique(np.concatenate([grid_log, grid_lin, upper * np.array([1.0 + 1e-9, 1.01, 1.05])]))
    psi, worst = fp.solve(grid, max(upper, m1), m1, m2)
    dens = np.clip(-psi.imag / (math.pi * grid), 0.0, None)
    dens[grid > upper * (1 + 1e-6)] = 0.0
    if not np.isfinite(dens).all():
        warnings.warn("jacobian_spectrum_law: non-finite density values were set to 0", NumericalWarning,
                      stacklevel=2)
        dens = np.nan_to_num(dens, nan=0.0, posinf=0.0, neginf=0.0)
    if worst > 1e-6:
        warnings.warn(
            f"jacobian_spectrum_law: Newton's method reached a residual of {worst:.1e} (> 1e-6) at some grid "
            "points; increase quadrature= or check the density near the edges",
            ConvergenceWarning,
            stacklevel=2,
        )
    # cdf integrated from the top: F(x) = 1 − ∫_x^∞ ρ
    seg = 0.5 * (dens[1:] + dens[:-1]) * np.diff(grid)
    tail = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
    cdf = np.clip(1.0 - tail, atom0, 1.0)
    mass_below = max(0.0, 1.0 - atom0 - float(seg.sum()))
    mean_error = abs(float(np.trapezoid(grid * dens, grid)) - m1) / abs(m1)
    return JacobianLaw(
        grid=torch.as_tensor(grid),
        density=torch.as_tensor(dens),
        atom=float(atom0),
        moments=torch.as_tensor(moments[:num_moments]),
        upper_edge=upper,
        q=qs,
        chi=chis,
        weights=[layer.weights for layer in layers],
        mean_error=mean_error,
        mass_below_grid=mass_below,
        _cdf=cdf,
    )
