"""Readers for recorded traces: a plain CSV of send times, and the Azure Functions 2019
per-minute invocation counts."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scalezero.errors import UserError
from scalezero.workload.arrivals import floor_us
from scalezero.workload.spec import MINUTES_PER_DAY

TIME_COLUMNS = ("t_sched_s", "timestamp_s")
AZURE_ID_COLUMNS = ("HashOwner", "HashApp", "HashFunction", "Trigger")


@dataclass
class RecordedTrace:
    """Rows of a trace CSV, sorted by time. Missing cells are NaN / None."""

    times_us: np.ndarray
    max_tokens: np.ndarray  # float, NaN where the file has no value
    prompts: list[str | None]


def _fail(workload: str, message: str) -> UserError:
    return UserError(f"workload {workload!r}: {message}")


def resolve_path(workload: str, path: str, base_dir: Path | None) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.is_absolute() and base_dir is not None:
        resolved = base_dir / resolved
    if not resolved.is_file():
        raise _fail(workload, f"key 'path': no such file {str(resolved)!r}")
    return resolved


def read_trace_csv(
    workload: str, path: Path, time_scale: float, start_offset: float | str
) -> RecordedTrace:
    """Read a CSV of send times; see the `trace_csv` kind in docs/data.md."""
    try:
        # Only empty cells are missing: a prompt reading "NA" or "null" is text.
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise _fail(workload, f"cannot read {str(path)!r} as CSV: {exc}") from exc
    time_column = next((c for c in TIME_COLUMNS if c in frame.columns), None)
    if time_column is None:
        raise _fail(
            workload,
            f"{str(path)!r} needs a {' or '.join(TIME_COLUMNS)} column, has {list(frame.columns)}",
        )
    times_s = pd.to_numeric(frame[time_column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(times_s)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _fail(
            workload,
            f"{str(path)!r} row {row + 2}: {time_column} must be a number, "
            f"got {frame[time_column].iloc[row]!r}",
        )
    if start_offset == "first":
        origin_s = float(times_s.min()) if times_s.size else 0.0
    else:
        if (times_s < 0).any():
            raise _fail(
                workload,
                f"{str(path)!r} has negative {time_column} values; "
                "set start_offset_s: first to rebase the trace",
            )
        origin_s = float(start_offset)

    max_tokens = np.full(len(frame), np.nan)
    if "max_tokens" in frame.columns:
        max_tokens = pd.to_numeric(frame["max_tokens"], errors="coerce").to_numpy(dtype=float)
        given = frame["max_tokens"].notna().to_numpy()
        ok = np.isfinite(max_tokens) & (max_tokens >= 1) & (np.mod(max_tokens, 1) == 0)
        if (given & ~ok).any():
            row = int(np.flatnonzero(given & ~ok)[0])
            raise _fail(
                workload,
                f"{str(path)!r} row {row + 2}: max_tokens must be an integer >= 1, "
                f"got {frame['max_tokens'].iloc[row]!r}",
            )
    prompts: list[str | None] = [None] * len(frame)
    if "prompt" in frame.columns:
        prompts = [None if pd.isna(p) else str(p) for p in frame["prompt"].tolist()]

    keep = times_s >= origin_s
    order = np.flatnonzero(keep)[np.argsort(times_s[keep], kind="stable")]
    if order.size == 0:
        raise _fail(workload, f"{str(path)!r} has no rows at or after start_offset_s")
    return RecordedTrace(
        times_us=floor_us((times_s[order] - origin_s) / time_scale),
        max_tokens=max_tokens[order],
        prompts=[prompts[i] for i in order],
    )


@dataclass
class AzureSelection:
    counts: np.ndarray  # invocations per minute, one entry per selected minute
    function: str
    app: str
    owner: str
    trigger: str


def read_azure_counts(
    workload: str,
    path: Path,
    function: str,
    app: str | None,
    start_minute: int,
    minutes: int | None,
) -> AzureSelection:
    """Per-minute counts of one function from an Azure Functions 2019 invocation file.

    function: a HashFunction value, 'busiest' (most invocations inside the selected
    minutes, first in file order on ties) or 'index:N' (N-th data row, 0-based).
    app, when given, restricts the candidates to one HashApp first.
    """
    if minutes is None:
        minutes = MINUTES_PER_DAY - start_minute + 1
    last_minute = start_minute + minutes - 1
    if last_minute > MINUTES_PER_DAY:
        raise _fail(
            workload,
            f"key 'minutes': start_minute {start_minute} + minutes {minutes} runs past "
            f"minute {MINUTES_PER_DAY} of the day",
        )
    with path.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    minute_columns = [str(m) for m in range(start_minute, last_minute + 1)]
    missing = [c for c in (*AZURE_ID_COLUMNS, *minute_columns) if c not in header]
    if missing:
        raise _fail(
            workload,
            f"{str(path)!r} is not an Azure Functions invocation file "
            f"(missing columns {missing[:5]}{' ...' if len(missing) > 5 else ''})",
        )
    try:
        frame = pd.read_csv(
            path,
            usecols=[*AZURE_ID_COLUMNS, *minute_columns],
            dtype={
                **{c: "str" for c in AZURE_ID_COLUMNS},
                **{c: "float64" for c in minute_columns},
            },
            keep_default_na=False,
            na_values=[""],
        )
    except ValueError as exc:
        raise _fail(workload, f"{str(path)!r}: invocation counts must be numbers ({exc})") from None
    if app is not None:
        frame = frame[frame["HashApp"] == app]
        if frame.empty:
            raise _fail(workload, f"key 'app': no rows with HashApp {app!r} in {str(path)!r}")
    if frame.empty:
        raise _fail(workload, f"{str(path)!r} has no function rows")
    counts = frame[minute_columns].to_numpy(dtype=float)
    bad = ~np.isfinite(counts) | (counts < 0) | (np.mod(counts, 1) != 0)
    if bad.any():
        raise _fail(workload, f"{str(path)!r}: invocation counts must be integers >= 0")
    counts_int = counts.astype(np.int64)

    if function == "busiest":
        row = int(np.argmax(counts_int.sum(axis=1)))
    elif function.startswith("index:"):
        try:
            row = int(function.removeprefix("index:"))
        except ValueError:
            raise _fail(workload, f"key 'function': bad index in {function!r}") from None
        if not 0 <= row < len(frame):
            raise _fail(
                workload,
                f"key 'function': {function!r} is out of range (0..{len(frame) - 1})",
            )
    else:
        matches = np.flatnonzero((frame["HashFunction"] == function).to_numpy())
        if matches.size == 0:
            raise _fail(workload, f"key 'function': no HashFunction {function!r} in {str(path)!r}")
        if matches.size > 1:
            raise _fail(
                workload,
                f"key 'function': {matches.size} rows have HashFunction {function!r}; "
                "set 'app' to choose one",
            )
        row = int(matches[0])
    ids = frame.iloc[row]
    return AzureSelection(
        counts=counts_int[row],
        function=str(ids["HashFunction"]),
        app=str(ids["HashApp"]),
        owner=str(ids["HashOwner"]),
        trigger=str(ids["Trigger"]),
    )
