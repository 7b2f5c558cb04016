"""Infinite-width limits of PyTorch modules by Tensor Programs (Yang, arXiv 1902.04760).

``program(model, x)`` traces a module into a straight-line tensor program, ``kernels(model, x1, x2)``
computes its NNGP and NTK in the infinite-width limit, and ``predict`` turns them into infinite-ensemble
predictions (NNGP posterior, NTK gradient flow). Conventions match neural-tangents (see API.md).
"""

from eigenlens._lazy import lazy_exports

_EXPORTS = {
    "kernels": "eigenlens.infinite.limit",
    "Kernels": "eigenlens.infinite.limit",
    "program": "eigenlens.infinite.trace",
    "TensorProgram": "eigenlens.infinite.ir",
    "Prediction": "eigenlens.infinite.posterior",
    "predict": "eigenlens.infinite.posterior",
    "jacobian_spectrum_law": "eigenlens.infinite.jacobian_law",
    "JacobianSpec": "eigenlens.infinite.jacobian_law",
    "JacobianLaw": "eigenlens.infinite.jacobian_law",
    "mean_field_fixed_point": "eigenlens.infinite.jacobian_law",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
