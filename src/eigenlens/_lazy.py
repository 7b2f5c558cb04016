"""Lazy re-exports: a package lists ``name -> module`` and the module is imported on first access.

This keeps ``import eigenlens`` cheap and lets every layer live in its own small module while the
public names stay flat (``eigenlens.eigsh``, ``eigenlens.hessian``, ...).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str], submodules: tuple[str, ...] = ()) -> tuple[
    Callable[[str], Any], Callable[[], list[str]]
]:
    """Return ``(__getattr__, __dir__)`` for ``package`` serving ``exports`` (name -> module path)."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            module = importlib.import_module(exports[name])
            value = getattr(module, name)
            importlib.import_module(package).__dict__[name] = value
            return value
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(submodules))

    return __getattr__, __dir__
