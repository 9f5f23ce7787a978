"""`scalezero report`: projections, figures and the HTML report of one workload.

The workflow runs the three steps as separate rules (workflow/rules/report.smk); this
command runs them in one go on the files the aggregate step wrote, for use without
Snakemake:

    scalezero report --workload bursty --config config/config.yaml
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalezero.errors import UserError
from scalezero.report.figure_list import figure_keys, timeline_key
from scalezero.system.layout import Layout


def figure_paths(figures_dir: Path, strategies: Sequence[str], suffix: str = ".png"
                 ) -> dict[str, Path]:
    """Figure key -> file (timelines: timeline_<strategy>). The size sweep's figure is
    drawn by the workflow's size sweep, not by this command."""
    return {key: Layout.figure_in(figures_dir, key, suffix) for key in figure_keys(strategies)}


def make_report(
    *, workload: str, config: dict[str, Any], summary_dir: Path, run_dirs: Sequence[Path],
    trace: Path | None, projections_dir: Path, figures_dir: Path, out_html: Path,
    variables_out: Path | None = None, source_dir: Path | None = None,
    renderer: str | None = None, trace_info: Path | None = None,
    simulation_dir: Path | None = None, sharing: Mapping[str, Path] | None = None,
) -> Path:
    """All three report steps: projections, figures, HTML. Returns the HTML path.

    With a validation table in `simulation_dir` (the workflow's validate_simulation
    step), its figure is drawn and the report shows it. `sharing`: the model-sharing
    experiment's summary, per_deployment and figure files (results/sharing/)."""
    import pandas as pd

    from scalezero.analysis.projections import write_projections
    from scalezero.report.build import build_report
    from scalezero.report.config import report_settings
    from scalezero.report.figures import make_figure, strategy_order

    settings = report_settings(config)
    summaries = Layout.summary_files_in(summary_dir, workload)
    missing = [str(p) for p in summaries.values() if not p.is_file()]
    if missing:
        raise UserError("summary files missing (run `scalezero aggregate` first): "
                        + ", ".join(missing))
    projections = write_projections(summaries["summary"], summaries["energy"], run_dirs,
                                    settings.projection,
                                    Layout.projection_files_in(projections_dir, workload))
    strategies = strategy_order(sorted(set(pd.read_csv(summaries["summary"])["strategy"]
                                           .astype(str))))
    slo_sets = config.get("slo_sets")
    inputs: dict[str, Any] = {**summaries, **projections}
    figures = figure_paths(figures_dir, strategies)
    timelines = {timeline_key(s): s for s in strategies}
    for name, path in figures.items():
        if name in timelines:
            run_dir = Layout.first_run(run_dirs, timelines[name])
            make_figure("timeline", {"run_dir": run_dir}, path, strategies=strategies)
        else:
            make_figure(name, inputs, path, strategies=strategies, slo_sets=slo_sets)
    simulation: dict[str, Path] | None = None
    if simulation_dir is not None:
        sim_files = Layout.simulation_files_in(simulation_dir, workload)
        if sim_files["validation"].is_file():
            simulation = {**sim_files, "figure": Layout.figure_in(figures_dir, "simulation")}
            make_figure("simulation", {"validation": sim_files["validation"]},
                        simulation["figure"], strategies=strategies)
            if not sim_files["profile"].is_file():
                del simulation["profile"]
    result = build_report(
        workload=workload, summary_files=summaries, projection_files=projections,
        figures=figures, out_html=out_html, settings=settings, run_dirs=run_dirs,
        trace=trace, trace_info=trace_info,
        workload_spec=(config.get("workloads") or {}).get(workload),
        slo_sets=slo_sets, variables_out=variables_out,
        source_dir=source_dir, renderer=renderer, simulation=simulation, sharing=sharing)
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
    layout = Layout(results=Path(args.results))
    run_dirs = [Path(d) for d in args.run_dir] if args.run_dir \
        else layout.find_run_dirs(workload)
    if not run_dirs:
        raise UserError(f"no run folders under {layout.runs_dir / workload}")
    trace = layout.trace(workload)
    trace_info = layout.trace_info(workload)
    html = make_report(
        workload=workload, config=config, summary_dir=layout.summary_dir,
        run_dirs=run_dirs, trace=trace if trace.is_file() else None,
        projections_dir=layout.projections_dir, figures_dir=layout.figures_dir(workload),
        out_html=Path(args.out) if args.out else layout.report_html,
        variables_out=layout.report_variables,
        source_dir=Path(args.source) if args.source else None,
        renderer=args.renderer, trace_info=trace_info if trace_info.is_file() else None,
        simulation_dir=layout.simulation_dir)
    print(html)
    return 0


def add_cli(subparsers: Any) -> None:
    """Add `scalezero report`."""
    parser = subparsers.add_parser(
        "report",
        help="projections, figures and the HTML report of a workload",
        description="From the aggregate step's summaries (RESULTS/summary/), the run "
        "folders (RESULTS/runs/<workload>/) and the trace (with its record, when "
        "present), write the projections "
        "(RESULTS/projections/), the figures (RESULTS/figures/<workload>/) and one "
        "self-contained HTML report. Renders with Quarto when it is on PATH, with pandoc "
        "otherwise.",
    )
    parser.add_argument("--workload", help="workload name (default: report.workload or "
                                           "the first workload of --config)")
    parser.add_argument("--config", help="config YAML: constants, projections, report, "
                                         "slo_sets and workloads keys are read")
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
