"""The tcp/udp/tls transport, on asyncio protocols (see :mod:`gatewayd_sockets`).

Each link is a protocol object that buffers what the event loop hands it and a
reader task that delivers it through :class:`LinkEvents`. Stream links pause
reading on every arrival and resume only once ``LinkEvents.data`` has returned,
so the peer is slowed by TCP flow control; datagram links queue a bounded number
of datagrams and drop (and count) the rest.

A TLS 1.3 client's handshake completes before the server has judged the
client's certificate: a server that refuses it says so with an alert right
after. So a TLS 1.3 client link waits up to :data:`TLS13_SETTLE` s after its
handshake (outside ``connect_timeout``) for the server's first bytes or its
end. An alert then, or the link ending before the server sent a byte (some
stacks, asyncio's among them, close without an alert), fails ``connect``
with stage ``"tls"``, as a refusal inside a TLS 1.2 handshake does. Bytes
that arrive are kept for the link; a server that stays silent costs the
whole wait.

A TLS server runs at most ``MAX_HANDSHAKES`` (16) handshakes at once, each
within ``handshake_timeout``; a connection beyond them is closed at accept,
counted and logged rate-limited (``sockopts.HandshakeGate``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

from gatewayd.logs import get_logger
from gatewayd.transport import (
    Accept,
    ClientRequest,
    Connection,
    LinkEvents,
    Listener,
    ListenRequest,
    Network,
    Opcode,
    Refused,
    Transport,
    TransportError,
    admitted,
    kit,
)
from gatewayd.transport.sockopts import (
    HandshakeGate,
    ServerListener,
    address,
    apply_socket_options,
    serve_everywhere,
)
from gatewayd_sockets import KINDS, NAME, SUMMARY

__all__ = [
    "CLOSE_WAIT",
    "MAX_QUEUED_DATAGRAMS",
    "TLS13_SETTLE",
    "DatagramConnection",
    "DatagramListener",
    "SocketTransport",
    "StreamConnection",
    "StreamListener",
]

#: How long a local close waits (the rule every transport shares).
CLOSE_WAIT = kit.CLOSE_WAIT
#: Datagrams waiting for delivery on one UDP link; more are dropped and counted.
MAX_QUEUED_DATAGRAMS = 64
#: Seconds a TLS 1.3 client link waits after its handshake for the server to
#: refuse its certificate (see above); a server that speaks first ends it sooner.
TLS13_SETTLE = 0.3

_log = get_logger(transport=NAME)


# -- what both kinds of link share ----------------------------------------------


class _WriteFlow:
    """``pause_writing``/``resume_writing`` bookkeeping and an awaitable drain;
    ``connection_lost`` and the wake-up of the reader waiting for more."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.lost = False  # connection_lost has been called
        self.error: BaseException | None = None
        self._lost_waiter: asyncio.Future[None] = self._loop.create_future()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._release_drain()

    def _release_drain(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _mark_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        if exc is not None and self.error is None:
            self.error = exc
        self._release_drain()
        if not self._lost_waiter.done():
            self._lost_waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_lost(exc)
        self._wake()

    def _wake(self) -> None:
        waiter, self._wakeup = self._wakeup, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if self._write_paused and not self.lost:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter
        if self.lost:
            raise ConnectionResetError("connection lost")

    async def wait_lost(self, timeout: float | None) -> bool:
        """Wait up to *timeout* s for ``connection_lost``; whether it came."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._lost_waiter)
        return self.lost


# -- streams (tcp, tls) --------------------------------------------------------


class _StreamProtocol(_WriteFlow, asyncio.Protocol):
    """Buffers what arrives and pauses reading until the reader has delivered it."""

    def __init__(self, on_made: Any = None) -> None:
        super().__init__()
        self.transport: asyncio.Transport | None = None
        self.bytes_received = 0
        self.read_paused = False
        self.eof = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._on_made = on_made

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self.bytes_received += len(data)
        self._pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # the transport closes itself (after flushing what we wrote)

    # reader side
    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.lost:
            self.transport.pause_reading()
            self.read_paused = True

    def delivered(self) -> None:
        """The reader handed everything over: read again."""
        if self.read_paused and not self._chunks and not self.lost:
            assert self.transport is not None
            self.read_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    async def wait_readable(self, timeout: float) -> None:
        """Wait up to *timeout* s for bytes, the end of the stream or its loss
        (nothing is consumed)."""
        if self._chunks or self.eof or self.lost:
            return
        self._wakeup = self._loop.create_future()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup
        self._wakeup = None

    async def next_payload(self) -> bytes | None:
        """Everything received so far in one payload; ``None`` at end of stream."""
        while not self._chunks:
            if self.eof or self.lost:
                return None
            self._wakeup = self._loop.create_future()
            await self._wakeup
        payload = b"".join(self._chunks)
        self._chunks.clear()
        return payload


class _LinkBase(Connection):
    """The reader task and the once-only ``closed`` report shared by all links."""

    _proto: _WriteFlow
    _transport: asyncio.Transport | asyncio.DatagramTransport

    def __init__(self, events: LinkEvents | None, *, local: kit.Address, peer: kit.Address) -> None:
        self.local = local
        self.peer = peer
        self._events = events
        self._local_close = False
        self._report = kit.ClosedReport()
        self._end_error: BaseException | None = None
        self._reader: asyncio.Task[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The asyncio transport's extra info ("socket", "peercert", "cipher", …)."""
        return self._transport.get_extra_info(name, default)

    def start(self, events: LinkEvents | None = None) -> None:
        """Begin delivering to *events* (or those given at construction)."""
        if events is not None:
            self._events = events
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(
            self._read(), name=f"{NAME} reader {self.peer[0]}:{self.peer[1]}")
        self._reader.add_done_callback(self._reader_done)

    async def _read(self) -> None:
        raise NotImplementedError

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._end_error = task.exception()
        if self._local_close:
            pass  # close() or abort() takes care of the transport
        elif self._end_error is not None:
            self._transport.abort()
        else:
            self._transport.close()  # after flushing what we sent
        self._report_closed()

    @property
    def _closed_reported(self) -> bool:
        return self._report.done

    def _report_closed(self) -> None:
        by_peer = not self._local_close
        error = self._end_error or self._proto.error
        self._report(self._events, by_peer=by_peer, code=None,
                     error=error if by_peer else None)

    def _in_reader(self) -> bool:
        return self._reader is not None and asyncio.current_task() is self._reader

    async def _stop_reader(self) -> None:
        if self._reader is None:
            self._report_closed()
            return
        if self._in_reader():
            return  # closed from inside LinkEvents.data: reported once it returns
        self._reader.cancel()
        await asyncio.wait({self._reader})

    def abort(self) -> None:
        """Drop the link now, sending nothing more; ``closed(by_peer=False)``
        follows (once) as soon as the reader task has stopped."""
        if self._closed_reported:
            return
        self._local_close = True
        self._transport.abort()
        if self._reader is None:
            self._report_closed()
        elif not self._in_reader():
            self._reader.cancel()


class StreamConnection(_LinkBase):
    """One TCP or TLS link (outgoing, or accepted by a :class:`StreamListener`)."""

    def __init__(self, proto: _StreamProtocol, events: LinkEvents | None) -> None:
        assert proto.transport is not None
        self._proto: _StreamProtocol = proto
        self._transport: asyncio.Transport = proto.transport
        super().__init__(events,
                         local=address(self._transport.get_extra_info("sockname")),
                         peer=address(self._transport.get_extra_info("peername")))

    @property
    def bytes_received(self) -> int:
        """Bytes read from the socket so far (delivered or waiting)."""
        return self._proto.bytes_received

    async def _read(self) -> None:
        assert self._events is not None
        proto = self._proto
        while (payload := await proto.next_payload()) is not None:
            await self._events.data(payload, peer=self.peer)
            if self._local_close:
                return
            proto.delivered()

    async def send(self, payload: bytes, *, opcode: int = Opcode.BINARY, fin: bool = True,
                   peer: kit.Address | None = None, masked: bool = True) -> None:
        if self._local_close or self._transport.is_closing():
            raise TransportError("the link is closed", stage="send")
        if not payload:
            return
        try:
            self._transport.write(payload)
            await self._proto.drain()
        except (OSError, RuntimeError) as exc:
            raise TransportError(f"send failed: {exc}", stage="send") from exc

    async def close(self, *, code: int | None = None) -> None:
        """Flush what was sent, send FIN and close; ``closed(by_peer=False)`` is
        reported unless the link had already ended."""
        if not self._local_close and not self._closed_reported:
            self._local_close = True
            transport = self._transport
            if not transport.is_closing():
                if transport.can_write_eof():
                    with contextlib.suppress(OSError, RuntimeError):
                        transport.write_eof()
                transport.close()  # flushes the write buffer first
            if not await self._proto.wait_lost(CLOSE_WAIT):
                transport.abort()
        else:
            self._local_close = True
        await self._stop_reader()


# -- datagrams (udp) -----------------------------------------------------------


class _DatagramProtocol(_WriteFlow, asyncio.DatagramProtocol):
    """Queues up to *limit* datagrams with their senders; counts the rest as dropped."""

    def __init__(self, limit: int, allow: tuple[Network, ...] = ()) -> None:
        super().__init__()
        self.transport: asyncio.DatagramTransport | None = None
        self.limit = limit
        self.allow = allow
        self.dropped = 0
        self.refused = 0
        self.unreported_drops = 0
        self.last_error: Exception | None = None
        self._queue: collections.deque[tuple[bytes, kit.Address]] = collections.deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        sender = address(addr)
        if not admitted(sender, self.allow):
            self.refused += 1
            _log.info("UDP datagram from outside the allowed networks dropped",
                      peer=f"{sender[0]}:{sender[1]}", refused=self.refused)
            return
        if len(self._queue) >= self.limit:
            if self.unreported_drops == 0:
                _log.warning("UDP receive queue full: dropping datagrams", limit=self.limit)
            self.dropped += 1
            self.unreported_drops += 1
            return
        self._queue.append((data, sender))
        self._wake()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable, …): UDP goes on regardless.
        self.last_error = exc
        _log.debug("UDP error", error=str(exc))

    async def next_datagram(self) -> tuple[bytes, kit.Address] | None:
        while not self._queue:
            if self.lost:
                return None
            self._wakeup = self._loop.create_future()
            await self._wakeup
        return self._queue.popleft()


class DatagramConnection(_LinkBase):
    """A UDP socket: a client connected to one peer, or a server (``peer`` is
    ``("0.0.0.0", 0)`` and every send needs an explicit destination)."""

    def __init__(self, proto: _DatagramProtocol, events: LinkEvents | None, *,
                 connected: bool) -> None:
        assert proto.transport is not None
        self._proto: _DatagramProtocol = proto
        self._transport: asyncio.DatagramTransport = proto.transport
        self.connected = connected
        peer = address(self._transport.get_extra_info("peername")) if connected \
            else ("0.0.0.0", 0)
        super().__init__(events, local=address(self._transport.get_extra_info("sockname")),
                         peer=peer)

    @property
    def dropped(self) -> int:
        """Datagrams dropped because :data:`MAX_QUEUED_DATAGRAMS` were waiting."""
        return self._proto.dropped

    def _report_drops(self) -> None:
        proto = self._proto
        if proto.unreported_drops:
            _log.warning("UDP datagrams dropped", dropped=proto.unreported_drops,
                         total=proto.dropped, local=f"{self.local[0]}:{self.local[1]}")
            proto.unreported_drops = 0

    async def _read(self) -> None:
        assert self._events is not None
        try:
            while (item := await self._proto.next_datagram()) is not None:
                data, sender = item
                await self._events.data(data, peer=sender)
                self._report_drops()
                if self._local_close:
                    return
        finally:
            self._report_drops()

    async def _destination(self, peer: kit.Address | None) -> Any:
        if self.connected:
            if peer is not None and (kit.bare_host(peer[0]), int(peer[1])) != self.peer:
                raise TransportError(
                    f"this UDP link sends to {self.peer[0]}:{self.peer[1]} only", stage="send")
            return None
        if peer is None:
            raise TransportError("a UDP server link needs a destination", stage="send")
        host, port = kit.bare_host(peer[0]), int(peer[1])
        if kit.is_ip(host):
            return (host, port)
        family = self._transport.get_extra_info("socket").family
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, family=family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise TransportError(f"cannot resolve {host}: {exc}", stage="resolve") from exc
        return infos[0][4]

    async def send(self, payload: bytes, *, opcode: int = Opcode.BINARY, fin: bool = True,
                   peer: kit.Address | None = None, masked: bool = True) -> None:
        if self._local_close or self._transport.is_closing():
            raise TransportError("the link is closed", stage="send")
        destination = await self._destination(peer)
        try:
            self._transport.sendto(payload, destination)
            await self._proto.drain()
        except (OSError, ValueError, RuntimeError) as exc:
            raise TransportError(f"send failed: {exc}", stage="send") from exc

    async def close(self, *, code: int | None = None) -> None:
        """Flush queued datagrams and close the socket; ``closed(by_peer=False)``."""
        if not self._local_close and not self._closed_reported:
            self._local_close = True
            if not self._transport.is_closing():
                self._transport.close()
            if not await self._proto.wait_lost(CLOSE_WAIT):
                self._transport.abort()
        else:
            self._local_close = True
        await self._stop_reader()


class _TlsHandshake(asyncio.Protocol):
    """An accepted connection of a TLS server until its handshake is done: then
    a :class:`_StreamProtocol` takes over (and *made* is called, as for TCP). A
    failed handshake is told to ``on_rejected`` with stage ``"tls"``, one that
    takes longer than ``handshake_timeout`` with ``"timeout"``."""

    def __init__(self, request: ListenRequest, context: ssl.SSLContext,
                 made: Callable[[_StreamProtocol], None],
                 handshakes: set[asyncio.Task[None]], gate: HandshakeGate) -> None:
        self._request = request
        self._context = context
        self._made = made
        self._handshakes = handshakes
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not derive from asyncio.Transport).
        transport = cast(asyncio.Transport, transport)
        if not self._gate.enter(transport):
            return
        peer = address(transport.get_extra_info("peername"))
        task = asyncio.get_running_loop().create_task(
            self._handshake(kit.detach_socket(transport), peer),
            name=f"{NAME} TLS {peer[0]}:{peer[1]}")
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)
        task.add_done_callback(lambda _: self._gate.leave())

    def connection_lost(self, exc: Exception | None) -> None:
        pass  # the transport detach_socket aborted

    async def _handshake(self, sock: socket.socket, peer: kit.Address) -> None:
        timeout = self._request.handshake_timeout
        try:
            async with asyncio.timeout(timeout):
                wrapped, early = await kit.accept_tls(sock, self._context,
                                                      handshake_timeout=timeout)
        except TimeoutError:
            kit.tell_rejected(self._request, peer, TransportError(
                f"no TLS handshake within {timeout:g} s", stage="timeout"))
            return
        except TransportError as exc:
            kit.tell_rejected(self._request, peer, exc)
            return
        proto = _StreamProtocol(on_made=self._made)
        wrapped.set_protocol(proto)
        proto.connection_made(wrapped)
        early.replay(proto)


# -- listeners -----------------------------------------------------------------


class StreamListener(ServerListener):
    """A TCP or TLS server. Closing it stops accepting; accepted links stay open."""


class DatagramListener(Listener):
    """A UDP "server": one bound socket, handed to ``accept`` once as
    :attr:`connection`. Closing the listener leaves that connection open (close the
    connection to free the port), as with stream listeners."""

    def __init__(self, connection: DatagramConnection) -> None:
        self.connection = connection
        self.local = connection.local
        self.closed = False

    async def close(self) -> None:
        self.closed = True


# -- the transport -------------------------------------------------------------


async def _settle_tls13(connection: StreamConnection) -> None:
    """A TLS 1.3 link: wait up to :data:`TLS13_SETTLE` s for the server to speak
    or end (module docstring); raise what ended it. The link is not started
    yet, so what arrives waits for its reader. Failed or cancelled, the link
    is dropped."""
    ssl_object = connection.get_extra_info("ssl_object")
    if ssl_object is None or ssl_object.version() != "TLSv1.3":
        return
    proto = connection._proto
    try:
        await proto.wait_readable(TLS13_SETTLE)
        if proto.error is not None:
            raise proto.error  # the server's alert
        if (proto.eof or proto.lost) and not proto.bytes_received:
            raise TransportError("the TLS 1.3 server ended the link right after the "
                                 "handshake (it refused the client certificate?)", stage="tls")
    except BaseException:
        connection._transport.abort()
        raise


class SocketTransport(Transport):
    """tcp, udp and tls links on asyncio sockets."""

    name = NAME
    kinds = KINDS
    summary = SUMMARY

    def __init__(self, *, max_queued_datagrams: int = MAX_QUEUED_DATAGRAMS) -> None:
        self.max_queued_datagrams = max_queued_datagrams

    async def connect(self, request: ClientRequest, events: LinkEvents) -> Connection:
        kit.check_kind(self, request.kind, stage="connect")
        tls = request.kind == "tls"
        try:
            async with asyncio.timeout(request.connect_timeout):
                if request.kind == "udp":
                    return await self._connect_udp(request, events)
                connection = await self._connect_stream(request, events)
            await _settle_tls13(connection)
        except Exception as exc:
            raise kit.connect_failure(exc, tls=tls) from exc
        connection.start()
        return connection

    async def _connect_stream(self, request: ClientRequest,
                              events: LinkEvents) -> StreamConnection:
        loop = asyncio.get_running_loop()
        host = kit.bare_host(request.host)
        kwargs: dict[str, Any] = {}
        if request.kind == "tls":
            context = request.tls or ssl.create_default_context()
            kwargs["ssl"] = context
            kwargs["server_hostname"] = request.server_hostname or host
        if request.proxy:
            sock = await kit.proxy_socket(request.proxy, host, request.port)
            transport, proto = await loop.create_connection(_StreamProtocol, sock=sock, **kwargs)
        else:
            if request.local_port is not None or request.local_host:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                kwargs["local_addr"] = (request.local_host or kit.any_address(family),
                                        request.local_port or 0)
            transport, proto = await loop.create_connection(_StreamProtocol, host,
                                                            request.port, **kwargs)
        # No await from here on: a cancelled connect cannot leak the connection.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            apply_socket_options(sock, request.options, stream=True)
        return StreamConnection(proto, events)  # started by connect()

    async def _connect_udp(self, request: ClientRequest,
                           events: LinkEvents) -> DatagramConnection:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(kit.bare_host(request.host), request.port,
                                           type=socket.SOCK_DGRAM)
        family, _type, _proto, _name, remote = infos[0]
        local_addr = None
        if request.local_port is not None:
            local_addr = (kit.any_address(family), request.local_port)
        limit = self.max_queued_datagrams
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _DatagramProtocol(limit), remote_addr=(str(remote[0]), int(remote[1])),
            local_addr=local_addr, family=family)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            apply_socket_options(sock, request.options, stream=False)
        connection = DatagramConnection(proto, events, connected=True)
        connection.start()
        return connection

    async def listen(self, request: ListenRequest, accept: Accept) -> Listener:
        kit.check_kind(self, request.kind, stage="listen")
        with kit.listen_errors(request.host):
            if request.kind == "udp":
                return await self._listen_udp(request, accept)
            return await self._listen_stream(request, accept)

    async def _listen_stream(self, request: ListenRequest, accept: Accept) -> StreamListener:
        loop = asyncio.get_running_loop()
        context = request.tls
        if request.kind == "tls" and context is None:
            raise TransportError("a TLS server needs a certificate (SSLContext)", stage="tls")
        options = request.options

        def accepted(proto: _StreamProtocol) -> None:
            assert proto.transport is not None
            sock = proto.transport.get_extra_info("socket")
            if sock is not None:
                apply_socket_options(sock, options, stream=True)
            connection = StreamConnection(proto, None)
            if not admitted(connection.peer, request.allow):
                proto.transport.abort()
                kit.tell_rejected(request, connection.peer, TransportError(
                    "client address not in the allowed networks", stage="refused"))
                return
            try:
                events = accept(connection)
            except Refused as exc:  # the core's own choice: not reported back to it
                _log.info("connection refused", peer=f"{connection.peer[0]}:{connection.peer[1]}",
                          reason=str(exc))
                proto.transport.abort()
                return
            except Exception as exc:
                _log.error("accept handler failed", error=repr(exc))
                proto.transport.abort()
                return
            connection.start(events)

        handshakes: set[asyncio.Task[None]] = set()
        gate = HandshakeGate(request.kind)

        def incoming() -> asyncio.Protocol:
            if request.kind != "tls":
                return _StreamProtocol(on_made=accepted)
            assert context is not None
            return _TlsHandshake(request, context, accepted, handshakes, gate)

        async def serve(host: str, port: int) -> asyncio.Server:
            server = await loop.create_server(incoming, host, port, backlog=request.backlog,
                                              reuse_address=True)
            for sock in server.sockets:
                apply_socket_options(sock, options, stream=True)
            return server

        return StreamListener(await serve_everywhere(serve, request.host, request.port))

    async def _listen_udp(self, request: ListenRequest, accept: Accept) -> DatagramListener:
        loop = asyncio.get_running_loop()
        host = kit.bare_host(request.host) or "0.0.0.0"
        limit, allow = self.max_queued_datagrams, request.allow
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _DatagramProtocol(limit, allow), local_addr=(host, request.port))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            apply_socket_options(sock, request.options, stream=False)
        connection = DatagramConnection(proto, None, connected=False)
        try:
            events = accept(connection)
        except Exception:
            transport.abort()
            raise
        connection.start(events)
        return DatagramListener(connection)
