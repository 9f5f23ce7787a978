"""Workloads with a model mix: the optional model column, both forms of ``models:``,
reproducibility, and old traces without the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scalezero.errors import UserError
from scalezero.measure.replay import completion_payload, requests_from_trace
from scalezero.workload import (
    TRACE_COLUMNS,
    WORKLOAD_SCHEMA,
    generate_trace,
    read_trace,
    write_trace,
)

BASE = {"kind": "poisson", "rate_rps": 5.0, "duration_s": 200.0, "seed": 7, "max_tokens": 4,
        "prompt_words": 3}
ZIPF = {**BASE, "models": {"popularity": "zipf", "s": 1.1, "models": ["a", "b", "c"]}}


def test_zipf_mix_keeps_the_arrivals_and_ranks_the_models() -> None:
    plain = generate_trace("w", BASE)
    mixed = generate_trace("w", ZIPF)
    assert list(mixed.columns) == [*TRACE_COLUMNS, "model"]
    # The model draw has its own stream: arrivals, lengths and prompts are unchanged.
    for column in TRACE_COLUMNS:
        assert mixed[column].tolist() == plain[column].tolist()
    counts = mixed["model"].value_counts()
    assert counts["a"] > counts["b"] > counts["c"] > 0
    weights = np.arange(1, 4, dtype=float) ** -1.1
    expected = weights / weights.sum()
    assert counts["a"] / len(mixed) == pytest.approx(expected[0], abs=0.05)
    assert mixed.attrs["workload"]["popularity"] == "zipf"


def test_per_model_processes_merge_in_time_order() -> None:
    spec = {**BASE, "models": {"a": {"rate_rps": 2.0}, "b": {"rate_rps": 0.2, "seed": 3}}}
    df = generate_trace("w", spec)
    assert df["t_sched_s"].is_monotonic_increasing
    assert df["request_id"].tolist() == list(range(len(df)))
    alone_a = generate_trace("w.a", {**BASE, "rate_rps": 2.0, "seed": 7})
    alone_b = generate_trace("w.b", {**BASE, "rate_rps": 0.2, "seed": 3})
    assert sorted(df.loc[df["model"] == "a", "t_sched_s"]) == alone_a["t_sched_s"].tolist()
    assert sorted(df.loc[df["model"] == "b", "t_sched_s"]) == alone_b["t_sched_s"].tolist()
    assert set(df.attrs["workload"]["models"]) == {"a", "b"}


@pytest.mark.parametrize("spec", [ZIPF, {**BASE, "models": {"x": {}, "y": {"rate_rps": 1}}}])
def test_a_mix_is_byte_for_byte_reproducible(tmp_path: Path, spec: dict[str, object]) -> None:
    first, second = tmp_path / "1.csv", tmp_path / "2.csv"
    write_trace(generate_trace("w", spec), first)
    write_trace(generate_trace("w", spec), second)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_text().splitlines()[0] == "request_id,t_sched_s,max_tokens,prompt,model"
    back = read_trace(first)
    assert list(back.columns) == [*TRACE_COLUMNS, "model"]
    again = tmp_path / "3.csv"
    write_trace(back, again)
    assert again.read_bytes() == first.read_bytes()


def test_old_traces_replay_to_the_single_deployment(tmp_path: Path) -> None:
    path = tmp_path / "old.csv"
    write_trace(generate_trace("w", BASE), path)
    assert path.read_text().splitlines()[0] == ",".join(TRACE_COLUMNS)
    items = requests_from_trace(read_trace(path))
    assert all(item.model is None for item in items)
    assert completion_payload(items[0], "only", [])["model"] == "only"


def test_a_mixed_trace_sends_each_requests_model(tmp_path: Path) -> None:
    path = tmp_path / "mix.csv"
    write_trace(generate_trace("w", ZIPF), path)
    items = requests_from_trace(read_trace(path))
    sent = {completion_payload(item, "default", [])["model"] for item in items}
    assert sent == {"a", "b", "c"}


@pytest.mark.parametrize("models, message", [
    ({"popularity": "pareto", "models": ["a"]}, "popularity must be one of"),
    ({"popularity": "zipf", "models": ["a", "a"]}, "distinct names"),
    ({"popularity": "zipf", "s": -1, "models": ["a"]}, "s must be a number"),
    ({"popularity": "zipf", "models": ["a"], "extra": 1}, "not a popularity setting"),
    ({}, "non-empty mapping"),
    ({"a": 3}, "models.a must be a mapping"),
])
def test_bad_mixes_are_user_errors(models: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        generate_trace("w", {**BASE, "models": models})


def test_the_schema_admits_the_models_key() -> None:
    import jsonschema

    jsonschema.validate(ZIPF, WORKLOAD_SCHEMA)
