"""``scalezero bench tiers|engines|summary``: the warm tiers and the two engines.

An idle instance can sit in one of four tiers, from the quickest to serve to the
cheapest to hold:

* ``loaded``: process up, model loaded (a warm instance);
* ``runtime_warm``: process up, llama.cpp initialised, no model; a wake loads the
  weights and creates the context (`InstanceProcess.sleep` / `wake`);
* ``host_cached``: no process, the model file in the page cache (a cold start);
* ``disk_cold``: no process, the file's cached pages dropped, so the weights come from
  storage.

``bench tiers`` measures, per available engine and repeat, a disk-cold start, a
host-cached start and a runtime-warm wake (each timed to ready and to the first token of
one tiny request), the memory each tier holds (RSS of the instance's processes, through
the process telemetry; GPU memory through NVML with device cuda) and the idle power of
the device in each tier where a source exists (NVML on a GPU, RAPL on a CPU; otherwise
empty and ``energy_source`` ``none``). It also measures the model file's read bandwidth
on the same host (`measure_read_bandwidth`), which predicts the disk-cold minus
host-cached difference as ``file bytes / cold bandwidth - file bytes / cached bandwidth``.

``bench engines`` runs each engine always-on and sends it 1, 4 and 8 concurrent
closed-loop clients, straight to the instance (no gateway): TTFT p50/p99 and completion
tokens per second over the wall time. llama-server gets as many slots (``--parallel``)
as clients; llama-cpp-python's server answers one request at a time.

Both engines get the same CPU threads (`bench_threads`): left to themselves they differ
(llama-cpp-python takes half the cores, llama-server all of them), and the comparison
would be of thread counts.

``bench summary`` states the goal checks from both tables (`summarize`).

An engine that is not there (llama-server not built) is recorded in the rows with the
reason, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from scalezero.errors import UserError
from scalezero.measure.sweep import MIB, measure_read_bandwidth
from scalezero.serving.launcher import InstanceProcess, InstanceSpec, with_sleep_timer
from scalezero.serving.settings import DEVICES, ENGINES, InstanceSettings
from scalezero.system.engine_build import native_server
from scalezero.system.layout import default_model
from scalezero.system.pagecache import drop_cached_pages, page_cache_residency
from scalezero.telemetry.procs import DEFAULT_INSTANCE_MATCH, InstanceTracker

TIERS = ("loaded", "runtime_warm", "host_cached", "disk_cold")
TIER_COLUMNS = (
    "engine", "tier", "repeat", "status", "reason", "wake_s", "first_token_s", "rss_mib",
    "gpu_mib", "page_cache_mib", "idle_power_w", "energy_source", "start_tier",
    "resident_share", "n_threads", "device", "model", "file_bytes",
)
ENGINE_COLUMNS = (
    "engine", "clients", "requests", "status", "reason", "path", "slots", "ttft_p50_ms",
    "ttft_p99_ms", "throughput_tok_s", "completion_tokens", "wall_s", "max_tokens",
    "n_threads", "device", "model",
)
#: Goals: a runtime-warm wake takes at most this share of a host-cached start; the
#: measured disk-cold minus host-cached difference is within this share of the bandwidth
#: prediction; llama-server's throughput at the most clients is this many times Python's.
WAKE_SHARE_GOAL = 0.5
PREDICTION_TOLERANCE = 0.2
NATIVE_THROUGHPUT_GOAL = 2.0
#: llama-server sleeps on its own timer: long enough for the loaded tier's measurement
#: (`IDLE_WINDOW_S` of idle power, the memory) to finish before it fires.
NATIVE_SLEEP_TIMER_S = 3.0
#: Idle power is averaged over this window in each tier.
IDLE_WINDOW_S = 1.0
TINY_PROMPT = "Hello"
ENGINE_PROMPT = "Once upon a time, in a small village by the sea, there lived"
BENCH_N_CTX = 512
READ_REPEATS = 3

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class EngineChoice:
    """One engine of the comparison: its spec (None: not there, ``reason`` says why)."""

    engine: str
    spec: InstanceSpec | None
    reason: str


@dataclasses.dataclass
class TierProbe:
    """What one tier was measured to hold and cost."""

    rss_mib: float | None = None
    gpu_mib: float | None = None
    idle_power_w: float | None = None
    energy_source: str = "none"


def bench_threads(n_threads: int | None) -> int:
    """The CPU threads every engine gets: ``n_threads``, else half the cores (at least
    one), which is llama-cpp-python's own default."""
    return n_threads or max(1, (os.cpu_count() or 1) // 2)


def engine_choices(model: Path, device: str, gpu_index: int | None, n_threads: int | None,
                   engines: Sequence[str] = ENGINES, parallel: int = 1) -> list[EngineChoice]:
    """The engines to measure; llama-server without its binary comes back with the reason."""
    choices = []
    for engine in engines:
        if engine == "llama_server":
            found = native_server()
            if found.path is None:
                choices.append(EngineChoice(engine, None, f"not built: {found.reason}"))
                continue
        settings = InstanceSettings(engine=engine, n_ctx=BENCH_N_CTX,
                                    n_threads=n_threads, ready_timeout_s=120.0,
                                    stop_grace_s=3.0)
        spec = settings.spec(model.resolve(), "bench", device=device, gpu_index=gpu_index,
                             log_dir=None, parallel=parallel)
        choices.append(EngineChoice(engine, spec, ""))
    return choices


# ------------------------------------------------------------------ measuring one tier


class DeviceProbe:
    """Memory and idle power of the instance's processes and the device they run on."""

    def __init__(self, device: str, gpu_index: int | None) -> None:
        self.device = device
        self._nvml: Any = None
        self._host: Any = None
        if device == "cuda":
            from scalezero.telemetry.nvml import NvmlSource

            self._nvml = NvmlSource(gpu_index)
        else:
            from scalezero.telemetry.host import HostSource

            host = HostSource()
            self._host = host if host.energy_source == "rapl" else None

    def close(self) -> None:
        for source in (self._nvml, self._host):
            if source is not None:
                source.close()

    def measure(self, instance_match: str | None, window_s: float = IDLE_WINDOW_S
                ) -> TierProbe:
        """RSS of the instance processes under this process whose command line holds
        ``instance_match`` (None: no process; 0 MiB), GPU memory of the same processes,
        and the device's mean power over ``window_s`` idle seconds."""
        probe = TierProbe(rss_mib=0.0)
        pids: frozenset[int] = frozenset()
        if instance_match is not None:
            snapshot = InstanceTracker(os.getpid(), instance_match=instance_match).scan()
            probe.rss_mib = snapshot.rss_mib
            pids = snapshot.pids
        if self._nvml is not None:
            probe.gpu_mib = self._nvml.instance_gpu_mem_mib(pids) if pids else 0.0
            readings = []
            end_s = time.monotonic() + window_s
            while time.monotonic() < end_s:
                power_w, source = self._nvml.read_power_w()
                if power_w is not None:
                    readings.append(power_w)
                    probe.energy_source = source
                time.sleep(0.05)
            probe.idle_power_w = statistics.fmean(readings) if readings else None
        elif self._host is not None:
            t0_s, e0_mj = self._host.read_energy_mj()
            time.sleep(window_s)
            t1_s, e1_mj = self._host.read_energy_mj()
            if e0_mj is not None and e1_mj is not None and t1_s > t0_s:
                probe.idle_power_w = (e1_mj - e0_mj) / 1000.0 / (t1_s - t0_s)
                probe.energy_source = "rapl"
        return probe


def instance_match_of(spec: InstanceSpec) -> str:
    """What the instance's command line holds (the process telemetry's marker)."""
    if spec.native and spec.server_binary is not None:
        return str(spec.server_binary)
    return DEFAULT_INSTANCE_MATCH


async def first_token_s(base_url: str, max_tokens: int = 1, prompt: str = TINY_PROMPT,
                        timeout_s: float = 120.0) -> float:
    """Send one streamed completion; return time.monotonic() of its first token with text."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True}
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, trust_env=False) as client:
        async for t_s, _ in _stream_tokens(client, body):
            return t_s
    raise RuntimeError("the stream carried no token")


async def _stream_tokens(client: httpx.AsyncClient, body: dict[str, Any]
                         ) -> AsyncIterator[tuple[float, str]]:
    """(time.monotonic(), text) of each streamed chunk that carries text."""
    async with client.stream("POST", "/v1/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if data.strip() == "[DONE]":
                return
            chunk = json.loads(data)
            choices = chunk.get("choices") or [{}]
            text = choices[0].get("text")
            if text:
                yield time.monotonic(), text


@contextlib.asynccontextmanager
async def running(spec: InstanceSpec, instance_id: str) -> AsyncIterator[tuple[InstanceProcess,
                                                                                float, float]]:
    """A started instance, (it, its spawn time, its ready time); always stopped."""
    instance = InstanceProcess(instance_id, spec)
    spawned: dict[str, float] = {}

    def on_phase(phase: str, t_s: float) -> None:
        spawned.setdefault(str(phase), t_s)

    try:
        await instance.spawn(on_phase)
        ready_s = await instance.wait_ready()
        yield instance, spawned["spawn"], ready_s
    finally:
        await instance.stop()


def _row(engine: str, tier: str, repeat: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TIER_COLUMNS)
    row.update(engine=engine, tier=tier, repeat=repeat, status="ok", reason="")
    row.update(values)
    return row


async def measure_engine_tiers(choice: EngineChoice, repeats: int, probe: DeviceProbe,
                               model: Path, progress: Progress) -> list[dict[str, Any]]:
    """Each tier of one engine, ``repeats`` times (rows of `TIER_COLUMNS`)."""
    assert choice.spec is not None
    engine = choice.engine
    # llama-server's sleep is its own idle timer; the Python engine sleeps on request.
    base = with_sleep_timer(choice.spec, NATIVE_SLEEP_TIMER_S)
    match = instance_match_of(base)
    file_mib = model.stat().st_size / MIB
    rows = []
    for repeat in range(1, repeats + 1):
        for tier in ("disk_cold", "host_cached"):
            spec = dataclasses.replace(base, cold_tier=tier)
            # Idle in this tier: no process; the file's pages as they are just before.
            if tier == "disk_cold":
                drop_cached_pages(model)
            share = page_cache_residency(model)["resident_share"]
            idle = await asyncio.to_thread(probe.measure, None)
            async with running(spec, f"{engine}-{tier}-{repeat}") as (instance, spawn_s,
                                                                      ready_s):
                token_s = await first_token_s(instance.base_url)
                rows.append(_row(
                    engine, tier, repeat, wake_s=ready_s - spawn_s,
                    first_token_s=token_s - spawn_s, rss_mib=idle.rss_mib,
                    gpu_mib=idle.gpu_mib,
                    page_cache_mib=None if math.isnan(share) else share * file_mib,
                    idle_power_w=idle.idle_power_w, energy_source=idle.energy_source,
                    start_tier=instance.start_tier,
                    resident_share=instance.start_resident_share))
                progress(f"bench tiers: {engine} {tier} #{repeat}: ready "
                         f"{ready_s - spawn_s:.3f} s, first token {token_s - spawn_s:.3f} s "
                         f"(measured start tier {instance.start_tier})")
                if tier != "host_cached":
                    continue
                loaded = await asyncio.to_thread(probe.measure, match)
                rows.append(_row(
                    engine, "loaded", repeat, wake_s=0.0, first_token_s=None,
                    rss_mib=loaded.rss_mib, gpu_mib=loaded.gpu_mib,
                    idle_power_w=loaded.idle_power_w, energy_source=loaded.energy_source))
                progress(f"bench tiers: {engine} loaded #{repeat}: {loaded.rss_mib:.1f} MiB")
                await instance.sleep()
                warm = await asyncio.to_thread(probe.measure, match)
                woke_from_s = time.monotonic()
                awake_s = await instance.wake()
                token_s = await first_token_s(instance.base_url)
                rows.append(_row(
                    engine, "runtime_warm", repeat, wake_s=awake_s - woke_from_s,
                    first_token_s=token_s - woke_from_s, rss_mib=warm.rss_mib,
                    gpu_mib=warm.gpu_mib, idle_power_w=warm.idle_power_w,
                    energy_source=warm.energy_source))
                progress(f"bench tiers: {engine} runtime_warm #{repeat}: wake "
                         f"{awake_s - woke_from_s:.3f} s, {warm.rss_mib:.1f} MiB asleep")
    return rows


def absent_rows(choice: EngineChoice, columns: Sequence[str], keys: Iterable[Mapping[str, Any]]
                ) -> list[dict[str, Any]]:
    """Rows saying that an engine was not there, and why."""
    rows = []
    for key in keys:
        row: dict[str, Any] = dict.fromkeys(columns)
        row.update(engine=choice.engine, status="absent", reason=choice.reason, **key)
        rows.append(row)
    return rows


def run_tiers(model: Path, out_dir: Path, *, repeats: int, device: str,
              gpu_index: int | None, n_threads: int | None, engines: Sequence[str],
              progress: Progress) -> tuple[Path, Path]:
    """Measure every tier of every engine and the read bandwidth; write ``tiers.csv`` and
    ``read_bandwidth.json`` in ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n_threads = bench_threads(n_threads)
    common = {"device": device, "model": model.name, "file_bytes": model.stat().st_size,
              "n_threads": n_threads}
    rows: list[dict[str, Any]] = []
    probe = DeviceProbe(device, gpu_index)
    # A private copy of the model: pages that another process maps (another run serving
    # the same file) cannot be dropped, and a disk-cold start would not be one.
    with tempfile.TemporaryDirectory(prefix=".bench-model-", dir=out_dir) as tmp:
        private = Path(tmp) / model.name
        shutil.copyfile(model, private)
        try:
            for choice in engine_choices(private, device, gpu_index, n_threads, engines):
                if choice.spec is None:
                    progress(f"bench tiers: {choice.engine}: {choice.reason}")
                    rows += absent_rows(choice, TIER_COLUMNS,
                                        [{"tier": tier, "repeat": None} for tier in TIERS])
                    continue
                rows += asyncio.run(measure_engine_tiers(choice, repeats, probe, private,
                                                         progress))
        finally:
            probe.close()
        progress(f"bench tiers: read bandwidth of {model.name}")
        bandwidth = measure_read_bandwidth(private, repeats=READ_REPEATS)
    bandwidth["path"] = str(model)
    tiers_csv = write_csv(out_dir / "tiers.csv", TIER_COLUMNS,
                          [{**row, **common} for row in rows])
    bandwidth_json = out_dir / "read_bandwidth.json"
    bandwidth_json.write_text(json.dumps(_jsonable(bandwidth), indent=2) + "\n")
    return tiers_csv, bandwidth_json


# ------------------------------------------------------------------ engines


async def closed_loop(base_url: str, clients: int, requests_per_client: int,
                      max_tokens: int) -> tuple[list[float], int, float]:
    """``clients`` clients, each sending its requests one after the other.

    Returns every request's TTFT (s), the completion tokens (streamed chunks with text)
    and the wall time from the first send to the last answer's end.
    """
    body = {"prompt": ENGINE_PROMPT, "max_tokens": max_tokens, "temperature": 0.0,
            "seed": 1, "stream": True}
    ttfts: list[float] = []
    tokens = [0]

    async def client_loop(client: httpx.AsyncClient) -> None:
        for _ in range(requests_per_client):
            sent_s = time.monotonic()
            first = None
            async for t_s, _text in _stream_tokens(client, body):
                if first is None:
                    first = t_s
                tokens[0] += 1
            if first is None:
                raise RuntimeError("a stream carried no token")
            ttfts.append(first - sent_s)

    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(base_url=base_url, timeout=600.0, trust_env=False,
                                 limits=limits) as client:
        started_s = time.monotonic()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall_s = time.monotonic() - started_s
    return ttfts, tokens[0], wall_s


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks; NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def engine_row(engine: str, clients: int, slots: int, ttfts_s: Sequence[float], tokens: int,
               wall_s: float, max_tokens: int) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ENGINE_COLUMNS)
    row.update(
        engine=engine, clients=clients, requests=len(ttfts_s), status="ok", reason="",
        path="direct", slots=slots,
        ttft_p50_ms=percentile(ttfts_s, 50) * 1000.0,
        ttft_p99_ms=percentile(ttfts_s, 99) * 1000.0,
        throughput_tok_s=tokens / wall_s if wall_s > 0 else math.nan,
        completion_tokens=tokens, wall_s=wall_s, max_tokens=max_tokens)
    return row


async def _engine_level(spec: InstanceSpec, engine: str, clients: int,
                        requests_per_client: int, max_tokens: int) -> dict[str, Any]:
    async with running(spec, f"{engine}-c{clients}") as (instance, _spawn_s, _ready_s):
        # One request first, not counted: the first one on a fresh instance costs more.
        await first_token_s(instance.base_url)
        ttfts, tokens, wall_s = await closed_loop(instance.base_url, clients,
                                                  requests_per_client, max_tokens)
    slots = spec.parallel if spec.native else 1
    return engine_row(engine, clients, slots, ttfts, tokens, wall_s, max_tokens)


def run_engines(model: Path, out_dir: Path, *, clients: Sequence[int],
                requests_per_client: int, max_tokens: int, device: str,
                gpu_index: int | None, n_threads: int | None, engines: Sequence[str],
                progress: Progress) -> Path:
    """Each engine always-on under each number of clients; write ``engines.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n_threads = bench_threads(n_threads)
    rows: list[dict[str, Any]] = []
    for level in clients:
        for choice in engine_choices(model, device, gpu_index, n_threads, engines,
                                     parallel=level):
            if choice.spec is None:
                progress(f"bench engines: {choice.engine}: {choice.reason}")
                rows += absent_rows(choice, ENGINE_COLUMNS, [{"clients": level}])
                continue
            row = asyncio.run(_engine_level(choice.spec, choice.engine, level,
                                            requests_per_client, max_tokens))
            rows.append(row)
            progress(f"bench engines: {choice.engine} x{level} clients: TTFT p50 "
                     f"{row['ttft_p50_ms']:.0f} ms, p99 {row['ttft_p99_ms']:.0f} ms, "
                     f"{row['throughput_tok_s']:.1f} tok/s")
    common = {"device": device, "model": model.name, "n_threads": n_threads}
    return write_csv(out_dir / "engines.csv", ENGINE_COLUMNS,
                     [{**row, **common} for row in rows])


# ------------------------------------------------------------------ the goal checks


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _median_of(rows: Iterable[Mapping[str, Any]], engine: str, tier: str, column: str
               ) -> float | None:
    """Median of ``column`` over an engine's measured rows of ``tier``. A start counts for
    its tier only when it was measured to come from it (``start_tier``): a disk-cold start
    whose pages could not be dropped is no disk-cold start."""
    values = [v for row in rows if row["engine"] == engine and row["tier"] == tier
              and row.get("status") == "ok"
              and (tier not in ("disk_cold", "host_cached") or row.get("start_tier") == tier)
              and (v := _number(row.get(column))) is not None]
    return statistics.median(values) if values else None


def _range_of(rows: Iterable[Mapping[str, Any]], engine: str, tier: str, column: str
              ) -> float | None:
    """Largest minus smallest of the values `_median_of` takes the median of."""
    values = [v for row in rows if row["engine"] == engine and row["tier"] == tier
              and row.get("status") == "ok" and row.get("start_tier") == tier
              and (v := _number(row.get(column))) is not None]
    return max(values) - min(values) if len(values) > 1 else None


def summarize(tier_rows: Sequence[Mapping[str, Any]], engine_rows: Sequence[Mapping[str, Any]],
              bandwidth: Mapping[str, Any]) -> dict[str, Any]:
    """The three goal checks from the tables (rows as read from the CSVs) and the read
    bandwidth: per engine, the runtime-warm wake against the host-cached start and the
    disk-cold minus host-cached difference against the bandwidth prediction; the
    engines' throughput ratio at the most clients both were measured with."""
    file_bytes = _number(bandwidth.get("file_bytes"))
    cold_mib_s = _number(bandwidth.get("cold_read_mib_s"))
    cached_mib_s = _number(bandwidth.get("page_cache_read_mib_s"))
    predicted_s = None
    if file_bytes and cold_mib_s and cached_mib_s:
        file_mib = file_bytes / MIB
        predicted_s = file_mib / cold_mib_s - file_mib / cached_mib_s
    engines = sorted({str(row["engine"]) for row in tier_rows})
    wake: dict[str, Any] = {}
    disk: dict[str, Any] = {}
    for engine in engines:
        warm_s = _median_of(tier_rows, engine, "runtime_warm", "wake_s")
        cached_s = _median_of(tier_rows, engine, "host_cached", "wake_s")
        cold_s = _median_of(tier_rows, engine, "disk_cold", "wake_s")
        if warm_s is None or cached_s is None or cached_s <= 0:
            reason = next((str(r["reason"]) for r in tier_rows
                           if r["engine"] == engine and r.get("reason")), "not measured")
            wake[engine] = {"met": None, "reason": reason}
            disk[engine] = {"met": None, "reason": reason}
            continue
        share = warm_s / cached_s
        wake[engine] = {"runtime_warm_wake_s": warm_s, "host_cached_start_s": cached_s,
                        "share": share, "goal_share": WAKE_SHARE_GOAL,
                        "met": share <= WAKE_SHARE_GOAL}
        measured_s = None if cold_s is None else cold_s - cached_s
        # The starts' own spread: a predicted difference well below it cannot be seen.
        entry: dict[str, Any] = {"disk_cold_start_s": cold_s, "host_cached_start_s": cached_s,
                                 "host_cached_range_s": _range_of(tier_rows, engine,
                                                                  "host_cached", "wake_s"),
                                 "measured_difference_s": measured_s,
                                 "predicted_difference_s": predicted_s,
                                 "tolerance": PREDICTION_TOLERANCE, "met": None}
        if measured_s is None:
            entry["reason"] = "no start was measured to read from storage (pages not dropped)"
        elif predicted_s is None:
            entry["reason"] = "no read bandwidth"
        elif measured_s is not None and predicted_s is not None and predicted_s > 0:
            error = (measured_s - predicted_s) / predicted_s
            entry.update(relative_error=error, met=abs(error) <= PREDICTION_TOLERANCE)
        elif predicted_s is not None and predicted_s <= 0:
            entry["reason"] = "the cold read is no slower than the cached one here"
        disk[engine] = entry
    return {
        "read_bandwidth": dict(bandwidth),
        "runtime_warm_wake": wake,
        "disk_cold_prediction": disk,
        "native_throughput": throughput_goal(engine_rows),
    }


def throughput_goal(engine_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """llama-server's throughput over Python's at the most clients both were measured with."""
    measured: dict[str, dict[int, float]] = {}
    for row in engine_rows:
        value = _number(row.get("throughput_tok_s"))
        if row.get("status") == "ok" and value is not None:
            measured.setdefault(str(row["engine"]), {})[int(row["clients"])] = value
    native, python = measured.get("llama_server", {}), measured.get("llama_cpp_python", {})
    both = sorted(native.keys() & python.keys())
    if not both:
        reasons = sorted({str(r["reason"]) for r in engine_rows
                          if r.get("status") != "ok" and r.get("reason")})
        return {"met": None, "reason": "; ".join(reasons) or "not measured"}
    clients = both[-1]
    ratio = native[clients] / python[clients] if python[clients] > 0 else math.inf
    return {"clients": clients, "native_tok_s": native[clients],
            "python_tok_s": python[clients], "ratio": ratio,
            "goal_ratio": NATIVE_THROUGHPUT_GOAL, "met": ratio >= NATIVE_THROUGHPUT_GOAL}


def read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_summary(tiers_csv: Path, engines_csv: Path, bandwidth_json: Path, out: Path) -> Path:
    """The goal checks; the tier bench's files are required, the engine bench's not (its
    check then says it could not be made)."""
    for needed in (tiers_csv, bandwidth_json):
        if not needed.is_file():
            raise UserError(f"{needed} not found: run `scalezero bench tiers` first")
    bandwidth = json.loads(bandwidth_json.read_text(encoding="utf-8"))
    engine_rows = read_csv(engines_csv) if engines_csv.is_file() else []
    summary = summarize(read_csv(tiers_csv), engine_rows, bandwidth)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(summary), indent=2) + "\n", encoding="utf-8")
    return out


def _jsonable(value: Any) -> Any:
    """NaN and infinities as null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
    return path


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


# ------------------------------------------------------------------ command line


def _progress(quiet: bool) -> Progress:
    def say(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)
    return say


def _model(args: argparse.Namespace) -> Path:
    model = Path(args.model)
    if not model.is_file():
        raise UserError(f"--model: file not found: {model}")
    return model


def tiers_cli(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise UserError("--repeats must be >= 1")
    run_tiers(_model(args), Path(args.out_dir), repeats=args.repeats, device=args.device,
              gpu_index=args.gpu_index, n_threads=args.n_threads, engines=args.engines,
              progress=_progress(args.quiet))
    return 0


def engines_cli(args: argparse.Namespace) -> int:
    if args.requests_per_client < 1 or args.max_tokens < 1 or min(args.clients) < 1:
        raise UserError("--clients, --requests-per-client and --max-tokens must be >= 1")
    run_engines(_model(args), Path(args.out_dir), clients=args.clients,
                requests_per_client=args.requests_per_client, max_tokens=args.max_tokens,
                device=args.device, gpu_index=args.gpu_index, n_threads=args.n_threads,
                engines=args.engines, progress=_progress(args.quiet))
    return 0


def summary_cli(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    out = write_summary(folder / "tiers.csv", folder / "engines.csv",
                        folder / "read_bandwidth.json", Path(args.out or folder / "summary.json"))
    print(out.read_text(encoding="utf-8"), end="")
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``scalezero bench tiers|engines|summary``."""
    from scalezero.serving.cli import HelpFormatter

    parser = subparsers.add_parser(
        "bench", help="measure the warm tiers and compare the engines",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="bench_command", metavar="WHAT", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--model", default=str(default_model()), metavar="PATH",
                         help="GGUF model to serve")
        sub.add_argument("--out-dir", default="results/tiers", metavar="DIR",
                         help="where the CSV goes")
        sub.add_argument("--device", choices=DEVICES, default="cpu", help="where instances run")
        sub.add_argument("--gpu-index", type=int, default=None, metavar="N",
                         help="GPU of the instances with cuda (unset: all visible)")
        sub.add_argument("--n-threads", type=int, default=None, metavar="N",
                         help="CPU threads of every engine's instance (unset: half the "
                         "cores, the same for both engines)")
        sub.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES),
                         help="engines to measure (one not built is recorded as absent)")
        sub.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    tiers = commands.add_parser(
        "tiers", help="disk-cold and host-cached starts, runtime-warm wakes, memory, power",
        formatter_class=HelpFormatter)
    common(tiers)
    tiers.add_argument("--repeats", type=int, default=3, metavar="N",
                       help="measurements of each tier per engine")
    tiers.set_defaults(func=tiers_cli)

    engines = commands.add_parser(
        "engines", help="always-on TTFT and throughput of each engine under concurrent clients",
        formatter_class=HelpFormatter)
    common(engines)
    engines.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8], metavar="N",
                         help="numbers of concurrent closed-loop clients")
    engines.add_argument("--requests-per-client", type=int, default=3, metavar="N",
                         help="requests each client sends, one after the other")
    engines.add_argument("--max-tokens", type=int, default=16, metavar="N",
                         help="output tokens per request")
    engines.set_defaults(func=engines_cli)

    summary = commands.add_parser(
        "summary", help="the goal checks from tiers.csv, engines.csv and read_bandwidth.json",
        formatter_class=HelpFormatter)
    summary.add_argument("--dir", default="results/tiers", metavar="DIR",
                         help="folder holding the bench's outputs")
    summary.add_argument("--out", default=None, metavar="PATH",
                         help="summary JSON (unset: DIR/summary.json)")
    summary.set_defaults(func=summary_cli)
