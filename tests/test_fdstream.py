"""FdStream on a real pty, on asyncio's loop and on uvloop: every byte the far
end sends is read (none taken by the write side), writes wait in a bounded
buffer with pause/resume at the water marks, and the ends are reported."""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty

import pytest
import uvloop

from gatewayd.session.fdstream import FdStream

LOOPS = {"asyncio": None, "uvloop": uvloop.new_event_loop}


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.events: list[str] = []
        self.arrived = asyncio.Event()
        self.lost = asyncio.Event()
        self.lost_with: BaseException | None = None

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.arrived.set()

    def eof_received(self) -> None:
        self.events.append("eof")

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost_with = exc
        self.lost.set()

    async def read(self, n: int) -> bytes:
        async with asyncio.timeout(5):
            while len(self.data) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return bytes(self.data)


@pytest.fixture
def pty_pair():
    """(our end, the far end) of a raw pty; both closed afterwards."""
    ours, theirs = os.openpty()
    for fd in (ours, theirs):
        tty.setraw(fd, termios.TCSANOW)
    yield ours, theirs
    for fd in (ours, theirs):
        with contextlib.suppress(OSError):  # a test may have closed the far end
            os.close(fd)


def started(fd: int, **limits: int) -> tuple[FdStream, Recorder]:
    """A stream on *fd* with a :class:`Recorder`, reading (*limits*: water marks)."""
    proto = Recorder()
    stream = FdStream(fd, proto)
    if limits:
        stream.set_write_buffer_limits(**limits)
    stream.start()
    return stream, proto


def fill(stream: FdStream) -> int:
    """Write until bytes wait in the stream's buffer (the far end reads nothing)."""
    sent = 0
    while stream.get_write_buffer_size() == 0:
        stream.write(b"x" * 4096)
        sent += 4096
        assert sent < 4 * 1024 * 1024, "the descriptor never pushed back"
    return sent


async def lost(proto: Recorder) -> None:
    async with asyncio.timeout(5):
        await proto.lost.wait()


def run(loop_name: str, main) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(main())


@pytest.mark.parametrize("loop_name", LOOPS)
def test_both_directions_on_one_descriptor(loop_name, pty_pair):
    ours, theirs = pty_pair

    async def main():
        stream, proto = started(ours)
        for i in range(50):  # the far end's bytes all reach the protocol
            os.write(theirs, b"%03d;" % i)
        assert await proto.read(200) == b"".join(b"%03d;" % i for i in range(50))
        stream.write(b"to the MCU")
        assert os.read(theirs, 100) == b"to the MCU"
        stream.close()
        await lost(proto)
        assert proto.events == ["lost"] and proto.lost_with is None

    run(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_far_end_that_does_not_read_pauses_the_writer(loop_name, pty_pair):
    ours, theirs = pty_pair

    async def main():
        stream, proto = started(ours, high=8192, low=1024)
        sent = fill(stream)  # the pty's own buffer fills first
        while "pause" not in proto.events:
            stream.write(b"x" * 4096)
            sent += 4096
            assert sent < 4 * 1024 * 1024, "never paused"
        assert stream.get_write_buffer_size() > 8192
        got = bytearray()
        async with asyncio.timeout(5):
            while len(got) < sent:
                await asyncio.sleep(0)
                with contextlib.suppress(BlockingIOError):
                    got += os.read(theirs, 65536)
        assert bytes(got) == b"x" * sent
        assert proto.events == ["pause", "resume"]
        assert stream.get_write_buffer_size() == 0
        stream.abort()

    os.set_blocking(theirs, False)
    run(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_paused_reading_leaves_bytes_in_the_kernel(loop_name, pty_pair):
    ours, theirs = pty_pair

    async def main():
        stream, proto = started(ours)
        stream.pause_reading()
        assert not stream.is_reading()
        os.write(theirs, b"held")
        await asyncio.sleep(0.1)
        assert proto.data == b""
        stream.resume_reading()
        assert await proto.read(4) == b"held"
        stream.abort()

    run(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_the_far_end_closing_is_reported_as_a_loss(loop_name, pty_pair):
    ours, theirs = pty_pair

    async def main():
        stream, proto = started(ours)
        os.close(theirs)  # a pty whose other end is gone reads EIO
        await lost(proto)
        assert isinstance(proto.lost_with, OSError)
        stream.write(b"dropped")  # after the loss, writes go nowhere
        assert proto.events == ["lost"]

    run(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_abort_drops_what_waits_and_reports_once(loop_name, pty_pair):
    ours, _ = pty_pair

    async def main():
        stream, proto = started(ours)
        fill(stream)
        stream.abort()
        stream.abort()
        assert stream.get_write_buffer_size() == 0
        await lost(proto)
        await asyncio.sleep(0.05)
        assert proto.events.count("lost") == 1

    run(loop_name, main)
