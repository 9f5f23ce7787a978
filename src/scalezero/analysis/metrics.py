"""Per-request latency metrics, inter-token latency, goodput and percentiles.

Definitions follow vLLM's serving benchmark and NVIDIA aiperf so that numbers compare:

- TTFT  = t_first - t_send (first streamed content token)
- E2E   = t_end - t_send (last byte of the response)
- TPOT  = (E2E - TTFT) / (tokens_out - 1), only when tokens_out > 1, else NaN
- ITL   = each gap between consecutive streamed tokens of one request
- send lag = t_send - t_sched: how late the open-loop client sent the request

Only successful requests (HTTP 200 and no error) count in latency statistics; the
latency columns of failed requests are NaN so they cannot slip into a percentile.
Send lag is a property of the client, so it is kept for every request.

Percentiles use numpy's default method (linear interpolation between the two
closest ranks, `numpy.percentile(..., method="linear")`), the same as vLLM's benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# SLO sets from MLPerf Inference (v5.0+) for the llama3.1-8b server scenario:
# "standard" p99 TTFT <= 2000 ms and TPOT <= 100 ms; "interactive" 500 ms / 30 ms.
# MLPerf checks them on the p99 of a run; here they are also applied per request to
# count goodput (requests meeting every SLO of a set), as vLLM's `--goodput` does.
DEFAULT_SLO_SETS: dict[str, dict[str, float]] = {
    "mlperf_standard": {"ttft_ms": 2000.0, "tpot_ms": 100.0},
    "mlperf_interactive": {"ttft_ms": 500.0, "tpot_ms": 30.0},
}

DEFAULT_PERCENTILES: tuple[int, ...] = (50, 90, 99)

# Columns of `request_metrics`, in order.
REQUEST_METRIC_COLUMNS: tuple[str, ...] = (
    "request_id",
    "ok",
    "cold",
    "status",
    "error",
    "instance_id",
    "tokens_in",
    "tokens_out",
    "t_sched_s",
    "t_send_s",
    "t_end_s",
    "ttft_ms",
    "e2e_ms",
    "tpot_ms",
    "itl_max_ms",
    "send_lag_ms",
    "queue_wait_ms",
)

_TRUE_STRINGS = frozenset({"true", "1", "yes", "y", "t"})


def as_bool(values: pd.Series) -> pd.Series:
    """Read a CSV boolean column written as True/False, true/false or 1/0 (missing = False)."""
    if values.dtype == bool:
        return values.astype(bool)
    text = values.astype("string").str.strip().str.lower()
    return text.isin(_TRUE_STRINGS).fillna(False).astype(bool)


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def request_ok(requests_df: pd.DataFrame) -> pd.Series:
    """True for requests that succeeded: HTTP status 200 and an empty error field."""
    status = _numeric(requests_df, "status")
    if "error" in requests_df.columns:
        error = requests_df["error"].astype("string").fillna("").str.strip()
        no_error = error == ""
    else:
        no_error = pd.Series(True, index=requests_df.index)
    return ((status == 200) & no_error).astype(bool)


def _token_counts_and_max_gap(tokens_df: pd.DataFrame | None) -> pd.DataFrame:
    """Per request: number of token rows and the longest gap between tokens (ms)."""
    columns = ["request_id", "n_tokens", "itl_max_ms"]
    if tokens_df is None or tokens_df.empty or "request_id" not in tokens_df.columns:
        return pd.DataFrame(columns=columns)
    gaps = _itl_frame(tokens_df)
    counts = tokens_df.groupby("request_id").size().rename("n_tokens")
    max_gap = gaps.groupby("request_id")["itl_ms"].max().rename("itl_max_ms")
    out = pd.concat([counts, max_gap], axis=1).reset_index()
    return out[columns]


def request_metrics(
    requests_df: pd.DataFrame, tokens_df: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per request with its latency metrics (ms) and success/cold flags.

    `tokens_out` is taken from requests.csv; where it is missing there, the number of
    rows of the request in tokens.csv is used. `itl_max_ms` is the longest gap between
    two tokens of the request (its worst stall), NaN without tokens.csv rows.
    """
    df = requests_df.reset_index(drop=True)
    out = pd.DataFrame(index=df.index)
    out["request_id"] = _numeric(df, "request_id")
    ok = request_ok(df)
    out["ok"] = ok
    out["cold"] = as_bool(df["cold"]) if "cold" in df.columns else False
    out["status"] = _numeric(df, "status")
    if "error" in df.columns:
        out["error"] = df["error"].astype("string").fillna("").astype(object)
    else:
        out["error"] = ""
    if "instance_id" in df.columns:
        out["instance_id"] = df["instance_id"].astype(object)
    else:
        out["instance_id"] = np.nan
    out["tokens_in"] = _numeric(df, "tokens_in")
    tokens_out = _numeric(df, "tokens_out")
    per_request = _token_counts_and_max_gap(tokens_df)
    if not per_request.empty:
        by_id = per_request.set_index("request_id")
        from_tokens = out["request_id"].map(by_id["n_tokens"]).astype(float)
        tokens_out = tokens_out.fillna(from_tokens)
        itl_max = out["request_id"].map(by_id["itl_max_ms"]).astype(float)
    else:
        itl_max = pd.Series(np.nan, index=df.index, dtype=float)
    out["tokens_out"] = tokens_out

    t_sched = _numeric(df, "t_sched_s")
    t_send = _numeric(df, "t_send_s")
    t_first = _numeric(df, "t_first_s")
    t_end = _numeric(df, "t_end_s")
    out["t_sched_s"] = t_sched
    out["t_send_s"] = t_send
    out["t_end_s"] = t_end

    ttft_ms = (t_first - t_send) * 1000.0
    e2e_ms = (t_end - t_send) * 1000.0
    # Output tokens after the first one; TPOT is undefined for 0 or 1 output tokens.
    decode_tokens = (tokens_out - 1.0).where(tokens_out > 1)
    tpot_ms = (e2e_ms - ttft_ms) / decode_tokens
    # Failed requests count as errors, never in latency statistics.
    out["ttft_ms"] = ttft_ms.where(ok)
    out["e2e_ms"] = e2e_ms.where(ok)
    out["tpot_ms"] = tpot_ms.where(ok)
    out["itl_max_ms"] = itl_max.where(ok)
    out["send_lag_ms"] = (t_send - t_sched) * 1000.0
    out["queue_wait_ms"] = _numeric(df, "queue_wait_ms")
    return out[list(REQUEST_METRIC_COLUMNS)]


def _itl_frame(tokens_df: pd.DataFrame) -> pd.DataFrame:
    """Gaps between consecutive tokens of each request: columns request_id, itl_ms."""
    if tokens_df is None or tokens_df.empty:
        empty = pd.Series(dtype=float)
        return pd.DataFrame({"request_id": empty, "itl_ms": empty.copy()})
    df = pd.DataFrame(
        {
            "request_id": _numeric(tokens_df, "request_id"),
            "token_index": _numeric(tokens_df, "token_index"),
            "t_s": _numeric(tokens_df, "t_s"),
        }
    ).dropna(subset=["request_id", "t_s"])
    # Order by token index where known, by arrival time otherwise.
    df = df.sort_values(["request_id", "token_index", "t_s"], kind="mergesort")
    gaps_s = df.groupby("request_id")["t_s"].diff()
    out = pd.DataFrame({"request_id": df["request_id"], "itl_ms": gaps_s * 1000.0})
    return out.dropna(subset=["itl_ms"]).reset_index(drop=True)


def itl_ms(tokens_df: pd.DataFrame, request_ids: Iterable[float] | None = None) -> pd.Series:
    """Every inter-token gap (ms) of every request, optionally only of `request_ids`.

    A request with n streamed tokens contributes n - 1 gaps; the first token's wait
    belongs to TTFT, not ITL.
    """
    gaps = _itl_frame(tokens_df)
    if request_ids is not None:
        wanted = {float(r) for r in request_ids}
        gaps = gaps[gaps["request_id"].isin(wanted)]
    return gaps["itl_ms"].reset_index(drop=True).rename("itl_ms")


def percentiles(
    values: pd.Series | Sequence[float] | np.ndarray, qs: Sequence[float] = DEFAULT_PERCENTILES
) -> dict[float, float]:
    """Percentiles of the finite values, numpy's linear interpolation; NaN when empty."""
    arr = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {q: float("nan") for q in qs}
    result = np.percentile(arr, list(qs))
    return {q: float(v) for q, v in zip(qs, result, strict=True)}


def meets_slo(
    metrics_df: pd.DataFrame, ttft_ms: float | None = None, tpot_ms: float | None = None
) -> pd.Series:
    """Per request: succeeded and met every given SLO (limits inclusive).

    A request without a first token (NaN TTFT) misses a TTFT SLO; a request with one
    output token (NaN TPOT) meets any TPOT SLO, as TPOT is undefined for it.
    """
    met = metrics_df["ok"].astype(bool).copy()
    if ttft_ms is not None and np.isfinite(ttft_ms):
        met &= (metrics_df["ttft_ms"] <= ttft_ms).fillna(False).astype(bool)
    if tpot_ms is not None and np.isfinite(tpot_ms):
        tpot = metrics_df["tpot_ms"]
        met &= (tpot.isna() | (tpot <= tpot_ms)).astype(bool)
    return met


@dataclass(frozen=True)
class Goodput:
    """Requests meeting every SLO of a set: count, rate over the replay and share."""

    met: int
    goodput_rps: float
    attainment: float


def goodput(
    metrics_df: pd.DataFrame,
    duration_s: float,
    slo_sets: Mapping[str, Mapping[str, float]] = DEFAULT_SLO_SETS,
) -> dict[str, Goodput]:
    """Goodput (requests/s meeting every SLO of a set) and attainment share per SLO set.

    The rate divides by the replay duration; the share divides by all requests sent,
    failed ones included (they miss every SLO).
    """
    result: dict[str, Goodput] = {}
    n_requests = len(metrics_df)
    for name, slo in slo_sets.items():
        met = int(meets_slo(metrics_df, slo.get("ttft_ms"), slo.get("tpot_ms")).sum())
        rate = met / duration_s if duration_s and duration_s > 0 else float("nan")
        share = met / n_requests if n_requests else float("nan")
        result[name] = Goodput(met=met, goodput_rps=rate, attainment=share)
    return result
