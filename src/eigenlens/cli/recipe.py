"""Load a RECIPE.py for the command line: a Python file that says what model, loss and data to analyse.

The contract (see ``examples/recipe_digits.py``):

* ``model() -> torch.nn.Module`` — the (trained) model; it is put in eval mode by the CLI only if the recipe
  says so itself (the determinism probe will name active dropout / train-mode batch norm);
* ``loss() -> callable`` — ``loss_fn(outputs, targets)`` returning the mean loss of a batch
  (e.g. ``torch.nn.CrossEntropyLoss()``);
* ``data() -> (inputs, targets) | iterable of batches`` — a batch or a re-iterable of batches (list,
  ``DataLoader`` with ``shuffle=False``);
* optional ``optimizer(model) -> torch.optim.Optimizer`` — an optimizer whose state (Adam) or momentum
  is used for the learning-rate advice;
* optional ``num_classes: int``.

Each function is called once, in this order: ``model``, ``loss``, ``data``, ``optimizer``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["Recipe", "import_recipe", "load_recipe"]


@dataclass
class Recipe:
    """What a recipe produced."""

    path: str
    model: Any
    loss: Any
    data: Any
    optimizer: Any = None
    num_classes: int | None = None


def import_recipe(path: str) -> ModuleType:
    """Import the Python file at ``path`` as a module without calling anything in it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not importable as a Python module.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"recipe: no such file {path!r}; pass the path of a RECIPE.py (see examples/)")
    name = "eigenlens_recipe_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"recipe: cannot import {path!r} as a Python module (expected a .py file)")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.pop(0)
    return mod


def load_recipe(path: str) -> Recipe:
    """Import ``path`` and call its ``model()``, ``loss()``, ``data()`` (and ``optimizer(model)`` if defined).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a required function is missing (the message lists the contract).
        TypeError: ``model()`` did not return an ``nn.Module``.
    """
    import torch

    mod = import_recipe(path)
    missing = [f for f in ("model", "loss", "data") if not callable(getattr(mod, f, None))]
    if missing:
        raise ValueError(
            f"recipe {path!r} lacks {', '.join(missing)}(): a recipe defines model() -> nn.Module, loss() -> "
            "loss_fn(outputs, targets), data() -> (inputs, targets) or a list of batches (see "
            "examples/recipe_digits.py)"
        )
    model = mod.model()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"recipe {path!r}: model() must return a torch.nn.Module, got {type(model).__name__}")
    loss = mod.loss()
    data = mod.data()
    opt = mod.optimizer(model) if callable(getattr(mod, "optimizer", None)) else None
    nc = getattr(mod, "num_classes", None)
    return Recipe(path=path, model=model, loss=loss, data=data, optimizer=opt, num_classes=nc)
