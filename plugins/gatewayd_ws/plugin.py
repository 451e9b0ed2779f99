"""Registers the ws/wss transport (client and server) through the ``gatewayd``
entry-point group, exactly as a third-party plugin would.

aiohttp is imported when the first link opens or the first listener starts, not
when plugins load: it is about 9 MB of resident memory that a port without
WebSocket links never needs.
"""

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
from gatewayd_ws import KINDS, NAME, SUMMARY

if TYPE_CHECKING:
    from gatewayd_ws.client import WsClientTransport
    from gatewayd_ws.server import WsServerTransport


class WsTransport(Transport):
    """One transport for ``ws``/``wss``: :meth:`connect` goes to
    :class:`~gatewayd_ws.client.WsClientTransport`, :meth:`listen` to
    :class:`~gatewayd_ws.server.WsServerTransport`, each imported on first use."""

    name = NAME
    kinds = KINDS
    summary = SUMMARY

    def __init__(self) -> None:
        self._client: WsClientTransport | None = None
        self._server: WsServerTransport | None = None

    async def connect(self, request: ClientRequest, events: LinkEvents) -> Connection:
        if self._client is None:
            from gatewayd_ws.client import WsClientTransport

            self._client = WsClientTransport()
        return await self._client.connect(request, events)

    async def listen(self, request: ListenRequest, accept: Accept) -> Listener:
        if self._server is None:
            from gatewayd_ws.server import WsServerTransport

            self._server = WsServerTransport()
        return await self._server.listen(request, accept)


#: The class's name from when it only connected.
WsClient = WsTransport


@hookimpl
def gatewayd_transports() -> list[Transport]:
    return [WsTransport()]
