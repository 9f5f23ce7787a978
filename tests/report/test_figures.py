"""Figures: each one is drawn from pipeline files, non-empty, with consistent colours."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from simulated_runs import STRATEGIES, make_results, make_run

from scalezero.analysis.aggregate import aggregate_workload
from scalezero.analysis.constants import projection_settings
from scalezero.analysis.projections import write_projections
from scalezero.errors import UserError
from scalezero.report import figures as fg
from scalezero.system.layout import Layout


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("fig")
    out = make_results(root, gpu=True, reps=1)
    out["projections"] = write_projections(
        out["summary"]["summary"], out["summary"]["energy"], out["run_dirs"],
        projection_settings({}), Layout.projection_files_in(root / "projections", "demo"))
    return out


def _check_png(path: Path, min_width: int = 900) -> None:
    assert path.is_file() and path.stat().st_size > 10_000
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= min_width and im.height >= 300
        # Not a blank canvas: some pixels are far from white.
        extrema = im.convert("L").getextrema()
        assert extrema[0] < 100


def test_colors_are_fixed_and_distinct() -> None:
    colors = fg.strategy_colors(["naive", "keep_warm", "always_on", "keep_warm_60", "zz"])
    assert colors["always_on"] == fg.strategy_colors(["always_on"])["always_on"]
    assert colors["naive"] == fg.strategy_colors(["naive", "other"])["naive"]
    assert len(set(colors.values())) == len(colors)
    assert fg.strategy_order(["zz", "naive", "always_on", "keep_warm"]) == [
        "always_on", "keep_warm", "naive", "zz"]
    # A sweep's values in numeric order, not as text.
    assert fg.strategy_order(["keep_warm-30", "naive", "keep_warm-2.5", "keep_warm-4",
                              "keep_warm-10"]) == [
        "naive", "keep_warm-2.5", "keep_warm-4", "keep_warm-10", "keep_warm-30"]


def test_every_figure(results: dict, tmp_path: Path) -> None:
    inputs = {**results["summary"], **results["projections"]}
    for name in ("latency", "cold_starts", "energy", "projections"):
        out = fg.make_figure(name, inputs, tmp_path / f"{name}.png",
                             strategies=list(STRATEGIES))
        _check_png(out)
    for run_dir in results["run_dirs"]:
        out = fg.make_figure("timeline", {"run_dir": run_dir},
                             tmp_path / f"timeline_{run_dir.parent.name}.png",
                             strategies=list(STRATEGIES))
        _check_png(out)


def test_svg_output(results: dict, tmp_path: Path) -> None:
    out = fg.plot_latency(results["summary"]["requests"], tmp_path / "latency.svg")
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "Time to first token" in text  # text kept as text, searchable


def test_same_data_same_file(results: dict, tmp_path: Path) -> None:
    a = fg.plot_cold_starts(results["summary"]["cold_starts"], results["summary"]["summary"],
                            tmp_path / "a.png")
    b = fg.plot_cold_starts(results["summary"]["cold_starts"], results["summary"]["summary"],
                            tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes()


def test_always_on_only(tmp_path: Path) -> None:
    # No cold start anywhere: the figures say so instead of failing.
    run = make_run(tmp_path / "runs", "always_on", 1, gpu=False)
    summary = aggregate_workload([run], tmp_path / "summary", "demo")
    proj = write_projections(summary["summary"], summary["energy"], [run], projection_settings({}),
                             Layout.projection_files_in(tmp_path / "proj", "demo"))
    _check_png(fg.plot_cold_starts(summary["cold_starts"], summary["summary"],
                                   tmp_path / "cs.png"), min_width=800)
    _check_png(fg.plot_projections(proj["sweep"], proj["model"], proj["constants"],
                                   tmp_path / "p.png"))
    _check_png(fg.plot_timeline(run, tmp_path / "t.png"))


def test_unknown_figure_and_missing_input(results: dict, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown figure"):
        fg.make_figure("pie", {}, tmp_path / "x.png")
    with pytest.raises(UserError, match="missing input"):
        fg.make_figure("energy", {"runs": results["projections"]["runs"]}, tmp_path / "x.png")


def test_matplotlib_is_lazy() -> None:
    import subprocess
    import sys

    code = "import sys, scalezero.report.figures; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_size_sweep_figure(tmp_path: Path) -> None:
    import pandas as pd

    from scalezero.analysis.sweep import SWEEP_COLUMNS

    mib = 1024 * 1024
    rows = [{"model": name, "file_bytes": size_mib * mib, "cold_start_mean_s": 1.5 * s,
             "spawn_to_runtime_ready_mean_s": 0.2 * s,
             "runtime_ready_to_model_loaded_mean_s": 0.8 * s,
             "model_loaded_to_ready_mean_s": 0.3 * s, "ready_to_first_token_mean_s": 0.2 * s,
             "load_lower_bound_page_cache_s": size_mib / 5000.0,
             "load_lower_bound_cold_s": size_mib / 200.0}
            for name, size_mib, s in (("small", 10, 1.0), ("large", 500, 3.0))]
    csv = tmp_path / "size_sweep.csv"
    pd.DataFrame(rows, columns=list(SWEEP_COLUMNS)).to_csv(csv, index=False)
    _check_png(fg.plot_size_sweep(csv, tmp_path / "size_sweep.png"), min_width=700)
