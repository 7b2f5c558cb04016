"""A training callback that logs Jacobian alignment, the Hessian's top eigenvalues and the Jacobian spectrum.

Call it once per training step (``callback(step)``); every ``every`` steps it measures, on fixed probe data:

* the GrokAlign metrics (:func:`~eigenlens.train.grokalign.jacobian_alignment`, centroid alignment), mean
  over the probe inputs;
* the top ``hessian_k`` eigenvalues of the Hessian of the loss (:func:`eigenlens.nn.curvature.hessian`) by
  ``eigsh``, warm-started from the previous measurement's eigenvectors (``v0=``), which typically cuts the
  Hessian-vector products by a large factor once training is smooth — ``λ_max`` tracks the edge of
  stability ``2/η`` (Cohen et al., arXiv 2103.00065);
* the Jacobian spectrum (:func:`~eigenlens.nn.jacobian.jacobian_spectrum`): pooled top singular values and
  the condition number on a few examples.

Overhead is measured, not guessed: the wall time spent measuring divided by the wall time of the training
between calls (:attr:`SpectralCallback.overhead`). The model is never changed: measurements run under
:func:`~eigenlens.nn._model.preserve_model_state` (with ``eval_mode=True`` the model is put in eval mode
for the measurement and its modes restored after). Ctrl-C during a measurement keeps the records so far.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from eigenlens._result import Result
from eigenlens.linalg.exceptions import ConvergenceWarning
from eigenlens.linalg.random import resolve_generator
from eigenlens.nn._model import preserve_model_state

__all__ = ["SpectralCallback", "SpectralRecord"]


@dataclass
class SpectralRecord(Result):
    """One measurement of :class:`SpectralCallback` (``nan`` for what was not measured).

    Attributes:
        step: the training step.
        jacobian_alignment: mean ``cos(J_x x, f(x))`` over the probe inputs.
        centroid_alignment: mean ``cos(J_xᵀ1, x)``.
        hessian_eigenvalues: ``[k]`` top eigenvalues of the loss Hessian (descending).
        hessian_matvecs: Hessian-vector products spent (warm-started after the first measurement).
        jacobian_singular_values: ``[k]`` pooled top singular values of the input–output Jacobian over the first
            ``jacobian_examples`` probe inputs.
        jacobian_condition: ``σ_max/σ_min`` over the examples analysed.
        seconds: wall time of this measurement.
    """

    step: int
    jacobian_alignment: float = float("nan")
    centroid_alignment: float = float("nan")
    hessian_eigenvalues: Tensor = field(default_factory=lambda: torch.zeros(0))
    hessian_matvecs: int = 0
    jacobian_singular_values: Tensor = field(default_factory=lambda: torch.zeros(0))
    jacobian_condition: float = float("nan")
    seconds: float = 0.0


class SpectralCallback:
    """Log alignment, ``λ_max`` of the Hessian (warm-started) and the Jacobian spectrum every ``every`` steps.

    Args:
        model: the model being trained (never modified by the measurements).
        inputs: probe inputs ``[B, *in]`` for the alignment metrics and the Jacobian spectrum (``None``: skip).
        loss_fn, data: for the Hessian (``loss_fn(outputs, targets)``, one ``(inputs, targets)`` batch or a list
            of batches); ``None``: skip the Hessian.
        every: measure at steps ``0, every, 2·every, ...``.
        hessian_k: top Hessian eigenvalues to track.
        hessian_tol: relative residual tolerance of ``eigsh``.
        warm_start: reuse the previous eigenvectors as ``v0`` (the point of the callback; ``False`` to compare).
        jacobian_k: pooled Jacobian singular values to track (0: skip the spectrum).
        jacobian_examples: the first examples of ``inputs`` whose Jacobian spectrum (per example and pooled) is
            measured.
        params: the parameters of the Hessian (see :func:`eigenlens.nn.curvature.hessian`).
        eval_mode: measure with the model in eval mode (modes restored after).
        generator: randomness of the Krylov starts (``None``: seeded 0, advanced across measurements).

    Attributes:
        records: the :class:`SpectralRecord` list.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> X, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
        >>> cb = SpectralCallback(net, inputs=X, loss_fn=torch.nn.CrossEntropyLoss(), data=(X, y), every=2)
        >>> for step in range(4):
        ...     rec = cb(step)
        >>> [r.step for r in cb.records], cb.records[0].hessian_eigenvalues.shape
        ([0, 2], torch.Size([1]))
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        inputs: Tensor | None = None,
        loss_fn: Any = None,
        data: Any = None,
        every: int = 100,
        hessian_k: int = 1,
        hessian_tol: float = 1e-3,
        warm_start: bool = True,
        jacobian_k: int = 3,
        jacobian_examples: int = 4,
        params: Any = None,
        eval_mode: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every: expected a positive int (steps between measurements), got {every!r}")
        if (loss_fn is None) != (data is None):
            raise ValueError("loss_fn and data go together (both for the Hessian, or neither to skip it)")
        if isinstance(hessian_k, bool) or not isinstance(hessian_k, int) or hessian_k < 1:
            raise ValueError(f"hessian_k: expected a positive int, got {hessian_k!r}")
        if isinstance(jacobian_k, bool) or not isinstance(jacobian_k, int) or jacobian_k < 0:
            raise ValueError(f"jacobian_k: expected an int >= 0, got {jacobian_k!r}")
        if inputs is not None and not isinstance(inputs, Tensor):
            raise TypeError(f"inputs: expected a tensor [B, *in] or None, got {type(inputs).__name__}")
        self.model = model
        self.inputs = inputs
        self.loss_fn = loss_fn
        self.data = data
        self.every = every
        self.hessian_k = hessian_k
        self.hessian_tol = hessian_tol
        self.warm_start = warm_start
        self.jacobian_k = jacobian_k
        self.jacobian_examples = jacobian_examples
        self.params = params
        self.eval_mode = eval_mode
        self.generator = resolve_generator(generator)
        self.records: list[SpectralRecord] = []
        self._v0: Tensor | None = None
        self._measure_s = 0.0
        self._train_s = 0.0
        self._last: float | None = None

    @property
    def overhead(self) -> float:
        """Measurement wall time / training wall time between calls (``nan`` before two calls)."""
        return self._measure_s / self._train_s if self._train_s > 0 else float("nan")

    @property
    def hessian_matvecs(self) -> list[int]:
        """Hessian-vector products per measurement."""
        return [r.hessian_matvecs for r in self.records]

    def __call__(self, step: int) -> SpectralRecord | None:
        """Account the training time since the last call; measure when ``step % every == 0``."""
        now = time.perf_counter()
        if self._last is not None:
            self._train_s += now - self._last
        rec = None
        if step % self.every == 0:
            try:
                rec = self.measure(step)
            except KeyboardInterrupt:
                warnings.warn(
                    f"SpectralCallback: measurement at step {step} interrupted; earlier records are kept",
                    ConvergenceWarning,
                    stacklevel=2,
                )
        self._last = time.perf_counter()
        return rec

    def measure(self, step: int) -> SpectralRecord:
        """Measure now (whatever the step) and append the record."""
        from eigenlens.train.grokalign import centroid_alignment, jacobian_alignment

        t0 = time.perf_counter()
        rec = SpectralRecord(step=int(step))
        with preserve_model_state(self.model):
            if self.eval_mode:
                self.model.eval()
            if self.inputs is not None:
                rec.jacobian_alignment = float(jacobian_alignment(self.model, self.inputs).mean())
                rec.centroid_alignment = float(centroid_alignment(self.model, self.inputs).mean())
                if self.jacobian_k > 0:
                    from eigenlens.nn.jacobian import jacobian_spectrum

                    spec = jacobian_spectrum(  # on the first few examples only: pooled products scale with B
                        self.model, self.inputs[: self.jacobian_examples], k=self.jacobian_k,
                        max_examples=self.jacobian_examples,
                        num_probes=2, num_matvecs=8, tol=1e-4, generator=self.generator,
                    )
                    rec.jacobian_singular_values = spec.pooled_singular_values
                    rec.jacobian_condition = spec.condition_number
            if self.loss_fn is not None:
                rec.hessian_eigenvalues, rec.hessian_matvecs = self._hessian_top()
        rec.seconds = time.perf_counter() - t0
        self._measure_s += rec.seconds
        self.records.append(rec)
        return rec

    def _hessian_top(self) -> tuple[Tensor, int]:
        from eigenlens.linalg.eigsh import eigsh
        from eigenlens.nn.curvature import hessian

        H = hessian(self.model, self.loss_fn, self.data, params=self.params)
        v0 = self._v0 if (self.warm_start and self._v0 is not None and self._v0.shape[0] == H.shape[0]) else None
        res = eigsh(H, k=self.hessian_k, which="LA", tol=self.hessian_tol, v0=v0, generator=self.generator)
        self._v0 = res.eigenvectors.detach()
        return res.eigenvalues.detach().to(torch.float64), int(res.num_matvecs)

    def to_pandas(self) -> Any:
        """The records as a ``pandas.DataFrame`` (one row per measurement; first eigen/singular values)."""
        import pandas as pd

        rows = []
        for r in self.records:
            d = r.to_dict()
            d["hessian_top"] = float(r.hessian_eigenvalues[0]) if r.hessian_eigenvalues.numel() else float("nan")
            d["jacobian_top"] = (
                float(r.jacobian_singular_values[0]) if r.jacobian_singular_values.numel() else float("nan")
            )
            rows.append({k: v for k, v in d.items() if not isinstance(v, list)})
        return pd.DataFrame(rows)
