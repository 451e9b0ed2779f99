"""Registers the tcp/udp/tls transport through the ``gatewayd`` entry-point group,
exactly as a third-party plugin would. The implementation module is imported when
the first link opens."""

from __future__ import annotations

from gatewayd.plugin import hookimpl
from gatewayd.transport import Transport
from gatewayd.transport.kit import LazyTransport
from gatewayd_sockets import KINDS, NAME, SUMMARY


class Sockets(LazyTransport):
    """tcp, udp and tls: :class:`~gatewayd_sockets.transport.SocketTransport`,
    imported on first use."""

    name = NAME
    kinds = KINDS
    summary = SUMMARY
    connector = "gatewayd_sockets.transport:SocketTransport"


@hookimpl
def gatewayd_transports() -> list[Transport]:
    return [Sockets()]
