"""The virtual-time event loop: asyncio's timers without the wait."""

from __future__ import annotations

import asyncio
import time

import pytest

from scalezero.simulate.virtual_loop import VirtualDeadlock, VirtualEventLoop, run_virtual


def test_sleepers_wake_in_time_order_at_their_virtual_times() -> None:
    woke: list[tuple[float, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def sleeper(delay_s: float) -> None:
            await asyncio.sleep(delay_s)
            woke.append((delay_s, loop.time()))

        await asyncio.gather(*(sleeper(d) for d in (3.0, 1.0, 86400.0 * 3, 2.5)))

    started = time.monotonic()
    run_virtual(main(), start_s=10.0)
    assert time.monotonic() - started < 5.0  # three virtual days, no real wait
    assert [d for d, _ in woke] == [1.0, 2.5, 3.0, 86400.0 * 3]
    for delay_s, t_s in woke:
        assert t_s == pytest.approx(10.0 + delay_s, abs=1e-9)


def test_wait_for_times_out_on_the_virtual_clock() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10.0), 4.0)
        return loop.time()

    assert run_virtual(main()) == pytest.approx(4.0)


def test_a_wait_that_can_never_end_is_a_deadlock() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(VirtualDeadlock, match=r"virtual t = 2\.000000"):
        run_virtual(main(), start_s=2.0)


def test_settled_waits_for_pending_work_up_to_the_horizon() -> None:
    async def main() -> tuple[float, float, list[str]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)
        done: list[str] = []
        loop.call_later(5.0, done.append, "a")
        loop.call_later(50.0, done.append, "b")
        first = await loop.settled(20.0)  # "b" is due after the horizon
        assert done == ["a"]
        second = await loop.settled()
        return first, second, done

    first, second, done = run_virtual(main())
    assert first == 20.0
    assert second == pytest.approx(50.0)
    assert done == ["a", "b"]


def test_settled_lets_ready_callbacks_run_first_even_past_the_horizon() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)
        done: list[int] = []

        def chain(n: int) -> None:
            done.append(n)
            if n < 5:
                loop.call_soon(chain, n + 1)

        loop.call_soon(chain, 0)
        loop.call_later(0.0, done.append, 99)  # a timer due now
        await loop.settled(-1.0)  # a horizon already passed
        assert loop.time() == 0.0
        return list(done)  # as it is when settled() returns

    assert sorted(run_virtual(main())) == [0, 1, 2, 3, 4, 5, 99]
