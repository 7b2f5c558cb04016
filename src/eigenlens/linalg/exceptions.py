"""Warnings for numerical trouble. They are never silenced by eigenlens; filter them yourself if you must."""

__all__ = ["ConvergenceWarning", "NumericalWarning"]


class ConvergenceWarning(UserWarning):
    """An iterative method stopped (budget exhausted) before meeting its tolerance; results are best-effort."""


class NumericalWarning(UserWarning):
    """A computation lost accuracy (breakdown, cancellation, ill-conditioning) but still returned a result."""
