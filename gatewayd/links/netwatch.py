"""Wake-ups on the host's IPv4 network changes, from rtnetlink (no polling).

:func:`changes` yields once per batch of route, address or link messages the
kernel multicasts; the caller re-reads what it cares about
(:mod:`gatewayd.links.routes`, :mod:`gatewayd.links.hostnet`). Read-only:
the socket only listens.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

__all__ = ["changes"]

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40


async def changes() -> AsyncIterator[None]:
    """Yield after every rtnetlink message batch about IPv4 routes, addresses or links."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                         socket.NETLINK_ROUTE)
    try:
        sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE))
        loop = asyncio.get_running_loop()
        while True:
            await loop.sock_recv(sock, 65536)
            yield
    finally:
        sock.close()
