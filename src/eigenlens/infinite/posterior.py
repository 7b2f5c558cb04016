"""Infinite-ensemble predictions for the mean-squared-error loss from NNGP and NTK kernels.

- NNGP posterior (exact Bayesian inference with the infinite-width prior, Lee et al. arXiv 1711.00165):
  ``μ = K_*x (K_xx + λI)⁻¹ y``, ``σ² = diag(K_** − K_*x (K_xx + λI)⁻¹ K_x*)``.
- NTK gradient flow (Jacot et al. arXiv 1806.07572; Lee et al. arXiv 1902.06720): gradient descent with
  learning rate ``η`` on ``L = (1/2N) Σ_n ||f(x_n) − y_n||²`` keeps the network linear in its parameters,
  and the mean over initialisations of the prediction at time ``t`` is
  ``μ(t) = Θ_*x Θ⁻¹ (I − exp(−η t Θ / N)) y`` (with ``Θ + λI`` in place of ``Θ``); at ``t = ∞`` kernel
  regression ``Θ_*x Θ⁻¹ y``.

``λ = diag_reg · mean(diag K_xx)`` (the regulariser is relative to the kernel's scale, as in
neural-tangents' default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from eigenlens._result import Result

__all__ = ["predict", "Prediction", "nngp_posterior", "ntk_gradient_flow"]


@dataclass
class Prediction(Result):
    """Infinite-width predictions on test inputs.

    Attributes:
        nngp_mean: ``[Nt, O]`` NNGP posterior mean (``None`` if not requested).
        nngp_var: ``[Nt]`` NNGP posterior variance of each output channel.
        ntk_mean: ``[Nt, O]`` mean prediction of NTK gradient flow at time ``t`` (``[len(t), Nt, O]`` for
            several times); equals ``ntk_mean_inf`` when ``t`` is ``None``.
        ntk_mean_inf: ``[Nt, O]`` the ``t = ∞`` limit (kernel regression with the NTK).
        t: the times.
        diag_reg: the relative diagonal regulariser used.
    """

    nngp_mean: Tensor | None
    nngp_var: Tensor | None
    ntk_mean: Tensor | None
    ntk_mean_inf: Tensor | None
    t: Tensor | None
    diag_reg: float


def _reg(K: Tensor, diag_reg: float) -> Tensor:
    lam = diag_reg * K.diagonal().mean()
    return K + lam * torch.eye(K.shape[0], dtype=K.dtype, device=K.device)


def _check(K_train: Tensor, K_test_train: Tensor, y: Tensor) -> Tensor:
    if K_train.ndim != 2 or K_train.shape[0] != K_train.shape[1]:
        raise ValueError(f"train kernel must be square [N, N], got {tuple(K_train.shape)}")
    if K_test_train.ndim != 2 or K_test_train.shape[1] != K_train.shape[0]:
        raise ValueError(
            f"test-train kernel must be [Nt, {K_train.shape[0]}], got {tuple(K_test_train.shape)}"
        )
    y = y.to(K_train.dtype)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != K_train.shape[0]:
        raise ValueError(f"y_train must be [N] or [N, O] with N = {K_train.shape[0]}, got {tuple(y.shape)}")
    return y


def nngp_posterior(
    K_train: Tensor, K_test_train: Tensor, K_test_diag: Tensor, y_train: Tensor, diag_reg: float = 0.0
) -> tuple[Tensor, Tensor]:
    """NNGP posterior mean ``[Nt, O]`` and variance ``[Nt]`` (Cholesky solve of ``K + λI``).

    Args:
        K_train: ``[N, N]``; K_test_train: ``[Nt, N]``; K_test_diag: ``[Nt]`` prior variances of the test points.
        y_train: ``[N]`` or ``[N, O]`` targets.
        diag_reg: ``λ / mean(diag K_train)``.

    Raises:
        ValueError: inconsistent shapes, or ``K + λI`` not positive definite (fix: raise ``diag_reg``).
    """
    y = _check(K_train, K_test_train, y_train)
    L, info = torch.linalg.cholesky_ex(_reg(K_train, diag_reg))
    if int(info) != 0:
        raise ValueError(
            "NNGP posterior: the train kernel (+ diag_reg) is not positive definite (duplicate inputs or too little "
            f"regularisation; got diag_reg={diag_reg}); fix: pass diag_reg=1e-6 or larger"
        )
    alpha = torch.cholesky_solve(y, L)
    mean = K_test_train @ alpha
    v = torch.linalg.solve_triangular(L, K_test_train.T, upper=False)
    var = K_test_diag - (v * v).sum(0)
    return mean, var


def ntk_gradient_flow(
    ntk_train: Tensor,
    ntk_test_train: Tensor,
    y_train: Tensor,
    t: float | Sequence[float] | Tensor | None = None,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Mean prediction of NTK gradient flow at times ``t`` and at ``t = ∞``.

    Uses the eigendecomposition ``Θ + λI = V diag(w) Vᵀ``:
    ``μ(t) = Θ_*x V diag((1 − exp(−η t w / N)) / w) Vᵀ y`` (``expm1`` keeps small ``w`` accurate).

    Returns:
        ``(mean_t, mean_inf)``: ``[len(t), Nt, O]`` (or ``[Nt, O]`` for a scalar/None ``t``) and ``[Nt, O]``.

    Raises:
        ValueError: inconsistent shapes, negative times, or a singular kernel at ``t = ∞`` (fix: ``diag_reg``).
    """
    y = _check(ntk_train, ntk_test_train, y_train)
    n = ntk_train.shape[0]
    w, V = torch.linalg.eigh(_reg(ntk_train, diag_reg))
    if float(w.min()) <= 1e-14 * float(w.abs().max()):
        raise ValueError(
            "NTK gradient flow: the train NTK (+ diag_reg) is singular (duplicate inputs?), so the t = ∞ limit is not "
            f"defined; got smallest eigenvalue {float(w.min()):.3e}; fix: pass diag_reg=1e-6 or larger"
        )
    Vy = V.T @ y
    mean_inf = ntk_test_train @ (V @ (Vy / w[:, None]))
    if t is None:
        return mean_inf, mean_inf
    tt = torch.as_tensor(t, dtype=ntk_train.dtype)
    scalar = tt.ndim == 0
    tt = tt.reshape(-1)
    if (tt < 0).any() or torch.isnan(tt).any():
        raise ValueError(f"t must be >= 0 (or None for t = ∞), got {t!r}")
    outs = []
    for ti in tt:
        if math.isinf(float(ti)):
            outs.append(mean_inf)
            continue
        factor = -torch.expm1(-learning_rate * ti * w / n) / w
        outs.append(ntk_test_train @ (V @ (factor[:, None] * Vy)))
    mean_t = outs[0] if scalar else torch.stack(outs)
    return mean_t, mean_inf


def predict(
    model: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    *,
    t: float | Sequence[float] | Tensor | None = None,
    get: str | Sequence[str] = ("nngp", "ntk"),
    diag_reg: float = 1e-6,
    learning_rate: float = 1.0,
    **kernel_kwargs,
) -> Prediction:
    """Infinite-width ensemble predictions of ``model`` trained on ``(x_train, y_train)`` with MSE.

    Computes the train/train, test/train and test/test kernels with :func:`eigenlens.infinite.kernels`
    (``kernel_kwargs`` are passed on: ``weight_std``, ``bias_std``, ``parameterization``, ...) and returns the
    NNGP posterior and the NTK gradient-flow mean (see the module docstring for the formulas).

    Args:
        model: the network (only read).
        x_train: ``[N, ...]``; y_train: ``[N]`` or ``[N, O]``; x_test: ``[Nt, ...]``.
        t: training time(s) for the NTK mean (``None``: ``t = ∞``).
        get: ``"nngp"``, ``"ntk"`` or both.
        diag_reg: regulariser relative to the mean diagonal of the train kernel.
        learning_rate: ``η`` of gradient flow (time is measured in units of ``1/η``).

    Returns:
        :class:`Prediction`.

    Example:
        >>> import torch, eigenlens as el
        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        >>> x = torch.tensor([[-1.0], [0.5], [2.0]]); y = torch.tensor([1.0, -1.0, 0.5])
        >>> p = el.infinite.predict(net, x, y, x, weight_std=1.0, bias_std=0.5, diag_reg=0.0)
        >>> torch.allclose(p.ntk_mean_inf[:, 0], y.double()) and torch.allclose(p.nngp_mean[:, 0], y.double())
        True
    """
    from eigenlens.infinite.limit import kernels

    get = (get,) if isinstance(get, str) else tuple(get)
    if not get or any(g not in ("nngp", "ntk") for g in get):
        raise ValueError(f"get must be 'nngp', 'ntk' or both, got {get!r}")
    if not isinstance(y_train, Tensor):
        raise TypeError(f"y_train must be a torch.Tensor [N] or [N, O], got {type(y_train).__name__}")
    if not (isinstance(diag_reg, (int, float)) and diag_reg >= 0):
        raise ValueError(f"diag_reg must be a float >= 0, got {diag_reg!r}")
    k_tr = kernels(model, x_train, get=get, **kernel_kwargs)
    k_te = kernels(model, x_test, x_train, get=get, **kernel_kwargs)
    nngp_mean = nngp_var = ntk_mean = ntk_inf = None
    if "nngp" in get:
        k_tt = kernels(model, x_test, get="nngp", **kernel_kwargs)
        nngp_mean, nngp_var = nngp_posterior(k_tr.nngp, k_te.nngp, k_tt.nngp.diagonal(), y_train, diag_reg)
    if "ntk" in get:
        ntk_mean, ntk_inf = ntk_gradient_flow(k_tr.ntk, k_te.ntk, y_train, t, learning_rate, diag_reg)
    tt = None if t is None else torch.as_tensor(t, dtype=torch.float64)
    return Prediction(nngp_mean, nngp_var, ntk_mean, ntk_inf, tt, float(diag_reg))
