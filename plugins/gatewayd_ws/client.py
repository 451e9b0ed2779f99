"""The ws/wss client transport, on aiohttp.

aiohttp opens the connection, performs the handshake and parses what the
server sends (a request with ``frames`` gets :class:`FrameReader` instead,
which does not reassemble messages); every frame *we* send goes through
:class:`FrameWriter` (see :mod:`gatewayd_ws.frames` for why).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any, Literal

import aiohttp
from yarl import URL

from gatewayd.logs import get_logger
from gatewayd.transport import (
    ClientRequest,
    Connection,
    LinkEvents,
    Opcode,
    Transport,
    TransportError,
    kit,
)
from gatewayd.transport.sockopts import address, apply_socket_options
from gatewayd_ws import KINDS, NAME, SUMMARY
from gatewayd_ws.frames import MORE, NO_STATUS_RCVD, FrameReader, FrameWriter

__all__ = [
    "CLOSE_WAIT",
    "MAX_MESSAGE",
    "USER_AGENT",
    "WsClientTransport",
    "WsConnection",
    "request_url",
]

#: How long a local close waits (the rule every transport shares).
CLOSE_WAIT = kit.CLOSE_WAIT
#: What the ESP-AT module's engine (esp_websocket_client) sends.
USER_AGENT = "ESP32 Websocket Client"
#: Largest message accepted from a server (aiohttp reassembles a fragmented
#: message before handing it over; with ``frames``, the largest frame). A
#: bigger one ends the link with close code 1009, reported to the core as a drop.
MAX_MESSAGE = 4 * 1024 * 1024
_DATA_TYPES = {aiohttp.WSMsgType.TEXT: Opcode.TEXT, aiohttp.WSMsgType.BINARY: Opcode.BINARY,
               aiohttp.WSMsgType.CONTINUATION: Opcode.CONTINUATION}

_log = get_logger(transport="aiohttp-ws-client")


def request_url(request: ClientRequest) -> URL:
    """``ws[s]://host:port/path?query`` for *request*; IPv6 literals in brackets.

    Percent-escapes already in the path are kept; characters not allowed in a
    request target are escaped."""
    scheme = "wss" if request.kind == "wss" else "ws"
    host = kit.bare_host(request.host)
    if ":" in host:
        host = f"[{host}]"
    path = request.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    return URL(f"{scheme}://{host}:{request.port}{path}")


def _failure(exc: BaseException, *, tls: bool) -> TransportError:
    """Map what aiohttp raised while opening onto a :class:`TransportError` stage;
    what is not aiohttp's own goes to :func:`~gatewayd.transport.kit.connect_failure`."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return TransportError(f"cannot resolve {exc.host}: {exc.os_error}", stage="resolve")
    if isinstance(exc, aiohttp.ClientSSLError):  # certificate and other TLS errors
        return TransportError(f"TLS failed: {exc}", stage="tls")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return kit.connect_failure(exc, tls=tls, cause=exc.os_error)
    if isinstance(exc, TimeoutError):  # also aiohttp's ServerTimeoutError
        return kit.connect_failure(exc, tls=tls)
    if isinstance(exc, aiohttp.InvalidURL):
        return TransportError(f"invalid URL: {exc}", stage="resolve")
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return TransportError(f"handshake refused: HTTP {exc.status}, {exc.message}",
                              stage="handshake")
    return TransportError(f"handshake failed: {exc!r}", stage="handshake")


class _FrameByFrame(aiohttp.ClientWebSocketResponse):
    """aiohttp's client WebSocket with a :class:`FrameReader` parsing what the
    server sends. ``ws_connect`` stores the reader it built in ``_parser``
    before handing it to the connection (so before any frame is parsed);
    this swaps it there. The only other use of aiohttp internals besides
    :class:`FrameWriter`."""

    @property  # type: ignore[override]
    def _parser(self) -> FrameReader | None:
        return self._frame_reader

    @_parser.setter
    def _parser(self, reader: object) -> None:
        self._frame_reader = None if reader is None else FrameReader(self._reader, MAX_MESSAGE)


def _connector(proxy: str | None, local_addr: tuple[str, int] | None) -> aiohttp.BaseConnector:
    """One connection per session; through *proxy* with aiohttp-socks (imported
    on first use; HTTP proxies get CONNECT, and the proxy resolves the host)."""
    if proxy:
        from aiohttp_socks import ProxyConnector

        connector: aiohttp.BaseConnector = ProxyConnector.from_url(
            proxy, limit=1, force_close=True, local_addr=local_addr, rdns=True)
        return connector
    return aiohttp.TCPConnector(limit=1, force_close=True, local_addr=local_addr)


class WsClientTransport(Transport):
    """ws:// and wss:// client links, one aiohttp session per link."""

    name = NAME
    kinds = KINDS
    summary = SUMMARY

    async def connect(self, request: ClientRequest, events: LinkEvents) -> Connection:
        kit.check_kind(self, request.kind, stage="connect")
        try:
            url = request_url(request)
        except ValueError as exc:
            raise TransportError(f"invalid URL: {exc}", stage="resolve") from exc
        headers = list(request.headers)
        if not any(name.lower() == "user-agent" for name, _ in headers):
            headers.append(("User-Agent", USER_AGENT))
        local_addr = None
        if request.local_port is not None:
            local_addr = (kit.any_address(request.host), request.local_port)
        session = aiohttp.ClientSession(
            connector=_connector(request.proxy, local_addr),
            # The whole open is bounded by connect_timeout below; no read timeouts.
            timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None,
                                          sock_read=None),
            cookie_jar=aiohttp.DummyCookieJar(),
            # The module sends neither; headers given in the request still go out.
            skip_auto_headers=("Accept", "Accept-Encoding"),
            ws_response_class=_FrameByFrame if request.frames else aiohttp.ClientWebSocketResponse,
        )
        try:
            async with asyncio.timeout(request.connect_timeout):
                ws = await session.ws_connect(
                    url,
                    headers=headers,
                    protocols=request.subprotocols,
                    ssl=request.tls if request.kind == "wss" and request.tls else True,
                    server_hostname=request.server_hostname if request.kind == "wss" else None,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_WAIT),
                    autoping=False,
                    autoclose=False,
                    heartbeat=None,
                    max_msg_size=MAX_MESSAGE,
                    compress=0,
                    decode_text=False,
                )
        except BaseException as exc:
            await session.close()
            if isinstance(exc, Exception):
                raise _failure(exc, tls=request.kind == "wss") from exc
            raise
        # No await from here on: a cancelled connect cannot leak the session.
        writer = FrameWriter(ws)
        sock = ws.get_extra_info("socket")
        if sock is not None:
            apply_socket_options(sock, request.options)
        return WsConnection(session, ws, writer, events,
                            local=address(ws.get_extra_info("sockname")),
                            peer=address(ws.get_extra_info("peername")))


class WsConnection(Connection):
    """One open ws/wss link. A reader task delivers what the server sends; when
    it ends (for whatever reason, cancellation included) :meth:`_reader_done`
    closes the transport, reports ``closed`` once and releases the session."""

    def __init__(self, session: aiohttp.ClientSession,
                 ws: aiohttp.ClientWebSocketResponse[Literal[False]],
                 writer: FrameWriter, events: LinkEvents, *,
                 local: tuple[str, int], peer: tuple[str, int]) -> None:
        self.local = local
        self.peer = peer
        self.subprotocol: str | None = ws.protocol
        self._session = session
        self._ws = ws
        self._writer = writer
        self._events = events
        self._local_close = False  # close() or abort() has begun
        self._end_code: int | None = None  # from the server's close frame
        self._end_error: BaseException | None = None
        self._report_closed = kit.ClosedReport()
        loop = asyncio.get_running_loop()
        self._released: asyncio.Future[None] = loop.create_future()
        self._release_task: asyncio.Future[None] | None = None
        self._reader = loop.create_task(self._read(), name=f"ws-reader {peer[0]}:{peer[1]}")
        self._reader.add_done_callback(self._reader_done)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info ("socket", "peercert", "cipher", …)."""
        return self._ws.get_extra_info(name, default)

    # -- receiving -----------------------------------------------------

    async def _read(self) -> None:
        try:
            while True:
                msg = await self._ws.receive()
                kind = msg.type
                if kind in _DATA_TYPES:
                    await self._events.data(msg.data, opcode=_DATA_TYPES[kind],
                                            fin=msg.extra != MORE)
                elif kind is aiohttp.WSMsgType.PING:
                    if not self._local_close:  # nothing follows our close frame
                        with contextlib.suppress(TransportError):  # a drop shows up next
                            await self._writer.send(Opcode.PONG, msg.data)
                elif kind is aiohttp.WSMsgType.PONG:
                    self._events.pong(msg.data)
                elif kind is aiohttp.WSMsgType.CLOSE:
                    code = self._end_code = msg.data or NO_STATUS_RCVD
                    if not self._local_close:  # the server began: answer in kind
                        reply = b"" if code == NO_STATUS_RCVD else struct.pack("!H", code)
                        with contextlib.suppress(TransportError):
                            await self._writer.send(Opcode.CLOSE, reply)
                    return
                elif kind is aiohttp.WSMsgType.ERROR:
                    self._end_error = msg.data  # a protocol violation by the server
                    return
                else:  # CLOSED: the TCP connection ended without a close frame
                    error = ConnectionResetError("connection lost without a close frame")
                    error.__cause__ = self._ws.exception()  # aiohttp's view, if any
                    self._end_error = error
                    return
        except Exception as exc:
            self._end_error = exc

    def _reader_done(self, _task: asyncio.Task[None]) -> None:
        if self._end_error is not None or self._end_code is None:
            self._writer.abort()
        else:
            self._writer.close()  # after our close frame is flushed
        by_peer = not self._local_close
        self._report_closed(self._events, by_peer=by_peer, code=self._end_code,
                            error=self._end_error if by_peer else None)
        self._release_task = asyncio.ensure_future(self._release())

    async def _release(self) -> None:
        try:
            # The transport is closing already, so aiohttp's close() sends nothing
            # (its frame write fails at once); it only returns the HTTP connection.
            with contextlib.suppress(Exception):
                await self._ws.close()
            with contextlib.suppress(Exception):
                await self._session.close()
        finally:
            self._released.set_result(None)

    # -- Connection ----------------------------------------------------

    async def send(self, payload: bytes, *, opcode: int = Opcode.BINARY, fin: bool = True,
                   peer: tuple[str, int] | None = None, masked: bool = True) -> None:
        if self._local_close or self._reader.done():
            raise TransportError("the WebSocket link is closed", stage="send")
        try:
            await self._writer.send(int(opcode), payload, fin, masked=masked)
        except ValueError as exc:
            raise TransportError(str(exc), stage="send") from exc

    async def close(self, *, code: int | None = None) -> None:
        """Send a close frame (with *code* if given), wait up to
        :data:`CLOSE_WAIT` s for the server's, then close the connection.
        Reports ``closed(by_peer=False)`` unless the link had already ended."""
        if not self._local_close and not self._reader.done():
            self._local_close = True
            payload = b"" if code is None else struct.pack("!H", code)
            try:
                await self._writer.send(Opcode.CLOSE, payload)
            except TransportError:
                pass
            else:
                await asyncio.wait({self._reader}, timeout=CLOSE_WAIT)
        self._local_close = True
        self._reader.cancel()  # no-op once done
        await asyncio.shield(self._released)

    def abort(self) -> None:
        """Drop the connection now, sending nothing more. ``closed(by_peer=False)``
        is reported (once) as soon as the reader task has stopped."""
        self._local_close = True
        if not self._reader.done():
            self._writer.abort()
            self._reader.cancel()
