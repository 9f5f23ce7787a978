"""An asyncio event loop on a virtual clock: code that sleeps runs at once, in time order.

The loop is asyncio's own selector loop; only its selector and clock differ. A real
selector blocks until a file descriptor is ready or the timeout (the next timer) runs
out; this one has no I/O to wait for, so it moves the clock forward by the timeout and
returns. Timers, ``asyncio.sleep``, ``wait_for`` and ``call_later`` then behave exactly as
on a real loop, without the wall-clock wait, so unchanged asyncio code (the gateway's
pool) can be run against a simulated world. A wait with no timeout and nothing ready can
never end: the loop raises ``VirtualDeadlock`` instead of hanging.

It runs every callback asyncio would, one by one, so it is the reference semantics for
faster simulators rather than a fast one (some ten thousand tasks a second).
"""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualDeadlock(RuntimeError):
    """The loop was asked to wait forever: nothing is ready and no timer is pending."""


class _VirtualSelector(selectors.SelectSelector):
    """A selector that never blocks: waiting ``timeout`` s advances the clock by that."""

    def __init__(self, start_s: float) -> None:
        super().__init__()
        self.now_s = start_s
        #: Pending ``settled`` waiter: (future, horizon s).
        self.settle: tuple[asyncio.Future[float], float] | None = None

    def select(
        self, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        # The loop's own wake-up pipe is the only descriptor; poll it without waiting.
        ready = super().select(0)
        if ready:
            return ready
        next_s = math.inf if timeout is None else self.now_s + max(0.0, timeout)
        # A zero timeout: callbacks are ready or a timer is due now; they run first.
        if self.settle is not None and (timeout is None or timeout > 0):
            future, horizon_s = self.settle
            if timeout is None or next_s > horizon_s:
                self.settle = None
                if math.isfinite(horizon_s) and horizon_s > self.now_s:
                    self.now_s = horizon_s
                if not future.done():
                    future.set_result(self.now_s)
                return []
        if timeout is None:
            raise VirtualDeadlock(
                f"at virtual t = {self.now_s:.6f} s every task waits for something that "
                "nothing will ever do (no timer is pending and no callback is ready)")
        self.now_s = next_s
        return []


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop whose ``time()`` is a virtual clock starting at ``start_s``."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._virtual = _VirtualSelector(start_s)
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now_s

    def settled(self, horizon_s: float = math.inf) -> asyncio.Future[float]:
        """A future that completes, with the time, once nothing is left to happen up to
        ``horizon_s``: no callback ready and no timer due by then (the clock is then moved
        to ``horizon_s`` when that is finite and later). Only one waiter at a time."""
        if self._virtual.settle is not None:
            raise RuntimeError("settled() is already awaited")
        future: asyncio.Future[float] = self.create_future()
        self._virtual.settle = (future, horizon_s)
        return future


def run_virtual(main: Coroutine[Any, Any, T], start_s: float = 0.0) -> T:
    """Run ``main`` to completion on a fresh virtual loop whose clock starts at ``start_s``."""
    with asyncio.Runner(loop_factory=lambda: VirtualEventLoop(start_s)) as runner:
        return runner.run(main)
