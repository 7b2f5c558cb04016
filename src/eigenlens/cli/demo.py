"""Placeholder demo of the engine (replaced by the curvature demo on digits)."""

from __future__ import annotations

import argparse

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="eigenlens-demo", help="output folder")


def run(args: argparse.Namespace) -> int:
    import eigenlens as el

    g = torch.Generator().manual_seed(0)
    A = torch.randn(200, 200, generator=g, dtype=torch.float64)
    op = el.aslinearoperator(A + A.T)
    print(op)
    print("top eigenvalue (dense):", float(torch.linalg.eigvalsh(op.to_dense())[-1]))
    return 0
