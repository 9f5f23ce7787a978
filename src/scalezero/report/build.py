"""Build the HTML report: variables, generated tables, figures, shortcodes, render.

`build_report` works in a scratch folder: it copies the report source (`report/`),
writes `_variables.yml` and the generated tables under `_generated/`, copies the figures
under `figures/`, resolves the shortcodes and renders one self-contained HTML file
(figures, styles and bibliography embedded). It then checks the result: no shortcode
left, every figure embedded.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scalezero.errors import UserError
from scalezero.report.config import ReportSettings
from scalezero.report.figure_list import figure_numbers, timeline_key
from scalezero.report.inputs import collect_inputs
from scalezero.report.platforms import platforms_md
from scalezero.report.render import (
    ANY_SHORTCODE,
    choose_renderer,
    join_front_matter,
    render,
    resolve_document,
)
from scalezero.report.scenarios import scenarios_md
from scalezero.report.sharing import (
    read_sharing,
    read_simulated,
    sharing_md,
    sharing_variables,
    simulated_md,
)
from scalezero.report.simulation import simulation_md
from scalezero.report.tables import build_tables
from scalezero.report.tiers import tiers_md
from scalezero.report.variables import build_variables, simulation_variables

#: The report source shipped with the project (report/ at the repository root).
DEFAULT_SOURCE_DIR = Path(__file__).resolve().parents[3] / "report"
MAIN_FILE = "report.qmd"
PANDOC_CSS = "pandoc.css"

SECTIONS: tuple[str, ...] = (
    "Summary", "Setup", "Latency", "Cold starts", "Warm tiers and engines",
    "Resources over time", "Energy",
    "Projections", "Simulation", "Simulated scenarios", "Model sharing", "Discussion",
    "Limitations", "References",
)


@dataclass(frozen=True)
class ReportResult:
    html: Path
    variables: dict[str, Any]
    renderer: str


def _timelines_md(strategies: Sequence[str], numbers: Mapping[str, int],
                  suffixes: Mapping[str, str]) -> str:
    parts = []
    for s in strategies:
        key = timeline_key(s)
        parts.append(f"![Figure {numbers[key]}: {s}, first repeat. Top: request arrivals "
                     "(black: cold, grey: warm) and instances (hatched: starting, solid: up). "
                     "Middle: memory held by the instances. Bottom: power draw (or the "
                     f"instances' CPU use where no power sensor exists).]"
                     f"(figures/{key}{suffixes[key]}){{width=100%}}\n")
    return "\n".join(parts)


def size_sweep_md(summary_csv: Path, figure_number: int, figure_file: str) -> str:
    """The size-sweep subsection: figure, table and the sentence the numbers support."""
    import pandas as pd

    df = pd.read_csv(summary_csv).sort_values("file_bytes")
    if df.empty:
        return "The size sweep measured no model.\n"
    mib = 1024 * 1024

    def fmt(value: float, digits: int = 2) -> str:
        return "n/a" if pd.isna(value) else f"{value:,.{digits}f}"

    for column in ("page_cache_before_pct", "page_cache_after_pct"):
        if column not in df.columns:  # a summary written before residency was recorded
            df[column] = float("nan")
    rows = ["| model | file, MiB | parameters, M | cold start, s | load, s | "
            "lower bound (cold read), s | lower bound (page cache), s | "
            "in page cache at run start, % | TPOT p50, ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in df.itertuples():
        rows.append(
            f"| {r.model} | {fmt(r.file_bytes / mib, 0)} | {fmt(r.parameters / 1e6, 0)} | "
            f"{fmt(r.cold_start_mean_s)} | {fmt(r.runtime_ready_to_model_loaded_mean_s)} | "
            f"{fmt(r.load_lower_bound_cold_s, 3)} | {fmt(r.load_lower_bound_page_cache_s, 3)} | "
            f"{fmt(r.page_cache_before_pct, 0)} | {fmt(r.tpot_p50_ms, 1)} |")
    small, large = df.iloc[0], df.iloc[-1]
    text = (
        f"![Figure {figure_number}: Cold start by phase for each model of the size sweep. "
        "The markers show where the weights-loading phase would end if loading were only "
        "reading the file at the bandwidth measured on the same host (page cache, and after "
        f"dropping the file's cached pages).]({figure_file}){{width=100%}}\n\n"
        + "\n".join(rows) + "\n\n"
    )
    if len(df) > 1:
        text += (
            f"From {small.model} ({fmt(small.file_bytes / mib, 0)} MiB) to {large.model} "
            f"({fmt(large.file_bytes / mib, 0)} MiB) the cold start went from "
            f"{fmt(small.cold_start_mean_s)} s to {fmt(large.cold_start_mean_s)} s, of which "
            f"loading the weights took {fmt(large.runtime_ready_to_model_loaded_mean_s)} s "
            f"against {fmt(large.load_lower_bound_cold_s, 3)} s to read the file after its "
            f"cached pages were dropped ({large.cold_read_method}) and "
            f"{fmt(large.load_lower_bound_page_cache_s, 3)} s from the page cache. "
            + page_cache_sentence(large) + "\n"
        )
    elif len(df) == 1:
        text += page_cache_sentence(df.iloc[0]) + "\n"
    return text


#: At or above this share of a file in the page cache, a load is taken to read memory.
CACHED_PCT = 99.0


def page_cache_sentence(row: Any) -> str:
    """What the sweep measured about where one model's loads read the file from."""
    import pandas as pd

    before = pd.to_numeric(pd.Series([getattr(row, "page_cache_before_pct", None)]),
                           errors="coerce").iloc[0]
    after = pd.to_numeric(pd.Series([getattr(row, "page_cache_after_pct", None)]),
                          errors="coerce").iloc[0]
    if pd.isna(before):
        return (f"Whether {row.model}'s file was in the page cache when its run loaded it "
                "was not measured (no mincore on this host), so its loads may have read "
                "the file from memory or from storage.")
    ended = "" if pd.isna(after) else f", {after:.0f} % when it ended"
    if before >= CACHED_PCT:
        where = ("so its loads read the file from memory, not storage; a first start "
                 "with nothing cached (after a reboot, or on a new host) pays at least "
                 "the cold-read bound")
    elif before < 100.0 - CACHED_PCT:
        where = "so its first load read the file from storage"
    else:
        where = "so its first load read the file partly from memory, partly from storage"
    return (f"When the sweep's run of {row.model} began, {before:.0f} % of its file was "
            f"in the page cache (measured with mincore{ended}), {where}.")


def check_html(html: str, figure_count: int) -> None:
    """The rendered page has no shortcode left and embeds `figure_count` images."""
    leftover = ANY_SHORTCODE.search(html)
    if leftover:
        raise UserError(f"shortcode left in the rendered report: "
                        f"{html[leftover.start():leftover.start() + 60]!r}")
    if "include" in html and re.search(r"\{\{\s*<\s*include", html):
        raise UserError("include directive left in the rendered report")
    embedded = len(re.findall(r"<img[^>]+src=\"data:image/", html))
    embedded += len(re.findall(r"<svg[\s>]", html))
    if embedded < figure_count:
        raise UserError(f"the rendered report embeds {embedded} images, expected "
                        f"{figure_count}")


def build_report(
    *,
    workload: str,
    summary_files: Mapping[str, Path],
    projection_files: Mapping[str, Path],
    figures: Mapping[str, Path],
    out_html: Path,
    settings: ReportSettings,
    run_dirs: Sequence[Path] = (),
    trace: Path | None = None,
    trace_info: Path | None = None,
    workload_spec: Mapping[str, Any] | None = None,
    slo_sets: Mapping[str, Mapping[str, float]] | None = None,
    variables_out: Path | None = None,
    source_dir: Path | None = None,
    renderer: str | None = None,
    log: Path | None = None,
    scenarios: Mapping[str, Path] | None = None,
    size_sweep: Mapping[str, Path] | None = None,
    simulation: Mapping[str, Path] | None = None,
    platforms: Path | None = None,
    tiers: Mapping[str, Path] | None = None,
    sharing: Mapping[str, Path] | None = None,
) -> ReportResult:
    """Render the report of one workload into `out_html`.

    `figures` maps figure names (latency, cold_starts, energy, projections and
    timeline_<strategy> for every strategy) to image files; `summary_files` and
    `projection_files` are the aggregate and projection steps' outputs (keys as
    `scalezero.analysis.aggregate.aggregate_workload` and
    `scalezero.system.layout.Layout.projection_files_in` return). `trace_info` (the
    workload step's record of the trace) and `workload_spec` (the workload's
    configuration entry) describe where the trace came from. The variables are also
    written to `variables_out` when given. `simulation` holds the simulation step's
    files (validation, figure and, optionally, profile); without it the report says that
    no simulation was validated. `platforms` is the table comparing the platforms
    (results/summary/platforms.csv), when several were measured. `tiers` holds the tier
    bench's outputs (tiers, engines, summary; `Layout.tiers_files`); without it the
    report says that the tiers were not measured. `sharing` holds the model-sharing
    experiment's files (summary, per_deployment, figure); without it the section says
    the experiment was not configured.
    """
    source_dir = Path(source_dir or DEFAULT_SOURCE_DIR)
    if not (source_dir / MAIN_FILE).is_file():
        raise UserError(f"report source not found: {source_dir / MAIN_FILE}")
    inputs = collect_inputs(workload, summary_files, projection_files, run_dirs, trace,
                            slo_sets, trace_info, workload_spec)
    numbers = figure_numbers(inputs.strategies, size_sweep=size_sweep is not None,
                             simulation=simulation is not None,
                             scenarios=scenarios is not None,
                             sharing=sharing is not None)
    if sharing is not None:
        figures = {**figures, "sharing_memory": Path(sharing["figure"])}
    if scenarios is not None:  # hour, grid, projections tables and the heatmap
        figures = {**figures, "scenario_heatmap": Path(scenarios["heatmap"])}
    if size_sweep is not None:
        figures = {**figures, "size_sweep": Path(size_sweep["figure"])}
    validation = profile = None
    if simulation is not None:
        import json

        import pandas as pd

        figures = {**figures, "simulation": Path(simulation["figure"])}
        validation = pd.read_csv(simulation["validation"])
        if simulation.get("profile") is not None:
            profile = json.loads(Path(simulation["profile"]).read_text(encoding="utf-8"))
    missing = [k for k in numbers if k not in figures]
    if missing:
        raise UserError(f"figures missing for the report: {', '.join(missing)}")
    engine = choose_renderer(renderer or settings.renderer)
    variables = build_variables(inputs, title=settings.title, author=settings.author,
                                renderer=engine.label, figure_numbers=numbers)
    variables["sim"] = simulation_variables(validation, profile)
    sharing_summary, sharing_detail = read_sharing(sharing)
    variables["sharing"] = sharing_variables(sharing_summary)
    tables = build_tables(inputs, variables)
    with tempfile.TemporaryDirectory(prefix="scalezero-report-") as tmp:
        work = Path(tmp) / "report"
        shutil.copytree(source_dir, work, ignore=shutil.ignore_patterns(
            "_generated", "figures", "*.html", "_variables.yml", ".quarto", "*_files"))
        generated = work / "_generated"
        generated.mkdir()
        suffixes = {}
        (work / "figures").mkdir()
        for key in numbers:
            src = Path(figures[key])
            if not src.is_file() or src.stat().st_size == 0:
                raise UserError(f"figure {key} is missing or empty: {src}")
            suffixes[key] = src.suffix
            shutil.copyfile(src, work / "figures" / f"{key}{src.suffix}")
        for key in numbers:  # the report links figures/<name>.png: keep the suffix apart
            variables["fig"][f"{key}_file"] = f"figures/{key}{suffixes[key]}"
        for name, text in tables.items():
            (generated / name).write_text(text, encoding="utf-8")
        (generated / "timelines.md").write_text(
            _timelines_md(inputs.strategies, numbers, suffixes), encoding="utf-8")
        (generated / "scenarios.md").write_text(scenarios_md(
            scenarios, numbers.get("scenario_heatmap"),
            variables["fig"].get("scenario_heatmap_file")), encoding="utf-8")
        if size_sweep is not None:
            sweep_md = size_sweep_md(Path(size_sweep["summary"]), numbers["size_sweep"],
                                     variables["fig"]["size_sweep_file"])
        else:
            sweep_md = ("No size sweep was configured (`size_sweep.models` in the "
                        "configuration), so cold start is not related to model size here.\n")
        (generated / "size_sweep.md").write_text(sweep_md, encoding="utf-8")
        (generated / "platforms.md").write_text(platforms_md(platforms), encoding="utf-8")
        (generated / "tiers.md").write_text(tiers_md(tiers), encoding="utf-8")
        (generated / "simulation.md").write_text(simulation_md(
            validation, variables["sim"], numbers.get("simulation"),
            variables["fig"].get("simulation_file")), encoding="utf-8")
        sharing_text = sharing_md(
            sharing_summary, sharing_detail, variables["sharing"],
            numbers.get("sharing_memory"), variables["fig"].get("sharing_memory_file"))
        if sharing_summary is not None:
            sharing_text += simulated_md(read_simulated(sharing))
        (generated / "sharing.md").write_text(sharing_text, encoding="utf-8")
        dumped = yaml.safe_dump(variables, sort_keys=False, allow_unicode=True)
        (work / "_variables.yml").write_text(dumped, encoding="utf-8")
        if variables_out is not None:
            Path(variables_out).parent.mkdir(parents=True, exist_ok=True)
            Path(variables_out).write_text(dumped, encoding="utf-8")
        overrides: dict[str, Any] = {"title": settings.title}
        if settings.author:
            overrides["author"] = settings.author
        overrides["date"] = variables["report"]["date"]
        meta, body = resolve_document(work / MAIN_FILE, variables, overrides)
        bibliography = meta.get("bibliography")
        css: list[Path] = []
        html_format = (meta.get("format") or {}).get("html") or {}
        if isinstance(html_format, Mapping) and html_format.get("css"):
            css.append(work / str(html_format["css"]))
        if engine.name == "pandoc" and (work / PANDOC_CSS).is_file():
            css.append(work / PANDOC_CSS)  # page layout Quarto's theme provides itself
        # The resolved text replaces the source copy (Quarto skips files named _*).
        resolved = work / ("report.qmd" if engine.name == "quarto" else "report.md")
        resolved.write_text(join_front_matter(meta, body), encoding="utf-8")
        html_path = render(engine, resolved, Path(out_html),
                           bibliography=work / bibliography if bibliography else None,
                           css=css, log=log)
    check_html(Path(html_path).read_text(encoding="utf-8"), len(numbers))
    return ReportResult(html=Path(html_path), variables=variables, renderer=engine.label)


__all__ = ["DEFAULT_SOURCE_DIR", "SECTIONS", "ReportResult", "build_report", "check_html"]
