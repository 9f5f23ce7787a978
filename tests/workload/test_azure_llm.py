"""The azure_llm workload kind: reader faults, window, thinning, token mapping, record."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from scalezero.errors import UserError
from scalezero.workload import (
    WORKLOAD_SCHEMA,
    add_cli,
    generate_trace,
    history_summary,
    read_history,
    trace_record,
    validate_spec,
    write_history,
    write_trace,
)

ROOT = Path(__file__).resolve().parents[2]
CARRIED = ROOT / "data" / "azure-llm-inference-2023" / "AzureLLMInferenceTrace_code.csv"
CARRIED_SHA256 = "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


def stamp(offset_s: float) -> str:
    """A TIMESTAMP offset_s after 2023-11-16 18:00:00, with the trace's 7 digits."""
    whole = int(offset_s)
    tenths_of_us = round((offset_s - whole) * 10_000_000)
    minute, second = divmod(whole, 60)
    return f"2023-11-16 18:{minute:02d}:{second:02d}.{tenths_of_us:07d}"


def write_llm(path: Path, rows: list[tuple[float, int, int]]) -> Path:
    lines = [HEADER, *(f"{stamp(t)},{c},{g}" for t, c, g in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def spec(path: Path, **overrides: Any) -> dict[str, Any]:
    return {"kind": "azure_llm", "seed": 11, "path": str(path), **overrides}


def words(prompt: str) -> int:
    return len(prompt.split())


@pytest.fixture
def steady(tmp_path: Path) -> Path:
    """2,000 requests, one every 0.5 s (2 req/s over 1,000 s)."""
    return write_llm(tmp_path / "steady.csv", [(0.5 * i, 10, 5) for i in range(2000)])


# ---------------------------------------------------------------- reader faults


OK = "2023-11-16 18:00:00.0000000,5,5\n"  # a valid first data row


@pytest.mark.parametrize(
    ("body", "location"),
    [
        # an unparsable TIMESTAMP
        (OK + "2023-11-16 18:00:xx,5,5\n", "line 3 (data row 2), column 'TIMESTAMP'"),
        (OK + "2023-13-16 18:00:01.0,5,5\n", "line 3 (data row 2), column 'TIMESTAMP'"),
        # non-integer and negative token counts
        ("2023-11-16 18:00:00.0,5.5,5\n", "line 2 (data row 1), column 'ContextTokens'"),
        ("2023-11-16 18:00:00.0,abc,5\n", "line 2 (data row 1), column 'ContextTokens'"),
        (OK + "2023-11-16 18:00:01.0,5,-3\n", "line 3 (data row 2), column 'GeneratedTokens'"),
        ("2023-11-16 18:00:00.0,5,\n", "line 2 (data row 1), column 'GeneratedTokens'"),
        # rows out of time order
        (OK + "\n2023-11-16 17:59:59.9,5,5\n", "line 4 (data row 2), column 'TIMESTAMP'"),
        # a short row
        ("2023-11-16 18:00:00.0,5\n", "line 2 (data row 1), column 'GeneratedTokens'"),
    ],
)
def test_faults_name_file_row_and_column(tmp_path: Path, body: str, location: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"{HEADER}\n{body}")
    with pytest.raises(UserError, match=re.escape(location)) as caught:
        generate_trace("w", spec(path))
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("TIMESTAMP,ContextTokens", "missing ['GeneratedTokens']"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens,Extra", "extra ['Extra']"),
        ("timestamp,ContextTokens,GeneratedTokens", "missing ['TIMESTAMP']"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens,TIMESTAMP", "twice"),
    ],
)
def test_header_needs_exactly_the_three_columns(tmp_path: Path, header: str, named: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"{header}\n2023-11-16 18:00:00.0,5,5\n")
    with pytest.raises(UserError, match=re.escape(named)) as caught:
        generate_trace("w", spec(path))
    assert "line 1 (header)" in str(caught.value) and str(path) in str(caught.value)


def test_empty_window_names_the_file_and_column(steady: Path) -> None:
    with pytest.raises(UserError, match=r"column 'TIMESTAMP': no request in the window") as caught:
        generate_trace("w", spec(steady, window_start_s=5000.0))
    assert str(steady) in str(caught.value)


def test_file_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(HEADER + "\n")
    with pytest.raises(UserError, match="no data rows"):
        generate_trace("w", spec(path))


def test_columns_may_come_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "order.csv"
    path.write_text("GeneratedTokens,TIMESTAMP,ContextTokens\n7,2023-11-16 18:00:00.0,3\n")
    df = generate_trace("w", spec(path))
    assert df["max_tokens"].tolist() == [7] and words(df["prompt"].iloc[0]) == 3


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"keep_probability": 0.5, "target_rate_rps": 1.0}, "cannot be set together"),
        ({"max_tokens": 64}, "is not used by kind 'azure_llm'"),
        ({"prompt_words": 32}, "is not used by kind 'azure_llm'"),
        ({"keep_probability": 0.0}, "keep_probability"),
        ({"keep_probability": 1.5}, "keep_probability"),
        ({"token_mapping": "squash"}, "token_mapping"),
        ({"window_s": 0}, "window_s"),
        ({"max_prompt_tokens": 0}, "max_prompt_tokens"),
        ({"training_s": -1}, "training_s"),
        ({"training_s": "600"}, "training_s"),
    ],
)
def test_bad_settings_are_refused_at_runtime_and_by_the_schema(
    steady: Path, overrides: dict[str, Any], message: str
) -> None:
    bad = spec(steady, **overrides)
    with pytest.raises(UserError, match=message):
        validate_spec("w", bad)
    assert list(jsonschema.Draft202012Validator(WORKLOAD_SCHEMA).iter_errors(bad))


def test_defaults(steady: Path) -> None:
    resolved = validate_spec("w", spec(steady))
    assert resolved["window_start_s"] == 0.0 and resolved["window_s"] is None
    assert resolved["time_scale"] == 1.0 and resolved["token_mapping"] == "clamp"
    assert (resolved["max_prompt_tokens"], resolved["max_output_tokens"]) == (256, 128)
    assert "max_tokens" not in resolved and "prompt_words" not in resolved
    assert resolved["training_s"] == 0.0
    assert not list(jsonschema.Draft202012Validator(WORKLOAD_SCHEMA).iter_errors(spec(steady)))


# ---------------------------------------------------------------- window and times


def test_window_includes_its_start_and_excludes_its_end(steady: Path) -> None:
    df = generate_trace("w", spec(steady, window_start_s=10.0, window_s=5.0))
    # Requests at 10.0, 10.5, ..., 14.5 s; the one at 15.0 s is the window's end.
    assert len(df) == 10
    assert df["t_sched_s"].tolist() == pytest.approx([0.5 * i for i in range(10)])
    assert df.attrs["workload"]["rows_in_window"] == 10


def test_first_request_keeps_its_offset_in_the_window(steady: Path) -> None:
    df = generate_trace("w", spec(steady, window_start_s=10.2, window_s=2.0))
    assert df["t_sched_s"].iloc[0] == pytest.approx(0.3)


def test_times_count_from_the_files_first_request(tmp_path: Path) -> None:
    path = write_llm(tmp_path / "late.csv", [(100.0, 5, 5), (101.25, 5, 5), (103.0, 5, 5)])
    df = generate_trace("w", spec(path))
    assert df["t_sched_s"].tolist() == [0.0, 1.25, 3.0]
    half = generate_trace("w", spec(path, time_scale=2.0))
    assert half["t_sched_s"].tolist() == [0.0, 0.625, 1.5]


def test_sub_microsecond_digits_are_truncated(tmp_path: Path) -> None:
    path = tmp_path / "fine.csv"
    path.write_text(
        f"{HEADER}\n2023-11-16 18:17:03.9799600,5,5\n2023-11-16 18:17:03.9799639,5,5\n"
        "2023-11-16 18:17:05,5,5\n"
    )
    assert generate_trace("w", spec(path))["t_sched_s"].tolist() == [0.0, 0.000003, 1.02004]


def test_max_requests_keeps_the_first_kept(steady: Path) -> None:
    full = generate_trace("w", spec(steady, keep_probability=0.3))
    cut = generate_trace("w", spec(steady, keep_probability=0.3, max_requests=7))
    assert cut["t_sched_s"].tolist() == full["t_sched_s"].iloc[:7].tolist()
    assert cut.attrs["workload"]["requests"] == 7
    assert cut.attrs["workload"]["kept_rows"] == len(full)


# ---------------------------------------------------------------- thinning


def test_thinning_is_seeded(steady: Path) -> None:
    one = generate_trace("w", spec(steady, keep_probability=0.2))
    again = generate_trace("w", spec(steady, keep_probability=0.2))
    other = generate_trace("w", spec(steady, keep_probability=0.2, seed=12))
    assert one["t_sched_s"].tolist() == again["t_sched_s"].tolist()
    assert one["prompt"].tolist() == again["prompt"].tolist()
    assert one["t_sched_s"].tolist() != other["t_sched_s"].tolist()
    # About p of the rows survive (binomial sd = sqrt(2000 * 0.2 * 0.8) ~ 18).
    assert abs(len(one) - 400) < 5 * 18


def test_probability_one_keeps_every_request(steady: Path) -> None:
    for overrides in ({}, {"keep_probability": 1.0}, {"target_rate_rps": 50.0}):
        df = generate_trace("w", spec(steady, **overrides))
        assert len(df) == 2000
        assert df.attrs["workload"]["keep_probability"] == 1.0


def test_target_rate_gives_about_the_target(steady: Path) -> None:
    df = generate_trace("w", spec(steady, target_rate_rps=0.4))
    record = df.attrs["workload"]
    # The file's rate over the window (from its start to the last request) is ~2 req/s.
    assert record["window_rate_rps"] == pytest.approx(2000 / 999.5)
    assert record["keep_probability"] == pytest.approx(0.4 / record["window_rate_rps"])
    # Expected 400 requests, binomial sd ~ 18.
    assert abs(len(df) - 400) < 5 * 18


def test_target_rate_is_the_replayed_rate(steady: Path) -> None:
    # Ten times compressed: the window replays at ~20 req/s, so 0.4 req/s keeps ~2 %.
    df = generate_trace("w", spec(steady, target_rate_rps=0.4, time_scale=10.0))
    assert df.attrs["workload"]["keep_probability"] == pytest.approx(0.4 / (2000 / 99.95))


def test_thinning_everything_away_is_an_error(tmp_path: Path) -> None:
    path = write_llm(tmp_path / "one.csv", [(0.0, 5, 5)])
    with pytest.raises(UserError, match="kept none"):
        # Seeds whose single draw exceeds 1e-6: effectively all of them.
        generate_trace("w", spec(path, keep_probability=1e-6))


# ---------------------------------------------------------------- token mapping


@pytest.fixture
def lengths(tmp_path: Path) -> Path:
    return write_llm(
        tmp_path / "lengths.csv",
        [(0.0, 3, 1), (1.0, 1000, 40), (2.0, 500, 400), (3.0, 0, 0), (4.0, 256, 128)],
    )


def test_clamp_mapping(lengths: Path) -> None:
    df = generate_trace("w", spec(lengths))
    assert [words(p) for p in df["prompt"]] == [3, 256, 256, 1, 256]
    assert df["max_tokens"].tolist() == [1, 40, 128, 1, 128]
    record = df.attrs["workload"]
    assert (record["prompt_clamped"], record["output_clamped"]) == (2, 1)
    assert (record["prompt_raised_to_1"], record["output_raised_to_1"]) == (1, 1)
    assert record["prompt_scale"] is None and record["output_scale"] is None


def test_scale_mapping(lengths: Path) -> None:
    df = generate_trace(
        "w", spec(lengths, token_mapping="scale", max_prompt_tokens=100, max_output_tokens=40)
    )
    # Factors 100 / 1000 and 40 / 400: the window's maxima land on the limits.
    assert [words(p) for p in df["prompt"]] == [1, 100, 50, 1, 26]
    assert df["max_tokens"].tolist() == [1, 4, 40, 1, 13]
    record = df.attrs["workload"]
    assert record["prompt_scale"] == pytest.approx(0.1)
    assert record["output_scale"] == pytest.approx(0.1)
    assert (record["prompt_raised_to_1"], record["output_raised_to_1"]) == (2, 2)
    assert record["prompt_clamped"] is None


def test_scale_uses_the_window_maximum_not_the_files(lengths: Path) -> None:
    df = generate_trace(
        "w", spec(lengths, token_mapping="scale", window_start_s=2.0, max_prompt_tokens=100)
    )
    assert [words(p) for p in df["prompt"]] == [100, 1, 51]
    assert df.attrs["workload"]["prompt_scale"] == pytest.approx(100 / 500)


# ---------------------------------------------------------------- the record


def test_record_of_what_was_replayed(steady: Path) -> None:
    df = generate_trace(
        "w", spec(steady, window_start_s=100.0, window_s=200.0, keep_probability=0.5)
    )
    record = df.attrs["workload"]
    assert record["kind"] == "azure_llm" and record["name"] == "w"
    assert record["path"] == str(steady)
    assert record["sha256"] == hashlib.sha256(steady.read_bytes()).hexdigest()
    assert record["first_timestamp"] == "2023-11-16 18:00:00.0000000"
    assert (record["rows_in_file"], record["rows_in_window"]) == (2000, 400)
    assert (record["window_start_s"], record["window_s"], record["window_length_s"]) == (
        100.0,
        200.0,
        200.0,
    )
    assert record["keep_probability"] == 0.5 and record["target_rate_rps"] is None
    assert record["kept_rows"] == record["requests"] == len(df)
    assert record["time_scale"] == 1.0 and record["token_mapping"] == "clamp"
    assert (record["max_prompt_tokens"], record["max_output_tokens"]) == (256, 128)
    assert record["duplicate_prompts"] == 0
    json.dumps(record)  # plain types only


def test_cli_prints_the_record(
    steady: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="scalezero")
    add_cli(parser.add_subparsers(dest="command"))
    entry = json.dumps(spec(steady, keep_probability=0.5))
    args = parser.parse_args(["workload", "--spec-json", entry, "--out", str(tmp_path / "t.csv")])
    assert args.func(args) == 0
    first, second = capsys.readouterr().out.strip().splitlines()
    assert "in the window kept (p = 0.5)" in first
    assert json.loads(second.removeprefix("source: "))["sha256"] == hashlib.sha256(
        steady.read_bytes()
    ).hexdigest()


# ---------------------------------------------------------------- the training part


def test_training_part_precedes_the_window_on_the_replay_axis(steady: Path) -> None:
    # Requests every 0.5 s; window from 100 s, 10 training seconds before it, 2x faster:
    # the 20 requests at 90.0, ..., 99.5 s replay at -5.0, -4.75, ..., -0.25 s.
    df = generate_trace(
        "w", spec(steady, window_start_s=100.0, window_s=50.0, training_s=10.0, time_scale=2.0)
    )
    assert df.attrs["history_s"] == pytest.approx([-5.0 + 0.25 * i for i in range(20)])
    record = df.attrs["workload"]
    assert (record["training_s"], record["training_rows"]) == (10.0, 20)
    assert record["training_length_s"] == 10.0
    assert record["requests"] == len(df) == 100  # the window is as without a training part


def test_training_part_is_clipped_at_the_file_start(steady: Path) -> None:
    df = generate_trace("w", spec(steady, window_start_s=3.0, window_s=5.0, training_s=600.0))
    assert df.attrs["history_s"] == pytest.approx([-3.0, -2.5, -2.0, -1.5, -1.0, -0.5])
    assert df.attrs["workload"]["training_length_s"] == 3.0


def test_training_part_needs_something_before_the_window(steady: Path) -> None:
    with pytest.raises(UserError, match="key 'training_s'"):
        generate_trace("w", spec(steady, window_start_s=0.0, training_s=60.0))
    # Without a training part the same window is fine, and the history is empty.
    assert generate_trace("w", spec(steady, window_s=5.0)).attrs["history_s"] == []


def test_training_part_is_thinned_like_the_window_from_its_own_stream(steady: Path) -> None:
    base = spec(steady, window_start_s=500.0, window_s=100.0, keep_probability=0.3)
    plain = generate_trace("w", base)
    trained = generate_trace("w", {**base, "training_s": 500.0})
    # The measured window is the same, request for request.
    assert plain.equals(trained)
    history = trained.attrs["history_s"]
    assert history == generate_trace("w", {**base, "training_s": 500.0}).attrs["history_s"]
    # 1,000 rows precede the window; about 30 % are kept.
    assert 240 <= len(history) <= 360
    assert trained.attrs["workload"]["training_rows"] == 1000
    assert all(-500.0 <= t < 0.0 for t in history) and history == sorted(history)
    # Every request in the training part, on the 0.5 s grid.
    assert all((t * 2).is_integer() for t in history)
    # A keep probability of 1 keeps every training request.
    everything = generate_trace("w", {**base, "keep_probability": 1.0, "training_s": 500.0})
    assert len(everything.attrs["history_s"]) == 1000


def test_other_kinds_have_no_history() -> None:
    df = generate_trace("p", {"kind": "poisson", "seed": 1, "rate_rps": 2.0, "duration_s": 5.0})
    assert df.attrs["history_s"] == []
    record = trace_record(df)
    assert (record["training_s"], record["training_requests"], record["training_span_s"]) == (
        0.0, 0, 0.0)
    with pytest.raises(UserError, match="training_s"):
        validate_spec("p", {"kind": "poisson", "seed": 1, "rate_rps": 2.0, "duration_s": 5.0,
                            "training_s": 60})


def test_history_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "h" / "w.history.csv"
    write_history([-5.0, -4.75, -0.000001], path)
    assert path.read_text() == "t_sched_s\n-5.000000\n-4.750000\n-0.000001\n"
    assert read_history(path) == [-5.0, -4.75, -0.000001]
    write_history([], path)
    assert path.read_text() == "t_sched_s\n"
    assert read_history(path) == []
    path.write_text("t_sched_s\n-1.0\n-2.0\n")
    with pytest.raises(UserError, match="ascending"):
        read_history(path)
    path.write_text("t\n")
    with pytest.raises(UserError, match="not a history CSV"):
        read_history(path)


def test_trace_record_names_the_source_relative_to_the_working_directory(
    steady: Path, tmp_path: Path
) -> None:
    df = generate_trace("w", spec(steady, window_start_s=100.0, window_s=50.0, training_s=10.0,
                                  time_scale=2.0))
    record = trace_record(df, base_dir=tmp_path)
    assert record["workload"]["path"] == "steady.csv"
    assert df.attrs["workload"]["path"] == str(steady)  # the frame keeps its own
    assert trace_record(df, base_dir=tmp_path / "elsewhere")["workload"]["path"] == str(steady)
    assert record["summary"]["n_requests"] == 100
    assert (record["training_s"], record["training_requests"]) == (10.0, 20)
    assert record["training_span_s"] == pytest.approx(5.0)
    assert history_summary(df.attrs["history_s"]) == {"requests": 20, "span_s": 5.0}
    json.dumps(record)  # plain types only


def test_cli_writes_the_history(steady: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="scalezero")
    add_cli(parser.add_subparsers(dest="command"))
    entry = json.dumps(spec(steady, window_start_s=1.0, window_s=5.0, training_s=1.0))
    out, history = tmp_path / "t.csv", tmp_path / "t.history.csv"
    args = parser.parse_args(["workload", "--spec-json", entry, "--out", str(out),
                              "--history-out", str(history)])
    assert args.func(args) == 0
    assert read_history(history) == [-1.0, -0.5]


# ---------------------------------------------------------------- the carried trace


def test_carried_file_is_the_published_one() -> None:
    assert hashlib.sha256(CARRIED.read_bytes()).hexdigest() == CARRIED_SHA256
    assert (CARRIED.parent / "LICENSE").is_file()


def test_ten_minutes_of_the_carried_trace_thinned_to_a_few_dozen() -> None:
    entry = spec(CARRIED, window_start_s=600.0, window_s=600.0, target_rate_rps=0.05)
    df = generate_trace("code", entry)
    again = generate_trace("code", dict(entry))
    assert len(df) == len(again) == 28  # ~0.05 req/s x 600 s = 30 expected
    assert df["prompt"].tolist() == again["prompt"].tolist()
    record = df.attrs["workload"]
    assert record["rows_in_file"] == 8819 and record["rows_in_window"] == 2146
    assert record["sha256"] == CARRIED_SHA256
    assert df["t_sched_s"].between(0.0, 600.0, inclusive="left").all()
    assert df["max_tokens"].between(1, 128).all()
    assert np.diff(df["t_sched_s"].to_numpy()).min() >= 0


# The policy lab's workload (config/policy-lab.yaml) as it was before training parts
# existed: its trace must stay the same file, byte for byte.
LAB = {
    "kind": "azure_llm", "seed": 7, "path": str(CARRIED), "window_start_s": 600,
    "window_s": 600, "time_scale": 3, "target_rate_rps": 0.1, "max_output_tokens": 32,
}
LAB_TRACE_SHA256 = "c9bec26bc1c05cbad2843d7acd3944d09f7b66bd407278dd4441a40e1389305e"


def test_a_training_part_leaves_the_recorded_window_trace_unchanged(tmp_path: Path) -> None:
    for training_s in (0, 600):
        out = tmp_path / f"t{training_s}.csv"
        df = generate_trace("azure_code", {**LAB, "training_s": training_s})
        write_trace(df, out)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == LAB_TRACE_SHA256
    # 600 trace seconds before the window, 3x faster: history within [-200, 0) s.
    history = df.attrs["history_s"]
    assert history and all(-200.0 <= t < 0.0 for t in history)
    assert df.attrs["workload"]["training_rows"] > len(history)  # thinned
