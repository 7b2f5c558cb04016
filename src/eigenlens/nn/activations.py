"""Streaming activation spectra (EigenTrack-style reliability / out-of-distribution signals).

:class:`ActivationSpectrumMonitor` hooks chosen layers of a model and, every ``window`` activation rows,
computes the spectrum of the window's feature covariance and reads it against Marchenko–Pastur:

* rows and features: a layer's output is flattened to ``[rows, features]`` with the feature axis last,
  except for convolutions where the channel axis (dim 1) is the feature axis and every (example, position)
  is a row (``[B, C, H, W] -> [B·H·W, C]``). A token model's ``[B, T, D]`` output gives ``B·T`` rows.
* per window ``X`` (``T = window`` rows, ``p`` features, float64, columns centred by the window mean):
  ``S = XᵀX / (T − 1)`` and its eigenvalues ``λ_1 >= ... >= λ_p`` (with ``center=False``: the raw second
  moment ``XᵀX / T``, which also sees a shift of the mean);

  - ``top_eigenvalue``: ``λ_1``;
  - ``entropy``: :func:`eigenlens.rmt.spectral_entropy` of the eigenvalues;
  - ``effective_rank``: ``exp(−Σ q_i log q_i)`` with ``q = λ / Σλ`` (Roy & Vetterli, 2007);
  - ``num_outliers`` and ``mp_distance``: the number of outliers above the edge and the KS distance of the
    ESD to the Marchenko–Pastur law fitted by :func:`eigenlens.rmt.fit_marchenko_pastur` with ratio
    ``γ = p / (T − 1)`` (``p / T`` uncentred; pure noise: 0 outliers and a KS distance of order ``1/√p``);
  - ``total_variance``: ``Σλ / p``, the mean feature variance.

The out-of-distribution score compares a window's statistics with reference windows recorded on
in-distribution data (:meth:`ActivationSpectrumMonitor.calibrate`): each statistic ``s`` of each layer is
standardised, ``z = (s − mean_ref) / std_ref`` (``log`` of the positive scale statistics ``top_eigenvalue``
and ``total_variance`` first; ``std_ref`` floored at ``1e-2·|mean_ref|`` so a constant reference statistic
does not divide by zero), and the score of a window is the root mean square of all its ``z``. Large means
"spectrally unlike the reference"; in-distribution windows score about 1.

References:
    *Structure and Redundancy in Large Language Models: A Spectral Study via Random Matrix Theory*
    (EigenTrack, arXiv 2509.15724): activation spectra, spectral entropy and deviation from Marchenko–Pastur
    in sliding windows as hallucination/OOD signals. Roy & Vetterli, *The effective rank* (EUSIPCO 2007).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from eigenlens._result import Result

__all__ = ["WindowStats", "ActivationSpectrumMonitor", "window_statistics", "STATISTICS"]

#: the per-window statistics, in the order used by the OOD score.
STATISTICS = ("top_eigenvalue", "entropy", "effective_rank", "num_outliers", "mp_distance", "total_variance")
_LOG_STATS = ("top_eigenvalue", "total_variance")


@dataclasses.dataclass
class WindowStats(Result):
    """Spectral statistics of one window of one layer's activations (see the module docstring).

    Attributes:
        layer: the layer name.
        index: the window's position in the layer's stream (0, 1, ...).
        num_rows: ``T``, rows in the window.
        num_features: ``p``.
        top_eigenvalue: ``λ_1`` of the centred covariance ``XᵀX/T``.
        entropy: spectral entropy (:func:`eigenlens.rmt.spectral_entropy`).
        effective_rank: ``exp`` of the Shannon entropy of ``λ / Σλ``.
        num_outliers: eigenvalues above the fitted MP edge (the MP test's outliers).
        mp_distance: KS distance between the ESD and the fitted MP law.
        mp_variance: the fitted MP variance.
        total_variance: ``Σλ / p``.
    """

    layer: str
    index: int
    num_rows: int
    num_features: int
    top_eigenvalue: float
    entropy: float
    effective_rank: float
    num_outliers: int
    mp_distance: float
    mp_variance: float
    total_variance: float


def window_statistics(
    X: Tensor, *, layer: str = "", index: int = 0, alpha: float = 0.05, center: bool = True
) -> WindowStats:
    """The spectral statistics of one window ``X`` of shape ``[T, p]`` (any real dtype; computed in float64).

    ``center=True`` analyses the covariance (columns centred by the window mean); ``center=False`` the raw
    second moment ``XᵀX/T``, whose top eigenvalue also carries a shift of the mean.

    Raises:
        ValueError: if ``X`` is not 2-D with at least 2 rows and 2 features, or is not finite.
    """
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 2:
        raise ValueError(f"window_statistics: expected a [rows >= 2, features >= 2] window, got {tuple(X.shape)}")
    X = X.detach().to(torch.float64)
    if not bool(torch.isfinite(X).all()):
        raise ValueError(
            f"window_statistics: the activations of layer {layer!r} contain NaN or Inf; check the model's inputs"
        )
    import eigenlens.rmt.fits as fits

    T, p = X.shape
    # centring costs one degree of freedom: S = XcᵀXc/(T − 1) ~ MP(p/(T − 1), σ²) for white noise
    n = T - 1 if center else T
    Xc = X - X.mean(dim=0, keepdim=True) if center else X
    if p <= T:
        eig = torch.linalg.eigvalsh(Xc.T @ Xc / n)
    else:  # the p - T remaining eigenvalues are zero
        small = torch.linalg.eigvalsh(Xc @ Xc.T / n)
        eig = torch.cat([torch.zeros(p - T, dtype=torch.float64), small])
    eig = eig.clamp_min(0.0)
    total = float(eig.sum())
    if total <= 0.0:
        nan = math.nan
        return WindowStats(layer, index, T, p, 0.0, nan, nan, 0, nan, nan, 0.0)
    eff = float(fits.effective_rank(eig))
    try:
        mp = fits.fit_marchenko_pastur(eig, p / n, alpha=alpha)
        outliers, ks, var = len(mp.outliers), float(mp.ks), float(mp.variance)
    except ValueError:
        outliers, ks, var = 0, math.nan, math.nan
    return WindowStats(
        layer=layer,
        index=index,
        num_rows=T,
        num_features=p,
        top_eigenvalue=float(eig[-1]),
        entropy=float(fits.spectral_entropy(eig)),
        effective_rank=eff,
        num_outliers=int(outliers),
        mp_distance=ks,
        mp_variance=var,
        total_variance=total / p,
    )


def _first_tensor(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for o in output:
            if isinstance(o, Tensor):
                return o
    return None


def _rows(module: nn.Module, out: Tensor) -> Tensor:
    out = out.detach()
    if isinstance(module, nn.modules.conv._ConvNd) and out.ndim >= 3:
        out = out.movedim(1, -1)
    if out.ndim == 1:
        out = out.unsqueeze(0)
    return out.reshape(-1, out.shape[-1])


class ActivationSpectrumMonitor:
    """Watch the activation spectra of chosen layers, window by window (a context manager).

    Every forward pass of ``model`` while the monitor is open appends the hooked layers' outputs (flattened
    to ``[rows, features]``, see the module docstring) to a buffer; each time ``window`` rows are
    available a :class:`WindowStats` is computed and appended to :attr:`windows` (leftover rows wait for
    the next pass). Hooks are removed by :meth:`close` / on leaving the ``with`` block, also on an error.

    Args:
        model: the model; the monitor only reads activations (no parameters, modes or RNG touched).
        layers: module names (``model.named_modules()``), modules of ``model``, or a mix.
        window: rows per window (``T``); at least 2. Choose ``T >= p`` (features) for a ``γ <= 1`` window.
        alpha: false-positive level of the MP outlier test.
        center: analyse the window covariance (True) or the raw second moment (False, also sensitive to a
            shift of the mean, e.g. inverted images).
        max_windows: keep at most this many windows per layer (oldest dropped); None keeps all.

    Example:
        >>> import torch, eigenlens as el
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8))
        >>> g = torch.Generator().manual_seed(0)
        >>> with el.ActivationSpectrumMonitor(model, ["0"], window=64) as mon:
        ...     _ = model(torch.randn(150, 8, generator=g))
        ...     len(mon.windows["0"]), len(model[0]._forward_hooks)
        (2, 1)
        >>> len(model[0]._forward_hooks)
        0
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str | nn.Module] | str | nn.Module,
        window: int = 256,
        *,
        alpha: float = 0.05,
        center: bool = True,
        max_windows: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ValueError(f"window: expected an int >= 2 (rows per window), got {window!r}")
        if not 0.0 < float(alpha) < 1.0:
            raise ValueError(f"alpha: expected a false-positive level in (0, 1), got {alpha!r}")
        self.model = model
        self.window = window
        self.alpha = float(alpha)
        self.center = bool(center)
        self.max_windows = max_windows
        self.layers: dict[str, nn.Module] = self._resolve_layers(model, layers)
        self.windows: dict[str, list[WindowStats]] = {name: [] for name in self.layers}
        self._buffers: dict[str, list[Tensor]] = {name: [] for name in self.layers}
        self._count: dict[str, int] = {name: 0 for name in self.layers}
        self._handles: list[Any] = []
        self._sink: dict[str, list[Tensor]] | None = None
        self.reference: dict[str, dict[str, tuple[float, float]]] | None = None

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _resolve_layers(model: nn.Module, layers: Any) -> dict[str, nn.Module]:
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        named = dict(model.named_modules())
        by_id = {id(m): n for n, m in named.items()}
        out: dict[str, nn.Module] = {}
        for item in layers:
            if isinstance(item, str):
                if item not in named:
                    raise ValueError(
                        f"layers: no module named {item!r} in the model; expected one of "
                        f"{[n for n in named if n]}"
                    )
                out[item] = named[item]
            elif isinstance(item, nn.Module):
                if id(item) not in by_id:
                    raise ValueError(
                        f"layers: the module {type(item).__name__} is not part of the model; pass modules of "
                        "model or their names"
                    )
                out[by_id[id(item)] or type(item).__name__] = item
            else:
                raise TypeError(f"layers: expected module names or modules, got {type(item).__name__}")
        if not out:
            raise ValueError("layers: expected at least one layer to monitor, got none")
        return out

    def open(self) -> ActivationSpectrumMonitor:
        """Register the forward hooks (done by ``with``)."""
        if self._handles:
            return self
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_hook(self._make_hook(name)))
        return self

    def close(self) -> None:
        """Remove every hook (idempotent). Recorded windows and the calibration are kept."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> ActivationSpectrumMonitor:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _make_hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            out = _first_tensor(output)
            if out is None:
                return
            rows = _rows(module, out).to(torch.float64).cpu()
            if self._sink is not None:
                self._sink[name].append(rows)
                return
            self._buffers[name].append(rows)
            self._count[name] += rows.shape[0]
            self._drain(name)

        return hook

    def _drain(self, name: str) -> None:
        while self._count[name] >= self.window:
            data = torch.cat(self._buffers[name])
            win, rest = data[: self.window], data[self.window :]
            self._buffers[name] = [rest] if rest.shape[0] else []
            self._count[name] = rest.shape[0]
            index = (self.windows[name][-1].index + 1) if self.windows[name] else 0
            self.windows[name].append(window_statistics(
                win, layer=name, index=index, alpha=self.alpha, center=self.center
            ))
            if self.max_windows is not None and len(self.windows[name]) > self.max_windows:
                self.windows[name].pop(0)

    def reset(self) -> None:
        """Forget recorded windows and buffered rows (the calibration is kept)."""
        for name in self.layers:
            self.windows[name] = []
            self._buffers[name] = []
            self._count[name] = 0

    # ------------------------------------------------------------------ running the model
    def _collect(self, inputs: Any, batch_size: int | None) -> dict[str, Tensor]:
        """Run the model on ``inputs`` (eval mode, no grad, RNG and modes restored) and return all rows."""
        if isinstance(inputs, Tensor):
            batches: Iterable[Any] = (
                [inputs] if batch_size is None else list(torch.split(inputs, batch_size))
            )
        elif isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], Tensor) and not (
            len(inputs) == 2 and inputs[0].shape[0] == inputs[1].shape[0] and inputs[1].ndim <= 1
        ):
            batches = inputs
        else:
            raise TypeError(
                "inputs: expected a tensor of model inputs [n, ...] or a list of such batches, got "
                f"{type(inputs).__name__}; pass only the inputs (no targets)"
            )
        modes = {m: m.training for m in self.model.modules()}
        opened_here = not self._handles
        self.open()
        self._sink = {name: [] for name in self.layers}
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                self.model.eval()
                for b in batches:
                    self.model(b)
            return {name: torch.cat(rows) if rows else torch.empty(0, 0) for name, rows in self._sink.items()}
        finally:
            self._sink = None
            for m, mode in modes.items():
                m.training = mode
            if opened_here:
                self.close()

    def _window_stats(self, rows: dict[str, Tensor]) -> list[dict[str, WindowStats]]:
        counts = {name: r.shape[0] for name, r in rows.items()}
        n = min(counts.values())
        if n < self.window:
            raise ValueError(
                f"inputs: expected at least window={self.window} activation rows per layer, got {counts}; "
                "pass more inputs or build the monitor with a smaller window"
            )
        out = []
        for i in range(n // self.window):
            sl = slice(i * self.window, (i + 1) * self.window)
            out.append(
                {
                    name: window_statistics(r[sl], layer=name, index=i, alpha=self.alpha, center=self.center)
                    for name, r in rows.items()
                }
            )
        return out

    def statistics(self, inputs: Any, *, batch_size: int | None = None) -> list[dict[str, WindowStats]]:
        """Window statistics of ``inputs`` (consecutive windows of ``window`` rows; a remainder is dropped).

        The model runs in eval mode under ``no_grad``; its modes and the global RNG are restored.

        Returns:
            One ``{layer: WindowStats}`` per full window.
        """
        return self._window_stats(self._collect(inputs, batch_size))

    # ------------------------------------------------------------------ OOD score
    def calibrate(self, inputs: Any = None, *, batch_size: int | None = None) -> ActivationSpectrumMonitor:
        """Record the in-distribution reference: mean and std of every statistic over reference windows.

        Args:
            inputs: in-distribution inputs (cut into windows); None uses the windows recorded so far.
            batch_size: forward the inputs in chunks of this many examples.

        Raises:
            ValueError: with fewer than 2 reference windows.
        """
        if inputs is None:
            per_window = [
                dict(zip(self.layers, ws)) for ws in zip(*(self.windows[name] for name in self.layers))
            ]
        else:
            per_window = self.statistics(inputs, batch_size=batch_size)
        if len(per_window) < 2:
            raise ValueError(
                f"calibrate: expected at least 2 reference windows of {self.window} rows, got {len(per_window)}; "
                "pass more in-distribution inputs"
            )
        ref: dict[str, dict[str, tuple[float, float]]] = {}
        for name in self.layers:
            ref[name] = {}
            for stat in STATISTICS:
                vals = torch.tensor([_feature(w[name], stat) for w in per_window], dtype=torch.float64)
                vals = vals[torch.isfinite(vals)]
                if vals.numel() < 2:
                    continue
                mean, std = float(vals.mean()), float(vals.std())
                ref[name][stat] = (mean, max(std, 1e-2 * abs(mean), 1e-12))
        self.reference = ref
        return self

    def score_windows(self, windows: list[dict[str, WindowStats]]) -> Tensor:
        """The OOD score (RMS z-score against the reference) of each window; float64 ``[len(windows)]``."""
        if self.reference is None:
            raise ValueError("ood_score: the monitor is not calibrated; call calibrate(in_distribution_inputs) first")
        scores = []
        for w in windows:
            zs = []
            for name, stats in self.reference.items():
                for stat, (mean, std) in stats.items():
                    v = _feature(w[name], stat)
                    if math.isfinite(v):
                        zs.append((v - mean) / std)
            if not zs:
                warnings.warn("ood_score: no finite statistic in a window; its score is NaN", RuntimeWarning, 2)
                scores.append(math.nan)
            else:
                scores.append(math.sqrt(sum(z * z for z in zs) / len(zs)))
        return torch.tensor(scores, dtype=torch.float64)

    def ood_score(self, inputs: Any, *, batch_size: int | None = None) -> Tensor:
        """Out-of-distribution score of each full window of ``inputs`` (see the module docstring).

        Args:
            inputs: a tensor of model inputs ``[n, ...]`` (or a list of batches) giving at least ``window``
                activation rows; cut into consecutive windows.
            batch_size: forward in chunks of this many examples.

        Returns:
            float64 ``[num_windows]``: RMS over layers and statistics of the z-scores against the reference.

        Raises:
            ValueError: if the monitor is not calibrated or the inputs fill no window.
        """
        if self.reference is None:
            raise ValueError("ood_score: the monitor is not calibrated; call calibrate(in_distribution_inputs) first")
        return self.score_windows(self.statistics(inputs, batch_size=batch_size))


def _feature(w: WindowStats, stat: str) -> float:
    v = float(getattr(w, stat))
    if stat in _LOG_STATS:
        return math.log(v) if v > 0 else math.nan
    return v
