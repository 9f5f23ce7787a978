"""The results/ layout: paths as the workflow and the tools have always spelled them."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalezero.errors import UserError
from scalezero.system.layout import Layout, RunKey, default_model


def test_paths_are_the_documented_literals() -> None:
    lay = Layout()
    assert str(lay.model("smollm2-135m")) == "resources/models/smollm2-135m.gguf"
    assert default_model() == Path("resources/models/smollm2-135m.gguf")
    assert str(lay.trace("bursty")) == "results/traces/bursty.csv"
    assert str(lay.lock_file) == "results/.measurement.lock"
    assert str(lay.run_dir("bursty", "naive", 2)) == "results/runs/bursty/naive/2"
    assert {k: str(v) for k, v in lay.run_files("results/runs/b/n/1").items()} == {
        "requests": "results/runs/b/n/1/requests.csv",
        "tokens": "results/runs/b/n/1/tokens.csv",
        "events": "results/runs/b/n/1/events.csv",
        "telemetry": "results/runs/b/n/1/telemetry.csv",
        "run_json": "results/runs/b/n/1/run.json",
    }
    assert {k: str(v) for k, v in lay.summary("bursty").items()} == {
        "summary": "results/summary/bursty.csv",
        "ci": "results/summary/bursty_ci.csv",
        "requests": "results/summary/bursty_requests.csv",
        "energy": "results/summary/bursty_energy.csv",
        "cold_starts": "results/summary/bursty_cold_starts.csv",
    }
    assert {k: str(v) for k, v in lay.projections("bursty").items()} == {
        "sweep": "results/projections/bursty.csv",
        "model": "results/projections/bursty_model.csv",
        "runs": "results/projections/bursty_runs.csv",
        "phases": "results/projections/bursty_phases.csv",
        "constants": "results/projections/bursty_constants.json",
    }
    assert {k: str(v) for k, v in lay.simulation("bursty").items()} == {
        "profile": "results/simulation/bursty_profile.json",
        "validation": "results/simulation/bursty_validation.csv",
    }
    assert str(lay.figure("bursty", "timeline_naive")) == \
        "results/figures/bursty/timeline_naive.png"
    assert str(lay.report_html) == "results/report/report.html"
    assert str(lay.report_variables) == "results/report/variables.yml"
    assert str(lay.sweep_trace) == "results/sweep/trace.csv"
    assert str(lay.sweep_run_dir("m")) == "results/sweep/runs/m"
    assert str(lay.sweep_bandwidth("m")) == "results/sweep/bandwidth/m.json"
    assert str(lay.sweep_page_cache("m")) == "results/sweep/page_cache/m.json"
    assert str(lay.sweep_summary) == "results/sweep/size_sweep.csv"
    assert str(lay.sweep_figure) == "results/figures/size_sweep.png"
    assert str(lay.log("runs", "bursty", "naive", "1")) == "logs/runs/bursty/naive/1.log"
    assert str(lay.log("report", "report")) == "logs/report/report.log"
    assert str(lay.log_dir("sweep", "runs", "m")) == "logs/sweep/runs/m"
    assert lay.context_probe_model("results/runs/b/n/1") == \
        Path("results/runs/b/n/.context-probe.gguf")
    with pytest.raises(ValueError):
        lay.log("report")


def test_wildcard_patterns_survive() -> None:
    lay = Layout()
    assert str(lay.run_dir("{workload}", "{strategy}", "{rep}")) == \
        "results/runs/{workload}/{strategy}/{rep}"
    assert str(lay.run_files(lay.run_dir("{workload}", "{strategy}", "{rep}"))["run_json"]) \
        == "results/runs/{workload}/{strategy}/{rep}/run.json"
    assert str(lay.model("{model}")) == "resources/models/{model}.gguf"
    assert str(lay.summary("{workload}")["ci"]) == "results/summary/{workload}_ci.csv"
    assert str(lay.figure("{workload}", "timeline_{strategy}")) == \
        "results/figures/{workload}/timeline_{strategy}.png"
    assert str(lay.log("figures", "{workload}", "latency")) == \
        "logs/figures/{workload}/latency.log"


def test_parse_run_dir_round_trips() -> None:
    lay = Layout.at(Path("/tmp/project"))
    for workload, strategy, rep in [("bursty", "keep_warm", 1), ("smoke", "naive", 12)]:
        run_dir = lay.run_dir(workload, strategy, rep)
        assert run_dir == Path(f"/tmp/project/results/runs/{workload}/{strategy}/{rep}")
        assert lay.parse_run_dir(run_dir) == RunKey(workload, strategy, str(rep))
        assert lay.parse_run_dir(str(run_dir)).strategy == strategy


def test_first_run_is_the_lowest_repeat() -> None:
    dirs = [Layout().run_dir("w", s, r) for s, r in
            [("naive", 10), ("naive", 2), ("keep_warm", 1), ("naive", 3)]]
    assert Layout.first_run(dirs, "naive") == Path("results/runs/w/naive/2")
    assert Layout.first_run([str(d) for d in dirs], "keep_warm") == \
        Path("results/runs/w/keep_warm/1")
    with pytest.raises(UserError, match="always_on"):
        Layout.first_run(dirs, "always_on")


def test_find_run_dirs_lists_folders_with_run_json(tmp_path: Path) -> None:
    lay = Layout.at(tmp_path)
    for strategy, rep in [("naive", 1), ("always_on", 1), ("naive", 2)]:
        run_json = lay.run_files(lay.run_dir("w", strategy, rep))["run_json"]
        run_json.parent.mkdir(parents=True)
        run_json.write_text("{}")
    lay.run_dir("w", "keep_warm", 1).mkdir(parents=True)  # no run.json: not a run
    assert lay.find_run_dirs("w") == [lay.run_dir("w", "always_on", 1),
                                      lay.run_dir("w", "naive", 1),
                                      lay.run_dir("w", "naive", 2)]
    assert lay.find_run_dirs("other") == []


def test_scenario_paths_sit_beside_the_simulation_files() -> None:
    lay = Layout()
    assert {k: str(v) for k, v in lay.scenarios("bursty").items()} == {
        "hour": "results/simulation/bursty_scenarios.csv",
        "grid": "results/simulation/bursty_grid.csv",
        "projections": "results/simulation/bursty_sim_projections.csv",
    }
    assert str(lay.scenario_heatmap("bursty")) == \
        "results/figures/bursty/scenario_heatmap.png"
    assert lay.scenario_files_in("x", "w")["grid"] == Path("x/w_grid.csv")
    assert str(lay.simulation("bursty")["profile"]) == \
        "results/simulation/bursty_profile.json"


def test_platforms_put_runs_and_summaries_one_folder_deeper() -> None:
    lay = Layout()
    assert str(lay.run_dir("smoke", "naive", 1, "a100")) == "results/runs/a100/smoke/naive/1"
    assert str(lay.run_dir("smoke", "naive", 1, None)) == "results/runs/smoke/naive/1"
    assert str(lay.summary("smoke", "a100")["summary"]) == "results/summary/a100/smoke.csv"
    assert str(lay.summary("smoke")["ci"]) == "results/summary/smoke_ci.csv"
    assert str(lay.platform_comparison) == "results/summary/platforms.csv"
    assert str(lay.run_dir("{workload}", "{strategy}", "{rep}", "{platform}")) == \
        "results/runs/{platform}/{workload}/{strategy}/{rep}"


def test_parse_run_dir_reads_the_platform_where_there_is_one() -> None:
    lay = Layout.at(Path("/tmp/project"))
    with_platform = lay.run_dir("smoke", "naive", 2, "h100")
    assert lay.parse_run_dir(with_platform) == RunKey("smoke", "naive", "2", "h100")
    assert lay.parse_run_dir(lay.run_dir("smoke", "naive", 2)) == RunKey("smoke", "naive", "2")
    assert lay.parse_run_dir(lay.run_dir("smoke", "naive", 2)).platform is None
    # A workload named like the runs folder is still a workload.
    assert lay.parse_run_dir(lay.run_dir("runs", "naive", 1)) == RunKey("runs", "naive", "1")
    # Outside results/runs/ only the last three names count.
    assert lay.parse_run_dir("x/y/smoke/naive/1") == RunKey("smoke", "naive", "1")
    assert lay.parse_run_dir("smoke/naive/1").platform is None


def test_find_run_dirs_of_a_platform(tmp_path: Path) -> None:
    lay = Layout.at(tmp_path)
    run_json = lay.run_files(lay.run_dir("w", "naive", 1, "p1"))["run_json"]
    run_json.parent.mkdir(parents=True)
    run_json.write_text("{}")
    assert lay.find_run_dirs("w", "p1") == [lay.run_dir("w", "naive", 1, "p1")]
    assert lay.find_run_dirs("w") == []


def test_node_lock_file_sits_beside_the_lock() -> None:
    assert Layout.node_lock_file(Layout().lock_file, "gpu07") == \
        Path("results/.measurement.gpu07.lock")
