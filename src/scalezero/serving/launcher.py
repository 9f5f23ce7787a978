"""Start, watch and stop one instance process (a llama.cpp server).

Two engines: llama-cpp-python's server, run through ``scalezero.serving.instance``,
which prints timed phase markers on stdout; and llama.cpp's own ``llama-server``, which
prints none. Its phases are read from its log on stderr (``NATIVE_PHASE_LINES``), which
it is told to stamp (``--log-prefix --log-timestamps``: time since its log began), and
its readiness is polled from the start (it answers 503 while it loads, 200 once ready).

Warm tiers (the engine side): an instance may give up its model and keep its process
(runtime-warm) with `InstanceProcess.sleep` and load it again with `InstanceProcess.wake`.
The Python engine does it on request (``/scalezero/sleep``, ``/scalezero/wake``, added by
``scalezero.serving.instance``); llama-server sleeps on its own idle timer
(``--sleep-idle-seconds``, see `with_sleep_timer`) and wakes on the next request that needs
its model. Each spawn records whether it starts from the page cache or from storage
(`InstanceProcess.start_tier`), measured from the model file's residency just before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import math
import os
import re
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from scalezero.serving.events import MARKER, Lifecycle, parse_marker
from scalezero.system.pagecache import drop_cached_pages, resident_fraction
from scalezero.system.procs import free_tcp_port, package_env, signal_group

PhaseCallback = Callable[[Lifecycle, float], None]

#: llama-server's log lines (stderr) that mark its start-up phases, as the pinned
#: llama.cpp prints them (tools/server/server-context.cpp, server.cpp): the model load
#: begins (process up, arguments parsed, HTTP socket bound) and ends (weights, context,
#: warm-up and slots done; /health answers 200 right after). A llama.cpp that prints
#: other lines leaves the phases out, nothing more.
NATIVE_PHASE_LINES: tuple[tuple[re.Pattern[str], Lifecycle], ...] = (
    (re.compile(r"^srv\s+load_model: loading model "), Lifecycle.RUNTIME_READY),
    (re.compile(r"^srv\s+llama_server: model loaded\s*$"), Lifecycle.MODEL_LOADED),
)
#: The stamp --log-prefix --log-timestamps puts before a line: minutes.seconds.ms.us
#: since llama-server's log began, then the level letter.
_NATIVE_STAMP = re.compile(r"^(\d+)\.(\d{2})\.(\d{3})\.(\d{3}) [A-Z] (.*)$")


def parse_native_line(line: str) -> tuple[float | None, str]:
    """(seconds since llama-server's log began, or None if unstamped; the message)."""
    match = _NATIVE_STAMP.match(line)
    if match is None:
        return None, line
    minutes, seconds, ms, us = (int(g) for g in match.groups()[:4])
    return minutes * 60 + seconds + ms / 1e3 + us / 1e6, match.group(5)


class InstanceStartError(RuntimeError):
    """The instance did not become ready; the message says why, for the waiting clients."""


class InstanceSleepError(RuntimeError):
    """The instance did not give up its model; the message says why."""


#: The tiers a start can come from: the model file in the page cache (no process), or its
#: pages dropped so that the weights come from storage.
COLD_TIERS = ("host_cached", "disk_cold")
#: A start is counted as ``disk_cold`` when less than this share of the model file's pages
#: is in the page cache just before its spawn: most of the weights then come from storage.
DISK_COLD_BELOW_SHARE = 0.5
#: How long `InstanceProcess.sleep` waits for llama-server's idle timer beyond the timer.
NATIVE_SLEEP_GRACE_S = 10.0
#: Interval of llama-server's /props polls while waiting for it to sleep.
NATIVE_SLEEP_POLL_S = 0.05


def start_tier_of(resident_share: float | None) -> str:
    """``disk_cold`` or ``host_cached`` from the model file's resident share (0..1) just
    before a start; ``unknown`` where the kernel could not be asked."""
    if resident_share is None:
        return "unknown"
    return "disk_cold" if resident_share < DISK_COLD_BELOW_SHARE else "host_cached"


@dataclasses.dataclass
class InstanceSpec:
    """How to run one instance. ``command`` overrides the engine's server.

    A custom ``command`` may use the placeholders ``{python}``, ``{model}``, ``{port}``,
    ``{host}``, ``{n_ctx}`` and ``{alias}``; it is wrapped so that it dies with the gateway.
    ``engine`` is ``llama_cpp_python`` or ``llama_server`` (``server_binary``, with
    ``parallel`` slots of ``n_ctx`` tokens each). Built by ``InstanceSettings.spec``,
    where the defaults are.
    """

    engine: str
    model_path: Path
    model_alias: str
    n_ctx: int
    n_threads: int | None
    n_gpu_layers: int
    extra_args: Sequence[str]
    host: str
    ready_timeout_s: float
    stop_grace_s: float
    health_path: str
    poll_interval_s: float
    log_dir: Path | None
    env: dict[str, str]
    command: Sequence[str] | None
    python: str
    parallel: int
    server_binary: Path | None
    #: llama-server's idle timer: after this long without requests it unloads its model
    #: and keeps its process (None: never). The Python engine sleeps on request instead.
    sleep_idle_s: float | None = None
    #: ``disk_cold``: every start drops the model file's cached pages first.
    cold_tier: str = "host_cached"

    @property
    def native(self) -> bool:
        """Whether this spec runs llama-server (and not a custom command)."""
        return self.engine == "llama_server" and not self.command

    def native_args(self, port: int) -> list[str]:
        """llama-server's arguments. Its context (-c) is shared by its slots, so it gets
        ``n_ctx`` per slot: each request may use ``n_ctx``, as with the Python engine."""
        if self.server_binary is None:
            raise ValueError("the llama_server engine needs server_binary")
        # -1 means "all layers" here (llama-cpp-python's meaning); to llama-server, "auto".
        gpu_layers = "all" if self.n_gpu_layers < 0 else str(self.n_gpu_layers)
        args = [
            # Stamped log lines: the phases are timed by llama-server's own clock.
            str(self.server_binary), "--log-prefix", "--log-timestamps",
            "--model", str(self.model_path),
            "--alias", self.model_alias,
            "--host", self.host,
            "--port", str(port),
            "--ctx-size", str(self.n_ctx * self.parallel),
            "--parallel", str(self.parallel),
            "--n-gpu-layers", gpu_layers,
        ]
        if self.n_threads:
            args += ["--threads", str(self.n_threads)]
        if self.sleep_idle_s is not None:
            # Whole seconds only; 0 would mean "sleep at once", so at least 1.
            args += ["--sleep-idle-seconds", str(max(1, math.ceil(self.sleep_idle_s)))]
        return args

    def build_command(self, port: int, parent_pid: int) -> list[str]:
        if self.command:
            values = {
                "python": self.python,
                "model": str(self.model_path),
                "port": str(port),
                "host": self.host,
                "n_ctx": str(self.n_ctx),
                "alias": self.model_alias,
            }
            command = [part.format(**values) for part in self.command]
            return [
                self.python, "-m", "scalezero.serving.guard", "--parent-pid", str(parent_pid), "--",
                *command,
            ]
        if self.native:
            return [
                self.python, "-m", "scalezero.serving.guard", "--parent-pid", str(parent_pid),
                "--", *self.native_args(port), *self.extra_args,
            ]
        server_args = [
            "--model", str(self.model_path),
            "--model_alias", self.model_alias,
            "--host", self.host,
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_gpu_layers", str(self.n_gpu_layers),
            # The gateway queues requests itself; a new request must never cancel a running one.
            "--interrupt_requests", "False",
            "--verbose", "False",
        ]
        if self.n_threads:
            server_args += ["--n_threads", str(self.n_threads)]
        return [
            self.python, "-m", "scalezero.serving.instance", "--parent-pid", str(parent_pid), "--",
            *server_args, *self.extra_args,
        ]


def with_sleep_timer(spec: InstanceSpec, loaded_ttl_s: float | None) -> InstanceSpec:
    """``spec`` for a policy with a runtime-warm tier: llama-server unloads its model after
    ``loaded_ttl_s`` idle seconds by itself (its sleep cannot be asked for). Other specs,
    and ``loaded_ttl_s`` None, are returned unchanged: the Python engine sleeps on request."""
    if loaded_ttl_s is None or not spec.native:
        return spec
    if loaded_ttl_s < 0:
        raise ValueError("loaded_ttl_s must be >= 0")
    return dataclasses.replace(spec, sleep_idle_s=loaded_ttl_s)


class InstanceProcess:
    """One running instance: its process, its port, its start-up phases."""

    def __init__(self, instance_id: str, spec: InstanceSpec) -> None:
        self.instance_id = instance_id
        self.spec = spec
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.phase_times: dict[str, float] = {}
        self._listening = asyncio.Event()
        self._native_loaded = asyncio.Event()
        # llama-server's phases: its stamps (s since its log began; None: unstamped, then
        # the read time) and the best estimate of when its log began on our clock.
        self._native_stamps: dict[Lifecycle, tuple[float | None, float]] = {}
        self._native_log_start_s = math.inf
        self._native_reported = False
        self._exited = asyncio.Event()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=15)
        self._log: IO[str] | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._on_phase: PhaseCallback | None = None
        #: Where the last start came from (`start_tier_of`), and the model file's resident
        #: share just before its spawn (None: not known). Set by spawn().
        self.start_tier = ""
        self.start_resident_share: float | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.spec.host}:{self.port}"

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def spawn(self, on_phase: PhaseCallback) -> None:
        """Create the process; phases are reported through ``on_phase(name, t_s)``."""
        self._on_phase = on_phase
        self._measure_start_tier()
        self.port = free_tcp_port(self.spec.host)
        command = self.spec.build_command(self.port, os.getpid())
        env = {**package_env(), **self.spec.env, "PYTHONUNBUFFERED": "1"}
        if self.spec.log_dir is not None:
            self.spec.log_dir.mkdir(parents=True, exist_ok=True)
            self._log = (self.spec.log_dir / f"{self.instance_id}.log").open(
                "a", encoding="utf-8", errors="replace"
            )
            self._log.write(f"# {time.monotonic():.6f} {' '.join(command)}\n")
        # The cold start begins before fork/exec, so their cost counts as part of it.
        spawned_at_s = time.monotonic()
        # Spawned from the event-loop thread, which lives as long as the gateway: the
        # parent-death signal fires when the spawning *thread* exits.
        self.proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        on_phase(Lifecycle.SPAWN, spawned_at_s)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read_stdout(self.proc.stdout)),
            asyncio.create_task(self._read_stderr(self.proc.stderr)),
        ]

    def _measure_start_tier(self) -> None:
        """Drop the model file's pages first when the spec asks for disk-cold starts; then
        measure where this start reads the weights from. Measured, not assumed: the pages
        may not drop (another process maps the file) or may have been read since. A file
        that cannot be opened is the instance's to report: the tier is then unknown."""
        try:
            if self.spec.cold_tier == "disk_cold":
                drop_cached_pages(self.spec.model_path)
            self.start_resident_share = resident_fraction(self.spec.model_path)
        except OSError:
            self.start_resident_share = None
        self.start_tier = start_tier_of(self.start_resident_share)

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        while line_bytes := await stream.readline():
            line = line_bytes.decode("utf-8", "replace").rstrip("\n")
            if line.startswith(MARKER):
                marker = parse_marker(line)
                if marker is not None:
                    phase, t_s = marker
                    self.phase_times[phase] = t_s
                    if phase == Lifecycle.LISTENING:
                        self._listening.set()
                    elif self._on_phase is not None:
                        self._on_phase(phase, t_s)
                continue
            self._write_log(line)

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        native = self.spec.native
        while line_bytes := await stream.readline():
            read_s = time.monotonic()
            line = line_bytes.decode("utf-8", "replace").rstrip("\n")
            if native:
                self._native_line(line, read_s)
            self._stderr_tail.append(line)
            self._write_log(line)

    def _native_line(self, line: str, read_s: float) -> None:
        """Note llama-server's phase lines, and when its log began.

        A line is read some time after it was written (the event loop may be busy), never
        before: each stamped line bounds the log's start from above, and the earliest
        bound is the estimate. The phases are reported once the start ends
        (`_report_native_phases`), with the estimate from every line read by then.
        """
        stamp_s, message = parse_native_line(line)
        if stamp_s is not None:
            self._native_log_start_s = min(self._native_log_start_s, read_s - stamp_s)
        for pattern, phase in NATIVE_PHASE_LINES:
            if phase not in self._native_stamps and pattern.match(message):
                self._native_stamps[phase] = (stamp_s, read_s)
                if phase == Lifecycle.MODEL_LOADED:
                    self._native_loaded.set()
                return

    def _report_native_phases(self, ready_s: float | None = None) -> None:
        """Report llama-server's phases seen so far, in order, on the gateway's clock,
        none later than ``ready_s``; once."""
        if self._native_reported:
            return
        self._native_reported = True
        for _, phase in NATIVE_PHASE_LINES:
            if phase not in self._native_stamps:
                continue
            stamp_s, read_s = self._native_stamps[phase]
            t_s = read_s
            if stamp_s is not None and math.isfinite(self._native_log_start_s):
                t_s = self._native_log_start_s + stamp_s
            if ready_s is not None:
                t_s = min(t_s, ready_s)
            self.phase_times[phase] = t_s
            if self._on_phase is not None:
                self._on_phase(phase, t_s)

    def _write_log(self, line: str) -> None:
        if self._log is not None:
            self._log.write(line + "\n")
            self._log.flush()

    def failure_reason(self) -> str:
        lines = [line for line in self._stderr_tail if line.strip()]
        interesting = [
            line for line in lines if any(k in line.lower() for k in ("error", "fail", "exception"))
        ]
        # Indented lines of a traceback are source code; the exception line says more.
        unindented = [line for line in interesting if not line[:1].isspace()]
        return " | ".join((unindented or interesting or lines)[-3:])[:500]

    async def wait_ready(self) -> float:
        """Return the time the server first answered; raise InstanceStartError otherwise.

        Every wait races the process's exit, so a start that fails is reported at once
        (not after a probe's timeout).
        """
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.ready_timeout_s
        fallback_poll = False
        # A custom command may print no phase markers: poll it from the start, until it
        # prints one. Once markers come, wait for `listening`: until then the port may
        # still belong to someone else (a lost race for it), whose answers mean nothing.
        # llama-server binds its port before it loads and answers 503 until it is ready,
        # and prints no `listening` marker: polled from the start, always.
        custom = bool(self.spec.command)
        native = self.spec.native
        url = self.base_url + self.spec.health_path
        exited = asyncio.ensure_future(self.proc.wait())
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(2.0), trust_env=False) as client:
                while True:
                    if exited.done():
                        await self._drain_readers()
                        if native:
                            self._report_native_phases()
                        reason = self.failure_reason() or "no output"
                        raise InstanceStartError(
                            f"instance exited with code {self.proc.returncode} during start: "
                            f"{reason}"
                        )
                    remaining_s = deadline - loop.time()
                    if remaining_s <= 0:
                        if native:
                            self._report_native_phases()
                        raise InstanceStartError(
                            f"instance not ready after {self.spec.ready_timeout_s:g} s"
                        )
                    if native or (custom and not self.phase_times) or fallback_poll or (
                        self._listening.is_set()
                    ):
                        if await self._probe(client, url, exited, remaining_s):
                            ready_s = time.monotonic()
                            if native:
                                ready_s = await self._after_native_load(ready_s, exited)
                            return ready_s
                        await asyncio.wait({exited}, timeout=self.spec.poll_interval_s / 4)
                        continue
                    listening = asyncio.ensure_future(self._listening.wait())
                    await asyncio.wait(
                        {listening, exited},
                        timeout=min(self.spec.poll_interval_s, remaining_s),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    listening.cancel()
                    # Fall back to polling if the marker never comes (e.g. a patched server).
                    loaded_at_s = self.phase_times.get(Lifecycle.MODEL_LOADED, math.inf)
                    if loop.time() - loaded_at_s > 1.0:
                        fallback_poll = True
        finally:
            exited.cancel()

    async def _after_native_load(self, ready_s: float, exited: asyncio.Future[int]) -> float:
        """Report llama-server's phases once it answered ready at ``ready_s``.

        It marks itself ready, then logs "model loaded" through its log thread: a probe
        can win that race by a moment. Wait that moment (at most a second) for the line;
        only when its first phase line came (a llama-server that prints other lines is
        not waited for).
        """
        if Lifecycle.RUNTIME_READY in self._native_stamps and not self._native_loaded.is_set():
            loaded = asyncio.ensure_future(self._native_loaded.wait())
            pending: set[asyncio.Future[Any]] = {loaded, exited}
            await asyncio.wait(pending, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            loaded.cancel()
        self._report_native_phases(ready_s)
        return ready_s

    @staticmethod
    async def _probe(
        client: httpx.AsyncClient, url: str, exited: asyncio.Future[int], timeout_s: float
    ) -> bool:
        """One readiness request; False on no answer, a non-200 answer, or the process's exit."""
        probe = asyncio.ensure_future(client.get(url))
        pending: set[asyncio.Future[Any]] = {probe, exited}
        await asyncio.wait(pending, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if not probe.done():
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
            return False
        error = probe.exception()
        if error is None:
            return probe.result().status_code == 200
        if isinstance(error, httpx.TransportError):
            return False
        raise error

    async def wait_exit(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        await self._drain_readers()
        return code

    async def _drain_readers(self) -> None:
        if self._readers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*self._readers), timeout=2.0)

    async def stop(self) -> int | None:
        """SIGTERM the instance's process group; SIGKILL after the grace period."""
        if self.proc is None:
            return None
        pgid = self.proc.pid
        if self.proc.returncode is None:
            signal_group(pgid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), self.spec.stop_grace_s)
        signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), self.spec.stop_grace_s)
        await self._drain_readers()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    # Warm tiers: the engine side.
    @property
    def supports_sleep(self) -> bool:
        """Whether the instance can give up its model and keep its process: both engines
        can; a custom command cannot be asked."""
        return not self.spec.command

    async def sleep(self) -> None:
        """Unload the model, keep the process; raise InstanceSleepError on failure.

        The Python engine is asked (``POST /scalezero/sleep``). llama-server sleeps on its
        own idle timer (`with_sleep_timer`): its /props is polled until it says it sleeps,
        for at most the timer plus `NATIVE_SLEEP_GRACE_S`.
        """
        if not self.supports_sleep:
            raise InstanceSleepError("a custom instance command cannot sleep")
        if self.returncode is not None or self.proc is None:
            raise InstanceSleepError("the instance is not running")
        async with httpx.AsyncClient(base_url=self.base_url, trust_env=False,
                                     timeout=httpx.Timeout(self.spec.ready_timeout_s)) as client:
            try:
                if self.spec.native:
                    await self._wait_native_sleep(client)
                    return
                response = await client.post("/scalezero/sleep")
            except httpx.HTTPError as exc:
                raise InstanceSleepError(f"sleep request failed: {exc!r}") from exc
        if response.status_code != 200:
            raise InstanceSleepError(
                f"sleep answered HTTP {response.status_code}: {response.text[:200]}")

    async def _wait_native_sleep(self, client: httpx.AsyncClient) -> None:
        if self.spec.sleep_idle_s is None:
            raise InstanceSleepError("llama-server runs without --sleep-idle-seconds")
        timer_s = max(1, math.ceil(self.spec.sleep_idle_s))
        deadline_s = time.monotonic() + timer_s + NATIVE_SLEEP_GRACE_S
        while True:
            if self.returncode is not None:
                raise InstanceSleepError(f"instance exited with code {self.returncode}")
            response = await client.get("/props")
            if response.status_code == 200 and response.json().get("is_sleeping") is True:
                return
            if time.monotonic() > deadline_s:
                raise InstanceSleepError(
                    f"llama-server not sleeping {timer_s + NATIVE_SLEEP_GRACE_S:g} s after "
                    f"its {timer_s} s idle timer began at the latest (/props answered "
                    f"{response.status_code})")
            await asyncio.sleep(NATIVE_SLEEP_POLL_S)

    async def wake(self) -> float:
        """Load the model again; return time.monotonic() once it is ready; raise
        InstanceStartError on failure. Python engine: ``POST /scalezero/wake``;
        llama-server: ``POST /tokenize``, which it answers once it has reloaded."""
        if not self.supports_sleep:
            raise InstanceStartError("a custom instance command cannot wake")
        if self.returncode is not None or self.proc is None:
            raise InstanceStartError("the instance is not running")
        if self.spec.native:
            path, body = "/tokenize", {"content": "a"}
        else:
            path, body = "/scalezero/wake", {}
        try:
            async with httpx.AsyncClient(
                base_url=self.base_url, trust_env=False,
                timeout=httpx.Timeout(self.spec.ready_timeout_s),
            ) as client:
                response = await client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise InstanceStartError(f"wake failed: {exc!r}") from exc
        if response.status_code != 200:
            raise InstanceStartError(
                f"wake answered HTTP {response.status_code}: {response.text[:200]}")
        return time.monotonic()
