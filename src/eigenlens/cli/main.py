"""The ``eigenlens`` command: one sub-command per module in :data:`COMMANDS`.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``, and a one-line
module docstring used as the help text. Modules are imported only when their command runs (the
help text is read from a static table so ``eigenlens --help`` stays fast).
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("eigenlens.cli.demo", "the main job: train a small MLP on digits and show its curvature spectrum"),
    "curvature": ("eigenlens.cli.curvature", "Hessian/GGN spectrum, trace, density and learning-rate advice"),
    "weights": ("eigenlens.cli.weights", "per-layer weight spectra read against Marchenko-Pastur"),
    "kernel": ("eigenlens.cli.kernel", "infinite-width NNGP/NTK kernels of a model"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eigenlens",
        description="Spectra of the large matrices inside machine learning, read against random matrix theory.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            p.set_defaults(_missing=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``eigenlens`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_missing", False):
        print(f"eigenlens {args.command}: not available in this build", file=sys.stderr)
        return 2
    module = importlib.import_module(args._module)
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
