"""The Jacobian of a model as a matrix-free operator, and its singular-value spectrum.

For a model ``f`` applied to a batch ``x`` of ``B`` examples (outputs ``[B, *out]`` with ``O`` entries per
example, inputs ``[B, *in]`` with ``D`` entries per example) :func:`jacobian` returns

* ``wrt="inputs"``: ``J = ∂ f(x) / ∂ x`` of shape ``(B·O, B·D)``, rows ``(example, output)`` and columns
  ``(example, input)`` flattened row-major. For a model that treats examples independently it is
  block-diagonal with the per-example Jacobians ``J_i = ∂ f(x_i) / ∂ x_i`` (``O × D``) on the diagonal.
* ``wrt="params"``: ``J = ∂ f(x; θ) / ∂ θ`` of shape ``(B·O, P)``, columns the flattened selected
  parameters in ``model.named_parameters()`` order (:mod:`eigenlens.nn._model`).

``J @ V`` (``V``: ``[n, k]``) is ONE batched forward-mode product (``torch.func.jvp`` under
``torch.func.vmap``); ``J.T @ U`` is ONE batched reverse-mode product (``torch.func.vjp`` of a forward
pass done once, under ``vmap``). Nothing of size ``n × n`` is ever formed.

:func:`jacobian_spectrum` reads the spectrum of ``J`` (``wrt="inputs"``): top singular values per example
and pooled over the batch (Krylov, by ``svds``), the density of the squared singular values by stochastic
Lanczos quadrature on the Gram matrix, condition numbers, and the fraction of examples whose Jacobian is
near-isometric — the quantities whose law at initialisation is
:func:`eigenlens.infinite.jacobian_law.jacobian_spectrum_law` (Pennington, Schoenholz, Ganguli,
arXiv 1711.04735: dynamical isometry means all singular values of ``J`` close to 1).

The user's model is never changed: the operator holds a snapshot of the parameters and buffers, and every
product runs under a guard restoring the global RNG state.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from eigenlens._result import Result
from eigenlens.linalg.exceptions import ConvergenceWarning
from eigenlens.linalg.operator import LinearOperator
from eigenlens.nn._model import (
    FunctionalModel,
    ParamsSpec,
    batch_size,
    call_model,
    check_model_deterministic,
    preserve_model_state,
    rng_guard,
)

__all__ = ["JacobianOperator", "jacobian", "JacobianSpectrum", "jacobian_spectrum"]

_WRT = ("inputs", "params")


class JacobianOperator(LinearOperator):
    """``J = ∂ model(inputs) / ∂ (inputs | params)`` as a :class:`LinearOperator` (see :func:`jacobian`).

    Attributes:
        wrt: ``"inputs"`` or ``"params"``.
        batch_size: ``B``.
        input_shape: per-example input shape (``wrt="inputs"``).
        output_shape: per-example output shape.
        outputs: the model's outputs ``[B, *out]`` at the linearisation point (detached).
        names: the selected parameter names (``wrt="params"``).
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Any,
        *,
        wrt: str = "inputs",
        params: ParamsSpec = None,
        dtype: torch.dtype | None = None,
        check_deterministic: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if wrt not in _WRT:
            raise ValueError(f"wrt: expected 'inputs' or 'params', got {wrt!r}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size: expected None or a positive int, got {chunk_size!r}")
        if check_deterministic:
            check_model_deterministic(model)
        self.wrt = wrt
        self.chunk_size = chunk_size
        if wrt == "inputs":
            if not isinstance(inputs, Tensor):
                raise TypeError(
                    "inputs: wrt='inputs' needs one tensor of shape [B, *input_shape], got "
                    f"{type(inputs).__name__}; for several input tensors use wrt='params' or wrap the model"
                )
            if params is not None:
                raise ValueError("params: only used with wrt='params'; drop params= or pass wrt='params'")
            if inputs.ndim < 1 or inputs.shape[0] == 0:
                raise ValueError(
                    f"inputs: expected a batch [B, *input_shape] with B >= 1, got shape {tuple(inputs.shape)}"
                )
            if not inputs.is_floating_point():
                raise TypeError(
                    f"inputs: the Jacobian with respect to the inputs needs floating inputs, got {inputs.dtype}; "
                    "for token ids differentiate with respect to the embeddings (wrt='params' or embed first)"
                )
        names = [n for n, _ in model.named_parameters()]
        with preserve_model_state(model), rng_guard():
            if wrt == "params":
                fm = FunctionalModel(model, params, dtype=dtype)
            elif names:
                fm = FunctionalModel(model, names, dtype=dtype or inputs.dtype)
            else:
                fm = None
            op_dtype = fm.dtype if fm is not None else (dtype or inputs.dtype)
            device = fm.device if fm is not None else inputs.device
            self._fm = fm
            self._model = model
            self._state = {} if fm is None else dict(fm.params)
            self._fixed = {} if fm is not None else {
                n: (b.detach().to(op_dtype) if b.is_floating_point() else b.detach()).clone()
                for n, b in model.named_buffers()
            }
            self._inputs = self._cast(inputs, op_dtype, device)
            with torch.no_grad():
                out = self._f_params(self._state) if fm is not None else self._f_inputs(self._inputs)
        if not isinstance(out, Tensor):
            raise TypeError(
                f"the model returned {type(out).__name__}; jacobian needs a model returning one tensor "
                "[B, *output_shape] (wrap it to select the output you want)"
            )
        B = out.shape[0] if out.ndim else 0
        nb = batch_size(self._inputs)
        if out.ndim < 1 or B != nb:
            raise ValueError(
                f"the model's output has shape {tuple(out.shape)}, but the batch has {nb} examples; jacobian needs "
                "outputs [B, *output_shape] with the batch dimension first"
            )
        self.batch_size = int(nb)
        self.output_shape = tuple(out.shape[1:])
        self.outputs = out.detach()
        O = int(math.prod(self.output_shape))
        if wrt == "inputs":
            self.input_shape = tuple(self._inputs.shape[1:])
            n = self.batch_size * int(math.prod(self.input_shape))
            self.names: list[str] = []
        else:
            self.input_shape = ()
            n = fm.num_params  # type: ignore[union-attr]
            self.names = list(fm.names)  # type: ignore[union-attr]
        super().__init__((self.batch_size * O, n), dtype=op_dtype, device=device)
        self._vjp_fn: Any = None
        self._counter = [0]  # products with J or Jᵀ (vectors), shared with the per-example blocks

    # ------------------------------------------------------------------ plumbing
    @staticmethod
    def _cast(inputs: Any, dtype: torch.dtype, device: torch.device) -> Any:
        def one(t: Any) -> Any:
            if isinstance(t, Tensor):
                t = t.detach()
                if t.is_floating_point():
                    t = t.to(dtype)
                return t.to(device)
            return t

        if isinstance(inputs, dict):
            return {k: one(v) for k, v in inputs.items()}
        if isinstance(inputs, (tuple, list)):
            return type(inputs)(one(v) for v in inputs)
        return one(inputs)

    def _f_inputs(self, x: Tensor) -> Tensor:
        if self._fm is None:
            return call_model(self._model, self._fixed, x)
        return self._fm(self._state, x)

    def _f_params(self, params: dict[str, Tensor]) -> Tensor:
        return self._fm(params, self._inputs)  # type: ignore[misc]

    # ------------------------------------------------------------------ products
    def _matmat(self, X: Tensor) -> Tensor:
        k = X.shape[1]
        self._counter[0] += k
        with rng_guard():
            if self.wrt == "inputs":
                V = X.T.reshape(k, *self._inputs.shape)

                def jv(v: Tensor) -> Tensor:
                    return torch.func.jvp(self._f_inputs, (self._inputs,), (v,))[1]

                out = torch.func.vmap(jv, chunk_size=self.chunk_size)(V)
            else:
                T = self._fm.unflatten_columns(X)  # type: ignore[union-attr]

                def jv(t: dict[str, Tensor]) -> Tensor:
                    return torch.func.jvp(self._f_params, (self._state,), (t,))[1]

                out = torch.func.vmap(jv, chunk_size=self.chunk_size)(T)
        return out.reshape(k, -1).T

    def _adjoint(self, Y: Tensor) -> Tensor:
        k = Y.shape[1]
        self._counter[0] += k
        with rng_guard():
            if self._vjp_fn is None:
                if self.wrt == "inputs":
                    _, self._vjp_fn = torch.func.vjp(self._f_inputs, self._inputs)
                else:
                    _, self._vjp_fn = torch.func.vjp(self._f_params, self._state)
            U = Y.T.reshape(k, self.batch_size, *self.output_shape)
            (g,) = torch.func.vmap(self._vjp_fn, chunk_size=self.chunk_size)(U)
        if self.wrt == "inputs":
            return g.reshape(k, -1).T
        return self._fm.flatten_columns(g)  # type: ignore[union-attr]

    def example(self, i: int) -> JacobianOperator:
        """The Jacobian of example ``i`` alone (``O × D``), ``wrt="inputs"`` only."""
        if self.wrt != "inputs":
            raise ValueError("example(i) is defined for wrt='inputs' (the per-example block of a block-diagonal J)")
        if not 0 <= i < self.batch_size:
            raise IndexError(f"example index {i} out of range for a batch of {self.batch_size}")
        sub = JacobianOperator.__new__(JacobianOperator)
        sub.__dict__.update(self.__dict__)
        sub._inputs = self._inputs[i : i + 1]
        sub.batch_size = 1
        sub.outputs = self.outputs[i : i + 1]
        sub._vjp_fn = None
        O = int(math.prod(self.output_shape))
        LinearOperator.__init__(sub, (O, int(math.prod(self.input_shape))), dtype=self.dtype, device=self.device)
        return sub


def jacobian(
    model: nn.Module,
    inputs: Any,
    *,
    wrt: str = "inputs",
    params: ParamsSpec = None,
    dtype: torch.dtype | None = None,
    check_deterministic: bool = True,
    chunk_size: int | None = None,
) -> JacobianOperator:
    """The Jacobian of ``model(inputs)`` with respect to the inputs or the parameters, matrix-free.

    Args:
        model: the module (never modified).
        inputs: ``wrt="inputs"``: a floating tensor ``[B, *in]``. ``wrt="params"``: a tensor, a tuple of tensors
            (passed positionally) or a dict (keyword arguments), batch dimension first.
        wrt: ``"inputs"`` — shape ``(B·O, B·D)``, block-diagonal over examples for a model that treats examples
            independently; ``"params"`` — shape ``(B·O, P)``. Rows ``(example, output)`` and columns
            ``(example, input)`` are flattened row-major; parameter columns follow ``model.named_parameters()``.
        params: ``wrt="params"`` only: ``None`` (all trainable), names, glob patterns or parameters.
        dtype: evaluation dtype (``torch.float64`` for exact small-model work); default the parameters' dtype.
        check_deterministic: refuse active dropout / train-mode batch norm (the operator would be random).
        chunk_size: at most this many vectors per ``vmap`` call (bounds memory); ``None``: all at once.

    Returns:
        A :class:`JacobianOperator` with ``.T`` (the adjoint, by reverse mode).

    Raises:
        TypeError: ``model`` is not a module, ``inputs`` is not a floating tensor for ``wrt="inputs"``, or the
            model does not return one tensor.
        ValueError: unknown ``wrt``, ``params`` given with ``wrt="inputs"``, outputs without the batch dimension,
            or a nondeterministic model (:class:`~eigenlens.nn._model.NondeterministicModelError`).

    Example:
        >>> import torch, eigenlens as el
        >>> lin = torch.nn.Linear(3, 2, bias=False).double()
        >>> x = torch.randn(4, 3, dtype=torch.float64)
        >>> J = el.jacobian(lin, x)                    # block-diagonal: 4 copies of the weight
        >>> J.shape, bool(torch.allclose(J.to_dense()[:2, :3], lin.weight))
        ((8, 12), True)
    """
    return JacobianOperator(
        model, inputs, wrt=wrt, params=params, dtype=dtype, check_deterministic=check_deterministic,
        chunk_size=chunk_size,
    )


# ---------------------------------------------------------------------------- spectrum
@dataclass
class JacobianSpectrum(Result):
    """Singular-value spectrum of the input–output Jacobian of a batch.

    Attributes:
        singular_values: ``[E, k]`` top-``k`` singular values of each analysed example's ``J_i`` (descending).
        smallest_singular_values: ``[E]`` the smallest of the ``min(O, D)`` singular values of each ``J_i``.
        condition_numbers: ``[E]`` ``σ_max/σ_min`` of each ``J_i`` (over its ``min(O, D)`` singular values).
        pooled_singular_values: ``[k]`` top-``k`` singular values of the whole batch's (block-diagonal) ``J``.
        condition_number: ``max_i σ_max(J_i) / min_i σ_min(J_i)`` over the analysed examples.
        isometry_fraction: the fraction of analysed examples whose ``min(O, D)`` singular values all lie in
            ``[1 − isometry_tol, 1 + isometry_tol]`` (dynamical isometry, arXiv 1711.04735).
        isometry_tol: the tolerance used.
        density: the SLQ estimate (:class:`~eigenlens.linalg.slq.SpectralDensity`) of the eigenvalues of the
            smaller Gram matrix of the batch's ``J`` (``gram``): the squared singular values.
        gram: ``"JᵀJ"`` (when ``D <= O``) or ``"JJᵀ"``.
        num_examples: the number ``E`` of examples analysed one by one (the first ``E`` of the batch).
        num_matvecs: products (vectors) with ``J`` or ``Jᵀ`` spent in total, per-example blocks included.
        interrupted: ``True`` when a KeyboardInterrupt stopped the per-example loop (what was computed is kept).
    """

    singular_values: Tensor
    smallest_singular_values: Tensor
    condition_numbers: Tensor
    pooled_singular_values: Tensor
    condition_number: float
    isometry_fraction: float
    isometry_tol: float
    density: Any
    gram: str
    num_examples: int
    num_matvecs: int
    interrupted: bool = False


def _gram(J: LinearOperator) -> tuple[LinearOperator, str]:
    from eigenlens.linalg.operator import aslinearoperator

    m, n = J.shape
    if n <= m:
        return aslinearoperator(J.T @ J, psd=True), "JᵀJ"
    return aslinearoperator(J @ J.T, psd=True), "JJᵀ"


def _top_singular_values(J: LinearOperator, k: int, tol: float, generator: torch.Generator) -> Tensor:
    """Top-``k`` singular values (descending): ``svds`` for ``k < min(J.shape)``, else all from the Gram matrix."""
    from eigenlens.linalg.svds import svds

    r = min(J.shape)
    k = min(k, r)
    if k < r:
        return svds(J, k=k, tol=tol, generator=generator).s.to(torch.float64)
    G, _ = _gram(J)
    ev = torch.linalg.eigvalsh(G.to_dense().to(torch.float64))
    return ev.clamp_min(0).sqrt().flip(0)[:k]


def _extreme_singular_values(J: LinearOperator, tol: float, generator: torch.Generator) -> tuple[float, float]:
    """``(σ_max, σ_min)`` over the ``min(O, D)`` singular values of ``J`` (smaller Gram matrix)."""
    G, _ = _gram(J)
    r = G.shape[0]
    from eigenlens.linalg.eigsh import eigsh

    if r <= 2:
        ev = torch.linalg.eigvalsh(G.to_dense().to(torch.float64))
    else:
        ev = eigsh(G, k=2, which="BE", tol=tol, generator=generator).eigenvalues.to(torch.float64)
    ev = ev.clamp_min(0)
    return float(ev.max().sqrt()), float(ev.min().sqrt())


def jacobian_spectrum(
    model: nn.Module,
    inputs: Tensor,
    k: int = 6,
    *,
    isometry_tol: float = 0.1,
    max_examples: int | None = 32,
    num_probes: int = 8,
    num_matvecs: int = 64,
    tol: float = 1e-6,
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    dense_limit: int = 256,
) -> JacobianSpectrum:
    """Singular values of the input–output Jacobian: per example, pooled, density, conditioning, isometry.

    Per example ``i`` (the first ``max_examples``), the Jacobian ``J_i = ∂f(x_i)/∂x_i`` (``O × D``): top-``k``
    singular values (``svds``), the extreme singular values of its ``r = min(O, D)`` nonzero-able ones
    (``eigsh`` at both ends of the smaller Gram matrix), its condition number ``σ_max/σ_min``, and whether
    it is near-isometric: ``|σ_j − 1| <= isometry_tol`` for all ``j <= r`` (for ``O < D``: ``J_i J_iᵀ ≈ I``,
    a co-isometry). Pooled over the batch: the top-``k`` singular values of the block-diagonal ``J``, and the
    density of the squared singular values by stochastic Lanczos quadrature on the smaller Gram matrix.

    Args:
        model: the module (never modified; ``eval()`` it if it has dropout or batch norm).
        inputs: ``[B, *in]`` floating tensor.
        k: singular values per example and pooled.
        isometry_tol: the near-isometry tolerance (default 0.1: all singular values within 10% of 1).
        max_examples: examples analysed one by one (``None``: all ``B``).
        num_probes, num_matvecs: SLQ budget for the density (``num_probes · num_matvecs`` Gram products).
        tol: relative residual tolerance of the Krylov eigensolvers.
        dtype: evaluation dtype (e.g. ``torch.float64``).
        generator: randomness of the Krylov starts and the SLQ probes (``None``: seeded 0).
        progress: a tqdm bar over the examples; Ctrl-C keeps the examples done so far (``interrupted=True``).
        dense_limit: an example with ``min(O, D) <= dense_limit`` is materialised with ``min(O, D)`` products
            (the smaller side, ``O × D`` numbers, never ``D × D``) and its singular values computed exactly,
            which is cheaper and more robust than Krylov for clustered small singular values; larger ones
            use ``svds`` and ``eigsh`` (Krylov, matrix-free). Pass ``0`` to force Krylov.

    Returns:
        :class:`JacobianSpectrum`.

    Raises:
        ValueError: ``k < 1``, ``isometry_tol <= 0``, ``max_examples < 1``, or what :func:`jacobian` raises.

    Example:
        >>> import torch, eigenlens as el
        >>> net = torch.nn.Linear(4, 4, bias=False).double()
        >>> with torch.no_grad():
        ...     _ = net.weight.copy_(torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64)))
        >>> spec = el.jacobian_spectrum(net, torch.zeros(2, 4, dtype=torch.float64), k=2)
        >>> spec.singular_values[0].tolist(), round(spec.condition_number, 6), spec.isometry_fraction
        ([3.0, 2.0], 6.0, 0.0)
    """
    from tqdm.auto import tqdm

    from eigenlens.linalg.random import resolve_generator
    from eigenlens.linalg.slq import spectral_density

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive int (singular values per example), got {k!r}")
    if not (isinstance(isometry_tol, (int, float)) and isometry_tol > 0):
        raise ValueError(f"isometry_tol: expected a positive tolerance, e.g. 0.1, got {isometry_tol!r}")
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max_examples: expected None or a positive int, got {max_examples!r}")
    g = resolve_generator(generator)
    J = jacobian(model, inputs, wrt="inputs", dtype=dtype)
    E = J.batch_size if max_examples is None else min(max_examples, J.batch_size)
    sv_rows, smin, conds = [], [], []
    interrupted = False
    bar = tqdm(range(E), desc="jacobian_spectrum", disable=not progress, leave=False)
    try:
        for i in bar:
            Ji = J.example(i)
            if min(Ji.shape) <= dense_limit:  # exact and cheaper than Krylov: min(O, D) products
                M = Ji.T.to_dense() if Ji.shape[0] <= Ji.shape[1] else Ji.to_dense()
                s_all = torch.linalg.svdvals(M.to(torch.float64))
                top, smax, smn = s_all[:k], float(s_all[0]), float(s_all[-1])
            else:
                top = _top_singular_values(Ji, k, tol, g)
                smax, smn = _extreme_singular_values(Ji, tol, g)
            row = torch.full((k,), float("nan"), dtype=torch.float64)
            row[: top.numel()] = top
            sv_rows.append(row)
            smin.append(smn)
            conds.append(smax / smn if smn > 0 else float("inf"))
    except KeyboardInterrupt:
        interrupted = True
        warnings.warn(
            f"jacobian_spectrum interrupted after {len(sv_rows)} of {E} examples; returning those",
            ConvergenceWarning,
            stacklevel=2,
        )
    finally:
        bar.close()
    pooled = _top_singular_values(J, k, tol, g)
    G, gram = _gram(J)
    density = spectral_density(G, num_probes=num_probes, num_matvecs=min(num_matvecs, G.shape[0]), generator=g)
    used = J._counter[0]
    sv = torch.stack(sv_rows) if sv_rows else torch.zeros(0, k, dtype=torch.float64)
    smin_t = torch.tensor(smin, dtype=torch.float64)
    cond_t = torch.tensor(conds, dtype=torch.float64)
    if sv_rows:
        top_all = float(torch.nan_to_num(sv[:, 0], nan=0.0).max())
        low = float(smin_t.min())
        condition = top_all / low if low > 0 else float("inf")
        iso = ((sv[:, 0] <= 1 + isometry_tol) & (smin_t >= 1 - isometry_tol)).double().mean().item()
    else:
        condition, iso = float("nan"), float("nan")
    return JacobianSpectrum(
        singular_values=sv,
        smallest_singular_values=smin_t,
        condition_numbers=cond_t,
        pooled_singular_values=pooled,
        condition_number=condition,
        isometry_fraction=float(iso),
        isometry_tol=float(isometry_tol),
        density=density,
        gram=gram,
        num_examples=len(sv_rows),
        num_matvecs=int(used),
        interrupted=interrupted,
    )
