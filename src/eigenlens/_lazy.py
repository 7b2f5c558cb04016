"""Lazy re-exports: a package lists ``name -> module`` and the module is imported on first access.

This keeps ``import eigenlens`` cheap and lets every layer live in its own small module while the
public names stay flat (``eigenlens.eigsh``, ``eigenlens.hessian``, ...).

Several modules are named after the function they define (``linalg/eigsh.py`` defines ``eigsh``). Python's
import system binds a submodule as an attribute of its package when the submodule is first imported, which
would shadow the exported function with the module. The package's module class is therefore replaced by
one that ignores exactly that binding, so ``eigenlens.linalg.eigsh`` is always the function, while
``from eigenlens.linalg.eigsh import EigshResult`` keeps working through ``sys.modules``.
"""

from __future__ import annotations

import importlib
import sys
import types
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

    class _ExportingModule(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if (
                name in exports
                and isinstance(value, types.ModuleType)
                and value.__name__ == f"{package}.{name}"
            ):
                return  # a submodule named like the function it exports: keep serving the function
            super().__setattr__(name, value)

    module = sys.modules.get(package)
    if module is not None and type(module) is types.ModuleType:
        module.__class__ = _ExportingModule
    return __getattr__, __dir__
