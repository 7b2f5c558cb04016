"""Input conversion and validation shared by the rmt modules (internal).

Every public rmt function that takes eigenvalues accepts a ``torch.Tensor``, a ``numpy.ndarray`` or a
sequence of numbers, and works in float64 NumPy internally; errors are ``ValueError``/``TypeError`` whose
message states what was expected, what was received and how to fix it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["as_real_array", "as_complex_array", "apply_elementwise", "check_positive", "check_nonnegative"]


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().resolve_conj().numpy()
    return np.asarray(x)


def as_real_array(x: Any, name: str = "eigenvalues", *, allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a 1-D float64 array; raise on complex, empty or non-finite input."""
    try:
        arr = _to_numpy(x)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a 1-D torch.Tensor, numpy array or sequence of real numbers; "
            f"got {type(x).__name__}. Fix: pass e.g. torch.linalg.eigvalsh(M)."
        ) from err
    if np.iscomplexobj(arr):
        raise TypeError(
            f"{name} must be real; got a complex array of dtype {arr.dtype}. "
            "Fix: pass the eigenvalues of a symmetric/Hermitian matrix (eigvalsh), or .real if the imaginary "
            "parts are round-off."
        )
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must hold real numbers; got dtype {arr.dtype}. Fix: convert to float64 first.")
    arr = np.asarray(arr, dtype=np.float64).reshape(-1) if arr.ndim <= 1 else None
    if arr is None:
        raise ValueError(
            f"{name} must be 1-D (a list of eigenvalues); got shape {tuple(_to_numpy(x).shape)}. "
            "Fix: flatten it or pass one spectrum at a time."
        )
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} must be non-empty; got an empty array. Fix: pass at least one eigenvalue.")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} must be finite; got {int(bad.sum())} NaN/Inf value(s) out of {arr.size}. "
            "Fix: check the matrix for NaN/Inf before taking its spectrum."
        )
    return arr


def as_complex_array(z: Any, name: str = "z") -> np.ndarray:
    """Return ``z`` as a complex128 array of any shape (real input is promoted); raise on non-finite."""
    arr = np.asarray(_to_numpy(z), dtype=np.complex128)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite; got NaN/Inf values. Fix: remove them before the test.")
    return arr


def apply_elementwise(fn: Callable[[np.ndarray], np.ndarray], x: Any, *, complex_input: bool = False) -> Any:
    """Evaluate the NumPy function ``fn`` on ``x`` and return the same kind of object.

    Torch in -> torch out (float64 unless the input was a floating dtype, same device, no autograd);
    NumPy/sequence in -> ``numpy.ndarray`` out; a Python/NumPy scalar in -> ``float`` out.
    """
    if isinstance(x, torch.Tensor):
        arr = _real_or_complex(x.detach().cpu().resolve_conj().numpy(), complex_input)
        out = np.asarray(fn(arr))
        if out.dtype == bool:
            return torch.from_numpy(out).to(device=x.device)
        dtype = x.dtype if (x.is_floating_point() and not complex_input) else torch.float64
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float64)).to(device=x.device, dtype=dtype)
    if np.isscalar(x) or (isinstance(x, np.ndarray) and x.ndim == 0):
        arr = _real_or_complex(np.asarray(x), complex_input)
        out = np.asarray(fn(arr))
        return bool(out) if out.dtype == bool else float(out)
    arr = _real_or_complex(np.asarray(x), complex_input)
    return np.asarray(fn(arr))


def _real_or_complex(arr: np.ndarray, complex_input: bool) -> np.ndarray:
    if complex_input:
        return arr.astype(np.complex128)
    if np.iscomplexobj(arr):
        raise TypeError(
            f"this law lives on the real line; got complex input of dtype {arr.dtype}. "
            "Fix: pass real points (use .real), or use a complex-plane law (circular, elliptic)."
        )
    return arr.astype(np.float64)


def check_positive(value: Any, name: str, fix: str) -> float:
    """Return ``float(value)``; raise ``ValueError`` unless it is finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}. Fix: {fix}") from err
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}. Fix: {fix}")
    return v


def check_nonnegative(value: Any, name: str, fix: str) -> float:
    """Return ``float(value)``; raise ``ValueError`` unless it is finite and >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}. Fix: {fix}") from err
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}. Fix: {fix}")
    return v
