"""ICMP echo from the host, without privileges (AT+PING of both dialects).

Uses an unprivileged ICMP datagram socket (``SOCK_DGRAM``/``IPPROTO_ICMP``),
which Linux allows to the groups in ``net.ipv4.ping_group_range``. Where
that range does not admit gatewayd's group, :func:`icmp_socket` gives
``None`` and every echo times out, as on a module that gets no reply. IPv4
only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

__all__ = ["echo", "icmp_socket"]


def icmp_socket() -> socket.socket | None:
    """A non-blocking ICMP echo socket, or ``None`` when the host refuses one."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    except OSError:
        return None  # ping_group_range does not admit us
    sock.setblocking(False)
    return sock


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


async def echo(sock: socket.socket | None, address: str, seq: int, size: int,
               timeout: float) -> float | None:
    """Milliseconds until the reply to echo *seq* (*size* payload bytes) from
    IPv4 *address*, or ``None`` after *timeout* s without one."""
    loop = asyncio.get_running_loop()
    if sock is None:
        await asyncio.sleep(timeout)
        return None
    payload = bytes(i & 0xFF for i in range(size))
    header = struct.pack("!BBHHH", 8, 0, 0, 0, seq & 0xFFFF)
    packet = header[:2] + struct.pack("!H", _checksum(header + payload)) + header[4:] + payload
    start = loop.time()
    try:
        # A datagram socket takes the packet at once or refuses it (no
        # waiting worth the name), and uvloop has no loop.sock_sendto.
        sock.sendto(packet, (address, 0))
    except OSError:  # BlockingIOError included: this echo is lost
        await asyncio.sleep(timeout)
        return None
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(timeout):
            while True:
                reply = await loop.sock_recv(sock, 65535)
                if len(reply) >= 8 and reply[0] == 0 and \
                        struct.unpack("!H", reply[6:8])[0] == seq & 0xFFFF:
                    return (loop.time() - start) * 1000
    return None
