r"""Per-layer weight spectra read against Marchenko–Pastur (the measurement users run weightwatcher for).

For every weight matrix ``W`` of a model (``[rows, cols]``, oriented so that ``X`` is ``[N, M]`` with
``N = max(rows, cols) >= M = min(rows, cols)``) we compute the empirical spectral distribution (ESD) of the
``M × M`` Gram matrix

.. math:: S = X^\top X / N ,

in float64 (bfloat16/float16/float32 weights are upcast first, never analysed in half precision). With this
normalisation a matrix of iid entries of variance ``σ²`` has, as ``N → ∞`` with ``M/N → γ``, the
Marchenko–Pastur law with ``variance = σ²`` and ratio ``γ = M/N`` (edges ``σ²(1 ± √γ)²``): the fitted MP
variance *is* the initialisation variance of the entries (``1/(3·fan_in)`` for PyTorch's default
``nn.Linear`` init). The eigenvalues are the squared singular values of ``W`` divided by ``N``
(weightwatcher reports the unnormalised squared singular values: multiply ours by ``N`` to compare).

How layers become matrices (one convention, used everywhere in eigenlens):

* ``nn.Linear`` (and subclasses): ``weight`` ``[out, in]``.
* ``nn.Conv1d/2d/3d`` and transposed convolutions: the kernel ``[c_out, c_in/groups, *kernel]`` is reshaped
  to one matrix ``[c_out, c_in/groups · prod(kernel)]`` (rows = output channels, columns = the receptive
  field). Its entries are iid at init, so Marchenko–Pastur applies exactly. (weightwatcher instead splits a
  conv kernel into ``prod(kernel)`` matrices ``[c_out, c_in]`` and pools their eigenvalues; the two agree on
  the Frobenius norm but not on ``λ_max``.)
* ``nn.Embedding`` / ``nn.EmbeddingBag``: ``weight`` ``[num_embeddings, embedding_dim]``.
* ``nn.MultiheadAttention``: ``in_proj_weight`` ``[3E, E]`` is split into its Q, K and V blocks ``[E, E]``
  (named ``<module>.q``, ``.k``, ``.v``; or ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when
  ``kdim``/``vdim`` differ); ``out_proj`` is a ``Linear`` child and is analysed as such.

Every module that directly owns a parameter with two or more dimensions appears in the result, either
analysed or with a ``skipped_reason`` (unsupported layer type, non-finite or all-zero weights, too few
eigenvalues, an uninitialised lazy parameter). Modules without such a parameter (activations, norms,
biases) hold no weight matrix and are not listed.

Small layers (``M <= max_dense``) get all ``M`` eigenvalues from ``torch.linalg.eigvalsh`` of the float64
Gram matrix and the Marchenko–Pastur fit of :func:`eigenlens.rmt.fit_marchenko_pastur`. Very large layers
get the top ``k`` eigenvalues by a randomized method (:func:`eigenlens.linalg.eigsh` on the matrix-free Gram
operator when available, otherwise the singular values of a randomized range sketch with power iterations);
the MP variance is then estimated from the exact trace ``‖W‖_F²/N`` minus the outliers, and the KS distance
and entropy (which need the whole ESD) are NaN. ``LayerSpectrum.method`` says which path was used.

References:
    Marchenko & Pastur (1967); Martin & Mahoney, *Implicit Self-Regularization in Deep Neural Networks*
    (arXiv 1810.01075) for reading weight ESDs against MP and heavy-tailed fits; Clauset, Shalizi & Newman
    (arXiv 0706.1062) for the power-law fit.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from eigenlens._result import Result, to_builtin
from eigenlens.linalg.exceptions import ConvergenceWarning

__all__ = [
    "DEFAULT_MAX_DENSE",
    "DEFAULT_TOP_K",
    "LayerMatrix",
    "LayerSpectrum",
    "WeightSpectra",
    "layer_matrices",
    "plot_layer",
    "weight_spectra",
]

#: layers whose smaller dimension exceeds this get randomized top-k eigenvalues instead of ``eigvalsh``.
DEFAULT_MAX_DENSE = 4096
#: number of top eigenvalues computed on the randomized path.
DEFAULT_TOP_K = 64
#: a power-law tail is reported only when the bootstrap p-value reaches this (Clauset–Shalizi–Newman).
POWER_LAW_MIN_P_VALUE = 0.1


# ---------------------------------------------------------------------------- layers -> matrices
@dataclasses.dataclass
class LayerMatrix:
    """One weight matrix of a model, as :func:`layer_matrices` finds it.

    Attributes:
        name: module name (``model.named_modules()``), with ``.q``/``.k``/``.v`` for attention parts.
        kind: ``"linear"``, ``"conv2d"``, ``"embedding"``, ``"attention.q"``, ... or the lower-cased type
            name of an unsupported module.
        shape: shape of the original parameter (or attention block).
        matrix: the 2-D weight ``[rows, cols]`` (a detached view, original dtype), or None when skipped.
        skipped_reason: why the layer cannot be analysed, or None.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    matrix: Tensor | None
    skipped_reason: str | None = None


_SUPPORTED = "nn.Linear, nn.Conv1d/2d/3d (and transposed), nn.Embedding(Bag), nn.MultiheadAttention"


def _is_uninitialized(p: Tensor) -> bool:
    return isinstance(p, nn.parameter.UninitializedParameter)


def _matrix_entry(name: str, kind: str, W: Tensor, reshape: bool = False) -> LayerMatrix:
    if _is_uninitialized(W):
        return LayerMatrix(name, kind, (), None, "uninitialized (lazy) parameter: run one forward pass first")
    shape = tuple(W.shape)
    W = W.detach()
    M = W.reshape(W.shape[0], -1) if reshape else W
    return LayerMatrix(name, kind, shape, M)


def layer_matrices(model: nn.Module) -> list[LayerMatrix]:
    """List the weight matrices of ``model`` (see the module docstring for the conventions).

    Args:
        model: any ``nn.Module``; it is only read.

    Returns:
        One :class:`LayerMatrix` per analysable matrix and one (with ``skipped_reason``) per module that owns a
        ≥2-D parameter of an unsupported type, in ``named_modules()`` order.
    """
    out: list[LayerMatrix] = []
    for mname, module in model.named_modules():
        name = mname or type(module).__name__
        if isinstance(module, nn.MultiheadAttention):
            if module.in_proj_weight is not None:
                W = module.in_proj_weight
                if _is_uninitialized(W):
                    out.append(_matrix_entry(name, "attention", W))
                    continue
                for part, block in zip("qkv", W.detach().chunk(3, dim=0)):
                    out.append(_matrix_entry(f"{name}.{part}", f"attention.{part}", block))
            else:
                for part in "qkv":
                    W = getattr(module, f"{part}_proj_weight")
                    out.append(_matrix_entry(f"{name}.{part}", f"attention.{part}", W))
            continue
        if isinstance(module, nn.Linear):
            out.append(_matrix_entry(name, "linear", module.weight))
            continue
        if isinstance(module, nn.modules.conv._ConvNd):
            kind = type(module).__name__.lower() if type(module).__module__.startswith("torch.nn") else "conv"
            out.append(_matrix_entry(name, kind, module.weight, reshape=True))
            continue
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            out.append(_matrix_entry(name, "embedding", module.weight))
            continue
        own = [
            (pn, p) for pn, p in module.named_parameters(recurse=False) if _is_uninitialized(p) or p.ndim >= 2
        ]
        if own:
            params = ", ".join(f"{pn} {tuple(p.shape) if not _is_uninitialized(p) else '(lazy)'}" for pn, p in own)
            out.append(
                LayerMatrix(
                    name,
                    type(module).__name__.lower(),
                    () if _is_uninitialized(own[0][1]) else tuple(own[0][1].shape),
                    None,
                    f"unsupported layer type {type(module).__name__} (parameters: {params}); "
                    f"supported: {_SUPPORTED}",
                )
            )
    return out


# ---------------------------------------------------------------------------- results
@dataclasses.dataclass
class LayerSpectrum(Result):
    """The spectrum of one weight matrix read against Marchenko–Pastur.

    Attributes:
        name: module name (attention parts end in ``.q``/``.k``/``.v``).
        kind: ``"linear"``, ``"conv2d"``, ``"embedding"``, ``"attention.q"``, ...
        shape: shape of the original parameter.
        matrix_shape: ``(N, M)``, the analysed matrix oriented with ``N >= M``.
        ratio: ``γ = M / N`` in (0, 1].
        dtype: the parameter's dtype (the analysis is always float64).
        eigenvalues: float64 ``[M]`` (``eigvalsh``) or ``[k]`` (randomized top-k), ascending: the
            eigenvalues of ``XᵀX/N`` (squared singular values of ``W`` over ``N``); None when skipped.
        method: ``"eigvalsh"`` or ``"randomized top-k"`` (None when skipped).
        mp: the Marchenko–Pastur fit (:class:`eigenlens.rmt.MPFit`): variance (≈ the entries' variance for
            noise), edges, outliers, KS distance.
        num_outliers: eigenvalues above the MP upper edge by the finite-size test of ``mp``.
        false_positive_level: the level ``alpha`` of that test (probability that pure noise shows ≥1 outlier).
        power_law: the Clauset–Shalizi–Newman power-law fit of the tail when it fits (bootstrap p-value
            ``>= 0.1``) and the layer is not pure MP noise; None otherwise.
        power_law_p_value: bootstrap p-value of the power-law fit; None when not computed (``fit_power_law``
            off, too few eigenvalues, or a pure-noise layer: no outliers, where a tail fit is meaningless).
        lambda_max: the largest eigenvalue.
        stable_rank: ``Σλ / λ_max = ‖W‖_F² / ‖W‖_2²`` (exact on both paths).
        entropy: spectral entropy of the normalised eigenvalues (``eigenlens.rmt.spectral_entropy``); NaN on
            the randomized path.
        skipped_reason: why the layer was not analysed, or None.
        power_law_candidate: the power-law fit whatever its p-value (α and x_min by minimal KS, for
            comparison with other tools; its ``p_value`` is None on pure-noise layers).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int] | None = None
    ratio: float = math.nan
    dtype: str = ""
    eigenvalues: Tensor | None = None
    method: str | None = None
    mp: Any = None
    num_outliers: int = 0
    false_positive_level: float = math.nan
    power_law: Any = None
    power_law_p_value: float | None = None
    lambda_max: float = math.nan
    stable_rank: float = math.nan
    entropy: float = math.nan
    skipped_reason: str | None = None
    power_law_candidate: Any = dataclasses.field(default=None, repr=False)

    @property
    def skipped(self) -> bool:
        """Whether the layer was skipped (see :attr:`skipped_reason`)."""
        return self.skipped_reason is not None

    def row(self) -> dict[str, Any]:
        """The scalar summary of this layer as a flat dict (one row of :meth:`WeightSpectra.to_pandas`)."""
        mp = self.mp
        pl = self.power_law
        N, M = self.matrix_shape if self.matrix_shape else (None, None)
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": "x".join(map(str, self.shape)),
            "N": N,
            "M": M,
            "ratio": self.ratio,
            "method": self.method,
            "lambda_max": self.lambda_max,
            "mp_variance": getattr(mp, "variance", math.nan) if mp is not None else math.nan,
            "mp_upper_edge": getattr(mp, "upper_edge", math.nan) if mp is not None else math.nan,
            "mp_ks": getattr(mp, "ks", math.nan) if mp is not None else math.nan,
            "num_outliers": self.num_outliers,
            "false_positive_level": self.false_positive_level,
            "alpha": pl.alpha if pl is not None else math.nan,
            "xmin": pl.xmin if pl is not None else math.nan,
            "power_law_p_value": self.power_law_p_value if self.power_law_p_value is not None else math.nan,
            "stable_rank": self.stable_rank,
            "entropy": self.entropy,
            "skipped_reason": self.skipped_reason,
        }

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Shortcut for :func:`plot_layer`."""
        return plot_layer(self, ax=ax, **kwargs)


class WeightSpectra(list):
    """A ``list[LayerSpectrum]`` with table conversions.

    Attributes:
        interrupted: True when the computation was interrupted (Ctrl-C) and the list holds only the layers
            finished before.
    """

    interrupted: bool = False

    def to_dict(self) -> list[dict[str, Any]]:
        """Every layer's :meth:`LayerSpectrum.to_dict`."""
        return [layer.to_dict() for layer in self]

    def to_json(self, path: str | None = None, **kwargs: Any) -> str:
        """Serialise as a JSON list; also write it to ``path`` when given."""
        import json

        text = json.dumps(to_builtin(self.to_dict()), indent=kwargs.pop("indent", 2), **kwargs)
        if path is not None:
            with open(path, "w") as fh:
                fh.write(text)
        return text

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per layer (see :meth:`LayerSpectrum.row`)."""
        return [layer.row() for layer in self]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` with one row per layer (requires pandas)."""
        try:
            import pandas as pd
        except ImportError as err:  # pragma: no cover
            raise ImportError("to_pandas() needs pandas: pip install pandas") from err
        return pd.DataFrame(self.rows())

    def table(self) -> str:
        """A readable fixed-width text table (what ``eigenlens weights`` prints)."""
        head = ("layer", "kind", "N x M", "λ_max", "MP σ²", "edge", "KS", "out", "α", "p(α)", "srank", "entropy")
        lines = []
        for r in self.rows():
            if r["skipped_reason"] is not None:
                lines.append((r["name"], r["kind"], "-", f"skipped: {r['skipped_reason']}"))
                continue
            lines.append(
                (
                    r["name"],
                    r["kind"],
                    f"{r['N']}x{r['M']}",
                    _fmt(r["lambda_max"]),
                    _fmt(r["mp_variance"]),
                    _fmt(r["mp_upper_edge"]),
                    _fmt(r["mp_ks"], 3),
                    str(r["num_outliers"]),
                    _fmt(r["alpha"], 3),
                    _fmt(r["power_law_p_value"], 2),
                    _fmt(r["stable_rank"], 4),
                    _fmt(r["entropy"], 3),
                )
            )
        full = [row for row in lines if len(row) == len(head)]
        widths = [max(len(h), *(len(row[i]) for row in full)) if full else len(h) for i, h in enumerate(head)]
        widths[0] = max(widths[0], *(len(row[0]) for row in lines)) if lines else widths[0]
        widths[1] = max(widths[1], *(len(row[1]) for row in lines)) if lines else widths[1]
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
        out.append("  ".join("-" * w for w in widths))
        for row in lines:
            if len(row) == len(head):
                out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)))
            else:
                out.append("  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[3]]))
        return "\n".join(out)


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


# ---------------------------------------------------------------------------- spectra
def _rmt() -> Any:
    import eigenlens.rmt.fits as fits

    return fits


def _top_eigenvalues(X: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Top-``k`` eigenvalues (descending) of ``XᵀX/N`` for ``X [N, M]``, matrix-free."""
    N, M = X.shape
    k = min(k, M)
    try:
        from eigenlens.linalg.eigsh import eigsh
    except ImportError:
        eigsh = None
    if eigsh is not None:
        from eigenlens.linalg.operator import linear_operator

        op = linear_operator(
            lambda V: X.T @ (X @ V) / N, (M, M), dtype=X.dtype, device=X.device, symmetric=True, psd=True
        )
        res = eigsh(op, k=k, which="LA", tol=1e-8, generator=generator)
        if not bool(res.converged):
            warnings.warn(
                f"weight_spectra: eigsh did not converge for the top {k} eigenvalues of a {N}x{M} layer; "
                "the values are best-effort",
                ConvergenceWarning,
                stacklevel=3,
            )
        return torch.sort(res.eigenvalues.to(torch.float64), descending=True).values
    # Randomized range finder with power iterations (Halko, Martinsson & Tropp, arXiv 0909.4061).
    p = min(M - k, max(10, k // 2))
    Omega = torch.randn(M, k + p, generator=generator, dtype=torch.float64).to(X.device)
    Q = torch.linalg.qr(X @ Omega).Q
    for _ in range(6):
        Q = torch.linalg.qr(X.T @ Q).Q
        Q = torch.linalg.qr(X @ Q).Q
    s = torch.linalg.svdvals(Q.T @ X)
    return (s[:k] ** 2) / N


def _mp_from_top(top: Tensor, trace: float, N: int, M: int, alpha: float) -> Any:
    """A Marchenko–Pastur fit from the top-k eigenvalues (descending) and the exact trace (randomized path).

    The same sequential Tracy–Widom test as :func:`eigenlens.rmt.fit_marchenko_pastur` (Kritchman & Nadler):
    with ``r`` outliers peeled off, the bulk variance is ``(trace − Σ_{i<r} λ_i) / (M − r)`` (exact, from
    ``‖W‖_F²``) and ``λ_{r+1}`` is an outlier while it exceeds the level-``alpha`` edge cut for ``M − r``
    dimensions. The KS distance needs the whole ESD and is NaN.
    """
    from eigenlens.rmt.edges import edge_threshold

    fits = _rmt()
    gamma = M / N
    y = top.detach().cpu().double()
    r = 0
    threshold = math.inf
    variance = trace / M
    while r < y.numel():
        variance = (trace - float(y[:r].sum())) / (M - r)
        threshold = variance * edge_threshold(M - r, N, alpha=alpha)
        if float(y[r]) > threshold:
            r += 1
        else:
            break
    variance = (trace - float(y[:r].sum())) / (M - r)
    if r == y.numel():
        warnings.warn(
            f"weight_spectra: all {r} computed top eigenvalues of a {N}x{M} layer are outliers; raise k to find "
            "the edge of the bulk (the variance estimate still excludes them)",
            ConvergenceWarning,
            stacklevel=4,
        )
    return fits.MPFit(
        variance=float(variance),
        lower_edge=float(variance * (1 - math.sqrt(gamma)) ** 2),
        upper_edge=float(variance * (1 + math.sqrt(gamma)) ** 2),
        outliers=y[:r].clone(),
        num_outliers=r,
        ks=math.nan,
        ratio=gamma,
        alpha=alpha,
        threshold=float(threshold),
        num_eigenvalues=M,
        num_samples=N,
        num_bulk=M - r,
    )


def _analyse(
    lm: LayerMatrix,
    *,
    max_dense: int,
    k: int,
    fit_power_law: bool,
    num_bootstrap: int,
    alpha: float,
    min_size: int,
    generator: torch.Generator,
) -> LayerSpectrum:
    if lm.skipped_reason is not None or lm.matrix is None:
        return LayerSpectrum(lm.name, lm.kind, lm.shape, skipped_reason=lm.skipped_reason)
    W = lm.matrix
    base = {"name": lm.name, "kind": lm.kind, "shape": lm.shape, "dtype": str(W.dtype).replace("torch.", "")}
    if not W.is_floating_point():
        return LayerSpectrum(**base, skipped_reason=f"non-floating-point weight ({W.dtype})")
    rows, cols = W.shape
    N, M = max(rows, cols), min(rows, cols)
    base.update(matrix_shape=(N, M), ratio=M / N if N else math.nan)
    if not bool(torch.isfinite(W).all()):
        return LayerSpectrum(**base, skipped_reason="the weight contains NaN or Inf")
    if M < min_size:
        return LayerSpectrum(
            **base,
            skipped_reason=(
                f"too few eigenvalues for a spectral fit: the smaller dimension is {M} < min_size={min_size}"
            ),
        )
    with torch.no_grad():
        X = W.to(torch.float64)  # upcast: never analyse half precision
        if rows < cols:
            X = X.T
        trace = float((X * X).sum()) / N
        if trace == 0.0:
            return LayerSpectrum(**base, skipped_reason="the weight is all zeros")
        fits = _rmt()
        if M <= max_dense:
            eig = _gram_eigenvalues(X, N)
            lam_max = float(eig[-1])
            mp = fits.fit_marchenko_pastur(eig, M / N, alpha=alpha)
            method = "eigvalsh"
            entropy = float(fits.spectral_entropy(eig))
        else:
            top = _top_eigenvalues(X, k, generator)
            lam_max = float(top[0])
            mp = _mp_from_top(top, trace, N, M, alpha)
            eig = torch.flip(top, dims=(0,))
            method = "randomized top-k"
            entropy = math.nan
    num_outliers = int(mp.num_outliers)
    pl_fit = None
    pl = None
    p_value = None
    if fit_power_law:
        positive = eig[eig > 0]
        # the bootstrap p-value (the costly part) only where a tail can mean something: a power law fitted to
        # a pure MP bulk is noise, so noise layers get α and x_min (one O(M²) scan) but no p-value
        nb = num_bootstrap if num_outliers > 0 else 0
        try:
            pl_fit = fits.fit_power_law(positive, generator=generator, num_bootstrap=nb)
        except ValueError:
            pl_fit = None
        if pl_fit is not None and pl_fit.p_value is not None:
            p_value = float(pl_fit.p_value)
            if p_value >= POWER_LAW_MIN_P_VALUE:
                pl = pl_fit
    return LayerSpectrum(
        **base,
        eigenvalues=eig,
        method=method,
        mp=mp,
        num_outliers=num_outliers,
        false_positive_level=float(alpha),
        power_law=pl,
        power_law_p_value=p_value,
        lambda_max=lam_max,
        stable_rank=trace / lam_max,
        entropy=entropy,
        power_law_candidate=pl_fit,
    )


def _select(mats: list[LayerMatrix], layers: Sequence[str] | str | None) -> list[LayerMatrix]:
    if layers is None:
        return mats
    if isinstance(layers, str):
        layers = [layers]
    if not all(isinstance(p, str) for p in layers):
        raise TypeError(
            f"layers: expected None, a name/glob pattern or a list of them, got {[type(p).__name__ for p in layers]}"
        )

    def matches(lm: LayerMatrix, pattern: str) -> bool:
        base = lm.name.rsplit(".", 1)[0] if lm.kind.startswith("attention.") else lm.name
        return fnmatch.fnmatchcase(lm.name, pattern) or fnmatch.fnmatchcase(base, pattern)

    chosen = [lm for lm in mats if any(matches(lm, p) for p in layers)]
    unmatched = [p for p in layers if not any(matches(lm, p) for lm in mats)]
    if unmatched:
        raise ValueError(
            f"layers: no weight matrix matches {unmatched}; expected names or glob patterns among "
            f"{[lm.name for lm in mats]}"
        )
    return chosen


def _gram_eigenvalues(X: Tensor, N: int) -> Tensor:
    """All eigenvalues of ``XᵀX / N`` (float64 ``[M]``, ascending, clamped at 0).

    On the CPU, LAPACK's values-only divide and conquer through SciPy (``dsyevd`` with ``jobz='N'``) is about
    twice as fast as ``torch.linalg.eigvalsh`` for M ~ 1000 with the same accuracy; elsewhere torch's is used.
    """
    G = X.T @ X / N
    if G.device.type == "cpu":
        import scipy.linalg

        values = scipy.linalg.eigvalsh(G.numpy(), driver="evd", check_finite=False)
        return torch.from_numpy(values).clamp_min(0.0)
    return torch.linalg.eigvalsh(G).clamp_min(0.0)


def weight_spectra(
    model: nn.Module,
    *,
    layers: Sequence[str] | str | None = None,
    max_dense: int = DEFAULT_MAX_DENSE,
    k: int = DEFAULT_TOP_K,
    fit_power_law: bool = True,
    num_bootstrap: int = 100,
    alpha: float = 0.05,
    min_size: int = 8,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
) -> WeightSpectra:
    """Per-layer weight spectra of ``model``, each read against the Marchenko–Pastur law.

    For each weight matrix ``W`` (see the module docstring for how layers become ``[N, M]`` matrices) the
    eigenvalues of ``XᵀX/N`` are computed in float64 and fitted with
    :func:`eigenlens.rmt.fit_marchenko_pastur` (variance from the bulk, edges ``σ²(1 ± √γ)²``, outliers by a
    finite-size calibrated edge test at false-positive level ``alpha``, KS distance); a power law is fitted
    to the tail with :func:`eigenlens.rmt.fit_power_law` and reported only when it fits (bootstrap p-value
    ``>= 0.1``) and the layer is not pure MP noise (a power law fitted to an MP bulk is noise, so the bootstrap
    is not even run there).

    Args:
        model: the model; only read (parameters, gradients, modes and RNG state are left as they were).
        layers: None for all, or module names / glob patterns (``"encoder.*"``); an attention part
            ``"attn.q"`` is also matched by ``"attn"``.
        max_dense: layers with ``M = min(rows, cols) <= max_dense`` use dense ``eigvalsh`` of the
            ``M × M`` Gram matrix (``O(N M²)``); larger ones the randomized top-``k`` path.
        k: number of top eigenvalues on the randomized path.
        fit_power_law: whether to fit the power-law tail.
        num_bootstrap: bootstrap samples for the power-law p-value (run only on layers with MP outliers; the
            bootstrap is the slowest part of the analysis).
        alpha: false-positive level of the outlier test (probability that a pure-noise layer shows an outlier).
        min_size: layers with fewer than this many eigenvalues are skipped (with the reason).
        generator: randomness of the bootstrap and the randomized path; None = a fresh generator seeded 0.
        progress: show a tqdm bar over layers; None shows it only on a terminal.

    Returns:
        A :class:`WeightSpectra` (a list of :class:`LayerSpectrum`, one per weight matrix, skipped layers
        included with their reason). On Ctrl-C the layers finished so far are returned with
        ``interrupted=True``.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``.
        ValueError: if the model has no analysable layer, a ``layers`` pattern matches nothing, or an argument
            is out of range.

    Example:
        >>> import torch, eigenlens as el
        >>> layer = torch.nn.Linear(400, 200)
        >>> with torch.no_grad():  # PyTorch's default init U(-1/√400, 1/√400), drawn reproducibly
        ...     _ = layer.weight.uniform_(-0.05, 0.05, generator=torch.Generator().manual_seed(0))
        >>> spectra = el.weight_spectra(layer, fit_power_law=False)
        >>> s = spectra[0]
        >>> s.matrix_shape, s.method, s.num_outliers
        ((400, 200), 'eigvalsh', 0)
        >>> round(s.mp.variance * 3 * 400, 1)  # default init: variance 1/(3 fan_in)
        1.0
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(max_dense, int) or max_dense < 1:
        raise ValueError(f"max_dense: expected a positive int, got {max_dense!r}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive int, got {k!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha: expected a false-positive level in (0, 1), got {alpha!r}")
    if isinstance(num_bootstrap, bool) or not isinstance(num_bootstrap, int) or num_bootstrap < 0:
        raise ValueError(f"num_bootstrap: expected an int >= 0, got {num_bootstrap!r}")
    if not isinstance(min_size, int) or min_size < 2:
        raise ValueError(f"min_size: expected an int >= 2, got {min_size!r}")
    from eigenlens.linalg.random import resolve_generator

    g = resolve_generator(generator)
    mats = layer_matrices(model)
    if not any(lm.matrix is not None for lm in mats) and not any(
        lm.skipped_reason and lm.skipped_reason.startswith("uninitialized") for lm in mats
    ):
        found = sorted({type(m).__name__ for m in model.modules()})
        raise ValueError(
            "weight_spectra: the model has no analysable layer; expected at least one of "
            f"{_SUPPORTED}, got modules {found}"
        )
    mats = _select(mats, layers)
    from tqdm.auto import tqdm

    result = WeightSpectra()
    bar = tqdm(mats, desc="weight spectra", unit="layer", disable=None if progress is None else not progress)
    try:
        for lm in bar:
            result.append(
                _analyse(
                    lm, max_dense=max_dense, k=k, fit_power_law=fit_power_law, num_bootstrap=num_bootstrap,
                    alpha=float(alpha),
                    min_size=min_size, generator=g,
                )
            )
    except KeyboardInterrupt:
        result.interrupted = True
        warnings.warn(
            f"weight_spectra: interrupted; returning the {len(result)} of {len(mats)} layers finished",
            RuntimeWarning,
            stacklevel=2,
        )
    finally:
        bar.close()
    return result


# ---------------------------------------------------------------------------- plot
def plot_layer(spec: LayerSpectrum, ax: Any = None, *, bins: int | str = "auto", log: bool = False) -> Any:
    """Plot one layer's ESD histogram with the fitted Marchenko–Pastur density and its upper edge.

    Args:
        spec: a :class:`LayerSpectrum` that was not skipped.
        ax: a matplotlib Axes; None creates a new figure.
        bins: histogram bins (as ``numpy.histogram``).
        log: use a log scale on the x axis.

    Returns:
        The matplotlib Axes.

    Raises:
        ValueError: if the layer was skipped (nothing to plot).
    """
    if spec.eigenvalues is None or spec.mp is None:
        raise ValueError(f"plot_layer: layer {spec.name!r} has no spectrum (skipped: {spec.skipped_reason})")
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    eig = spec.eigenvalues.detach().cpu().numpy()
    ax.hist(eig, bins=bins, density=True, alpha=0.6, color="tab:blue", label=f"ESD ({spec.method})")
    mp = spec.mp
    upper = float(mp.upper_edge)
    if spec.method == "eigvalsh":
        from eigenlens.rmt import marchenko_pastur

        law = marchenko_pastur(spec.ratio, float(mp.variance))
        x = np.linspace(max(float(mp.lower_edge), 1e-12), upper, 400)
        y = np.asarray(law.pdf(torch.as_tensor(x, dtype=torch.float64)), dtype=float)
        ax.plot(x, y, color="tab:red", lw=2, label=f"MP fit (σ²={float(mp.variance):.3g})")
    ax.axvline(upper, color="tab:red", ls="--", lw=1, label="MP upper edge")
    if spec.num_outliers:
        out = np.asarray(to_builtin(mp.outliers), dtype=float)
        ax.plot(out, np.zeros_like(out), "k^", ms=6, label=f"{spec.num_outliers} outliers")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("eigenvalue of WᵀW/N")
    ax.set_ylabel("density")
    ax.set_title(f"{spec.name} {spec.kind} {spec.matrix_shape}")
    ax.legend(fontsize=8)
    return ax
