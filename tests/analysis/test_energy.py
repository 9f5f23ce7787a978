"""Phase attribution, energy split, memory and instance time on synthetic timelines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from run_fixtures import event_row, lifecycle, telemetry_frame

from scalezero.analysis import energy as en

# One instance in a replay window [100, 130):
#   empty [100,102)  cold_start [102,105)  active [105,107)  idle_loaded [107,110)
#   active [110,113) idle_loaded [113,120) empty [120,130)
# Power: empty 2 W (= bare idle), cold start 10 W, active 20 W, idle loaded 5 W.
WINDOW = (100.0, 130.0)
BASELINE = (80.0, 90.0)
POWER = [(102.0, 105.0, 10.0), (105.0, 107.0, 20.0), (107.0, 110.0, 5.0),
         (110.0, 113.0, 20.0), (113.0, 120.0, 5.0)]


def _events() -> pd.DataFrame:
    rows = lifecycle("i1", 102.0, runtime_ready_s=102.5, model_loaded_s=104.0, ready_s=105.0,
                     first_token_s=105.25, stopped_s=120.0)
    return pd.DataFrame(rows)


def _requests() -> pd.DataFrame:
    # the first request waits through the cold start; in flight [102, 107) and [110, 113)
    return pd.DataFrame({"t_send_s": [102.0, 110.0], "t_end_s": [107.0, 113.0]})


def _telemetry(offset_s: float = 0.5) -> pd.DataFrame:
    # 1 Hz samples at x.5: every phase boundary falls in the middle of a sample interval.
    t = np.arange(79.0 + offset_s, 131.0, 1.0)
    return telemetry_frame(t, POWER, default_w=2.0)


def test_instance_spans_and_outcomes() -> None:
    events = pd.DataFrame(
        [
            *lifecycle("i1", 1.0, runtime_ready_s=1.5, model_loaded_s=2.0, ready_s=3.0),
            event_row(5.0, "i2", "spawn"),
            event_row(6.0, "i2", "start_failed"),
            event_row(7.0, "i3", "spawn"),
        ]
    )
    spans = en.instance_spans(events).set_index("instance_id")
    assert spans.at["i1", "outcome"] == "ready"
    assert (spans.at["i1", "start_begin_s"], spans.at["i1", "start_end_s"]) == (1.0, 3.0)
    assert spans.at["i1", "up_begin_s"] == 3.0 and spans.at["i1", "up_end_s"] == math.inf
    assert spans.at["i2", "outcome"] == "start_failed"
    assert spans.at["i2", "start_end_s"] == 6.0 and math.isnan(spans.at["i2", "up_begin_s"])
    assert spans.at["i3", "outcome"] == "starting"
    assert spans.at["i3", "start_end_s"] == math.inf


def test_phase_timeline_precedence() -> None:
    timeline = en.phase_timeline(en.instance_spans(_events()), _requests(), WINDOW)
    got = [(r.t0_s, r.t1_s, r.phase) for r in timeline.itertuples()]
    assert got == [
        (100.0, 102.0, "empty"),
        (102.0, 105.0, "cold_start"),  # request in flight but the instance is starting
        (105.0, 107.0, "active"),
        (107.0, 110.0, "idle_loaded"),
        (110.0, 113.0, "active"),
        (113.0, 120.0, "idle_loaded"),  # draining still counts as up until stopped
        (120.0, 130.0, "empty"),
    ]


def test_phase_energy_split_exactly_at_boundaries() -> None:
    spans = en.instance_spans(_events())
    timeline = en.phase_timeline(spans, _requests(), WINDOW)
    meter = en.energy_meter(_telemetry())
    bare_w = meter.mean_power_w(BASELINE)
    assert bare_w == pytest.approx(2.0, abs=1e-9)
    table = en.phase_energy(timeline, meter, bare_w).set_index("phase")
    assert list(table.index) == ["cold_start", "active", "idle_loaded", "runtime_warm", "empty"]
    # Durations: cold 3 s, active 2 + 3 s, idle 3 + 7 s, empty 2 + 10 s.
    assert table["duration_s"].to_dict() == pytest.approx(
        {"cold_start": 3.0, "active": 5.0, "idle_loaded": 10.0, "runtime_warm": 0.0,
         "empty": 12.0})
    # Each boundary b sits mid-interval [b - 0.5, b + 0.5); that interval's delta
    # 0.5 P_left + 0.5 P_right is spread uniformly, so each side gets
    # 0.25 (P_left + P_right) instead of its true 0.5 P_own: a shift of 0.25 (P_other - P_own).
    #   true:  cold 30, active 100, idle 50, empty 24 (total 204 J)
    #   102 (2|10): empty +2, cold -2     105 (10|20): cold +2.5, active -2.5
    #   107 (20|5): active -3.75, idle +3.75   110 (5|20): idle +3.75, active -3.75
    #   113 (20|5): active -3.75, idle +3.75   120 (5|2): idle -0.75, empty +0.75
    expected = {"cold_start": 30.5, "active": 86.25, "idle_loaded": 60.5, "empty": 26.75}
    for phase, joules in expected.items():
        assert table.at[phase, "energy_j"] == pytest.approx(joules, abs=1e-6)
    # Above baseline: minus 2 W x duration.
    above = {"cold_start": 24.5, "active": 76.25, "idle_loaded": 40.5, "empty": 2.75}
    for phase, joules in above.items():
        assert table.at[phase, "above_baseline_j"] == pytest.approx(joules, abs=1e-6)
    assert table.at["idle_loaded", "mean_power_w"] == pytest.approx(6.05, abs=1e-9)
    assert table.at["active", "mean_power_w"] == pytest.approx(86.25 / 5, abs=1e-9)
    assert float(meter.energy_j(*WINDOW)) == pytest.approx(204.0, abs=1e-6)


def test_aligned_samples_give_true_phase_energy() -> None:
    # Samples on whole seconds: every boundary is a sample time, nothing straddles.
    spans = en.instance_spans(_events())
    timeline = en.phase_timeline(spans, _requests(), WINDOW)
    meter = en.energy_meter(_telemetry(offset_s=0.0))
    table = en.phase_energy(timeline, meter, 2.0).set_index("phase")
    for phase, joules in {"cold_start": 30.0, "active": 100.0, "idle_loaded": 50.0,
                          "empty": 24.0}.items():
        assert table.at[phase, "energy_j"] == pytest.approx(joules, abs=1e-6)


def test_energy_meter_spreads_one_interval_uniformly() -> None:
    telemetry = pd.DataFrame({"t_s": [0.0, 4.0], "energy_mj": [1000.0, 9000.0],
                              "energy_source": "rapl", "device": "host"})
    meter = en.energy_meter(telemetry)
    # 8 J over 4 s: [0, 1) gets 2 J, [1, 4) gets 6 J, outside the samples nothing.
    assert meter.energy_j(np.array([0.0, 1.0, -5.0]), np.array([1.0, 4.0, 0.0])) == \
        pytest.approx([2.0, 6.0, 0.0])
    assert meter.source == "rapl"


def test_counter_reset_leaves_interval_unmeasured() -> None:
    telemetry = pd.DataFrame({"t_s": [0.0, 1.0, 2.0, 3.0],
                              "energy_mj": [5000.0, 7000.0, 100.0, 2100.0],
                              "energy_source": "rapl", "device": "host"})
    meter = en.energy_meter(telemetry)
    assert float(meter.energy_j(0.0, 3.0)) == pytest.approx(4.0)
    assert float(meter.covered_s(0.0, 3.0)) == pytest.approx(2.0)
    assert meter.mean_power_w((0.0, 3.0)) == pytest.approx(2.0)


def test_no_counter_gives_empty_energy() -> None:
    telemetry = _telemetry().assign(energy_source="none", energy_mj=np.nan)
    meter = en.energy_meter(telemetry)
    assert not meter.available and meter.source == "none"
    timeline = en.phase_timeline(en.instance_spans(_events()), _requests(), WINDOW)
    table = en.phase_energy(timeline, meter, math.nan).set_index("phase")
    assert table["energy_j"].isna().all() and table["above_baseline_j"].isna().all()
    assert table.at["active", "duration_s"] == pytest.approx(5.0)
    assert math.isnan(en.energy_uncertainty_pct("rapl"))
    assert en.energy_uncertainty_pct("nvml_counter") == 5.0


def test_cold_start_anatomy_energy_and_break_even() -> None:
    spans = en.instance_spans(_events())
    meter = en.energy_meter(_telemetry())
    table = en.cold_starts(spans, meter, 2.0, WINDOW)
    assert len(table) == 1
    row = table.iloc[0]
    assert bool(row["in_replay"]) and row["outcome"] == "ready"
    assert row["spawn_to_runtime_ready_s"] == pytest.approx(0.5)
    assert row["runtime_ready_to_model_loaded_s"] == pytest.approx(1.5)
    assert row["model_loaded_to_ready_s"] == pytest.approx(1.0)
    assert row["ready_to_first_token_s"] == pytest.approx(0.25)
    assert row["cold_start_s"] == pytest.approx(3.0)
    # [102, 105): 3 J (half of the 6 J straddling interval) + 20 J + 7.5 J (half of 15 J)
    assert row["energy_j"] == pytest.approx(30.5, abs=1e-6)
    assert row["above_baseline_j"] == pytest.approx(24.5, abs=1e-6)
    # idle-loaded power 60.5 J / 10 s = 6.05 W; break-even 24.5 / (6.05 - 2)
    assert en.break_even_ttl_s(24.5, 6.05, 2.0) == pytest.approx(24.5 / 4.05)
    assert math.isnan(en.break_even_ttl_s(24.5, 2.0, 2.0))  # denominator 0
    assert math.isnan(en.break_even_ttl_s(24.5, math.nan, 2.0))


def test_cold_start_missing_events_leave_columns_empty() -> None:
    events = pd.DataFrame([event_row(1.0, "i1", "spawn"), event_row(3.0, "i1", "ready")])
    row = en.cold_starts(en.instance_spans(events), en.energy_meter(None), 0.0,
                         (0.0, 10.0)).iloc[0]
    assert row["cold_start_s"] == pytest.approx(2.0)
    assert math.isnan(row["spawn_to_runtime_ready_s"])
    assert math.isnan(row["ready_to_first_token_s"])
    assert math.isnan(row["energy_j"])


def test_memory_mib_seconds_trapezoid_with_gaps() -> None:
    telemetry = pd.DataFrame({
        "t_s": [0.0, 1.0, 2.0, 3.0, 4.0],
        "instance_mem_mib": [np.nan, 100.0, np.nan, 300.0, np.nan],
        "n_instances": [0, 1, 1, 1, 0],  # NaN -> 0 at t = 0 and 4, dropped at t = 2
        "mem_used_mib": [1000.0] * 5,
        "device": "gpu0",
    })
    stats = en.memory_stats(telemetry, (0.5, 4.0))
    # 50 at t=0.5 (interpolated): (50+100)/2*0.5 + (100+300)/2*2 + (300+0)/2*1 = 587.5
    assert stats["mem_mib_s"] == pytest.approx(587.5)
    assert stats["peak_instance_mem_mib"] == pytest.approx(300.0)
    assert stats["mean_mem_used_mib"] == pytest.approx(1000.0)
    assert math.isnan(en.memory_stats(None, (0.0, 1.0))["mem_mib_s"])


def test_instance_seconds_with_overlapping_instances() -> None:
    events = pd.DataFrame(
        lifecycle("i0", -5.0, runtime_ready_s=-4.0, model_loaded_s=-3.0, ready_s=-2.0,
                  stopped_s=5.0)  # started before the window: [0, 5) counts
        + lifecycle("i1", 10.0, runtime_ready_s=10.5, model_loaded_s=11.0, ready_s=12.0,
                    stopped_s=40.0)
        + lifecycle("i2", 30.0, runtime_ready_s=31.0, model_loaded_s=32.0, ready_s=33.0)
        + [event_row(95.0, "i3", "spawn"), event_row(97.0, "i3", "start_failed")]
    )
    union_s, sum_s = en.instance_seconds(en.instance_spans(events), (0.0, 100.0))
    # union: [0,5) + [10,100) = 95; sum: 5 + 30 + 70 (i2 up to the end) + 2 = 107
    assert union_s == pytest.approx(95.0)
    assert sum_s == pytest.approx(107.0)
    table = en.cold_starts(en.instance_spans(events), en.energy_meter(None), 0.0, (0.0, 100.0))
    assert table.set_index("instance_id")["in_replay"].to_dict() == {
        "i0": False, "i1": True, "i2": True, "i3": True}


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.floats(0.0, 50.0, allow_nan=False), min_size=2, max_size=12),
    watts=st.lists(st.floats(0.0, 400.0, allow_nan=False), min_size=1, max_size=8),
)
def test_phases_partition_window_and_energy(cuts: list[float], watts: list[float]) -> None:
    cuts = sorted(cuts)
    # Instances spawn at alternate cuts and become ready at the next; requests in between.
    events, requests = [], []
    for k in range(0, len(cuts) - 1, 2):
        events += [event_row(cuts[k], f"i{k}", "spawn"), event_row(cuts[k + 1], f"i{k}", "ready")]
        requests.append((cuts[k], cuts[k + 1] + 1.0))
    spans = en.instance_spans(pd.DataFrame(events))
    timeline = en.phase_timeline(spans, pd.DataFrame(requests, columns=["t_send_s", "t_end_s"]),
                                 (0.0, 60.0))
    assert timeline["t0_s"].iloc[0] == 0.0 and timeline["t1_s"].iloc[-1] == 60.0
    assert np.allclose(timeline["t0_s"].iloc[1:].to_numpy(), timeline["t1_s"].iloc[:-1])
    t = np.arange(-0.3, 61.0, 0.7)
    segments = [(i * 7.0, i * 7.0 + 7.0, w) for i, w in enumerate(watts)]
    meter = en.energy_meter(telemetry_frame(t, segments, default_w=3.0))
    table = en.phase_energy(timeline, meter, 3.0)
    assert table["duration_s"].sum() == pytest.approx(60.0)
    assert table["energy_j"].sum() == pytest.approx(float(meter.energy_j(0.0, 60.0)))
