"""`scalezero workload`: write a workload's trace, or describe an existing trace."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from scalezero.errors import UserError
from scalezero.workload.trace import (
    generate_trace,
    read_trace,
    trace_summary,
    write_history,
    write_trace,
)


def _load_spec(args: argparse.Namespace) -> tuple[str, Any]:
    if args.spec_json is not None:
        if args.config is not None:
            raise UserError("give either --spec-json or --config, not both")
        try:
            spec = json.loads(args.spec_json)
        except json.JSONDecodeError as exc:
            raise UserError(f"--spec-json is not valid JSON: {exc}") from None
        return args.name or "spec", spec
    if args.config is None or args.name is None:
        raise UserError("give --config and --name (or --spec-json), and --out")
    try:
        config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read config {args.config!r}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config {args.config!r} is not valid YAML: {exc}") from None
    workloads = config.get("workloads") if isinstance(config, dict) else None
    if not isinstance(workloads, dict):
        raise UserError(f"config {args.config!r} has no 'workloads:' mapping")
    if args.name not in workloads:
        raise UserError(
            f"config {args.config!r} has no workload {args.name!r}; "
            f"defined: {sorted(map(str, workloads))}"
        )
    return args.name, workloads[args.name]


def _run(args: argparse.Namespace) -> int:
    if args.describe is not None:
        summary = trace_summary(read_trace(Path(args.describe)), args.gap_threshold_s)
        print(json.dumps(summary, indent=2))
        return 0
    name, spec = _load_spec(args)
    if args.out is None:
        raise UserError("--out is required to write a trace")
    base_dir = Path(args.base_dir) if args.base_dir is not None else Path.cwd()
    df = generate_trace(name, spec, base_dir=base_dir)
    write_trace(df, Path(args.out))
    if args.history_out is not None:
        write_history(df.attrs["history_s"], Path(args.history_out))
    summary = trace_summary(df)
    source = df.attrs.get("workload", {})
    picked = f", function {source['function']}" if "function" in source else ""
    if source.get("kind") == "azure_llm":
        picked = (
            f", {source['kept_rows']} of {source['rows_in_window']} in the window kept "
            f"(p = {source['keep_probability']:.4g})"
        )
    print(
        f"workload {name}: {summary['n_requests']} requests over {summary['span_s']:.3f} s"
        f"{picked} -> {args.out}"
    )
    if source.get("kind") == "azure_llm":
        # What was replayed and how (window, thinning, token mapping), for the record.
        print(f"source: {json.dumps(source)}")
    return 0


def add_cli(subparsers: Any) -> None:
    """Register `scalezero workload`."""
    parser = subparsers.add_parser(
        "workload",
        help="write a seeded request trace, or describe one",
        description=(
            "Write the trace of one workload from the config's `workloads:` mapping "
            "(or from --spec-json) as CSV, or summarise an existing trace (--describe)."
        ),
    )
    parser.add_argument("--config", help="YAML config with a `workloads:` mapping")
    parser.add_argument("--name", help="workload name in the config")
    parser.add_argument("--spec-json", help="one workload entry as JSON, instead of --config")
    parser.add_argument("--out", help="trace CSV to write")
    parser.add_argument(
        "--history-out",
        metavar="FILE",
        help="also write the history (an azure_llm training part's arrivals before the "
        "trace; header only without one) here, for `scalezero run --history`",
    )
    parser.add_argument(
        "--base-dir", help="directory that relative input paths resolve against (default: .)"
    )
    parser.add_argument("--describe", metavar="FILE", help="print the summary of a trace CSV")
    parser.add_argument(
        "--gap-threshold-s",
        type=float,
        help="with --describe: gaps longer than this separate bursts (e.g. a keep-warm TTL)",
    )
    parser.set_defaults(func=_run)
