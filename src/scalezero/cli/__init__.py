"""The `scalezero` command. Each subcommand lives in the module that does the work.

A module joins the command by defining `add_cli(subparsers)`, which adds its parser and
sets `func` (called with the parsed namespace, returns an exit code). Adding a
subcommand is one line in COMMANDS. Only the chosen subcommand's module is imported, so
that `scalezero serve` does not pay for pandas and matplotlib at start-up.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from scalezero import __version__
from scalezero.errors import UserError

#: subcommand -> module that defines it
COMMANDS: dict[str, str] = {
    "fetch-model": "scalezero.models.cli",
    "synth-model": "scalezero.models.cli",
    "workload": "scalezero.workload",
    "serve": "scalezero.serving.cli",
    "run": "scalezero.measure.runner",
    "telemetry": "scalezero.telemetry.cli",
    "aggregate": "scalezero.analysis.aggregate",
    "bench-overhead": "scalezero.measure.bench",
    "bench": "scalezero.measure.tiers",
    "simulate": "scalezero.simulate.cli",
    "report": "scalezero.report.cli",
    "doctor": "scalezero.cli.doctor",
    "sharing-deployments": "scalezero.cli.config",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scalezero",
        description="Measure always-on, scale-to-zero and keep-warm LLM serving.",
    )
    parser.add_argument("--version", action="version", version=f"scalezero {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[only]] if only in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A subcommand whose module is missing must not break the others.
            if exc.name and exc.name.startswith("scalezero"):
                continue
            raise
        module.add_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(only=chosen)
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
