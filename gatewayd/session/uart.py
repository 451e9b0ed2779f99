"""The UART: opening it, moving bytes, and reopening it when it goes away.

A port's ``device`` is one of:

* a device path (``/dev/serial0``, ``/dev/ttyUSB0``): opened and configured
  with pyserial (baud rate, data bits, parity, stop bits, RTS/CTS), then
  driven on its file descriptor by the event loop
  (:class:`~gatewayd.session.fdstream.FdStream`) — no threads and no
  polling, so an idle port costs no CPU;
* ``socket://host:port``: a TCP connection standing in for the wire;
* ``pty:PATH``: a pseudo-terminal in raw mode. The MCU side opens the
  symlink ``PATH``, which is created only when :meth:`Uart.publish` is called
  (once the port is ready for commands) and removed on close. gatewayd keeps
  its own descriptor of the MCU end open, so the MCU may close and reopen
  the symlink at will.

When the device goes away (EIO, a USB adapter unplugged, the TCP peer gone),
the loss is logged and the port is reopened with exponential backoff from
:data:`REOPEN_FIRST_DELAY` to :data:`REOPEN_MAX_DELAY` seconds; the daemon does
not exit. Writes are buffered by the transport; above :data:`WRITE_HIGH_WATER`
bytes the consumer is told to pause until the buffer falls below
:data:`WRITE_LOW_WATER`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from pathlib import Path
from typing import Any, Protocol

import serial

from gatewayd.config import UartSettings
from gatewayd.session.fdstream import WRITE_HIGH_WATER, WRITE_LOW_WATER, FdStream

__all__ = ["Uart", "UartConsumer", "UartSettings"]

REOPEN_FIRST_DELAY = 0.2
REOPEN_MAX_DELAY = 10.0

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD,
           "M": serial.PARITY_MARK, "S": serial.PARITY_SPACE}


class UartConsumer(Protocol):
    """What the UART calls; implemented by the port session."""

    def uart_opened(self) -> None: ...

    def uart_data(self, data: bytes) -> None: ...

    def uart_lost(self, exc: BaseException | None) -> None: ...

    def uart_pause_writing(self) -> None: ...

    def uart_resume_writing(self) -> None: ...


class _Side(asyncio.Protocol):
    """Adapts the transport's protocol callbacks (tty stream or socket)."""

    def __init__(self, uart: Uart) -> None:
        self.uart = uart

    def data_received(self, data: bytes) -> None:
        self.uart.consumer.uart_data(data)

    def eof_received(self) -> bool:
        self.uart._lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.uart._lost(exc)

    def pause_writing(self) -> None:
        self.uart._drained.clear()
        self.uart.consumer.uart_pause_writing()

    def resume_writing(self) -> None:
        self.uart._drained.set()
        self.uart.consumer.uart_resume_writing()


class Uart:
    """One UART, kept open for the daemon's lifetime."""

    def __init__(self, device: str, settings: UartSettings, consumer: UartConsumer,
                 log: Any) -> None:
        self.device = device
        self.settings = settings
        self.consumer = consumer
        self.log = log
        self._transport: asyncio.Transport | None = None
        self._serial: serial.Serial | None = None
        self._pty_fds: tuple[int, int] | None = None  # (gateway end, MCU end)
        self._drained = asyncio.Event()
        self._drained.set()
        self._link: Path | None = None
        self._published = False
        self._closing = False
        self._reopen: asyncio.Task[None] | None = None
        #: Why reading is paused ("raw", "write", …); read while it is empty.
        self._read_paused_by: set[str] = set()
        self.opened = asyncio.Event()

    @property
    def pty_path(self) -> str | None:
        """The MCU end of the pseudo-terminal (``pty:`` devices only)."""
        return os.ttyname(self._pty_fds[1]) if self._pty_fds is not None else None

    async def open(self) -> None:
        """Open the device once. Raises ``OSError``/``serial.SerialException``."""
        loop = asyncio.get_running_loop()
        if self.device.startswith("socket://"):
            host, _, port = self.device.removeprefix("socket://").rpartition(":")
            transport, _ = await loop.create_connection(
                lambda: _Side(self), host.strip("[]"), int(port))
            transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
            self._transport = transport
        else:
            fd = self._open_pty() if self.device.startswith("pty:") else self._open_serial()
            stream = FdStream(fd, _Side(self))
            stream.start()
            self._transport = stream
        self._read_paused_by.clear()  # a new device is read from the start
        self.opened.set()
        self.consumer.uart_opened()

    def _open_pty(self) -> int:
        if self._pty_fds is None:
            gateway_fd, mcu_fd = os.openpty()
            for fd in (gateway_fd, mcu_fd):
                tty.setraw(fd, termios.TCSANOW)
            _set_termios(mcu_fd, self.settings)
            self._pty_fds = (gateway_fd, mcu_fd)
        return self._pty_fds[0]

    def _open_serial(self) -> int:
        s = self.settings
        self._serial = serial.Serial(
            self.device, baudrate=s.baudrate, bytesize=s.bytesize,
            parity=_PARITY[s.parity], stopbits=s.stopbits, rtscts=s.rtscts,
            exclusive=True, timeout=0)
        fileno: int = self._serial.fileno()
        return fileno

    def publish(self) -> None:
        """Create the ``pty:`` symlink: the port is ready for the MCU."""
        if not self.device.startswith("pty:") or self._published:
            return
        link = Path(self.device.removeprefix("pty:"))
        if link.is_symlink():
            link.unlink()  # left behind by a previous run
        elif link.exists():
            raise FileExistsError(f"{link} exists and is not a symlink; not replacing it")
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{os.getpid()}")
        tmp.symlink_to(self.pty_path or "")
        tmp.rename(link)
        self._link = link
        self._published = True

    def write(self, data: bytes) -> None:
        """Queue *data* for the MCU. Dropped (and logged) while the device is away."""
        if self._transport is None or self._transport.is_closing():
            self.log.warning("uart write while closed", dropped=len(data))
            return
        self._transport.write(data)

    def pause_reading(self, paused: bool, reason: str = "consumer") -> None:
        """Stop (or resume) reading the device for *reason*; it is read again
        once no reason remains. The kernel's buffers (and RTS/CTS where wired)
        then hold the MCU back, as a module's flow control would."""
        was_paused = bool(self._read_paused_by)
        if paused:
            self._read_paused_by.add(reason)
        else:
            self._read_paused_by.discard(reason)
        now_paused = bool(self._read_paused_by)
        transport = self._transport
        if now_paused != was_paused and transport is not None and not transport.is_closing():
            if now_paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _lost(self, exc: BaseException | None) -> None:
        if self._closing or not self.opened.is_set():
            return
        self.opened.clear()
        self._close_transport()
        self.log.error("uart lost", device=self.device, error=repr(exc) if exc else "end of file")
        self.consumer.uart_lost(exc)
        self._reopen = asyncio.get_running_loop().create_task(self._reopen_with_backoff())

    async def _reopen_with_backoff(self) -> None:
        delay = REOPEN_FIRST_DELAY
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self.open()
            except (OSError, serial.SerialException) as exc:
                self.log.warning("uart reopen failed", device=self.device, error=str(exc),
                                 retry_in=min(delay * 2, REOPEN_MAX_DELAY))
                delay = min(delay * 2, REOPEN_MAX_DELAY)
            else:
                self.log.info("uart reopened", device=self.device)
                return

    def _close_transport(self) -> None:
        transport, self._transport = self._transport, None
        if isinstance(transport, FdStream):
            transport.abort()  # its descriptor is closed next; drain() came first
        elif transport is not None:
            transport.close()
        if self._serial is not None:
            with contextlib.suppress(Exception):
                self._serial.close()
            self._serial = None

    async def drain(self, timeout: float) -> None:
        """Wait (at most *timeout* s) until queued bytes have left the process."""
        write = self._transport
        if write is None or not write.get_write_buffer_size():
            return
        write.set_write_buffer_limits(high=0, low=0)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout)
        finally:
            if not write.is_closing():
                write.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)

    def reconfigure(self, settings: UartSettings) -> None:
        """Switch the line to *settings* once the kernel has sent what it holds
        (``TCSADRAIN``; call :meth:`drain` first for what asyncio holds).
        A device that is away gets them when it is reopened."""
        self.settings = settings
        if self._serial is not None:
            s = self._serial
            s.baudrate, s.bytesize = settings.baudrate, settings.bytesize
            s.parity, s.stopbits = _PARITY[settings.parity], settings.stopbits
            s.rtscts = settings.rtscts
        elif self._pty_fds is not None:
            _set_termios(self._pty_fds[1], settings)

    async def close(self) -> None:
        """Close for good: stop reopening, remove the symlink, close descriptors."""
        self._closing = True
        if self._reopen is not None:
            self._reopen.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reopen
        if self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                self._link.unlink()
            self._link = None
        self._close_transport()
        for fd in self._pty_fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pty_fds = None
        self.opened.clear()


_CSIZE = {5: termios.CS5, 6: termios.CS6, 7: termios.CS7, 8: termios.CS8}


def _set_termios(fd: int, settings: UartSettings) -> None:
    """Line settings on a tty's termios (the pty's MCU end). Speeds termios
    has no constant for are left as they are; mark/space parity is sent as
    plain parity (termios has no CMSPAR constant in Python)."""
    attrs = termios.tcgetattr(fd)
    cflag = attrs[2] & ~(termios.CSIZE | termios.PARENB | termios.PARODD | termios.CSTOPB
                         | termios.CRTSCTS)
    cflag |= _CSIZE[settings.bytesize]
    if settings.parity != "N":
        cflag |= termios.PARENB | (termios.PARODD if settings.parity in "OM" else 0)
    if settings.stopbits != 1:
        cflag |= termios.CSTOPB
    if settings.rtscts:
        cflag |= termios.CRTSCTS
    attrs[2] = cflag
    speed = getattr(termios, f"B{settings.baudrate}", None)
    if speed is not None:
        attrs[4] = attrs[5] = speed
    termios.tcsetattr(fd, termios.TCSADRAIN, attrs)
