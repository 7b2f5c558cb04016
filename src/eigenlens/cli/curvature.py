"""Hessian/GGN spectrum, trace, density and learning-rate advice for the model of a RECIPE.py."""

from __future__ import annotations

import argparse
import sys


def _sizes(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 32,64,128, got {text!r}") from err
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive batch sizes, got {text!r}")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="RECIPE.py defining model(), loss(), data() (see examples/recipe_digits.py)")
    parser.add_argument("--k", type=int, default=5, help="eigenvalues at each end (default 5)")
    parser.add_argument("--operator", choices=["hessian", "ggn", "fisher"], default="hessian")
    parser.add_argument("--params", default=None, help="comma-separated parameter names / glob patterns")
    parser.add_argument("--trace", action="store_true", help="estimate the trace (Hutch++)")
    parser.add_argument("--density", action="store_true", help="estimate the spectral density (SLQ)")
    parser.add_argument("--batch-sizes", type=_sizes, default=None, help="batch-size scaling study, e.g. 32,64,128")
    parser.add_argument("--no-bottom", action="store_true", help="skip the smallest eigenvalues")
    parser.add_argument("--tol", type=float, default=1e-6, help="eigsh relative tolerance")
    parser.add_argument("--float64", action="store_true", help="evaluate in float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="F", help="write all numbers as JSON to F")
    parser.add_argument("--plot", default=None, metavar="F", help="write the density / batch-size figure to F")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import torch

    from eigenlens.cli.recipe import load_recipe
    from eigenlens.diagnostics.curvature import curvature_summary

    try:
        r = load_recipe(args.recipe)
    except (FileNotFoundError, ValueError, TypeError) as err:
        print(f"eigenlens curvature: {err}", file=sys.stderr)
        return 2
    params = [p.strip() for p in args.params.split(",")] if args.params else None
    try:
        summary = curvature_summary(
            r.model, r.loss, r.data, k=args.k, operator=args.operator, params=params, tol=args.tol,
            bottom=not args.no_bottom, trace=args.trace, density=args.density or bool(args.plot),
            batch_sizes=args.batch_sizes, optimizer=r.optimizer, num_classes=r.num_classes,
            dtype=torch.float64 if args.float64 else None, generator=torch.Generator().manual_seed(args.seed),
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print("eigenlens curvature: interrupted before any result was computed", file=sys.stderr)
        return 130
    print(summary)
    if args.json:
        summary.to_json(args.json)
        print(f"wrote {args.json}")
    if args.plot and (summary.density is not None or summary.batch_size_scaling is not None):
        summary.plot(args.plot)
        print(f"wrote {args.plot}")
    return 130 if summary.interrupted else 0
