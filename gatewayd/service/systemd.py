"""sd_notify(3) without a library: datagrams to ``$NOTIFY_SOCKET``.

``READY=1``, ``STATUS=…``, ``STOPPING=1``, ``RELOADING=1`` and, when
``$WATCHDOG_USEC`` is set (and ``$WATCHDOG_PID`` is unset or ours),
``WATCHDOG=1`` every half period from an event-loop timer, so a hung loop
stops the pings and systemd restarts the service. Outside systemd every
call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

__all__ = ["Notifier"]


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2
        self._timer: asyncio.TimerHandle | None = None

    def notify(self, *fields: str) -> None:
        if not self.address:
            return
        message = "\n".join(fields).encode()
        # systemd gone or its socket unreachable: there is nothing useful to do.
        with (socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
              contextlib.suppress(OSError)):
            sock.sendto(message, self.address)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.stop_watchdog()
        self.notify("STOPPING=1")

    def start_watchdog(self) -> None:
        """Ping the watchdog from the running loop every half period."""
        if self.watchdog_interval is None or not self.address:
            return
        loop = asyncio.get_running_loop()

        def ping() -> None:
            self.notify("WATCHDOG=1")
            self._timer = loop.call_later(self.watchdog_interval, ping)  # type: ignore[arg-type]

        ping()

    def stop_watchdog(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
