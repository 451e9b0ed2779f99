"""The ws/wss server transport (listening links), on aiohttp's low-level server.

How a peer becomes a link, and the limits and defaults on the way:

- Binding: host ``""`` listens on every interface, IPv4 (``0.0.0.0``) and, when the
  system has IPv6, ``::`` (v6-only) on the same port; port 0 picks a free port and
  ``Listener.local`` reports the (IPv4) address actually bound. ``backlog`` and
  ``SO_REUSEADDR`` as for TCP. ``ListenRequest.options`` go on the listening sockets
  and on every accepted one (after aiohttp's own TCP_NODELAY, which they override).
  Peers are reported as ``(host, port)``; IPv4-mapped IPv6 addresses as plain IPv4.
- Deadline: ``handshake_timeout`` (default 10 s) runs from the TCP accept and covers
  the TLS handshake (wss) and the arrival of the HTTP upgrade request together. A
  peer that has not got that far by then is reported to ``on_rejected`` with stage
  ``"timeout"`` and dropped. At most ``MAX_HANDSHAKES`` (16) connections per
  listener are that far at once (``sockopts.HandshakeGate``); more are closed at
  accept, counted and logged rate-limited, and ``on_rejected`` is not told.
- TLS (wss) is done here rather than by ``create_server(ssl=…)`` so that failures
  are seen: ``loop.start_tls`` with ``ListenRequest.tls`` (which may require a client
  certificate); a failed handshake, or a peer that goes away during it, is reported
  with stage ``"tls"``. A wss listener without an ``SSLContext`` is refused.
- wss: a peer outside ``allow`` is closed at accept, before any TLS, and
  reported "refused" (so a TLS failure is only ever a permitted peer's).
- Admission, in this order, each answered over HTTP with a short text body and the
  connection closed afterwards (one request per connection):

  ============================================  ======  ==============================
  peer outside ``allow``                         403     ``on_rejected``: "refused"
  ``token`` set, neither ``Authorization:        401     ``on_rejected``: "refused"
  Bearer <token>`` nor ``?token=<token>``        (with ``WWW-Authenticate: Bearer``)
  not a valid WebSocket upgrade                  400     ``on_rejected``: "handshake"
  (aiohttp's own check and answer)
  malformed HTTP (aiohttp's parser)              400     ``on_rejected``: "handshake"
  ``accept`` raises ``Refused(status=N)``        N       not reported (the core chose)
  ``accept`` raises anything else                500     logged
  ============================================  ======  ==============================

  ``N`` outside 400-599 becomes 503; the reason phrase is the standard one (429 →
  "Too Many Requests"). Tokens are compared with :func:`hmac.compare_digest`. A
  peer that closes before sending a complete request is reported with stage
  ``"handshake"``. Every accepted TCP connection is thus reported to
  ``on_rejected`` at most once, and never once ``accept`` has been called.
- The upgrade: no compression, no subprotocol chosen (aiohttp logs a warning when a
  client offers some), no automatic ping. The connection is created and handed to
  ``accept`` *before* the 101 answer, so that a refusal can still be an HTTP status;
  :meth:`WsServerConnection.send` waits until the 101 is written.
- Frames we send go through :class:`gatewayd_ws.frames.FrameWriter`: never masked
  (``masked`` is ignored), any 4-bit opcode, FIN as asked, no control-frame checks.
  Frames we receive are parsed and reassembled by aiohttp: each message is
  delivered whole with ``fin=True`` (text as its UTF-8 bytes, after aiohttp checked
  the UTF-8), and ``LinkEvents.data`` is awaited before the next message is read,
  so a slow core stops the reading and TCP flow control slows the peer (aiohttp
  queues at most about 128 KiB besides the socket buffers).
- Limits: ``max_message`` (default 4 MiB) is the largest message accepted; a bigger
  one is answered with close code 1009 and reported as
  ``closed(by_peer=False, error=<aiohttp WebSocketError, code 1009>)`` (the link is
  ended by us). Protocol violations by the client (bad UTF-8 in text, reserved
  opcodes or RSV bits, oversized or fragmented control frames, bad close codes, …)
  are answered as aiohttp's own server answers them (close 1002 or 1007, then the
  TCP connection is closed); an *unmasked* client frame, which aiohttp lets through,
  is refused here with close 1002 as RFC 6455 §5.1 requires. Both are reported as
  ``closed(by_peer=True, code=None, error=<WebSocketError>)``.
- Ping/pong: the core sends pings (``send(opcode=PING)``) and keeps the deadlines;
  a client PONG is reported with ``LinkEvents.pong``. A client PING is answered
  here with a PONG echoing its payload.
- Closing: a client close frame is answered with a close frame echoing its code
  (none if it had none; 1006/1015, which must not be sent, are answered with 1002)
  and reported as ``closed(by_peer=True, code=<code or 1005>)``; then we close the
  TCP connection. A connection lost without a close frame is reported as
  ``closed(by_peer=True, code=None, error=ConnectionResetError)``.
  :meth:`WsServerConnection.close` sends a close frame (code 1000 unless given),
  waits up to :data:`CLOSE_WAIT` (1 s) for the client's, then closes TCP (aborts it
  if none came); :meth:`WsServerConnection.abort` drops TCP at once.
- ``closed`` is reported exactly once per link, however it ends -- also after a
  local ``close()`` or ``abort()``, then with ``by_peer=False`` (and the client's
  close code, if one came, but no error) -- so the core learns the end in one place.
  A link whose 101 answer could not be written is reported the same way.
- ``Listener.close()`` stops accepting; accepted links and handshakes under way go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import socket
import struct
from typing import TYPE_CHECKING, Any, cast

from aiohttp import WSMsgType, web
from aiohttp.http import WebSocketError, WSCloseCode

from gatewayd.logs import get_logger
from gatewayd.transport import (
    Accept,
    ClientRequest,
    Connection,
    LinkEvents,
    ListenRequest,
    Opcode,
    Refused,
    Stage,
    Transport,
    TransportError,
    admitted,
    kit,
)
from gatewayd.transport.sockopts import (
    HandshakeGate,
    ServerListener,
    apply_socket_options,
    serve_everywhere,
)
from gatewayd_ws import KINDS, NAME, SUMMARY
from gatewayd_ws.frames import NO_STATUS_RCVD, FrameWriter

if TYPE_CHECKING:
    from aiohttp.http_websocket import WebSocketReader

__all__ = [
    "CLOSE_WAIT",
    "TOKEN_PARAMETER",
    "WsListener",
    "WsServerConnection",
    "WsServerTransport",
]

#: How long a local close waits (the rule every transport shares).
CLOSE_WAIT = kit.CLOSE_WAIT
#: The query parameter that may carry the token (``?token=…``).
TOKEN_PARAMETER = "token"
#: Close codes that must never appear in a close frame (RFC 6455 §7.4.1).
_NEVER_SENT = frozenset({1005, 1006, 1015})

_log = get_logger(transport=NAME)


# -- helpers -------------------------------------------------------------------


def _answer(status: int, text: str) -> web.Response:
    """A short plain-text HTTP answer after which the connection closes."""
    response = web.Response(status=status, text=text + "\n")
    response.force_close()
    return response


def _token_matches(request: web.BaseRequest, token: str) -> bool:
    expected = token.encode()
    offered: list[str] = []
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        offered.append(credentials.strip())
    offered.extend(request.query.getall(TOKEN_PARAMETER, ()))
    # Every candidate is compared, in constant time each.
    return any([hmac.compare_digest(value.encode(), expected) for value in offered])


def _close_reply(code: int) -> bytes:
    """The payload of our answer to a client close frame carrying *code*."""
    if code == NO_STATUS_RCVD:
        return b""
    return struct.pack("!H", WSCloseCode.PROTOCOL_ERROR if code in _NEVER_SENT else code)


class _MaskCheck:
    """Stands between aiohttp's request handler and its WebSocket frame reader,
    and fails the link at the first unmasked client frame: RFC 6455 §5.1 says a
    server must, and aiohttp's reader does not check. It follows frame headers
    only and skips over payloads; the reader still parses everything."""

    def __init__(self, parser: Any, fail: Any) -> None:
        self._parser = parser
        self._fail = fail
        self._head = bytearray()  # the header of the frame being read, so far
        self._skip = 0  # payload bytes of the current frame still to come
        self._failed = False

    def feed_eof(self) -> None:
        self._parser.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._failed:
            return True, b""
        bad = self._unmasked_at(data)
        if bad is None:
            fed: tuple[bool, bytes] = self._parser.feed_data(data)
            return fed
        self._failed = True
        if bad:  # the frames before the unmasked one are delivered first
            eof, tail = self._parser.feed_data(data[:bad])
            if eof:
                return eof, tail
        self._fail(WebSocketError(WSCloseCode.PROTOCOL_ERROR,
                                  "Received an unmasked frame from the client"))
        return True, b""  # as aiohttp's reader answers after an error

    def _unmasked_at(self, data: bytes) -> int | None:
        """Where in *data* the first unmasked frame starts (0 if it began in an
        earlier chunk), or ``None``."""
        head = self._head
        pos, end = 0, len(data)
        start = 0
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            if not head:
                start = pos
            want = 2 if len(head) < 2 else _header_size(head)
            take = min(want - len(head), end - pos)
            head += data[pos:pos + take]
            pos += take
            if len(head) < 2:
                continue
            if not head[1] & 0x80:
                return start
            if len(head) == _header_size(head):
                self._skip = _payload_size(head)
                head.clear()
        return None


def _header_size(head: bytearray) -> int:
    """Bytes in a masked frame's header, from its first two bytes."""
    flag = head[1] & 0x7F
    return 2 + (2 if flag == 126 else 8 if flag == 127 else 0) + 4


def _payload_size(head: bytearray) -> int:
    flag = head[1] & 0x7F
    if flag == 126:
        return int.from_bytes(head[2:4], "big")
    if flag == 127:
        return int.from_bytes(head[2:10], "big")
    return flag


# -- one accepted connection until it is a link --------------------------------


class _Incoming(asyncio.Protocol):
    """One accepted TCP connection on its way to becoming a link: TLS (wss), then
    the HTTP upgrade request, within the handshake deadline. It settles once:
    linked (``accept`` was called) or rejected (``on_rejected`` was told)."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.transport: asyncio.Transport | None = None  # the TLS one, once wrapped
        self.peer: kit.Address = ("", 0)
        self.local: kit.Address = ("", 0)
        self.settled = False
        self.handler: _Handler | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tls: asyncio.Task[None] | None = None
        self._timed_out = False

    # asyncio callbacks (the plain TCP connection)
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not derive from asyncio.Transport).
        transport = cast(asyncio.Transport, transport)
        server = self._server
        peer = kit.shown_address(transport.get_extra_info("peername"))
        if server.tls is not None and not admitted(peer, server.request.allow):
            # wss: a peer outside `allow` gets no TLS handshake (and so no
            # failure of it the MCU could hear of): closed at once.
            transport.abort()
            self.settled = True
            kit.tell_rejected(server.request, peer, TransportError(
                "client address not in the allowed networks", stage="refused"))
            return
        if not server.gate.enter(transport):
            self.settled = True  # closed at once: nothing to report
            return
        self.transport = transport
        self.peer = peer
        self.local = kit.shown_address(transport.get_extra_info("sockname"))
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(server.request.handshake_timeout, self._expired)
        if server.tls is None:
            self._hand_over(transport, None)
        else:
            self._tls = loop.create_task(
                self._start_tls(kit.detach_socket(transport)),
                name=f"{NAME} TLS {self.peer[0]}:{self.peer[1]}")

    def connection_lost(self, exc: BaseException | None) -> None:
        pass  # the TCP transport, or the one detach_socket aborted

    # the way to a link
    async def _start_tls(self, sock: socket.socket) -> None:
        server = self._server
        assert server.tls is not None
        try:
            wrapped, early = await kit.accept_tls(
                sock, server.tls, handshake_timeout=server.request.handshake_timeout)
        except asyncio.CancelledError:
            if self._timed_out:  # our own deadline (_expired) came first
                self.reject("timeout", "no TLS handshake within "
                            f"{server.request.handshake_timeout:g} s")
                return
            raise
        except TransportError as exc:
            self.reject(exc.stage, str(exc))
            return
        self._hand_over(wrapped, early)

    def _hand_over(self, transport: asyncio.Transport, early: kit.EarlyData | None) -> None:
        """Give the (TLS) connection to an aiohttp request handler."""
        server = self._server
        handler = _Handler(server.web, loop=asyncio.get_running_loop(), incoming=self,
                           **server.handler_args)
        self.handler = handler
        self.transport = transport
        transport.set_protocol(handler)
        handler.connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            apply_socket_options(sock, server.request.options, stream=True)
        if early is not None:
            early.replay(handler)

    def _expired(self) -> None:
        self._timer = None
        if self.settled:
            return
        self._timed_out = True
        if self._tls is not None and not self._tls.done():
            self._tls.cancel()  # reported by _start_tls
            return
        self.reject("timeout", "no WebSocket upgrade request within "
                    f"{self._server.request.handshake_timeout:g} s")
        if self.transport is not None:
            self.transport.abort()

    def stop_clock(self) -> None:
        """The upgrade request has arrived: what follows is up to us."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def link(self) -> None:
        """``accept`` is about to be called: from now on the link reports."""
        self._settle()

    def reject(self, stage: Stage, message: str) -> None:
        """Tell ``on_rejected`` (once per connection, never after :meth:`link`)."""
        if self.settled:
            return
        self._settle()
        kit.tell_rejected(self._server.request, self.peer, TransportError(message, stage=stage))

    def _settle(self) -> None:
        """The handshake is over: its place at the gate is free again."""
        if not self.settled:
            self.settled = True
            self._server.gate.leave()
        self.stop_clock()

    def lost(self) -> None:
        """The connection ended (called by the handler)."""
        self.reject("handshake", "connection closed before a complete upgrade request")


class _Handler(web.RequestHandler):
    """aiohttp's HTTP protocol for one connection, told which :class:`_Incoming` it
    serves, with unmasked client frames refused and parse errors reported."""

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop,
                 incoming: _Incoming, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self.incoming = incoming
        self.ws: web.WebSocketResponse | None = None  # set before the upgrade
        self.lost_error: BaseException | None = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if exc is not None:
            self.lost_error = exc
        self.incoming.lost()
        super().connection_lost(exc)

    def set_parser(self, parser: Any, data_received_cb: Any = None) -> None:
        # Called by WebSocketResponse.prepare() once the upgrade is answered.
        # _MaskCheck stands in for the WebSocketReader it wraps (feed_data, feed_eof).
        checked = cast("WebSocketReader", _MaskCheck(parser, self._protocol_violation))
        super().set_parser(checked, data_received_cb)

    def _protocol_violation(self, error: WebSocketError) -> None:
        # As aiohttp's reader does with its own errors: the reading side then
        # answers with error.code and closes.
        queue = self.ws._reader if self.ws is not None else None
        if queue is not None:
            queue.set_exception(error)

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        # aiohttp's answer to a malformed request (or to a failure of ours).
        self.incoming.reject("handshake", f"bad HTTP request ({status}): "
                             f"{message or exc or 'error'}")
        return super().handle_error(request, status, exc, message)


class _Server:
    """What one listener's connections share: the request, ``accept`` and the
    aiohttp low-level server whose request handler admits and upgrades."""

    def __init__(self, request: ListenRequest, accept: Accept) -> None:
        self.request = request
        self.accept = accept
        self.tls = request.tls if request.kind == "wss" else None
        #: Connections between the TCP accept and link or rejection.
        self.gate = HandshakeGate(request.kind)
        self.web = web.Server(self._handle)
        self.handler_args: dict[str, Any] = {
            "keepalive_timeout": 0,  # our deadline watches the idle connection
            "tcp_keepalive": False,  # ListenRequest.options decide
            "access_log": None,
            "lingering_time": 0.0,
        }

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        handler = request.protocol
        assert isinstance(handler, _Handler)
        incoming = handler.incoming
        incoming.stop_clock()
        if incoming.settled:  # the deadline passed (or the peer left) as it came in
            return _answer(408, "Request Timeout")
        settings = self.request
        if not admitted(incoming.peer, settings.allow):
            incoming.reject("refused", "client address not in the allowed networks")
            return _answer(403, "Forbidden: client address not allowed")
        if settings.token is not None and not _token_matches(request, settings.token):
            incoming.reject("refused", "missing or wrong token")
            response = _answer(401, "Unauthorized: a bearer token is required")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        ws: web.WebSocketResponse = web.WebSocketResponse(
            timeout=CLOSE_WAIT, receive_timeout=None, autoclose=False, autoping=False,
            heartbeat=None, compress=False,
            # aiohttp refuses a message of max_msg_size bytes; we accept max_message.
            max_msg_size=max(settings.max_message, 0) + 1)
        if not ws.can_prepare(request):
            try:
                # Not a valid upgrade: prepare() raises aiohttp's own HTTP 400
                # (from the check can_prepare() made) before writing anything.
                await ws.prepare(request)
            except web.HTTPException as exc:
                incoming.reject("handshake", f"not a WebSocket upgrade: {exc.text or exc}")
                exc.force_close()
                raise
        connection = WsServerConnection(request, incoming, token=settings.token)
        incoming.link()
        try:
            events = self.accept(connection)
        except Refused as exc:
            status = exc.status if 400 <= exc.status <= 599 else 503
            return _answer(status, str(exc) or "Refused")
        except Exception as exc:
            _log.error("accept handler failed", error=repr(exc))
            return _answer(500, "Internal Server Error")
        handler.ws = ws
        try:
            await ws.prepare(request)
        except asyncio.CancelledError:
            connection._not_upgraded(events, ConnectionResetError("cancelled"))
            raise
        except Exception as exc:
            connection._not_upgraded(events, exc)
            return _answer(500, "Internal Server Error")  # goes nowhere: the link is gone
        connection._upgraded(ws, events)
        await connection._serve()
        return ws


# -- the link ------------------------------------------------------------------


class WsServerConnection(Connection):
    """One accepted ws/wss link. Created (and handed to ``accept``) before the
    upgrade is answered; :meth:`send` and :meth:`close` wait for the 101. A reader
    task then delivers what the client sends; when it ends (for whatever reason,
    cancellation included) the TCP connection is closed and ``closed`` reported
    once.

    Besides ``local`` and ``peer``: :attr:`path` (the request target, ``?token=``
    removed), :attr:`headers` (the request's, ``Authorization`` removed when a
    token is required), :attr:`subprotocol` (always ``None``: none is chosen) and
    :meth:`get_extra_info` ("peercert", "cipher", "socket", …)."""

    def __init__(self, request: web.BaseRequest, incoming: _Incoming, *,
                 token: str | None) -> None:
        self.local = incoming.local
        self.peer = incoming.peer
        path = request.raw_path
        headers = tuple(request.headers.items())
        if token is not None:
            if TOKEN_PARAMETER in request.query:
                path = str(request.rel_url.without_query_params(TOKEN_PARAMETER))
            headers = tuple((name, value) for name, value in headers
                            if name.lower() != "authorization")
        self.path: str = path
        self.headers: tuple[tuple[str, str], ...] = headers
        self.subprotocol: str | None = None
        handler = request.protocol
        assert isinstance(handler, _Handler) and handler.transport is not None
        self._handler = handler
        self._transport: asyncio.Transport = handler.transport
        loop = asyncio.get_running_loop()
        # True once the 101 is out, False if it never will be.
        self._ready: asyncio.Future[bool] = loop.create_future()
        self._finished: asyncio.Future[None] = loop.create_future()  # closed reported
        self._ws: web.WebSocketResponse | None = None
        self._writer: FrameWriter | None = None
        self._events: LinkEvents | None = None
        self._reader: asyncio.Task[None] | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._local_close = False  # close() or abort() has begun
        self._too_big = False  # we ended the link with 1009
        self._end_code: int | None = None  # from the client's close frame
        self._end_error: BaseException | None = None
        self._report_closed = kit.ClosedReport()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info ("socket", "peercert", "cipher", …)."""
        return self._transport.get_extra_info(name, default)

    # -- called by the listener ------------------------------------------

    def _upgraded(self, ws: web.WebSocketResponse, events: LinkEvents) -> None:
        self._ws = ws
        self._events = events
        self._writer = FrameWriter(ws, client=False)
        self._ready.set_result(True)
        if self._local_close:  # abort() while the 101 went out
            self._transport.abort()
            self._finish()
            return
        self._reader = asyncio.get_running_loop().create_task(
            self._read(), name=f"{NAME} server reader {self.peer[0]}:{self.peer[1]}")
        self._reader.add_done_callback(self._reader_done)

    def _not_upgraded(self, events: LinkEvents, error: BaseException) -> None:
        self._events = events
        self._end_error = error
        self._ready.set_result(False)
        self._transport.abort()
        self._finish()

    async def _serve(self) -> None:
        """Wait (in aiohttp's handler task) until the link has ended."""
        try:
            await asyncio.shield(self._finished)
        except asyncio.CancelledError:
            self.abort()
            raise

    # -- receiving -------------------------------------------------------

    async def _read(self) -> None:
        ws, events, writer = self._ws, self._events, self._writer
        assert ws is not None and events is not None and writer is not None
        try:
            while True:
                msg = await ws.receive()
                kind = msg.type
                if kind is WSMsgType.BINARY:
                    await events.data(msg.data, opcode=Opcode.BINARY, fin=True)
                elif kind is WSMsgType.TEXT:  # aiohttp has checked the UTF-8
                    await events.data(msg.data.encode(), opcode=Opcode.TEXT, fin=True)
                elif kind is WSMsgType.PING:
                    if not self._local_close:  # nothing follows our close frame
                        with contextlib.suppress(TransportError):  # a drop shows up next
                            await writer.send(Opcode.PONG, bytes(msg.data))
                elif kind is WSMsgType.PONG:
                    events.pong(bytes(msg.data))
                elif kind is WSMsgType.CLOSE:
                    code = self._end_code = msg.data or NO_STATUS_RCVD
                    if not self._local_close:  # the client began: answer in kind
                        with contextlib.suppress(TransportError):
                            await writer.send(Opcode.CLOSE, _close_reply(code))
                    return
                elif kind is WSMsgType.ERROR:
                    # A protocol violation (or a message over max_message): aiohttp
                    # has sent its close frame with the matching code and closed.
                    error = msg.data
                    self._end_error = error
                    self._too_big = (isinstance(error, WebSocketError)
                                     and error.code == WSCloseCode.MESSAGE_TOO_BIG)
                    return
                else:  # CLOSED: the TCP connection ended without a close frame
                    lost = ConnectionResetError("connection lost without a close frame")
                    lost.__cause__ = self._handler.lost_error or ws.exception()
                    self._end_error = lost
                    return
        except Exception as exc:
            self._end_error = exc

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        if not task.cancelled() and task.exception() is not None:
            self._end_error = task.exception()
        if (self._end_code is not None and not task.cancelled()) \
                or isinstance(self._end_error, WebSocketError):
            self._transport.close()  # after the close frames are flushed
        else:
            self._transport.abort()
        self._finish()

    def _finish(self) -> None:
        """Report ``closed`` (once) and let aiohttp's handler task end."""
        if self._finished.done():
            return
        by_peer = not self._local_close and not self._too_big
        error = self._end_error if by_peer or self._too_big else None
        self._report_closed(self._events, by_peer=by_peer, code=self._end_code, error=error)
        self._finished.set_result(None)

    # -- Connection --------------------------------------------------------

    async def send(self, payload: bytes, *, opcode: int = Opcode.BINARY, fin: bool = True,
                   peer: kit.Address | None = None, masked: bool = True) -> None:
        """Write one frame, unmasked whatever *masked* says (a server never masks);
        waits for the 101 answer first."""
        if not self._ready.done():
            await asyncio.shield(self._ready)
        if not self._ready.result() or self._local_close or self._reader is None \
                or self._reader.done():
            raise TransportError("the WebSocket link is closed", stage="send")
        assert self._writer is not None
        try:
            await self._writer.send(int(opcode), payload, fin)
        except ValueError as exc:
            raise TransportError(str(exc), stage="send") from exc

    async def close(self, *, code: int | None = None) -> None:
        """Send a close frame with *code* (1000 if ``None``), wait up to
        :data:`CLOSE_WAIT` s for the client's, then close the connection.
        Reports ``closed(by_peer=False)`` unless the link had already ended."""
        if not self._ready.done():
            await asyncio.shield(self._ready)
        reader = self._reader
        if reader is None:  # never upgraded, or aborted meanwhile: reported already
            self._local_close = True
            return
        in_reader = asyncio.current_task() is reader  # from inside LinkEvents.data
        if not self._local_close and not reader.done():
            self._local_close = True
            assert self._writer is not None
            payload = struct.pack("!H", WSCloseCode.OK if code is None else code)
            try:
                await self._writer.send(Opcode.CLOSE, payload)
            except TransportError:
                pass
            else:
                if in_reader:  # the reader goes on to the client's close frame
                    self._close_timer = asyncio.get_running_loop().call_later(
                        CLOSE_WAIT, reader.cancel)
                    return
                await asyncio.wait({reader}, timeout=CLOSE_WAIT)
        self._local_close = True
        reader.cancel()  # no-op once done; inside the reader: at its next await
        if not in_reader:
            await asyncio.shield(self._finished)

    def abort(self) -> None:
        """Drop the connection now, sending nothing more. ``closed(by_peer=False)``
        is reported (once) as soon as the reader task has stopped."""
        if self._finished.done():
            return
        self._local_close = True
        self._transport.abort()
        reader = self._reader
        if reader is not None and asyncio.current_task() is not reader:
            reader.cancel()  # inside the reader: it sees the loss once data() returns


# -- the listener and the transport --------------------------------------------


class WsListener(ServerListener):
    """A ws/wss server. Closing it stops accepting; links (and handshakes under
    way) stay open."""


class WsServerTransport(Transport):
    """ws:// and wss:// listeners. Outgoing links are
    :class:`gatewayd_ws.client.WsClientTransport`'s business."""

    name = NAME
    kinds = KINDS
    summary = SUMMARY

    async def connect(self, request: ClientRequest, events: LinkEvents) -> Connection:
        raise TransportError("WsServerTransport only listens; connect with "
                             "gatewayd_ws.client.WsClientTransport", stage="connect")

    async def listen(self, request: ListenRequest, accept: Accept) -> WsListener:
        kit.check_kind(self, request.kind, stage="listen")
        if request.kind == "wss" and request.tls is None:
            raise TransportError("a wss listener needs a certificate (SSLContext)",
                                 stage="tls")
        with kit.listen_errors(request.host):
            return await self._listen(request, accept)

    async def _listen(self, request: ListenRequest, accept: Accept) -> WsListener:
        loop = asyncio.get_running_loop()
        shared = _Server(request, accept)

        async def serve(host: str, port: int) -> asyncio.Server:
            server = await loop.create_server(lambda: _Incoming(shared), host, port,
                                              backlog=request.backlog, reuse_address=True)
            for sock in server.sockets:
                apply_socket_options(sock, request.options, stream=True)
            return server

        return WsListener(await serve_everywhere(serve, request.host, request.port))
