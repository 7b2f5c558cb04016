"""Infinite-width NNGP and NTK kernels of a PyTorch module (Tensor Programs, arXiv 1902.04760)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from eigenlens._result import Result
from eigenlens.infinite.gaussian import Quadrature
from eigenlens.infinite.ir import TensorProgram, num_positions
from eigenlens.infinite.propagate import Engine
from eigenlens.infinite.trace import program
from eigenlens.linalg.exceptions import NumericalWarning

__all__ = ["kernels", "Kernels"]

_MEMORY_ELEMENTS = 2**18  # elements of one [*batch, P, P] tensor in a block (2 MiB in float64: cache-friendly)


@dataclass
class Kernels(Result):
    """Infinite-width kernels of a model's output.

    Attributes:
        nngp: ``[N1, N2]`` NNGP kernel ``E[f(x) f(x')]`` of each output channel (``[N1, N2, *S, *S]`` when the
            output keeps spatial positions ``S``), or ``None`` if not requested.
        ntk: the NTK, same shape, or ``None``.
        quadrature_error: largest estimated relative error of any numerically integrated Gaussian
            expectation (Mehler tail bound, or the difference between two quadrature rules); ``0.0`` when every
            nonlinearity had a closed form.
        quadrature_degrees: expectation -> rule used ("mehler K=..", "gauss-hermite n", "trapezoid h=..").
        complete: ``False`` if the computation was interrupted (missing blocks are NaN).
        parameterization: ``"ntk"`` or ``"standard"``.
    """

    nngp: Tensor | None
    ntk: Tensor | None
    quadrature_error: float = 0.0
    quadrature_degrees: dict[str, str] = field(default_factory=dict)
    complete: bool = True
    parameterization: str = "ntk"
    _program: TensorProgram | None = field(default=None, repr=False)

    @property
    def program(self) -> TensorProgram | None:
        """The traced :class:`TensorProgram`."""
        return self._program


def _to_channel_first(x: Tensor, prog: TensorProgram, dtype: torch.dtype) -> Tensor:
    """``[N, ...]`` -> ``[N, C, P]`` with the input's channel axis first and positions flattened."""
    inp = prog[prog.input]
    x = x.detach().to(dtype)
    if inp.positions:
        x = x.movedim(1 + inp.channel_axis, 1)
    return x.reshape(x.shape[0], inp.width, num_positions(inp.positions))


def _check_input(x: Tensor, name: str, like: Tensor | None = None) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N, ...], got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape [N, ...] with N >= 1, got {tuple(x.shape)}")
    if like is not None and x.shape[1:] != like.shape[1:]:
        raise ValueError(f"x2 must have per-example shape {tuple(like.shape[1:])} like x1, got {tuple(x.shape[1:])}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf; expected finite inputs")


def _diagonal_pass(prog, X, block, quad, parameterization, tag):
    """Per-input self covariances of every vector the pair pass needs: key -> [N, P]."""
    out: dict = {}
    for s in range(0, X.shape[0], block):
        Xb = X[s : s + block]
        K0 = torch.einsum("ncp,ncq->npq", Xb, Xb) / X.shape[1]
        eng = Engine(prog, K0, (Xb.shape[0],), None, None, quad, parameterization, False, tag)
        eng.cov(prog.output, prog.output)
        _ = eng.diag(prog.output, prog.output, "left")
        for key, v in eng.diags.items():
            out.setdefault(key, []).append(v)
    return {k: torch.cat(v, 0) for k, v in out.items()}


def kernels(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    get: str | Sequence[str] = ("nngp", "ntk"),
    parameterization: str = "ntk",
    weight_std: float | dict[str, float] | None = None,
    bias_std: float | dict[str, float] | None = None,
    dtype: torch.dtype = torch.float64,
    block_size: int | None = None,
    quad_degree: int | None = None,
    quad_tol: float = 1e-9,
    closed_forms: bool = True,
    progress: bool = False,
) -> Kernels:
    r"""NNGP and NTK of ``model`` in the limit of infinitely many hidden channels.

    The model is traced into a :class:`~eigenlens.infinite.ir.TensorProgram` (:func:`program`) and every
    vector's limiting covariance is propagated by the Master Theorem; the NTK uses the gradient-independence
    rule (Yang, arXiv 1902.04760; NTK: Jacot et al. arXiv 1806.07572). Conventions are neural-tangents':
    input kernel ``<x, x'>/d`` (per pixel pair, divided by channels), ``Θ⁰ = 0``, a layer with weight
    variance ``σ_w²/fan_in`` and bias variance ``σ_b²`` maps ``Σ' = σ_w² Σ + σ_b²`` and (NTK
    parameterisation) ``Θ' = Σ' + σ_w² Θ``; standard parameterisation ``Θ' = fan_in·Σ + 1 + σ_w² Θ``.
    ReLU is plain (no √2). Work is done in blocks of input pairs, so memory stays bounded (a CNN with
    global pooling holds ``block² · P²`` numbers at a time, never ``N² · P²``).

    Args:
        model: an ``nn.Module`` (see :data:`eigenlens.infinite.trace.SUPPORTED`); it is only read.
        x1: ``[N1, ...]`` inputs.
        x2: ``[N2, ...]`` inputs, or ``None`` for ``x1`` (the kernel is then symmetric and half is computed).
        get: ``"nngp"``, ``"ntk"`` or both.
        parameterization: ``"ntk"`` or ``"standard"``.
        weight_std: ``σ_w`` for every Linear/Conv (float), per module name (dict), or ``None`` to read
            ``σ_w² = fan_in · mean(W²)`` off the module.
        bias_std: ``σ_b`` likewise (``None``: ``σ_b² = mean(b²)``).
        dtype: computation dtype (``torch.float64`` default; ``torch.float32`` is faster, ~1e-6 relative).
        block_size: inputs per block side (default: as many as keep one block tensor under 2 MiB, cache-sized).
        quad_degree: Gauss–Hermite points per dimension for nonlinearities without a closed form, or
            ``None`` to choose it adaptively to meet ``quad_tol``.
        quad_tol: target relative error of each numerical Gaussian expectation.
        closed_forms: use closed forms for the ReLU family and erf (``False`` forces quadrature).
        progress: show a tqdm progress bar over blocks.

    Returns:
        :class:`Kernels` with ``nngp``/``ntk`` of shape ``[N1, N2]`` (one identical block per output channel).

    Raises:
        TypeError: bad ``model``/``x1``/``x2`` types.
        ValueError: unsupported layers (named), mismatched shapes, bad options.

    Example:
        >>> import torch, eigenlens as el
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 512), torch.nn.ReLU(), torch.nn.Linear(512, 1))
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> k = el.infinite.kernels(net, x, weight_std=1.0, bias_std=0.0)
        >>> # Σ¹ = <x, x'>/2; ReLU at 90° gives 1/(2π)·Σ¹; Θ = Σ² + Σ̇·Σ¹ = 1/(4π) + 0.
        >>> round(float(k.nngp[0, 1]), 6), round(1 / (4 * 3.141592653589793), 6)
        (0.079577, 0.079577)
        >>> round(float(k.ntk[0, 0]), 6)  # Σ² = 1/4, Θ = 1/4 + (1/2)(1/2)
        0.5
    """
    get = (get,) if isinstance(get, str) else tuple(get)
    bad = [g for g in get if g not in ("nngp", "ntk")]
    if bad or not get:
        raise ValueError(f"get must be 'nngp', 'ntk' or both, got {get!r}")
    if parameterization not in ("ntk", "standard"):
        raise ValueError(f"parameterization must be 'ntk' or 'standard', got {parameterization!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
    _check_input(x1, "x1")
    if x2 is not None:
        _check_input(x2, "x2", x1)
    prog = program(model, x1[:1], weight_std=weight_std, bias_std=bias_std)
    quad = Quadrature(degree=quad_degree, tol=quad_tol, closed_forms=closed_forms)
    need_ntk = "ntk" in get
    sym = x2 is None
    X1 = _to_channel_first(x1, prog, dtype)
    X2 = X1 if sym else _to_channel_first(x2, prog, dtype)
    C = X1.shape[1]
    pmax = max(num_positions(getattr(n, "positions", ())) for n in prog)
    n1, n2 = X1.shape[0], X2.shape[0]
    block = block_size or max(1, int(math.isqrt(_MEMORY_ELEMENTS // (pmax * pmax))))
    diag_block = max(block, _MEMORY_ELEMENTS // (pmax * pmax))
    with torch.no_grad():
        d1 = _diagonal_pass(prog, X1, diag_block, quad, parameterization, "diag")
        d2 = d1 if sym else _diagonal_pass(prog, X2, diag_block, quad, parameterization, "diag")
    out_pos = getattr(prog[prog.output], "positions", ())
    P = num_positions(out_pos)
    pairs = [(i, j) for i in range(0, n1, block) for j in range(i if sym else 0, n2, block)]
    single = len(pairs) == 1
    nngp = ntk = None
    if not single:  # filled block by block; NaN marks blocks not computed (interrupted)
        nngp = X1.new_full((n1, n2, P, P), math.nan) if "nngp" in get else None
        ntk = X1.new_full((n1, n2, P, P), math.nan) if need_ntk else None
    complete = True
    try:
        from tqdm.auto import tqdm

        bar = tqdm(pairs, desc="kernel blocks", disable=not progress)
        with torch.no_grad():
            for i, j in bar:
                A, B = X1[i : i + block], X2[j : j + block]
                K0 = torch.einsum("ncp,mcq->nmpq", A, B) / C
                dl = {k: v[i : i + block] for k, v in d1.items()}
                dr = {k: v[j : j + block] for k, v in d2.items()}
                eng = Engine(prog, K0, (A.shape[0], B.shape[0]), dl, dr, quad, parameterization, need_ntk, "pair")
                if single:
                    nngp = eng.cov(prog.output, prog.output) if "nngp" in get else None
                    ntk = eng.ntk(prog.output, prog.output) if need_ntk else None
                    continue
                for target, fn in ((nngp, eng.cov), (ntk, eng.ntk)):
                    if target is None:
                        continue
                    val = fn(prog.output, prog.output)
                    target[i : i + block, j : j + block] = val
                    if sym and j != i:
                        target[j : j + block, i : i + block] = val.transpose(0, 1).transpose(-1, -2)
    except KeyboardInterrupt:
        complete = False
        warnings.warn(
            "kernels() interrupted: the blocks computed so far are returned, the rest is NaN (complete=False)",
            NumericalWarning,
            stacklevel=2,
        )

    def shape(k: Tensor | None) -> Tensor | None:
        if k is None:
            return None
        k = k.expand(n1, n2, P, P)
        if not out_pos:
            return k[:, :, 0, 0]
        return k.reshape(n1, n2, *out_pos, *out_pos)

    return Kernels(
        nngp=shape(nngp),
        ntk=shape(ntk),
        quadrature_error=quad.max_error,
        quadrature_degrees=dict(quad.degrees),
        complete=complete,
        parameterization=parameterization,
        _program=prog,
    )
