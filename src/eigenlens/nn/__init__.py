"""Operators and measurements from PyTorch models (layer 3: builds on ``linalg`` and ``rmt``)."""

from eigenlens._lazy import lazy_exports

_EXPORTS = {
    "hessian": "eigenlens.nn.curvature",
    "ggn": "eigenlens.nn.curvature",
    "fisher": "eigenlens.nn.curvature",
    "jacobian": "eigenlens.nn.jacobian",
    "jacobian_spectrum": "eigenlens.nn.jacobian",
    "empirical_ntk": "eigenlens.nn.ntk",
    "weight_spectra": "eigenlens.nn.weights",
    "LayerSpectrum": "eigenlens.nn.weights",
    "ActivationSpectrumMonitor": "eigenlens.nn.activations",
    "spectral_compress": "eigenlens.nn.compress",
    "JacobianOperator": "eigenlens.nn.jacobian",
    "JacobianSpectrum": "eigenlens.nn.jacobian",
    "WeightSpectra": "eigenlens.nn.weights",
    "plot_layer": "eigenlens.nn.weights",
    "WindowStats": "eigenlens.nn.activations",
    "LowRankLinear": "eigenlens.nn.compress",
    "CompressionResult": "eigenlens.nn.compress",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
