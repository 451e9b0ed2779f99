"""A tty's file descriptor as one asyncio transport, both directions.

asyncio's pipe transports take one descriptor per direction, and uvloop's
write-pipe transport reads its descriptor to notice that the pipe's far end
closed: on a tty, which is one device for both directions, that read takes the
bytes the other side sent. :class:`FdStream` drives a single non-blocking
descriptor with the loop's ``add_reader``/``add_writer`` instead, on any
event loop.

Reads ask for :data:`READ_SIZE` bytes. A write goes to the descriptor at once;
what the kernel does not take waits in a buffer, and above the high-water mark
(default :data:`WRITE_HIGH_WATER`) the protocol is told ``pause_writing()``
until the buffer is at or below the low-water mark. End of file is
``eof_received()``; a read or write error is ``connection_lost(exc)``. The
descriptor stays open when the stream closes: whoever opened it closes it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

__all__ = ["READ_SIZE", "WRITE_HIGH_WATER", "WRITE_LOW_WATER", "FdStream"]

#: Bytes asked for per read: a UART or pty hands over a few KiB at a time, and
#: a larger buffer (asyncio's pipes ask for 256 KiB) costs more to allocate
#: than the read itself.
READ_SIZE = 16384
WRITE_HIGH_WATER = 64 * 1024
WRITE_LOW_WATER = 16 * 1024


class FdStream(asyncio.Transport):
    """Reads and writes one descriptor for *protocol* (an ``asyncio.Protocol``).
    Call :meth:`start` once the protocol is ready for data."""

    def __init__(self, fd: int, protocol: asyncio.Protocol) -> None:
        super().__init__()
        os.set_blocking(fd, False)
        self._loop = asyncio.get_running_loop()
        self._fd = fd
        self._protocol = protocol
        self._buffer = bytearray()
        self._high, self._low = WRITE_HIGH_WATER, WRITE_LOW_WATER
        self._reading = False
        self._read_paused = False
        self._write_paused = False
        self._closing = False
        self._closed = False

    def start(self) -> None:
        """Report ``connection_made`` and begin reading."""
        self._protocol.connection_made(self)
        self._set_reading(True)

    # -- reading ---------------------------------------------------------

    def _set_reading(self, on: bool) -> None:
        on = on and not self._read_paused and not self._closing
        if on != self._reading:
            self._reading = on
            if on:
                self._loop.add_reader(self._fd, self._read_ready)
            else:
                self._loop.remove_reader(self._fd)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        if data:
            self._protocol.data_received(data)
        else:
            self._set_reading(False)
            self._protocol.eof_received()

    def pause_reading(self) -> None:
        self._read_paused = True
        self._set_reading(False)

    def resume_reading(self) -> None:
        self._read_paused = False
        self._set_reading(True)

    def is_reading(self) -> bool:
        return self._reading

    # -- writing ---------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if not self._buffer:
            try:
                sent = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fail(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._write_ready)
        self._buffer += data
        self._check_high()

    def _write_ready(self) -> None:
        try:
            sent = os.write(self._fd, self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        del self._buffer[:sent]
        if not self._buffer:
            self._loop.remove_writer(self._fd)
        self._check_low()
        if not self._buffer and self._closing:
            self._finish_close(None)

    def _check_high(self) -> None:
        if not self._write_paused and len(self._buffer) > self._high:
            self._write_paused = True
            self._protocol.pause_writing()

    def _check_low(self) -> None:
        if self._write_paused and len(self._buffer) <= self._low:
            self._write_paused = False
            self._protocol.resume_writing()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """As asyncio's: *high* defaults to 64 KiB, *low* to a quarter of *high*."""
        high = WRITE_HIGH_WATER if high is None else high
        low = high // 4 if low is None else low
        if not 0 <= low <= high:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._check_high()
        self._check_low()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def can_write_eof(self) -> bool:
        return False

    # -- ending ----------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; report ``connection_lost(None)`` once the buffer is written."""
        if self._closing:
            return
        self._closing = True
        self._set_reading(False)
        if not self._buffer:
            self._loop.call_soon(self._finish_close, None)

    def abort(self) -> None:
        """Drop the buffer and close; ``connection_lost(None)`` follows."""
        self._force_close(None)

    def _fail(self, exc: OSError) -> None:
        self._force_close(exc)

    def _force_close(self, exc: OSError | None) -> None:
        self._closing = True
        self._set_reading(False)
        if self._buffer:
            self._buffer.clear()
            self._loop.remove_writer(self._fd)
        # As asyncio's transports: never from inside the caller's write().
        self._loop.call_soon(self._finish_close, exc)

    def _finish_close(self, exc: OSError | None) -> None:
        if not self._closed:
            self._closed = True
            self._protocol.connection_lost(exc)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._fd if name == "fd" else default
