"""A deadline armed only for an await that has to wait.

Sending on a link nearly always finishes at once: the transport's buffer
takes the bytes and the coroutine returns without suspending. Only a send
that meets flow control (a full buffer, a peer that stopped reading) waits,
and only that wait needs the link's send timeout. An ``asyncio.timeout``
scope around every send costs about 27 thousand instructions (a Python
context manager and a loop timer armed and cancelled), 8.5 % of an ESP-AT
``AT+WSSEND`` round trip and a fifth of a passthrough one.

:func:`within` runs the coroutine's first step itself, as Python 3.12's eager
tasks do; if it finishes there, that is the result. If it suspends, the rest
of it runs under ``asyncio.timeout(timeout)``, entered at that moment, so a
send that waits gets the same :class:`TimeoutError` as before, at most the
time of that first step later.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["within"]

T = TypeVar("T")


async def within(timeout: float | None, coroutine: Coroutine[Any, Any, T]) -> T:
    """Await *coroutine*; if it has to wait, raise :class:`TimeoutError` when
    it is not done *timeout* s later (``None``: no limit)."""
    try:
        waiting = coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    if timeout is None:
        return await _rest(coroutine, waiting)
    async with asyncio.timeout(timeout):
        return await _rest(coroutine, waiting)


@types.coroutine
def _rest(coroutine: Coroutine[Any, Any, T], waiting: Any) -> Generator[Any, Any, T]:
    """The rest of a started *coroutine*, which last yielded *waiting*: each
    value goes to the task, each result or exception (a cancellation) back
    to the coroutine, as ``await`` itself would have passed them."""
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:
            try:
                waiting = coroutine.throw(exc)
            except StopIteration as done:
                result: T = done.value
                return result
        else:
            try:
                waiting = coroutine.send(sent)
            except StopIteration as done:
                result = done.value
                return result
