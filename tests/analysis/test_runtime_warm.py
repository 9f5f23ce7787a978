"""Runtime-warm periods and start tiers in a run's summary: counts of starts by tier,
wakes, and runtime-warm instance-seconds, from events.csv."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixtures import event_row, lifecycle, request_row, telemetry_frame, write_run

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


# ---------------------------------------------------------------------------------------
# The runtime_warm energy phase
#
# One instance in a replay window [100, 140):
#   empty [100,102) cold_start [102,105) active [105,107) idle_loaded [107,110)
#   runtime_warm [110,116) (sleep) cold_start [116,118) (wake -> ready)
#   active [118,121) idle_loaded [121,124) runtime_warm [124,131) (sleep, drain at 130,
#   stopped at 131: the drained sleeper never reloads) empty [131,140)
# Power: empty 2 W (bare idle), cold start 10 W, active 20 W, idle loaded 5 W,
# runtime-warm 3 W.
PHASE_WINDOW = (100.0, 140.0)
PHASE_POWER = [(102.0, 105.0, 10.0), (105.0, 107.0, 20.0), (107.0, 110.0, 5.0),
               (110.0, 116.0, 3.0), (116.0, 118.0, 10.0), (118.0, 121.0, 20.0),
               (121.0, 124.0, 5.0), (124.0, 131.0, 3.0)]


def sleeping_events() -> pd.DataFrame:
    return pd.DataFrame([
        *lifecycle("i1", 102.0, runtime_ready_s=102.5, model_loaded_s=104.0, ready_s=105.0),
        event_row(110.0, "i1", L.SLEEP, "idle_ttl"),
        event_row(116.0, "i1", L.WAKE, "on_demand", tier="runtime_warm"),
        event_row(118.0, "i1", L.READY),
        event_row(124.0, "i1", L.SLEEP, "idle_ttl"),
        event_row(130.0, "i1", L.DRAIN, "runtime_warm_ttl"),
        event_row(131.0, "i1", L.STOPPED, "runtime_warm_ttl"),
    ])


def sleeping_requests() -> pd.DataFrame:
    # The second request arrives at the sleeping instance and waits through its wake.
    return pd.DataFrame({"t_send_s": [102.0, 116.0], "t_end_s": [107.0, 121.0]})


def sleeping_telemetry(offset_s: float) -> pd.DataFrame:
    return telemetry_frame(np.arange(79.0 + offset_s, 141.0, 1.0), PHASE_POWER, default_w=2.0)


def test_sleeping_time_is_runtime_warm_and_a_wake_is_a_cold_start() -> None:
    events = sleeping_events()
    timeline = en.phase_timeline(en.instance_spans(events), sleeping_requests(), PHASE_WINDOW,
                                 events)
    assert [(r.t0_s, r.t1_s, r.phase) for r in timeline.itertuples()] == [
        (100.0, 102.0, "empty"), (102.0, 105.0, "cold_start"), (105.0, 107.0, "active"),
        (107.0, 110.0, "idle_loaded"), (110.0, 116.0, "runtime_warm"),
        (116.0, 118.0, "cold_start"), (118.0, 121.0, "active"),
        (121.0, 124.0, "idle_loaded"), (124.0, 131.0, "runtime_warm"),
        (131.0, 140.0, "empty"),
    ]
    # The instance-seconds column ends the second period at the drain, the phase at the stop.
    assert en.runtime_warm_seconds(events, PHASE_WINDOW) == pytest.approx(6.0 + 6.0)
    # Without the events every up instance counts as loaded, as before the phase existed.
    old = en.phase_timeline(en.instance_spans(events), sleeping_requests(), PHASE_WINDOW)
    assert "runtime_warm" not in set(old["phase"])


def test_runtime_warm_energy_is_split_exactly_at_the_boundaries() -> None:
    events = sleeping_events()
    timeline = en.phase_timeline(en.instance_spans(events), sleeping_requests(), PHASE_WINDOW,
                                 events)
    # Samples on whole seconds: every boundary is a sample time, each phase gets its own.
    aligned = en.phase_energy(timeline, en.energy_meter(sleeping_telemetry(0.0)), 2.0)
    true_j = {"cold_start": 10 * (3 + 2), "active": 20 * (2 + 3), "idle_loaded": 5 * (3 + 3),
              "runtime_warm": 3 * (6 + 7), "empty": 2 * (2 + 9)}
    assert aligned.set_index("phase")["energy_j"].to_dict() == pytest.approx(true_j)
    # Samples at x.5: the interval [b - 0.5, b + 0.5) around each boundary b holds
    # 0.5 P_left + 0.5 P_right, spread uniformly, so the left phase gains
    # 0.25 (P_right - P_left) and the right one loses as much.
    #   102 (2|10) empty +2, cold -2        105 (10|20) cold +2.5, active -2.5
    #   107 (20|5) active -3.75, idle +3.75 110 (5|3) idle -0.5, warm +0.5
    #   116 (3|10) warm +1.75, cold -1.75   118 (10|20) cold +2.5, active -2.5
    #   121 (20|5) active -3.75, idle +3.75 124 (5|3) idle -0.5, warm +0.5
    #   131 (3|2) warm -0.25, empty +0.25
    table = en.phase_energy(timeline, en.energy_meter(sleeping_telemetry(0.5)), 2.0)
    table = table.set_index("phase")
    assert table["duration_s"].to_dict() == pytest.approx(
        {"cold_start": 5.0, "active": 5.0, "idle_loaded": 6.0, "runtime_warm": 13.0,
         "empty": 11.0})
    expected_j = {"cold_start": 50 - 2 + 2.5 - 1.75 + 2.5, "active": 100 - 2.5 - 3.75 - 2.5 - 3.75,
                  "idle_loaded": 30 + 3.75 - 0.5 + 3.75 - 0.5,
                  "runtime_warm": 39 + 0.5 + 1.75 + 0.5 - 0.25, "empty": 22 + 2 + 0.25}
    assert table["energy_j"].to_dict() == pytest.approx(expected_j, abs=1e-9)
    assert table.at["runtime_warm", "mean_power_w"] == pytest.approx(41.5 / 13.0)
    assert table.at["runtime_warm", "above_baseline_j"] == pytest.approx(41.5 - 2.0 * 13.0)


def test_a_loaded_instance_outranks_a_sleeping_one_and_a_failed_wake_is_a_start() -> None:
    events = pd.DataFrame([
        event_row(0.0, "i1", L.READY), event_row(10.0, "i1", L.STOPPED, "shutdown"),
        event_row(0.0, "i2", L.READY), event_row(5.0, "i2", L.SLEEP, "idle_ttl"),
        event_row(12.0, "i2", L.WAKE, "on_demand", tier="runtime_warm"),
        event_row(13.0, "i2", L.START_FAILED),
    ])
    timeline = en.phase_timeline(en.instance_spans(events), None, (0.0, 20.0), events)
    assert [(r.t0_s, r.t1_s, r.phase) for r in timeline.itertuples()] == [
        (0.0, 10.0, "idle_loaded"), (10.0, 12.0, "runtime_warm"), (12.0, 13.0, "cold_start"),
        (13.0, 20.0, "empty")]
