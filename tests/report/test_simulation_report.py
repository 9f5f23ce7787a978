"""The report's simulation section: validation table, missed targets named, figure."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from simulated_runs import STRATEGIES, WORKLOAD, make_results

from scalezero.report.build import check_html
from scalezero.report.cli import make_report
from scalezero.report.figure_list import figure_numbers
from scalezero.report.figures import make_figure
from scalezero.report.simulation import NOT_RUN, simulation_md
from scalezero.report.variables import simulation_variables
from scalezero.simulate.fit import fit_profile
from scalezero.simulate.validate import VALIDATION_COLUMNS, validate_workload, write_validation
from scalezero.system.layout import Layout

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _table() -> pd.DataFrame:
    rows = [
        ["w", "naive", 1, "the 1 other run (all strategies)", "cold_starts", 3, 3, 0, 0.0,
         "±1", True],
        ["w", "naive", 1, "the 1 other run (all strategies)", "ttft_p50_ms", 200.0, 250.0,
         50.0, 25.0, "±10 %", False],
        ["w", "always_on", 1, "the 1 other run (all strategies)", "instance_s", 100.0,
         90.0, -10.0, -10.0, "±5 %", False],
        ["w", "always_on", 1, "the 1 other run (all strategies)", "e2e_p50_ms", 10.0,
         None, None, None, "±10 %", None],
    ]
    return pd.DataFrame(rows, columns=list(VALIDATION_COLUMNS))


def test_variables_count_and_name_every_missed_target() -> None:
    sim = simulation_variables(_table())
    assert (sim["n_runs"], sim["n_checked"], sim["n_met"], sim["n_missed"]) == \
        ("2", "3", "1", "2")
    assert "naive repeat 1 missed its ttft_p50_ms target (±10 %): measured 200, " \
           "simulated 250 (25 %)." in sim["missed"]
    assert "always_on repeat 1 missed its instance_s target (±5 %)" in sim["missed"]
    assert simulation_variables(_table().assign(met=True))["missed"] == \
        "Every target was met."
    assert simulation_variables(None) == {"validated": "no"}


def test_generated_section_marks_each_row() -> None:
    text = simulation_md(_table(), simulation_variables(_table()), 9, "figures/simulation.png")
    rows = [line for line in text.splitlines() if line.startswith("| naive")
            or line.startswith("| always_on")]
    assert [row.rstrip(" |").rsplit("| ", 1)[-1] for row in rows] == \
        ["met", "missed", "missed", "n/a"]
    assert "![Figure 9:" in text and "(figures/simulation.png)" in text
    assert simulation_md(None, simulation_variables(None)) == NOT_RUN


def test_figure_draws_a_png(tmp_path: Path) -> None:
    csv = write_validation(_table(), tmp_path / "v.csv")
    out = make_figure("simulation", {"validation": csv}, tmp_path / "sim.png")
    assert out.read_bytes().startswith(PNG_MAGIC)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("simreport")
    results = make_results(root, gpu=True, reps=1)
    files = Layout.simulation_files_in(root / "simulation", WORKLOAD)
    table = validate_workload(results["run_dirs"], WORKLOAD,
                              summary=pd.read_csv(results["summary"]["summary"]))
    write_validation(table, files["validation"])
    fit_profile(results["run_dirs"]).write(files["profile"])
    html = make_report(
        workload=WORKLOAD, config={}, summary_dir=root / "summary",
        run_dirs=results["run_dirs"], trace=results["trace"],
        projections_dir=root / "projections", figures_dir=root / "figures" / WORKLOAD,
        out_html=root / "report" / "report.html", renderer="pandoc",
        simulation_dir=root / "simulation")
    return {"table": table, "text": html.read_text(encoding="utf-8")}


def test_report_shows_the_validation(rendered: dict) -> None:
    text = rendered["text"]
    check_html(text, len(figure_numbers(list(STRATEGIES), simulation=True)))
    plain = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))
    assert "Simulation" in plain and "Fitted on all 3 runs" in plain
    table = rendered["table"]
    assert set(table["fit"]) == {"the 2 other runs (all strategies)"}
    # The GPU fixture runs have an energy counter: energy is checked too.
    assert "energy_total_j" in set(table["metric"])
    misses = table[table["met"].astype("boolean").eq(False).fillna(False).astype(bool)]
    for r in misses.itertuples():
        assert f"{r.strategy} repeat {r.rep} missed its {r.metric} target" in plain
    if misses.empty:
        assert "Every target was met." in plain
