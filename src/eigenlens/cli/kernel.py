"""infinite-width NNGP/NTK kernels of a model.

``eigenlens kernel RECIPE.py [--n 200] [--json F]``: ``RECIPE.py`` defines ``model()`` (an ``nn.Module``) and
``data()`` returning ``(inputs, targets)`` or an iterable of such batches; the first ``--n`` inputs are used.
Prints the traced tensor program and a summary of the NNGP and NTK (diagonal, spectrum: top eigenvalues,
condition number, effective rank) and, with ``--json``, writes the kernels.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a Python file defining model() and data()")
    parser.add_argument("--n", type=int, default=200, help="number of inputs (default 200)")
    parser.add_argument("--json", metavar="FILE", help="write the kernels and their summary as JSON")
    parser.add_argument("--parameterization", choices=("ntk", "standard"), default="ntk")
    parser.add_argument("--weight-std", type=float, default=None, help="σ_w for every layer (default: read off init)")
    parser.add_argument("--bias-std", type=float, default=None, help="σ_b for every layer (default: read off init)")
    parser.add_argument("--float32", action="store_true", help="compute in float32 (faster, ~1e-6 relative)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")


def _inputs(data, n: int):
    import torch

    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return data[0][:n]
    chunks, have = [], 0
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"data() must yield (inputs, targets) with tensor inputs, got {type(x).__name__}")
        chunks.append(x)
        have += x.shape[0]
        if have >= n:
            break
    if not chunks:
        raise ValueError("data() returned no batches")
    return torch.cat(chunks)[:n]


def summarize(K) -> dict:
    """Top eigenvalues, condition number and effective rank ``(Σλ)²/Σλ²`` of a kernel matrix."""
    import torch

    w = torch.linalg.eigvalsh(K.double()).flip(0)
    top = w[: min(5, len(w))].tolist()
    cond = float(w[0] / w[-1]) if float(w[-1]) > 0 else float("inf")
    return {
        "n": K.shape[0],
        "mean_diagonal": float(K.diagonal().mean()),
        "top_eigenvalues": top,
        "smallest_eigenvalue": float(w[-1]),
        "condition_number": cond,
        "effective_rank": float(w.sum() ** 2 / (w**2).sum()),
    }


def run(args: argparse.Namespace) -> int:
    import torch

    from eigenlens.cli.recipe import import_recipe
    from eigenlens.infinite.limit import kernels

    try:
        recipe = import_recipe(args.recipe)
        for name in ("model", "data"):
            if not callable(getattr(recipe, name, None)):
                raise ValueError(f"{args.recipe} must define a function {name}()")
        if args.n < 1:
            raise ValueError(f"--n must be >= 1, got {args.n}")
        model = recipe.model()
        x = _inputs(recipe.data(), args.n)
        k = kernels(
            model, x, parameterization=args.parameterization, weight_std=args.weight_std, bias_std=args.bias_std,
            dtype=torch.float32 if args.float32 else torch.float64, progress=args.progress,
        )
    except (FileNotFoundError, ValueError, TypeError) as err:
        print(f"eigenlens kernel: {err}", file=sys.stderr)
        return 2
    print(k.program)
    out = {"n": x.shape[0], "parameterization": args.parameterization, "quadrature_error": k.quadrature_error}
    for name in ("nngp", "ntk"):
        K = getattr(k, name)
        if K.ndim != 2:
            print(f"{name}: output keeps spatial positions, shape {tuple(K.shape)}")
            continue
        s = summarize(K)
        out[name] = s
        print(
            f"{name.upper():>4}: mean diag {s['mean_diagonal']:.4g}, top eigenvalues "
            f"{', '.join(f'{v:.4g}' for v in s['top_eigenvalues'])}, condition number {s['condition_number']:.3g}, "
            f"effective rank {s['effective_rank']:.3g}"
        )
    if k.quadrature_error:
        print(f"quadrature: largest estimated relative error {k.quadrature_error:.2e}")
    if args.json:
        out["kernels"] = k.to_dict()
        with open(args.json, "w") as fh:
            json.dump(out, fh)
        print(f"wrote {args.json}")
    return 0
