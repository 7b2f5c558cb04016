"""``curvature_summary``: what the curvature of a model says about how to train it.

One call computes, on the Hessian (or GGN / Fisher) of the dataset-mean loss (see :mod:`eigenlens.nn.curvature`):

* the top-k and bottom-k eigenvalues with their residuals ``‖H v − λ v‖`` (:func:`eigenlens.eigsh`);
  negative bottom eigenvalues mean the model is not at a minimum;
* the trace ± its standard error (Hutch++, Meyer et al. arXiv 2010.09649);
* the spectral density by stochastic Lanczos quadrature (Ubaru, Chen, Saad 2017; Ghorbani et al.
  arXiv 1901.10159; PyHessian, Yao et al. arXiv 1912.07145);
* bulk and outliers. Trained classifiers have a bulk of eigenvalues near 0 and about ``C`` outliers for
  ``C`` classes (Sagun et al. arXiv 1706.04454), explained by the class means of the GGN's gradient
  features (Papyan arXiv 1901.08244). The bulk's upper edge is read off the SLQ density as the largest
  ``x`` where the estimated number of eigenvalues per smoothing width, ``dim · ρ̂(x) · σ``, is still at
  least 1: beyond it eigenvalues are resolved one by one. Outliers are the computed top eigenvalues above
  that edge; their count is compared with ``C``;
* learning-rate advice from the sharpness ``λ_max``: gradient descent diverges for ``lr > 2/λ_max``;
  heavy-ball momentum ``β`` (PyTorch SGD form) for ``lr > 2(1+β)/λ_max``; Adam with the preconditioner
  ``P = diag(√v̂ + ε)`` of an optimizer's state for ``lr > (2 + 2β₁)/((1 − β₁) λ_max(P⁻¹H))`` (Cohen et al.
  arXiv 2207.14484; ``λ_max(P⁻¹H)`` via the symmetric ``P^{-1/2} H P^{-1/2}``);
* batch-size scaling (Granziol et al. arXiv 2006.09092): ``λ_max`` of the Hessians of random mini-batches
  of size ``B`` grows as ``B`` shrinks (``H_B = H + noise ∝ 1/B``), so the largest stable SGD learning rate
  ``2/λ_max(H_B)`` grows with ``B``; theory predicts exponent 1 for SGD and 1/2 for Adam, saturating past a
  critical batch size. We fit the measured exponent ``α`` of ``lr_max(B) ∝ B^α`` by least squares in
  log-log and recommend ``safety · 2/λ_max(H_B)`` for SGD and, for Adam, a reference rate scaled by
  ``(B / B_ref)^{α/2}``.

Every stage is interruptible: Ctrl-C returns the summary of what was computed so far (``interrupted=True``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map

from eigenlens._result import Result

__all__ = ["CurvatureSummary", "BatchSizeScaling", "curvature_summary", "adam_preconditioner"]


@dataclass
class BatchSizeScaling(Result):
    """λ_max of mini-batch Hessians versus batch size, and the learning rates it implies.

    Attributes:
        batch_sizes: the ``B`` measured, ascending.
        lambda_max: mean ``λ_max(H_B)`` over ``repeats`` random mini-batches of each size.
        lambda_max_stderr: standard error of that mean (``nan`` with one repeat).
        lr_max_sgd: ``2 / lambda_max`` (the gradient-descent stability limit on a batch of size ``B``).
        exponent_sgd: fitted ``α`` in ``lr_max ∝ B^α`` (least squares in log-log); theory: 1 (linear).
        exponent_adam: ``α / 2`` (Granziol et al.: the adaptive rate scales as the square root); theory: 1/2.
        theory_exponent_sgd, theory_exponent_adam: 1 and 1/2.
        recommended_lr_sgd: ``safety · lr_max_sgd``.
        recommended_lr_adam: ``adam_reference_lr · (B / B_ref)^{exponent_adam}`` with ``B_ref`` the largest
            batch size measured.
        adam_reference_lr: the Adam rate at ``B_ref`` (from the optimizer's stability limit when one is passed,
            else its ``lr``, else 1e-3).
        safety: the fraction of the stability limit recommended.
        num_matvecs: Hessian-vector products spent (over all mini-batches).
    """

    batch_sizes: list[int]
    lambda_max: list[float]
    lambda_max_stderr: list[float]
    lr_max_sgd: list[float]
    exponent_sgd: float
    exponent_adam: float
    recommended_lr_sgd: list[float]
    recommended_lr_adam: list[float]
    adam_reference_lr: float
    safety: float
    num_matvecs: int
    theory_exponent_sgd: float = 1.0
    theory_exponent_adam: float = 0.5

    def plot(self, ax: Any = None) -> Any:
        """λ_max(H_B) and the recommended SGD/Adam learning rates versus ``B`` (log-log)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        B = self.batch_sizes
        ax.loglog(B, self.lr_max_sgd, "o-", label=f"SGD limit 2/λ_max(H_B): B^{self.exponent_sgd:.2f} (theory B^1)")
        ax.loglog(B, self.recommended_lr_adam, "s--", label=f"Adam lr: B^{self.exponent_adam:.2f} (theory B^0.5)")
        ax.set_xlabel("batch size B")
        ax.set_ylabel("learning rate")
        ax.set_title("Learning rate vs batch size (Granziol et al. 2020)")
        ax.legend(fontsize="small")
        return ax


@dataclass
class CurvatureSummary(Result):
    """Everything :func:`curvature_summary` measured (``None`` where a stage was skipped or interrupted).

    Attributes:
        operator: ``"hessian"``, ``"ggn"`` or ``"fisher"``.
        num_params, num_examples: ``P`` and ``N``.
        top_eigenvalues, top_residuals: ``[k]`` descending, with ``‖A v − λ v‖``.
        bottom_eigenvalues, bottom_residuals: ``[k]`` ascending.
        eigsh_converged: whether both eigsh runs met ``tol``.
        trace, trace_stderr: Hutch++ estimate of ``tr(A)`` and its standard error.
        density: the :class:`~eigenlens.linalg.slq.SpectralDensity`.
        bulk_edge: upper edge of the bulk (see the module docstring), ``None`` without a density.
        outliers: the top eigenvalues above ``bulk_edge``.
        num_classes: ``C`` (given, or the output width for cross-entropy), or ``None``.
        lambda_max: the sharpness (largest eigenvalue).
        momentum: ``β`` used for the heavy-ball limit.
        lr_max_gd: ``2 / λ_max``; lr_max_heavy_ball: ``2(1+β)/λ_max``.
        adam_sharpness: ``λ_max(P⁻¹H)`` from an Adam optimizer's state; lr_max_adam:
            ``(2 + 2β₁)/((1 − β₁)·adam_sharpness)``.
        batch_size_scaling: a :class:`BatchSizeScaling` or ``None``.
        num_matvecs: operator products spent in total (including the determinism probe).
        seconds: wall time per stage.
        interrupted: Ctrl-C stopped the computation; the fields computed so far are filled.
        notes: plain-language findings.
    """

    operator: str
    num_params: int
    num_examples: int
    top_eigenvalues: list[float] | None = None
    top_residuals: list[float] | None = None
    bottom_eigenvalues: list[float] | None = None
    bottom_residuals: list[float] | None = None
    eigsh_converged: bool | None = None
    trace: float | None = None
    trace_stderr: float | None = None
    density: Any = None
    bulk_edge: float | None = None
    outliers: list[float] | None = None
    num_classes: int | None = None
    lambda_max: float | None = None
    momentum: float | None = None
    lr_max_gd: float | None = None
    lr_max_heavy_ball: float | None = None
    adam_sharpness: float | None = None
    lr_max_adam: float | None = None
    batch_size_scaling: BatchSizeScaling | None = None
    num_matvecs: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def num_outliers(self) -> int | None:
        """``len(outliers)`` or ``None``."""
        return None if self.outliers is None else len(self.outliers)

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python objects; the density as its nodes/weights plus a 256-point pdf."""
        out = super().to_dict()
        out["num_outliers"] = self.num_outliers
        if self.density is not None:
            lo, hi = self.density.support
            s = self.density.default_sigma()
            x = torch.linspace(lo - 3 * s, hi + 3 * s, 256, dtype=torch.float64)
            out["density"]["grid"] = x.tolist()
            out["density"]["pdf"] = self.density.pdf(x, sigma=s).tolist()
        return out

    def __str__(self) -> str:
        def fmt(xs: Sequence[float] | None) -> str:
            return "—" if xs is None else "  ".join(f"{x:.6g}" for x in xs)

        name = {"hessian": "Hessian", "ggn": "Gauss-Newton (GGN)", "fisher": "Fisher"}.get(self.operator, self.operator)
        lines = [f"Curvature summary: {name} of the mean loss, P = {self.num_params:,} parameters, N = "
                 f"{self.num_examples:,} examples"]
        if self.interrupted:
            lines.append("  (interrupted: showing what was computed so far)")
        if self.top_eigenvalues is not None:
            lines.append(f"  top eigenvalues      {fmt(self.top_eigenvalues)}")
            lines.append(f"    residuals          {fmt(self.top_residuals)}")
        if self.bottom_eigenvalues is not None:
            lines.append(f"  bottom eigenvalues   {fmt(self.bottom_eigenvalues)}")
            lines.append(f"    residuals          {fmt(self.bottom_residuals)}")
        if self.trace is not None:
            lines.append(f"  trace                {self.trace:.6g} ± {self.trace_stderr:.2g} (Hutch++)")
        if self.density is not None:
            lo, hi = self.density.support
            lines.append(f"  spectral density     SLQ, {self.density.num_probes} probes, support [{lo:.4g}, {hi:.4g}]")
        if self.bulk_edge is not None:
            c = f" vs C = {self.num_classes} classes" if self.num_classes else ""
            lines.append(f"  bulk edge            {self.bulk_edge:.4g}; {self.num_outliers} outlier(s){c}")
        if self.lambda_max is not None:
            lines.append(f"  sharpness λ_max      {self.lambda_max:.6g}")
            if self.lr_max_gd is not None:
                lines.append(f"  GD stable lr <       {self.lr_max_gd:.4g}   (2/λ_max)")
                hb = self.lr_max_heavy_ball
                lines.append(f"  heavy-ball lr <      {hb:.4g}   (2(1+β)/λ_max, β = {self.momentum})")
        if self.adam_sharpness is not None:
            lines.append(f"  Adam λ_max(P⁻¹H)     {self.adam_sharpness:.6g};  Adam stable lr < {self.lr_max_adam:.4g}")
        bs = self.batch_size_scaling
        if bs is not None:
            lines.append(
                f"  batch-size scaling   lr_max ∝ B^{bs.exponent_sgd:.2f} for SGD (theory 1), "
                f"B^{bs.exponent_adam:.2f} for Adam (theory 0.5)"
            )
            lines.append("      B    λ_max(H_B)   SGD lr limit   SGD lr (rec.)   Adam lr (rec.)")
            for i, b in enumerate(bs.batch_sizes):
                lines.append(
                    f"  {b:>5d}  {bs.lambda_max[i]:>11.5g}  {bs.lr_max_sgd[i]:>13.4g}"
                    f"  {bs.recommended_lr_sgd[i]:>14.4g}  {bs.recommended_lr_adam[i]:>15.4g}"
                )
        lines.append(f"  cost                 {self.num_matvecs} operator products, "
                     f"{sum(self.seconds.values()):.1f} s")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def plot_density(self, ax: Any = None) -> Any:
        """The SLQ density (log scale) with the top/bottom eigenvalues and the bulk edge marked."""
        import matplotlib.pyplot as plt

        if self.density is None:
            raise ValueError("plot_density: no density was computed; call curvature_summary(..., density=True)")
        if ax is None:
            _, ax = plt.subplots()
        # Smooth at 1% of the spectral range: the data-driven default width follows the mass near 0 and
        # turns the outliers into needles; a fixed fraction of the range shows bulk and outliers together.
        nodes = self.density.nodes[self.density.weights > 0]
        width = float(nodes.max() - nodes.min()) if nodes.numel() else 0.0
        self.density.plot(ax=ax, log=True, sigma=0.01 * width if width > 0 else None)
        peak = max((line.get_ydata().max() for line in ax.get_lines()), default=None)
        if peak is not None and peak > 0:
            ax.set_ylim(bottom=peak * 1e-7)
        for i, lam in enumerate(self.top_eigenvalues or []):
            ax.axvline(lam, color="C3", lw=0.8, alpha=0.7, label="top eigenvalues" if i == 0 else None)
        for i, lam in enumerate(self.bottom_eigenvalues or []):
            ax.axvline(lam, color="C2", lw=0.8, alpha=0.7, label="bottom eigenvalues" if i == 0 else None)
        if self.bulk_edge is not None:
            ax.axvline(self.bulk_edge, color="k", ls="--", lw=1, label="bulk edge")
        ax.set_title(f"{self.operator} spectrum (P = {self.num_params:,})")
        ax.legend(fontsize="small")
        return ax

    def plot_batch_sizes(self, ax: Any = None) -> Any:
        """The batch-size scaling plot (see :meth:`BatchSizeScaling.plot`)."""
        if self.batch_size_scaling is None:
            raise ValueError("plot_batch_sizes: no batch-size scaling was computed; pass batch_sizes=[...]")
        return self.batch_size_scaling.plot(ax=ax)

    def plot(self, path: str | None = None) -> Any:
        """A figure with the density and (when measured) the batch-size panel; saved to ``path`` if given."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        panels = [p for p in (self.density is not None, self.batch_size_scaling is not None) if p]
        fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4.2), squeeze=False)
        i = 0
        if self.density is not None:
            self.plot_density(axes[0, i])
            i += 1
        if self.batch_size_scaling is not None:
            self.plot_batch_sizes(axes[0, i])
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig


# ---------------------------------------------------------------------------- helpers
def adam_preconditioner(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> tuple[Tensor, float]:
    """The diagonal ``P = √v̂ + ε`` of an Adam/AdamW optimizer for ``params`` (flattened), and ``β₁``.

    ``v̂ = exp_avg_sq / (1 − β₂^t)`` (bias-corrected second moment). Returns ``(P [P], beta1)``.

    Raises:
        TypeError: not an Adam-family optimizer (no ``betas`` / ``exp_avg_sq`` state).
        ValueError: a parameter has no optimizer state (take at least one optimizer step first).
    """
    group_of: dict[int, dict[str, Any]] = {}
    for g in optimizer.param_groups:
        for p in g["params"]:
            group_of[id(p)] = g
    parts, beta1 = [], None
    for p in params:
        g = group_of.get(id(p))
        if g is None or "betas" not in g:
            raise TypeError(
                f"optimizer: expected an Adam-family optimizer (Adam, AdamW) over the model's parameters, got "
                f"{type(optimizer).__name__} without betas for a parameter of shape {tuple(p.shape)}"
            )
        st = optimizer.state.get(p, {})
        if "exp_avg_sq" not in st:
            raise ValueError(
                f"optimizer: no Adam state for a parameter of shape {tuple(p.shape)}; take at least one optimizer "
                "step before asking for the preconditioned sharpness"
            )
        b1, b2 = g["betas"]
        step = float(st["step"]) if "step" in st else 1.0
        v_hat = st["exp_avg_sq"].detach().to(torch.float64) / (1.0 - b2**step)
        parts.append((v_hat.sqrt() + g["eps"]).reshape(-1))
        beta1 = b1
    return torch.cat(parts), float(beta1 if beta1 is not None else 0.9)


def _cat_batches(data: Any, limit: int) -> tuple[Any, Tensor]:
    from eigenlens.nn._model import Batches

    xs, ys, n = [], [], 0
    for b in Batches(data):
        xs.append(b.inputs)
        ys.append(b.targets)
        n += b.n
        if n >= limit:
            break
    leaves0, spec = tree_flatten(xs[0])
    cols = list(zip(*[tree_flatten(x)[0] for x in xs]))
    cat = [torch.cat(c) if isinstance(c[0], Tensor) and c[0].ndim > 0 else c[0] for c in cols]
    del leaves0
    from torch.utils._pytree import tree_unflatten

    return tree_unflatten(cat, spec), torch.cat(ys)


def _take(inputs: Any, idx: Tensor) -> Any:
    return tree_map(lambda t: t[idx] if isinstance(t, Tensor) and t.ndim > 0 else t, inputs)


def _bulk_edge(density: Any, top: Sequence[float]) -> float:
    s = density.default_sigma()
    lo, hi = density.support
    x = torch.linspace(lo - 3 * s, max(hi, max(top, default=hi)) + 3 * s, 4096, dtype=torch.float64)
    count = density.dim * density.pdf(x, sigma=s) * s
    dense = torch.nonzero(count >= 1.0).flatten()
    return float(x[dense[-1]]) if dense.numel() else float(x[0])


def _infer_classes(model: nn.Module, loss_fn: Any, data: Any) -> int | None:
    from eigenlens.nn._model import Batches, call_model, preserve_model_state
    from eigenlens.nn.curvature import loss_kind

    if loss_kind(loss_fn) != "cross_entropy":
        return None
    b = next(iter(Batches(data)))
    with preserve_model_state(model), torch.no_grad():
        state = dict(model.named_parameters())
        state.update(dict(model.named_buffers()))
        out = call_model(model, state, b.inputs)
    return int(out.shape[-1]) if isinstance(out, Tensor) and out.ndim >= 2 else None


# ---------------------------------------------------------------------------- the summary
def curvature_summary(
    model: nn.Module,
    loss_fn: Any,
    data: Any,
    *,
    k: int = 5,
    operator: str = "hessian",
    params: Any = None,
    tol: float = 1e-6,
    max_matvecs: int = 300,
    bottom: bool = True,
    trace: bool = True,
    trace_matvecs: int = 99,
    density: bool = True,
    density_probes: int = 8,
    density_matvecs: int = 60,
    num_classes: int | None = None,
    momentum: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    batch_sizes: Sequence[int] | None = None,
    batch_size_repeats: int = 3,
    safety: float = 0.5,
    adam_lr: float | None = None,
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
    check_deterministic: bool = True,
    process_group: Any = None,
    progress: bool = False,
) -> CurvatureSummary:
    """Summarise the curvature of ``model`` on ``data`` and turn it into learning-rate advice.

    Args:
        model, loss_fn, data, params, dtype, check_deterministic, process_group: as :func:`eigenlens.hessian`.
        k: eigenvalues at each end (the top run asks for ``max(k, C + 1)`` when ``C`` classes are known, to
            see all outliers).
        operator: ``"hessian"`` (default), ``"ggn"`` or ``"fisher"`` (empirical).
        tol: eigsh relative residual tolerance.
        max_matvecs: product budget of each eigsh run. The bottom of a trained network's Hessian is a dense
            cluster near 0 where Krylov methods converge slowly: the best Ritz values are then returned with their
            residuals (``eigsh_converged=False``, a ConvergenceWarning from eigsh, and a note).
        bottom: also compute the ``k`` smallest eigenvalues.
        trace, trace_matvecs: Hutch++ trace with this budget.
        density, density_probes, density_matvecs: SLQ density (``probes × matvecs`` products).
        num_classes: ``C`` for the outlier count (default: the output width for cross-entropy).
        momentum: ``β`` of the heavy-ball limit (default: the optimizer's momentum / ``betas[0]``, else 0.9).
        optimizer: an Adam/AdamW optimizer that has taken steps: adds ``λ_max(P⁻¹H)``; any optimizer gives
            the momentum and reference learning rate.
        batch_sizes: mini-batch sizes for the batch-size scaling study (``None``: skipped).
        batch_size_repeats: random mini-batches per size.
        safety: recommended fraction of the stability limit.
        adam_lr: Adam reference rate at the largest batch size (default: from the optimizer, else 1e-3).
        generator: all randomness (``None``: seeded 0).
        progress: tqdm progress bars.

    Returns:
        A :class:`CurvatureSummary` (``print`` it; ``.to_json()``, ``.plot(path)``).

    Raises:
        ValueError: unknown ``operator``, ``k < 1``, bad ``batch_sizes`` (not positive, or larger than the
            data), ``batch_sizes`` together with ``process_group``.
    """
    import eigenlens as el
    from eigenlens.linalg.random import resolve_generator
    from eigenlens.nn._model import preserve_model_state

    builders = {"hessian": el.hessian, "ggn": el.ggn, "fisher": el.fisher}
    if operator not in builders:
        raise ValueError(f"operator must be one of {sorted(builders)}, got {operator!r}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if batch_sizes is not None:
        batch_sizes = sorted({int(b) for b in batch_sizes})
        if not batch_sizes or batch_sizes[0] < 1:
            raise ValueError(f"batch_sizes must be positive ints, got {batch_sizes}")
        if process_group is not None:
            raise ValueError("batch_sizes with process_group is not supported: run the batch-size study on one rank")
    gen = resolve_generator(generator)
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))

    def g(i: int) -> torch.Generator:  # an independent, reproducible stream per stage
        return torch.Generator().manual_seed(seed + i)

    kw: dict[str, Any] = dict(params=params, dtype=dtype, check_deterministic=check_deterministic,
                              process_group=process_group)
    with preserve_model_state(model):
        A = builders[operator](model, loss_fn, data, **kw)
        P = A.shape[0]
        s = CurvatureSummary(operator=operator, num_params=P, num_examples=A.num_examples)
        s.num_classes = num_classes if num_classes is not None else _infer_classes(model, loss_fn, data)
        beta = momentum
        if beta is None and optimizer is not None:
            grp = optimizer.param_groups[0]
            beta = grp.get("momentum", grp.get("betas", (0.9,))[0])
        s.momentum = float(0.9 if beta is None else beta)

        def stage(name: str, fn: Any) -> bool:
            t0 = time.perf_counter()
            try:
                fn()
            except KeyboardInterrupt:
                s.interrupted = True
            finally:
                s.seconds[name] = round(time.perf_counter() - t0, 3)
            return not s.interrupted

        def top() -> None:
            kk = min(max(k, (s.num_classes or 0) + 1), P - 1)
            r = el.eigsh(A, k=kk, which="LA", tol=tol, max_matvecs=max_matvecs, generator=g(1), progress=progress)
            s.top_eigenvalues = r.eigenvalues.tolist()
            s.top_residuals = r.residual_norms.tolist()
            s.eigsh_converged = bool(r.converged)
            s.lambda_max = s.top_eigenvalues[0]
            if s.lambda_max > 0:
                s.lr_max_gd = 2.0 / s.lambda_max
                s.lr_max_heavy_ball = 2.0 * (1.0 + s.momentum) / s.lambda_max

        def low() -> None:
            r = el.eigsh(
                A, k=min(k, P - 1), which="SA", tol=tol, max_matvecs=max_matvecs, generator=g(2), progress=progress
            )
            s.bottom_eigenvalues = r.eigenvalues.tolist()
            s.bottom_residuals = r.residual_norms.tolist()
            s.eigsh_converged = bool(s.eigsh_converged is not False and r.converged)

        def tr() -> None:
            t = el.trace(A, trace_matvecs, method="hutch++", generator=g(3))
            s.trace, s.trace_stderr = float(t.value), float(t.stderr)

        def dens() -> None:
            s.density = el.spectral_density(
                A, num_probes=density_probes, num_matvecs=min(density_matvecs, P), generator=g(4), progress=progress
            )
            if s.top_eigenvalues is not None:
                s.bulk_edge = _bulk_edge(s.density, s.top_eigenvalues)
                s.outliers = [x for x in s.top_eigenvalues if x > s.bulk_edge]

        def adam() -> None:
            by_name = dict(model.named_parameters())
            D, b1 = adam_preconditioner(optimizer, [by_name[n] for n in A.functional.names])
            d = (1.0 / D.sqrt()).to(A.dtype)
            pre = el.linear_operator(lambda X: d[:, None] * (A @ (d[:, None] * X)), (P, P), dtype=A.dtype,
                                     device=A.device, symmetric=True)
            r = el.eigsh(pre, k=1, which="LA", tol=max(tol, 1e-4), max_matvecs=max_matvecs, generator=g(5))
            s.adam_sharpness = float(r.eigenvalues[0])
            if s.adam_sharpness > 0:
                s.lr_max_adam = (2.0 + 2.0 * b1) / ((1.0 - b1) * s.adam_sharpness)

        def bsz() -> None:
            s.batch_size_scaling = _batch_size_scaling(
                model, loss_fn, data, batch_sizes, batch_size_repeats, builders[operator], kw, g(6), safety,
                adam_lr, optimizer, s.lr_max_adam, s.num_examples,
            )

        plan = [("top", top)]
        if bottom:
            plan.append(("bottom", low))
        if trace:
            plan.append(("trace", tr))
        if density:
            plan.append(("density", dens))
        is_adam = optimizer is not None and "betas" in optimizer.param_groups[0]
        if is_adam:
            plan.append(("adam", adam))
        if batch_sizes:
            plan.append(("batch_sizes", bsz))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(plan), desc="curvature summary", unit="stage")
        for name, fn in plan:
            if bar is not None:
                bar.set_postfix_str(name)
            ok = stage(name, fn)
            if bar is not None:
                bar.update(1)
            if not ok:
                break
        if bar is not None:
            bar.close()
        s.num_matvecs = A.num_matvecs + (s.batch_size_scaling.num_matvecs if s.batch_size_scaling else 0)
    _notes(s)
    return s


def _batch_size_scaling(
    model: nn.Module, loss_fn: Any, data: Any, batch_sizes: Sequence[int], repeats: int, build: Any,
    kw: dict[str, Any], gen: torch.Generator, safety: float, adam_lr: float | None,
    optimizer: torch.optim.Optimizer | None, lr_max_adam: float | None, num_examples: int,
) -> BatchSizeScaling:
    import eigenlens as el

    if batch_sizes[-1] > num_examples:
        raise ValueError(f"batch_sizes: the largest, {batch_sizes[-1]}, exceeds the {num_examples} examples")
    X, Y = _cat_batches(data, limit=num_examples)
    n = Y.shape[0]
    lam, err, spent = [], [], 0
    for B in batch_sizes:
        vals = []
        reps = 1 if B == n else repeats
        for _ in range(reps):
            idx = torch.randperm(n, generator=gen)[:B]
            H = build(model, loss_fn, (_take(X, idx), Y[idx]), **kw)
            r = el.eigsh(H, k=1, which="LA", tol=1e-4, max_matvecs=200, generator=gen)
            vals.append(float(r.eigenvalues[0]))
            spent += H.num_matvecs
        t = torch.tensor(vals, dtype=torch.float64)
        lam.append(float(t.mean()))
        err.append(float(t.std() / math.sqrt(len(vals))) if len(vals) > 1 else float("nan"))
    lr = [2.0 / x if x > 0 else float("inf") for x in lam]
    good = [(b, v) for b, v in zip(batch_sizes, lr) if math.isfinite(v)]
    if len(good) >= 2:
        xb = torch.tensor([math.log(b) for b, _ in good], dtype=torch.float64)
        yb = torch.tensor([math.log(v) for _, v in good], dtype=torch.float64)
        xc = xb - xb.mean()
        alpha = float((xc * (yb - yb.mean())).sum() / (xc * xc).sum())
    else:
        alpha = float("nan")
    if adam_lr is None:
        if lr_max_adam is not None:
            adam_lr = safety * lr_max_adam
        elif optimizer is not None and "betas" in optimizer.param_groups[0]:
            adam_lr = float(optimizer.param_groups[0]["lr"])
        else:
            adam_lr = 1e-3
    B_ref = batch_sizes[-1]
    a_adam = alpha / 2.0
    return BatchSizeScaling(
        batch_sizes=list(batch_sizes), lambda_max=lam, lambda_max_stderr=err, lr_max_sgd=lr,
        exponent_sgd=alpha, exponent_adam=a_adam, recommended_lr_sgd=[safety * v for v in lr],
        recommended_lr_adam=[adam_lr * (b / B_ref) ** a_adam for b in batch_sizes], adam_reference_lr=adam_lr,
        safety=safety, num_matvecs=spent,
    )


def _notes(s: CurvatureSummary) -> None:
    if s.bottom_eigenvalues is not None and s.top_eigenvalues is not None and s.bottom_eigenvalues[0] < 0:
        ratio = abs(s.bottom_eigenvalues[0]) / max(abs(s.top_eigenvalues[0]), 1e-300)
        s.notes.append(
            f"negative curvature: λ_min = {s.bottom_eigenvalues[0]:.3g} ({ratio:.1%} of λ_max in magnitude); "
            "the model is not at a minimum of the loss" + (" (small: typical near convergence)" if ratio < 0.05 else "")
        )
    if s.outliers is not None and s.top_eigenvalues and len(s.outliers) == len(s.top_eigenvalues):
        s.notes.append(
            f"all {len(s.outliers)} computed top eigenvalues lie above the bulk edge: the outlier count is a lower "
            "bound (raise k to see where the outliers end)"
        )
    elif s.outliers is not None and s.num_classes:
        c, m = s.num_classes, len(s.outliers)
        verdict = "as expected for a trained classifier" if abs(m - c) <= 1 else (
            "fewer than classes: training may be early or classes poorly separated" if m < c else
            "more than classes: the bulk edge may be underestimated or the data has sub-structure")
        s.notes.append(f"{m} outlier eigenvalue(s) above the bulk vs C = {c} classes (Sagun et al.; Papyan): {verdict}")
    if s.eigsh_converged is False:
        s.notes.append("eigsh did not reach tol: residuals above show the accuracy actually reached")
    bs = s.batch_size_scaling
    if bs is not None and math.isfinite(bs.exponent_sgd):
        s.notes.append(
            f"batch size: measured SGD exponent {bs.exponent_sgd:.2f} (theory 1.0), Adam {bs.exponent_adam:.2f} "
            "(theory 0.5); an exponent well below theory means the batch sizes are past the critical batch size"
        )

