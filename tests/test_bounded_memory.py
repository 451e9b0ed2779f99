"""An MCU that keeps sending but never reads (stuck RX, CTS low, an unread pty)
must not grow the daemon: once the UART's write buffer is full gatewayd stops
reading the UART, so the MCU's own writes block, as on a module with flow
control. Measured on the real daemon process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gatewayd.testing import GatewaydProcess


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def write_until_blocked(fd: int, chunk: bytes, seconds: float) -> int:
    """Write *chunk* without reading anything back, for at most *seconds*;
    returns how much the other side took."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    written = 0
    while loop.time() < deadline:
        try:
            written += os.write(fd, chunk)
        except BlockingIOError:
            await asyncio.sleep(0.01)  # the pty is full: gatewayd is not reading
        else:
            await asyncio.sleep(0)
    return written


async def test_echo_to_a_mcu_that_never_reads_is_bounded(tmp_path):
    link = tmp_path / "tty"
    async with GatewaydProcess(["run", "--device", f"pty:{link}"], cwd=tmp_path) as proc:
        await proc.wait_for("READY=1")
        async with asyncio.timeout(5):
            while not link.exists():
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # past the boot time: every line is now answered
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            before = rss_kib(proc.pid)
            # Echo is on: every byte comes back (overlong lines, each ending in
            # ERROR), and nobody reads it.
            written = await write_until_blocked(fd, b"x" * 4096, seconds=3)
            after = rss_kib(proc.pid)
        finally:
            os.close(fd)
        assert (await proc.stop())[0] == 0
    # Without the bound the daemon read all it was given (4 MB in these 3 s, as
    # fast as this loop writes) and held every echoed byte; with it, ~100 KB.
    assert written < 1024 * 1024, written
    assert after - before < 2 * 1024, (before, after)
