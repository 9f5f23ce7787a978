"""hybrid_histogram: hand-computed histograms, its decisions over time, its parameters.

Default histogram: 60 s bins over [0, 14400 s), 240 bins. All idle times in one bin give
counts (n, 0, ..., 0): CV = sqrt(239) ~ 15.5, far above 2. k equally filled bins give
CV^2 = 240 / k - 1: 2.24 for k = 40 (representative), 1.73 for k = 60 (not).
"""

from __future__ import annotations

from typing import Any

import pytest

from scalezero.errors import UserError
from scalezero.serving.strategies import Accounting, make_policy
from scalezero.serving.strategies.hybrid_histogram import HybridHistogram


def learned(idle_times_s: list[float], **params: Any) -> HybridHistogram:
    policy = HybridHistogram(**params)
    for idle_s in idle_times_s:
        policy.record_idle_s(idle_s)
    return policy


def test_all_in_one_bin_is_representative_with_margins_on_the_bin_edges() -> None:
    policy = learned([610.0, 630.0, 659.0] * 3 + [600.0])  # 10 idle times, bin [600, 660)
    assert policy.bin_cv() == pytest.approx(239 ** 0.5)
    assert policy.representative()
    # head edge 600 s - 10 % = 540 s; tail edge 660 s + 10 % = 726 s.
    assert policy.windows_s() == pytest.approx((540.0, 726.0))
    policy.on_idle(1000.0)
    assert policy.idle_ttl_s(1000.0) == 0.0  # unload at once ...
    assert policy.prewarm_at_s(1000.0) == pytest.approx(1540.0)  # ... pre-warm later
    # The pre-warmed instance, ready at 1545 s, stays up to 1000 + 726 s.
    assert policy.idle_ttl_s(1545.0) == pytest.approx(181.0)
    assert policy.prewarm_at_s(1545.0) is None
    assert policy.idle_ttl_s(1800.0) == 0.0  # past the keep-alive window


def test_too_few_samples_falls_back() -> None:
    policy = learned([630.0] * 9)
    assert not policy.representative()
    policy.on_idle(0.0)
    assert policy.idle_ttl_s(0.0) == 600.0
    assert policy.prewarm_at_s(0.0) is None
    policy.record_idle_s(630.0)
    assert policy.representative()  # the 10th sample


def test_spread_out_histogram_falls_back() -> None:
    sixty_bins = learned([60.0 * i + 1 for i in range(60)])
    assert sixty_bins.bin_cv() == pytest.approx(3 ** 0.5)
    assert not sixty_bins.representative()
    assert sixty_bins.windows_s() is None
    forty_bins = learned([60.0 * i + 1 for i in range(40)])
    assert forty_bins.bin_cv() == pytest.approx(5 ** 0.5)
    assert forty_bins.representative()
    assert learned([60.0 * i + 1 for i in range(40)], cv_threshold=2.5).windows_s() is None


def test_out_of_range_share_above_the_limit_falls_back() -> None:
    at_limit = learned([630.0] * 10 + [14400.0] * 10)  # 10 of 20 out of range: 0.5
    assert at_limit.samples == 20
    assert at_limit.representative()
    above = learned([630.0] * 10 + [14400.0] * 11)
    assert not above.representative()
    assert learned([14400.0] * 20).windows_s() is None  # nothing in range
    strict = learned([630.0] * 10 + [20000.0], out_of_range_max_share=0.0)
    assert not strict.representative()


def test_percentiles_fall_on_bin_edges() -> None:
    # 100 idle times: 4 in bin 0, 95 in bin 5, 1 in bin 100. The 5th percentile (rank 5)
    # is in bin 5, the 99th (rank 99) too: edges 300 s and 360 s.
    idle = [30.0] * 4 + [330.0] * 95 + [6030.0]
    assert learned(idle).windows_s() == pytest.approx((270.0, 396.0))
    # One more in bin 0 moves the head there: pre-warm 0, so the instance is not unloaded.
    policy = learned([30.0] * 5 + [330.0] * 94 + [6030.0])
    assert policy.windows_s() == pytest.approx((0.0, 396.0))
    policy.on_idle(50.0)
    assert policy.idle_ttl_s(50.0) == pytest.approx(396.0)
    assert policy.prewarm_at_s(50.0) is None
    # The 100th percentile reaches the last sample's bin (100): upper edge 6060 s.
    assert learned(idle, tail_percentile=100).windows_s() == pytest.approx((270.0, 6666.0))


@pytest.mark.parametrize(("margin_pct", "windows"), [
    (0.0, (600.0, 660.0)), (10.0, (540.0, 726.0)), (50.0, (300.0, 990.0)),
    (100.0, (0.0, 1320.0)),
])
def test_margin_shrinks_the_prewarm_and_widens_the_keep_alive(
    margin_pct: float, windows: tuple[float, float],
) -> None:
    assert learned([630.0] * 10, margin_pct=margin_pct).windows_s() == pytest.approx(windows)


def test_decisions_over_an_arrival_sequence() -> None:
    """10 s bins over 100 s; requests last 1 s and come 20 s after the previous ended."""
    policy = HybridHistogram(bin_width_s=10, range_s=100, min_samples=3, fallback_ttl_s=7)
    decisions = []
    now = 0.0
    for _ in range(5):
        policy.on_arrival(now)
        now += 1.0  # the request runs
        policy.on_idle(now)
        decisions.append((policy.idle_ttl_s(now), policy.prewarm_at_s(now)))
        now += 20.0
    # Idle times so far: 0, 1, 2, 3 and 4 of 20 s each. Three make it representative:
    # bin [20, 30): pre-warm 18 s, keep until 33 s after the idle period starts.
    assert decisions[:3] == [(7, None)] * 3
    assert decisions[3] == (0.0, pytest.approx(64.0 + 18.0))
    assert decisions[4] == (0.0, pytest.approx(85.0 + 18.0))
    # The pre-warmed instance becomes ready at 104 s: up until 85 + 33 = 118 s.
    assert policy.idle_ttl_s(104.0) == pytest.approx(14.0)
    # An arrival in a busy period (no on_idle before it) learns nothing.
    policy.on_arrival(105.0)
    policy.on_arrival(105.5)
    assert policy.samples == 5
    assert policy.idle_ttl_s(106.0) == 7  # requests in flight: no idle period to plan


def test_registered_and_accounted_as_its_fallback() -> None:
    policy = make_policy("hybrid_histogram", {"fallback_ttl_s": 120})
    assert isinstance(policy, HybridHistogram)
    assert policy.accounting() == Accounting(False, 120.0)
    params = policy.params()
    assert params["policy"] == "hybrid_histogram"
    assert params["bin_width_s"] == 60.0 and params["range_s"] == 14400.0
    assert not any(key.startswith("_") for key in params)  # learned state stays out


@pytest.mark.parametrize(("params", "field"), [
    ({"bin_width_s": 0}, "bin_width_s"),
    ({"bin_width_s": -1}, "bin_width_s"),
    ({"range_s": -5}, "range_s"),
    ({"range_s": 30}, "range_s"),  # shorter than one 60 s bin
    ({"head_percentile": -1}, "head_percentile"),
    ({"tail_percentile": 101}, "tail_percentile"),
    ({"head_percentile": 99, "tail_percentile": 5}, "head_percentile"),
    ({"margin_pct": -10}, "margin_pct"),
    ({"min_samples": 0}, "min_samples"),
    ({"cv_threshold": -2}, "cv_threshold"),
    ({"fallback_ttl_s": -1}, "fallback_ttl_s"),
    ({"out_of_range_max_share": 1.5}, "out_of_range_max_share"),
])
def test_invalid_parameters_name_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        HybridHistogram(**params)
    with pytest.raises(UserError, match=field):
        make_policy("hybrid_histogram", params)


# ---------------------------------------------------------------- history


def test_history_gaps_become_idle_times() -> None:
    # Arrivals every 630 s from -7000 s on: 11 arrivals, 10 gaps of 630 s, all in bin
    # [600, 660): representative, windows (540, 726) as in the first test. The gap from
    # the last arrival (-700 s) to the replay start is not recorded.
    history = [-7000.0 + 630.0 * i for i in range(11)]
    policy = HybridHistogram()
    assert not policy.representative()
    policy.learn_history(history)
    assert policy.samples == 10
    assert policy.representative()
    assert policy.windows_s() == pytest.approx((540.0, 726.0))
    # Ten arrivals (nine gaps) are one sample short of min_samples.
    short = HybridHistogram()
    short.learn_history(history[:10])
    assert short.samples == 9
    assert not short.representative()


def test_history_fills_the_bins_by_hand() -> None:
    # 2 s bins over [0, 60): gaps 1, 1, 1, 3, 3, 100 -> bin 0: 3, bin 1: 2, 1 out of
    # range. 30 bins, mean count 5/30; CV^2 = 30 * (9 + 4) / 25 - 1 = 14.6.
    policy = HybridHistogram(bin_width_s=2.0, range_s=60.0, min_samples=5)
    policy.learn_history([-109.0, -108.0, -107.0, -106.0, -103.0, -100.0, 0.0])
    assert policy.samples == 6
    assert policy.bin_cv() == pytest.approx(14.6 ** 0.5)
    assert policy.representative()
    # Head: rank ceil(0.05 * 5) = 1 -> bin 0, prewarm 0; tail: rank ceil(0.99 * 5) = 5 ->
    # bin 1, upper edge 4 s + 10 % = 4.4 s.
    assert policy.windows_s() == pytest.approx((0.0, 4.4))
    policy.on_idle(10.0)
    assert policy.idle_ttl_s(10.0) == pytest.approx(4.4)  # not unloaded: prewarm 0
    assert policy.prewarm_at_s(10.0) is None


def test_empty_or_single_history_changes_nothing() -> None:
    fresh = HybridHistogram()
    for history in ([], [-5.0]):
        policy = HybridHistogram()
        policy.learn_history(history)
        assert policy.samples == 0
        assert policy._counts == fresh._counts
        assert policy.windows_s() is None
        policy.on_idle(0.0)
        assert policy.idle_ttl_s(0.0) == fresh.fallback_ttl_s


def test_history_then_the_run_keeps_learning() -> None:
    policy = HybridHistogram(bin_width_s=2.0, range_s=60.0, min_samples=3)
    policy.learn_history([-4.0, -3.0, -2.0])  # two gaps of 1 s: bin 0
    policy.on_idle(0.0)
    policy.on_arrival(1.5)  # a third idle time, bin 0
    assert policy.samples == 3
    assert policy.representative()


def test_other_policies_ignore_history() -> None:
    for name in ("always_on", "naive", "keep_warm"):
        policy = make_policy(name, {})
        before = policy.params()
        policy.learn_history([-3.0, -2.0, -1.0])
        assert policy.params() == before
