"""Network-side behaviour that every dialect shares, below the command tables.

:class:`ClientLink` is one outgoing link carried by a transport plugin. It owns
what the module's network stack would own: connecting with a deadline, the
ping/pong deadline (:class:`PingPolicy`, run by
:class:`gatewayd.links.keepalive.Keepalive`), reconnecting after an unexpected
drop (:class:`ReconnectPolicy`), and delivering received payloads to the
dialect one at a time. The dialect decides what the MCU sees, through a
:class:`LinkObserver`; once the link table's generation ends (a restart) the
link reports nothing more.

Backpressure: :meth:`LinkObserver.data` is awaited before the transport reads
the next message, and the dialect's implementation awaits the UART
(:meth:`gatewayd.session.port.PortSession.deliver`). A server that sends faster than
the UART drains is therefore slowed by TCP flow control; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gatewayd.links.deadline import within
from gatewayd.links.keepalive import Expiry, Keepalive, PingPolicy
from gatewayd.links.table import Generation, LinkDescription, LinkState, Token
from gatewayd.links.tls import log_untrusted_server
from gatewayd.transport import ClientRequest, Connection, Opcode, Transport, TransportError

__all__ = ["ClientLink", "LinkObserver", "LinkState", "PingPolicy", "ReconnectPolicy",
           "close_connection", "routed_to"]


def routed_to(transport: object) -> str | None:
    """Where the route rules last sent a link of *transport*, if elsewhere."""
    decision = getattr(transport, "decision", None)
    if decision is None or decision.actual == decision.original:
        return None
    return str(decision.actual) if decision.actual else "denied"


#: WebSocket close code of a daemon shutting down (RFC 6455 "going away").
GOING_AWAY = 1001


async def close_connection(connection: Connection, timeout: float, *,
                           code: int | None = None) -> None:
    """End *connection* cleanly (WebSocket close handshake with *code*, TCP
    FIN), waiting at most *timeout* s for the peer, then release it for good."""
    with contextlib.suppress(TransportError, TimeoutError):
        await asyncio.wait_for(connection.close(code=code), timeout)
    connection.abort()


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """After an unexpected drop, wait ``delay`` s and connect again, forever,
    until the link is closed by the MCU."""

    delay: float


class LinkObserver(Protocol):
    """The dialect's side of a link: turns link events into bytes for the MCU."""

    async def data(self, link: ClientLink, payload: bytes, opcode: Opcode, fin: bool) -> None: ...

    def connected(self, link: ClientLink) -> None: ...

    def disconnected(self, link: ClientLink) -> None:
        """The link dropped (or a reconnect attempt failed)."""

    def closed_by_peer(self, link: ClientLink, code: int | None) -> None:
        """The peer ended the link cleanly (a WebSocket close frame)."""

    def pong(self, link: ClientLink, payload: bytes) -> None: ...


class _Events:
    """The LinkEvents one connection reports through; once its token is void
    (the connection was replaced or closed, or the module restarted) they are
    ignored."""

    def __init__(self, link: ClientLink, token: Token) -> None:
        self.link = link
        self.token = token

    async def data(self, payload: bytes, *, opcode: Opcode = Opcode.BINARY, fin: bool = True,
                   peer: tuple[str, int] | None = None) -> None:
        if self.token.live:
            self.link._received()
            await self.link.observer.data(self.link, payload, opcode, fin)

    def pong(self, payload: bytes) -> None:
        if self.token.live:
            self.link._pong(payload)

    def closed(self, *, by_peer: bool, code: int | None = None,
               error: BaseException | None = None) -> None:
        if self.token.live:
            self.token.end()
            self.link._connection_ended(by_peer=by_peer, code=code, error=error)


class ClientLink:
    """One outgoing link. ``request`` is rebuilt for every (re)connect.
    ``generation`` is the link table's: once it ends, the link reports nothing."""

    def __init__(self, link_id: int, transport: Transport,
                 request: Callable[[], ClientRequest], observer: LinkObserver, log: Any,
                 *, ping: PingPolicy | None = None,
                 reconnect: ReconnectPolicy | None = None,
                 generation: Generation | None = None,
                 on_state_change: Callable[[ClientLink], None] | None = None) -> None:
        self.id = link_id
        self.transport = transport
        self.make_request = request
        self.observer = observer
        self.log = log.bind(link=link_id)
        self.ping = ping
        self.reconnect = reconnect
        self.generation = generation
        self._on_state_change = on_state_change
        self._state = LinkState.CLOSED
        self.request: ClientRequest | None = None
        self.connection: Connection | None = None
        self._events: _Events | None = None
        self._loop = asyncio.get_running_loop()
        self._keepalive: Keepalive | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._closing = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_error: str | None = None

    @property
    def state(self) -> LinkState:
        return self._state

    @state.setter
    def state(self, state: LinkState) -> None:
        changed = state is not self._state
        self._state = state
        if changed and self._on_state_change is not None:
            self._on_state_change(self)

    # -- opening -------------------------------------------------------

    async def open(self, timeout: float | None) -> None:
        """Connect once. Raises :class:`TransportError` (state is then CLOSED)."""
        self.state = LinkState.CONNECTING
        try:
            async with asyncio.timeout(timeout):
                await self._connect()
        except TimeoutError:
            self.state = LinkState.CLOSED
            self.last_error = "timed out"
            raise TransportError("connect timed out", stage="timeout") from None
        except BaseException as exc:  # TransportError, or the command was cancelled
            self.state = LinkState.CLOSED
            self.last_error = str(exc) or type(exc).__name__
            self._explain(exc)
            raise

    def _explain(self, error: BaseException) -> None:
        if self.request is not None:
            log_untrusted_server(self.log, self.request.tls, error)

    def describe(self) -> LinkDescription:
        """What ``gatewayd status`` shows of this link."""
        request = self.request
        return LinkDescription(
            id=self.id,
            kind=request.kind if request else None,
            peer=f"{request.host}:{request.port}" if request else None,
            state=self.state,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            last_error=self.last_error,
            routed_to=routed_to(self.transport),
        )

    async def _connect(self) -> None:
        request = self.make_request()
        self.request = request
        events = _Events(self, Token(self.generation))
        self._events = events
        self.connection = await self.transport.connect(request, events)
        if not events.token.live:  # dropped during the handshake's last steps
            raise TransportError("connection closed right after opening", stage="connect")
        self.state = LinkState.OPEN
        if self.ping is not None:
            ping, connection = self.ping, self.connection
            assert connection is not None
            self._keepalive = Keepalive(
                lambda: ping, send_ping=lambda: connection.send(b"", opcode=Opcode.PING),
                expire=self._expired, alive=lambda: self.state is LinkState.OPEN,
                log=self.log)
            self._keeper = self._loop.create_task(self._keepalive.run())
        # `port` names the gatewayd port (and journald's PORT field): the peer's is peer_port.
        self.log.info("link open", host=request.host, peer_port=request.port, kind=request.kind)

    # -- traffic -------------------------------------------------------

    async def send(self, payload: bytes, *, opcode: int = Opcode.BINARY, fin: bool = True,
                   timeout: float | None = None, masked: bool = True) -> None:
        if self.connection is None or self.state is not LinkState.OPEN:
            raise TransportError("link is not open", stage="send")
        await within(timeout, self.connection.send(payload, opcode=opcode, fin=fin,
                                                   masked=masked))
        self.bytes_out += len(payload)

    def _received(self) -> None:
        if self._keepalive is not None:
            self._keepalive.received()

    def _pong(self, payload: bytes) -> None:
        if self._keepalive is not None:
            self._keepalive.pong()
        self.observer.pong(self, payload)

    async def _expired(self, why: Expiry) -> None:
        assert self.ping is not None
        self.log.warning("no pong in time; dropping link", timeout=self.ping.timeout)
        self._drop(error="pong timeout")

    # -- endings -------------------------------------------------------

    def _drop(self, *, error: str) -> None:
        """End a live connection from our side as a failure (pong timeout)."""
        if self._events is not None:
            self._events.token.end()
        if self.connection is not None:
            self.connection.abort()
        self._connection_ended(by_peer=False, code=None, error=RuntimeError(error))

    def _connection_ended(self, *, by_peer: bool, code: int | None,
                          error: BaseException | None) -> None:
        self.connection = None
        if self._keeper is not None and self._keeper is not asyncio.current_task():
            self._keeper.cancel()
        self._keeper = self._keepalive = None
        if self._closing or self.state is LinkState.CONNECTING:
            if self.state is not LinkState.CLOSING:  # CLOSING lasts until close() ends
                self.state = LinkState.CLOSED
            return
        if by_peer and code is not None:
            self.state = LinkState.CLOSED
            self.log.info("link closed by peer", code=code)
            self.observer.closed_by_peer(self, code)
            return
        self.last_error = repr(error) if error else "connection lost"
        self.log.warning("link dropped", error=self.last_error)
        self.observer.disconnected(self)
        if self.reconnect is None:
            self.state = LinkState.CLOSED
        else:
            self.state = LinkState.WAITING_TO_RECONNECT
            self._reconnector = self._loop.create_task(self._reconnect_forever())

    async def _reconnect_forever(self) -> None:
        assert self.reconnect is not None
        while not self._closing:
            await asyncio.sleep(self.reconnect.delay)
            self.state = LinkState.CONNECTING
            try:
                await self._connect()
            except TransportError as exc:
                self.last_error = str(exc)
                self.state = LinkState.WAITING_TO_RECONNECT
                self.log.info("reconnect failed", error=str(exc))
                self._explain(exc)
                self.observer.disconnected(self)
                continue
            self.observer.connected(self)
            return

    def begin_close(self) -> None:
        """Mark the link CLOSING at once (no more sends); :meth:`close` follows."""
        self._closing = True
        if self.state is LinkState.OPEN:
            self.state = LinkState.CLOSING

    async def close(self, *, graceful: bool = False, code: int | None = None) -> None:
        """Close for good. ``graceful`` sends a close frame (with *code*) / FIN
        first, waiting up to 2 s; otherwise the connection is simply dropped
        (ESP-AT ``AT+WSCLOSE``)."""
        self._closing = True
        for task in (self._keeper, self._reconnector):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        connection, self.connection = self.connection, None
        if self._events is not None:
            self._events.token.end()
        if connection is not None:
            if graceful:
                await close_connection(connection, 2, code=code)
            else:
                connection.abort()
        self.state = LinkState.CLOSED
