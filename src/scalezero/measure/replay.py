"""Open-loop replay: every request leaves at its scheduled time, whatever came before.

Closed-loop clients (send the next request when the last one returns) hide queueing:
a slow server slows the arrivals down. Here each request is its own task that sleeps
until its scheduled time, so a cold start shows up as latency, not as fewer requests.
Requests stream, so the first token's arrival (TTFT) is observed, not inferred.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import pandas as pd

REQUEST_COLUMNS = (
    "request_id", "t_sched_s", "t_send_s", "t_first_s", "t_end_s", "tokens_in", "tokens_out",
    "max_tokens", "status", "error", "cold", "queue_wait_ms", "instance_id", "finish_reason",
    "start_tier",
)
TOKEN_COLUMNS = ("request_id", "token_index", "t_s")


@dataclasses.dataclass
class RequestRecord:
    request_id: int
    t_sched_s: float
    max_tokens: int
    t_send_s: float | None = None
    t_first_s: float | None = None
    t_end_s: float | None = None
    tokens_in: int | None = None
    tokens_out: int = 0
    status: int = 0
    error: str = ""
    cold: bool | None = None
    queue_wait_ms: float | None = None
    instance_id: str = ""
    finish_reason: str = ""
    start_tier: str = ""
    token_times_s: list[float] = dataclasses.field(default_factory=list)

    def row(self) -> list[str]:
        def num(value: float | None, digits: int = 6) -> str:
            return "" if value is None else f"{value:.{digits}f}"

        return [
            str(self.request_id), num(self.t_sched_s), num(self.t_send_s), num(self.t_first_s),
            num(self.t_end_s), "" if self.tokens_in is None else str(self.tokens_in),
            str(self.tokens_out), str(self.max_tokens), str(self.status), self.error,
            "" if self.cold is None else str(self.cold).lower(), num(self.queue_wait_ms, 3),
            self.instance_id, self.finish_reason, self.start_tier,
        ]


@dataclasses.dataclass
class ReplayRequest:
    request_id: int
    t_sched_s: float
    prompt: str
    max_tokens: int
    #: The deployment asked for (a trace's model column); None: the replay's model.
    model: str | None = None


def requests_from_trace(trace: pd.DataFrame) -> list[ReplayRequest]:
    """The requests of a trace frame (`scalezero.workload.trace.read_trace`), in its order."""
    models = (trace["model"].astype(str).tolist() if "model" in trace.columns
              else [None] * len(trace))
    return [
        ReplayRequest(int(row.request_id), float(row.t_sched_s), str(row.prompt),
                      int(row.max_tokens), model or None)
        for row, model in zip(trace.itertuples(index=False), models, strict=True)
    ]


def completion_payload(
    item: ReplayRequest, model: str, suppressed_token_ids: Sequence[int]
) -> dict[str, Any]:
    """The request body: streaming, and kept from stopping before ``max_tokens``.

    The logit bias bans every end-of-generation token, so the requested output length
    is the produced length. (llama-cpp-python's ``min_tokens`` is not used: combined
    with a logit bias, its server ends some completions at once with no token.)
    """
    payload: dict[str, Any] = {
        "model": item.model or model,
        "prompt": item.prompt,
        "max_tokens": item.max_tokens,
        "temperature": 0.0,
        "seed": item.request_id,
        "stream": True,
    }
    if suppressed_token_ids:
        payload["logit_bias"] = {str(token): -100.0 for token in suppressed_token_ids}
    return payload


async def _one(
    client: httpx.AsyncClient,
    url: str,
    item: ReplayRequest,
    t0_s: float,
    model: str,
    suppressed_token_ids: Sequence[int],
    record: RequestRecord,
) -> None:
    payload = completion_payload(item, model, suppressed_token_ids)
    delay_s = t0_s + item.t_sched_s - time.monotonic()
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    record.t_send_s = time.monotonic()
    try:
        async with client.stream("POST", url, json=payload) as response:
            record.status = response.status_code
            headers = response.headers
            if "x-scalezero-cold" in headers:
                record.cold = headers["x-scalezero-cold"] == "true"
            if "x-scalezero-queue-wait-ms" in headers:
                record.queue_wait_ms = float(headers["x-scalezero-queue-wait-ms"])
            record.instance_id = headers.get("x-scalezero-instance", "")
            record.start_tier = headers.get("x-scalezero-start-tier", "")
            if response.status_code != 200:
                body = (await response.aread()).decode("utf-8", "replace")
                record.error = _error_message(body)
                return
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    record.error = _error_message(data)
                    break
                now = time.monotonic()
                choice = (chunk.get("choices") or [{}])[0]
                if choice.get("finish_reason"):
                    record.finish_reason = choice["finish_reason"]
                # llama-cpp-python streams one generated token per chunk; the closing
                # chunk carries only the finish reason.
                if choice.get("finish_reason") is None and "text" in choice:
                    if record.t_first_s is None:
                        record.t_first_s = now
                    record.tokens_out += 1
                    record.token_times_s.append(now)
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        record.t_end_s = time.monotonic()


def _error_message(body: str) -> str:
    try:
        parsed = json.loads(body)
        error = parsed.get("error", parsed)
        message = error.get("message") if isinstance(error, dict) else str(error)
        return str(message)[:300]
    except (ValueError, AttributeError):
        return body[:300]


class _Progress:
    """One status line on stderr, refreshed every few seconds."""

    def __init__(self, records: list[RequestRecord], span_s: float, stream: IO[str]) -> None:
        self.records = records
        self.span_s = span_s
        self.stream = stream

    async def run(self, t0_s: float, interval_s: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.print(t0_s)

    def print(self, t0_s: float) -> None:
        sent = sum(1 for r in self.records if r.t_send_s is not None)
        done = sum(1 for r in self.records if r.t_end_s is not None)
        errors = sum(1 for r in self.records if r.t_end_s is not None and r.error)
        elapsed = time.monotonic() - t0_s
        self.stream.write(
            f"replay: t={elapsed:6.1f}/{self.span_s:.0f} s  sent {sent}/{len(self.records)}  "
            f"done {done}  errors {errors}\n"
        )
        self.stream.flush()


async def replay(
    items: Sequence[ReplayRequest],
    base_url: str,
    model: str,
    suppressed_token_ids: Sequence[int] = (),
    api_key: str | None = None,
    timeout_s: float = 600.0,
    lead_s: float = 0.2,
    progress: IO[str] | None = sys.stderr,
) -> tuple[list[RequestRecord], float]:
    """Send every request at ``t0 + t_sched_s``; return the records and t0 (monotonic)."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    records = [RequestRecord(i.request_id, 0.0, i.max_tokens) for i in items]
    # No client-side connection cap: a pool limit would queue requests here, hiding the
    # server's queueing behind the client's.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(timeout_s, connect=30.0)
    async with httpx.AsyncClient(
        headers=headers, limits=limits, timeout=timeout, trust_env=False
    ) as client:
        url = base_url.rstrip("/") + "/v1/completions"
        t0_s = time.monotonic() + lead_s
        for record, item in zip(records, items, strict=True):
            record.t_sched_s = t0_s + item.t_sched_s
        span_s = max((i.t_sched_s for i in items), default=0.0)
        reporter = _Progress(records, span_s, progress) if progress is not None else None
        ticker = asyncio.create_task(reporter.run(t0_s)) if reporter else None
        try:
            await asyncio.gather(*(
                _one(client, url, item, t0_s, model, suppressed_token_ids, record)
                for item, record in zip(items, records, strict=True)
            ))
        finally:
            if ticker is not None:
                ticker.cancel()
            if reporter is not None:
                reporter.print(t0_s)
    return records, t0_s


def write_requests(records: Sequence[RequestRecord], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REQUEST_COLUMNS)
        for record in sorted(records, key=lambda r: r.request_id):
            writer.writerow(record.row())


def write_tokens(records: Sequence[RequestRecord], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TOKEN_COLUMNS)
        for record in sorted(records, key=lambda r: r.request_id):
            for index, t_s in enumerate(record.token_times_s):
                writer.writerow([record.request_id, index, f"{t_s:.6f}"])
