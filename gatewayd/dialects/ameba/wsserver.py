"""Ameba WebSocket server commands: AT+WSSRVCFG … AT+WSSRVQUERY.

Bytes follow seed 000 and ``shared/reference/ameba-at-behaviour.md`` §1, §5
("WebSocket server"). The link id is the connection slot, 0..max_conn-1,
lowest free first; a client beyond max_conn gets HTTP 429 and the MCU hears
nothing of it. Messages: ``[WSSRV][EVENT]:start`` (no ``[$]``, before OK),
``[$][WSSRV][EVENT]:linkid:<id>, connected``, ``…, disconnected, reason:<n>``,
``[$][WSSRV][EVENT]:stop`` and ``[$][WSSRV][DATA][<id>][<opcode>][<len>]:<data>``
once per complete message.

Disconnect reasons (seed 000): 3 the client closed, 4 the MCU closed
(AT+WSSRVDISCONN, AT+WSSRVSTOP), 5 TLS handshake failed, 6 TLS handshake
timed out, 10 read failed (the connection was lost), 11 send failed, 13 no
pong by the next ping, 14 idle timeout. 5 and 6 name the slot the client
would have taken and come without a ``connected`` before them; a client
turned away by the operator's settings (networks, token) is only logged.

Limits and defaults: ping every ``ping_interval`` s (30) and idle timeout
(0 = off) apply at once; max_conn (3), tx_size and rx_size (4096) at the next
AT+WSSRVSTART. AT+WSSRVSEND sends at most tx_size bytes; AT+WSSRVSENDRAW
streams any length from the UART in tx_size frames (first frame with the
opcode, then continuations; a control opcode 8..15 as one frame of at most
125 bytes). Messages from clients are delivered whole up to
:data:`MAX_MESSAGE` (rx_size is reported, not enforced: the firmware
reassembles into a growing buffer); a slow UART slows the client through TCP
flow control. Beyond the firmware: ``AT+WSSRVSEND=<id>,0,<opcode>,`` sends an
empty message (the firmware refuses length 0).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from gatewayd.dialects.ameba.sockets import bind_address
from gatewayd.dialects.ameba.suites import load, server_suite
from gatewayd.dialects.ameba.tt import exact, read_block, stream_block
from gatewayd.dialects.ameba.websocket import GROUP, SECTION
from gatewayd.dialects.base import (
    AtError,
    CommandSpec,
    Int,
    PortContext,
    Raw,
    Setter,
    transport_for,
)
from gatewayd.links import (
    GOING_AWAY,
    Expiry,
    Keepalive,
    LinkDescription,
    LinkState,
    LinkTable,
    PingPolicy,
    Token,
    close_connection,
)
from gatewayd.links.tls import server_context
from gatewayd.transport import (
    Connection,
    Listener,
    ListenRequest,
    Opcode,
    Refused,
    TransportError,
)

__all__ = ["COMMANDS", "WsServerState"]

#: Largest message accepted from a client.
MAX_MESSAGE = 4 * 1024 * 1024
MAX_SLOTS = 3
MAX_CONTROL_PAYLOAD = 125

CLIENT_CLOSED, SERVER_CLOSED, TLS_FAILED, TLS_TIMEOUT = 3, 4, 5, 6
READ_FAILED, SEND_FAILED, NO_PONG, IDLE = 10, 11, 13, 14
#: AT+WSSRVQUERY status numbers (a slot exists only from "connected" on).
CONNECTED, AWAITING_PONG, CLOSING = 2, 3, 4


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """AT+WSSRVCFG; omitted fields take their defaults."""

    max_conn: int = 3
    ping_interval: int = 30
    idle_timeout: int = 0
    tx_size: int = 4096
    rx_size: int = 4096


@dataclass(eq=False)
class ClientSlot:
    """One connected client."""

    id: int
    connection: Connection
    server: WsServerState
    token: Token
    keepalive: Keepalive
    state: LinkState = LinkState.OPEN  # then CLOSING; the slot goes once closed
    reason: int | None = None  # set when gatewayd ends the connection
    keeper: asyncio.Task[None] | None = None
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def status(self) -> int:
        """AT+WSSRVQUERY's status number."""
        if self.state is LinkState.CLOSING:
            return CLOSING
        return AWAITING_PONG if self.keepalive.awaiting_pong else CONNECTED

    def closing(self, reason: int) -> None:
        self.reason = reason
        self.state = LinkState.CLOSING

    def describe(self) -> LinkDescription:
        peer = self.connection.peer
        return LinkDescription(id=self.id, kind="ws server client", peer=f"{peer[0]}:{peer[1]}",
                               state=self.state, bytes_in=self.bytes_in,
                               bytes_out=self.bytes_out, last_error=None)


@dataclass
class WsServerState:
    """A port's WebSocket server: its config, the config it started with, its
    listener and its client slots."""

    config: ServerConfig = field(default_factory=ServerConfig)
    #: The config the running server started with (max_conn, tx/rx sizes).
    started: ServerConfig | None = None
    port: int = 0
    listener: Listener | None = None
    slots: LinkTable[ClientSlot] = field(default_factory=lambda: LinkTable(range(MAX_SLOTS)))

    def free_slot(self) -> int | None:
        return self.slots.free_id((self.started or self.config).max_conn)

    async def stop(self, *, going_away: bool = False) -> None:
        """Stop listening and close every client (reason 4; unreported once
        the slots' generation ended, at a restart); *going_away*: with 1001."""
        listener, self.listener = self.listener, None
        self.started = None
        if listener is not None:
            await listener.close()
        for slot in self.slots.values():
            slot.closing(SERVER_CLOSED)
        code = GOING_AWAY if going_away else None
        await asyncio.gather(*(_close(slot, code) for slot in self.slots.values()))


def server(ctx: PortContext) -> WsServerState:
    state: WsServerState = ctx.state.wsserver
    return state


async def _close(slot: ClientSlot, code: int | None = None) -> None:
    await close_connection(slot.connection, 2, code=code)


# -- client events ------------------------------------------------------------


class SlotEvents:
    """The LinkEvents of one client connection."""

    def __init__(self, ctx: PortContext, slot: ClientSlot) -> None:
        self.ctx, self.slot = ctx, slot

    @property
    def stale(self) -> bool:
        """The MCU must hear nothing more of this client (the module restarted)."""
        return not self.slot.token.live

    async def data(self, payload: bytes, *, opcode: Opcode = Opcode.BINARY, fin: bool = True,
                   peer: tuple[str, int] | None = None) -> None:
        slot = self.slot
        if self.stale:
            return
        slot.keepalive.received()
        slot.bytes_in += len(payload)
        await self.ctx.deliver(b"[$][WSSRV][DATA][%d][%d][%d]:" % (slot.id, int(opcode),
                                                                   len(payload))
                               + payload + b"\r\n")

    def pong(self, payload: bytes) -> None:
        if self.slot.state is LinkState.OPEN:
            self.slot.keepalive.pong()

    def closed(self, *, by_peer: bool, code: int | None = None,
               error: BaseException | None = None) -> None:
        slot = self.slot
        slot.server.slots.remove(slot.id, slot)
        if slot.keeper is not None and slot.keeper is not asyncio.current_task():
            slot.keeper.cancel()
        if slot.reason is not None:
            reason = slot.reason
        elif by_peer and code is not None and error is None:
            reason = CLIENT_CLOSED
        else:
            reason = READ_FAILED
        self.ctx.log.info("websocket server client gone", link=slot.id, reason=reason,
                          code=code, error=repr(error) if error else None)
        self.ctx.link_changed(slot)
        if self.stale:
            return
        self.ctx.unsolicited(b"[$][WSSRV][EVENT]:linkid:%d, disconnected, reason:%d\r\n"
                             % (slot.id, reason))


def _keepalive(ctx: PortContext, state: WsServerState,
               slot: Callable[[], ClientSlot]) -> Keepalive:
    """Ping every ping_interval; drop a client whose pong has not come by the
    next one (13), or that sent and received no data for idle_timeout (14).
    AT+WSSRVCFG applies at once. *slot* returns the client's slot."""

    def policy() -> PingPolicy:
        interval = state.config.ping_interval
        return PingPolicy(interval, timeout=interval, periodic=True)

    async def expire(why: Expiry) -> None:
        if why is Expiry.IDLE:
            await _drop(ctx, slot(), IDLE, "idle timeout")
        else:
            await _drop(ctx, slot(), NO_PONG, "no pong by the next ping")

    return Keepalive(policy, send_ping=lambda: slot().connection.send(b"", opcode=Opcode.PING),
                     expire=expire, alive=lambda: slot().state is LinkState.OPEN, log=ctx.log,
                     idle_timeout=lambda: state.config.idle_timeout)


async def _drop(ctx: PortContext, slot: ClientSlot, reason: int, why: str) -> None:
    ctx.log.info("closing websocket server client", link=slot.id, reason=why)
    slot.closing(reason)
    await _close(slot)


# -- configuration and start ---------------------------------------------------


async def wssrvcfg(ctx: PortContext, *values: int) -> None:
    state = server(ctx)
    state.config = ServerConfig(*values)
    for slot in state.slots.values():
        slot.keepalive.wake()


def _server_tls(ctx: PortContext, conn_type: int, cert_index: int) -> ssl.SSLContext | None:
    require = conn_type == 3 or ctx.config.wssrv_require_client_cert
    if conn_type == 1:
        if require:
            raise AtError(6, why="the port requires client certificates: ws cannot start")
        return None
    # The firmware loads server cert, key and CA for both TLS types.
    suite = server_suite(ctx, cert_index, ("cert", "key", "ca"), missing=3)
    # 3: a file it cannot read; 5: any other loading failure.
    return load(lambda: server_context(suite, require_client_cert=require), {"read": 3}, 5)


async def wssrvstart(ctx: PortContext, port: int, conn_type: int, cert_index: int) -> bytes:
    state = server(ctx)
    if state.listener is not None:
        raise AtError(2, why="the server is already running")
    tls = _server_tls(ctx, conn_type, cert_index)
    kind = "ws" if tls is None else "wss"
    transport = transport_for(ctx, kind, 6)
    port = port or (80 if kind == "ws" else 443)
    try:
        host = bind_address(ctx)
    except AtError as exc:
        raise AtError(6, why=exc.why) from None

    def current() -> bool:
        # Handshakes under way when the server stopped, or the module
        # restarted, must not reach the MCU.
        return state.listener is not None and state.slots.generation.current

    def accept(connection: Connection) -> SlotEvents:
        if not current():
            raise Refused("the server has stopped", status=503)
        return _accept(ctx, state, connection)

    def rejected(peer: tuple[str, int], error: TransportError) -> None:
        if current():
            _rejected(ctx, state, kind, peer, error)

    request = ListenRequest(kind=kind, host=host, port=port, tls=tls,
                            allow=ctx.config.allowed_networks, token=ctx.config.wssrv_token,
                            on_rejected=rejected, max_message=MAX_MESSAGE)
    try:
        state.listener = await transport.listen(request, accept)
    except TransportError as exc:
        raise AtError(6, why=f"cannot listen on port {port} ({exc.stage}): {exc}") from None
    state.started, state.port = state.config, port
    ctx.log.info("websocket server listening", address=f"{host or '*'}:{port}", kind=kind)
    return b"[WSSRV][EVENT]:start\r\n\r\nOK\r\n"


def _accept(ctx: PortContext, state: WsServerState, connection: Connection) -> SlotEvents:
    slot_id = state.free_slot()
    if slot_id is None:
        ctx.log.info("websocket client refused: every slot is taken",
                     peer=f"{connection.peer[0]}:{connection.peer[1]}")
        raise Refused("every connection slot is taken", status=429)
    slot: ClientSlot
    slot = ClientSlot(slot_id, connection, state, state.slots.token(),
                      _keepalive(ctx, state, lambda: slot))
    state.slots.add(slot_id, slot)
    events = SlotEvents(ctx, slot)
    slot.keeper = asyncio.get_running_loop().create_task(slot.keepalive.run())
    ctx.unsolicited(b"[$][WSSRV][EVENT]:linkid:%d, connected\r\n" % slot_id)
    ctx.log.info("websocket server client connected", link=slot_id,
                 peer=f"{connection.peer[0]}:{connection.peer[1]}")
    ctx.link_changed(slot)
    return events


def _rejected(ctx: PortContext, state: WsServerState, kind: str, peer: tuple[str, int],
              error: TransportError) -> None:
    ctx.log.info("websocket client rejected", peer=f"{peer[0]}:{peer[1]}", stage=error.stage,
                 error=str(error))
    reason = {"tls": TLS_FAILED, "timeout": TLS_TIMEOUT}.get(error.stage)
    slot_id = state.free_slot()
    # With a token, a peer that failed TLS never authenticated: the MCU hears
    # nothing of it (nor of peers outside server_allow, refused before TLS).
    if kind == "wss" and reason is not None and slot_id is not None and \
            ctx.config.wssrv_token is None:
        ctx.unsolicited(b"[$][WSSRV][EVENT]:linkid:%d, disconnected, reason:%d\r\n"
                        % (slot_id, reason))


# -- sending ---------------------------------------------------------------------------


def _connected(ctx: PortContext, link_id: int, code: int) -> ClientSlot:
    slot = server(ctx).slots.get(link_id)
    if slot is None or slot.state is not LinkState.OPEN:
        raise AtError(code, why=f"link {link_id} is not connected")
    return slot


async def _send(slot: ClientSlot, payload: bytes, opcode: int, fin: bool) -> None:
    try:
        await slot.connection.send(payload, opcode=opcode, fin=fin)
    except TransportError as exc:
        slot.reason = SEND_FAILED
        slot.connection.abort()
        raise AtError(1, why=f"send failed: {exc}") from None
    if opcode < Opcode.CLOSE:
        slot.keepalive.sent()
    slot.bytes_out += len(payload)


async def wssrvsend(ctx: PortContext, link_id: int, length: int, opcode: int,
                    data: bytes | None) -> None:
    slot = _connected(ctx, link_id, 1)
    tx_size = (server(ctx).started or server(ctx).config).tx_size
    data = data or b""
    if not 0 <= length <= tx_size or length > len(data) or (length == 0 and data):
        raise AtError(1, why=f"length {length}: 1..{tx_size}, at most the data given")
    await _send(slot, data[:length], opcode, True)


async def wssrvsendraw(ctx: PortContext, link_id: int, length: int, opcode: int) -> None:
    if length < 1:
        raise AtError(1, why="length must be at least 1")
    slot = _connected(ctx, link_id, 1)
    if opcode >= Opcode.CLOSE:
        await _send_control_raw(ctx, slot, length, opcode)
        return
    tx_size = (server(ctx).started or server(ctx).config).tx_size

    async def send(piece: bytes, first: bool, last: bool) -> None:
        await _send(slot, piece, opcode if first else Opcode.CONTINUATION, last)

    await stream_block(ctx, length, tx_size, send, empty_abort=3)


async def _send_control_raw(ctx: PortContext, slot: ClientSlot, length: int,
                            opcode: int) -> None:
    """A control frame (opcode 8..15) is one frame of at most 125 bytes (RFC 6455)."""
    if length > MAX_CONTROL_PAYLOAD:
        raise AtError(1, why=f"a control frame carries at most {MAX_CONTROL_PAYLOAD} bytes")
    await _send(slot, await read_block(ctx, length), opcode, True)


# -- closing and query ---------------------------------------------------------------------


async def wssrvdisconn(ctx: PortContext, link_id: int) -> None:
    slot = _connected(ctx, link_id, 2)
    slot.closing(SERVER_CLOSED)
    ctx.spawn(_close(slot))


async def wssrvstop(ctx: PortContext) -> None:
    state = server(ctx)

    if state.listener is None:
        return
    ctx.log.info("websocket server stopping", clients=len(state.slots))
    # Closing (at most 2 s per client, all at once) finishes before OK, so a
    # following AT+WSSRVSTART finds the port free; the disconnect and stop
    # messages wait behind the OK, as unsolicited messages do.
    await state.stop()
    ctx.unsolicited(b"[$][WSSRV][EVENT]:stop\r\n")


async def wssrvstop_set(ctx: PortContext, _args: bytes) -> None:
    await wssrvstop(ctx)


async def wssrvquery(ctx: PortContext) -> None:
    state = server(ctx)
    c = state.config
    lines = [f"port: {state.port}", f"max_conn: {c.max_conn}",
             f"ping_interval: {c.ping_interval}", f"idle_timeout: {c.idle_timeout}",
             f"tx_size: {c.tx_size}", f"rx_size: {c.rx_size}"]
    for slot_id, slot in state.slots.sorted():
        lines += [f"link_id: {slot_id}", f"status: {slot.status}",
                  f"ip: {slot.connection.peer[0]}"]
    ctx.write("".join(f"{line}\r\n" for line in lines).encode())


async def wssrvquery_set(ctx: PortContext, _args: bytes) -> None:
    await wssrvquery(ctx)


# -- table -------------------------------------------------------------------------------------

_SLOT = Int("link_id", lo=0, hi=MAX_SLOTS - 1)
_U31 = 2**31 - 1

COMMANDS = (
    CommandSpec("+WSSRVCFG", "WebSocket server settings", section=SECTION, group=GROUP,
                set=exact(wssrvcfg, (
                    Int("max_conn", default=3, lo=1, hi=MAX_SLOTS),
                    Int("ping_interval", default=30, lo=1, hi=7200),
                    Int("idle_timeout", default=0, lo=0, hi=7200),
                    Int("tx_size", default=4096, lo=1, hi=16384),
                    Int("rx_size", default=4096, lo=1, hi=16384)))),
    CommandSpec("+WSSRVSTART", "start the WebSocket server", section=SECTION, group=GROUP,
                set=exact(wssrvstart, (
                    Int("port", default=0, lo=0, hi=65535), Int("conn_type", lo=1, hi=3),
                    Int("cert_index", default=0, lo=0, hi=_U31)))),
    CommandSpec("+WSSRVDISCONN", "close one client (close frame)", section=SECTION, group=GROUP,
                set=exact(wssrvdisconn, (_SLOT,))),
    CommandSpec("+WSSRVSTOP", "close every client and stop the server",
                section=SECTION, group=GROUP,
                execute=wssrvstop,
                set=Setter(wssrvstop_set, (Raw("args", default=b""),))),
    CommandSpec("+WSSRVSEND", "send a frame with escaped data", section=SECTION, group=GROUP,
                set=exact(wssrvsend, (
                    _SLOT, Int("length", lo=-(2**31), hi=_U31),
                    Int("opcode", default=1, lo=0, hi=15), Raw("data", default=None)),
                    escaped=True)),
    CommandSpec("+WSSRVSENDRAW", "send raw data through >>>", section=SECTION, group=GROUP,
                set=exact(wssrvsendraw, (
                    _SLOT, Int("length", lo=-(2**31), hi=_U31),
                    Int("opcode", default=1, lo=0, hi=15)), escaped=True)),
    CommandSpec("+WSSRVQUERY", "server settings and clients", section=SECTION, group=GROUP,
                execute=wssrvquery,
                set=Setter(wssrvquery_set, (Raw("args", default=b""),))),
)
