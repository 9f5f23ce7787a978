"""The shared numeric helpers and run-folder readers of the analysis step."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from scalezero.analysis.numbers import mean, min_nan, num, ratio
from scalezero.analysis.runs import read_run_meta, recorded_window, replay_window, write_table
from scalezero.errors import UserError


def test_numbers_are_nan_safe() -> None:
    assert num("2.5") == 2.5 and math.isnan(num(None)) and math.isnan(num("x"))
    assert ratio(3.0, 2.0) == 1.5
    for b in (0.0, math.inf, math.nan):
        assert math.isnan(ratio(1.0, b))
    assert math.isnan(ratio(math.nan, 2.0))
    assert mean([1, "x", None, 3]) == 2.0 and math.isnan(mean([]))
    assert min_nan(2.0, 1.0) == 1.0 and math.isnan(min_nan(1.0, math.nan))


def test_run_meta_and_windows(tmp_path: Path) -> None:
    assert read_run_meta(tmp_path) == {}
    (tmp_path / "run.json").write_text("{not json")
    assert read_run_meta(tmp_path) == {}
    with pytest.raises(UserError, match="cannot parse"):
        read_run_meta(tmp_path, strict=True)
    meta = {"windows": {"replay": [1.0, 5.0], "baseline_bare": [3.0, 2.0]}}
    assert recorded_window(meta, "replay") == (1.0, 5.0)
    assert recorded_window(meta, "baseline_bare") is None  # ends before it starts
    requests = pd.DataFrame({"t_sched_s": [0.5, 2.0], "t_send_s": [0.7, 2.1],
                             "t_end_s": [1.0, 3.0]})
    assert replay_window(meta, requests) == (1.0, 5.0)
    assert replay_window({}, requests) == (0.5, 3.0)
    assert replay_window({}, requests, start_columns=("t_send_s",)) == (0.7, 3.0)
    with pytest.raises(UserError, match="no replay window"):
        replay_window({}, requests[["t_sched_s"]], "r")


def test_tables_have_fixed_float_format(tmp_path: Path) -> None:
    path = write_table(pd.DataFrame({"x": [1 / 3, 2.0]}), tmp_path / "sub" / "t.csv")
    assert path.read_bytes() == b"x\n0.3333333333\n2\n"
