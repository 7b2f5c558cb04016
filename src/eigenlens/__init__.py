"""eigenlens: spectra of the large matrices inside machine learning.

Hessians, Gauss-Newton and Fisher matrices, Jacobians, neural tangent kernels, weight and activation
matrices — computed matrix-free with randomized numerical linear algebra and read against random
matrix theory. Layers (imports point down only):

1. :mod:`eigenlens.linalg` — linear operators, Krylov methods, estimators, sketches.
2. :mod:`eigenlens.rmt` — random matrix ensembles, limiting laws, fits and tests.
3. :mod:`eigenlens.nn` — operators and measurements from PyTorch models.
4. :mod:`eigenlens.infinite` — infinite-width (Tensor Programs) kernels.
5. :mod:`eigenlens.diagnostics`, :mod:`eigenlens.cli` — summaries, advice, command line.

Every public name below is importable from the top level (``import eigenlens as el``).
"""

from eigenlens._lazy import lazy_exports
from eigenlens.linalg import _EXPORTS as _LINALG_EXPORTS
from eigenlens.nn import _EXPORTS as _NN_EXPORTS

__version__ = "0.1.0"

_EXPORTS = {
    **_LINALG_EXPORTS,
    # nn: operators and measurements from PyTorch models
    **_NN_EXPORTS,
    # rmt result types
    "MPFit": "eigenlens.rmt.fits",
    "PowerLawFit": "eigenlens.rmt.fits",
    # diagnostics
    "curvature_summary": "eigenlens.diagnostics.curvature",
    "CurvatureSummary": "eigenlens.diagnostics.curvature",
}
_SUBMODULES = ("linalg", "rmt", "nn", "infinite", "diagnostics", "cli", "train")

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
__all__ = sorted(_EXPORTS) + list(_SUBMODULES)
