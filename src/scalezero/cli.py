"""The `scalezero` command. Each subcommand lives in the module that does the work.

A module joins the command by defining `add_cli(subparsers)`, which adds its parser and
sets `func` (called with the parsed namespace, returns an exit code). Adding a
subcommand is one line in COMMAND_MODULES.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from scalezero import __version__
from scalezero.errors import UserError

COMMAND_MODULES: tuple[str, ...] = (
    "scalezero.model_fetch",
    "scalezero.synth_model",
    "scalezero.workload",
    "scalezero.gateway.cli",
    "scalezero.runner",
    "scalezero.telemetry.cli",
    "scalezero.aggregate",
    "scalezero.bench",
    "scalezero.report.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scalezero",
        description="Measure always-on, scale-to-zero and keep-warm LLM serving.",
    )
    parser.add_argument("--version", action="version", version=f"scalezero {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A subcommand whose module is not there yet must not break the others.
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.add_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UserError as exc:
        print(f"scalezero {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
