"""Registers the ws/wss client transport through the ``gatewayd`` entry-point
group, exactly as a third-party plugin would.

aiohttp is imported when the first link opens, not when plugins load: it is
about 9 MB of resident memory that a port without WebSocket links never needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatewayd.plugin import hookimpl
from gatewayd.transport import ClientRequest, Connection, LinkEvents, Transport
from gatewayd_ws import KINDS, NAME, SUMMARY

if TYPE_CHECKING:
    from gatewayd_ws.client import WsClientTransport


class WsClient(Transport):
    name = NAME
    kinds = KINDS
    summary = SUMMARY

    def __init__(self) -> None:
        self._impl: WsClientTransport | None = None

    async def connect(self, request: ClientRequest, events: LinkEvents) -> Connection:
        if self._impl is None:
            from gatewayd_ws.client import WsClientTransport

            self._impl = WsClientTransport()
        return await self._impl.connect(request, events)


@hookimpl
def gatewayd_transports() -> list[Transport]:
    return [WsClient()]
