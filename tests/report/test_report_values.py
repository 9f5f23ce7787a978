"""The report's numbers, strategy by strategy, against values worked out by hand.

The runs are those of report_value_fixtures: every strategy has its own latencies,
cold-start phases, power levels and memory, so a number shown under the wrong strategy
or pooled over strategies differs from the expected one. Expected values are derived
below from the fixture's hand-chosen inputs (arithmetic written out, percentiles by
their definition), never read back from the code under test. Strings are compared after
formatting with `fmt`, whose own behaviour test_report.test_formatting pins down.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from report_value_fixtures import (
    CONFIG,
    DURATION_S,
    PRICE_USD_PER_H,
    STRATEGIES,
    TOKENS_OUT,
    TRAFFIC_RPH,
    WORKLOAD,
    make_value_results,
)

from scalezero.analysis import projections as pj
from scalezero.analysis.constants import projection_settings
from scalezero.errors import UserError
from scalezero.report.format import NA, fmt, fmt_pct
from scalezero.report.inputs import collect_inputs
from scalezero.report.tables import build_tables
from scalezero.report.variables import build_variables
from scalezero.system.layout import Layout

ORDER = ("always_on", "keep_warm", "naive")  # the report's column order
DAY_S = 86400.0


def report_from(results: dict[str, Any], out: Path,
                config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Aggregated runs -> projections -> report variables and tables (no rendering)."""
    settings = projection_settings(config or CONFIG)
    projections = pj.write_projections(
        results["summary"]["summary"], results["summary"]["energy"], results["run_dirs"],
        settings, Layout.projection_files_in(out / "projections", WORKLOAD))
    inputs = collect_inputs(WORKLOAD, results["summary"], projections, results["run_dirs"],
                            results["trace"])
    variables = build_variables(inputs, title="T", author="", renderer="test")
    return {"results": results, "projections": projections, "inputs": inputs,
            "variables": variables, "tables": build_tables(inputs, variables)}


def build(root: Path, *, gpu: bool = True, context: bool = True) -> dict[str, Any]:
    return report_from(make_value_results(root, gpu=gpu, context=context), root)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_value_results(tmp_path_factory.mktemp("values"))


@pytest.fixture
def built(results: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Projections and report for each test anew (a quarter of a second): every test
    runs the code whose output it checks, which is what a mutation tool, crediting code
    to the tests that ran it, needs to pick the right tests."""
    return report_from(results, tmp_path)


def parse_table(markdown: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a generated pipe table (escaped pipes are not used here)."""
    lines = [line for line in markdown.strip().splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return cells[0], cells[2:]


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
    """Row label -> {column header: cell} of a generated table."""
    header, rows = parse_table(markdown)
    return {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows}


def by_strategy(markdown: str) -> dict[str, dict[str, str]]:
    """Strategy -> {column header: cell} of a table with one row per strategy."""
    header, rows = parse_table(markdown)
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), by definition."""
    xs = sorted(values)
    rank = (len(xs) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (rank - lo) * (xs[hi] - xs[lo])


# ---------------------------------------------------------------------------------------
# Hand-derived expectations per strategy (one run each). Power levels, phase times and
# memory come from report_value_fixtures.STRATEGIES; the sums are spelled out.

# Seconds in each phase of the 20 s replay window.
PHASE_S = {
    # Up all window; active while one of the three requests is in flight.
    "always_on": {"cold_start": 0.0, "active": 0.4 + 0.5 + 0.6, "idle_loaded": 20.0 - 1.5,
                  "empty": 0.0},
    # Three 1.5 s starts; active from ready to the end of the answer (2.5->3.0,
    # 8.5->9.1, 14.5->15.7); 0.2 s idle before each stop.
    "naive": {"cold_start": 3 * 1.5, "active": 0.5 + 0.6 + 1.2, "idle_loaded": 3 * 0.2,
              "empty": 20.0 - (2.2 + 2.3 + 2.9)},
    # Two 1.0 s starts; active 2.0->2.4, 3.0->3.4, 11.0->11.8, 12.0->12.5, 14.0->14.7;
    # up 1.0->6.4 and 10.0->17.7.
    "keep_warm": {"cold_start": 2 * 1.0, "active": 0.4 + 0.4 + 0.8 + 0.5 + 0.7,
                  "idle_loaded": (5.4 + 7.7) - 2.0 - 2.8, "empty": 20.0 - (5.4 + 7.7)},
}
POWER_OF_PHASE = {"cold_start": "starting", "active": "active", "idle_loaded": "idle",
                  "empty": "bare"}
INSTANCE_S = {"always_on": 20.0, "naive": 2.2 + 2.3 + 2.9, "keep_warm": 5.4 + 7.7}
COLD_STARTS = {"always_on": 0, "naive": 3, "keep_warm": 2}
COLD_START_S = {"naive": 0.3 + 0.9 + 0.3, "keep_warm": 0.2 + 0.6 + 0.2}


def phase_energy_j(strategy: str, phase: str) -> float:
    return PHASE_S[strategy][phase] * STRATEGIES[strategy].power_w[POWER_OF_PHASE[phase]]


def energy_total_j(strategy: str) -> float:
    return sum(phase_energy_j(strategy, p) for p in PHASE_S[strategy])


def ok_requests(strategy: str) -> int:
    return len(STRATEGIES[strategy].requests)


def test_hand_derivation_is_consistent() -> None:
    """The phase times above add up to the window (a check of the derivation itself)."""
    for strategy, phases in PHASE_S.items():
        assert sum(phases.values()) == pytest.approx(DURATION_S), strategy
        assert phases["cold_start"] == pytest.approx(
            COLD_STARTS[strategy] * COLD_START_S.get(strategy, 0.0))
    assert energy_total_j("always_on") == pytest.approx(608.0)  # 18.5*28 + 1.5*60
    assert energy_total_j("naive") == pytest.approx(647.9)  # 4.5*45+2.3*70+0.6*33+12.6*21
    assert energy_total_j("keep_warm") == pytest.approx(752.3)  # 2*50+2.8*75+8.3*35+6.9*22


# ---------------------------------------------------------------------------------------
# Latency


@pytest.mark.parametrize("strategy", ORDER)
def test_latency_percentiles_are_each_strategys_own(built: dict, strategy: str) -> None:
    v = built["variables"]["s"][strategy]
    reqs = STRATEGIES[strategy].requests
    subsets = {"": reqs, "cold_": [r for r in reqs if r.cold],
               "warm_": [r for r in reqs if not r.cold]}
    for metric in ("ttft", "e2e"):
        for subset, rs in subsets.items():
            values = [getattr(r, f"{metric}_ms") for r in rs]
            for q in (50, 90, 99):
                expected = fmt(percentile(values, q)) if values else NA
                assert v[f"{metric}_{subset}p{q}_ms"] == expected, (metric, subset, q)
    # TPOT = (E2E - TTFT) / (tokens - 1), per request.
    tpot = [(r.e2e_ms - r.ttft_ms) / (TOKENS_OUT - 1) for r in reqs]
    assert v["tpot_p50_ms"] == fmt(percentile(tpot, 50))
    assert v["tpot_p99_ms"] == fmt(percentile(tpot, 99))


def test_latency_values_spot_checked_by_hand(built: dict) -> None:
    """A few of the above as literals, so a wrong `percentile` helper cannot hide."""
    s = built["variables"]["s"]
    assert s["always_on"]["ttft_p50_ms"] == "52"  # 40, 52, 64
    assert s["always_on"]["ttft_p90_ms"] == "61.6"  # 52 + 0.8 * 12
    assert s["naive"]["ttft_cold_p50_ms"] == "1,800"  # 1700, 1800, 1900
    assert s["naive"]["ttft_warm_p50_ms"] == NA
    assert s["keep_warm"]["ttft_cold_p50_ms"] == "1,150"  # (1100 + 1200) / 2
    assert s["keep_warm"]["ttft_warm_p99_ms"] == "99.9"  # 96 + 0.98 * 4 = 99.92
    assert s["keep_warm"]["e2e_p50_ms"] == "700"  # 400 500 700 1400 1800


@pytest.mark.parametrize("strategy", ORDER)
def test_every_other_variable_of_a_strategy(built: dict, strategy: str) -> None:
    spec = STRATEGIES[strategy]
    v = built["variables"]["s"][strategy]
    n = ok_requests(strategy)
    assert v["name"] == strategy
    assert (v["requests"], v["ok"], v["errors"]) == (fmt(n), fmt(n), "0")
    assert v["duration_s"] == fmt(DURATION_S)
    assert v["cold_start_mean_s"] == (fmt(COLD_START_S[strategy])
                                      if strategy in COLD_START_S else NA)
    # Tokens are evenly spaced: each request has 4 gaps of (E2E - TTFT) / 4.
    gaps = [(r.e2e_ms - r.ttft_ms) / (TOKENS_OUT - 1) for r in spec.requests
            for _ in range(TOKENS_OUT - 1)]
    assert v["itl_p99_ms"] == fmt(percentile(gaps, 99))
    above = energy_total_j(strategy) - spec.power_w["bare"] * DURATION_S
    assert v["energy_per_output_token_above_baseline_j"] == fmt(above / (n * TOKENS_OUT))
    assert v["policy"] == spec.policy["name"]
    ttl = {"always_on": "forever", "naive": "0", "keep_warm": "3"}[strategy]
    assert v["idle_ttl_s"] == ttl


def test_busy_share_without_instance_time(results: dict, tmp_path: Path) -> None:
    """A run that held no instance at all has no busy share (not a division by zero)."""
    out = report_from(results, tmp_path)
    inputs = out["inputs"]
    inputs.summary.loc[inputs.summary["strategy"] == "naive", "instance_s"] = 0.0
    variables = build_variables(inputs, title="T", author="", renderer="test")
    assert variables["s"]["naive"]["busy_share_pct"] == NA
    assert variables["s"]["keep_warm"]["busy_share_pct"] == fmt_pct(2.8 / 13.1)


def test_failed_starts_in_their_strategys_row(results: dict, tmp_path: Path) -> None:
    inputs = report_from(results, tmp_path)["inputs"]
    inputs.summary.loc[inputs.summary["strategy"] == "keep_warm", "failed_starts"] = 1
    rows = by_strategy(build_tables(inputs, build_variables(
        inputs, title="T", author="", renderer="test"))["cold_start_table.md"])
    assert [rows[st]["failed per run"] for st in ORDER] == ["0", "1", "0"]


def test_goodput_attainment_per_strategy(built: dict) -> None:
    # mlperf_standard: TTFT <= 2000 ms and TPOT <= 100 ms.
    # always_on TPOT 90, 112, 134 -> 1 of 3; naive TPOT 75, 75, 200 -> 2 of 3;
    # keep_warm TPOT 75, 80, 150, 101, 150 -> 2 of 5.
    s = built["variables"]["s"]
    assert s["always_on"]["attainment_mlperf_standard_pct"] == fmt(100 / 3)
    assert s["naive"]["attainment_mlperf_standard_pct"] == fmt(200 / 3)
    assert s["keep_warm"]["attainment_mlperf_standard_pct"] == fmt(40.0)
    assert s["keep_warm"]["goodput_mlperf_standard_rps"] == fmt(2 / DURATION_S)


# ---------------------------------------------------------------------------------------
# Cold starts


def test_cold_start_counts_and_phases(built: dict) -> None:
    s = built["variables"]["s"]
    cold_requests = {"always_on": 0, "naive": 3, "keep_warm": 2}
    for st in ORDER:
        assert s[st]["cold_starts"] == fmt(COLD_STARTS[st]), st
        assert s[st]["cold_share_pct"] == fmt(100 * cold_requests[st] / ok_requests(st)), st
    header, _ = parse_table(built["tables"]["cold_start_table.md"])
    assert header == ["strategy", "cold starts per run", "failed per run",
                      "spawn → runtime (s)", "runtime → loaded (s)", "loaded → ready (s)",
                      "ready → first token (s)", "spawn → ready (s)",
                      "energy per cold start (J)"]
    rows = by_strategy(built["tables"]["cold_start_table.md"])
    assert [rows[st]["failed per run"] for st in ORDER] == ["0", "0", "0"]
    assert rows["always_on"]["cold starts per run"] == "0"
    assert rows["always_on"]["spawn → ready (s)"] == NA  # its only start preceded the replay
    naive, warm = rows["naive"], rows["keep_warm"]
    assert (naive["spawn → runtime (s)"], naive["runtime → loaded (s)"],
            naive["loaded → ready (s)"], naive["spawn → ready (s)"]) == ("0.3", "0.9", "0.3",
                                                                       "1.5")
    assert (warm["spawn → runtime (s)"], warm["runtime → loaded (s)"],
            warm["loaded → ready (s)"], warm["spawn → ready (s)"]) == ("0.2", "0.6", "0.2",
                                                                     "1")
    # ready -> first token: naive 0.2, 0.3, 0.4; keep_warm 0.1, 0.2.
    assert naive["ready → first token (s)"] == fmt(0.3)
    assert warm["ready → first token (s)"] == fmt(0.15)
    # A cold start's energy: starting power x its duration.
    assert naive["energy per cold start (J)"] == fmt(45.0 * 1.5)
    assert warm["energy per cold start (J)"] == fmt(50.0 * 1.0)
    assert rows["naive"]["cold starts per run"] == "3"
    assert rows["keep_warm"]["cold starts per run"] == "2"


# ---------------------------------------------------------------------------------------
# Energy


@pytest.mark.parametrize("strategy", ORDER)
def test_energy_per_phase_per_run_and_per_request(built: dict, strategy: str) -> None:
    p = STRATEGIES[strategy].power_w
    total = energy_total_j(strategy)
    above = total - p["bare"] * DURATION_S
    ok = ok_requests(strategy)
    tokens = ok * TOKENS_OUT
    runs = pd.read_csv(built["projections"]["runs"]).set_index("strategy")
    row = runs.loc[strategy]
    assert row["energy_total_j"] == pytest.approx(total, rel=1e-9)
    assert row["energy_above_baseline_j"] == pytest.approx(above, rel=1e-9)
    assert row["energy_per_request_j"] == pytest.approx(total / ok, rel=1e-9)
    assert row["bare_idle_power_w"] == pytest.approx(p["bare"], rel=1e-9)
    assert (row["duration_s"], row["requests"], row["ok"], row["output_tokens"]) == (
        DURATION_S, ok, ok, tokens)
    assert row["energy_per_output_token_above_baseline_j"] == pytest.approx(above / tokens)
    assert row["above_baseline_share"] == pytest.approx(above / total)
    phases = pd.read_csv(built["projections"]["phases"])
    mine = phases[phases["strategy"] == strategy].set_index("phase")
    for phase, seconds in PHASE_S[strategy].items():
        assert mine.at[phase, "duration_s"] == pytest.approx(seconds, abs=1e-9), phase
        assert mine.at[phase, "energy_j"] == pytest.approx(
            phase_energy_j(strategy, phase), abs=1e-6), phase

    v = built["variables"]["s"][strategy]
    assert v["energy_total_j"] == fmt(total)
    assert v["energy_above_baseline_j"] == fmt(above)
    assert v["energy_per_request_j"] == fmt(total / ok)
    assert v["energy_per_request_above_baseline_j"] == fmt(above / ok)
    assert v["energy_per_output_token_j"] == fmt(total / tokens)
    assert v["above_baseline_share_pct"] == fmt(100 * above / total)
    assert v["idle_loaded_energy_j"] == fmt(phase_energy_j(strategy, "idle_loaded"))
    assert v["idle_loaded_s"] == fmt(PHASE_S[strategy]["idle_loaded"])
    cold = COLD_START_S.get(strategy)
    assert v["cold_start_energy_mean_j"] == (fmt(p["starting"] * cold) if cold else NA)

    header, _ = parse_table(built["tables"]["energy_table.md"])
    assert header == ["strategy", "energy per run (J)", "above bare idle (J)",
                      "above-baseline share (%)", "per request (J)", "per output token (J)",
                      "basis"]
    table = by_strategy(built["tables"]["energy_table.md"])[strategy]
    assert table["above-baseline share (%)"] == fmt(100 * above / total)
    assert table["energy per run (J)"] == fmt(total)
    assert table["above bare idle (J)"] == fmt(above)
    assert table["per request (J)"] == fmt(total / ok)
    assert table["per output token (J)"] == fmt(total / tokens)
    assert table["basis"] == "measured"


# ---------------------------------------------------------------------------------------
# Memory, instance time and cost


@pytest.mark.parametrize("strategy", ORDER)
def test_memory_instance_time_and_cost(built: dict, strategy: str) -> None:
    spec = STRATEGIES[strategy]
    held_s = INSTANCE_S[strategy]
    # Memory is held while an instance is alive: mem x alive seconds in the window.
    gib_h = spec.mem_mib * held_s / 1024.0 / 3600.0
    cost_usd = held_s / 3600.0 * PRICE_USD_PER_H
    v = built["variables"]["s"][strategy]
    assert v["instance_s"] == fmt(held_s)
    assert v["mem_gib_h"] == fmt(gib_h)
    assert v["cost_per_1000_requests_usd"] == fmt(cost_usd / ok_requests(strategy) * 1000)
    assert v["busy_share_pct"] == fmt_pct(PHASE_S[strategy]["active"] / held_s)
    runs = pd.read_csv(built["projections"]["runs"]).set_index("strategy")
    assert runs.at[strategy, "cost_usd"] == pytest.approx(cost_usd, rel=1e-9)
    assert runs.at[strategy, "mem_gib_h"] == pytest.approx(gib_h, rel=1e-9)
    resources = built["tables"]["resources_list.md"]
    line = next(x for x in resources.splitlines() if x.startswith(f"- **{strategy}**"))
    assert f"up {fmt(held_s)} s of a {fmt(DURATION_S)} s replay" in line
    assert f"held {fmt(gib_h)} GiB·h (peak {fmt(spec.mem_mib)} MiB)" in line


def test_summary_table_puts_each_value_in_its_strategys_column(built: dict) -> None:
    header, _ = parse_table(built["tables"]["summary_table.md"])
    assert header[1:] == list(ORDER)
    rows = table_rows(built["tables"]["summary_table.md"])
    expect = {
        "TTFT p50, warm requests (ms)": {"always_on": "52", "naive": NA, "keep_warm": "96"},
        "TTFT p50, cold requests (ms)": {"always_on": NA, "naive": "1,800",
                                         "keep_warm": "1,150"},
        "cold starts per run": {"always_on": "0", "naive": "3", "keep_warm": "2"},
        "cold-start share of requests (%)": {"always_on": "0", "naive": "100",
                                             "keep_warm": "40"},
        "energy per request (J)": {st: fmt(energy_total_j(st) / ok_requests(st))
                                   for st in ORDER},
        "idle-loaded energy per run (J)": {st: fmt(phase_energy_j(st, "idle_loaded"))
                                           for st in ORDER},
        "GPU memory held (GiB·h per run)": {
            st: fmt(STRATEGIES[st].mem_mib * INSTANCE_S[st] / 1024 / 3600) for st in ORDER},
    }
    for label, cells in expect.items():
        assert rows[label] == cells, label
    assert rows["TTFT p99, warm requests (ms)"] == {"always_on": fmt(64 - 0.02 * 12),
                                                    "keep_warm": fmt(96 + 0.98 * 4),
                                                    "naive": NA}
    assert rows["TTFT p99, cold requests (ms)"] == {"always_on": NA,
                                                    "keep_warm": fmt(1100 + 0.99 * 100),
                                                    "naive": fmt(1800 + 0.98 * 100)}
    # The price the costs assume, in the row's label.
    price_row = "cost per 1,000 requests (USD, at 3.6 USD/h of instance time)"
    assert rows[price_row] == {
        st: fmt(INSTANCE_S[st] / 3600 * PRICE_USD_PER_H / ok_requests(st) * 1000)
        for st in ORDER}
    # The literal values, as a reader would check them: 608/3, 647.9/3, 752.3/5 J.
    assert rows["energy per request (J)"] == {"always_on": "203", "naive": "216",
                                              "keep_warm": "150"}
    assert list(rows) == [
        "TTFT p50, cold requests (ms)", "TTFT p99, cold requests (ms)",
        "TTFT p50, warm requests (ms)", "TTFT p99, warm requests (ms)",
        "cold-start share of requests (%)", "cold starts per run", "energy per request (J)",
        "idle-loaded energy per run (J)", "GPU memory held (GiB·h per run)", price_row,
        "requests meeting mlperf_standard (%)", "requests meeting mlperf_interactive (%)"]


def test_summary_table_labels_estimates_and_host_memory(tmp_path: Path) -> None:
    out = build(tmp_path, gpu=False)
    labels = list(table_rows(out["tables"]["summary_table.md"]))
    assert "energy per request (J) (estimated)" in labels
    assert "idle-loaded energy per run (J) (estimated)" in labels
    assert "host memory held (instance RSS) (GiB·h per run)" in labels


def test_projection_keys_name_the_level(results: dict, tmp_path: Path) -> None:
    """proj.<strategy>.r<level>: the level with six significant digits, "_" for the
    point and no thousands separator."""
    config = {**CONFIG, "projections": {**CONFIG["projections"],
                                        "traffic_rph": [0.1234567, 2.5, 1500]}}
    proj = report_from(results, tmp_path, config)["variables"]["proj"]
    assert sorted(proj["naive"]) == ["r0_123457", "r1500", "r2_5"]
    assert proj["levels"] == "0.123, 2.5, 1,500"


# ---------------------------------------------------------------------------------------
# Projections: the model pooled over runs, then level by level


def pooled_model() -> dict[str, float]:
    """The projection's inputs from the fixture by hand: state power pooled over the
    runs (energy / time), cold starts weighted by their number."""
    idle_s = sum(PHASE_S[st]["idle_loaded"] for st in ORDER)
    active_s = sum(PHASE_S[st]["active"] for st in ORDER)
    n_cold = sum(COLD_STARTS.values())
    cold_above = {st: (STRATEGIES[st].power_w["starting"] - STRATEGIES[st].power_w["bare"])
                  * COLD_START_S[st] for st in COLD_START_S}
    return {
        "bare": (20.0 + 21.0 + 22.0) / 3,
        "idle": sum(phase_energy_j(st, "idle_loaded") for st in ORDER) / idle_s,
        "active": sum(phase_energy_j(st, "active") for st in ORDER) / active_s,
        "cold_s": (3 * 1.5 + 2 * 1.0) / n_cold,
        "cold_j": (3 * 45.0 * 1.5 + 2 * 50.0 * 1.0) / n_cold,
        "cold_above_j": (3 * cold_above["naive"] + 2 * cold_above["keep_warm"]) / n_cold,
        "s_per_request": active_s / sum(ok_requests(st) for st in ORDER),
    }


def test_projection_model_pools_the_runs(built: dict) -> None:
    m = pooled_model()
    # The same numbers once more as literals: 828.3 J / 27.4 s, 461 J / 6.6 s, ...
    assert m["idle"] == pytest.approx(828.3 / 27.4)
    assert m["active"] == pytest.approx(461.0 / 6.6)
    assert (m["cold_s"], m["cold_j"], m["cold_above_j"]) == pytest.approx((1.3, 60.5, 32.8))
    assert m["s_per_request"] == pytest.approx(0.6)
    model = pd.read_csv(built["projections"]["model"]).set_index("strategy")
    for st in ORDER:
        row = model.loc[st]
        assert row["bare_idle_power_w"] == pytest.approx(m["bare"], rel=1e-9)
        assert row["idle_loaded_power_w"] == pytest.approx(m["idle"], rel=1e-9)
        assert row["active_power_w"] == pytest.approx(m["active"], rel=1e-9)
        assert row["cold_start_s"] == pytest.approx(m["cold_s"], rel=1e-9)
        assert row["cold_start_energy_j"] == pytest.approx(m["cold_j"], rel=1e-9)
        assert row["cold_start_above_baseline_j"] == pytest.approx(m["cold_above_j"],
                                                                    rel=1e-9)
        assert row["active_s_per_request"] == pytest.approx(m["s_per_request"], rel=1e-9)
        assert row["break_even_ttl_s"] == pytest.approx(
            32.8 / (828.3 / 27.4 - 21.0), rel=1e-9)
    assert model.at["keep_warm", "idle_ttl_s"] == 3.0
    assert model.at["naive", "idle_ttl_s"] == 0.0
    assert bool(model.at["always_on", "always_on"])
    proj = built["variables"]["proj"]
    assert proj["break_even_ttl_s"] == fmt(32.8 / (828.3 / 27.4 - 21.0))
    assert proj["idle_loaded_power_w"] == fmt(828.3 / 27.4)
    assert proj["idle_extra_power_w"] == fmt(828.3 / 27.4 - 21.0)
    assert proj["bare_idle_power_w"] == "21" and proj["active_power_w"] == fmt(461 / 6.6)
    assert (proj["cold_start_s"], proj["cold_start_energy_j"],
            proj["cold_start_above_baseline_j"]) == ("1.3", "60.5", "32.8")
    assert proj["active_s_per_request"] == "0.6" and proj["basis"] == "measured"
    assert (proj["levels"], proj["lowest_rph"], proj["highest_rph"]) == ("6, 60, 600", "6",
                                                                          "600")
    assert proj["hours_per_day"] == "24"


def test_a_level_missing_for_one_strategy_leaves_the_others(results: dict,
                                                              tmp_path: Path) -> None:
    out = report_from(results, tmp_path)
    inputs = out["inputs"]
    sweep = inputs.sweep
    inputs.sweep = sweep[~((sweep["strategy"] == "naive") & (sweep["traffic_rph"] == 6.0))]
    proj = build_variables(inputs, title="T", author="", renderer="test")["proj"]
    assert sorted(proj["naive"]) == ["r60", "r600"]
    assert proj["naive"]["r600"]["instance_h_day"] == fmt(
        expected_day("naive", 600.0)["instance_h_per_day"])
    assert sorted(proj["keep_warm"]) == ["r6", "r60", "r600"]


def expected_day(strategy: str, rph: float) -> dict[str, float]:
    """One day at `rph` Poisson arrivals, written out per strategy."""
    m = pooled_model()
    rate = rph / 3600.0
    n = rph * 24.0
    busy_s = n * m["s_per_request"]
    if strategy == "always_on":  # never cold, held all day, idle when not busy
        share, n_cold, cold_s, idle_s = 0.0, 0.0, 0.0, DAY_S - busy_s
        instance_h = 24.0
    else:
        ttl = 0.0 if strategy == "naive" else 3.0
        # Cold when the previous arrival is more than S + TTL back: P = exp(-r (S + TTL)).
        share = math.exp(-rate * (m["s_per_request"] + ttl))
        n_cold = n * share
        cold_s = n_cold * m["cold_s"]
        # Each gap ~ Exp(r) is idled for min(gap, TTL): D (1 - exp(-r TTL)) a day.
        idle_s = DAY_S * (1.0 - math.exp(-rate * ttl))
        instance_h = (busy_s + cold_s + idle_s) / 3600.0
    empty_s = DAY_S - busy_s - cold_s - idle_s
    energy_j = (busy_s * m["active"] + n_cold * m["cold_j"] + idle_s * m["idle"]
                + empty_s * m["bare"])
    return {"cold_start_share": share, "cold_starts_per_day": n_cold,
            "instance_h_per_day": instance_h, "idle_loaded_h_per_day": idle_s / 3600.0,
            "energy_kwh_per_day": energy_j / 3.6e6,
            "energy_kwh_per_year": energy_j / 3.6e6 * 365,
            "kg_co2e_per_year": energy_j / 3.6e6 * 365 * 475 / 1000,
            "cost_usd_per_day": instance_h * PRICE_USD_PER_H,
            "cost_usd_per_month": instance_h * PRICE_USD_PER_H * 365 / 12,
            "cost_usd_per_year": instance_h * PRICE_USD_PER_H * 365,
            "busy_share": busy_s / 3600.0 / instance_h}


def test_over_capacity_is_marked(results: dict, tmp_path: Path) -> None:
    """At 7,200 requests/h of 0.6 s each the instance would be busy 1.2 days a day."""
    config = {**CONFIG, "projections": {**CONFIG["projections"], "traffic_rph": [7200]}}
    _, body = parse_table(report_from(results, tmp_path, config)["tables"][
        "projections_table.md"])
    assert {r[9] for r in body} == {"1.2 (over capacity)"}


def test_expected_day_by_hand_at_60_rph() -> None:
    """expected_day, checked on one case with the numbers typed in."""
    naive = expected_day("naive", 60.0)
    assert naive["cold_start_share"] == pytest.approx(math.exp(-0.01))  # r = 1/60, S = 0.6
    busy, cold = 1440 * 0.6, 1440 * math.exp(-0.01) * 1.3
    assert naive["instance_h_per_day"] == pytest.approx((busy + cold) / 3600)
    warm = expected_day("keep_warm", 60.0)
    assert warm["idle_loaded_h_per_day"] == pytest.approx(24 * (1 - math.exp(-0.05)))
    assert expected_day("always_on", 60.0)["cost_usd_per_day"] == pytest.approx(86.4)


@pytest.mark.parametrize("rph", TRAFFIC_RPH)
def test_projection_at_each_traffic_level(built: dict, rph: float) -> None:
    sweep = pd.read_csv(built["projections"]["sweep"])
    assert sorted(set(sweep["traffic_rph"])) == sorted(TRAFFIC_RPH)
    table = built["tables"]["projections_table.md"]
    header, table_body = parse_table(table)
    assert header == ["requests/h", "strategy", "cold share", "instance h/day", "kWh/day",
                      "kWh/year", "kg CO2e/year", "USD/day", "USD/year", "load"]
    # Levels in order, strategies in the report's order within each.
    assert [r[1] for r in table_body if r[0] == fmt(rph)] == list(ORDER)
    assert [r[0] for r in table_body] == [fmt(x) for x in sorted(TRAFFIC_RPH) for _ in ORDER]
    for st in ORDER:
        exp = expected_day(st, rph)
        row = sweep[(sweep["strategy"] == st) & (sweep["traffic_rph"] == rph)]
        assert len(row) == 1, (st, rph)
        row = row.iloc[0]
        assert row["requests_per_day"] == pytest.approx(rph * 24)
        for column, value in exp.items():
            assert row[column] == pytest.approx(value, rel=1e-9, abs=1e-12), (st, rph, column)
        key = f"r{fmt(rph)}"
        proj = built["variables"]["proj"][st][key]
        assert proj["cold_share_pct"] == fmt_pct(exp["cold_start_share"])
        assert proj["instance_h_day"] == fmt(exp["instance_h_per_day"])
        assert proj["kwh_year"] == fmt(exp["energy_kwh_per_year"])
        assert proj["kg_co2e_year"] == fmt(exp["kg_co2e_per_year"])
        assert proj["usd_year"] == fmt(exp["cost_usd_per_year"])
        assert proj["usd_month"] == fmt(exp["cost_usd_per_month"])
        assert proj["busy_share_pct"] == fmt_pct(exp["busy_share"])
        cells = next(r for r in table_body if r[0] == fmt(rph) and r[1] == st)
        assert cells[9] == fmt(rph * 24 * 0.6 / DAY_S)  # busy time / day: under capacity
        assert cells[2:9] == [fmt_pct(exp["cold_start_share"]),
                              fmt(exp["instance_h_per_day"]),
                              fmt(exp["energy_kwh_per_day"]),
                              fmt(exp["energy_kwh_per_year"]),
                              fmt(exp["kg_co2e_per_year"]),
                              fmt(exp["cost_usd_per_day"]),
                              fmt(exp["cost_usd_per_year"])], (st, rph)


def test_discussion_prices_the_reference_level(built: dict) -> None:
    """At the reference 60 requests/h: always-on's monthly bill against the cheaper of
    naive and keep-warm, with the ratio."""
    month = 365 / 12
    ao = expected_day("always_on", 60.0)["cost_usd_per_day"] * month
    naive = expected_day("naive", 60.0)
    warm = expected_day("keep_warm", 60.0)
    assert naive["cost_usd_per_day"] < warm["cost_usd_per_day"]
    best = naive["cost_usd_per_day"] * month
    text = built["variables"]["disc"]["divide"]
    assert f"costs {fmt(ao)} USD per month" in text
    assert (f"while naive holds an instance {fmt(naive['instance_h_per_day'])} h a day for "
            f"{fmt(best)} USD per month, {fmt(ao / best)} times less") in text


# ---------------------------------------------------------------------------------------
# Context-only idle power: measured where a counter saw the window, not otherwise


def _context_row(inputs: Any) -> list[str]:
    from scalezero.report.tables import measured_table

    rows = by_strategy(measured_table(inputs))
    return list(rows["context-only idle power (a runtime without weights)"].values())


def test_context_idle_power_measured_with_a_counter(built: dict) -> None:
    _, status, how = _context_row(built["inputs"])
    assert status == "measured"
    # The runs' context windows drew 24, 25, 26 W; bare idle 20, 21, 22 W.
    assert how == ("mean power over the baseline_context window: 25 W, against 21 W bare "
                   "idle (nvml_counter)")
    assert built["variables"]["run"]["context_idle_power_w"] == fmt(25.0)
    assert fmt(25.0) in built["variables"]["disc"]["context"]


def test_context_idle_power_not_measured_without_a_sensor(tmp_path: Path) -> None:
    out = build(tmp_path, gpu=False, context=True)
    _, status, how = _context_row(out["inputs"])
    assert status == "not measured"
    assert how == ("a baseline_context window was recorded, but this host has no power "
                   "sensor or energy counter that covered it")
    assert out["variables"]["run"]["context_idle_power_w"] == NA
    assert "not measured" in out["variables"]["disc"]["context"]
    limitations = out["tables"]["limitations_list.md"]
    assert "holding a GPU context but no weights was not measured" in limitations


def test_context_idle_power_without_a_window(tmp_path: Path) -> None:
    out = build(tmp_path, gpu=True, context=False)
    _, status, how = _context_row(out["inputs"])
    assert (status, how) == ("not measured", "no baseline_context window was recorded")


def test_context_power_needs_the_summary(built: dict) -> None:
    from scalezero.report.facts import context_power_w, measured_rows, setup_facts

    inputs = built["inputs"]
    facts = setup_facts(inputs.run_meta)
    # Without the summary nothing says what the window drew.
    row = next(r for r in measured_rows(facts, inputs.runs) if r[0].startswith("context"))
    assert row[1] == "not measured"
    # Only the runs whose counter saw the window count; bare idle from the same runs.
    summary = inputs.summary.copy()
    summary.loc[summary["strategy"] == "always_on", "context_idle_power_w"] = float("nan")
    assert context_power_w(summary) == pytest.approx((25.5, 21.5))  # naive and keep_warm
    ctx, bare = context_power_w(summary.drop(columns=["bare_idle_power_w"]))
    assert ctx == pytest.approx(25.5) and math.isnan(bare)
    assert all(map(math.isnan, context_power_w(summary.drop(
        columns=["context_idle_power_w"]))))


def test_markdown_table_layout() -> None:
    from scalezero.report.format import markdown_table

    assert markdown_table(["", "a", "b"], [["x", 1, "p|q"]]) == (
        "|  | a | b |\n|:---|---:|---:|\n| x | 1 | p\\|q |\n")
    assert markdown_table(["k", "v"], [["l1\nl2", 2]], ["c", "l"]) == (
        "| k | v |\n|:---:|:---|\n| l1 l2 | 2 |\n")


# ---------------------------------------------------------------------------------------
# Estimated energy (no counter): the host power model through the whole pipeline

HOST_CONSTANTS = {name: {"value": value, "unit": unit, "source": "test", "date": "2026"}
                  for name, value, unit in (("cpu_min_w_per_vcpu", 2.0, "W/vCPU"),
                                            ("cpu_max_w_per_vcpu", 12.0, "W/vCPU"),
                                            ("ram_w_per_gib", 64.0, "W/GiB"))}
HOST_CONFIG = {**CONFIG, "constants": {**CONFIG["constants"], **HOST_CONSTANTS}}
FLOOR_W = 8 * 2.0  # the fixture host's 8 vCPUs at 2 W


def instance_w(strategy: str) -> float:
    """What an alive instance adds in the host model: half a core (50 % CPU) at 10 W
    per core, and its memory at 64 W/GiB."""
    return 0.5 * (12.0 - 2.0) + 64.0 * STRATEGIES[strategy].mem_mib / 1024.0


def test_estimated_energy_per_strategy(tmp_path: Path) -> None:
    results = make_value_results(tmp_path, gpu=False)
    paths = pj.write_projections(
        results["summary"]["summary"], results["summary"]["energy"], results["run_dirs"],
        projection_settings(HOST_CONFIG), Layout.projection_files_in(tmp_path / "p", WORKLOAD))
    runs = pd.read_csv(paths["runs"]).set_index("strategy")
    assert set(runs["basis"]) == {"estimated"} and set(runs["method"]) == {"host_model"}
    for st in ORDER:
        # The floor all window, plus the instance's power while one is alive. (Samples
        # are 0.1 s apart and every start and stop falls on one, so the linear
        # interpolation gains half a sample at a start and loses it at the stop.)
        total = FLOOR_W * DURATION_S + instance_w(st) * INSTANCE_S[st]
        row = runs.loc[st]
        assert row["energy_total_j"] == pytest.approx(total, rel=1e-9), st
        assert row["energy_above_baseline_j"] == pytest.approx(total - FLOOR_W * DURATION_S,
                                                               rel=1e-9), st
        assert row["bare_idle_power_w"] == pytest.approx(FLOOR_W, rel=1e-9), st
        assert row["cold_starts"] == COLD_STARTS[st], st
        assert row["energy_per_request_j"] == pytest.approx(total / ok_requests(st), rel=1e-9)
        if st in COLD_START_S:
            s = COLD_START_S[st]
            assert row["cold_start_mean_s"] == pytest.approx(s, rel=1e-9)
            assert row["cold_start_energy_mean_j"] == pytest.approx(
                (FLOOR_W + instance_w(st)) * s, rel=1e-9)
            assert row["cold_start_above_baseline_mean_j"] == pytest.approx(
                instance_w(st) * s, rel=1e-9)
        else:
            assert math.isnan(row["cold_start_mean_s"])
    phases = pd.read_csv(paths["phases"])
    kw = phases[phases["strategy"] == "keep_warm"].set_index("phase")
    # By phase the half samples show: each of keep_warm's two starts adds half a sample
    # of instance power to the empty 0.1 s before it, each stop takes it from the last
    # 0.1 s it was idle.
    half_sample_j = 0.05 * instance_w("keep_warm")
    assert kw.at["idle_loaded", "energy_j"] == pytest.approx(
        (FLOOR_W + instance_w("keep_warm")) * PHASE_S["keep_warm"]["idle_loaded"]
        - 2 * half_sample_j, rel=1e-9)
    assert kw.at["empty", "energy_j"] == pytest.approx(
        FLOOR_W * PHASE_S["keep_warm"]["empty"] + 2 * half_sample_j, rel=1e-9)
    assert kw.at["cold_start", "energy_j"] == pytest.approx(
        (FLOOR_W + instance_w("keep_warm")) * 2.0, rel=1e-9)


def test_estimate_without_a_recorded_replay_window(tmp_path: Path) -> None:
    """Without windows.replay in run.json the replay spans the first send to the last
    answer: naive's 1.0 s to 15.7 s, in which instances are alive 2.2 + 2.3 s and the
    third from 13.0 s to the end (it stops at 15.9 s). The first instance starts on the
    window's edge and the third is still up at its end: no half-sample at either."""
    import json

    results = make_value_results(tmp_path, gpu=False, strategies=("naive",))
    run_dir = results["run_dirs"][0]
    meta = json.loads((run_dir / "run.json").read_text())
    meta["windows"]["replay"] = None
    (run_dir / "run.json").write_text(json.dumps(meta))
    est = pj.estimate_run_energy(run_dir, projection_settings(HOST_CONFIG))
    assert est.method == "host_model" and est.cold_starts == 3
    alive_s = 2.2 + 2.3 + (15.7 - 13.0)
    assert est.total_j == pytest.approx(FLOOR_W * (15.7 - 1.0) + instance_w("naive") * alive_s,
                                        rel=1e-9)
    # A window that ends before it starts is no window either.
    meta["windows"]["replay"] = [5.0, 4.0]
    (run_dir / "run.json").write_text(json.dumps(meta))
    assert pj.estimate_run_energy(run_dir, projection_settings(HOST_CONFIG)).total_j == \
        pytest.approx(est.total_j, rel=1e-12)


# ---------------------------------------------------------------------------------------
# Per-run power and break-even; measured and estimated runs side by side


def test_per_run_state_power_and_break_even(built: dict) -> None:
    runs = pd.read_csv(built["projections"]["runs"]).set_index("strategy")
    for st in ORDER:
        p = STRATEGIES[st].power_w
        assert runs.at[st, "idle_loaded_power_w"] == pytest.approx(p["idle"], rel=1e-9)
        assert runs.at[st, "active_power_w"] == pytest.approx(p["active"], rel=1e-9)
    # A start's energy above bare idle / (idle-loaded - bare idle power), per run.
    assert runs.at["naive", "break_even_ttl_s"] == pytest.approx((45 - 21) * 1.5 / (33 - 21))
    assert runs.at["keep_warm", "break_even_ttl_s"] == pytest.approx((50 - 22) * 1.0
                                                                     / (35 - 22))
    assert math.isnan(runs.at["always_on", "break_even_ttl_s"])  # no start to weigh


def test_measured_runs_are_not_pooled_with_estimates(tmp_path: Path) -> None:
    """always_on ran without an energy counter, the others with one: the projection
    pools only the measured runs."""
    from report_value_fixtures import make_run, make_trace

    from scalezero.analysis.aggregate import aggregate_workload

    run_dirs = [make_run(tmp_path / "runs", "always_on", gpu=False),
                make_run(tmp_path / "runs", "naive"), make_run(tmp_path / "runs", "keep_warm")]
    make_trace(tmp_path / "trace.csv")
    summary = aggregate_workload(run_dirs, tmp_path / "summary", WORKLOAD)
    paths = pj.write_projections(summary["summary"], summary["energy"], run_dirs,
                                 projection_settings(CONFIG),
                                 Layout.projection_files_in(tmp_path / "new" / "dir", WORKLOAD))
    text = paths["runs"].read_text()
    # Numbers are written with ten significant digits, rows end in a bare newline.
    assert "\r" not in text and text.startswith("workload,strategy,rep,basis")
    # Bare 21.5 W, idle (0.6*33 + 8.3*35) / 8.9 = 34.865168539 W, active 371 / 5.1 W.
    assert ",21.5,34.86516854,72.74509804," in paths["model"].read_text()
    inputs = collect_inputs(WORKLOAD, summary, paths, run_dirs, tmp_path / "trace.csv")
    energy_rows = by_strategy(build_tables(inputs, build_variables(
        inputs, title="T", author="", renderer="test"))["energy_table.md"])
    assert [energy_rows[st]["basis"] for st in ORDER] == ["estimated", "measured",
                                                          "measured"]
    runs = pd.read_csv(paths["runs"]).set_index("strategy")
    assert runs.at["always_on", "basis"] == "estimated"
    assert set(runs.loc[["naive", "keep_warm"], "basis"]) == {"measured"}
    model = pd.read_csv(paths["model"]).set_index("strategy")
    assert set(model["basis"]) == {"measured"} and set(model["method"]) == {"nvml_counter"}
    row = model.loc["always_on"]
    assert row["bare_idle_power_w"] == pytest.approx((21 + 22) / 2)
    assert row["idle_loaded_power_w"] == pytest.approx((0.6 * 33 + 8.3 * 35) / (0.6 + 8.3))
    assert row["active_power_w"] == pytest.approx((2.3 * 70 + 2.8 * 75) / (2.3 + 2.8))
    assert row["active_s_per_request"] == pytest.approx((2.3 + 2.8) / (3 + 5))


def test_projection_model_from_hand_made_tables() -> None:
    """projection_model on tables typed in: policies, and which rows the pooling and
    the weighting skip (no time, no weight, no value)."""
    nan = float("nan")
    summary = pd.DataFrame([
        {"workload": "w", "strategy": "ao", "policy": "always_on", "min_instances": 1,
         "keep_warm_ttl_s": nan},
        {"workload": "w", "strategy": "kw", "policy": "keep_warm", "min_instances": 0,
         "keep_warm_ttl_s": 0.5},
        {"workload": "w", "strategy": "odd", "policy": nan, "min_instances": nan,
         "keep_warm_ttl_s": -1.0},
    ])
    runs = pd.DataFrame([
        # strategy, rep, bare W, cold starts, mean start s, J, J above bare, ok
        {"strategy": s, "rep": 1, "basis": "measured", "method": "nvml_counter",
         "bare_idle_power_w": bare, "cold_starts": n, "cold_start_mean_s": cs,
         "cold_start_energy_mean_j": cj, "cold_start_above_baseline_mean_j": ca, "ok": ok}
        for s, bare, n, cs, cj, ca, ok in (("ao", 10.0, 0, 99.0, 999.0, 999.0, 4),
                                           ("kw", 20.0, 1, 2.0, 50.0, 30.0, 4),
                                           ("odd", 30.0, 3, nan, 80.0, 40.0, 2))])
    phases = pd.DataFrame([
        {"strategy": s, "rep": 1, "phase": ph, "duration_s": d, "energy_j": e}
        for s, ph, d, e in (("ao", "idle_loaded", 10.0, 300.0),
                            ("ao", "idle_loaded", 0.0, 5.0),   # no time: skipped
                            ("kw", "idle_loaded", 30.0, 1200.0),
                            ("kw", "active", 4.0, 400.0),
                            ("odd", "active", 6.0, nan),       # no energy: skipped
                            ("odd", "active", 2.0, 200.0))])
    model = pj.projection_model(summary, runs, phases).set_index("strategy")
    assert model.at["ao", "policy"] == "always_on" and bool(model.at["ao", "always_on"])
    assert math.isinf(model.at["ao", "idle_ttl_s"])
    assert model.at["kw", "idle_ttl_s"] == 0.5 and not model.at["kw", "always_on"]
    # No policy name: the strategy's; a negative TTL means none.
    assert model.at["odd", "policy"] == "odd" and model.at["odd", "idle_ttl_s"] == 0.0
    row = model.loc["kw"]  # pooled, so the same for every strategy
    assert row["bare_idle_power_w"] == pytest.approx(20.0)
    assert row["idle_loaded_power_w"] == pytest.approx((300 + 1200) / (10 + 30))
    assert row["active_power_w"] == pytest.approx((400 + 200) / (4 + 2))
    # Weighted by cold starts; a run without starts, or without a value, does not count.
    assert row["cold_start_s"] == pytest.approx(2.0)
    assert row["cold_start_energy_j"] == pytest.approx((1 * 50 + 3 * 80) / 4)
    assert row["cold_start_above_baseline_j"] == pytest.approx((1 * 30 + 3 * 40) / 4)
    assert row["active_s_per_request"] == pytest.approx((4 + 6 + 2) / 10)
    assert row["break_even_ttl_s"] == pytest.approx(37.5 / (37.5 - 20.0))


def test_run_folders_are_found_by_their_run_json(tmp_path: Path) -> None:
    """An estimated run's folder is matched by run.json's strategy and repeat, whatever
    the folder is called; without a readable run.json, by the folder names."""
    import json
    import shutil

    results = make_value_results(tmp_path / "a", gpu=False, strategies=("naive",))
    original = results["run_dirs"][0]
    moved = tmp_path / "elsewhere" / "x" / "y"
    shutil.copytree(original, moved)
    settings = projection_settings(HOST_CONFIG)
    summary = pd.read_csv(results["summary"]["summary"])
    energy = pd.read_csv(results["summary"]["energy"])
    runs, _ = pj.run_energy_tables(summary, energy, [moved], settings)
    expected = FLOOR_W * DURATION_S + instance_w("naive") * INSTANCE_S["naive"]
    assert runs.at[0, "energy_total_j"] == pytest.approx(expected, rel=1e-9)
    # run.json without strategy and repeat: the folder names (<strategy>/<rep>) say it.
    named = tmp_path / "named" / "naive" / "1"
    shutil.copytree(original, named)
    meta = json.loads((named / "run.json").read_text())
    del meta["strategy"], meta["rep"]
    (named / "run.json").write_text(json.dumps(meta))
    runs, _ = pj.run_energy_tables(summary, energy, [named], settings)
    assert runs.at[0, "energy_total_j"] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(UserError, match="no energy counter in naive repeat 1 and no run "
                                        "folder to estimate its energy from"):
        pj.run_energy_tables(summary, energy, [tmp_path / "named" / "naive" / "2"], settings)
