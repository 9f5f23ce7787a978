"""`scalezero report`: projections, figures and the HTML report of one workload.

The workflow runs the three steps as separate rules (workflow/rules/report.smk); this
command runs them in one go on the files the aggregate step wrote, for use without
Snakemake:

    scalezero report --workload bursty --config config/config.yaml
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalezero.errors import UserError


def figure_paths(figures_dir: Path, strategies: Sequence[str], suffix: str = ".png"
                 ) -> dict[str, Path]:
    """Figure name -> file (timelines: timeline_<strategy>)."""
    from scalezero.report.build import FIGURE_ORDER, timeline_key

    out: dict[str, Path] = {}
    for name in FIGURE_ORDER:
        if name == "size_sweep":  # drawn by the workflow's size sweep, not this command
            continue
        if name == "timeline":
            for s in strategies:
                out[timeline_key(s)] = Path(figures_dir) / f"{timeline_key(s)}{suffix}"
        else:
            out[name] = Path(figures_dir) / f"{name}{suffix}"
    return out


def find_run_dirs(runs_dir: Path, workload: str) -> list[Path]:
    """Run folders results/runs/<workload>/<strategy>/<rep> that hold a run.json."""
    root = Path(runs_dir) / workload
    return sorted(p.parent for p in root.glob("*/*/run.json"))


def first_run_of(run_dirs: Sequence[Path], strategy: str) -> Path:
    """The lowest-numbered repeat of a strategy (its timeline is drawn)."""
    mine = [Path(d) for d in run_dirs if Path(d).parent.name == strategy]
    if not mine:
        raise UserError(f"no run folder of strategy {strategy!r}")
    return min(mine, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit()
                                    else 0, d.name))


def make_report(
    *, workload: str, config: dict[str, Any], summary_dir: Path, run_dirs: Sequence[Path],
    trace: Path | None, projections_dir: Path, figures_dir: Path, out_html: Path,
    variables_out: Path | None = None, source_dir: Path | None = None,
    renderer: str | None = None,
) -> Path:
    """All three report steps: projections, figures, HTML. Returns the HTML path."""
    import pandas as pd

    from scalezero.analysis.aggregate import summary_paths
    from scalezero.analysis.projections import projection_paths, write_projections
    from scalezero.report.build import build_report
    from scalezero.report.config import report_settings
    from scalezero.report.figures import make_figure, strategy_order

    settings = report_settings(config)
    summaries = summary_paths(summary_dir, workload)
    missing = [str(p) for p in summaries.values() if not p.is_file()]
    if missing:
        raise UserError("summary files missing (run `scalezero aggregate` first): "
                        + ", ".join(missing))
    projections = write_projections(summaries["summary"], summaries["energy"], run_dirs,
                                    settings.projection,
                                    projection_paths(projections_dir, workload))
    strategies = strategy_order(sorted(set(pd.read_csv(summaries["summary"])["strategy"]
                                           .astype(str))))
    slo_sets = config.get("slo_sets")
    inputs: dict[str, Any] = {**summaries, **projections}
    figures = figure_paths(figures_dir, strategies)
    for name, path in figures.items():
        if name.startswith("timeline_"):
            run_dir = first_run_of(run_dirs, name.removeprefix("timeline_"))
            make_figure("timeline", {"run_dir": run_dir}, path, strategies=strategies)
        else:
            make_figure(name, inputs, path, strategies=strategies, slo_sets=slo_sets)
    result = build_report(
        workload=workload, summary_files=summaries, projection_files=projections,
        figures=figures, out_html=out_html, settings=settings, run_dirs=run_dirs,
        trace=trace, slo_sets=slo_sets, variables_out=variables_out,
        source_dir=source_dir, renderer=renderer)
    return result.html


def _load_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read config {path!r}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config {path!r} is not valid YAML: {exc}") from None
    return loaded if isinstance(loaded, dict) else {}


def _run(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    if args.constants_json:
        try:
            config["constants"] = {**config.get("constants", {}),
                                   **json.loads(args.constants_json)}
        except json.JSONDecodeError as exc:
            raise UserError(f"--constants-json is not valid JSON: {exc}") from None
    workload = args.workload or (config.get("report") or {}).get("workload") \
        or next(iter(config.get("workloads") or {}), None)
    if not workload:
        raise UserError("give --workload (or a config with report.workload or workloads:)")
    results = Path(args.results)
    run_dirs = [Path(d) for d in args.run_dir] if args.run_dir \
        else find_run_dirs(results / "runs", workload)
    if not run_dirs:
        raise UserError(f"no run folders under {results / 'runs' / workload}")
    trace = results / "traces" / f"{workload}.csv"
    html = make_report(
        workload=workload, config=config, summary_dir=results / "summary",
        run_dirs=run_dirs, trace=trace if trace.is_file() else None,
        projections_dir=results / "projections", figures_dir=results / "figures" / workload,
        out_html=Path(args.out) if args.out else results / "report" / "report.html",
        variables_out=results / "report" / "variables.yml",
        source_dir=Path(args.source) if args.source else None,
        renderer=args.renderer)
    print(html)
    return 0


def add_cli(subparsers: Any) -> None:
    """Add `scalezero report`."""
    parser = subparsers.add_parser(
        "report",
        help="projections, figures and the HTML report of a workload",
        description="From the aggregate step's summaries (RESULTS/summary/), the run "
        "folders (RESULTS/runs/<workload>/) and the trace, write the projections "
        "(RESULTS/projections/), the figures (RESULTS/figures/<workload>/) and one "
        "self-contained HTML report. Renders with Quarto when it is on PATH, with pandoc "
        "otherwise.",
    )
    parser.add_argument("--workload", help="workload name (default: report.workload or "
                                           "the first workload of --config)")
    parser.add_argument("--config", help="config YAML: constants, projections, report, "
                                         "slo_sets keys are read")
    parser.add_argument("--results", default="results", help="results folder (default: "
                                                             "results)")
    parser.add_argument("--run-dir", action="append", default=[], metavar="DIR",
                        help="run folder (repeatable; default: all under RESULTS/runs)")
    parser.add_argument("--out", help="HTML file (default: RESULTS/report/report.html)")
    parser.add_argument("--source", help="report source folder (default: the project's "
                                         "report/)")
    parser.add_argument("--renderer", choices=("auto", "quarto", "pandoc"),
                        help="default: report.renderer of the config, else auto")
    parser.add_argument("--constants-json", metavar="JSON",
                        help='override constants, e.g. \'{"carbon_intensity_g_per_kwh": '
                             '{"value": 300, "unit": "gCO2e/kWh", "source": "...", '
                             '"date": "2025"}}\'')
    parser.set_defaults(func=_run)
