"""`within`: a deadline only for an await that has to wait, with the result,
the exceptions and the cancellations of a plain `await`."""

from __future__ import annotations

import asyncio

import pytest

from gatewayd.links.deadline import within


async def at_once(value: int) -> int:
    return value


async def after(delay: float, value: int, log: list[str] | None = None) -> int:
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        if log is not None:
            log.append("cancelled")
        raise
    finally:
        if log is not None:
            log.append("finally")
    return value


async def test_a_coroutine_that_does_not_wait_returns_even_with_a_zero_deadline() -> None:
    assert await within(0, at_once(7)) == 7
    await asyncio.sleep(0)  # nothing armed is left to cancel this task later
    assert await within(0, at_once(8)) == 8


async def test_a_wait_shorter_than_the_deadline_returns_the_result() -> None:
    assert await within(5, after(0.01, 3)) == 3
    assert await within(None, after(0.01, 4)) == 4


async def test_a_wait_longer_than_the_deadline_times_out_and_cancels_the_wait() -> None:
    log: list[str] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await within(0.05, after(5, 0, log))
    assert 0.04 <= loop.time() - started < 2
    assert log == ["cancelled", "finally"]


async def test_a_cancellation_from_outside_reaches_the_coroutine_and_is_not_a_timeout() -> None:
    log: list[str] = []
    task = asyncio.create_task(within(5, after(5, 0, log)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["cancelled", "finally"]


async def raises_after_waiting() -> None:
    await asyncio.sleep(0)
    raise ConnectionResetError("peer gone")


async def raises_at_once() -> None:
    raise ConnectionResetError("never sent")


async def test_exceptions_come_through_before_and_after_a_wait() -> None:
    with pytest.raises(ConnectionResetError, match="peer gone"):
        await within(5, raises_after_waiting())
    with pytest.raises(ConnectionResetError, match="never sent"):
        await within(5, raises_at_once())


async def test_results_of_futures_reach_the_coroutine_across_many_waits() -> None:
    loop = asyncio.get_running_loop()

    async def sums(futures: list[asyncio.Future[int]]) -> int:
        total = 0
        for future in futures:
            total += await future
            await asyncio.sleep(0)  # a bare yield to the loop, too
        return total

    futures = [loop.create_future() for _ in range(5)]
    for i, future in enumerate(futures):
        loop.call_later(0.002 * (i + 1), future.set_result, i + 1)
    assert await within(5, sums(futures)) == 15


async def test_a_future_that_fails_raises_in_the_coroutine() -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()
    loop.call_later(0.01, future.set_exception, OSError("write failed"))

    async def waits() -> int:
        try:
            return await future
        except OSError as exc:
            return len(str(exc))

    assert await within(5, waits()) == len("write failed")
