"""Policies: the registry, their accounting and its record in run.json."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from scalezero.errors import UserError
from scalezero.serving.strategies import (
    Accounting,
    Policy,
    make_policy,
    parameter_schema,
    policies,
    policy,
    recorded_accounting,
    registered,
)


@dataclasses.dataclass
class ScheduledPolicy(Policy):
    name = "test_scheduled"
    night_ttl_s: float = dataclasses.field(default=5.0, metadata={"minimum": 0})

    def idle_ttl_s(self, now_s: float) -> float | None:
        return self.night_ttl_s


def test_shipped_policies_state_their_accounting() -> None:
    assert policies() == ["always_on", "hybrid_histogram", "keep_warm", "naive", "tiered"]
    assert make_policy("always_on").accounting() == Accounting(True, math.inf)
    assert make_policy("naive").accounting() == Accounting(False, 0.0)
    assert make_policy("keep_warm", {"keep_warm_ttl_s": 7}).accounting() == Accounting(
        False, 7.0)
    # The pool holds min_instances from the start: always on, whatever the TTL above it.
    assert make_policy("keep_warm", {"min_instances": 1}).accounting().always_on


def test_accounting_record_is_json_safe_and_round_trips() -> None:
    for accounting in (Accounting(True, math.inf), Accounting(False, 0.0),
                       Accounting(False, 12.5)):
        record = json.loads(json.dumps(accounting.record(), allow_nan=False))
        assert Accounting.from_record(record) == accounting
    assert Accounting(True, math.inf).record() == {"always_on": True, "idle_ttl_s": None}



def test_accounting_records_the_runtime_warm_tier_and_reads_old_records() -> None:
    for accounting in (Accounting(False, 10.0, 60.0), Accounting(False, 0.0, math.inf)):
        record = json.loads(json.dumps(accounting.record(), allow_nan=False))
        assert Accounting.from_record(record) == accounting
    assert Accounting(False, 5.0, math.inf).record()["runtime_warm_ttl_s"] is None
    # A record written before the tier existed has none.
    assert Accounting.from_record({"always_on": False, "idle_ttl_s": 3.0}) == Accounting(
        False, 3.0, 0.0)
    assert make_policy("tiered", {"loaded_ttl_s": 4, "runtime_warm_s": 30}).accounting() == (
        Accounting(False, 4.0, 30.0))
    assert make_policy("keep_warm").accounting().runtime_warm_ttl_s == 0.0


def test_tiered_is_naive_and_keep_warm_at_zero_runtime_warm_time() -> None:
    tiered = make_policy("tiered", {"loaded_ttl_s": 0, "runtime_warm_s": 0})
    naive = make_policy("naive")
    assert (tiered.idle_ttl_s(5.0), tiered.runtime_warm_ttl_s(5.0)) == (
        naive.idle_ttl_s(5.0), naive.runtime_warm_ttl_s(5.0))
    assert tiered.accounting() == naive.accounting()
    warm = make_policy("tiered", {"loaded_ttl_s": 7.5, "runtime_warm_s": 0})
    assert warm.accounting() == make_policy("keep_warm", {"keep_warm_ttl_s": 7.5}).accounting()
    with pytest.raises(UserError, match="runtime_warm_s must be >= 0"):
        make_policy("tiered", {"runtime_warm_s": -1})


def test_recorded_accounting_prefers_the_record_and_rebuilds_old_ones() -> None:
    saved = {"name": "keep_warm", "keep_warm_ttl_s": 3,
             "accounting": {"always_on": False, "idle_ttl_s": 9.0}}
    assert recorded_accounting(saved) == Accounting(False, 9.0)
    # An older run.json: rebuilt from name and parameters; values that are no parameter
    # of that policy, or empty, are left out.
    old = {"name": "always_on", "min_instances": 1, "keep_warm_ttl_s": None,
           "max_instances": float("nan")}
    assert recorded_accounting(old) == Accounting(True, math.inf)
    with pytest.raises(UserError, match="unknown policy"):
        recorded_accounting({"name": "no_such_policy"})
    with pytest.raises(UserError):
        recorded_accounting({})


def test_registered_adds_a_policy_for_a_block_only() -> None:
    with registered(ScheduledPolicy):
        assert "test_scheduled" in policies()
        assert policy("test_scheduled") is ScheduledPolicy
        assert make_policy("test_scheduled", {"night_ttl_s": 2}).accounting() == Accounting(
            False, 2.0)
        assert parameter_schema()["night_ttl_s"] == {"type": "number", "minimum": 0}
    assert "test_scheduled" not in policies()
    with pytest.raises(UserError, match="unknown policy 'test_scheduled'"):
        policy("test_scheduled")


def test_parameter_schema_comes_from_the_policy_classes() -> None:
    assert parameter_schema() == {
        "min_instances": {"type": "integer", "minimum": 0},
        "max_instances": {"type": "integer", "minimum": 1},
        "bin_width_s": {"type": "number", "exclusiveMinimum": 0},
        "range_s": {"type": "number", "exclusiveMinimum": 0},
        "head_percentile": {"type": "number", "minimum": 0, "maximum": 100},
        "tail_percentile": {"type": "number", "minimum": 0, "maximum": 100},
        "margin_pct": {"type": "number", "minimum": 0, "maximum": 100},
        "min_samples": {"type": "integer", "minimum": 1},
        "cv_threshold": {"type": "number", "minimum": 0},
        "fallback_ttl_s": {"type": "number", "minimum": 0},
        "out_of_range_max_share": {"type": "number", "minimum": 0, "maximum": 1},
        "keep_warm_ttl_s": {"type": "number", "minimum": 0},
        "loaded_ttl_s": {"type": "number", "minimum": 0},
        "runtime_warm_s": {"type": "number", "minimum": 0},
    }
