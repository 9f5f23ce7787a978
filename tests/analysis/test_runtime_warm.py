"""Runtime-warm periods and start tiers in a run's summary: counts of starts by tier,
wakes, and runtime-warm instance-seconds, from events.csv."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from run_fixtures import event_row, request_row, write_run

from scalezero.analysis import aggregate as ag
from scalezero.analysis import energy as en
from scalezero.serving.events import Lifecycle as L


def tiered_events() -> list[dict[str, object]]:
    """i1: host-cached start, runtime-warm 14 -> 20 (woken), 26 -> 40 (TTL drain);
    i2: a disk-cold start, runtime-warm from 31 to the end; i3: a wake that failed."""
    return [
        event_row(9.0, "i1", L.SPAWN, "on_demand", tier="host_cached"),
        event_row(10.0, "i1", L.READY),
        event_row(14.0, "i1", L.SLEEP, "idle_ttl"),
        event_row(20.0, "i1", L.WAKE, "on_demand", tier="runtime_warm"),
        event_row(20.5, "i1", L.READY),
        event_row(26.0, "i1", L.SLEEP, "idle_ttl"),
        event_row(40.0, "i1", L.DRAIN, "runtime_warm_ttl"),
        event_row(40.5, "i1", L.STOPPED, "runtime_warm_ttl"),
        event_row(21.0, "i2", L.SPAWN, "on_demand", tier="disk_cold"),
        event_row(23.0, "i2", L.READY),
        event_row(31.0, "i2", L.SLEEP, "idle_ttl"),
        event_row(11.0, "i3", L.SPAWN, "prewarm", tier="host_cached"),
        event_row(12.0, "i3", L.READY),
        event_row(13.0, "i3", L.SLEEP, "idle_ttl"),
        event_row(15.0, "i3", L.WAKE, "on_demand", tier="runtime_warm"),
        event_row(16.0, "i3", L.START_FAILED),
    ]


def test_runtime_warm_periods_end_at_a_wake_drain_or_the_window() -> None:
    events = pd.DataFrame(tiered_events())
    periods = sorted(map(tuple, en.runtime_warm_intervals(events)))
    assert periods == [(13.0, 15.0), (14.0, 20.0), (26.0, 40.0), (31.0, math.inf)]
    # Window (10, 35): 2 + 6 + 9 + 4 s.
    assert en.runtime_warm_seconds(events, (10.0, 35.0)) == pytest.approx(21.0)
    assert en.start_tier_counts(events, (10.0, 35.0)) == {
        "host_cached_starts": 1, "disk_cold_starts": 1, "runtime_warm_wakes": 2}
    # A failed wake ends the instance's up time.
    spans = en.instance_spans(events).set_index("instance_id")
    assert spans.at["i3", "up_end_s"] == 16.0


def test_runs_without_sleeps_or_a_tier_column_count_nothing() -> None:
    rows = [event_row(1.0, "i1", L.SPAWN, "on_demand"), event_row(2.0, "i1", L.READY)]
    old = pd.DataFrame(rows).drop(columns="tier")
    assert en.runtime_warm_seconds(old, (0.0, 10.0)) == 0.0
    assert en.start_tier_counts(old, (0.0, 10.0)) == {
        "host_cached_starts": 0, "disk_cold_starts": 0, "runtime_warm_wakes": 0}


def test_the_summary_reports_tiers_and_runtime_warm_time(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "w" / "tiered" / "1",
        meta={"workload": "w", "strategy": "tiered", "rep": 1,
              "windows": {"replay": [10.0, 35.0]},
              "policy": {"name": "tiered", "loaded_ttl_s": 4.0, "runtime_warm_s": 14.0,
                         "accounting": {"always_on": False, "idle_ttl_s": 4.0,
                                        "runtime_warm_ttl_s": 14.0}}},
        requests=[request_row(0, 10.0, 10.0, 10.5, 12.0, 4, cold=True),
                  request_row(1, 20.0, 20.0, 21.0, 22.0, 4, cold=True)],
        events=tiered_events(), telemetry=None, tokens=None)
    with (run / "run.json").open() as fh:
        assert json.load(fh)["policy"]["accounting"]["runtime_warm_ttl_s"] == 14.0
    row = ag.summarize_run(run, ag.mx.DEFAULT_SLO_SETS).row
    assert list(row) == list(ag.SUMMARY_COLUMNS)
    assert (row["host_cached_starts"], row["disk_cold_starts"], row["runtime_warm_wakes"]) == (
        1, 1, 2)
    assert row["cold_starts"] == 2  # i3's spawn at 11 and i2's at 21 (i1's at 9 is before)
    assert row["runtime_warm_instance_s"] == pytest.approx(21.0)
    assert row["policy_idle_ttl_s"] == 4.0
