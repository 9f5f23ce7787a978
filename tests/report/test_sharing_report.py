"""The report's model-sharing section: its table and numbers from the sharing tables
when the experiment ran, a sentence saying it was not configured otherwise."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from simulated_runs import STRATEGIES, WORKLOAD, make_results

from scalezero.analysis.sharing import PER_DEPLOYMENT_COLUMNS, SUMMARY_COLUMNS
from scalezero.report.build import check_html
from scalezero.report.cli import make_report
from scalezero.report.figure_list import figure_numbers
from scalezero.report.sharing import (
    NOT_CONFIGURED,
    plot_sharing_memory,
    sharing_md,
    sharing_variables,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _summary() -> pd.DataFrame:
    base = dict.fromkeys(SUMMARY_COLUMNS, 0)
    rows = [
        {**base, "variant": "shared-lru", "kind": "shared", "eviction": "lru",
         "policy": "per_deployment", "budget_mib": 400, "deployments": 3, "requests": 10,
         "status_200": 9, "status_503": 1, "cold_starts": 7, "eviction_cold_starts": 4,
         "evictions": 5, "ttft_p50_ms": 900.0, "ttft_p99_ms": 4321.0,
         "mem_mean_mib": 211.0, "mem_peak_mib": 377.0, "energy_j": 55.0,
         "energy_basis": "estimated", "energy_source": "host_model"},
        {**base, "variant": "dedicated-always_on", "kind": "dedicated", "eviction": "",
         "policy": "always_on", "budget_mib": float("nan"), "deployments": 3,
         "requests": 10, "status_200": 10, "cold_starts": 0, "ttft_p50_ms": 120.0,
         "ttft_p99_ms": 345.0, "mem_mean_mib": 512.0, "mem_peak_mib": 530.0,
         "energy_j": 40.0, "energy_basis": "estimated", "energy_source": "host_model"},
    ]
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _per_deployment() -> pd.DataFrame:
    base = dict.fromkeys(PER_DEPLOYMENT_COLUMNS, 0)
    rows = [{**base, "variant": v, "deployment": d, "model": f"{d}-file", "policy": "p",
             "requests": 3} for v in ("shared-lru", "dedicated-always_on")
            for d in ("alpha", "beta-two")]
    return pd.DataFrame(rows, columns=list(PER_DEPLOYMENT_COLUMNS))


def _memory_run(run_dir: Path, budget: float | None, base_mib: float = 100.0) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({
        "strategy": run_dir.name, "windows": {"replay": [0.0, 10.0]},
        "memory": {"budget_mib": budget, "eviction": "lru"}}))
    pd.DataFrame({"request_id": [0], "t_send_s": [1.0], "t_end_s": [2.0], "status": [200]}
                 ).to_csv(run_dir / "requests.csv", index=False)
    pd.DataFrame({"t_s": [float(t) for t in range(11)], "n_instances": 1,
                  "instance_mem_mib": [base_mib + 20 * t for t in range(11)]}
                 ).to_csv(run_dir / "telemetry.csv", index=False)
    return run_dir


def test_variables_compare_shared_with_dedicated() -> None:
    v = sharing_variables(_summary())
    assert v["configured"] == "yes"
    assert (v["shared_mem_peak_mib"], v["dedicated_mem_peak_mib"]) == ("377", "530")
    assert (v["shared_cold_starts"], v["shared_eviction_cold_starts"],
            v["shared_evictions"]) == ("7", "4", "5")
    assert v["shared_errors"] == "1" and v["dedicated_variant"] == "dedicated-always_on"
    assert "4 of them caused by 5 evictions" in v["divide"]
    assert "71.1 % of it" in v["divide"]  # 377 / 530
    assert v["over_budget"] == ""
    over = sharing_variables(_summary().assign(mem_peak_mib=[450.0, 530.0]))
    assert over["over_budget"].startswith("In shared-lru the instances' resident memory "
                                          "peaked above the budget")
    assert sharing_variables(None) == {"configured": "no", "divide": ""}


def test_generated_section_has_both_tables() -> None:
    text = sharing_md(_summary(), _per_deployment(), sharing_variables(_summary()), 12,
                      "figures/sharing_memory.png")
    assert "![Figure 12:" in text
    rows = [line for line in text.splitlines() if line.startswith("| shared-lru")]
    assert len(rows) == 1 + 2  # the summary row and two deployments
    assert "| 4,321 |" in rows[0]
    assert "beta-two" in text
    assert sharing_md(None, None, sharing_variables(None)) == NOT_CONFIGURED


def test_memory_figure_draws_a_png(tmp_path: Path) -> None:
    runs = [_memory_run(tmp_path / "shared-lru", 400.0),
            _memory_run(tmp_path / "dedicated-always_on", None)]
    out = plot_sharing_memory(runs, tmp_path / "memory.png")
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_every_panel_of_the_memory_figure_shows_its_highest_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first panel's budget (400 MiB) is below the second run's memory (600-800 MiB).
    import scalezero.report.figures as figures

    drawn = {}

    def keep(fig, out):
        drawn["fig"] = fig
        return out
    monkeypatch.setattr(figures, "_save", keep)
    runs = [_memory_run(tmp_path / "shared-lru", 400.0),
            _memory_run(tmp_path / "dedicated-always_on", None, base_mib=600.0)]
    plot_sharing_memory(runs, tmp_path / "memory.png")
    for ax in drawn["fig"].axes:
        low, high = ax.get_ylim()
        assert low == 0.0 and high >= 800.0, (ax.get_title(loc="left"), low, high)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("sharingreport")
    return {"root": root, **make_results(root, gpu=False, reps=1)}


def _render(results: dict, sharing: dict | None, name: str) -> tuple[str, dict]:
    root = results["root"]
    html = make_report(
        workload=WORKLOAD, config={}, summary_dir=root / "summary",
        run_dirs=results["run_dirs"], trace=results["trace"],
        projections_dir=root / "projections", figures_dir=root / "figures" / WORKLOAD,
        out_html=root / "report" / f"{name}.html",
        variables_out=root / "report" / f"{name}.yml", renderer="pandoc",
        sharing=sharing)
    variables = yaml.safe_load((root / "report" / f"{name}.yml").read_text())
    return html.read_text(encoding="utf-8"), variables


def _plain(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_report_with_the_experiment(results: dict) -> None:
    root = results["root"] / "sharing"
    root.mkdir()
    files = {"summary": root / "summary.csv", "per_deployment": root / "per_deployment.csv",
             "figure": root / "sharing_memory.png"}
    _summary().to_csv(files["summary"], index=False)
    _per_deployment().to_csv(files["per_deployment"], index=False)
    plot_sharing_memory([_memory_run(root / "runs" / "shared-lru", 400.0)], files["figure"])
    html, variables = _render(results, files, "with")
    check_html(html, len(figure_numbers(list(STRATEGIES), sharing=True)))
    plain = _plain(html)
    assert "Model sharing" in plain
    assert variables["sharing"]["shared_evictions"] == "5"
    assert "after 5 evictions" in plain
    # The discussion cites the same numbers.
    assert "4 of them caused by 5 evictions" in plain
    assert NOT_CONFIGURED.split("(")[0].strip() not in plain


def test_report_without_the_experiment(results: dict) -> None:
    html, variables = _render(results, None, "without")
    check_html(html, len(figure_numbers(list(STRATEGIES))))
    assert variables["sharing"]["configured"] == "no"
    assert "The model-sharing experiment was not configured" in _plain(html)


def test_the_simulation_check_sums_each_shared_variant_over_its_models() -> None:
    from scalezero.report.sharing import simulated_md, simulated_table

    rows = [
        ("shared-lru", "a", "cold_starts", 3, 2), ("shared-lru", "b", "cold_starts", 1, 2),
        ("shared-lru", "a", "evictions", 2, 1), ("shared-lru", "b", "evictions", 0, 1),
        ("shared-lru", "a", "eviction_cold_starts", 1, 1),
        ("shared-lru", "b", "eviction_cold_starts", 0, 1),
        ("shared-lru", "a", "memory_refused", 0, 0), ("shared-lru", "b", "memory_refused", 2, 0),
        ("shared-lru", "a", "instance_s", 10.5, 9.0), ("shared-lru", "b", "instance_s", 4.0, 6.0),
        ("shared-lru", "", "memory_peak_mib", 400.0, 315.0),
    ]
    frame = pd.DataFrame(rows, columns=["variant", "deployment", "metric", "measured",
                                        "simulated"])
    frame["error"] = frame["simulated"] - frame["measured"]
    table = simulated_table(frame)
    line = next(row for row in table.splitlines() if row.startswith("| shared-lru"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells == ["shared-lru", "4 / 4", "2 / 2", "1 / 2", "2 / 0", "14.5 / 15",
                     "400 / 315"]
    assert "fitted on the dedicated runs" in simulated_md(frame)
    assert simulated_md(None) == ""
