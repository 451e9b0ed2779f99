"""What every transport plugin shares, written once (stdlib only: the core never
imports aiohttp, and a plugin may use any of this).

- Hosts: :func:`bare_host` (``[::1]`` → ``::1``), :func:`any_address`,
  :func:`is_ip`, :func:`shown_address` (IPv4-mapped IPv6 shown as IPv4).
- Errors: :func:`check_kind`, :func:`connect_failure` (what opening a link raised →
  :class:`~gatewayd.transport.TransportError` with its stage) and
  :func:`listen_errors` (the same for starting a listener).
- :class:`ClosedReport`: ``LinkEvents.closed`` reported exactly once.
- :func:`detach_socket` and :func:`accept_tls`: the server side of a TLS handshake on
  an accepted connection (its socket taken from the plain transport before anything
  is read), failures raised with stage ``"tls"`` so a listener can tell ``on_rejected``.
- :class:`LazyTransport`: the registration facade that imports the implementation
  module on first use or at :meth:`~LazyTransport.preload` (the daemon's start),
  so loading plugins (``gatewayd plugins``, check-config) stays cheap.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import os
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import SplitResult, unquote, urlsplit

from gatewayd import transport as api
from gatewayd.logs import get_logger
from gatewayd.transport import LinkEvents, ListenRequest, Stage, Transport, TransportError, plain_ip
from gatewayd.transport.sockopts import address

__all__ = [
    "CLOSE_WAIT",
    "Address",
    "ClosedReport",
    "EarlyData",
    "LazyTransport",
    "accept_tls",
    "any_address",
    "bare_host",
    "check_kind",
    "connect_failure",
    "detach_socket",
    "is_ip",
    "listen_errors",
    "proxy_socket",
    "shown_address",
    "tell_rejected",
]

#: How long a local close waits (for the write buffer to flush, or for the
#: peer's close frame) before the connection is dropped.
CLOSE_WAIT = 1.0

Address = tuple[str, int]

_log = get_logger()


# -- hosts ---------------------------------------------------------------------


def bare_host(host: str) -> str:
    """*host* without the brackets of an IPv6 literal."""
    return host.strip("[]")


def any_address(host: str | int) -> str:
    """The wildcard address of *host*'s family (an address family or a host)."""
    if isinstance(host, int):
        return "::" if host == socket.AF_INET6 else "0.0.0.0"
    return "::" if ":" in host else "0.0.0.0"


def is_ip(host: str) -> bool:
    """Is *host* an address literal (not a name to resolve)?"""
    return plain_ip(host) is not None


def shown_address(value: object) -> Address:
    """:func:`~gatewayd.transport.sockopts.address`, IPv4-mapped IPv6 as IPv4."""
    host, port = address(value)
    ip = plain_ip(host)
    return (str(ip) if ip is not None and ip.version == 4 else host), port


# -- errors --------------------------------------------------------------------


#: Longest HTTP CONNECT answer head read from a proxy.
MAX_PROXY_HEAD = 8192


async def proxy_socket(proxy: str, host: str, port: int) -> socket.socket:
    """A socket connected to *host*:*port* through *proxy* (``http://`` CONNECT,
    ``socks5://``, ``socks4://``). The proxy resolves *host*; gatewayd never
    looks it up. Failures are :class:`TransportError` stage ``"connect"``
    naming the proxy (its password left out).

    HTTP CONNECT is spoken here, reading the proxy's answer up to its blank
    line and not a byte further: a server that speaks first (SMTP, telnet)
    loses nothing. SOCKS goes through python-socks (imported on first use)."""
    parts = urlsplit(proxy)
    shown = f"{parts.scheme}://{parts.hostname}:{parts.port}"
    if parts.scheme == "http":
        return await _http_connect(parts, shown, host, port)
    from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
    from python_socks.async_.asyncio import Proxy

    try:
        sock: socket.socket = await Proxy.from_url(proxy, rdns=True).connect(
            dest_host=host, dest_port=port)
    except ProxyConnectionError as exc:
        raise TransportError(f"proxy {shown} unreachable: {exc}", stage="connect") from exc
    except ProxyTimeoutError as exc:
        raise TransportError(f"proxy {shown} timed out", stage="timeout") from exc
    except ProxyError as exc:
        raise TransportError(f"proxy {shown} refused {host}:{port}: {exc}",
                             stage="connect") from exc
    sock.setblocking(False)
    return sock


async def _http_connect(parts: SplitResult, shown: str, host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(parts.hostname, parts.port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise TransportError(f"proxy {shown} unreachable: {exc}", stage="connect") from exc
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            head += "Proxy-Authorization: Basic " + \
                base64.b64encode(credentials.encode()).decode() + "\r\n"
        await loop.sock_sendall(sock, (head + "\r\n").encode())
        answer = bytearray()
        while not answer.endswith(b"\r\n\r\n"):
            byte = await loop.sock_recv(sock, 1)  # never past the head: the rest is the link's
            if not byte or len(answer) > MAX_PROXY_HEAD:
                raise TransportError(f"proxy {shown} closed or sent no answer",
                                     stage="connect")
            answer += byte
    except OSError as exc:
        sock.close()
        raise TransportError(f"proxy {shown} unreachable: {exc}", stage="connect") from exc
    except BaseException:
        sock.close()
        raise
    status = answer.split(b"\r\n", 1)[0].decode("latin-1")
    if status.split(" ")[1:2] != ["200"]:
        sock.close()
        raise TransportError(f"proxy {shown} refused {host}:{port}: {status}", stage="connect")
    return sock


def check_kind(transport: Transport, kind: str, *, stage: Stage) -> None:
    """Raise unless *transport* serves link kind *kind*."""
    if kind not in transport.kinds:
        raise TransportError(f"{transport.name} does not serve {kind!r}", stage=stage)


_RESET = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def connect_failure(exc: BaseException, *, tls: bool,
                    cause: BaseException | None = None) -> TransportError:
    """Map what opening a link raised onto a :class:`TransportError` stage:
    ``timeout``, ``resolve``, ``tls`` or ``connect``. *cause* is the OS error a
    library wrapped *exc* around, when it did (it decides the stage; *exc* the
    message)."""
    if isinstance(exc, TransportError):
        return exc
    reason = exc if cause is None else cause
    if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
        return TransportError("timed out connecting", stage="timeout")
    if isinstance(reason, socket.gaierror):
        return TransportError(f"cannot resolve: {exc}", stage="resolve")
    if isinstance(reason, ssl.SSLError | ssl.CertificateError):
        return TransportError(f"TLS failed: {exc}", stage="tls")
    if tls and isinstance(reason, _RESET):
        # A refused SYN raises ConnectionRefusedError; a reset here came once TCP was
        # up: the peer dropped our TLS handshake (a plain server, say).
        return TransportError(f"TLS handshake failed: {exc}", stage="tls")
    return TransportError(f"cannot connect: {exc}", stage="connect")


@contextlib.contextmanager
def listen_errors(host: str) -> Iterator[None]:
    """Starting a listener: a :class:`TransportError` passes, a resolver error
    becomes stage ``resolve``, any other ``OSError``/``ValueError`` ``listen``."""
    try:
        yield
    except TransportError:
        raise
    except socket.gaierror as exc:
        raise TransportError(f"cannot resolve {host}: {exc}", stage="resolve") from exc
    except (OSError, ValueError) as exc:
        raise TransportError(f"cannot listen: {exc}", stage="listen") from exc


# -- the end of a link -----------------------------------------------------------


class ClosedReport:
    """``LinkEvents.closed``, told once per link however the link ends. A link
    whose events are not known yet (``None``) has no one to tell: nothing is
    reported, and a later call with its events still reports."""

    def __init__(self) -> None:
        self.done = False

    def __call__(self, events: LinkEvents | None, *, by_peer: bool, code: int | None = None,
                 error: BaseException | None = None) -> None:
        if self.done or events is None:
            return
        self.done = True
        try:
            events.closed(by_peer=by_peer, code=code, error=error)
        except Exception as exc:
            _log.error("closed event handler failed", error=repr(exc))


def tell_rejected(request: ListenRequest, peer: Address, error: TransportError) -> None:
    """Log a peer that a listener turned away (or that failed its handshake) and
    tell ``request.on_rejected``. Call it once per peer, never after ``accept``."""
    _log.info("peer rejected", kind=request.kind, peer=f"{peer[0]}:{peer[1]}",
              stage=error.stage, reason=str(error))
    if request.on_rejected is None:
        return
    try:
        request.on_rejected(peer, error)
    except Exception as exc:
        _log.error("on_rejected handler failed", error=repr(exc))


# -- server-side TLS -------------------------------------------------------------


class EarlyData(asyncio.Protocol):
    """The application side of a fresh TLS connection until its real protocol
    takes it: asyncio may deliver data as soon as the handshake completes, before
    :func:`accept_tls` has returned."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.eof = False
        self.lost = False
        self.error: Exception | None = None

    def data_received(self, data: bytes) -> None:
        self.chunks.append(bytes(data))

    def eof_received(self) -> None:
        self.eof = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc

    def replay(self, protocol: asyncio.Protocol) -> None:
        for chunk in self.chunks:
            protocol.data_received(chunk)
        if self.eof:
            protocol.eof_received()
        if self.lost:
            protocol.connection_lost(self.error)


def detach_socket(transport: asyncio.Transport) -> socket.socket:
    """Take an accepted connection from its transport before anything is read
    from it: a socket of its own (a duplicate descriptor) for
    :func:`accept_tls`, and the transport aborted, which closes only its own
    descriptor (the connection stays open). Call it from ``connection_made``:
    uvloop starts reading once that returns, even after ``pause_reading()``."""
    sock = transport.get_extra_info("socket")
    detached = socket.socket(fileno=os.dup(sock.fileno()))
    transport.abort()
    return detached


async def accept_tls(sock: socket.socket, context: ssl.SSLContext, *,
                     handshake_timeout: float) -> tuple[asyncio.Transport, EarlyData]:
    """The server side of the TLS handshake on an accepted connection's *sock*
    (from :func:`detach_socket`). Returns the TLS transport and what arrived
    before the caller could set its protocol (:meth:`EarlyData.replay` it).

    A failed handshake, or a peer that went away during it, closes the
    connection and raises :class:`TransportError` with stage ``"tls"``. The
    caller's deadline should come first: the loop's own is *handshake_timeout*
    + 1 s. Cancelled, the connection is closed and the cancellation goes on."""
    early = EarlyData()
    loop = asyncio.get_running_loop()
    try:
        wrapped, _ = await loop.connect_accepted_socket(
            lambda: early, sock, ssl=context,
            ssl_handshake_timeout=max(handshake_timeout, 0) + 1)
    except asyncio.CancelledError:
        sock.close()
        raise
    except Exception as exc:
        sock.close()
        raise TransportError(f"TLS handshake failed: {exc!r}", stage="tls") from exc
    if wrapped.is_closing():
        wrapped.abort()
        raise TransportError("connection closed during the TLS handshake", stage="tls")
    return wrapped, early


# -- registration ----------------------------------------------------------------


class LazyTransport(Transport):
    """A registered transport whose implementation is imported on first use.

    Subclasses set ``name``, ``kinds``, ``summary`` and :attr:`connector` (and
    :attr:`listener` when listening is another class): ``"module:Class"`` of a
    :class:`Transport` that does the work. One instance of each is made, on the
    first link that needs it."""

    #: ``"module:Class"`` that connects (and listens, unless :attr:`listener`).
    connector: str
    #: ``"module:Class"`` that listens; ``""`` = the :attr:`connector`.
    listener: str = ""

    def __init__(self) -> None:
        self._impls: dict[str, Transport] = {}

    def implementation(self, spec: str) -> Transport:
        """The instance of ``"module:Class"`` *spec*, imported and made once."""
        impl = self._impls.get(spec)
        if impl is None:
            module, _, name = spec.partition(":")
            made = getattr(importlib.import_module(module), name)()
            if not isinstance(made, Transport):
                raise TypeError(f"{spec} is not a gatewayd.transport.Transport")
            impl = self._impls[spec] = made
        return impl

    def preload(self) -> None:
        """Import the implementations (the daemon does at start; ``gatewayd
        plugins`` and check-config do not)."""
        for spec in (self.connector, self.listener or self.connector):
            self.implementation(spec)

    async def connect(self, request: api.ClientRequest, events: LinkEvents) -> api.Connection:
        return await self.implementation(self.connector).connect(request, events)

    async def listen(self, request: ListenRequest, accept: api.Accept) -> api.Listener:
        return await self.implementation(self.listener or self.connector).listen(request, accept)
