"""Workload generators: determinism, per-kind arrival properties, inputs, schema, CLI."""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalezero.errors import UserError
from scalezero.workload import (
    KINDS,
    TRACE_COLUMNS,
    WORKLOAD_SCHEMA,
    add_cli,
    generate_trace,
    read_trace,
    trace_summary,
    validate_spec,
    write_trace,
)
from scalezero.workload.text import WORDS

POISSON = {"kind": "poisson", "seed": 7, "rate_rps": 4.0, "duration_s": 50.0}
GAMMA = {"kind": "gamma", "seed": 7, "rate_rps": 4.0, "burstiness": 0.5, "duration_s": 50.0}
BURSTY = {
    "kind": "bursty",
    "seed": 7,
    "bursts": 5,
    "burst_duration_s": 10.0,
    "burst_rate_rps": 3.0,
    "idle_gap_s": 40.0,
}

TIME_FORMAT = re.compile(r"^\d+\.\d{6}$")


def write_azure_file(path: Path, rows: list[tuple[str, str, str, dict[int, int]]]) -> Path:
    """A file in the Azure Functions 2019 invocations_per_function format:
    HashOwner,HashApp,HashFunction,Trigger,1..1440 (counts per minute of the day)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["HashOwner", "HashApp", "HashFunction", "Trigger"] + [str(m) for m in range(1, 1441)]
        )
        for owner, app, function, counts in rows:
            writer.writerow(
                [owner, app, function, "http"] + [counts.get(m, 0) for m in range(1, 1441)]
            )
    return path


@pytest.fixture
def azure_file(tmp_path: Path) -> Path:
    return write_azure_file(
        tmp_path / "invocations_per_function_md.anon.d01.csv",
        [
            ("o1", "appA", "fQuiet", {1: 1, 2: 0, 3: 2}),
            ("o1", "appA", "fBusy", {1: 4, 2: 0, 3: 7, 4: 1, 1440: 3}),
            ("o2", "appB", "fLate", {600: 50, 601: 60}),
            ("o2", "appC", "fLate", {600: 1}),
        ],
    )


def azure_spec(path: Path, **overrides: Any) -> dict[str, Any]:
    return {"kind": "azure_functions", "seed": 3, "path": str(path), **overrides}


def trace_bytes(tmp_path: Path, name: str, spec: dict[str, Any]) -> bytes:
    out = tmp_path / f"{name}.csv"
    write_trace(generate_trace(name, spec, base_dir=tmp_path), out)
    return out.read_bytes()


# ---------------------------------------------------------------- determinism and format


def all_kind_specs(tmp_path: Path) -> dict[str, dict[str, Any]]:
    recorded = tmp_path / "recorded.csv"
    recorded.write_text("t_sched_s\n0.5\n1.25\n3.0\n")
    azure = write_azure_file(tmp_path / "az.csv", [("o", "a", "f", {1: 3, 2: 5})])
    llm = tmp_path / "llm.csv"
    llm.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.9799600,4808,10\n"
        "2023-11-16 18:17:04.0319600,31,8\n"
        "2023-11-16 18:17:09.5000000,700,300\n"
    )
    return {
        "poisson": POISSON,
        "gamma": GAMMA,
        "bursty": BURSTY,
        "trace_csv": {"kind": "trace_csv", "seed": 7, "path": "recorded.csv"},
        "azure_functions": {
            "kind": "azure_functions",
            "seed": 7,
            "path": str(azure),
            "time_compression": 60,
        },
        "azure_llm": {"kind": "azure_llm", "seed": 7, "path": "llm.csv"},
    }


def test_every_kind_has_a_determinism_case(tmp_path: Path) -> None:
    assert set(all_kind_specs(tmp_path)) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_same_spec_and_seed_give_identical_bytes(tmp_path: Path, kind: str) -> None:
    spec = all_kind_specs(tmp_path)[kind]
    first = trace_bytes(tmp_path, "one", spec)
    second = trace_bytes(tmp_path, "two", dict(spec))
    assert first == second
    other_seed = trace_bytes(tmp_path, "three", {**spec, "seed": spec["seed"] + 1})
    assert other_seed != first


def test_csv_layout(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    write_trace(generate_trace("p", POISSON), out)
    raw = out.read_bytes()
    assert b"\r" not in raw
    with out.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == TRACE_COLUMNS
    body = rows[1:]
    assert [int(r[0]) for r in body] == list(range(len(body)))
    assert all(TIME_FORMAT.match(r[1]) for r in body)
    times = [float(r[1]) for r in body]
    assert times == sorted(times)


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    df = generate_trace("b", {**BURSTY, "max_tokens": {"min": 2, "max": 9}})
    out = tmp_path / "nested" / "b.csv"
    write_trace(df, out)
    pd.testing.assert_frame_equal(read_trace(out), df)


def test_prompts_with_csv_special_characters_survive(tmp_path: Path) -> None:
    source = tmp_path / "src.csv"
    pd.DataFrame(
        {
            "t_sched_s": [0.0, 1.0, 2.0],
            "prompt": ['say "hi", then\nstop', "NA", "null"],
        }
    ).to_csv(source, index=False)
    df = generate_trace("t", {"kind": "trace_csv", "seed": 0, "path": str(source)})
    out = tmp_path / "t.csv"
    write_trace(df, out)
    assert read_trace(out)["prompt"].tolist() == ['say "hi", then\nstop', "NA", "null"]


def test_streams_are_independent() -> None:
    """Output length and prompt settings must not move the arrival times of a seed."""
    base = generate_trace("b", BURSTY)
    longer = generate_trace(
        "b", {**BURSTY, "prompt_words": 80, "max_tokens": {"min": 1, "max": 500}}
    )
    np.testing.assert_array_equal(base["t_sched_s"], longer["t_sched_s"])
    assert base["prompt"].tolist() != longer["prompt"].tolist()


def test_max_requests_keeps_the_first_requests() -> None:
    full = generate_trace("p", POISSON)
    capped = generate_trace("p", {**POISSON, "max_requests": 10})
    assert len(capped) == 10
    np.testing.assert_array_equal(capped["t_sched_s"], full["t_sched_s"][:10])


# ---------------------------------------------------------------- prompts and lengths


def test_prompts_distinct_with_requested_word_counts() -> None:
    df = generate_trace("p", {**POISSON, "prompt_words": {"min": 3, "max": 6}})
    prompts = df["prompt"].tolist()
    assert len(set(prompts)) == len(prompts)
    counts = {len(p.split()) for p in prompts}
    # ~200 requests over 4 lengths: missing one has probability (3/4)^200.
    assert counts == {3, 4, 5, 6}
    vocabulary = set(WORDS)
    for prompt in prompts:
        assert prompt[0].isupper() and prompt.endswith(".")
        assert {w.strip(".").lower() for w in prompt.split()} <= vocabulary


def test_one_word_prompts_stay_distinct_until_impossible() -> None:
    small = generate_trace("p", {**POISSON, "prompt_words": 1, "max_requests": 50})
    assert small["prompt"].nunique() == 50
    too_many = {
        "kind": "poisson",
        "seed": 1,
        "rate_rps": 100.0,
        "duration_s": 10.0,
        "prompt_words": 1,
    }
    with pytest.raises(UserError, match="prompt_words"):
        generate_trace("tiny", too_many)


def test_max_tokens_constant_and_range() -> None:
    assert set(generate_trace("p", {**POISSON, "max_tokens": 17})["max_tokens"]) == {17}
    drawn = generate_trace("p", {**POISSON, "max_tokens": {"min": 8, "max": 12}})["max_tokens"]
    # ~200 draws over 5 values: each value appears unless a (4/5)^200 event happens.
    assert set(drawn) == {8, 9, 10, 11, 12}


# ---------------------------------------------------------------- arrival processes


def test_poisson_arrivals_in_window_with_expected_count() -> None:
    rate, duration = 20.0, 500.0
    t = generate_trace(
        "p", {"kind": "poisson", "seed": 11, "rate_rps": rate, "duration_s": duration}
    )["t_sched_s"].to_numpy()
    assert t.min() >= 0.0 and t.max() < duration
    expected = rate * duration
    # The count is Poisson(rate*duration): 5 standard deviations is sqrt(expected)*5.
    assert abs(t.size - expected) < 5 * math.sqrt(expected)
    # Given the count, arrivals are uniform: the first half holds Binomial(n, 1/2).
    first_half = int((t < duration / 2).sum())
    assert abs(first_half - t.size / 2) < 5 * math.sqrt(t.size / 4)


def test_gamma_with_burstiness_one_has_mean_gap_one_over_rate() -> None:
    rate = 10.0
    df = generate_trace(
        "g", {"kind": "gamma", "seed": 5, "rate_rps": rate, "burstiness": 1.0, "duration_s": 2000.0}
    )
    gaps = np.diff(df["t_sched_s"].to_numpy())
    # Exponential gaps: sd = mean = 1/rate, so by the CLT the sample mean of N gaps has
    # standard error (1/rate)/sqrt(N); 5 of them bound a seeded check comfortably.
    assert abs(gaps.mean() - 1 / rate) < 5 * (1 / rate) / math.sqrt(gaps.size)
    assert abs(trace_summary(df)["gap_cv2"] - 1.0) < 0.1


def test_gamma_burstiness_sets_the_gap_cv2() -> None:
    rate, shape = 10.0, 0.25
    df = generate_trace(
        "g",
        {"kind": "gamma", "seed": 5, "rate_rps": rate, "burstiness": shape, "duration_s": 2000.0},
    )
    gaps = np.diff(df["t_sched_s"].to_numpy())
    n = gaps.size
    cv2 = trace_summary(df)["gap_cv2"]
    # Gamma(k): sd of the mean gap is sqrt(1/k)/rate/sqrt(n). The sample variance has
    # relative sd sqrt((2 + 6/k)/n) (excess kurtosis 6/k); CV^2 = var/mean^2 adds at most
    # twice the mean's relative sd. Allow 5 sd of each.
    assert abs(gaps.mean() - 1 / rate) < 5 * math.sqrt(1 / shape) / rate / math.sqrt(n)
    rel_sd = math.sqrt((2 + 6 / shape) / n) + 2 * math.sqrt(1 / (shape * n))
    assert abs(cv2 - 1 / shape) < 5 * rel_sd * (1 / shape)
    assert cv2 > 2.0  # far from Poisson's 1


def burst_windows(spec: dict[str, Any]) -> list[tuple[float, float]]:
    first = spec.get("first_burst_at_s", 0.0)
    period = spec["burst_duration_s"] + spec["idle_gap_s"]
    return [
        (first + k * period, first + k * period + spec["burst_duration_s"])
        for k in range(spec["bursts"])
    ]


def check_bursty(spec: dict[str, Any]) -> pd.DataFrame:
    df = generate_trace("bursty", spec)
    t = df["t_sched_s"].to_numpy()
    windows = burst_windows(spec)
    burst_of = np.full(t.size, -1)
    for k, (start, end) in enumerate(windows):
        inside = (t >= start - 1e-9) & (t < end)
        burst_of[inside] = k
    assert (burst_of >= 0).all(), "every arrival lies inside a burst window"
    assert set(burst_of) == set(range(spec["bursts"])), "no burst is empty"
    last_of = [t[burst_of == k].max() for k in range(spec["bursts"])]
    first_of = [t[burst_of == k].min() for k in range(spec["bursts"])]
    for k in range(spec["bursts"] - 1):
        assert first_of[k + 1] - last_of[k] >= spec["idle_gap_s"] - 1e-9
    return df


def test_bursty_structure() -> None:
    df = check_bursty({**BURSTY, "first_burst_at_s": 12.5})
    summary = trace_summary(df, gap_threshold_s=BURSTY["idle_gap_s"])
    assert summary["n_bursts"] == BURSTY["bursts"]
    assert summary["first_s"] >= 12.5


def test_bursty_empty_bursts_get_one_request_at_their_start() -> None:
    spec = {**BURSTY, "burst_rate_rps": 1e-6, "first_burst_at_s": 3.0}
    df = check_bursty(spec)
    np.testing.assert_allclose(df["t_sched_s"], [s for s, _ in burst_windows(spec)])


def test_bursty_separates_keep_warm_from_naive() -> None:
    """A TTL between the longest intra-burst gap and idle_gap_s sees one idle period per
    burst boundary; a TTL of zero (naive) sees every gap as idle."""
    df = generate_trace("b", BURSTY)
    within = trace_summary(df, BURSTY["idle_gap_s"])["max_gap_within_bursts_s"]
    assert within < BURSTY["burst_duration_s"]
    ttl = (within + BURSTY["idle_gap_s"]) / 2
    assert trace_summary(df, ttl)["n_long_gaps"] == BURSTY["bursts"] - 1
    assert trace_summary(df, 0.0)["n_long_gaps"] == int((np.diff(df["t_sched_s"]) > 0).sum())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    bursts=st.integers(1, 6),
    duration=st.floats(0.001, 20.0),
    rate=st.floats(0.01, 20.0),
    gap=st.floats(0.0, 100.0),
    first=st.floats(0.0, 50.0),
)
def test_bursty_structure_holds_for_any_parameters(
    seed: int, bursts: int, duration: float, rate: float, gap: float, first: float
) -> None:
    # Configured times are used at microsecond resolution, as the docs state.
    duration, gap, first = (round(x, 6) for x in (duration, gap, first))
    check_bursty(
        {
            "kind": "bursty",
            "seed": seed,
            "bursts": bursts,
            "burst_duration_s": duration,
            "burst_rate_rps": rate,
            "idle_gap_s": gap,
            "first_burst_at_s": first,
        }
    )


# ---------------------------------------------------------------- trace_csv


def test_trace_csv_time_scale_and_sorting(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame(
        {
            "timestamp_s": [30.0, 10.0, 20.0, 0.0],
            "max_tokens": [3, None, 5, 6],
            "prompt": ["third", "first", None, "zero"],
            "extra": ["x", "y", "z", "w"],
        }
    ).to_csv(source, index=False)
    spec = {
        "kind": "trace_csv",
        "seed": 1,
        "path": "in.csv",
        "time_scale": 10,
        "max_tokens": 99,
        "start_offset_s": 10,
    }
    df = generate_trace("rec", spec, base_dir=tmp_path)
    assert list(df.columns) == list(TRACE_COLUMNS)
    # Rows before the offset are dropped, the rest shifted to it and compressed 10x.
    assert df["t_sched_s"].tolist() == [0.0, 1.0, 2.0]
    assert df["max_tokens"].tolist() == [99, 5, 3]
    assert df["prompt"][0] == "first" and df["prompt"][2] == "third"
    assert len(df["prompt"][1].split()) == 32  # generated for the empty cell


def test_trace_csv_start_first_rebases(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("t_sched_s\n1700000000.5\n1700000002.0\n1700000001.0\n")
    spec = {"kind": "trace_csv", "seed": 1, "path": str(source), "start_offset_s": "first"}
    assert generate_trace("rec", spec)["t_sched_s"].tolist() == [0.0, 0.5, 1.5]


def test_trace_csv_replays_a_written_trace_exactly(tmp_path: Path) -> None:
    original = tmp_path / "orig.csv"
    write_trace(generate_trace("b", BURSTY), original)
    copy = tmp_path / "copy.csv"
    write_trace(generate_trace("c", {"kind": "trace_csv", "seed": 0, "path": str(original)}), copy)
    assert copy.read_bytes() == original.read_bytes()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("when\n1\n", "t_sched_s or timestamp_s"),
        ("t_sched_s\n1\nsoon\n", "row 3"),
        ("t_sched_s\n-1\n2\n", "negative"),
        ("t_sched_s,max_tokens\n1,0\n", "max_tokens"),
        ("t_sched_s,max_tokens\n1,2.5\n", "max_tokens"),
    ],
)
def test_trace_csv_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(content)
    with pytest.raises(UserError, match=message):
        generate_trace("rec", {"kind": "trace_csv", "seed": 0, "path": str(source)})


def test_trace_csv_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=re.escape("nope.csv")):
        generate_trace(
            "rec", {"kind": "trace_csv", "seed": 0, "path": "nope.csv"}, base_dir=tmp_path
        )


# ---------------------------------------------------------------- azure_functions


def minute_histogram(t: np.ndarray, minute_s: float, minutes: int) -> list[int]:
    return np.bincount(np.floor(t / minute_s + 1e-9).astype(int), minlength=minutes).tolist()


@pytest.mark.parametrize("within", ["uniform", "even"])
def test_azure_counts_kept_per_compressed_minute(azure_file: Path, within: str) -> None:
    spec = azure_spec(
        azure_file,
        function="fBusy",
        start_minute=1,
        minutes=4,
        time_compression=60,
        arrivals_within_minute=within,
    )
    df = generate_trace("az", spec)
    t = df["t_sched_s"].to_numpy()
    # Minutes 1..4 hold 4, 0, 7, 1 invocations; 60x compression makes each one second.
    assert len(df) == 12
    assert minute_histogram(t, 1.0, 4) == [4, 0, 7, 1]
    assert t.max() < 4.0
    if within == "even":
        assert t[:4].tolist() == [0.0, 0.25, 0.5, 0.75]
        assert t[11] == 3.0


def test_azure_default_minutes_run_to_end_of_day(azure_file: Path) -> None:
    spec = azure_spec(azure_file, function="fBusy", start_minute=1000, time_compression=6)
    t = generate_trace("az", spec)["t_sched_s"].to_numpy()
    # Only minute 1440 (the 441st minute from 1000) has invocations, 10 s per minute.
    assert t.size == 3
    assert ((t >= 440 * 10.0) & (t < 441 * 10.0)).all()


def test_azure_function_selection(azure_file: Path) -> None:
    window = {"start_minute": 1, "minutes": 3}
    busiest = generate_trace("az", azure_spec(azure_file, **window))
    assert busiest.attrs["workload"]["function"] == "fBusy"
    assert len(busiest) == 11
    by_index = generate_trace("az", azure_spec(azure_file, function="index:0", **window))
    assert by_index.attrs["workload"]["function"] == "fQuiet" and len(by_index) == 3
    later = {"start_minute": 600, "minutes": 2}
    # busiest is judged inside the chosen minutes.
    assert generate_trace("az", azure_spec(azure_file, **later)).attrs["workload"]["app"] == "appB"
    with pytest.raises(UserError, match="set 'app'"):
        generate_trace("az", azure_spec(azure_file, function="fLate", **later))
    picked = generate_trace("az", azure_spec(azure_file, function="fLate", app="appC", **later))
    assert len(picked) == 1


def test_azure_poisson_matches_counts_in_expectation(tmp_path: Path) -> None:
    counts = {m: 400 for m in range(1, 31)}
    path = write_azure_file(tmp_path / "az.csv", [("o", "a", "f", counts)])
    df = generate_trace(
        "az", azure_spec(path, minutes=30, time_compression=60, arrivals_within_minute="poisson")
    )
    total = sum(counts.values())
    assert len(df) != total  # counts are drawn, not copied (P(equal) ~ 0.3 %, seeded)
    assert abs(len(df) - total) < 5 * math.sqrt(total)


def test_azure_max_requests_is_a_prefix(azure_file: Path) -> None:
    spec = azure_spec(azure_file, function="fBusy", minutes=4, time_compression=60)
    full = generate_trace("az", spec)
    capped = generate_trace("az", {**spec, "max_requests": 5})
    np.testing.assert_array_equal(capped["t_sched_s"], full["t_sched_s"][:5])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"function": "missing"}, "no HashFunction 'missing'"),
        ({"function": "index:9"}, "out of range"),
        ({"function": "index:x"}, "bad index"),
        ({"app": "nope"}, "HashApp 'nope'"),
        ({"start_minute": 1400, "minutes": 100}, "past minute 1440"),
        ({"start_minute": 2, "minutes": 1, "function": "fQuiet"}, "no requests"),
    ],
)
def test_azure_errors(azure_file: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)) as info:
        generate_trace("az-w", azure_spec(azure_file, **overrides))
    assert "'az-w'" in str(info.value)


def test_azure_rejects_other_csv(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("t_sched_s\n1\n")
    with pytest.raises(UserError, match="not an Azure Functions invocation file"):
        generate_trace("az", azure_spec(other))


# ---------------------------------------------------------------- validation and schema


BAD_SPECS: list[tuple[dict[str, Any], str]] = [
    ({"seed": 1, "rate_rps": 1, "duration_s": 1}, "kind"),
    ({"kind": "lognormal", "seed": 1}, "kind"),
    ({"kind": "poisson", "rate_rps": 1, "duration_s": 1}, "seed"),
    ({**POISSON, "rate_rps": -1}, "rate_rps"),
    ({**POISSON, "rate_rps": 0}, "rate_rps"),
    ({**POISSON, "rate_rps": True}, "rate_rps"),
    ({**POISSON, "rate_rps": "1e3"}, "rate_rps"),
    ({**POISSON, "duration_s": float("inf")}, "duration_s"),
    ({"kind": "poisson", "seed": 1, "duration_s": 1}, "rate_rps"),
    ({**POISSON, "rate": 1}, "rate"),
    ({**POISSON, "seed": -1}, "seed"),
    ({**POISSON, "seed": 1.5}, "seed"),
    ({**POISSON, "max_tokens": 0}, "max_tokens"),
    ({**POISSON, "max_tokens": {"min": 9, "max": 3}}, "max_tokens"),
    ({**POISSON, "max_tokens": {"min": 3}}, "max_tokens"),
    ({**POISSON, "prompt_words": {"min": 1, "max": 2, "mean": 1}}, "prompt_words"),
    ({**POISSON, "max_requests": 0}, "max_requests"),
    ({**GAMMA, "burstiness": 0}, "burstiness"),
    ({**BURSTY, "bursts": 0}, "bursts"),
    ({**BURSTY, "idle_gap_s": -1}, "idle_gap_s"),
    ({**BURSTY, "first_burst_at_s": -1}, "first_burst_at_s"),
    ({"kind": "trace_csv", "seed": 1}, "path"),
    ({"kind": "trace_csv", "seed": 1, "path": "x.csv", "time_scale": 0}, "time_scale"),
    ({"kind": "trace_csv", "seed": 1, "path": "x.csv", "start_offset_s": "last"}, "start_offset_s"),
    ({"kind": "azure_functions", "seed": 1, "path": "x.csv", "start_minute": 0}, "start_minute"),
    ({"kind": "azure_functions", "seed": 1, "path": "x.csv", "minutes": 1441}, "minutes"),
    (
        {"kind": "azure_functions", "seed": 1, "path": "x.csv", "arrivals_within_minute": "burst"},
        "arrivals_within_minute",
    ),
]

GOOD_SPECS: list[dict[str, Any]] = [
    POISSON,
    GAMMA,
    BURSTY,
    {
        **BURSTY,
        "first_burst_at_s": 5,
        "max_requests": 3,
        "description": "x",
        "max_tokens": {"min": 1, "max": 2},
        "prompt_words": 4,
    },
    {"kind": "trace_csv", "seed": 0, "path": "x.csv", "start_offset_s": "first"},
    {
        "kind": "azure_functions",
        "seed": 0,
        "path": "x.csv",
        "function": "index:2",
        "start_minute": 60,
        "minutes": 120,
        "time_compression": 60,
        "arrivals_within_minute": "even",
    },
]


@pytest.mark.parametrize(("spec", "key"), BAD_SPECS)
def test_invalid_specs_name_workload_and_key(spec: dict[str, Any], key: str) -> None:
    with pytest.raises(UserError) as info:
        generate_trace("wl-name", spec)
    assert "'wl-name'" in str(info.value)
    assert f"'{key}" in str(info.value)


@pytest.mark.parametrize("spec", GOOD_SPECS)
def test_valid_specs_pass(spec: dict[str, Any]) -> None:
    validate_spec("ok", spec)


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(WORKLOAD_SCHEMA)


def test_schema_agrees_with_runtime_validation() -> None:
    validator = jsonschema.Draft202012Validator(WORKLOAD_SCHEMA)
    for spec in GOOD_SPECS:
        assert not list(validator.iter_errors(spec)), spec
    # JSON schema cannot say "min <= max" or "finite" (JSON has no infinity anyway).
    runtime_only = [
        {**POISSON, "max_tokens": {"min": 9, "max": 3}},
        {**POISSON, "duration_s": float("inf")},
    ]
    for spec, _ in BAD_SPECS:
        if spec not in runtime_only:
            assert list(validator.iter_errors(spec)), spec


# ---------------------------------------------------------------- trace_summary


def test_trace_summary_on_known_gaps() -> None:
    df = pd.DataFrame(
        {
            "request_id": range(5),
            "t_sched_s": [0.0, 1.0, 2.0, 10.0, 11.0],
            "max_tokens": [4, 4, 8, 8, 6],
            "prompt": ["a b", "a b c", "a", "a b", "a b"],
        }
    )
    s = trace_summary(df, gap_threshold_s=5.0)
    # gaps 1, 1, 8, 1: mean 2.75, population variance 9.1875.
    assert s["n_requests"] == 5 and s["span_s"] == 11.0
    assert s["mean_rate_rps"] == pytest.approx(4 / 11)
    assert s["max_gap_s"] == 8.0 and s["median_gap_s"] == 1.0
    assert s["gap_cv2"] == pytest.approx(9.1875 / 2.75**2)
    assert s["n_long_gaps"] == 1 and s["n_bursts"] == 2 and s["long_gaps_s"] == [8.0]
    assert s["max_gap_within_bursts_s"] == 1.0
    assert (s["max_tokens_min"], s["max_tokens_mean"], s["max_tokens_max"]) == (4, 6.0, 8)
    assert s["prompt_words_mean"] == 2.0
    # Default threshold 10 x median gap = 10 s: the 8 s gap is not a burst boundary.
    assert trace_summary(df)["n_bursts"] == 1
    json.dumps(s)  # plain types only


# ---------------------------------------------------------------- CLI


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scalezero")
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["workload", *argv])
    return args.func(args)


def test_cli_writes_trace_from_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"workloads": {"bursty": BURSTY, "p": POISSON}}))
    out = tmp_path / "traces" / "bursty.csv"
    assert run_cli(["--config", str(config), "--name", "bursty", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    df = generate_trace("bursty", BURSTY)
    assert line.startswith(f"workload bursty: {len(df)} requests over ")
    assert out.read_bytes() == trace_bytes(tmp_path, "direct", BURSTY)


def test_cli_spec_json_and_describe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "rec.csv"
    source.write_text("t_sched_s\n0\n1\n30\n")
    out = tmp_path / "t.csv"
    spec = json.dumps({"kind": "trace_csv", "seed": 0, "path": "rec.csv"})
    assert run_cli(["--spec-json", spec, "--base-dir", str(tmp_path), "--out", str(out)]) == 0
    assert "3 requests over 30.000 s" in capsys.readouterr().out
    assert run_cli(["--describe", str(out), "--gap-threshold-s", "5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_requests"] == 3 and summary["n_bursts"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--name", "x", "--out", "o.csv"], "--config"),
        (["--spec-json", "{", "--out", "o.csv"], "not valid JSON"),
        (["--spec-json", json.dumps(POISSON)], "--out"),
        (["--describe", "missing.csv"], "missing.csv"),
    ],
)
def test_cli_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        run_cli(argv)


def test_cli_unknown_workload_lists_defined(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"workloads": {"p": POISSON}}))
    with pytest.raises(UserError, match=r"no workload 'q'.*\['p'\]"):
        run_cli(["--config", str(config), "--name", "q", "--out", str(tmp_path / "o.csv")])
