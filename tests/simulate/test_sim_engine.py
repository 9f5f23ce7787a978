"""The simulator's engine on hand-computed scenarios.

The profile: a 4 s cold start (1 + 2 + 1 s), stop 0.5 s, warm TTFT 0.1 s (no per-token
prefill), 0.2 s more on an instance's first request, 0.01 s per output token after the
first. A request with 11 output tokens therefore takes 0.2 s warm, 0.4 s as an
instance's first.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import pytest

from scalezero.serving.pool import PoolLimits
from scalezero.serving.strategies import make_policy
from scalezero.serving.strategies.hybrid_histogram import HybridHistogram
from scalezero.simulate.engine import (
    REPLAY_LEAD_S,
    SIM_REQUEST_COLUMNS,
    SimRequest,
    SimResult,
    requests_from_trace,
    simulate,
    summarize,
)
from scalezero.simulate.profile import PlatformProfile

PROFILE = PlatformProfile(
    name="hand", model="m", device="cpu", basis="assumed",
    spawn_to_runtime_ready_s=1.0, runtime_ready_to_model_loaded_s=2.0,
    model_loaded_to_ready_s=1.0, first_request_extra_s=0.2, stop_s=0.5,
    ttft_base_s=0.1, tpot_s=0.01,
    power_w={"bare_idle": 10.0, "context_idle": 20.0, "idle_loaded": 30.0, "active": 100.0,
             "cold_start": 50.0},
)


def limits(**changes: Any) -> PoolLimits:
    values: dict[str, Any] = {"max_queue": 256, "cold_start_timeout_s": 180.0,
                              "queue_timeout_s": 600.0, "instance_concurrency": 1,
                              "failure_check_s": 1.0}
    return PoolLimits(**{**values, **changes})


def at(*times_s: float, output_tokens: int = 11) -> list[SimRequest]:
    return [SimRequest(k, t, 10, output_tokens) for k, t in enumerate(times_s)]


def run(policy: str, requests: list[SimRequest], until_s: float | None = None,
        profile: PlatformProfile = PROFILE, **limit_changes: Any) -> SimResult:
    name, _, params = policy.partition(":")
    kwargs: dict[str, Any] = {}
    for pair in filter(None, params.split(",")):
        key, value = pair.split("=")
        kwargs[key] = float(value) if "." in value else int(value)
    return simulate(requests, make_policy(name, kwargs), profile, limits(**limit_changes),
                    until_s=until_s)


def events_of(result: SimResult) -> list[tuple[float, str, str, str, str]]:
    ev = result.events
    return [(round(float(t), 9), str(i), str(e), str(s), str(r)) for t, i, e, s, r in zip(
        ev["t_s"], ev["instance_id"], ev["event"], ev["state"], ev["reason"], strict=True)]


def spawns(result: SimResult) -> list[tuple[float, str, str]]:
    return [(t, i, r) for t, i, e, _, r in events_of(result) if e == "spawn"]


def test_a_burst_under_naive_is_one_cold_start_and_a_queue_on_one_instance() -> None:
    result = run("naive", at(0.0, 0.001, 0.002, 0.003, 0.004))
    req = result.requests
    assert list(req.columns) == list(SIM_REQUEST_COLUMNS)
    assert spawns(result) == [(0.0, "i1", "on_demand")]
    assert (req["status"] == 200).all() and (req["instance_id"] == "i1").all()
    # Ready at 4 s; then one after the other, the first one 0.2 s longer.
    assert req["t_grant_s"].tolist() == pytest.approx([4.0, 4.4, 4.6, 4.8, 5.0])
    assert req["t_first_s"].tolist() == pytest.approx([4.3, 4.5, 4.7, 4.9, 5.1])
    assert req["t_end_s"].tolist() == pytest.approx([4.4, 4.6, 4.8, 5.0, 5.2])
    assert req["cold"].all()  # all waited for the start
    assert req["first_of_instance"].tolist() == [True, False, False, False, False]
    assert req["queue_wait_s"].tolist() == pytest.approx([4.0, 4.399, 4.598, 4.797, 4.996])
    assert events_of(result) == [
        (0.0, "i1", "spawn", "starting", "on_demand"),
        (1.0, "i1", "runtime_ready", "starting", ""),
        (3.0, "i1", "model_loaded", "starting", ""),
        (4.0, "i1", "ready", "ready", ""),
        (4.3, "i1", "first_token", "ready", ""),
        (5.2, "i1", "drain", "draining", "no_inflight"),
        (5.7, "i1", "stopped", "stopped", "no_inflight"),
    ]
    assert result.window == pytest.approx((0.0, 5.2))
    assert list(result.events.columns) == ["t_s", "instance_id", "event", "state", "pid",
                                           "reason", "detail", "tier"]
    assert result.events["tier"].tolist() == ["host_cached", "", "", "", "", "", ""]


def test_keep_warm_gap_longer_than_the_ttl_is_a_second_cold_start() -> None:
    # First request: spawn at 1, ready at 5, done at 5.4; idle until 5.4 + 10 = 15.4.
    short = run("keep_warm:keep_warm_ttl_s=10.0", at(1.0, 12.0))
    assert spawns(short) == [(1.0, "i1", "on_demand")]
    assert short.requests["cold"].tolist() == [True, False]
    assert short.requests["t_grant_s"].tolist() == pytest.approx([5.0, 12.0])
    # The last instance goes at the gateway's shutdown, after the window.
    assert events_of(short)[-2:] == [(12.2, "i1", "drain", "draining", "shutdown"),
                                     (12.7, "i1", "stopped", "stopped", "shutdown")]

    long = run("keep_warm:keep_warm_ttl_s=10.0", at(1.0, 20.0))
    assert spawns(long) == [(1.0, "i1", "on_demand"), (20.0, "i2", "on_demand")]
    assert (15.4, "i1", "drain", "draining", "idle_ttl") in events_of(long)
    assert (15.9, "i1", "stopped", "stopped", "idle_ttl") in events_of(long)
    assert long.requests["cold"].tolist() == [True, True]
    assert long.requests["instance_id"].tolist() == ["i1", "i2"]


def test_always_on_warms_up_before_the_replay_and_has_no_cold_start_in_it() -> None:
    result = run("always_on", at(1.0, 50.0, 100.0))
    warm_up = events_of(result)[:4]
    # Ready just before t = 0 (the runner starts the replay after seeing it ready).
    assert -1e-6 < warm_up[3][0] < 0
    assert [(round(t, 6), *rest) for t, *rest in warm_up] == [
        (-4.0, "i1", "spawn", "starting", "min_instances"),
        (-3.0, "i1", "runtime_ready", "starting", ""),
        (-1.0, "i1", "model_loaded", "starting", ""),
        (0.0, "i1", "ready", "ready", ""),
    ]
    assert float(result.events["t_s"].iloc[3]) == -REPLAY_LEAD_S  # exactly
    req = result.requests
    assert not req["cold"].any()
    assert req["t_grant_s"].tolist() == pytest.approx([1.0, 50.0, 100.0])
    assert req["t_end_s"].tolist() == pytest.approx([1.4, 50.2, 100.2])
    summary = summarize(result, PROFILE)
    assert summary["cold_starts"] == 0 and summary["cold_requests"] == 0


def test_two_initial_instances_start_one_after_the_other() -> None:
    result = run("always_on:min_instances=2,max_instances=2", at(1.0))
    lead = REPLAY_LEAD_S
    assert spawns(result) == [(-8.0 - lead, "i1", "min_instances"),
                              (-4.0 - lead, "i2", "min_instances")]
    ready = [(t, i) for t, i, e, _, _ in events_of(result) if e == "ready"]
    assert ready == [(-4.0 - lead, "i1"), (-lead, "i2")]


def test_a_full_queue_answers_429() -> None:
    result = run("naive", at(0.0, 0.001, 0.002, 0.003, 0.004), max_queue=2)
    req = result.requests
    assert req["status"].tolist() == [200, 200, 429, 429, 429]
    rejected = req[req["status"] == 429]
    assert rejected["t_end_s"].tolist() == pytest.approx([0.002, 0.003, 0.004])
    assert rejected["t_grant_s"].isna().all() and (rejected["instance_id"] == "").all()
    assert not rejected["cold"].any()


def test_waits_past_their_deadline_answer_504() -> None:
    # A cold start of 4 s against a 3 s deadline: both wait in vain.
    cold = run("naive", at(0.0, 0.5), cold_start_timeout_s=3.0, until_s=10.0)
    assert cold.requests["status"].tolist() == [504, 504]
    assert cold.requests["t_end_s"].tolist() == pytest.approx([3.0, 3.5])
    # The instance comes up with nobody to serve and naive stops it at once. (Without
    # until_s the window, and the gateway, would end at 3.5 s, while it was starting.)
    assert events_of(cold)[-2:] == [(4.0, "i1", "drain", "draining", "no_inflight"),
                                    (4.5, "i1", "stopped", "stopped", "no_inflight")]
    # Behind a busy warm instance the queue timeout applies: the first request holds
    # the only instance from 1 to 1 + 0.1 + 0.2 + 99 * 0.01 = 2.29 s.
    busy = run("always_on", [SimRequest(0, 1.0, 10, 100), SimRequest(1, 1.1, 10, 11),
                             SimRequest(2, 2.0, 10, 11)], queue_timeout_s=0.5)
    assert busy.requests["status"].tolist() == [200, 504, 200]
    assert busy.requests["t_end_s"].tolist() == pytest.approx([2.29, 1.6, 2.49])


def test_two_instances_with_two_slots_each() -> None:
    # Service = TTFT only (1 s, one output token, no first-request extra).
    profile = PlatformProfile(name="p", model="m", device="cpu", basis="assumed",
                              spawn_to_runtime_ready_s=1.0, runtime_ready_to_model_loaded_s=2.0,
                              model_loaded_to_ready_s=1.0, stop_s=0.5, ttft_base_s=1.0)
    result = run("keep_warm:max_instances=2,keep_warm_ttl_s=10.0",
                 at(0.0, 0.1, 0.2, 0.3, 0.4, output_tokens=1), profile=profile,
                 instance_concurrency=2)
    req = result.requests
    # i1 is ready at 4 and takes two; three still wait, so i2 starts on demand at 4.
    # At 5 both slots free up for the next two, at 6 for the last; i2 (ready at 8) idles.
    assert req["t_grant_s"].tolist() == pytest.approx([4.0, 4.0, 5.0, 5.0, 6.0])
    assert (req["instance_id"] == "i1").all()
    assert spawns(result) == [(0.0, "i1", "on_demand"), (4.0, "i2", "on_demand")]
    # i2 would idle out at 18; the window ends at 7 and the shutdown drains both.
    assert [e for e in events_of(result) if e[2] == "drain"] == [
        (7.0, "i1", "drain", "draining", "shutdown"), (7.0, "i2", "drain", "draining",
                                                       "shutdown")]


def test_hybrid_histogram_with_a_learned_history_prewarms() -> None:
    policy = HybridHistogram(bin_width_s=10.0, range_s=1000.0, min_samples=10)
    for _ in range(10):
        policy.record_idle_s(100.0)  # all idle times in [100, 110): windows (90, 121) s
    result = simulate(at(1.0, 110.0), policy, PROFILE, limits())
    # First request done at 5.4: unload at once, pre-warm at 5.4 + 90 = 95.4, ready 99.4.
    assert spawns(result) == [(1.0, "i1", "on_demand"), (95.4, "i2", "prewarm")]
    assert (5.4, "i1", "drain", "draining", "no_inflight") in events_of(result)
    req = result.requests
    assert req["cold"].tolist() == [True, False]
    assert req["instance_id"].tolist() == ["i1", "i2"]
    assert req["t_grant_s"].tolist() == pytest.approx([5.0, 110.0])
    assert policy.samples == 11  # the replay's idle time of 104.6 s was learned


def test_summarize_on_a_hand_built_run() -> None:
    # keep_warm 10 s: spawn 1, ready 5, served to 5.4, drained 15.4, stopped 15.9.
    result = run("keep_warm:keep_warm_ttl_s=10.0", at(1.0), until_s=30.0)
    assert result.window == (0.0, 30.0)
    s = summarize(result, PROFILE)
    assert s["requests"] == 1 and s["ok"] == 1 and s["errors"] == 0
    assert s["cold_starts"] == 1 and s["cold_requests"] == 1 and s["cold_share"] == 1.0
    assert s["ttft_p50_ms"] == pytest.approx(4300.0)
    assert s["e2e_p99_ms"] == pytest.approx(4400.0)
    assert s["instance_s"] == pytest.approx(14.9)
    assert s["instance_s_sum"] == pytest.approx(14.9)
    # cold start [1, 5), active [5, 5.4), idle loaded [5.4, 15.9), empty the rest.
    assert s["phase_cold_start_s"] == pytest.approx(4.0)
    assert s["phase_active_s"] == pytest.approx(0.4)
    assert s["phase_idle_loaded_s"] == pytest.approx(10.5)
    assert s["phase_empty_s"] == pytest.approx(15.1)
    assert s["phase_cold_start_energy_j"] == pytest.approx(200.0)
    assert s["phase_active_energy_j"] == pytest.approx(40.0)
    assert s["phase_idle_loaded_energy_j"] == pytest.approx(315.0)
    assert s["phase_empty_energy_j"] == pytest.approx(151.0)
    assert s["energy_total_j"] == pytest.approx(706.0)
    assert s["energy_above_baseline_j"] == pytest.approx(406.0)


def test_summarize_without_powers_leaves_energy_empty() -> None:
    profile = PlatformProfile(name="p", model="m", device="cpu", basis="assumed",
                              model_loaded_to_ready_s=1.0, ttft_base_s=0.1)
    s = summarize(run("naive", at(1.0), profile=profile), profile)
    assert s["energy_total_j"] is None and s["phase_active_energy_j"] is None
    assert s["phase_cold_start_s"] == pytest.approx(1.0)


def test_requests_from_trace_counts_words_or_takes_measured_tokens() -> None:
    trace = pd.DataFrame({"request_id": [0, 1], "t_sched_s": [0.5, 1.5],
                          "max_tokens": [32, 64], "prompt": ["a b c", "one two"]})
    assert requests_from_trace(trace) == [SimRequest(0, 0.5, 3, 32), SimRequest(1, 1.5, 2, 64)]
    assert requests_from_trace(trace, {1: 17}) == [SimRequest(0, 0.5, 3, 32),
                                                   SimRequest(1, 1.5, 17, 64)]


def test_no_requests_and_unsorted_requests() -> None:
    empty = run("keep_warm", [])
    assert empty.requests.empty and empty.window == (0.0, 0.0)
    shuffled = run("keep_warm", [SimRequest(7, 30.0, 10, 11), SimRequest(3, 1.0, 10, 11)])
    assert shuffled.requests["request_id"].tolist() == [3, 7]
    assert shuffled.requests["t_grant_s"].tolist() == pytest.approx([5.0, 30.0])


def test_the_shutdown_cuts_a_start_short() -> None:
    # The only request gives up at 1 s, which ends the window: the gateway stops the
    # instance it was starting (spawned at 0, runtime ready at 1, model loaded never).
    result = run("naive", at(0.0), cold_start_timeout_s=1.0)
    assert result.requests["status"].tolist() == [504]
    assert events_of(result) == [
        (0.0, "i1", "spawn", "starting", "on_demand"),
        (1.0, "i1", "runtime_ready", "starting", ""),
        (1.0, "i1", "drain", "draining", "shutdown"),
        (1.5, "i1", "stopped", "stopped", "shutdown"),
    ]


def test_history_goes_to_the_policys_learn_history_before_the_replay() -> None:
    policy = make_policy("keep_warm")
    seen: list[list[float]] = []
    policy.learn_history = lambda times_s: seen.append(list(times_s))  # type: ignore[attr-defined]
    simulate(at(1.0), policy, PROFILE, limits(), history_s=[-50.0, -20.0])
    assert seen == [[-50.0, -20.0]]
    simulate(at(1.0), make_policy("keep_warm"), PROFILE, limits(), history_s=[-5.0])  # no hook


def test_tiered_sleeps_wakes_and_stops_after_its_runtime_warm_time() -> None:
    # Loaded 2 s after going idle, then runtime-warm 10 s. No wake time in the profile:
    # the cold start less its runtime phase, 2 + 1 = 3 s.
    assert PROFILE.runtime_warm_wake_s is None and PROFILE.wake_s == 3.0
    result = run("tiered:loaded_ttl_s=2.0,runtime_warm_s=10.0", at(1.0, 10.0, 40.0))
    assert events_of(result) == [
        (1.0, "i1", "spawn", "starting", "on_demand"),
        (2.0, "i1", "runtime_ready", "starting", ""),
        (4.0, "i1", "model_loaded", "starting", ""),
        (5.0, "i1", "ready", "ready", ""),
        (5.3, "i1", "first_token", "ready", ""),
        (7.4, "i1", "sleep", "sleeping", "idle_ttl"),  # idle from 5.4
        (10.0, "i1", "wake", "waking", "on_demand"),
        (13.0, "i1", "ready", "ready", ""),
        (15.2, "i1", "sleep", "sleeping", "idle_ttl"),  # idle from 13.2
        (25.2, "i1", "drain", "draining", "runtime_warm_ttl"),
        (25.7, "i1", "stopped", "stopped", "runtime_warm_ttl"),
        (40.0, "i2", "spawn", "starting", "on_demand"),
        (41.0, "i2", "runtime_ready", "starting", ""),
        (43.0, "i2", "model_loaded", "starting", ""),
        (44.0, "i2", "ready", "ready", ""),
        (44.3, "i2", "first_token", "ready", ""),
        (44.4, "i2", "drain", "draining", "shutdown"),
        (44.9, "i2", "stopped", "stopped", "shutdown"),
    ]
    tiers = result.events.set_index("event")["tier"]
    assert set(tiers.loc[["spawn"]]) == {"host_cached"} and tiers.loc["wake"] == "runtime_warm"
    req = result.requests
    assert req["cold"].tolist() == [True, True, True]
    assert req["t_end_s"].tolist() == pytest.approx([5.4, 13.2, 44.4])
    s = summarize(result, PROFILE)
    assert s["cold_starts"] == 2 and s["runtime_warm_wakes"] == 1
    assert s["runtime_warm_instance_s"] == pytest.approx((10.0 - 7.4) + (25.2 - 15.2))


def test_tiered_energy_per_phase() -> None:
    # The run of the test above; the window ends with the last response, at 44.4:
    #   empty [0, 1)  cold_start [1, 5)  active [5, 5.4)  idle_loaded [5.4, 7.4)
    #   runtime_warm [7.4, 10)  cold_start [10, 13) (the wake)  active [13, 13.2)
    #   idle_loaded [13.2, 15.2)  runtime_warm [15.2, 25.7) (drained at 25.2, stopped
    #   at 25.7)  empty [25.7, 40)  cold_start [40, 44)  active [44, 44.4)
    result = run("tiered:loaded_ttl_s=2.0,runtime_warm_s=10.0", at(1.0, 10.0, 40.0))
    assert result.window == pytest.approx((0.0, 44.4))
    seconds = {"cold_start": 4.0 + 3.0 + 4.0, "active": 0.4 + 0.2 + 0.4,
               "idle_loaded": 2.0 + 2.0, "runtime_warm": (10.0 - 7.4) + (25.7 - 15.2),
               "empty": 1.0 + (40.0 - 25.7)}
    # PROFILE has no runtime_warm power: a sleeping instance draws context_idle (20 W).
    watts = {"cold_start": 50.0, "active": 100.0, "idle_loaded": 30.0, "runtime_warm": 20.0,
             "empty": 10.0}
    s = summarize(result, PROFILE)
    for phase, phase_s in seconds.items():
        assert s[f"phase_{phase}_s"] == pytest.approx(phase_s), phase
        assert s[f"phase_{phase}_energy_j"] == pytest.approx(phase_s * watts[phase]), phase
    # 550 + 100 + 120 + 262 + 153 J; above 10 W x 44.4 s.
    assert s["energy_total_j"] == pytest.approx(1185.0)
    assert s["energy_above_baseline_j"] == pytest.approx(1185.0 - 444.0)
    # A profile with its own runtime_warm power uses it.
    own = dataclasses.replace(PROFILE, power_w={**PROFILE.power_w, "runtime_warm": 25.0})
    assert summarize(result, own)["phase_runtime_warm_energy_j"] == pytest.approx(13.1 * 25.0)
    # Without either, the runtime-warm energy and the total are unknown.
    bare = dataclasses.replace(PROFILE, power_w={k: v for k, v in PROFILE.power_w.items()
                                                 if k != "context_idle"})
    unknown = summarize(result, bare)
    assert unknown["phase_runtime_warm_energy_j"] is None
    assert unknown["energy_total_j"] is None


def test_runs_without_sleeps_have_no_runtime_warm_energy_whatever_the_profile() -> None:
    result = run("keep_warm:keep_warm_ttl_s=10.0", at(1.0), until_s=30.0)
    bare = dataclasses.replace(PROFILE, power_w={k: v for k, v in PROFILE.power_w.items()
                                                 if k != "context_idle"})
    s = summarize(result, bare)
    assert s["phase_runtime_warm_s"] == 0.0 and s["phase_runtime_warm_energy_j"] == 0.0
    assert s["energy_total_j"] == pytest.approx(706.0)  # as in the hand-built run above


def test_a_profile_wake_time_is_used_when_it_has_one() -> None:
    profile = dataclasses.replace(PROFILE, runtime_warm_wake_s=0.5)
    result = run("tiered:loaded_ttl_s=2.0,runtime_warm_s=10.0", at(1.0, 10.0),
                 profile=profile)
    # Woken at 10, ready 0.5 s later, served to 10.7, when the window ends.
    woke = [(t, e, r) for t, i, e, _, r in events_of(result) if t > 9.0]
    assert woke == [(10.0, "wake", "on_demand"), (10.5, "ready", ""),
                    (10.7, "drain", "shutdown"), (11.2, "stopped", "shutdown")]
