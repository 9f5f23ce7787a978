"""Fixtures for gateway tests: the real model, a fake model file, gateways in a thread.

A gateway under test runs in this process (uvicorn in a thread, on its own event loop)
so that tests can look at its pool and events directly; its instances are real child
processes, either ``tests/support/fake_instance.py`` (fast) or llama-cpp-python's server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import uvicorn
import yaml

from scalezero.serving.app import Gateway, GatewayConfig, create_app
from scalezero.serving.events import Event
from scalezero.serving.pool import Pool, PoolLimits
from scalezero.serving.settings import GatewaySettings, InstanceSettings, QueueSettings
from scalezero.serving.strategies import make_policy
from scalezero.serving.strategies.base import Policy
from scalezero.system.procs import package_env, signal_group

REPO = Path(__file__).resolve().parents[2]
FAKE_INSTANCE = Path(__file__).resolve().with_name("fake_instance.py")

#: The embedded default model, as the default configuration defines it: tests and the
#: pipeline share one verified copy at the path the workflow's fetch_model rule writes.
_DEFAULT_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
MODEL_NAME: str = _DEFAULT_CONFIG["model"]
MODEL_SPEC: dict[str, Any] = _DEFAULT_CONFIG["models"][MODEL_NAME]
MODEL_BYTES = 98_362_432
MODEL_CACHE = REPO / "resources" / "models" / f"{MODEL_NAME}.gguf"


def fetch_real_model() -> Path:
    """The default model GGUF, fetched once into a cache under the repository.

    ``SCALEZERO_TEST_MODEL`` names a local copy to use instead.
    """
    override = os.environ.get("SCALEZERO_TEST_MODEL")
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"SCALEZERO_TEST_MODEL={override}: no such file")
        return path
    from scalezero.models.sources import fetch_model

    MODEL_CACHE.parent.mkdir(parents=True, exist_ok=True)
    # A lock, so that parallel test runs fetch once; fetch_model writes atomically.
    with open(MODEL_CACHE.parent / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (MODEL_CACHE.is_file() and MODEL_CACHE.stat().st_size == MODEL_BYTES):
            fetch_model(MODEL_NAME, MODEL_SPEC, MODEL_CACHE)
    return MODEL_CACHE


@pytest.fixture(scope="session")
def real_model() -> Path:
    """Path of the real default model (SmolLM2-135M-Instruct, Q4_1)."""
    return fetch_real_model()


@pytest.fixture(scope="session")
def fake_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file that passes the fake instance's GGUF magic check."""
    path = tmp_path_factory.mktemp("fake-model") / "fake-model.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    return path


def fake_command(*extra: str) -> tuple[str, ...]:
    """Instance command running the fake instance (placeholders filled by the launcher)."""
    return (
        "{python}", str(FAKE_INSTANCE), "--host", "{host}", "--port", "{port}",
        "--model", "{model}", "--alias", "{alias}", *extra,
    )


def _process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: Sequence[int], timeout_s: float) -> list[int]:
    """Wait until none of ``pids`` runs; return those still running after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    alive = [pid for pid in pids if not _process_gone(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if not _process_gone(pid)]
    return alive


class RunningGateway:
    """A gateway app served by uvicorn in a background thread, on a free loopback port."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.app = create_app(config)
        self.gateway: Gateway = self.app.state.gateway
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app, log_config=None, log_level="warning", lifespan="on",
                timeout_graceful_shutdown=5,
            )
        )
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True,
            name=f"gateway-{self.port}",
        )
        self.client = httpx.Client(base_url=self.url, timeout=60.0, trust_env=False)
        #: JSON file the fake instances read at start-up (see GatewayFactory).
        self.control_path: Path | None = None
        self._stopped = False

    def start(self, timeout_s: float = 20.0) -> RunningGateway:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("gateway thread exited during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not started after {timeout_s} s")
            time.sleep(0.01)
        return self

    @property
    def pool(self) -> Pool:
        return self.gateway.pools[self.config.deployment]

    @property
    def events(self) -> list[Event]:
        return list(self.gateway.events.events)

    def event_names(self, instance_id: str | None = None) -> list[str]:
        return [e.event for e in self.events if instance_id in (None, e.instance_id)]

    def spawned_pids(self) -> list[int]:
        return [e.pid for e in self.events if e.event == "spawn" and e.pid is not None]

    def wait_for(
        self, predicate: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.02)

    def wait_ready(self, count: int = 1, timeout_s: float = 60.0) -> None:
        self.wait_for(
            lambda: self.client.get("/state").json()["deployments"][self.config.deployment][
                "ready"
            ]
            >= count,
            timeout_s,
            f"{count} ready instance(s)",
        )

    def stop(self) -> None:
        """Stop the server; fail if any instance process it started outlives it."""
        if self._stopped:
            return
        self._stopped = True
        self.client.close()
        self.server.should_exit = True
        self._thread.join(30)
        pids = self.spawned_pids()
        left = wait_gone(pids, 5.0)
        for pid in left:  # never leave processes behind, even when failing
            signal_group(pid, signal.SIGKILL)
        assert not self._thread.is_alive(), "gateway thread did not stop"
        assert not left, f"instance processes outlived the gateway: {left}"


@dataclasses.dataclass
class GatewayFactory:
    """Builds gateways for one test and stops them all at its end."""

    tmp_path: Path
    fake_model: Path
    started: list[RunningGateway] = dataclasses.field(default_factory=list)

    def __call__(
        self,
        policy: str | Policy = "naive",
        *,
        fake_args: Sequence[str] = (),
        fake_env: dict[str, str] | None = None,
        control: dict[str, Any] | None = None,
        real_model: Path | None = None,
        limits: PoolLimits | None = None,
        spec: dict[str, Any] | None = None,
        start: bool = True,
        **config: Any,
    ) -> RunningGateway:
        """A started gateway in front of fake instances (or of the real model if given).

        ``control`` is written to a JSON file the fake instances read at start-up; the
        test may rewrite it (``gw.control_path``) to change what the next instance does.
        """
        control_path = self.tmp_path / f"control-{len(self.started)}.json"
        if control is not None:
            control_path.write_text(json.dumps(control))
        if real_model is not None:
            settings = GatewaySettings(
                model_path=real_model, model_name="smollm2", policy="naive",
                instance=InstanceSettings(n_ctx=512, ready_timeout_s=60.0, stop_grace_s=3.0),
                gateway=QueueSettings(cold_start_timeout_s=60.0, queue_timeout_s=60.0),
            )
        else:
            command = fake_command("--control", str(control_path), *fake_args)
            settings = GatewaySettings(
                model_path=self.fake_model, model_name="fake", policy="naive",
                instance=InstanceSettings(command=tuple(command), ready_timeout_s=60.0,
                                          stop_grace_s=3.0),
                gateway=QueueSettings(cold_start_timeout_s=60.0, queue_timeout_s=60.0),
            )
        base = settings.gateway_config()
        instance_spec = dataclasses.replace(
            base.spec, env={**base.spec.env, **(fake_env or {})}, **(spec or {}))
        if isinstance(policy, str):
            policy = make_policy(policy)
        gateway_config = dataclasses.replace(
            base, spec=instance_spec, policy=policy, limits=limits or base.limits, **config)
        gw = RunningGateway(gateway_config)
        gw.control_path = control_path
        self.started.append(gw)
        return gw.start() if start else gw

    def from_config(self, config: GatewayConfig) -> RunningGateway:
        """A started gateway built from a ready-made config (e.g. from the CLI's parser)."""
        gw = RunningGateway(config)
        self.started.append(gw)
        return gw.start()

    def stop_all(self) -> None:
        errors = []
        for gw in self.started:
            try:
                gw.stop()
            except AssertionError as exc:
                errors.append(str(exc))
        assert not errors, "; ".join(errors)


@pytest.fixture
def make_gateway(tmp_path: Path, fake_model: Path) -> Iterator[GatewayFactory]:
    factory = GatewayFactory(tmp_path, fake_model)
    try:
        yield factory
    finally:
        factory.stop_all()


# ------------------------------------------------------------ a gateway process


class GatewayProcess:
    """``scalezero serve`` as a child process (for what needs a real process: SIGKILL)."""

    def __init__(self, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [sys.executable, "-m", "scalezero.cli", "serve", "--port", str(self.port),
                   *args]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**package_env(), **(env or {})},
            )
        self.instance_pids: set[int] = set()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited ({self.proc.returncode}):\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1.0, trust_env=False).is_success:
                    return
            time.sleep(0.05)
        raise AssertionError(f"gateway not healthy after {timeout_s} s:\n{self.log()}")

    def state(self, headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = httpx.get(self.url + "/state", timeout=5.0, trust_env=False,
                             headers=headers)
        response.raise_for_status()
        state = response.json()
        for pool in state["deployments"].values():
            self.instance_pids.update(i["pid"] for i in pool["instances"] if i["pid"])
        return state

    def stop(self) -> None:
        if self.proc.poll() is None:
            signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for pid in wait_gone(sorted(self.instance_pids), 5.0):
            signal_group(pid, signal.SIGKILL)


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Factory of ``scalezero serve`` child processes, all stopped at the test's end."""
    started: list[GatewayProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> GatewayProcess:
        gp = GatewayProcess(args, tmp_path / f"gateway-{len(started)}.log", env)
        started.append(gp)
        return gp

    try:
        yield start
    finally:
        for gp in started:
            gp.stop()
