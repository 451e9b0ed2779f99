"""Socket helpers every transport plugin shares (stdlib only).

:func:`apply_socket_options` puts a :class:`~gatewayd.transport.SocketOptions`
on a real socket; :func:`address` turns what ``getsockname``/``getpeername``
return into ``(host, port)``; :func:`serve_everywhere` and
:class:`ServerListener` are the listening side of stream servers, and
:class:`HandshakeGate` caps the TLS/WebSocket handshakes one listener runs at
once (:data:`MAX_HANDSHAKES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from gatewayd.logs import RateLimit, get_logger
from gatewayd.transport import Listener, SocketOptions

__all__ = [
    "MAX_HANDSHAKES",
    "HandshakeGate",
    "ServerListener",
    "address",
    "apply_socket_options",
    "release_freed_memory",
    "serve_everywhere",
]

_log = get_logger()
#: Connections one listener may hold in their TLS or WebSocket handshake at once.
MAX_HANDSHAKES = 16


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("@ll", whole, round((seconds - whole) * 1_000_000))


def apply_socket_options(sock: Any, options: SocketOptions, *, stream: bool = True) -> None:
    """Set the options that are not ``None`` on *sock*; TCP-level ones (nodelay,
    keep-alive timing), SO_KEEPALIVE and SO_LINGER only when *stream*,
    SO_BROADCAST only when not. A keep-alive
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
        for name, seconds in (("TCP_KEEPIDLE", options.keepalive_idle),
                              ("TCP_KEEPINTVL", options.keepalive_interval),
                              ("TCP_KEEPCNT", options.keepalive_count)):
            if seconds and hasattr(socket, name):
                settings.append((socket.IPPROTO_TCP, getattr(socket, name), int(seconds)))
        if options.linger is not None:
            settings.append((socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, options.linger)))
    elif options.broadcast is not None:
        settings.append((socket.SOL_SOCKET, socket.SO_BROADCAST, int(options.broadcast)))
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


async def serve_everywhere(serve: Callable[[str, int], Awaitable[asyncio.Server]],
                           host: str, port: int) -> list[asyncio.Server]:
    """Start ``serve(host, port)``; for host ``""`` on every interface: IPv4
    first, then IPv6 (v6-only) on the same port, so that port 0 gives one port
    and the first server reports the IPv4 side. A host without IPv6 keeps the
    IPv4 server alone."""
    host = host.strip("[]")
    if host:
        return [await serve(host, port)]
    servers = [await serve("0.0.0.0", port)]
    if socket.has_ipv6:
        try:
            servers.append(await serve("::", servers[0].sockets[0].getsockname()[1]))
        except OSError as exc:
            _log.debug("no IPv6 listener", error=str(exc))
    return servers


class ServerListener(Listener):
    """Stream servers from :func:`serve_everywhere`. Closing stops accepting;
    accepted links stay open."""

    def __init__(self, servers: list[asyncio.Server]) -> None:
        self.servers = servers
        sockets = servers[0].sockets
        self.local = address(sockets[0].getsockname()) if sockets else ("", 0)

    async def close(self) -> None:
        # Not wait_closed(): on newer Pythons it waits for accepted links too.
        for server in self.servers:
            server.close()


def release_freed_memory(*, collect: bool = True) -> None:
    """Give back to the OS what was allocated and freed (after start-up, after a
    flood of handshakes): a full collection (unless not *collect*), then
    glibc's ``malloc_trim``; the trim is a no-op where glibc is not the C
    library."""
    if collect:
        gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class HandshakeGate:
    """At most *limit* (:data:`MAX_HANDSHAKES`) connections of one listener in
    their handshake at once, so that a flood of slow or silent handshakes
    holds a bounded number of descriptors (each one still has the listener's
    deadline). A connection beyond the limit is aborted at once, before any
    byte is read, counted in :attr:`refused` and logged rate-limited
    (``handshakes full``); ``on_rejected`` is not told, so a flood never
    reaches the MCU's UART. When the last handshake of a flood ends, freed
    memory is given back (:func:`release_freed_memory`)."""

    def __init__(self, kind: str, limit: int = MAX_HANDSHAKES) -> None:
        self.kind = kind
        self.limit = limit
        self.active = 0
        self.refused = 0
        self._refused_at_trim = 0
        self._noisy = RateLimit()

    def enter(self, transport: asyncio.Transport) -> bool:
        """Admit *transport* to its handshake (then :meth:`leave` once it is
        over, whichever way), or abort it and return False."""
        if self.active < self.limit:
            self.active += 1
            return True
        transport.abort()
        self.refused += 1
        peer = address(transport.get_extra_info("peername"))
        self._noisy.log(_log, "warning", "handshakes full", kind=self.kind, limit=self.limit,
                        peer=f"{peer[0]}:{peer[1]}", refused=self.refused)
        return False

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0 and self.refused > self._refused_at_trim:
            # A flood just ended: give back what its handshakes allocated.
            self._refused_at_trim = self.refused
            release_freed_memory()
