"""The rendered report shows each strategy's own numbers in that strategy's column.

Renders the report of report_value_fixtures once (pandoc) and reads its HTML tables
back; expected values are those derived by hand in test_report_values.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_value_fixtures import CONFIG, STRATEGIES, WORKLOAD, make_value_results
from test_report_values import (
    COLD_STARTS,
    INSTANCE_S,
    ORDER,
    energy_total_j,
    expected_day,
    ok_requests,
    phase_energy_j,
)

from scalezero.report.cli import make_report
from scalezero.report.format import NA, fmt, fmt_pct


class _Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts (header cells included)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(re.sub(r"\s+", " ", "".join(self._cell)).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_tables(html: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def find_table(tables: list[list[list[str]]], first_cell: str) -> list[list[str]]:
    """The table with a row whose first cell is `first_cell`."""
    return next(t for t in tables if any(row and row[0] == first_cell for row in t))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("html")
    results = make_value_results(root)
    html = make_report(
        workload=WORKLOAD, config=CONFIG, summary_dir=root / "summary",
        run_dirs=results["run_dirs"], trace=results["trace"],
        projections_dir=root / "projections", figures_dir=root / "figures",
        out_html=root / "report.html", renderer="pandoc")
    text = Path(html).read_text(encoding="utf-8")
    return {"text": text, "tables": html_tables(text)}


def test_summary_table_columns(page: dict) -> None:
    table = find_table(page["tables"], "energy per request (J)")
    header = table[0]
    assert header[1:] == list(ORDER)
    rows = {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in table[1:]}
    assert rows["energy per request (J)"] == {"always_on": "203", "keep_warm": "150",
                                              "naive": "216"}  # 608/3, 752.3/5, 647.9/3
    assert rows["energy per request (J)"] == {
        st: fmt(energy_total_j(st) / ok_requests(st)) for st in ORDER}
    assert rows["TTFT p50, warm requests (ms)"] == {"always_on": "52", "keep_warm": "96",
                                                    "naive": NA}
    assert rows["TTFT p50, cold requests (ms)"] == {"always_on": NA, "keep_warm": "1,150",
                                                    "naive": "1,800"}
    assert rows["cold starts per run"] == {st: str(COLD_STARTS[st]) for st in ORDER}
    assert rows["idle-loaded energy per run (J)"] == {
        st: fmt(phase_energy_j(st, "idle_loaded")) for st in ORDER}
    assert rows["GPU memory held (GiB·h per run)"] == {
        st: fmt(STRATEGIES[st].mem_mib * INSTANCE_S[st] / 1024 / 3600) for st in ORDER}
    cost = next(k for k in rows if k.startswith("cost per 1,000 requests"))
    assert rows[cost] == {st: fmt(INSTANCE_S[st] / 1000 / ok_requests(st) * 1000)
                          for st in ORDER}


def test_energy_and_cold_start_tables(page: dict) -> None:
    energy = next(t for t in page["tables"] if t[0][:2] == ["strategy", "energy per run (J)"])
    rows = {row[0]: row for row in energy[1:]}
    for st in ORDER:
        total = energy_total_j(st)
        assert rows[st][1] == fmt(total), st
        assert rows[st][4] == fmt(total / ok_requests(st)), st
    cold = next(t for t in page["tables"] if t[0][:2] == ["strategy", "cold starts per run"])
    rows = {row[0]: row for row in cold[1:]}
    assert rows["naive"][1:3] == ["3", "0"] and rows["naive"][7] == "1.5"
    assert rows["keep_warm"][1:3] == ["2", "0"] and rows["keep_warm"][7] == "1"
    assert rows["always_on"][1] == "0" and rows["always_on"][7] == NA


def test_projection_table_rows(page: dict) -> None:
    table = next(t for t in page["tables"] if t[0][:2] == ["requests/h", "strategy"])
    for rph in (6.0, 600.0):
        for st in ORDER:
            exp = expected_day(st, rph)
            row = next(r for r in table if r[:2] == [fmt(rph), st])
            assert row[2:4] == [fmt_pct(exp["cold_start_share"]),
                                fmt(exp["instance_h_per_day"])], (st, rph)
            assert row[5] == fmt(exp["energy_kwh_per_year"]), (st, rph)
            assert row[8] == fmt(exp["cost_usd_per_year"]), (st, rph)


def test_context_power_row(page: dict) -> None:
    table = next(t for t in page["tables"] if t[0][:2] == ["quantity", "status"])
    row = next(r for r in table if r[0].startswith("context-only idle power"))
    assert row[1] == "measured" and "25 W" in row[2] and "21 W" in row[2], row
