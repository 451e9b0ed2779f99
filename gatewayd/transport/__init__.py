"""The interface between the core and transport plugins.

A transport plugin's hook returns :class:`Transport` objects synchronously;
those objects do the asynchronous work. The core never opens a socket itself:
a dialect handler describes the link it wants (:class:`ClientRequest`,
:class:`ListenRequest`) and the transport registered for that *kind* carries
it. Events travel back through the :class:`LinkEvents` the core passes in.

Backpressure: :meth:`LinkEvents.data` is awaited. It returns once the payload
sits in the link's bounded receive buffer, so a transport that awaits it
before reading more from its socket slows the peer down instead of letting
memory grow (TCP and WebSocket). Datagram transports may drop instead and
must count what they drop.
"""

from __future__ import annotations

import enum
import ipaddress
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "ClientRequest",
    "Connection",
    "LinkEvents",
    "ListenRequest",
    "Listener",
    "Network",
    "Opcode",
    "Refused",
    "SocketOptions",
    "Stage",
    "Transport",
    "TransportError",
    "admitted",
    "plain_ip",
]


class Opcode(enum.IntEnum):
    """WebSocket opcodes (RFC 6455 §5.2); stream transports use BINARY."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


#: Where a link failed; see :class:`TransportError`.
Stage = Literal["resolve", "connect", "tls", "handshake", "timeout", "send", "listen",
                "refused"]


class TransportError(Exception):
    """A link could not be opened, used or admitted. ``stage`` says where it
    failed, so dialects can map it onto their error numbers:

    - ``"resolve"``: the host name did not resolve (or the URL was invalid).
    - ``"connect"``: the TCP connection (or UDP socket) could not be made; also
      a kind the transport does not serve.
    - ``"tls"``: the TLS handshake failed (certificate, protocol, a peer that
      dropped it), or a TLS listener was asked for without an ``SSLContext``.
    - ``"handshake"``: the WebSocket upgrade failed (HTTP answer, bad request).
    - ``"timeout"``: ``connect_timeout`` ran out while connecting, or a peer of
      a listener did not finish TLS (and the upgrade) in ``handshake_timeout``.
    - ``"send"``: the link is closed, or writing to it failed.
    - ``"listen"``: a listener could not be started (port in use, say).
    - ``"refused"``: a listener turned a peer away (:class:`Refused`, client
      networks, a wrong token).

    Listeners tell ``ListenRequest.on_rejected`` about peers with the stages
    ``"tls"``, ``"timeout"``, ``"handshake"`` and ``"refused"``."""

    def __init__(self, message: str, *, stage: Stage) -> None:
        super().__init__(message)
        self.stage: Stage = stage


class Refused(TransportError):
    """Raised by an :data:`Accept` callback to turn a peer away before the core
    takes it (no free link id, say); stage ``"refused"``. A WebSocket listener
    answers the upgrade request with HTTP ``status``; stream listeners just close
    the connection. Listeners do not tell ``on_rejected`` about these (the core
    itself refused)."""

    def __init__(self, message: str, *, status: int = 503) -> None:
        super().__init__(message, stage="refused")
        self.status = status


@dataclass(frozen=True, slots=True)
class SocketOptions:
    """Options applied to the real socket. ``None`` leaves the OS default."""

    send_timeout: float | None = None
    recv_timeout: float | None = None
    nodelay: bool | None = None
    keepalive: bool | None = None
    keepalive_idle: int | None = None
    keepalive_interval: int | None = None
    keepalive_count: int | None = None
    #: SO_LINGER seconds (0: a close sends RST); streams only.
    linger: int | None = None
    #: SO_BROADCAST (datagrams only).
    broadcast: bool | None = None


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """An outgoing link. ``kind`` selects the transport ("ws", "tcp", "udp", …).

    ``tls`` is a ready context (``None`` = plain); ``server_hostname`` is the
    name checked against the certificate when the context checks hostnames.
    ``frames`` (WebSocket): report every data frame as it arrives, with its
    opcode (``CONTINUATION`` after a message's first frame) and FIN, instead
    of one ``data`` per reassembled message (the default: the message's
    type, ``fin=True``)."""

    kind: str
    host: str
    port: int
    path: str = "/"
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()
    connect_timeout: float | None = None
    #: Bind to this local address (and ``local_port``) before connecting.
    local_host: str | None = None
    local_port: int | None = None
    options: SocketOptions = field(default_factory=SocketOptions)
    #: Reach the host through this proxy (``http://`` CONNECT, ``socks5://``,
    #: ``socks4://``); the proxy resolves the name. Set by the route rules.
    proxy: str | None = None
    #: Whose link this is: the gatewayd port's name, its dialect, the MCU's link id.
    port_name: str | None = None
    dialect: str | None = None
    link_id: int | None = None
    #: Who chose this destination (``[[route]] 0``, a plugin's name); None: the MCU.
    decided_by: str | None = None
    frames: bool = False


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ListenRequest:
    """A listening link: bind to ``host`` ("" = every interface) and ``port``.

    Admission, checked by the transport before the core sees a peer:

    - ``allow``: client networks; a peer outside all of them is turned away
      (stream: closed at once; datagram: dropped and counted; WebSocket: HTTP
      403). Empty = every peer (IPv4-mapped IPv6 peers match IPv4 networks).
    - ``token`` (WebSocket): the upgrade request must carry
      ``Authorization: Bearer <token>`` or ``?token=<token>``, else HTTP 401.
    - ``tls`` with ``verify_mode = CERT_REQUIRED`` demands a client certificate.
    - ``handshake_timeout``: seconds a peer has for TLS and the WebSocket
      upgrade together.
    - ``on_rejected(peer, error)``: told (at most once per peer, and never once
      ``accept`` was called) about every stream or WebSocket peer that failed
      TLS (``error.stage`` "tls", or "timeout" when ``handshake_timeout`` ran
      out), or the upgrade ("handshake"), or was refused by a check above
      ("refused"), so a dialect can report it. Datagrams from outside ``allow``
      are counted, not reported.
    - ``max_message`` (WebSocket): largest message accepted; a bigger one ends
      the link with close code 1009.
    """

    kind: str
    host: str
    port: int
    tls: ssl.SSLContext | None = None
    backlog: int = 8
    options: SocketOptions = field(default_factory=SocketOptions)
    allow: tuple[Network, ...] = ()
    token: str | None = None
    handshake_timeout: float = 10.0
    on_rejected: Callable[[tuple[str, int], TransportError], None] | None = None
    max_message: int = 4 * 1024 * 1024
    #: Whose listener this is: the gatewayd port's name, its dialect, the MCU's link id.
    port_name: str | None = None
    dialect: str | None = None
    link_id: int | None = None


class LinkEvents(Protocol):
    """The core's side of one link; the transport calls these."""

    async def data(self, payload: bytes, *, opcode: Opcode = Opcode.BINARY, fin: bool = True,
                   peer: tuple[str, int] | None = None) -> None:
        """A payload arrived. Returns when it is buffered (backpressure)."""

    def pong(self, payload: bytes) -> None:
        """A WebSocket pong arrived."""

    def closed(self, *, by_peer: bool, code: int | None = None,
               error: BaseException | None = None) -> None:
        """The link ended. Called once."""


class Connection(ABC):
    """One open link, as the core sees it."""

    local: tuple[str, int]
    peer: tuple[str, int]

    @abstractmethod
    async def send(self, payload: bytes, *, opcode: int = Opcode.BINARY, fin: bool = True,
                   peer: tuple[str, int] | None = None, masked: bool = True) -> None:
        """Hand *payload* to the network. Raises :class:`TransportError`.

        *opcode* is an :class:`Opcode` or any other 4-bit value (an MCU may
        send reserved opcodes; the peer decides what to make of them).
        *masked* (WebSocket clients): RFC 6455 requires masked client frames,
        but an Ameba MCU may ask for unmasked ones; stream transports ignore it."""

    @abstractmethod
    async def close(self, *, code: int | None = None) -> None:
        """Close gracefully (a close frame for WebSocket, FIN for TCP)."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the connection at once, sending nothing more."""


class Listener(ABC):
    """A listening socket that hands each accepted peer to the core."""

    local: tuple[str, int]

    @abstractmethod
    async def close(self) -> None:
        """Stop accepting. Already accepted connections stay open."""


#: Called by a listener for each admitted connection; returns its events, or
#: raises :class:`Refused`. WebSocket listeners call it before answering the
#: upgrade (so a refusal can be an HTTP status); ``Connection.send`` then
#: waits until the upgrade response is out.
Accept = Callable[[Connection], LinkEvents]


def plain_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """*host* as an address, an IPv4-mapped IPv6 one as IPv4; ``None`` for a name."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def admitted(peer: tuple[str, int], allow: tuple[Network, ...]) -> bool:
    """Is *peer* inside one of the *allow* networks (or is *allow* empty)?"""
    if not allow:
        return True
    ip = plain_ip(peer[0])
    return ip is not None and any(ip in network for network in allow)


class Transport(ABC):
    """A factory for links of some kinds. Registered by a plugin hook."""

    #: Unique name shown by ``gatewayd plugins``.
    name: str
    #: Link kinds served ("ws", "tcp", "udp", "tls").
    kinds: frozenset[str]
    summary: str = ""

    @abstractmethod
    async def connect(self, request: ClientRequest, events: LinkEvents) -> Connection:
        """Open an outgoing link. Raises :class:`TransportError`."""

    def preload(self) -> None:  # noqa: B027 - most transports import nothing late
        """Import now what would be imported on first use: the daemon calls
        this at start, so that links and listeners need no descriptor to
        import code later (a daemon a flood left without any still serves)."""

    async def listen(self, request: ListenRequest, accept: Accept) -> Listener:
        """Start a listener. Transports that only connect need not override."""
        raise TransportError(f"{self.name} cannot listen", stage="listen")
