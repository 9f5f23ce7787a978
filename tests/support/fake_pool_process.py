"""An in-memory instance process for pool tests: it starts, wakes, fails and dies when
the test says so (``pool.InstanceHandle``, no process behind it).

Switches (class attributes, the defaults of every new one; or set on one instance):

- ``auto``: a start (and a wake) finishes at once; else the test calls ``finish_start``
  (``finish_wake``), with an error to make it fail;
- ``numbered_pids``: pid 1000 + the number in the instance id (else None: no process to
  measure);
- ``supports_sleep``: the pool may put it runtime-warm; ``sleep_error``: ``sleep()`` raises
  that (the unload failed);
- ``start_tier``: what ``spawn`` reports the start began from.

``made`` lists every one made since the test reset it; ``sleeps`` and ``wakes`` count the
calls on each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, ClassVar

from scalezero.serving.events import Lifecycle
from scalezero.serving.launcher import InstanceSpec, InstanceStartError


class FakeProcess:
    made: ClassVar[list[FakeProcess]] = []
    auto: ClassVar[bool] = False
    numbered_pids: ClassVar[bool] = True
    supports_sleep: bool = False
    sleep_error: str | None = None
    start_tier: str = "host_cached"

    def __init__(self, instance_id: str, spec: InstanceSpec) -> None:
        loop = asyncio.get_running_loop()
        self.instance_id = instance_id
        self.spec = spec
        self.port = 0
        digits = "".join(ch for ch in instance_id if ch.isdigit())
        self.pid: int | None = 1000 + int(digits) if self.numbered_pids and digits else None
        self.proc: Any = None
        self.phase_times: dict[str, float] = {}
        self.started: asyncio.Future[str | None] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()
        self.woken: asyncio.Future[str | None] | None = None
        self.sleeps = 0
        self.wakes = 0
        if self.auto:
            self.started.set_result(None)
        FakeProcess.made.append(self)

    async def spawn(self, on_phase: Callable[[str, float], None]) -> None:
        on_phase(Lifecycle.SPAWN, time.monotonic())

    async def wait_ready(self) -> float:
        await asyncio.wait({self.started, self.exited}, return_when=asyncio.FIRST_COMPLETED)
        if self.exited.done():
            raise InstanceStartError("instance exited during start")
        error = self.started.result()
        if error is not None:
            raise InstanceStartError(error)
        return time.monotonic()

    async def wait_exit(self) -> int:
        return await asyncio.shield(self.exited)

    async def stop(self) -> int:
        if not self.exited.done():
            self.exited.set_result(-15)
        return self.exited.result()

    def failure_reason(self) -> str:
        return "simulated"

    async def sleep(self) -> None:
        self.sleeps += 1
        if self.sleep_error is not None:
            raise RuntimeError(self.sleep_error)

    async def wake(self) -> float:
        self.wakes += 1
        self.woken = asyncio.get_running_loop().create_future()
        if self.auto:
            self.woken.set_result(None)
        await asyncio.wait({self.woken, self.exited}, return_when=asyncio.FIRST_COMPLETED)
        if self.exited.done():
            raise InstanceStartError("instance exited while waking")
        error = self.woken.result()
        if error is not None:
            raise InstanceStartError(error)
        return time.monotonic()

    # The test's levers.
    def finish_start(self, error: str | None = None) -> None:
        if not self.started.done():
            self.started.set_result(error)

    def finish_wake(self, error: str | None = None) -> None:
        if self.woken is not None and not self.woken.done():
            self.woken.set_result(error)

    def die(self, code: int = 1) -> None:
        if not self.exited.done():
            self.exited.set_result(code)
