"""Spectral compression: replace each Linear layer by a low-rank factorisation kept beyond the MP edge.

For a layer ``y = W x + b`` (``W`` ``[out, in]``) we pick an ``r``-dimensional subspace and factor the layer
into two Linears, ``in -> r -> out`` (:class:`LowRankLinear`), which saves parameters when
``r (in + out) < in · out``:

* ``source="activations"`` (RMT-KD): the subspace is spanned by the top eigenvectors ``U_r`` ``[in, r]`` of
  the layer's *input* second-moment matrix ``C = XᵀX / T`` over the calibration data (``X`` ``[T, in]``,
  uncentred, so the mean direction is kept); the layer becomes ``x ↦ (W U_r)(U_rᵀ x) + b``, exact on the
  span of the data's significant directions.
* ``source="weights"``: the truncated SVD ``W ≈ U_r S_r V_rᵀ``; the layer becomes ``x ↦ (U_r S_r)(V_rᵀ x) + b``.

The rank ``r``:

* ``"mp"``: the number of eigenvalues above the Marchenko–Pastur edge found by
  :func:`eigenlens.rmt.fit_marchenko_pastur` (activations: the eigenvalues of ``C`` with ratio ``in/T``;
  weights: of ``WᵀW/N`` as in :func:`eigenlens.nn.weights.weight_spectra`) — the "signal" directions, the
  rest being indistinguishable from noise. At least 1. Exactly-zero eigenvalues (directions the data never
  visit: constant-zero pixels, dead units; below ``1e-10·λ_max``) are dropped before the fit. On trained
  layers fitted with many samples this test is strict (most eigenvalues are significant).
* ``"mp-trace"``: the eigenvalues above the edge ``σ²(1 + √γ)²`` of the isotropic null with the same total
  energy, ``σ² = Σλ/p`` (the mean eigenvalue; the RMT-KD reading): the directions that carry more variance
  than white noise of the same power could produce.
* an ``int``: that rank for every layer (capped at ``min(in, out)``).
* a ``float`` in (0, 1]: the smallest rank whose eigenvalues hold that fraction of the total (energy).

A layer is replaced only when that saves parameters; otherwise it is kept and the reason is reported.
The user's model is left untouched (a deep copy is compressed) unless ``inplace=True``.

References:
    *Structure and Redundancy in Large Language Models: A Spectral Study via Random Matrix Theory*
    (RMT-KD, arXiv 2509.15724): compression by projecting onto the outlier eigenvectors of activation
    covariances beyond the MP edge.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from eigenlens._result import Result

__all__ = ["LowRankLinear", "LayerCompression", "CompressionResult", "spectral_compress"]


class LowRankLinear(nn.Module):
    """``x ↦ up(down(x))``: a rank-``r`` replacement of an ``nn.Linear(in_features, out_features)``.

    The two factors are created uninitialised (no draw from the global RNG); set their weights.

    Attributes:
        down: ``nn.Linear(in_features, rank, bias=False)``.
        up: ``nn.Linear(rank, out_features, bias=<as the original>)``.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, *, bias: bool = True,
                 dtype: torch.dtype | None = None, device: torch.device | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        # skip_init: no random initialisation (the global RNG is not touched); the factors are set by the caller
        self.down = nn.utils.skip_init(nn.Linear, in_features, rank, bias=False, dtype=dtype, device=device)
        self.up = nn.utils.skip_init(nn.Linear, rank, out_features, bias=bias, dtype=dtype, device=device)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


@dataclasses.dataclass
class LayerCompression(Result):
    """What happened to one Linear layer.

    Attributes:
        name: module name.
        in_features, out_features: the layer's size.
        rank: the chosen rank ``r``.
        num_outliers: eigenvalues above the MP edge (the ``"mp"`` rank before the floor of 1); -1 when no MP
            fit was needed.
        params_before: parameters of the original layer (weight and bias).
        params_after: parameters after (equal to ``params_before`` when not replaced).
        replaced: whether the layer was replaced by a :class:`LowRankLinear`.
        reason: why it was not replaced, or None.
        energy: fraction of the spectrum's total (trace) kept by the rank-``r`` subspace.
    """

    name: str
    in_features: int
    out_features: int
    rank: int
    num_outliers: int
    params_before: int
    params_after: int
    replaced: bool
    reason: str | None
    energy: float


@dataclasses.dataclass
class CompressionResult(Result):
    """Result of :func:`spectral_compress`.

    Attributes:
        model: the compressed model (the input model itself when ``inplace=True``, else a copy).
        layers: one :class:`LayerCompression` per Linear layer considered.
        params_before, params_after: parameter counts of the whole model.
        metric_before, metric_after: ``metric(model)`` before and after, when a metric was given.
    """

    model: nn.Module = dataclasses.field(repr=False)
    layers: list[LayerCompression]
    params_before: int
    params_after: int
    metric_before: float | None = None
    metric_after: float | None = None

    @property
    def params_saved(self) -> int:
        """``params_before − params_after``."""
        return self.params_before - self.params_after

    @property
    def compression_ratio(self) -> float:
        """``params_after / params_before``."""
        return self.params_after / self.params_before if self.params_before else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Public fields without the model, plus ``params_saved`` and ``compression_ratio``."""
        d = super().to_dict()
        d.pop("model", None)
        d["params_saved"] = self.params_saved
        d["compression_ratio"] = self.compression_ratio
        return d

    def to_pandas(self) -> Any:
        """One row per layer (requires pandas)."""
        import pandas as pd

        return pd.DataFrame([layer.to_dict() for layer in self.layers])


def _inputs_of(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], Tensor) and isinstance(
        batch[0], Tensor
    ) and batch[1].shape[:1] == batch[0].shape[:1]:
        return batch[0]
    return batch


def _batches(data: Any) -> list[Any]:
    if isinstance(data, Tensor):
        return [data]
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data) and (
        data[0].shape[:1] == data[1].shape[:1]
    ):
        return [data[0]]
    if isinstance(data, (list, tuple)) or (hasattr(data, "__iter__") and iter(data) is not data):
        out = [_inputs_of(b) for b in data]
        if not out:
            raise ValueError("data: no batch found; pass inputs [n, ...], (inputs, targets) or a list of batches")
        return out
    raise TypeError(
        "data: expected model inputs [n, ...], an (inputs, targets) pair or a re-iterable of batches, "
        f"got {type(data).__name__}"
    )


def _second_moments(model: nn.Module, names: list[str], data: Any) -> dict[str, tuple[Tensor, int]]:
    """``XᵀX`` (float64) and ``T`` of the inputs of the named Linear layers over ``data``."""
    from eigenlens.nn._model import preserve_model_state

    modules = dict(model.named_modules())
    acc: dict[str, list[Any]] = {n: [None, 0] for n in names}
    handles = []

    def make(name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            x = args[0].detach().to(torch.float64).reshape(-1, args[0].shape[-1])
            g = x.T @ x
            acc[name][0] = g if acc[name][0] is None else acc[name][0] + g
            acc[name][1] += x.shape[0]

        return hook

    try:
        for n in names:
            handles.append(modules[n].register_forward_pre_hook(make(n)))
        with preserve_model_state(model), torch.no_grad():
            model.eval()
            for b in _batches(data):
                if isinstance(b, dict):
                    model(**b)
                elif isinstance(b, (tuple, list)):
                    model(*b)
                else:
                    model(b)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for n, (g, t) in acc.items():
        if g is None:
            raise ValueError(f"data: layer {n!r} was never called by the model on the data; it cannot be compressed")
        out[n] = (g, t)
    return out


def _rank(eig_desc: Tensor, rank: Any, ratio: float, alpha: float) -> tuple[int, int]:
    """(rank, num_outliers) from eigenvalues in descending order."""
    if rank == "mp-trace":
        # the isotropic null with the same total energy: σ² = mean eigenvalue, edge σ²(1 + √γ)²
        eig = eig_desc.clamp_min(0.0)
        edge = float(eig.mean()) * (1 + math.sqrt(ratio)) ** 2
        k = int((eig > edge).sum())
        return max(k, 1), k
    if isinstance(rank, str):
        import eigenlens.rmt.fits as fits

        # directions the data never visit (always-zero pixels, dead units) are exact zeros, not noise: drop
        # them and fit MP to the p' remaining eigenvalues with ratio γ·p'/p
        eig = eig_desc.clamp_min(0.0)
        keep = eig > 1e-10 * float(eig.max()) if float(eig.max()) > 0 else eig > 0
        if int(keep.sum()) < 2:
            return 1, int(keep.sum())
        mp = fits.fit_marchenko_pastur(eig[keep], ratio * int(keep.sum()) / eig.numel(), alpha=alpha)
        k = int(mp.num_outliers)
        return max(k, 1), k
    if isinstance(rank, int):
        return min(rank, eig_desc.numel()), -1
    total = float(eig_desc.clamp_min(0).sum())
    cum = torch.cumsum(eig_desc.clamp_min(0), 0) / max(total, 1e-300)
    return int((cum < rank - 1e-12).sum()) + 1, -1


def _evaluate(metric: Callable[[nn.Module], float] | None, model: nn.Module) -> float | None:
    """``metric(model)`` with the model's state (parameters, grads, modes, RNG) restored afterwards."""
    if metric is None:
        return None
    from eigenlens.nn._model import preserve_model_state

    with preserve_model_state(model):
        return float(metric(model))


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def spectral_compress(
    model: nn.Module,
    data: Any = None,
    *,
    rank: str | int | float = "mp",
    source: str = "activations",
    layers: Sequence[str] | None = None,
    inplace: bool = False,
    alpha: float = 0.05,
    metric: Callable[[nn.Module], float] | None = None,
) -> CompressionResult:
    """Replace Linear layers by low-rank factorisations that keep the directions beyond the MP edge.

    Args:
        model: the model. Left untouched unless ``inplace=True`` (parameters, grads, modes, RNG).
        data: calibration inputs for ``source="activations"``: a tensor ``[n, ...]``, an ``(inputs, targets)``
            pair or a list/DataLoader of batches (targets are ignored). Not needed for ``source="weights"``.
        rank: ``"mp"`` (eigenvalues beyond the fitted Marchenko–Pastur edge), ``"mp-trace"`` (beyond the edge
            of white noise of the same total variance), an ``int`` or an energy fraction in (0, 1] (see the
            module docstring).
        source: ``"activations"`` (input second-moment eigenvectors, RMT-KD) or ``"weights"`` (truncated SVD).
        layers: names of the Linear layers to consider; None = every ``nn.Linear``.
        inplace: modify ``model`` itself instead of a deep copy.
        alpha: false-positive level of the MP outlier test.
        metric: optional ``metric(model) -> float`` (e.g. test accuracy) evaluated before and after.

    Returns:
        A :class:`CompressionResult` with the compressed model and per-layer ranks and parameter counts.

    Raises:
        TypeError: bad ``model``/``data`` types.
        ValueError: bad ``rank``/``source``, unknown layer names, a model without Linear layers, missing data.

    Example:
        >>> import torch, eigenlens as el
        >>> g = torch.Generator().manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(50, 40))
        >>> x = torch.randn(500, 3, generator=g) @ torch.randn(3, 50, generator=g)  # rank-3 inputs
        >>> res = el.spectral_compress(net, x, rank=0.999)
        >>> res.layers[0].rank, res.params_after < res.params_before, net[0].__class__.__name__
        (3, True, 'Linear')
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if source not in ("activations", "weights"):
        raise ValueError(f"source: expected 'activations' or 'weights', got {source!r}")
    if isinstance(rank, bool) or not (
        rank in ("mp", "mp-trace")
        or (isinstance(rank, int) and rank >= 1)
        or (isinstance(rank, float) and 0.0 < rank <= 1.0)
    ):
        raise ValueError(
            f"rank: expected 'mp', 'mp-trace', an int >= 1 or an energy fraction in (0, 1], got {rank!r}"
        )
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha: expected a false-positive level in (0, 1), got {alpha!r}")
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("spectral_compress: the model has no nn.Linear layer to compress")
    if layers is not None:
        unknown = [n for n in layers if n not in linears]
        if unknown:
            raise ValueError(f"layers: {unknown} are not nn.Linear layers of the model; expected some of {linears}")
        linears = [n for n in linears if n in set(layers)]
    if source == "activations" and data is None:
        raise ValueError("data: source='activations' needs calibration inputs; pass data or use source='weights'")

    metric_before = _evaluate(metric, model)
    moments = _second_moments(model, linears, data) if source == "activations" else {}
    params_before = sum(p.numel() for p in model.parameters())
    target = model if inplace else copy.deepcopy(model)
    modules = dict(target.named_modules())
    report: list[LayerCompression] = []
    for name in linears:
        lin: nn.Linear = modules[name]  # type: ignore[assignment]
        out_f, in_f = lin.weight.shape
        W = lin.weight.detach().to(torch.float64)
        before = lin.weight.numel() + (lin.bias.numel() if lin.bias is not None else 0)
        if source == "activations":
            G, T = moments[name]
            eig, vecs = torch.linalg.eigh(G / T)
            eig, vecs = eig.flip(0), vecs.flip(1)
            r, k = _rank(eig, rank, in_f / T, float(alpha))
            r = min(r, in_f, out_f)
            down = vecs[:, :r].T  # [r, in]
            up = W @ vecs[:, :r]  # [out, r]
        else:
            U, S, Vh = torch.linalg.svd(W, full_matrices=False)
            N = max(in_f, out_f)
            eig = S**2 / N
            r, k = _rank(eig, rank, min(in_f, out_f) / N, float(alpha))
            r = min(r, S.numel())
            down = Vh[:r]
            up = U[:, :r] * S[:r]
        total = float(eig.clamp_min(0).sum())
        energy = float(eig[:r].clamp_min(0).sum()) / total if total > 0 else math.nan
        after = r * (in_f + out_f) + (lin.bias.numel() if lin.bias is not None else 0)
        if after >= before:
            report.append(LayerCompression(name, in_f, out_f, r, k, before, before, False,
                                           f"no saving at rank {r}: {after} >= {before} parameters", energy))
            continue
        new = LowRankLinear(in_f, out_f, r, bias=lin.bias is not None, dtype=lin.weight.dtype,
                            device=lin.weight.device)
        with torch.no_grad():
            new.down.weight.copy_(down.to(lin.weight.dtype))
            new.up.weight.copy_(up.to(lin.weight.dtype))
            if lin.bias is not None:
                new.up.bias.copy_(lin.bias.detach())
        new.train(lin.training)
        for p, q in zip((new.down.weight, new.up.weight), (lin.weight, lin.weight)):
            p.requires_grad_(q.requires_grad)
        _set_module(target, name, new)
        report.append(LayerCompression(name, in_f, out_f, r, k, before, after, True, None, energy))
    params_after = sum(p.numel() for p in target.parameters())
    metric_after = _evaluate(metric, target)
    return CompressionResult(target, report, params_before, params_after, metric_before, metric_after)
