"""Readers for recorded traces: a plain CSV of send times, the Azure Functions 2019
per-minute invocation counts, and the Azure LLM inference traces (one row per request)."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from scalezero.errors import UserError
from scalezero.workload import arrivals
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


AZURE_LLM_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")
_COUNT = re.compile(r"[0-9]+")
_EPOCH = datetime(1970, 1, 1)


@dataclass
class LLMWindow:
    """The requests of an Azure LLM trace inside one time window, in file order."""

    offsets_us: np.ndarray  # whole microseconds after the window start
    context_tokens: np.ndarray
    generated_tokens: np.ndarray
    rows_in_file: int
    first_timestamp: str  # the file's first TIMESTAMP, as written
    span_s: float  # first to last request of the file
    window_end_s: float | None  # after the first request; None = to the end
    length_s: float  # window length used for rates: window_s, or start to last request
    # The training part: requests in [start - training_s, start), clipped at the file's
    # first request, as (negative) whole microseconds relative to the window start.
    training_offsets_us: np.ndarray
    training_length_s: float  # training_s clipped at the file's first request


def _timestamp_us(text: str) -> int | None:
    # Integer microseconds since 1970 (naive time), fraction truncated to 1 us; None
    # when the text is not a valid "YYYY-MM-DD HH:MM:SS[.fraction]".
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    micro = int((fraction or "").ljust(6, "0")[:6])
    return (moment - _EPOCH) // timedelta(microseconds=1) + micro


def read_azure_llm(
    workload: str, path: Path, window_start_s: float, window_s: float | None,
    training_s: float = 0.0,
) -> LLMWindow:
    """The rows of an Azure LLM inference trace CSV in [start, start + window_s).

    Times count from the file's first request. With training_s > 0, the arrival times of
    the rows in [start - training_s, start) come along as the training part; it is an
    error when no row precedes the window then. Every row of the file is checked, and
    each fault is a UserError naming the file, the CSV line, the data row and the column.
    """
    where = str(path)

    def fault(line: int, row: int, column: str, message: str) -> UserError:
        return _fail(
            workload, f"{where!r} line {line} (data row {row}), column {column!r}: {message}"
        )

    times: list[int] = []
    context: list[int] = []
    generated: list[int] = []
    first_text = ""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [cell.strip() for cell in next(reader, [])]
            missing = [c for c in AZURE_LLM_COLUMNS if c not in header]
            extra = [c for c in header if c not in AZURE_LLM_COLUMNS]
            if missing or extra or len(header) != len(AZURE_LLM_COLUMNS):
                raise _fail(
                    workload,
                    f"{where!r} line 1 (header): needs exactly the columns "
                    f"{list(AZURE_LLM_COLUMNS)}, has {header}"
                    + (f"; missing {missing}" if missing else "")
                    + (f"; extra {extra}" if extra else "")
                    + ("; a column appears twice" if not missing and not extra else ""),
                )
            index = {column: header.index(column) for column in AZURE_LLM_COLUMNS}
            row = 0
            for cells in reader:
                if not cells:
                    continue  # a blank line
                row += 1
                line = reader.line_num
                if len(cells) != len(header):
                    column = header[len(cells)] if len(cells) < len(header) else "(extra cell)"
                    raise fault(line, row, column, f"has {len(cells)} cells, expected 3")
                text = cells[index["TIMESTAMP"]].strip()
                moment_us = _timestamp_us(text)
                if moment_us is None:
                    raise fault(
                        line, row, "TIMESTAMP", f"not a 'YYYY-MM-DD HH:MM:SS.f' time: {text!r}"
                    )
                if times and moment_us < times[-1]:
                    raise fault(
                        line, row, "TIMESTAMP", f"{text!r} is earlier than the row before"
                    )
                if not times:
                    first_text = text
                times.append(moment_us)
                for column, values in (("ContextTokens", context), ("GeneratedTokens", generated)):
                    cell = cells[index[column]].strip()
                    if _COUNT.fullmatch(cell) is None:
                        raise fault(line, row, column, f"must be an integer >= 0, got {cell!r}")
                    values.append(int(cell))
    except UnicodeDecodeError as exc:
        raise _fail(workload, f"cannot read {where!r} as UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise _fail(workload, f"cannot read {where!r} as CSV: {exc}") from None
    if not times:
        raise _fail(workload, f"{where!r} has no data rows")

    t_us = np.asarray(times, dtype=np.int64) - times[0]
    start_us = arrivals.to_us(window_start_s)
    inside = t_us >= start_us
    if window_s is not None:
        inside &= t_us < start_us + arrivals.to_us(window_s)
    span_s = float(t_us[-1]) / arrivals.US_PER_S
    if not inside.any():
        until = "the end" if window_s is None else f"{window_start_s + window_s:g} s"
        raise _fail(
            workload,
            f"{where!r}, column 'TIMESTAMP': no request in the window from "
            f"{window_start_s:g} s to {until} after the first request (the file spans "
            f"{span_s:g} s); check window_start_s and window_s",
        )
    offsets_us = t_us[inside] - start_us
    length_s = window_s if window_s is not None else float(offsets_us[-1]) / arrivals.US_PER_S
    # Clipped at the file's first request (time 0).
    training_start_us = max(0, start_us - arrivals.to_us(training_s))
    before = (t_us >= training_start_us) & (t_us < start_us)
    if training_s > 0 and not before.any():
        raise _fail(
            workload,
            f"key 'training_s': no request of {where!r} precedes the window starting at "
            f"{window_start_s:g} s; set training_s to 0 or move window_start_s later",
        )
    return LLMWindow(
        offsets_us=offsets_us,
        context_tokens=np.asarray(context, dtype=np.int64)[inside],
        generated_tokens=np.asarray(generated, dtype=np.int64)[inside],
        rows_in_file=len(times),
        first_timestamp=first_text,
        span_s=span_s,
        window_end_s=None if window_s is None else window_start_s + window_s,
        length_s=length_s,
        training_offsets_us=t_us[before] - start_us,
        training_length_s=(start_us - training_start_us) / arrivals.US_PER_S,
    )
