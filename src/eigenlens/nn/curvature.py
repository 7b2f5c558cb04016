"""Curvature operators of PyTorch models: Hessian, generalized Gauss-Newton and Fisher, matrix-free.

All three are ``P × P`` :class:`~eigenlens.linalg.operator.LinearOperator` s over the flattened selected
parameters (``[P]`` in ``model.named_parameters()`` order, see :mod:`eigenlens.nn._model`), tagged
``symmetric`` (GGN and Fisher also ``psd``), for the *dataset-mean* loss

    ``L(θ) = Σ_b (n_b / N) · ℓ_b(θ)``,   ``ℓ_b(θ) = loss_fn(model(x_b; θ), y_b)`` (the mean loss of batch b),

with ``n_b`` the size of batch ``b`` and ``N = Σ_b n_b`` (uneven last batch included). Each product
``A @ V`` for ``V`` of shape ``[P, k]`` makes ONE pass over the data with ``k`` vectors at once
(``torch.func.vmap``), never ``k`` passes:

* **Hessian** ``H = ∇²L``: forward-over-reverse, ``H v = ∂/∂ε ∇L(θ + εv)`` computed as
  ``torch.func.jvp`` of ``torch.func.grad`` (Pearlmutter 1994), on a functional copy of the model.
* **GGN** ``G = Σ_b (n_b/N) J_bᵀ H_b J_b`` with ``J_b = ∂ model(x_b) / ∂θ`` and ``H_b = ∇²_f ℓ_b`` the
  Hessian of the loss in the model outputs (Schraudolph 2002; Martens 2020, arXiv 1412.1193).
  ``J v`` by forward mode, ``Jᵀ u`` by reverse mode, and ``H_b`` in closed form — no double backward
  through log-softmax:

  - cross-entropy (``nn.CrossEntropyLoss`` / ``F.cross_entropy``, mean reduction, no class weights,
    outputs ``[n, C]``): with ``p = softmax(f)`` per example, ``∇²_f ℓ_b = (1/n_b) (diag(p) − p pᵀ)``
    (also with label smoothing or soft targets, whose Hessian is the same);
  - mean squared error (``nn.MSELoss`` / ``F.mse_loss``, mean reduction): ``ℓ_b = ‖f − y‖² / (n_b·O)``
    averaged over all ``n_b·O`` output entries of the batch (``O`` entries per example), so
    ``∇²_f ℓ_b = 2 / (n_b·O) · I``;
  - any other loss: ``∇²_f ℓ_b u`` by forward-over-reverse on the loss alone (cheap: outputs-sized).

* **Fisher**: ``kind="empirical"``: ``F = (1/N) Σ_i g_i g_iᵀ`` with ``g_i = ∇_θ loss_fn(model(x_i), y_i)``
  the per-example gradient (``torch.func.vmap`` of ``torch.func.grad``), the loss of example ``i``
  evaluated as a batch of one. ``kind="mc"``: the same with targets ``ŷ_i`` sampled from the model's
  predictive distribution (Martens 2020, §5; Kunstner et al. arXiv 1905.12558): ``ŷ ~ Categorical(softmax(f))``
  for cross-entropy, ``ŷ ~ N(f, (O/2)·I)`` for MSE (the variance for which ``-log p`` equals the per-example
  loss up to constants), ``mc_samples`` draws per example, sampled once with ``generator`` when the operator
  is built, so the operator is fixed; its expectation over the draws is the GGN.

Determinism probe (``check_deterministic=True``, the default): building the operator fails on active
dropout or train-mode batch norm, and the first product is recomputed for its first column, which must
agree (relative ``1e3·eps``); a shuffled loader or random augmentation is named in the error.

Data parallel: with ``process_group=`` (``torch.distributed``) each rank passes its own shard of the data;
every product is all-reduced and divided by the global ``N``, so every rank holds the same operator and any
algorithm run with the same seed gives the same result on every rank.

The user's model is never changed: the operators work on a snapshot of the parameters (taken when they are
built), products run under a guard that restores the global RNG state, and nothing touches ``.grad``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import eigenlens as el
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Linear(3, 1).double()
    >>> X, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    >>> H = el.hessian(net, nn.MSELoss(), (X, y))   # MSE of a linear model: H = (2/N) [X 1]ᵀ[X 1]
    >>> A = torch.cat([X, torch.ones(8, 1, dtype=torch.float64)], 1)
    >>> bool(torch.allclose(H.to_dense(), 2 / 8 * A.T @ A))
    True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from eigenlens.linalg.operator import LinearOperator
from eigenlens.linalg.random import resolve_generator
from eigenlens.nn._model import (
    Batch,
    Batches,
    FunctionalModel,
    NondeterministicModelError,
    NonFiniteError,
    ParamsSpec,
    check_model_deterministic,
    probe_determinism,
    rng_guard,
)

__all__ = ["ModelCurvature", "Hessian", "GGN", "Fisher", "hessian", "ggn", "fisher", "loss_kind"]

LossFn = Callable[[Any, Any], Tensor]


def loss_kind(loss_fn: Any) -> str | None:
    """``"cross_entropy"``, ``"mse"`` or ``None`` (unknown loss: handled generically).

    Recognised: ``nn.CrossEntropyLoss`` without class weights, ``F.cross_entropy``, ``nn.MSELoss``,
    ``F.mse_loss``.
    """
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        return "cross_entropy" if loss_fn.weight is None else None
    if loss_fn is F.cross_entropy:
        return "cross_entropy"
    if isinstance(loss_fn, nn.MSELoss) or loss_fn is F.mse_loss:
        return "mse"
    return None


def _mse_mean(outputs: Tensor, targets: Tensor) -> Tensor:
    """``F.mse_loss(outputs, targets)`` (mean reduction) written with elementary ops.

    ``F.mse_loss`` fails under forward-over-reverse in torch 2.x ("ZeroTensors are immutable"); this is the
    same function, differentiable in every mode.
    """
    return (outputs - targets).square().mean()


def _check_loss(loss_fn: Any) -> None:
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn: expected a callable loss_fn(outputs, targets) -> mean loss of the batch, "
            f"got {type(loss_fn).__name__}"
        )
    reduction = getattr(loss_fn, "reduction", "mean")
    if reduction != "mean":
        raise ValueError(
            f"loss_fn: expected reduction='mean' (the operator is that of the dataset-mean loss), got "
            f"reduction={reduction!r}; construct the loss with reduction='mean'"
        )


def _unsqueeze0(tree: Any) -> Any:
    return tree_map(lambda t: t.unsqueeze(0) if isinstance(t, Tensor) else t, tree)


def _in_dims(tree: Any) -> Any:
    return tree_map(lambda t: 0 if isinstance(t, Tensor) and t.ndim > 0 else None, tree)


def _math_attention() -> Any:
    """Route ``scaled_dot_product_attention`` to its math kernel (the fused kernels lack forward-mode AD)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - old torch
        import contextlib

        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


class ModelCurvature(LinearOperator):
    """Base class of the model curvature operators (``P × P``, symmetric).

    Subclasses implement :meth:`_batch_product`, the contribution ``n_b · A_b V`` of one batch (``A_b`` the
    batch's operator, so that ``A = Σ_b n_b A_b / N``), for tangents given as ``{name: [k, *shape]}``.

    Attributes:
        model: the user's module (read, never modified).
        loss_fn: the loss.
        functional: the :class:`~eigenlens.nn._model.FunctionalModel` snapshot (``.names``, ``.params`` ...).
        batches: the :class:`~eigenlens.nn._model.Batches` view of the data.
        num_examples: ``N`` (over all ranks when distributed).
        num_local_examples: the examples on this rank.
        process_group: the ``torch.distributed`` group, or ``None``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Any,
        *,
        params: ParamsSpec = None,
        dtype: torch.dtype | None = None,
        check_deterministic: bool = True,
        process_group: Any = None,
        psd: bool = False,
    ) -> None:
        _check_loss(loss_fn)
        fm = FunctionalModel(model, params, dtype=dtype)
        super().__init__((fm.num_params, fm.num_params), dtype=fm.dtype, device=fm.device, symmetric=True, psd=psd)
        self.model = model
        self.loss_fn = loss_fn
        self._loss = _mse_mean if loss_kind(loss_fn) == "mse" else loss_fn
        self.functional = fm
        self.batches = Batches(data, dtype=dtype, device=fm.device)
        self.check_deterministic = bool(check_deterministic)
        self.process_group = process_group
        if self.check_deterministic:
            check_model_deterministic(model)
        self._probed = not self.check_deterministic
        self._prepare()
        self.num_local_examples = int(self.batches.num_examples or 0)
        total = torch.tensor([float(self.num_local_examples)], dtype=torch.float64, device=fm.device)
        self._all_reduce(total)
        self.num_examples = int(round(float(total.item())))

    # -- hooks -------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """One pass over the data at construction (counts examples; subclasses may do more)."""
        with rng_guard():
            for _ in self.batches:
                pass

    def _batch_product(self, batch: Batch, tangents: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    # -- helpers for subclasses --------------------------------------------------------------
    def _batch_loss(self, params: dict[str, Tensor], batch: Batch) -> Tensor:
        out = self.functional(params, batch.inputs)
        return self._loss(out, batch.targets)

    def _vmap(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        randomness = "error" if self.check_deterministic else "same"
        return torch.func.vmap(fn, randomness=randomness, **kwargs)

    def _all_reduce(self, t: Tensor) -> None:
        if self.process_group is not None:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.process_group)

    # -- the product -------------------------------------------------------------------------
    def _raw_matmat(self, X: Tensor) -> Tensor:
        tangents = self.functional.unflatten_columns(X)
        acc = torch.zeros(X.shape[0], X.shape[1], dtype=self.dtype, device=self.device)
        bad: str | None = None
        with rng_guard(), _math_attention():
            for batch in self.batches:
                try:
                    contrib = self.functional.flatten_columns(self._batch_product(batch, tangents))
                except RuntimeError as err:
                    if "randomness" in str(err) and "vmap" in str(err):
                        raise NondeterministicModelError(
                            f"determinism probe: the model draws random numbers in its forward pass (batch "
                            f"{batch.index}): {err}. Fix: call model.eval() (dropout off) or pass "
                            "check_deterministic=False"
                        ) from err
                    raise
                if bad is None and not bool(torch.isfinite(contrib).all()):
                    bad = self._describe_nonfinite(batch)
                    if self.process_group is None:
                        raise NonFiniteError(bad)
                acc += contrib.to(self.dtype)
        self._all_reduce(acc)
        if not bool(torch.isfinite(acc).all()):
            raise NonFiniteError(bad or "the product is NaN/Inf: a batch on another rank produced NaN or Inf")
        return acc / self.num_examples

    def _probe_matmat(self, X: Tensor) -> Tensor:
        """The product the determinism probe recomputes (an independent path where one exists)."""
        return self._raw_matmat(X)

    def _describe_nonfinite(self, batch: Batch) -> str:
        with torch.no_grad():
            try:
                loss = float(self._batch_loss(self.functional.params, batch))
            except Exception as err:  # noqa: BLE001 - diagnosis only
                loss = float("nan")
                del err
        where = f"batch {batch.index} (size {batch.n})"
        if not math.isfinite(loss):
            return (
                f"{type(self).__name__}: the loss of {where} is {loss}; check that batch for NaN/Inf inputs or "
                "targets and the model for diverged parameters"
            )
        return (
            f"{type(self).__name__}: the product over {where} contains NaN or Inf although its loss is {loss:.4g} "
            "(an overflow: try dtype=torch.float64, or check the input vectors)"
        )

    def _matmat(self, X: Tensor) -> Tensor:
        Y = self._raw_matmat(X)
        if not self._probed:
            self._probed = True
            probe_determinism(self._probe_matmat, X[:, 0], first=Y[:, 0], data=self.batches, model=self.model)
        if self.check_deterministic and self.batches.changed_batches():
            changed = self.batches.changed_batches()
            raise NondeterministicModelError(
                f"determinism probe: the data changed between passes (batches {changed[:5]} differ from the first "
                "pass): a shuffled DataLoader or random augmentation. Fix: use shuffle=False and deterministic "
                "transforms, or pass check_deterministic=False"
            )
        return Y

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} P={self.shape[0]:,} params={len(self.functional.names)} tensors "
            f"N={self.num_examples} dtype={self.dtype} device={self.device}>"
        )


class Hessian(ModelCurvature):
    """The Hessian of the dataset-mean loss (see :func:`hessian`).

    Attributes:
        mode: ``"forward-over-reverse"`` (default) or ``"reverse-over-reverse"``, used automatically and for
            good when a layer of the model has no forward-mode derivative.
    """

    mode = "forward-over-reverse"
    #: cache the gradient graph when the data is one batch (products then cost one double-backward pass)
    cache_graph = True

    def _raw_matmat(self, X: Tensor) -> Tensor:
        # One batch: keep the graph of ∇L (built once, as PyHessian does) and get H v by one backward through
        # it per column, H v = ∂(∇L · v)/∂θ (reverse-over-reverse). The determinism probe recomputes its vector
        # by the vmapped forward-over-reverse path, so the two paths are checked against each other.
        if self.cache_graph and self.batches.single and self.process_group is None:
            try:
                return self._cached_product(X)
            except (RuntimeError, NotImplementedError):
                self.cache_graph = False
                self._graph = None
        return super()._raw_matmat(X)

    def _probe_matmat(self, X: Tensor) -> Tensor:
        return super()._raw_matmat(X)

    _graph: tuple[list[Tensor], Tensor, int] | None = None

    def _cached_product(self, X: Tensor) -> Tensor:
        if self._graph is None:
            batch = next(iter(self.batches))
            with rng_guard(), _math_attention(), torch.enable_grad():
                leaves = {n: t.detach().clone().requires_grad_(True) for n, t in self.functional.params.items()}
                loss = self._batch_loss(leaves, batch)
                if not bool(torch.isfinite(loss)):
                    raise NonFiniteError(self._describe_nonfinite(batch))
                grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
            self._graph = (list(leaves.values()), torch.cat([g.reshape(-1) for g in grads]), batch.n)
        leaves, g, n = self._graph
        cols = []
        with torch.enable_grad():
            # one double-backward per column: on CPU this beats is_grads_batched (vmap over the graph)
            for j in range(X.shape[1]):
                out = torch.autograd.grad(g, leaves, grad_outputs=X[:, j], retain_graph=True, allow_unused=True)
                parts = [(torch.zeros_like(p) if o is None else o).reshape(-1) for o, p in zip(out, leaves)]
                cols.append(torch.cat(parts))
        Y = torch.stack(cols, dim=1)
        Y = Y.detach().to(self.dtype)
        if not bool(torch.isfinite(Y).all()):
            raise NonFiniteError(f"{type(self).__name__}: the product over batch 0 (size {n}) contains NaN or Inf")
        return Y

    def _batch_product(self, batch: Batch, tangents: dict[str, Tensor]) -> dict[str, Tensor]:
        params = self.functional.params

        def loss(p: dict[str, Tensor]) -> Tensor:
            return self._batch_loss(p, batch)

        grad = torch.func.grad(loss)
        if self.mode == "forward-over-reverse":
            try:
                out = self._vmap(lambda t: torch.func.jvp(grad, (params,), (t,))[1])(tangents)
                return {n: batch.n * v for n, v in out.items()}
            except (RuntimeError, NotImplementedError) as err:
                if "randomness" in str(err):
                    raise
                self.mode = "reverse-over-reverse"
        _, vjp_fn = torch.func.vjp(grad, params)
        out = self._vmap(vjp_fn)(tangents)[0]
        return {n: batch.n * v for n, v in out.items()}


class GGN(ModelCurvature):
    """The generalized Gauss-Newton matrix ``Σ_b (n_b/N) J_bᵀ ∇²_f ℓ_b J_b`` (see :func:`ggn`).

    Attributes:
        kind: the recognised loss (``"cross_entropy"``, ``"mse"``) or ``None`` (generic output Hessian).
        mode: ``"forward"`` (``J v`` by forward mode) or ``"reverse"`` (by two reverse passes), switched to
            automatically and for good when a layer has no forward-mode derivative.
    """

    mode = "forward"

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Any, **kwargs: Any) -> None:
        self.kind = loss_kind(loss_fn)
        super().__init__(model, loss_fn, data, psd=True, **kwargs)

    def _loss_hessian(self, outputs: Tensor, targets: Any, U: Tensor, n: int) -> Tensor:
        """``n · ∇²_f ℓ_b @ u`` for each of the ``k`` rows ``u`` of ``U [k, *outputs.shape]``."""
        kind = self.kind
        if kind == "cross_entropy" and outputs.ndim == 2:
            p = torch.softmax(outputs, dim=-1)
            return p * U - p * (U * p).sum(-1, keepdim=True)
        if kind == "mse":
            return (2.0 * n / outputs.numel()) * U

        def loss_of(f: Tensor) -> Tensor:
            return self.loss_fn(f, targets)

        g = torch.func.grad(loss_of)
        return n * self._vmap(lambda u: torch.func.jvp(g, (outputs,), (u,))[1])(U)

    def _batch_product(self, batch: Batch, tangents: dict[str, Tensor]) -> dict[str, Tensor]:
        params = self.functional.params

        def f(p: dict[str, Tensor]) -> Tensor:
            out = self.functional(p, batch.inputs)
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"ggn: the model must return one tensor of outputs, got {type(out).__name__}; wrap the model "
                    "so that it returns the logits/predictions the loss takes"
                )
            return out

        outputs, vjp_fn = torch.func.vjp(f, params)
        JV = None
        if self.mode == "forward":
            try:
                JV = self._vmap(lambda t: torch.func.jvp(f, (params,), (t,))[1])(tangents)
            except (RuntimeError, NotImplementedError) as err:
                if "randomness" in str(err):
                    raise
                self.mode = "reverse"
        if JV is None:
            # J v by two reverse passes: u -> Jᵀu is linear, and the vjp of that map applied to v is J v
            u0 = torch.zeros_like(outputs)
            _, vjp_of_vjp = torch.func.vjp(lambda u: vjp_fn(u)[0], u0)
            JV = self._vmap(lambda t: vjp_of_vjp(t)[0])(tangents)
        HJV = self._loss_hessian(outputs.detach(), batch.targets, JV, batch.n)
        return self._vmap(vjp_fn)(HJV)[0]


class Fisher(ModelCurvature):
    """The empirical or Monte-Carlo Fisher ``(1/N) Σ_i g_i g_iᵀ`` (see :func:`fisher`)."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Any,
        *,
        kind: str = "empirical",
        mc_samples: int = 1,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> None:
        if kind not in ("empirical", "mc"):
            raise ValueError(f"fisher: kind must be 'empirical' or 'mc', got {kind!r}")
        if not isinstance(mc_samples, int) or mc_samples < 1:
            raise ValueError(f"fisher: mc_samples must be a positive int, got {mc_samples!r}")
        if kind == "mc" and loss_kind(loss_fn) is None:
            raise ValueError(
                "fisher(kind='mc') needs a likelihood: it supports nn.CrossEntropyLoss / F.cross_entropy and "
                f"nn.MSELoss / F.mse_loss, got {type(loss_fn).__name__}; use kind='empirical' for other losses"
            )
        self.kind = kind
        self.mc_samples = mc_samples if kind == "mc" else 1
        self.generator = resolve_generator(generator)
        #: for kind="mc": the sampled targets of each batch, ``[mc_samples, n_b, ...]``
        self.sampled_targets: list[Tensor] = []
        super().__init__(model, loss_fn, data, psd=True, **kwargs)

    def _prepare(self) -> None:
        if self.kind != "mc":
            super()._prepare()
            return
        lk = loss_kind(self.loss_fn)
        with rng_guard(), torch.no_grad():
            for batch in self.batches:
                out = self.functional(self.functional.params, batch.inputs).detach()
                if lk == "cross_entropy":
                    probs = torch.softmax(out.to(torch.float64), dim=-1).cpu().reshape(-1, out.shape[-1])
                    idx = torch.multinomial(probs, self.mc_samples, replacement=True, generator=self.generator)
                    y = idx.T.reshape(self.mc_samples, *out.shape[:-1]).to(out.device)
                else:
                    per_example = out[0].numel()
                    eps = torch.randn(
                        (self.mc_samples, *out.shape), generator=self.generator, dtype=torch.float64
                    ).to(device=out.device, dtype=out.dtype)
                    y = out.unsqueeze(0) + math.sqrt(per_example / 2.0) * eps
                self.sampled_targets.append(y)

    def _batch_product(self, batch: Batch, tangents: dict[str, Tensor]) -> dict[str, Tensor]:
        params = self.functional.params

        def single(p: dict[str, Tensor], x: Any, y: Any) -> Tensor:
            out = self.functional(p, _unsqueeze0(x))
            return self.loss_fn(out, _unsqueeze0(y))

        per_example = self._vmap(torch.func.grad(single), in_dims=(None, _in_dims(batch.inputs), 0))
        V = self.functional.flatten_columns(tangents)  # [P, k]
        acc = torch.zeros_like(V)
        if self.kind == "mc":
            draws = self.sampled_targets[batch.index]  # [S, n_b, ...]
            per_chunk = max(1, self._max_rows // batch.n)
            for s0 in range(0, draws.shape[0], per_chunk):
                ys = draws[s0 : s0 + per_chunk]
                s = ys.shape[0]
                xs = tree_map(functools.partial(_repeat, s=s), batch.inputs)
                acc += self._gram_product(per_example(params, xs, ys.reshape(s * batch.n, *ys.shape[2:])), V)
            acc /= draws.shape[0]
        else:
            acc += self._gram_product(per_example(params, batch.inputs, batch.targets), V)
        return self.functional.unflatten_columns(acc)

    #: the most per-example gradients (rows of ``n × P``) held at once when drawing several MC samples
    _max_rows = 4096

    def _gram_product(self, G: dict[str, Tensor], V: Tensor) -> Tensor:
        names = self.functional.names
        Gf = torch.cat([G[n].reshape(G[n].shape[0], -1) for n in names], dim=1)  # [rows, P]
        return Gf.T @ (Gf @ V)


def _repeat(t: Any, s: int) -> Any:
    if not isinstance(t, Tensor) or t.ndim == 0:
        return t
    return t.unsqueeze(0).expand(s, *t.shape).reshape(s * t.shape[0], *t.shape[1:])


# ---------------------------------------------------------------------------- public constructors
def hessian(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    params: ParamsSpec = None,
    dtype: torch.dtype | None = None,
    check_deterministic: bool = True,
    process_group: Any = None,
) -> Hessian:
    """The Hessian of the dataset-mean loss as a matrix-free ``P × P`` operator (symmetric).

    ``H = Σ_b (n_b/N) ∇²_θ loss_fn(model(x_b; θ), y_b)``; products by forward-over-reverse
    (``jvp`` of ``grad``), ``k`` vectors in one vmapped pass per batch (Pearlmutter 1994; used as in
    PyHessian, Yao et al. arXiv 1912.07145).

    Args:
        model: any ``nn.Module`` (never modified; its parameters are snapshotted now).
        loss_fn: ``loss_fn(outputs, targets) -> mean loss of the batch`` (``reduction="mean"``).
        data: one ``(inputs, targets)`` batch or an iterable of batches (list, ``DataLoader``);
            inputs: a tensor, a tuple of tensors or a dict of tensors (keyword arguments), batch dim first.
        params: ``None`` (all trainable) | names / glob patterns | parameters (per-layer curvature).
        dtype: evaluation dtype; ``torch.float64`` evaluates a float64 copy (small models, exact work).
        check_deterministic: run the determinism probe (active dropout / train-mode batch norm fail at once;
            the first product is recomputed and must agree; data changing between passes fails).
        process_group: a ``torch.distributed`` process group; each rank passes its shard of the data.

    Returns:
        A :class:`Hessian` operator of shape ``(P, P)``, dtype of the parameters (or ``dtype``).

    Raises:
        TypeError / ValueError: bad model, loss, data or params (messages say expected / got / fix).
        NondeterministicModelError: (a ``ValueError``) the determinism probe failed.
        NonFiniteError: (a ``FloatingPointError`` and ``ValueError``) a batch's loss or product is NaN/Inf.
    """
    return Hessian(
        model, loss_fn, data, params=params, dtype=dtype, check_deterministic=check_deterministic,
        process_group=process_group,
    )


def ggn(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    params: ParamsSpec = None,
    dtype: torch.dtype | None = None,
    check_deterministic: bool = True,
    process_group: Any = None,
) -> GGN:
    """The generalized Gauss-Newton matrix ``G = Σ_b (n_b/N) J_bᵀ ∇²_f ℓ_b J_b`` (symmetric, psd).

    Closed-form output Hessians for cross-entropy (``diag(p) − ppᵀ`` per example, divided by the batch size)
    and MSE (``2/(n_b·O) · I`` with the mean over all ``n_b·O`` output entries); other losses by
    forward-over-reverse on the loss alone (Schraudolph 2002; Martens, arXiv 1412.1193). For cross-entropy
    the GGN equals the (true) Fisher. Arguments, returns and errors as :func:`hessian`; the model must return
    one tensor.
    """
    return GGN(
        model, loss_fn, data, params=params, dtype=dtype, check_deterministic=check_deterministic,
        process_group=process_group,
    )


def fisher(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    kind: str = "empirical",
    params: ParamsSpec = None,
    dtype: torch.dtype | None = None,
    mc_samples: int = 1,
    generator: torch.Generator | None = None,
    check_deterministic: bool = True,
    process_group: Any = None,
) -> Fisher:
    """The Fisher matrix ``F = (1/N) Σ_i g_i g_iᵀ`` of per-example loss gradients (symmetric, psd).

    Args:
        kind: ``"empirical"``: ``g_i`` at the data's targets (Kunstner et al. arXiv 1905.12558 on its
            limits); ``"mc"``: at ``mc_samples`` targets per example sampled from the model
            (cross-entropy: categorical; MSE: Gaussian with variance ``O/2``), drawn once with ``generator``
            (``None`` = seeded 0). Per-example gradients via ``vmap(grad)``; each batch costs ``n_b × P``
            memory.
        mc_samples: draws per example for ``kind="mc"``.
        generator: the randomness of ``kind="mc"``.
        (others): as :func:`hessian`.

    Returns:
        A :class:`Fisher` operator; for ``kind="mc"``, ``.sampled_targets[b]`` holds batch ``b``'s draws.
    """
    return Fisher(
        model, loss_fn, data, kind=kind, mc_samples=mc_samples, generator=generator, params=params, dtype=dtype,
        check_deterministic=check_deterministic, process_group=process_group,
    )
