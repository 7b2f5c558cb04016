"""GrokAlign: Jacobian–data alignment, centroid alignment and the Jacobian-norm penalty.

For a network ``f`` with input–output Jacobian ``J_x = ∂f(x)/∂x`` (``O × D`` per example):

* **Jacobian alignment** ``A(x) = cos(J_x x, f(x)) = ⟨J_x x, f(x)⟩ / (‖J_x x‖ ‖f(x)‖)``. For a continuous
  piecewise-affine network (ReLU, leaky ReLU, max-pooling, ...) ``f(x) = J_x x + b_x`` on the linear region
  of ``x``, so ``A(x) = 1`` exactly when the region's offset ``b_x`` vanishes (or is parallel to ``J_x x``):
  the output is explained by the Jacobian acting on the data point. ``J_x x`` costs one forward-mode
  product (a JVP with the tangent ``x`` itself), which also returns ``f(x)``.
* **Centroid alignment** ``C(x) = cos(μ_x, x)`` with the centroid ``μ_x = J_xᵀ 1 = ∇_x Σ_o f_o(x)`` (the sum of
  the Jacobian's rows; one VJP): a cheap tracker of the training stages. A rank-one Jacobian aligned with
  the data, ``J_x = u xᵀ``, gives ``C(x) = ±1``.
* **GrokAlign penalty** ``λ · mean_x ‖J_x‖_F`` (the Jacobian regulariser that makes networks grok sooner),
  with the Hutchinson estimate ``‖J_x‖_F² = E_v ‖J_x v‖²`` for ``v ~ N(0, I_D)`` (or Rademacher): ONE
  forward-mode product per step for the whole batch (a JVP with an independent probe per example), and
  differentiable with respect to the parameters (reverse-over-forward), so it is usable as a loss term in
  any training loop. ``squared=True`` penalises the unbiased ``‖J_x‖_F²`` estimate instead of its root.

References:
    T. Walker, A. I. Humayun, R. Balestriero, R. Baraniuk. *GrokAlign: Geometric Characterisation and
    Acceleration of Grokking.* arXiv 2506.12284 (2025).
    J. Hoffman, D. A. Roberts, S. Yaida. *Robust learning with Jacobian regularization.* arXiv 1908.02729
    (random-projection estimate of the Jacobian norm).
    M. F. Hutchinson (1989), the trace estimator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from eigenlens.linalg.random import gaussian, rademacher, resolve_generator
from eigenlens.nn._model import preserve_model_state

__all__ = [
    "jacobian_alignment",
    "centroid_alignment",
    "jacobian_frobenius",
    "grokalign_penalty",
    "GrokAlign",
]

_DISTRIBUTIONS = ("gaussian", "rademacher")


def _check(model: Any, x: Any, what: str) -> None:
    if not isinstance(model, nn.Module) and not callable(model):
        raise TypeError(f"{what}: model must be an nn.Module or a callable, got {type(model).__name__}")
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: inputs must be a tensor [B, *input_shape], got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{what}: inputs must have a non-empty batch dimension first, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(
            f"{what}: the input Jacobian needs floating inputs, got {x.dtype}; one-hot encode token ids "
            "(F.one_hot(ids, n).float()) or differentiate with respect to the embeddings"
        )


def _check_outputs(out: Any, x: Tensor, what: str) -> Tensor:
    if not isinstance(out, Tensor):
        raise TypeError(f"{what}: the model must return one tensor [B, *output_shape], got {type(out).__name__}")
    if out.ndim < 1 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"{what}: the model's output has shape {tuple(out.shape)} but the batch has {x.shape[0]} examples; "
            "outputs must keep the batch dimension first"
        )
    return out


def _cosine(a: Tensor, b: Tensor, eps: float) -> Tensor:
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(eps)


def _guard(model: Any) -> Any:
    import contextlib

    return preserve_model_state(model) if isinstance(model, nn.Module) else contextlib.nullcontext()


def jacobian_alignment(model: Any, inputs: Tensor, *, eps: float = 1e-12) -> Tensor:
    """Per-example Jacobian alignment ``cos(J_x x, f(x))`` (arXiv 2506.12284), one JVP for the batch.

    Args:
        model: an ``nn.Module`` (or callable) mapping ``[B, *in]`` to ``[B, *out]``; never modified.
        inputs: ``[B, *in]`` floating tensor.
        eps: floor of the norms' product.

    Returns:
        ``[B]`` cosines in ``[-1, 1]`` (detached). ``1`` for a bias-free piecewise-linear network.

    Raises:
        TypeError: non-tensor or non-floating inputs, a model not returning one tensor.
        ValueError: empty batch, outputs without the batch dimension.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(2, 2).double()
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.eye(2, dtype=torch.float64)); _ = lin.bias.copy_(torch.tensor([0.0, 1.0]))
        >>> x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)   # f(x) = (1, 1), J x = (1, 0)
        >>> round(float(jacobian_alignment(lin, x)[0]), 6)      # cos 45°
        0.707107
    """
    _check(model, inputs, "jacobian_alignment")
    x = inputs.detach()
    with _guard(model), torch.no_grad():
        out, jx = torch.func.jvp(model, (x,), (x,))
    _check_outputs(out, x, "jacobian_alignment")
    return _cosine(jx, out, eps).detach()


def centroid_alignment(model: Any, inputs: Tensor, *, eps: float = 1e-12, return_centroids: bool = False) -> Any:
    """Per-example centroid alignment ``cos(J_xᵀ 1, x)`` (arXiv 2506.12284), one VJP for the batch.

    The centroid ``μ_x = J_xᵀ 1 = ∇_x Σ_o f_o(x)`` is the sum of the rows of the Jacobian.

    Args:
        model: an ``nn.Module`` (or callable); never modified.
        inputs: ``[B, *in]`` floating tensor.
        eps: floor of the norms' product.
        return_centroids: also return the centroids ``[B, *in]``.

    Returns:
        ``[B]`` cosines (detached), or ``(cosines, centroids)``.

    Raises:
        TypeError / ValueError: as :func:`jacobian_alignment`.
    """
    _check(model, inputs, "centroid_alignment")
    x = inputs.detach()
    with _guard(model), torch.no_grad():
        out, vjp_fn = torch.func.vjp(model, x)
        _check_outputs(out, x, "centroid_alignment")
        (mu,) = vjp_fn(torch.ones_like(out))
    cos = _cosine(mu, x, eps).detach()
    return (cos, mu.detach()) if return_centroids else cos


def _draw_probes(x: Tensor, generator: torch.Generator | None, distribution: str, count: int | None = None) -> Tensor:
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution: expected 'gaussian' or 'rademacher', got {distribution!r}")
    g = resolve_generator(generator)
    draw = gaussian if distribution == "gaussian" else rademacher
    n = x.numel() * (count or 1)
    v = draw(n, generator=g, dtype=x.dtype, device=x.device)
    return v.reshape(*(() if count is None else (count,)), *x.shape)


def _check_probes(probes: Tensor, x: Tensor, what: str) -> Tensor:
    if not isinstance(probes, Tensor) or probes.shape != x.shape:
        got = tuple(probes.shape) if isinstance(probes, Tensor) else type(probes).__name__
        raise ValueError(f"{what}: probes must have the inputs' shape {tuple(x.shape)}, got {got}")
    return probes.to(dtype=x.dtype, device=x.device)


def jacobian_frobenius(
    model: Any,
    inputs: Tensor,
    *,
    num_probes: int = 16,
    distribution: str = "rademacher",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-example Hutchinson estimate of ``‖J_x‖_F²`` averaged over ``num_probes`` probes (a measurement).

    ``E_v ‖J_x v‖² = tr(J_xᵀ J_x) = ‖J_x‖_F²`` for ``E[v vᵀ] = I``. All probes go through one batched
    (``vmap``-ed) JVP. The model is never modified; the result is detached.

    Args:
        model: an ``nn.Module`` (or callable).
        inputs: ``[B, *in]``.
        num_probes: probes per example.
        distribution: ``"rademacher"`` (lower variance) or ``"gaussian"``.
        generator: randomness of the probes (``None``: seeded 0).

    Returns:
        ``[B]`` estimates of ``‖J_x‖_F²``.

    Raises:
        ValueError: ``num_probes < 1`` or an unknown ``distribution``.
    """
    _check(model, inputs, "jacobian_frobenius")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes: expected a positive int, got {num_probes!r}")
    x = inputs.detach()
    V = _draw_probes(x, generator, distribution, count=num_probes)
    with _guard(model), torch.no_grad():

        def jv(v: Tensor) -> Tensor:
            return torch.func.jvp(model, (x,), (v,))[1]

        JV = torch.func.vmap(jv)(V)  # [k, B, *out]
    return JV.reshape(num_probes, x.shape[0], -1).pow(2).sum(-1).mean(0).detach()


def grokalign_penalty(
    model: Any,
    inputs: Tensor,
    *,
    generator: torch.Generator | None = None,
    probes: Tensor | None = None,
    distribution: str = "gaussian",
    squared: bool = False,
    eps: float = 1e-12,
    return_outputs: bool = False,
) -> Any:
    """The GrokAlign Jacobian penalty ``mean_x ‖J_x‖_F`` with ONE JVP (differentiable; use it in the loss).

    Each example ``x_i`` gets its own probe ``v_i`` (``[B, *in]`` in total) and one forward-mode product gives
    ``J_{x_i} v_i`` for the whole batch; ``‖J_{x_i} v_i‖²`` is an unbiased estimate of ``‖J_{x_i}‖_F²``. The
    penalty is ``mean_i sqrt(‖J_{x_i} v_i‖² + eps)`` (the Frobenius norm, as in arXiv 2506.12284; the root
    makes it biased low by Jensen) or, with ``squared=True``, the unbiased ``mean_i ‖J_{x_i} v_i‖²``.
    Gradients flow to the model's parameters (reverse-over-forward); the JVP also returns ``f(x)``, so
    ``return_outputs=True`` saves the separate forward pass of the task loss.

    Args:
        model: an ``nn.Module`` (or callable) in whatever mode the training loop uses.
        inputs: ``[B, *in]`` floating tensor (e.g. one-hot tokens or embeddings).
        generator: randomness of the probes. ``None`` means a fresh generator seeded 0 — the SAME probes at
            every call; in a training loop keep one generator (or use :class:`GrokAlign`) so that they vary.
        probes: explicit probes ``[B, *in]`` (override ``generator``/``distribution``).
        distribution: ``"gaussian"`` or ``"rademacher"``.
        squared: penalise ``‖J‖_F²`` instead of ``‖J‖_F``.
        eps: added under the square root (keeps its gradient finite at ``J v = 0``).
        return_outputs: return ``(penalty, outputs)``.

    Returns:
        A scalar tensor (with a graph to the parameters), or ``(penalty, outputs)``.

    Raises:
        TypeError / ValueError: as :func:`jacobian_alignment`; probes of the wrong shape; unknown distribution.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(3, 2, bias=False).double()
        >>> x = torch.zeros(4, 3, dtype=torch.float64)
        >>> e = torch.eye(3, dtype=torch.float64)[:1].expand(4, 3)         # probe e_1: J e_1 = first column
        >>> pen = grokalign_penalty(lin, x, probes=e, squared=True)
        >>> bool(torch.isclose(pen, lin.weight[:, 0].pow(2).sum()))
        True
    """
    _check(model, inputs, "grokalign_penalty")
    x = inputs.detach()
    v = _check_probes(probes, x, "grokalign_penalty") if probes is not None else _draw_probes(
        x, generator, distribution
    )
    out, jv = torch.func.jvp(model, (x,), (v,))
    _check_outputs(out, x, "grokalign_penalty")
    sq = jv.reshape(x.shape[0], -1).pow(2).sum(1)
    pen = sq.mean() if squared else (sq + eps).sqrt().mean()
    return (pen, out) if return_outputs else pen


class GrokAlign:
    """The GrokAlign loss term with its own probe generator: ``loss = task + grokalign(x)``.

    Args:
        weight: ``λ``, the multiplier of the penalty.
        generator: a generator kept across steps (default: one seeded 0), so probes differ between steps.
        distribution, squared, eps: as :func:`grokalign_penalty`.

    Example:
        >>> import torch
        >>> reg = GrokAlign(weight=1e-3)
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> pen, out = reg(net, torch.randn(5, 4), return_outputs=True)
        >>> pen.ndim, tuple(out.shape)
        (0, (5, 3))
    """

    def __init__(
        self,
        weight: float = 1e-3,
        *,
        generator: torch.Generator | None = None,
        distribution: str = "gaussian",
        squared: bool = False,
        eps: float = 1e-12,
    ) -> None:
        if not weight >= 0:
            raise ValueError(f"weight: expected λ >= 0, got {weight!r}")
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(f"distribution: expected 'gaussian' or 'rademacher', got {distribution!r}")
        self.weight = float(weight)
        self.generator = resolve_generator(generator)
        self.distribution = distribution
        self.squared = squared
        self.eps = eps

    def __call__(self, model: Any, inputs: Tensor, *, return_outputs: bool = False) -> Any:
        """``λ · grokalign_penalty(model, inputs)`` with fresh probes from the kept generator."""
        pen, out = grokalign_penalty(
            model, inputs, generator=self.generator, distribution=self.distribution, squared=self.squared,
            eps=self.eps, return_outputs=True,
        )
        pen = self.weight * pen
        return (pen, out) if return_outputs else pen
