"""Explicit, seeded randomness for every randomized algorithm.

Every public randomized function takes ``generator: torch.Generator | None``. ``None`` means a fresh
generator seeded with :data:`DEFAULT_SEED`, so two identical calls give identical results; there is no
global random state involved, and the global torch RNG is never advanced.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DEFAULT_SEED", "resolve_generator", "gaussian", "rademacher", "unit_vector"]

DEFAULT_SEED = 0


def resolve_generator(generator: torch.Generator | None, device: torch.device | str = "cpu") -> torch.Generator:
    """Return ``generator`` or a fresh CPU generator seeded with :data:`DEFAULT_SEED`.

    Random numbers are always drawn on the CPU and moved to ``device``, so results do not depend on the
    device (``device`` is accepted for symmetry and ignored).
    """
    if generator is None:
        return torch.Generator("cpu").manual_seed(DEFAULT_SEED)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def _draw(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    real = torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype
    gen_dtype = torch.float64 if real == torch.float64 else torch.float32
    if dtype.is_complex:
        re = torch.randn(shape, generator=generator, device=generator.device, dtype=gen_dtype)
        im = torch.randn(shape, generator=generator, device=generator.device, dtype=gen_dtype)
        return torch.complex(re, im).to(dtype) / 2**0.5
    return torch.randn(shape, generator=generator, device=generator.device, dtype=gen_dtype).to(dtype)


def gaussian(
    n: int, k: int | None = None, *, generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
) -> Tensor:
    """Standard Gaussian probes, shape ``[n]`` or ``[n, k]`` (complex: ``E|z|² = 1``)."""
    g = resolve_generator(generator)
    shape = (n,) if k is None else (n, k)
    return _draw(shape, g, dtype).to(device)


def rademacher(
    n: int, k: int | None = None, *, generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
) -> Tensor:
    """Rademacher (±1 with equal probability) probes, shape ``[n]`` or ``[n, k]``."""
    g = resolve_generator(generator)
    shape = (n,) if k is None else (n, k)
    bits = torch.randint(0, 2, shape, generator=g, device=g.device)
    return (2 * bits - 1).to(dtype=dtype, device=device)


def unit_vector(
    n: int, *, generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
) -> Tensor:
    """A uniformly random unit vector of shape ``[n]``."""
    v = gaussian(n, generator=generator, dtype=dtype, device=device)
    return v / torch.linalg.vector_norm(v)
