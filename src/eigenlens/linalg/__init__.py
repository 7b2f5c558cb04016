"""The engine: linear operators over torch tensors and matrix-free (randomized) numerical linear algebra.

Imports nothing else of eigenlens (only the leaf utilities ``_lazy`` and ``_result``).
"""

from eigenlens._lazy import lazy_exports

_EXPORTS = {
    # operators
    "LinearOperator": "eigenlens.linalg.operator",
    "DenseOperator": "eigenlens.linalg.operator",
    "SparseMatrixOperator": "eigenlens.linalg.operator",
    "IdentityOperator": "eigenlens.linalg.operator",
    "aslinearoperator": "eigenlens.linalg.operator",
    "linear_operator": "eigenlens.linalg.operator",
    "ConvergenceWarning": "eigenlens.linalg.exceptions",
    "NumericalWarning": "eigenlens.linalg.exceptions",
    # Krylov
    "lanczos": "eigenlens.linalg.lanczos",
    "LanczosResult": "eigenlens.linalg.lanczos",
    "eigsh": "eigenlens.linalg.eigsh",
    "EigshResult": "eigenlens.linalg.eigsh",
    "svds": "eigenlens.linalg.svds",
    "SvdsResult": "eigenlens.linalg.svds",
    # estimators
    "trace": "eigenlens.linalg.trace",
    "diagonal": "eigenlens.linalg.trace",
    "TraceEstimate": "eigenlens.linalg.trace",
    "DiagonalEstimate": "eigenlens.linalg.trace",
    "spectral_density": "eigenlens.linalg.slq",
    "SpectralDensity": "eigenlens.linalg.slq",
    # randomized NLA
    "sketch": "eigenlens.linalg.sketch",
    "lstsq": "eigenlens.linalg.lstsq",
    "LstsqResult": "eigenlens.linalg.lstsq",
    "randomized_svd": "eigenlens.linalg.lowrank",
    "randomized_eigsh": "eigenlens.linalg.lowrank",
    "nystrom": "eigenlens.linalg.lowrank",
    "LowRank": "eigenlens.linalg.lowrank",
    "RandomizedSvdResult": "eigenlens.linalg.lowrank",
    "SketchOperator": "eigenlens.linalg.sketch",
}
_SUBMODULES = ("operator", "random", "exceptions", "sketch", "sampling", "streaming", "distributed")

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
__all__ = sorted(_EXPORTS)
