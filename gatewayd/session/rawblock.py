"""A raw block read on behalf of a command: the bytes after a ``>`` or ``>>>``.

:class:`RawStream` hands the block to the handler in pieces as they arrive,
holds the MCU back when the handler is slower (the UART stops being read past
:data:`RAW_BUFFER_LIMIT` bytes), writes Ameba's watermark messages, and
recognises Ameba's ``<<<`` abort. The engine does the byte counting; this is
the I/O side of it. Its owner (the port session) is seen only through
:class:`RawHost`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any, Protocol

from gatewayd.dialects.base import ChunkAbort, RawAborted, Watermarks

__all__ = ["ABORT_SILENCE", "RAW_BUFFER_LIMIT", "RawHost", "RawStream"]


#: The MCU's abort sequence ends with this much silence (Ameba TT mode).
ABORT_SILENCE = 0.03
#: Raw bytes received but not yet consumed before the UART stops being read.
RAW_BUFFER_LIMIT = 80 * 1024


class RawHost(Protocol):
    """What a raw block needs of the port that reads it."""

    log: Any

    def write(self, data: bytes) -> None:
        """Send bytes to the MCU (watermark messages)."""

    def pause_reading(self, paused: bool) -> None:
        """Stop or resume reading the UART."""

    def abort_raw(self) -> bytes:
        """End the block in the engine; the bytes it had not handed out yet."""

    def raw_finished(self, stream: RawStream) -> None:
        """*stream* is done; the port no longer routes bytes to it."""


class RawStream:
    """The pieces of one raw block, as an async iterator.

    Pieces wait in memory until the handler takes them; past
    :data:`RAW_BUFFER_LIMIT` bytes the UART is no longer read (the kernel
    buffer, and RTS/CTS where wired, hold the MCU back). With *abort*, the
    byte sent three times as single transfers followed by
    :data:`ABORT_SILENCE` seconds of silence ends the block early: the
    iterator then yields what arrived (without those bytes) and raises
    :class:`RawAborted`. With a :class:`~gatewayd.dialects.base.ChunkAbort`,
    a UART transfer of exactly its pattern does the same at once (ESP-AT
    ``+++``). :attr:`arrived_at` is the loop time the piece last yielded
    came from the UART."""

    def __init__(self, host: RawHost, length: int, chunk: int | None,
                 abort: bytes | ChunkAbort | None, watermarks: Watermarks | None) -> None:
        self.host = host
        self.length = length
        self.abort = abort
        self.watermarks = watermarks
        self.received = 0
        self._pieces: deque[tuple[bytes, float]] = deque()
        self.arrived_at = 0.0
        self._waiting = 0
        self._final = False
        self._aborted = False
        self._wakeup: asyncio.Future[None] | None = None  # the iterator, waiting
        self._paused = False
        self._high = False
        self._abort_count = 0
        self._abort_timer: asyncio.TimerHandle | None = None
        self._discarding = False
        self._finished = False

    async def discard_rest(self) -> None:
        """Read the rest of the block (or up to an abort) and drop it."""
        self._discarding = True
        self._pieces.clear()
        self._waiting = 0
        self._check_levels()
        with contextlib.suppress(RawAborted):
            async for _ in self:
                pass

    def put(self, data: bytes, *, final: bool) -> None:
        if self._discarding:
            data = b""
        else:
            self._pieces.append((data, asyncio.get_running_loop().time()))
        self._waiting += len(data)
        self.received += len(data)
        self._final = final
        self._wake()
        self._check_levels()

    def _check_levels(self) -> None:
        marks = self.watermarks
        if marks is not None:
            if not self._high and self._waiting >= marks.high_at:
                self._high = True
                self.host.write(marks.high)
            elif self._high and self._waiting < marks.low_at:
                self._high = False
                self.host.write(marks.low)
        should_pause = self._waiting >= RAW_BUFFER_LIMIT and not self._final
        if should_pause != self._paused:
            self._paused = should_pause
            self.host.pause_reading(should_pause)

    def watch_for_abort(self, data: bytes) -> None:
        if isinstance(self.abort, ChunkAbort):
            if data == self.abort.pattern:
                # After the engine has taken the transfer: it is stripped then.
                asyncio.get_running_loop().call_soon(self._abort_now)
            return
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        if data != self.abort:
            self._abort_count = 0
            return
        self._abort_count += 1
        if self._abort_count >= 3:
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(ABORT_SILENCE, self._abort_now)

    def _abort_now(self) -> None:
        if self._final or self._finished:
            return
        rest = self.host.abort_raw()
        assert self.abort is not None  # only watched for with an abort byte
        self._aborted = True
        pattern = self.abort.pattern if isinstance(self.abort, ChunkAbort) else self.abort * 3
        if not rest and self._pieces and self._pieces[-1][0].endswith(pattern):
            # An eager block handed the pattern out already: take it back.
            piece, at = self._pieces.pop()
            self._waiting -= len(pattern)
            self.received -= len(pattern)
            if len(piece) > len(pattern):
                self._pieces.append((piece[:-len(pattern)], at))
        rest = rest.removesuffix(pattern)
        if rest:
            self.put(rest, final=True)
        else:
            self._final = True
            self._wake()
        self.host.log.info("raw block aborted by the MCU", received=self.received,
                              expected=self.length)

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    @property
    def ready(self) -> bool:
        """The next step of the iteration returns (or ends) without waiting."""
        return bool(self._pieces) or self._final

    def __aiter__(self) -> RawStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._pieces:
            if self._final:
                self.finish()
                if self._aborted:
                    raise RawAborted(self.received)
                raise StopAsyncIteration
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        piece, self.arrived_at = self._pieces.popleft()
        self._waiting -= len(piece)
        self._check_levels()
        return piece

    def end(self) -> None:
        """End the block here, from the reading side (ESP-AT passthrough's
        ``+++``): bytes not yet handed out are dropped, and the UART is read
        as commands again once the command finishes."""
        if not self._final and not self._finished:
            self.host.abort_raw()
            self._final = True
            self._pieces.clear()
            self._waiting = 0
        self.finish()

    def finish(self) -> None:
        """Stop taking bytes and let the UART be read again (idempotent)."""
        if not self._finished:
            self._finished = True
            self.host.raw_finished(self)
        if self._paused:
            self._paused = False
            self.host.pause_reading(False)
