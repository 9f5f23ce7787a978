"""Latency metric definitions on hand-computed cases.

Times are chosen as exact binary fractions so that SLO limits can be tested at
equality (limits are inclusive).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scalezero.analysis import metrics as mx


def _requests() -> pd.DataFrame:
    nan = float("nan")
    return pd.DataFrame(
        [
            # id, sched, send, first, end, tokens_out, status, error, cold
            (0, 9.75, 10.0, 10.5, 11.5, 11, 200, "", "True"),  # TTFT 500, E2E 1500, TPOT 100
            (1, 12.0, 12.0, 12.125, 12.125, 1, 200, "", "False"),  # one token: TPOT NaN
            (2, 13.0, 13.0, nan, 13.25, 0, 200, "", "false"),  # no token: TTFT NaN
            (3, 14.0, 14.0, 14.015625, 14.0625, 2, 200, "", "0"),  # TTFT 15.625, TPOT 46.875
            (4, 15.0, 15.5, nan, 15.75, 0, 503, "queue full", "true"),  # failed
            (5, 16.0, 16.0, nan, 17.0, 0, 0, "connection reset", "1"),  # no response
        ],
        columns=["request_id", "t_sched_s", "t_send_s", "t_first_s", "t_end_s",
                 "tokens_out", "status", "error", "cold"],
    ).assign(error=lambda d: d["error"].replace("", np.nan))  # CSV reads "" as missing


def test_request_metrics_definitions() -> None:
    m = mx.request_metrics(_requests()).set_index("request_id")
    assert list(m["ok"]) == [True, True, True, True, False, False]
    assert list(m["cold"]) == [True, False, False, False, True, True]
    assert m.at[0, "ttft_ms"] == pytest.approx(500.0)
    assert m.at[0, "e2e_ms"] == pytest.approx(1500.0)
    assert m.at[0, "tpot_ms"] == pytest.approx(100.0)  # (1500 - 500) / (11 - 1)
    assert m.at[0, "send_lag_ms"] == pytest.approx(250.0)
    assert m.at[1, "ttft_ms"] == pytest.approx(125.0)
    assert m.at[1, "e2e_ms"] == pytest.approx(125.0)
    assert math.isnan(m.at[1, "tpot_ms"])  # tokens_out == 1
    assert math.isnan(m.at[2, "ttft_ms"])
    assert m.at[2, "e2e_ms"] == pytest.approx(250.0)
    assert math.isnan(m.at[2, "tpot_ms"])  # tokens_out == 0
    assert m.at[3, "ttft_ms"] == pytest.approx(15.625)
    assert m.at[3, "e2e_ms"] == pytest.approx(62.5)
    assert m.at[3, "tpot_ms"] == pytest.approx(46.875)  # (62.5 - 15.625) / (2 - 1)


def test_failed_requests_have_no_latency_but_keep_send_lag() -> None:
    m = mx.request_metrics(_requests()).set_index("request_id")
    for rid in (4, 5):
        assert math.isnan(m.at[rid, "e2e_ms"])
        assert math.isnan(m.at[rid, "ttft_ms"])
    assert m.at[4, "send_lag_ms"] == pytest.approx(500.0)
    assert m.at[4, "error"] == "queue full"


def test_request_ok_needs_status_200_and_no_error() -> None:
    df = pd.DataFrame({"status": [200, 200, 500, 0], "error": [np.nan, "boom", np.nan, ""]})
    assert list(mx.request_ok(df)) == [True, False, False, False]


def test_tokens_out_falls_back_to_token_rows_and_itl_max() -> None:
    requests = pd.DataFrame({"request_id": [7], "t_sched_s": [1.0], "t_send_s": [1.0],
                             "t_first_s": [1.25], "t_end_s": [2.0], "tokens_out": [np.nan],
                             "status": [200], "error": [np.nan]})
    tokens = pd.DataFrame({"request_id": [7, 7, 7, 7], "token_index": [0, 1, 2, 3],
                           "t_s": [1.25, 1.5, 1.875, 2.0]})
    m = mx.request_metrics(requests, tokens).iloc[0]
    assert m["tokens_out"] == 4
    assert m["tpot_ms"] == pytest.approx((2000.0 - 1000.0 - 250.0) / 3)
    assert m["itl_max_ms"] == pytest.approx(375.0)


def test_itl_gaps_between_consecutive_tokens() -> None:
    tokens = pd.DataFrame(
        {
            "request_id": [8, 7, 7, 8, 7, 9],
            "token_index": [1, 0, 1, 0, 2, 0],  # rows out of order on purpose
            "t_s": [2.5, 1.0, 1.125, 2.0, 1.375, 3.0],
        }
    )
    gaps = sorted(mx.itl_ms(tokens))
    # request 7: 125, 250; request 8: 500; request 9 (one token): none
    assert gaps == pytest.approx([125.0, 250.0, 500.0])
    assert sorted(mx.itl_ms(tokens, request_ids=[8])) == pytest.approx([500.0])
    assert mx.itl_ms(pd.DataFrame(columns=["request_id", "token_index", "t_s"])).empty


def test_percentiles_linear_interpolation() -> None:
    p = mx.percentiles(pd.Series([4.0, 1.0, np.nan, 3.0, 2.0]))
    # sorted [1, 2, 3, 4]: rank q/100 * (n - 1) interpolated linearly
    assert p[50] == pytest.approx(2.5)
    assert p[90] == pytest.approx(3.7)
    assert p[99] == pytest.approx(3.97)
    assert mx.percentiles([5.0], (50, 99)) == {50: 5.0, 99: 5.0}
    empty = mx.percentiles([], (50,))
    assert math.isnan(empty[50])


def test_goodput_with_both_mlperf_sets() -> None:
    m = mx.request_metrics(_requests())
    result = mx.goodput(m, duration_s=10.0)  # default sets
    std = result["mlperf_standard"]
    # standard (TTFT <= 2000, TPOT <= 100): ids 0 (TPOT exactly 100), 1 (no TPOT), 3
    assert std.met == 3
    assert std.goodput_rps == pytest.approx(0.3)
    assert std.attainment == pytest.approx(3 / 6)
    inter = result["mlperf_interactive"]
    # interactive (TTFT <= 500, TPOT <= 30): id 0 misses TPOT, id 3 misses TPOT; id 1 meets
    assert inter.met == 1
    assert inter.goodput_rps == pytest.approx(0.1)
    assert inter.attainment == pytest.approx(1 / 6)


def test_goodput_custom_set_and_edge_cases() -> None:
    m = mx.request_metrics(_requests())
    only_ttft = mx.goodput(m, 4.0, {"loose": {"ttft_ms": 100.0}})["loose"]
    assert only_ttft.met == 1  # only id 3 (15.625 ms); id 1 has 125 ms
    assert only_ttft.goodput_rps == pytest.approx(0.25)
    empty = mx.goodput(m.iloc[0:0], 10.0)["mlperf_standard"]
    assert empty.met == 0 and math.isnan(empty.attainment)


def test_default_slo_sets_are_mlperf_llama31_8b() -> None:
    assert mx.DEFAULT_SLO_SETS == {
        "mlperf_standard": {"ttft_ms": 2000.0, "tpot_ms": 100.0},
        "mlperf_interactive": {"ttft_ms": 500.0, "tpot_ms": 30.0},
    }


def test_as_bool_accepts_csv_spellings() -> None:
    values = pd.Series(["True", "false", "1", "0", None, "yes"], dtype=object)
    assert list(mx.as_bool(values)) == [True, False, True, False, False, True]
    assert list(mx.as_bool(pd.Series([True, False]))) == [True, False]
