"""Diagnostics built on the operators (layer 5): summaries and advice that nothing else imports."""

from eigenlens._lazy import lazy_exports

_EXPORTS = {
    "curvature_summary": "eigenlens.diagnostics.curvature",
    "CurvatureSummary": "eigenlens.diagnostics.curvature",
    "BatchSizeScaling": "eigenlens.diagnostics.curvature",
    "adam_preconditioner": "eigenlens.diagnostics.curvature",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
