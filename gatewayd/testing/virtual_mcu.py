"""A virtual MCU for tests: the other end of gatewayd's pty.

It opens the pty symlink in raw mode, sends bytes, and expects exact bytes
within a bounded time, so an AT conversation reads like the transcript it
checks::

    await mcu.send(b"AT\\r\\n")
    await mcu.expect(b"AT\\r\\n\\r\\nOK\\r\\n")

:func:`running_gateway` starts gatewayd in the test's own event loop (fast,
and extra plugins can be registered in code); :class:`GatewaydProcess` runs
the real ``gatewayd`` command in a subprocess (signals, exit codes, systemd
notifications). Every wait here is bounded; nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import sys
import tempfile
import termios
import tty
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatewayd.session.fdstream import FdStream

if TYPE_CHECKING:
    from gatewayd.service.daemon import Daemon

__all__ = ["DEFAULT_TIMEOUT", "GatewaydProcess", "VirtualMcu", "running_gateway"]

#: Seconds any single expectation may wait.
DEFAULT_TIMEOUT = 5.0


class _Reader(asyncio.Protocol):
    def __init__(self, mcu: VirtualMcu) -> None:
        self.mcu = mcu

    def data_received(self, data: bytes) -> None:
        self.mcu._buffer += data
        self.mcu._arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.mcu._closed = True
        self.mcu._arrived.set()


class VirtualMcu:
    """The MCU side of a pty. Use :meth:`open`, then ``send``/``expect``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self._closed = False
        self._stream: FdStream | None = None
        self._fd: int | None = None

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT,
                   ) -> VirtualMcu:
        """Wait (bounded) for the symlink to appear, then open it raw."""
        mcu = cls(path)
        await _wait_for_path(mcu.path, timeout)
        fd = os.open(mcu.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd, termios.TCSANOW)  # TCSANOW: keep what gatewayd already wrote
        mcu._fd = fd
        stream = FdStream(fd, _Reader(mcu))
        stream.start()
        mcu._stream = stream
        return mcu

    async def send(self, data: bytes) -> None:
        """Write *data* as one burst."""
        assert self._stream is not None, "open() first"
        self._stream.write(data)

    def pause_reading(self) -> None:
        """Stop reading the pty (an MCU whose RX is stuck): gatewayd's writes
        then fill the pty and wait."""
        assert self._stream is not None, "open() first"
        self._stream.pause_reading()

    def resume_reading(self) -> None:
        assert self._stream is not None, "open() first"
        self._stream.resume_reading()

    async def send_slowly(self, data: bytes, gap: float = 0.005) -> None:
        """Write *data* one byte at a time, as a person typing."""
        for byte in data:
            await self.send(bytes([byte]))
            await asyncio.sleep(gap)

    async def read_exactly(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        async with asyncio.timeout(timeout):
            while len(self._buffer) < n:
                await self._wait()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def read_until(self, marker: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Everything up to and including *marker*."""
        async with asyncio.timeout(timeout):
            while (end := self._buffer.find(marker)) < 0:
                await self._wait()
        end += len(marker)
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        return data

    async def expect(self, expected: bytes, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Assert that the next bytes from gatewayd are exactly *expected*."""
        try:
            got = await self.read_exactly(len(expected), timeout)
        except TimeoutError:
            raise AssertionError(
                f"expected {expected!r} within {timeout} s, got only {bytes(self._buffer)!r}"
            ) from None
        if got != expected:
            # Show a little of what follows, which usually explains the mismatch.
            raise AssertionError(f"expected {expected!r}\n     got {got!r}"
                                 f"{bytes(self._buffer[:80])!r}")

    async def command(self, line: bytes, expected: bytes,
                      timeout: float = DEFAULT_TIMEOUT) -> None:
        """Send ``line + \\r\\n`` and expect *expected*."""
        await self.send(line + b"\r\n")
        await self.expect(expected, timeout)

    async def expect_silence(self, duration: float = 0.2) -> None:
        """Assert that nothing arrives for *duration* seconds."""
        await asyncio.sleep(duration)
        assert not self._buffer, f"expected silence, got {bytes(self._buffer)!r}"

    def flush_input(self) -> bytes:
        """Discard what has arrived, in the tty's queue and here, as a host's
        UART flush does (``tcflush(TCIFLUSH)``); returns what was discarded."""
        assert self._fd is not None, "open() first"
        termios.tcflush(self._fd, termios.TCIFLUSH)
        dropped = bytes(self._buffer)
        self._buffer.clear()
        return dropped

    def line_settings(self) -> list[Any]:
        """``termios.tcgetattr`` of the MCU end: the line settings gatewayd set."""
        assert self._fd is not None, "open() first"
        return termios.tcgetattr(self._fd)

    def pending(self) -> bytes:
        """What has arrived and was not read yet (without consuming it)."""
        return bytes(self._buffer)

    async def _wait(self) -> None:
        if self._closed:
            raise EOFError("the pty was closed")
        self._arrived.clear()
        await self._arrived.wait()

    async def close(self) -> None:
        if self._stream is not None:
            self._stream.abort()  # before its descriptor closes
            self._stream = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        await asyncio.sleep(0)


async def _wait_for_path(path: Path, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # A symlink's appearance has no event to wait on without inotify; check at
    # a coarse, bounded interval.
    while not path.exists():
        if loop.time() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running_gateway(
    tmp_path: Path, *, dialect: str = "esp-at", extra_plugins: Sequence[object] = (),
    config_text: str | None = None, boot_time: float | None = 0.0,
) -> AsyncIterator[tuple[Daemon, VirtualMcu]]:
    """Run gatewayd in this event loop on a pty under *tmp_path*; yield
    ``(daemon, mcu)`` with the banner already read. ``daemon.start()`` starts
    what *config_text* asks for (control socket, metrics) as ``gatewayd run``
    does; only signal handlers and systemd notifications are left out.

    *boot_time* replaces every port's ``boot_time`` (default 0: no silence
    before the banner, so tests run fast); ``None`` keeps the config's."""
    from gatewayd.config import load_config
    from gatewayd.logs import get_logger
    from gatewayd.plugin.manager import load_plugins
    from gatewayd.service.daemon import Daemon

    config_file = tmp_path / "gatewayd.toml"
    config_file.write_text(config_text or (
        f'[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "{dialect}"\n'))
    config = load_config(config_file)
    if boot_time is not None:
        config = dataclasses.replace(config, ports=tuple(
            dataclasses.replace(port, boot_time=boot_time) for port in config.ports))
    plugins = load_plugins(*extra_plugins, disable=config.plugins.disable)
    problems = plugins.configure(config.plugin)
    if problems:
        raise ValueError(f"plugin configuration: {problems}")
    daemon = Daemon(config, plugins, get_logger())
    await daemon.start()
    mcu = await VirtualMcu.open(config.ports[0].device.removeprefix("pty:"))
    try:
        session = next(iter(daemon.sessions.values()))
        await mcu.expect(session.dialect.banner)
        yield daemon, mcu
    finally:
        await mcu.close()
        await daemon.stop()


class _NotifyReceiver(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[str]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data.decode())


class GatewaydProcess:
    """``gatewayd run`` in a subprocess, for tests of the real command.

    A unix datagram socket stands in for systemd's ``NOTIFY_SOCKET``: every
    notification the daemon sends lands in :attr:`notifications`, and
    :meth:`wait_for` awaits a given field such as ``READY=1``. *preexec* runs
    in the child before gatewayd starts (``resource.setrlimit``, say)."""

    def __init__(self, args: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None,
                 preexec: Callable[[], None] | None = None):
        self.args = list(args)
        self.preexec = preexec
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.notifications: asyncio.Queue[str] = asyncio.Queue()
        self.received: list[str] = []
        self._socket_dir = tempfile.mkdtemp(prefix="gwd-")  # short: AF_UNIX paths are limited
        self._notify: asyncio.DatagramTransport | None = None

    async def start(self) -> GatewaydProcess:
        loop = asyncio.get_running_loop()
        address = os.path.join(self._socket_dir, "notify")
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(address)  # bound here: uvloop takes no AF_UNIX local_addr
        self._notify, _ = await loop.create_datagram_endpoint(
            lambda: _NotifyReceiver(self.notifications), sock=receiver)
        env = {"NOTIFY_SOCKET": address, **self.env} if "NOTIFY_SOCKET" not in self.env \
            else self.env
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gatewayd", *self.args, cwd=self.cwd, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=self.preexec)
        return self

    async def wait_for(self, field: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The next notification containing line *field* (e.g. ``READY=1``)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.notifications.get()
                self.received.append(message)
                if field in message.split("\n"):
                    return message

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, bytes]:
        """SIGTERM, then wait (bounded); return (exit code, stderr)."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            self.proc.kill()
            _, err = await self.proc.communicate()
            raise AssertionError(f"gatewayd did not exit within {timeout} s: {err!r}") from None
        assert self.proc.returncode is not None
        return self.proc.returncode, err

    async def __aenter__(self) -> GatewaydProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(Exception):
                await self.proc.communicate()
        if self._notify is not None:
            self._notify.close()
        shutil.rmtree(self._socket_dir, ignore_errors=True)
