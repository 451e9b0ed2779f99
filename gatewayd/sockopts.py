"""Socket helpers every transport plugin shares (stdlib only).

:func:`apply_socket_options` puts a :class:`~gatewayd.transport.SocketOptions`
on a real socket; :func:`address` turns what ``getsockname``/``getpeername``
return into ``(host, port)``.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from gatewayd.logs import get_logger
from gatewayd.transport import SocketOptions

__all__ = ["address", "apply_socket_options"]

_log = get_logger()


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("@ll", whole, round((seconds - whole) * 1_000_000))


def apply_socket_options(sock: Any, options: SocketOptions, *, stream: bool = True) -> None:
    """Set the options that are not ``None`` on *sock*; TCP-level ones (nodelay,
    keep-alive timing) and SO_KEEPALIVE only when *stream*. A keep-alive
    timing of 0 (Ameba's "not set") is skipped: the kernel refuses it.

    A refused option is logged and skipped: the link works without it.
    SO_SNDTIMEO/SO_RCVTIMEO are set as asked but do not act on the
    non-blocking sockets asyncio uses."""
    settings: list[tuple[int, int, int | bytes]] = []
    if stream:
        if options.nodelay is not None:
            settings.append((socket.IPPROTO_TCP, socket.TCP_NODELAY, int(options.nodelay)))
        if options.keepalive is not None:
            settings.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(options.keepalive)))
        for name, value in (("TCP_KEEPIDLE", options.keepalive_idle),
                            ("TCP_KEEPINTVL", options.keepalive_interval),
                            ("TCP_KEEPCNT", options.keepalive_count)):
            if value and hasattr(socket, name):
                settings.append((socket.IPPROTO_TCP, getattr(socket, name), int(value)))
    if options.send_timeout is not None:
        settings.append((socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(options.send_timeout)))
    if options.recv_timeout is not None:
        settings.append((socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(options.recv_timeout)))
    for level, option, value in settings:
        try:
            sock.setsockopt(level, option, value)
        except OSError as exc:
            _log.warning("socket option refused", level=level, option=option, error=str(exc))


def address(value: Any) -> tuple[str, int]:
    """``(host, port)`` from a socket address; ``("", 0)`` when there is none."""
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return ("", 0)
