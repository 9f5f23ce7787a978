"""Reading a run folder's run.json and windows, and writing result tables."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from scalezero.errors import UserError
from scalezero.system.layout import Layout

FLOAT_FORMAT = "%.10g"  # fixed formatting: same inputs give byte-identical files
# Where a run recorded no replay window, it starts at the first of these request times.
REPLAY_START_COLUMNS: tuple[str, ...] = ("t_sched_s", "t_send_s")


def read_json(path: Path, *, strict: bool = False) -> dict[str, Any]:
    """A JSON file's object; {} when the file is missing. An unreadable or unparsable
    file is {} too, unless `strict`, where an unparsable one is a UserError."""
    path = Path(path)
    if strict:
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"cannot parse {path}: {exc}") from exc
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def read_run_meta(run_dir: Path, *, strict: bool = False) -> dict[str, Any]:
    """A run folder's run.json ({} when it has none; see `read_json` for `strict`)."""
    return read_json(Layout.run_files(Path(run_dir))["run_json"], strict=strict)


def recorded_window(meta: Mapping[str, Any], name: str) -> tuple[float, float] | None:
    """The recorded window `name` of run.json's `windows`, (t0, t1) in s; None unless
    both ends are finite numbers and t1 > t0."""
    value = (meta.get("windows") or {}).get(name)
    if not isinstance(value, Sequence) or len(value) != 2:
        return None
    try:
        t0, t1 = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    return (t0, t1) if math.isfinite(t0) and math.isfinite(t1) and t1 > t0 else None


def replay_window(meta: Mapping[str, Any], requests: pd.DataFrame, where: Any = "run", *,
                  start_columns: Sequence[str] = REPLAY_START_COLUMNS
                  ) -> tuple[float, float]:
    """The replay window (t0, t1) in s: the recorded one, or else from the first of the
    requests' `start_columns` times to the last t_end_s. `where` names the run in the
    error raised when neither is there."""
    recorded = recorded_window(meta, "replay")
    if recorded is not None:
        return recorded
    present = [pd.to_numeric(requests[c], errors="coerce")
               for c in start_columns if c in requests.columns]
    starts = pd.concat(present) if present else pd.Series(dtype=float)
    ends = (pd.to_numeric(requests["t_end_s"], errors="coerce")
            if "t_end_s" in requests.columns else None)
    if starts.dropna().empty or ends is None or ends.dropna().empty:
        raise UserError(f"{where}: run.json has no replay window and requests.csv "
                        "has no times to infer it from")
    return float(starts.min()), float(ends.max())


def write_table(df: pd.DataFrame, path: Path) -> Path:
    """Write `df` as CSV with fixed float formatting and line ends (its folder made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return path


__all__ = ["FLOAT_FORMAT", "read_json", "read_run_meta", "recorded_window", "replay_window",
           "write_table"]
