"""Result dataclasses that convert to dicts, JSON and (when installed) pandas.

This is a leaf utility with no eigenlens imports, shared by every layer.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

__all__ = ["Result", "to_builtin"]


def to_builtin(x: Any) -> Any:
    """Convert tensors, arrays, dataclasses, and containers of them to JSON-friendly Python objects."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            if x.is_complex():
                return {"real": x.real.tolist(), "imag": x.imag.tolist()}
            return x.item() if x.ndim == 0 else x.tolist()
        if isinstance(x, (torch.dtype, torch.device)):
            return str(x)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        if hasattr(x, "to_dict"):
            return x.to_dict()
        return {f.name: to_builtin(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): to_builtin(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_builtin(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


class Result:
    """Mixin for result dataclasses: ``to_dict()``, ``to_json()``, ``to_pandas()``.

    Fields whose name starts with ``_`` are internal and left out.
    """

    def to_dict(self) -> dict[str, Any]:
        """All public fields as plain Python objects (tensors become lists)."""
        return {
            f.name: to_builtin(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if not f.name.startswith("_")
        }

    def to_json(self, path: str | None = None, **kwargs: Any) -> str:
        """Serialise :meth:`to_dict` as JSON; also write it to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=kwargs.pop("indent", 2), **kwargs)
        if path is not None:
            with open(path, "w") as fh:
                fh.write(text)
        return text

    def to_pandas(self) -> Any:
        """A one-row ``pandas.DataFrame`` of the scalar fields (requires pandas)."""
        try:
            import pandas as pd
        except ImportError as err:  # pragma: no cover
            raise ImportError("to_pandas() needs pandas: pip install pandas") from err
        row = {k: v for k, v in self.to_dict().items() if not isinstance(v, (list, dict))}
        return pd.DataFrame([row])
