"""Registers the tcp/udp/tls transport through the ``gatewayd`` entry-point group,
exactly as a third-party plugin would. The implementation module is imported when
the first link opens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatewayd.plugin import hookimpl
from gatewayd.transport import (
    Accept,
    ClientRequest,
    Connection,
    LinkEvents,
    Listener,
    ListenRequest,
    Transport,
)
from gatewayd_sockets import KINDS, NAME, SUMMARY

if TYPE_CHECKING:
    from gatewayd_sockets.transport import SocketTransport


class Sockets(Transport):
    name = NAME
    kinds = KINDS
    summary = SUMMARY

    def __init__(self) -> None:
        self._impl: SocketTransport | None = None

    def _transport(self) -> SocketTransport:
        if self._impl is None:
            from gatewayd_sockets.transport import SocketTransport

            self._impl = SocketTransport()
        return self._impl

    async def connect(self, request: ClientRequest, events: LinkEvents) -> Connection:
        return await self._transport().connect(request, events)

    async def listen(self, request: ListenRequest, accept: Accept) -> Listener:
        return await self._transport().listen(request, accept)


@hookimpl
def gatewayd_transports() -> list[Transport]:
    return [Sockets()]
