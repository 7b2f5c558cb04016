"""Jacobian-aware training: alignment metrics, Jacobian penalties and a spectral-monitoring callback.

Sits on top of :mod:`eigenlens.nn` (nothing in ``linalg``/``nn``/``infinite`` imports it):

* :mod:`eigenlens.train.grokalign` — GrokAlign (arXiv 2506.12284): the Jacobian–data alignment metric,
  centroid alignment, and the Jacobian-norm penalty with a one-JVP Hutchinson estimate of ``‖J‖_F``;
* :mod:`eigenlens.train.jaws` — a JAWS-style (arXiv 2603.05538) spatially weighted Jacobian penalty for
  field-to-field models;
* :mod:`eigenlens.train.callback` — :class:`SpectralCallback`, logging alignment, the Hessian's top
  eigenvalue (warm-started) and the Jacobian spectrum every ``N`` steps, with its overhead.
"""

from eigenlens._lazy import lazy_exports

_EXPORTS = {
    "jacobian_alignment": "eigenlens.train.grokalign",
    "centroid_alignment": "eigenlens.train.grokalign",
    "jacobian_frobenius": "eigenlens.train.grokalign",
    "grokalign_penalty": "eigenlens.train.grokalign",
    "GrokAlign": "eigenlens.train.grokalign",
    "jaws_weights": "eigenlens.train.jaws",
    "jaws_penalty": "eigenlens.train.jaws",
    "JAWS": "eigenlens.train.jaws",
    "SpectralCallback": "eigenlens.train.callback",
    "SpectralRecord": "eigenlens.train.callback",
}
_SUBMODULES = ("grokalign", "jaws", "callback")

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
__all__ = sorted(_EXPORTS)
