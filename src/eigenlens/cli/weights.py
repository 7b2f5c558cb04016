"""per-layer weight spectra read against Marchenko-Pastur.

``eigenlens weights RECIPE.py [--json F] [--plot DIR]``: ``RECIPE.py`` is a Python file that defines
``model()`` returning an ``nn.Module`` (it may also define ``data()`` and ``loss()`` for other commands;
they are not used here). The recipe is loaded from its path with :mod:`importlib`; prints one table row
per weight matrix (skipped layers with their reason).
"""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a Python file defining model() (data() and loss() are ignored here)")
    parser.add_argument("--json", metavar="FILE", help="write every layer's spectrum and fits as JSON")
    parser.add_argument("--plot", metavar="DIR", help="write one ESD plot (PNG) per analysed layer into DIR")
    parser.add_argument("--layers", nargs="*", help="module names or glob patterns (default: all)")
    parser.add_argument("--alpha", type=float, default=0.05, help="false-positive level of the outlier test")
    parser.add_argument("--max-dense", type=int, default=4096, help="largest layer dimension for dense eigvalsh")
    parser.add_argument("--no-power-law", action="store_true", help="skip the power-law tail fit (faster)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and randomized methods")


def run(args: argparse.Namespace) -> int:
    import torch
    from torch import nn

    from eigenlens.cli.recipe import import_recipe
    from eigenlens.nn.weights import plot_layer, weight_spectra

    try:
        recipe = import_recipe(args.recipe)
    except (FileNotFoundError, ValueError) as err:
        print(f"eigenlens weights: {err}", file=sys.stderr)
        return 2
    if not callable(getattr(recipe, "model", None)):
        print(f"eigenlens weights: {args.recipe} must define a function model() returning an nn.Module",
              file=sys.stderr)
        return 2
    model = recipe.model()
    if not isinstance(model, nn.Module):
        print(f"eigenlens weights: model() must return an nn.Module, got {type(model).__name__}", file=sys.stderr)
        return 2
    try:
        spectra = weight_spectra(
            model,
            layers=args.layers or None,
            max_dense=args.max_dense,
            fit_power_law=not args.no_power_law,
            alpha=args.alpha,
            generator=torch.Generator().manual_seed(args.seed),
        )
    except ValueError as err:
        print(f"eigenlens weights: {err}", file=sys.stderr)
        return 2
    print(spectra.table())
    analysed = [s for s in spectra if not s.skipped]
    noisy = sum(1 for s in analysed if s.num_outliers == 0)
    print(
        f"\n{len(analysed)} layers analysed, {len(spectra) - len(analysed)} skipped; {noisy} read as pure noise "
        f"(0 outliers at false-positive level {args.alpha}). Eigenvalues are those of WᵀW/N (N = larger dim)."
    )
    if args.json:
        spectra.to_json(args.json)
        print(f"wrote {args.json}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        os.makedirs(args.plot, exist_ok=True)
        for s in analysed:
            ax = plot_layer(s)
            fname = os.path.join(args.plot, f"{s.name.replace('/', '_')}.png")
            ax.figure.savefig(fname, dpi=100, bbox_inches="tight")
            plt.close(ax.figure)
        print(f"wrote {len(analysed)} plots to {args.plot}")
    return 0
