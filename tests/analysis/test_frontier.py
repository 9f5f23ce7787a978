"""The idle-cost / cold-start frontier, on hand-made summaries."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from scalezero.analysis.frontier import (
    FRONTIER_COLUMNS,
    frontier_table,
    idle_cost_basis,
    non_dominated,
)


def _summary(rows: list[tuple[str, float, float, float]], source: str = "none",
             energy: float = math.nan) -> pd.DataFrame:
    """(strategy, idle instance-s, cold share, p99 TTFT ms) per run."""
    return pd.DataFrame([
        {"strategy": s, "phase_idle_loaded_s": idle, "cold_share": cold, "ttft_p99_ms": p99,
         "break_even_ttl_s": 12.0, "energy_source": source,
         "phase_idle_loaded_energy_j": energy if math.isnan(energy) else energy * idle}
        for s, idle, cold, p99 in rows
    ])


def test_non_dominated_keeps_every_trade_off_and_drops_the_beaten() -> None:
    # (cost, cold share): b is beaten by a on both; c and d tie with a on one axis.
    points = [(10.0, 0.1), (12.0, 0.2), (10.0, 0.3), (0.0, 0.9), (math.nan, 0.0)]
    assert non_dominated(points) == [True, False, False, True, False]
    # Equal points do not dominate each other.
    assert non_dominated([(1.0, 1.0), (1.0, 1.0)]) == [True, True]


def test_table_means_intervals_and_frontier_per_strategy() -> None:
    summary = _summary([
        ("always_on", 100.0, 0.0, 30.0), ("always_on", 110.0, 0.0, 32.0),
        ("naive", 0.0, 0.8, 900.0), ("naive", 0.0, 0.6, 700.0),
        ("keep_warm-60", 120.0, 0.1, 100.0), ("keep_warm-60", 120.0, 0.1, 120.0),
        ("keep_warm-5", 20.0, 0.3, 400.0), ("keep_warm-5", 30.0, 0.3, 500.0),
    ])
    table = frontier_table(summary).set_index("strategy")
    assert list(frontier_table(summary).columns) == list(FRONTIER_COLUMNS)
    assert table.at["always_on", "idle_cost_mean"] == 105.0
    assert table.at["always_on", "idle_cost_basis"] == "idle_instance_s"
    assert table.at["naive", "cold_share_mean"] == pytest.approx(0.7)
    # Two repeats: t(0.975, 1) = 12.706; sd of (0.8, 0.6) = 0.1414; half-width 1.2706.
    assert table.at["naive", "cold_share_ci95_high"] == pytest.approx(0.7 + 1.27062, abs=1e-4)
    assert table.at["keep_warm-5", "ttft_p99_ms_mean"] == 450.0
    assert table.at["keep_warm-5", "runs"] == 2
    # keep_warm-60 holds more idle time than always_on and still has cold starts.
    assert table["on_frontier"].to_dict() == {
        "always_on": True, "naive": True, "keep_warm-60": False, "keep_warm-5": True}
    assert table.at["naive", "break_even_ttl_s"] == 12.0


def test_measured_idle_energy_is_the_cost_when_every_run_has_it() -> None:
    rows = [("always_on", 100.0, 0.0, 30.0), ("naive", 1.0, 0.5, 600.0)]
    measured = _summary(rows, source="nvml_counter", energy=50.0)  # 50 W while idle
    assert idle_cost_basis(measured) == "idle_energy_j"
    table = frontier_table(measured).set_index("strategy")
    assert table.at["always_on", "idle_cost_mean"] == 5000.0
    assert table.at["always_on", "idle_s_mean"] == 100.0
    # One run without a counter: back to instance-seconds for every strategy.
    mixed = pd.concat([measured, _summary([("naive", 2.0, 0.4, 500.0)])], ignore_index=True)
    assert idle_cost_basis(mixed) == "idle_instance_s"
    assert frontier_table(mixed).set_index("strategy").at["naive", "idle_cost_mean"] == 1.5


def test_strategies_argument_sets_the_order_and_keeps_absent_ones_off_the_frontier() -> None:
    summary = _summary([("naive", 0.0, 0.5, 600.0), ("always_on", 90.0, 0.0, 30.0)])
    table = frontier_table(summary, ["always_on", "naive", "keep_warm"])
    assert list(table["strategy"]) == ["always_on", "naive", "keep_warm"]
    assert table["on_frontier"].tolist() == [True, True, False]
    assert table["runs"].tolist() == [1, 1, 0]


def test_runtime_warm_time_is_idle_cost_too() -> None:
    """A sleeping instance is still held: the idle cost adds phase runtime_warm to
    phase idle_loaded, in seconds and in joules."""
    summary = pd.DataFrame({
        "strategy": ["keep_warm", "tiered"], "energy_source": "nvml_counter",
        "phase_idle_loaded_s": [100.0, 20.0], "phase_idle_loaded_energy_j": [3000.0, 600.0],
        "phase_runtime_warm_s": [0.0, 80.0], "phase_runtime_warm_energy_j": [0.0, 1920.0],
        "cold_share": [0.1, 0.1], "ttft_p99_ms": [500.0, 900.0], "break_even_ttl_s": 30.0})
    table = frontier_table(summary).set_index("strategy")
    assert table.at["tiered", "idle_cost_basis"] == "idle_energy_j"
    assert table.at["tiered", "idle_cost_mean"] == pytest.approx(600.0 + 1920.0)
    assert table.at["tiered", "idle_s_mean"] == pytest.approx(100.0)
    assert table.at["keep_warm", "idle_cost_mean"] == pytest.approx(3000.0)
    assert list(table["on_frontier"]) == [False, True]
