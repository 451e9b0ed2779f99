"""One start/stop protocol for everything the daemon runs, as aiohttp's
``AppRunner``/``BaseSite`` do it: the port set, the control socket and the
metrics endpoint are each a :class:`Service`.

:class:`Services` starts them in order and stops them in reverse. A service
whose ``start()`` raised is stopped too (it may hold half-open resources), so
``stop()`` must be safe on a service that did not finish starting, and safe
to call twice.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Service", "Services"]


@runtime_checkable
class Service(Protocol):
    async def start(self) -> None:
        """Acquire what the service needs (sockets, ptys) and begin serving."""

    async def stop(self) -> None:
        """Release everything; safe after a failed start and when stopped."""


class Services:
    """Services started in order and stopped in reverse."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self._started: list[Service] = []

    async def start(self, *services: Service) -> None:
        """Start *services* in order; when one fails, stop every one started
        (by this call or before) in reverse, then raise."""
        try:
            for service in services:
                self._started.append(service)
                await service.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop what was started, last first. One service failing to stop
        does not keep the others open."""
        while self._started:
            service = self._started.pop()
            try:
                await service.stop()
            except Exception:
                self.log.exception("service failed to stop", service=type(service).__name__)
