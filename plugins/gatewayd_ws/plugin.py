"""Registers the ws/wss transport (client and server) through the ``gatewayd``
entry-point group, exactly as a third-party plugin would.

aiohttp is imported when the first link opens or the first listener starts, not
when plugins load: it is about 9 MB of resident memory that a port without
WebSocket links never needs.
"""

from __future__ import annotations

from gatewayd.plugin import hookimpl
from gatewayd.transport import Transport
from gatewayd.transport.kit import LazyTransport
from gatewayd_ws import KINDS, NAME, SUMMARY


class WsTransport(LazyTransport):
    """One transport for ``ws``/``wss``: :meth:`connect` goes to
    :class:`~gatewayd_ws.client.WsClientTransport`, :meth:`listen` to
    :class:`~gatewayd_ws.server.WsServerTransport`, each imported on first use."""

    name = NAME
    kinds = KINDS
    summary = SUMMARY
    connector = "gatewayd_ws.client:WsClientTransport"
    listener = "gatewayd_ws.server:WsServerTransport"


@hookimpl
def gatewayd_transports() -> list[Transport]:
    return [WsTransport()]
