"""Model plumbing shared by every operator built from a PyTorch model (Hessian, GGN, Fisher, Jacobian).

This module has one job: turn ``(model, data, params)`` into pure tensor functions that ``torch.func``
can transform, without ever touching the user's model. It provides

* :func:`select_parameters` — pick the parameters an operator acts on (``None`` = all trainable,
  names, glob patterns or the parameter objects themselves), in ``model.named_parameters()`` order;
* :class:`FunctionalModel` — a snapshot of the selected parameters (and of everything else the forward
  needs: the other parameters and the buffers, held fixed) with a functional call through
  :func:`torch.func.functional_call`, flattening to one ``[P]`` vector (or a ``[P, k]`` block) and back,
  and an optional evaluation dtype (``dtype=torch.float64`` for exact small-model work);
* :class:`Batches` — iteration over data given as one ``(inputs, targets)`` batch or an iterable of
  batches, where ``inputs`` is a tensor, a tuple of tensors (passed positionally) or a dict of tensors
  (passed as keyword arguments, Hugging Face style); the batch size is read from the inputs' first
  dimension, and each pass is fingerprinted so that a shuffled loader or random augmentation is caught;
* :func:`preserve_model_state` — a context manager that restores parameter values, ``.grad``,
  ``requires_grad``, the train/eval mode of every module, the buffers and the global torch (and CUDA)
  RNG state on exit, also when an exception is raised;
* :func:`find_nondeterminism` and :func:`probe_determinism` — the determinism probe: active dropout or
  train-mode batch norm found statically, and "the same vector twice must give the same product"
  checked dynamically, both failing with :class:`NondeterministicModelError` naming cause and fix.

Conventions used by all model operators:

* The flat parameter vector has length ``P = sum(p.numel())`` over the selected parameters, laid out in
  ``model.named_parameters()`` order, each parameter flattened row-major (``p.reshape(-1)``).
* Data weighting: the operator is that of the *dataset-mean* loss
  ``L(θ) = Σ_b (n_b / N) · loss_fn(model(x_b), y_b)`` with ``n_b`` the size of batch ``b`` and
  ``N = Σ_b n_b`` (``loss_fn`` returns the mean loss of its batch), so an uneven last batch is weighted
  correctly and the result does not depend on how the data were split into batches.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from eigenlens.nn._model import FunctionalModel
    >>> net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    >>> fm = FunctionalModel(net, params="2.*")
    >>> fm.names, fm.num_params
    (['2.weight', '2.bias'], 3)
    >>> v = torch.arange(3.0)
    >>> fm.flatten(fm.unflatten(v)).tolist()
    [0.0, 1.0, 2.0]
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map

__all__ = [
    "NondeterministicModelError",
    "NonFiniteError",
    "select_parameters",
    "FunctionalModel",
    "Batch",
    "Batches",
    "batch_size",
    "call_model",
    "preserve_model_state",
    "rng_guard",
    "find_nondeterminism",
    "probe_determinism",
]


class NondeterministicModelError(ValueError):
    """The model or the data make a product non-reproducible (dropout, train-mode batch norm, shuffling)."""


class NonFiniteError(FloatingPointError, ValueError):
    """A loss or a product contained NaN or Inf; the message names the batch."""


# ---------------------------------------------------------------------------- parameter selection
ParamsSpec = None | str | nn.Parameter | Tensor | Iterable[Any]


def select_parameters(model: nn.Module, params: ParamsSpec = None) -> list[tuple[str, nn.Parameter]]:
    """Select the parameters an operator acts on, in ``model.named_parameters()`` order.

    Args:
        model: the module.
        params: ``None`` for all parameters with ``requires_grad=True``; a name or a glob pattern
            (:mod:`fnmatch` syntax, e.g. ``"encoder.layers.0.*"``, ``"*.bias"``); a parameter object;
            or a list mixing names, patterns and parameter objects. An explicitly selected parameter is
            included even if its ``requires_grad`` is ``False``.

    Returns:
        ``[(name, parameter), ...]`` without duplicates (tied parameters appear once, under their first
        name), in the order of ``model.named_parameters()``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or an entry of ``params`` has an unsupported type.
        ValueError: the selection is empty, or a name/pattern/parameter matches nothing; the message lists
            the available names.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    named = list(model.named_parameters())
    available = ", ".join(n for n, _ in named) or "(none)"
    if params is None:
        chosen = [(n, p) for n, p in named if p.requires_grad]
        if not chosen:
            raise ValueError(
                "params=None selects the trainable parameters, but the model has none with requires_grad=True; "
                f"pass params= explicitly (available: {available})"
            )
        return chosen
    if isinstance(params, (str, Tensor)):
        entries: list[Any] = [params]
    elif isinstance(params, Iterable):
        entries = list(params)
    else:
        raise TypeError(
            "params: expected None, a name or glob pattern, a parameter, or a list of them; "
            f"got {type(params).__name__}"
        )
    if not entries:
        raise ValueError(
            f"params: the selection is empty; pass None for all trainable parameters (available: {available})"
        )
    keep: set[int] = set()
    for entry in entries:
        if isinstance(entry, str):
            hits = [i for i, (n, _) in enumerate(named) if n == entry or fnmatch.fnmatchcase(n, entry)]
            if not hits:
                raise ValueError(f"params: {entry!r} matches no parameter name; available: {available}")
        elif isinstance(entry, Tensor):
            hits = [i for i, (_, p) in enumerate(named) if p is entry]
            if not hits:
                raise ValueError(
                    f"params: a tensor of shape {tuple(entry.shape)} is not a parameter of this model "
                    f"(parameters are matched by identity); available: {available}"
                )
        else:
            raise TypeError(
                f"params: entries must be names, glob patterns or parameters, got {type(entry).__name__}"
            )
        keep.update(hits)
    return [named[i] for i in sorted(keep)]


# ---------------------------------------------------------------------------- inputs and batches
def _first_tensor(obj: Any) -> Tensor | None:
    leaves, _ = tree_flatten(obj)
    for leaf in leaves:
        if isinstance(leaf, Tensor) and leaf.ndim > 0:
            return leaf
    return None


def batch_size(inputs: Any) -> int:
    """The batch size of ``inputs``: the first dimension of its first tensor (tensor, tuple or dict).

    Raises:
        TypeError: ``inputs`` holds no tensor with at least one dimension.
    """
    t = _first_tensor(inputs)
    if t is None:
        raise TypeError(
            "inputs: expected a tensor, a tuple of tensors or a dict of tensors with a batch dimension first, "
            f"got {type(inputs).__name__} without any such tensor"
        )
    return int(t.shape[0])


def call_model(model: nn.Module, state: dict[str, Tensor], inputs: Any) -> Any:
    """``model(inputs)`` with ``state`` (parameters and buffers by name) through ``functional_call``.

    A tuple/list of inputs is passed positionally, a dict as keyword arguments, anything else as one
    positional argument.
    """
    if isinstance(inputs, dict):
        return torch.func.functional_call(model, state, (), dict(inputs))
    if isinstance(inputs, (tuple, list)):
        return torch.func.functional_call(model, state, tuple(inputs))
    return torch.func.functional_call(model, state, (inputs,))


def _looks_like_inputs(obj: Any) -> bool:
    if isinstance(obj, Tensor):
        return True
    if isinstance(obj, dict):
        return any(isinstance(v, Tensor) for v in obj.values())
    if isinstance(obj, (tuple, list)):
        return len(obj) > 0 and all(isinstance(v, Tensor) for v in obj)
    return False


@dataclass
class Batch:
    """One batch: its index in the pass, inputs, targets and size ``n`` (from the inputs)."""

    index: int
    inputs: Any
    targets: Any
    n: int


class Batches:
    """Re-iterable view of the data of a model operator.

    ``data`` is either one ``(inputs, targets)`` pair (a 2-tuple or 2-list whose second item is a tensor)
    or an iterable of such pairs that can be iterated more than once (a list, a ``DataLoader``).
    Each pass casts floating tensors to ``dtype`` (when given) and moves everything to ``device``.
    Every pass records a fingerprint (batch sizes and float64 sums of inputs and targets); the first
    pass's is kept and later passes are compared against it (:meth:`changed_batches`).

    Raises:
        TypeError: ``data`` is a one-shot iterator, or a batch is not an ``(inputs, targets)`` pair.
        ValueError: ``data`` holds no batch, or a batch is empty.
    """

    def __init__(self, data: Any, *, dtype: torch.dtype | None = None, device: torch.device | None = None) -> None:
        if data is None:
            raise TypeError("data: expected an (inputs, targets) batch or an iterable of batches, got None")
        self.single = isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], Tensor) and (
            _looks_like_inputs(data[0])
        )
        if not self.single:
            if isinstance(data, Tensor) or not isinstance(data, Iterable):
                raise TypeError(
                    "data: expected an (inputs, targets) pair or an iterable of such pairs (a list or a DataLoader), "
                    f"got {type(data).__name__}; pass (inputs, targets)"
                )
            if iter(data) is data:
                raise TypeError(
                    "data: got a one-shot iterator (e.g. a generator); operators iterate over the data once per "
                    "product, so pass a list of batches or a DataLoader instead"
                )
        self.data = data
        self.dtype = dtype
        self.device = device
        self.reference: list[tuple[int, float, float]] | None = None
        self.last: list[tuple[int, float, float]] = []
        self.num_batches: int | None = None
        self.num_examples: int | None = None

    def _cast(self, obj: Any) -> Any:
        def one(t: Any) -> Any:
            if not isinstance(t, Tensor):
                return t
            if self.dtype is not None and t.is_floating_point():
                t = t.to(self.dtype)
            if self.device is not None:
                t = t.to(self.device)
            return t

        return tree_map(one, obj)

    def _raw(self) -> Iterator[Any]:
        if self.single:
            yield self.data
        else:
            yield from self.data

    @staticmethod
    def _fingerprint(n: int, inputs: Any, targets: Any) -> tuple[int, float, float]:
        def total(obj: Any) -> float:
            s = 0.0
            for leaf in tree_flatten(obj)[0]:
                if isinstance(leaf, Tensor) and not leaf.dtype.is_complex:
                    s += float(leaf.detach().to(torch.float64).sum())
            return s

        return n, total(inputs), total(targets)

    def __iter__(self) -> Iterator[Batch]:
        self.last = []
        count = 0
        for i, item in enumerate(self._raw()):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError(
                    f"data: batch {i} should be an (inputs, targets) pair, got {type(item).__name__}"
                    + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
                    + "; wrap a dataset yielding dicts as ((inputs_dict), targets)"
                )
            inputs, targets = item
            n = batch_size(inputs)
            if n == 0:
                raise ValueError(f"data: batch {i} is empty (batch size 0); remove empty batches")
            self.last.append(self._fingerprint(n, inputs, targets))
            count += n
            yield Batch(i, self._cast(inputs), self._cast(targets), n)
        if not self.last:
            raise ValueError("data: no batch found; pass at least one (inputs, targets) batch")
        if self.reference is None:
            self.reference = list(self.last)
            self.num_batches = len(self.last)
            self.num_examples = count

    def changed_batches(self) -> list[int]:
        """Indices of batches of the last pass that differ from the first pass (all if the count differs)."""
        if self.reference is None:
            return []
        if len(self.last) != len(self.reference):
            return list(range(max(len(self.last), len(self.reference))))
        out = []
        for i, (a, b) in enumerate(zip(self.last, self.reference)):
            if a[0] != b[0] or any(
                not math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(a[1:], b[1:])
            ):
                out.append(i)
        return out


# ---------------------------------------------------------------------------- the functional model
class FunctionalModel:
    """A snapshot of ``model`` for ``torch.func``: selected parameters as free variables, the rest fixed.

    Args:
        model: the module (never modified).
        params: the parameter selection (see :func:`select_parameters`).
        dtype: evaluation dtype. ``None`` keeps the parameters' dtype (all selected parameters must share
            it); ``torch.float64`` evaluates a float64 copy (floating buffers, inputs and targets are cast
            too).

    Attributes:
        names, shapes, numels: of the selected parameters, in ``model.named_parameters()`` order.
        num_params: ``P``.
        dtype, device: of the flat vectors.
        params: ``{name: tensor}`` detached copies of the selected parameters (the linearisation point).
        fixed: ``{name: tensor}`` detached copies of every other parameter and every buffer.

    Raises:
        TypeError: the selected parameters are not floating point or have mixed dtypes/devices without
            ``dtype=`` to unify them.
    """

    def __init__(self, model: nn.Module, params: ParamsSpec = None, *, dtype: torch.dtype | None = None) -> None:
        selected = select_parameters(model, params)
        self.model = model
        self.names = [n for n, _ in selected]
        self.shapes = [tuple(p.shape) for _, p in selected]
        self.numels = [p.numel() for _, p in selected]
        self.num_params = int(sum(self.numels))
        dtypes = {p.dtype for _, p in selected}
        devices = {p.device for _, p in selected}
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype: expected a floating torch.dtype (e.g. torch.float64), got {dtype!r}")
        if dtype is None:
            if len(dtypes) > 1:
                raise TypeError(
                    f"the selected parameters have mixed dtypes {sorted(map(str, dtypes))}; pass dtype=torch.float64 "
                    "(or torch.float32) to evaluate in one dtype"
                )
            dtype = dtypes.pop()
            if not dtype.is_floating_point:
                raise TypeError(f"the selected parameters have dtype {dtype}; curvature needs floating parameters")
        if len(devices) > 1:
            raise ValueError(f"the selected parameters live on several devices {sorted(map(str, devices))}")
        self.dtype: torch.dtype = dtype
        self.device: torch.device = devices.pop()
        chosen = set(self.names)

        def snap(t: Tensor) -> Tensor:
            t = t.detach()
            return t.to(self.dtype).clone() if t.is_floating_point() else t.clone()

        self.params: dict[str, Tensor] = {n: snap(p) for n, p in selected}
        self.fixed: dict[str, Tensor] = {}
        for n, p in model.named_parameters(remove_duplicate=False):
            if n not in chosen:
                self.fixed[n] = snap(p)
        for n, b in model.named_buffers(remove_duplicate=False):
            self.fixed[n] = snap(b)
        # tied parameters: every alias of a selected parameter takes the free variable
        self._aliases: dict[str, str] = {}
        ids = {id(p): n for n, p in selected}
        for n, p in model.named_parameters(remove_duplicate=False):
            if id(p) in ids and n != ids[id(p)]:
                self._aliases[n] = ids[id(p)]
                self.fixed.pop(n, None)

    def __call__(self, params: dict[str, Tensor], inputs: Any) -> Any:
        """``model(inputs)`` with the selected parameters replaced by ``params`` (a dict by name)."""
        state = dict(self.fixed)
        state.update(params)
        for alias, name in self._aliases.items():
            state[alias] = params[name]
        return call_model(self.model, state, inputs)

    # -- flat vectors -------------------------------------------------------------------------
    def flatten(self, tensors: dict[str, Tensor] | Sequence[Tensor]) -> Tensor:
        """``{name: [*shape]}`` (or a list in order) -> ``[P]``."""
        items = [tensors[n] for n in self.names] if isinstance(tensors, dict) else list(tensors)
        return torch.cat([t.reshape(-1) for t in items]) if items else torch.zeros(0, dtype=self.dtype)

    def unflatten(self, vec: Tensor) -> dict[str, Tensor]:
        """``[P]`` -> ``{name: [*shape]}`` (views into ``vec``)."""
        if vec.shape != (self.num_params,):
            raise ValueError(f"expected a flat vector of shape ({self.num_params},), got {tuple(vec.shape)}")
        parts = torch.split(vec, self.numels)
        return {n: part.reshape(s) for n, part, s in zip(self.names, parts, self.shapes)}

    def flatten_columns(self, tensors: dict[str, Tensor]) -> Tensor:
        """``{name: [k, *shape]}`` -> ``[P, k]`` (the batched layout of ``torch.func.vmap``)."""
        k = tensors[self.names[0]].shape[0]
        return torch.cat([tensors[n].reshape(k, -1) for n in self.names], dim=1).T

    def unflatten_columns(self, block: Tensor) -> dict[str, Tensor]:
        """``[P, k]`` -> ``{name: [k, *shape]}`` (contiguous rows, ready for ``vmap`` over dim 0)."""
        if block.ndim != 2 or block.shape[0] != self.num_params:
            raise ValueError(f"expected a block of shape ({self.num_params}, k), got {tuple(block.shape)}")
        rows = block.T.contiguous()
        parts = torch.split(rows, self.numels, dim=1)
        return {n: part.reshape(block.shape[1], *s) for n, part, s in zip(self.names, parts, self.shapes)}

    def flat_params(self) -> Tensor:
        """The linearisation point as a flat ``[P]`` vector."""
        return self.flatten(self.params)


# ---------------------------------------------------------------------------- never harm the model
def _rng_states() -> tuple[Tensor, list[Tensor] | None]:
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return torch.get_rng_state(), cuda


def _set_rng_states(states: tuple[Tensor, list[Tensor] | None]) -> None:
    torch.set_rng_state(states[0])
    if states[1] is not None:
        torch.cuda.set_rng_state_all(states[1])


@contextlib.contextmanager
def rng_guard() -> Iterator[None]:
    """Restore the global torch (and CUDA, if initialised) RNG state on exit, also on exception."""
    states = _rng_states()
    try:
        yield
    finally:
        _set_rng_states(states)


@contextlib.contextmanager
def preserve_model_state(model: nn.Module) -> Iterator[None]:
    """Restore everything about ``model`` a computation could change, on exit and on exception.

    Restored: parameter values, ``.grad`` (values; ``None`` stays ``None``), ``requires_grad``, the
    ``training`` flag of every submodule, buffer values, and the global torch (and CUDA) RNG state.
    Costs one copy of the parameters, gradients and buffers.

    Example:
        >>> import torch
        >>> from eigenlens.nn._model import preserve_model_state
        >>> net = torch.nn.Linear(2, 1)
        >>> before = net.weight.detach().clone()
        >>> with preserve_model_state(net):
        ...     _ = net.train(False)
        ...     with torch.no_grad():
        ...         _ = net.weight.add_(1.0)
        >>> net.training, bool(torch.equal(net.weight, before))
        (True, True)
    """
    params = list(model.named_parameters())
    values = [p.detach().clone() for _, p in params]
    grads = [None if p.grad is None else p.grad.detach().clone() for _, p in params]
    requires = [p.requires_grad for _, p in params]
    buffers = [(b, b.detach().clone()) for _, b in model.named_buffers()]
    modes = [(m, m.training) for m in model.modules()]
    rng = _rng_states()
    try:
        yield
    finally:
        with torch.no_grad():
            for (_, p), v, g, r in zip(params, values, grads, requires):
                p.copy_(v)
                if g is None:
                    p.grad = None
                elif p.grad is not None and p.grad.shape == g.shape:
                    p.grad.copy_(g)
                else:
                    p.grad = g
                p.requires_grad_(r)
            for b, v in buffers:
                if b.shape == v.shape:
                    b.copy_(v)
        for m, flag in modes:
            m.training = flag
        _set_rng_states(rng)


# ---------------------------------------------------------------------------- the determinism probe
_FIX = "call model.eval() before building the operator, or pass check_deterministic=False to accept a random operator"


def find_nondeterminism(model: nn.Module) -> list[str]:
    """Static part of the determinism probe: modules whose forward is random or batch-dependent.

    Returns:
        One line per offending module: active dropout (training mode, ``p > 0``) and batch norm using
        batch statistics (training mode, or ``track_running_stats=False``). Empty when none is found.
    """
    causes = []
    for name, m in model.named_modules():
        label = name or "(the model)"
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            causes.append(f"dropout {label!s} ({type(m).__name__}, p={m.p}) is in training mode")
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats):
            why = "in training mode" if m.training else "without running statistics"
            causes.append(f"batch norm {label!s} ({type(m).__name__}) is {why}: it normalises with batch statistics")
        elif isinstance(m, nn.MultiheadAttention) and m.training and m.dropout > 0:
            causes.append(f"attention {label!s} has dropout={m.dropout} in training mode")
    return causes


def check_model_deterministic(model: nn.Module) -> None:
    """Raise :class:`NondeterministicModelError` when :func:`find_nondeterminism` finds a cause."""
    causes = find_nondeterminism(model)
    if causes:
        raise NondeterministicModelError(
            "determinism probe: the model's products would not be reproducible because "
            + "; ".join(causes)
            + f". Fix: {_FIX}."
        )


def probe_determinism(
    matmat: Callable[[Tensor], Tensor],
    vector: Tensor,
    *,
    first: Tensor | None = None,
    rtol: float | None = None,
    data: Batches | None = None,
    model: nn.Module | None = None,
) -> None:
    """Dynamic part of the determinism probe: the same vector twice must give the same product.

    Args:
        matmat: ``X [n, k] -> [m, k]`` (the raw, unvalidated product).
        vector: ``[n]`` probe vector.
        first: the product of ``vector`` already computed (saves one product), or ``None``.
        rtol: relative tolerance (default ``1e3 · eps`` of the dtype: about 1e-4 in float32, 2e-13 in float64).
        data: the operator's :class:`Batches`, to report a shuffled loader / random augmentation.
        model: to name likely causes in the message.

    Raises:
        NondeterministicModelError: the two products differ beyond ``rtol`` (relative, in the 2-norm);
            the message names likely causes (dropout, train-mode batch norm, shuffled data) and the fix.
    """
    x = vector.reshape(-1, 1)
    y1 = first.reshape(-1, 1) if first is not None else matmat(x)
    y2 = matmat(x)
    if rtol is None:
        rtol = 1e3 * torch.finfo(vector.dtype).eps
    diff = float(torch.linalg.vector_norm(y1 - y2))
    scale = float(torch.linalg.vector_norm(y1))
    if diff <= rtol * max(scale, torch.finfo(vector.dtype).tiny):
        return
    causes = find_nondeterminism(model) if model is not None else []
    if data is not None and data.changed_batches():
        causes.append(
            f"the data changed between passes (batches {data.changed_batches()[:5]} differ): a shuffled DataLoader "
            "or random augmentation; use shuffle=False and deterministic transforms"
        )
    if not causes:
        causes.append(
            "no known cause found: look for random layers, stateful modules, nondeterministic GPU kernels "
            "(torch.use_deterministic_algorithms(True)) or data that changes between passes"
        )
    raise NondeterministicModelError(
        f"determinism probe: the same vector gave two different products (relative difference "
        f"{diff / max(scale, 1e-300):.2e} > {rtol:.1e}). Likely cause: " + "; ".join(causes) + f". Fix: {_FIX}."
    )
