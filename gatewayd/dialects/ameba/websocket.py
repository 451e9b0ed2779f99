"""Ameba WebSocket client commands: AT+WSGLCFG … AT+WSTXQUEUECHECK (links 0..2).

Bytes follow seed 000 and ``shared/reference/ameba-at-behaviour.md`` §1, §2,
§5: ``[$][WS][EVENT]:linkid:<id>, connected|disconnect|pong`` and one
``[$][WS][DATA][<id>][<len>]:<data>`` per complete message (the newer
firmware's form with the opcode when the port sets ``ameba_ws_data_opcode``).
The link reads frames and reassembles them here as the firmware does: the
opcode reported is the final frame's (0 for a fragmented message), and a
message over ``buffer_size`` is discarded, never held whole.
No automatic reconnection; per-link settings and headers live until a restart.

Sends go through a per-link queue of ``max_queue_size`` frames, drained by
one sender task: ``AT+WSSEND`` waits up to ``send_blocktime`` ms for room,
then drops the frame and still answers ``OK`` as the firmware does, but
gatewayd logs and counts every dropped frame. ``AT+WSSENDRAW`` never drops:
it streams the block from the UART in ``buffer_size`` frames (first frame
with the opcode, then continuations), holding the MCU back when the network
is slower, with the firmware's watermark messages for blocks of 80 KiB or
more and its ``<<<`` abort. A frame of it that finds the queue empty and the
sender idle is sent by the command itself, as the sender would send it next
(no hand-over to the sender task and back: an eighth of the round trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any

from gatewayd.at.grammar import ameba_atoi
from gatewayd.dialects.ameba.suites import client_context, client_suite, load
from gatewayd.dialects.ameba.tt import read_block, stream_block
from gatewayd.dialects.base import (
    AtError,
    CommandSpec,
    Int,
    PortContext,
    Raw,
    Setter,
    Str,
    open_client_link,
)
from gatewayd.links import GOING_AWAY, ClientLink, LinkState, LinkTable, PingPolicy
from gatewayd.transport import ClientRequest, Opcode, SocketOptions, TransportError

SECTION = "WEBSOCKET AT command:"
#: The build option (``CONFIG_ATCMD_WEBSOCKET``, client and server) the port's
#: ``ameba_command_groups`` switches.
GROUP = "websocket"
MAX_HEADERS = 10
#: AT+WSHEADRAW has "no length limit" on the firmware beyond its heap; gatewayd
#: states one, so that ten headers cannot hold unbounded memory.
MAX_RAW_HEADER = 16 * 1024
MAX_HOST = 128
MAX_PATH = 256

#: AT+WSQUERY status numbers.
STATUS_CLOSING, STATUS_CLOSED, STATUS_CONNECTING, STATUS_OPEN = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class GlobalConfig:
    """AT+WSGLCFG. Each command sets every field (omitted ones to their defaults)."""

    connect_timeout: int = 0
    recv_timeout: int = 0
    send_timeout: int = 0
    send_blocktime: int = 30000
    keepalive_idle: int = 0
    keepalive_interval: int = 0
    keepalive_count: int = 0


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """AT+WSCFG of one link."""

    ping_interval: int = 10
    ping_timeout: int = 120
    buffer_size: int = 1500
    max_queue_size: int = 3
    protocol: str = ""
    version: str = "13"
    stable_buf_num: int = 3


#: AT+WSQUERY's status of a link in each state.
STATUS_NUMBERS = {LinkState.OPEN: STATUS_OPEN, LinkState.CONNECTING: STATUS_CONNECTING,
                  LinkState.CLOSING: STATUS_CLOSING}
LINK_IDS = range(3)


@dataclass
class LinkSlot:
    """One link id's settings and headers and, while connected, its send queue."""

    config: LinkConfig = field(default_factory=LinkConfig)
    headers: list[bytes] = field(default_factory=list)
    queue: asyncio.Queue[tuple[bytes, int, bool, bool]] | None = None
    sender: asyncio.Task[None] | None = None
    #: A frame is on its way out: the sender's, or one AT+WSSENDRAW sends itself.
    sending: bool = False
    #: Seconds a frame's send may wait (``send_timeout`` when the link opened).
    send_timeout: float | None = None
    dropped_frames: int = 0
    discarded_messages: int = 0

    def stop_sender(self) -> None:
        if self.sender is not None:
            self.sender.cancel()
            self.sender = None
        self.queue = None

    @property
    def idle(self) -> bool:
        """Connected, with nothing queued or being sent: a frame sent now
        goes out in its turn without the queue."""
        return self.queue is not None and not self.sending and self.queue.empty()


@dataclass
class AmebaWsState:
    """A port's WebSocket client: the global config, each link id's settings and
    the open links."""

    glcfg: GlobalConfig = field(default_factory=GlobalConfig)
    slots: dict[int, LinkSlot] = field(default_factory=lambda: {i: LinkSlot() for i in LINK_IDS})
    links: LinkTable[ClientLink] = field(default_factory=lambda: LinkTable(LINK_IDS))

    def status(self, link_id: int) -> int:
        link = self.links.get(link_id)
        return STATUS_CLOSED if link is None else STATUS_NUMBERS.get(link.state, STATUS_CLOSED)

    def open_link(self, link_id: int) -> ClientLink | None:
        link = self.links.get(link_id)
        return link if link is not None and link.state is LinkState.OPEN else None

    async def close(self, link_id: int, *, graceful: bool, code: int | None = None) -> None:
        link = self.links.pop(link_id)
        self.slots[link_id].stop_sender()
        if link is not None:
            await link.close(graceful=graceful, code=code)

    async def close_all(self, *, going_away: bool = False) -> None:
        """Drop every link (a restart), or close each cleanly with 1001."""
        code = GOING_AWAY if going_away else None
        await asyncio.gather(*(self.close(link_id, graceful=going_away, code=code)
                               for link_id in self.slots))


def ws(ctx: PortContext) -> AmebaWsState:
    state: AmebaWsState = ctx.state.ws
    return state


def slot_of(ctx: PortContext, link_id: int) -> LinkSlot:
    return ws(ctx).slots[link_id]


# -- messages -----------------------------------------------------------------


class AmebaWsObserver:
    """One link's messages. Frames (the link asks for them) are joined until
    FIN; at most ``buffer_size`` bytes of a message are held."""

    def __init__(self, ctx: PortContext, slot: LinkSlot) -> None:
        self.ctx, self.slot = ctx, slot
        self._parts: list[bytes] = []  # the message so far, while it fits
        self._size = 0  # its length, past buffer_size too

    async def data(self, link: ClientLink, payload: bytes, opcode: Opcode, fin: bool) -> None:
        self._size += len(payload)
        limit = self.slot.config.buffer_size
        if self._size <= limit:
            self._parts.append(payload)
        else:
            self._parts.clear()
        if not fin:
            return
        size, message = self._size, b"".join(self._parts)
        self._parts, self._size = [], 0
        if size > limit:
            self.slot.discarded_messages += 1
            link.log.warning("message larger than the link's buffer discarded",
                             length=size, buffer_size=limit,
                             discarded=self.slot.discarded_messages)
            return
        if self.ctx.config.ameba_ws_data_opcode:  # the final frame's: 0 when fragmented
            head = b"[$][WS][DATA][%d][%d][%d]:" % (link.id, int(opcode), size)
        else:
            head = b"[$][WS][DATA][%d][%d]:" % (link.id, size)
        link.bytes_in += size
        await self.ctx.deliver(head + message + b"\r\n")

    def connected(self, link: ClientLink) -> None:  # only on AT+WSCONN, which prints it
        pass

    def disconnected(self, link: ClientLink) -> None:
        self._ended(link)

    def closed_by_peer(self, link: ClientLink, code: int | None) -> None:
        self._ended(link)

    def _ended(self, link: ClientLink) -> None:
        if ws(self.ctx).links.remove(link.id, link):
            self.slot.stop_sender()
        self.ctx.unsolicited(b"[$][WS][EVENT]:linkid:%d, disconnect\r\n" % link.id)

    def pong(self, link: ClientLink, payload: bytes) -> None:
        self.ctx.unsolicited(b"[$][WS][EVENT]:linkid:%d, pong\r\n" % link.id)


# -- configuration --------------------------------------------------------------


async def wsglcfg(ctx: PortContext, *values: int) -> None:
    names = ("connect_timeout", "recv_timeout", "send_timeout", "send_blocktime",
             "keepalive_idle", "keepalive_interval", "keepalive_count")
    limits = {"keepalive_idle": 7200, "keepalive_interval": 75, "keepalive_count": 10}
    settings = dict(zip(names, values, strict=True))
    for name, value in settings.items():
        if value < 0 or value > limits.get(name, 2**31 - 1):
            raise AtError(1, why=f"{name}={value}")
    ws(ctx).glcfg = GlobalConfig(**settings)


async def wscfg(ctx: PortContext, link_id: int, ping_interval: int, ping_timeout: int,
                buffer_size: int, max_queue_size: int, protocol: str, version: str,
                stable_buf_num: int | None) -> None:
    if version != "13":
        raise AtError(1, why=f"version {version!r}: only 13")
    stable = min(3, max_queue_size) if stable_buf_num is None else stable_buf_num
    if not 1 <= stable <= max_queue_size:
        raise AtError(1, why=f"stable_buf_num {stable} outside 1..{max_queue_size}")
    slot = slot_of(ctx, link_id)
    slot.config = LinkConfig(ping_interval, ping_timeout, buffer_size, max_queue_size,
                             protocol, version, stable)


async def wshead(ctx: PortContext, link_id: int, length: int, header: bytes | None) -> None:
    slot = slot_of(ctx, link_id)
    if length == 0:
        slot.headers.clear()
        return
    if not header:
        raise AtError(1, why="header text missing")
    if len(slot.headers) >= MAX_HEADERS:
        raise AtError(3, why=f"at most {MAX_HEADERS} headers per link")
    slot.headers.append(header[:length])


async def wsheadraw(ctx: PortContext, link_id: int, length: int) -> None:
    slot = slot_of(ctx, link_id)
    if length == 0:
        slot.headers.clear()
        return
    if length > MAX_RAW_HEADER:
        raise AtError(1, why=f"a header is limited to {MAX_RAW_HEADER} bytes")
    if len(slot.headers) >= MAX_HEADERS:
        raise AtError(4, why=f"at most {MAX_HEADERS} headers per link")
    slot.headers.append(await read_block(ctx, length))


async def wsquery(ctx: PortContext, link_id: int | None) -> None:
    state = ws(ctx)
    g = state.glcfg
    lines = [
        "Global config:", f"connect_timeout: {g.connect_timeout}",
        f"recv_timeout: {g.recv_timeout}", f"send_timeout: {g.send_timeout}",
        f"send_blocktime: {g.send_blocktime}", f"keepalive_idle: {g.keepalive_idle}",
        f"keepalive_interval: {g.keepalive_interval}", f"keepalive_count: {g.keepalive_count}",
    ]
    out = "".join(f"{line}\r\n" for line in lines).encode()
    for lid in ([link_id] if link_id is not None else sorted(state.slots)):
        slot = state.slots[lid]
        c = slot.config
        block = [
            f"link_id: {lid}", f"status: {state.status(lid)}", f"ping_interval: {c.ping_interval}",
            f"ping_timeout: {c.ping_timeout}", f"buffer_size: {c.buffer_size}",
            f"max_queue_size: {c.max_queue_size}", f"protocol: {c.protocol}",
            f"version: {c.version}", f"stable_buf_num: {c.stable_buf_num}", "header:",
        ]
        out += "".join(f"{line}\r\n" for line in block).encode("utf-8", "surrogateescape")
        out += b"".join(h + b"\r\n" for h in slot.headers)
    ctx.write(out)


async def wsquery_all(ctx: PortContext) -> None:
    await wsquery(ctx, None)


async def wsquery_set(ctx: PortContext, link_id: bytes) -> None:
    if not link_id.strip():
        await wsquery(ctx, None)
        return
    value = ameba_atoi(link_id)
    if value not in LINK_IDS:
        raise AtError(1, why=f"link id {value}")
    await wsquery(ctx, value)


# -- connecting ------------------------------------------------------------------


def _tls(ctx: PortContext, conn_type: int, cert_index: int) -> ssl.SSLContext | None:
    if conn_type == 1:
        return None
    suite = client_suite(ctx, conn_type, cert_index, missing=4)
    return load(lambda: client_context(ctx, conn_type, suite), {}, 4)


def _socket_options(g: GlobalConfig) -> SocketOptions:
    keepalive = g.keepalive_idle > 0
    return SocketOptions(
        send_timeout=g.send_timeout / 1000 or None, recv_timeout=g.recv_timeout / 1000 or None,
        keepalive=keepalive or None,
        keepalive_idle=g.keepalive_idle or None, keepalive_interval=g.keepalive_interval or None,
        keepalive_count=g.keepalive_count or None)


def _header_pairs(headers: list[bytes]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for raw in headers:
        name, _, value = raw.decode("latin-1").partition(":")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


async def wsconn(ctx: PortContext, link_id: int, host: str, path: str, port: int,
                 conn_type: int, cert_index: int) -> None:
    slot, state = slot_of(ctx, link_id), ws(ctx)
    if link_id in state.links:
        raise AtError(1, why=f"link {link_id} is already open")
    if not host or len(host) > MAX_HOST or len(path) > MAX_PATH:
        raise AtError(1, why="host empty or too long, or path too long")
    tls = _tls(ctx, conn_type, cert_index)
    kind = "ws" if conn_type == 1 else "wss"
    config, glcfg = slot.config, state.glcfg
    request = ClientRequest(
        kind=kind, host=host, port=port or (80 if kind == "ws" else 443),
        path=path if path.startswith("/") else "/" + path, tls=tls,
        headers=_header_pairs(slot.headers),
        subprotocols=(config.protocol,) if config.protocol else (),
        connect_timeout=glcfg.connect_timeout / 1000 or None,
        options=_socket_options(glcfg), frames=True)
    try:
        link = await open_client_link(
            ctx, state.links, link_id, kind, lambda: request, AmebaWsObserver(ctx, slot),
            entry=lambda link: link,
            ping=PingPolicy(config.ping_interval, config.ping_timeout, periodic=True),
            timeout=request.connect_timeout, no_transport=3)
    except TransportError as exc:
        raise AtError(5, why=f"connection failed ({exc.stage}): {exc}") from None
    slot.queue = asyncio.Queue(maxsize=config.max_queue_size)
    slot.send_timeout = glcfg.send_timeout / 1000 or None
    slot.sender = asyncio.get_running_loop().create_task(_send_queued(slot, link))
    ctx.write(b"[$][WS][EVENT]:linkid:%d, connected\r\n" % link_id)


async def _send_queued(slot: LinkSlot, link: ClientLink) -> None:
    """The link's sender: hands queued frames to the network one by one."""
    assert slot.queue is not None
    queue = slot.queue
    while True:
        frame = await queue.get()
        slot.sending = True
        try:
            await _send_frame(link, frame, slot.send_timeout)
        finally:
            slot.sending = False
            queue.task_done()


async def _send_frame(link: ClientLink, frame: tuple[bytes, int, bool, bool],
                      timeout: float | None) -> None:
    """Send one frame of the queue; a failure is logged, not raised: the MCU
    has its answer already, or gets it from what the link's end does."""
    payload, opcode, fin, masked = frame
    try:
        await link.send(payload, opcode=opcode, fin=fin, masked=masked, timeout=timeout)
    except (TransportError, TimeoutError) as exc:
        link.log.warning("queued frame not sent", error=repr(exc))


# -- sending -----------------------------------------------------------------------


def _open_slot(ctx: PortContext, link_id: int) -> LinkSlot:
    slot = slot_of(ctx, link_id)
    if ws(ctx).open_link(link_id) is None or slot.queue is None:
        raise AtError(2, why=f"link {link_id} is not connected")
    return slot


async def wssend(ctx: PortContext, link_id: int, length: int, use_mask: int, opcode: int,
                 data: bytes | None) -> None:
    slot = slot_of(ctx, link_id)
    if not 1 <= length <= slot.config.buffer_size:
        raise AtError(1, why=f"length {length} outside 1..{slot.config.buffer_size}")
    if not data or length > len(data):
        raise AtError(1, why="data missing or shorter than length")
    slot = _open_slot(ctx, link_id)
    frame = (data[:length], opcode, True, bool(use_mask))
    blocktime = ws(ctx).glcfg.send_blocktime / 1000
    assert slot.queue is not None
    try:
        if blocktime:
            await asyncio.wait_for(slot.queue.put(frame), blocktime)
        else:
            slot.queue.put_nowait(frame)
    except (TimeoutError, asyncio.QueueFull):
        slot.dropped_frames += 1
        ctx.log.warning("send queue full: frame dropped (the firmware answers OK too)",
                        link=link_id, length=length, dropped=slot.dropped_frames)


async def _enqueue(slot: LinkSlot, frame: tuple[bytes, int, bool, bool]) -> None:
    """Queue *frame*, waiting for room; AtError 2 if the link ends meanwhile."""
    if slot.queue is None:
        raise AtError(2, why="the link ended during the transfer")
    await _until_sent_or_lost(slot, slot.queue.put(frame))


async def _until_sent_or_lost(slot: LinkSlot, waiting: Any) -> None:
    """Await *waiting* (a put into the link's queue, or its join); AtError 2
    if the link's sender ends first. Awaited in place, so a put with room
    costs no task and no loop turn: the sender's end cancels this task."""
    sender = slot.sender
    if sender is None or sender.done():
        waiting.close()
        raise AtError(2, why="the link ended during the transfer")
    this = asyncio.current_task()
    assert this is not None
    ended = False

    def sender_ended(_: asyncio.Task[None]) -> None:
        nonlocal ended
        ended = True
        this.cancel()

    sender.add_done_callback(sender_ended)
    try:
        await waiting
    except asyncio.CancelledError:
        if ended and this.uncancel() == 0:
            raise AtError(2, why="the link ended during the transfer") from None
        raise
    finally:
        sender.remove_done_callback(sender_ended)


async def wssendraw(ctx: PortContext, link_id: int, length: int, use_mask: int,
                    opcode: int) -> None:
    if length < 1:
        raise AtError(1, why="length must be at least 1")
    slot = _open_slot(ctx, link_id)
    link = ws(ctx).open_link(link_id)
    assert slot.queue is not None and link is not None
    masked = bool(use_mask)

    async def send(piece: bytes, first: bool, last: bool) -> None:
        frame = (piece, opcode if first else Opcode.CONTINUATION, last, masked)
        if slot.idle:
            # The queue's turn, without a hand-over to the sender and back.
            slot.sending = True
            try:
                await _send_frame(link, frame, slot.send_timeout)
            finally:
                slot.sending = False
        else:
            await _enqueue(slot, frame)

    # Cut short by <<<: what arrived is sent, as the end of the message begun.
    await stream_block(ctx, length, slot.config.buffer_size, send, empty_abort=4)
    if slot.queue is None:
        raise AtError(2, why="the link ended during the transfer")
    if not slot.idle:
        await _until_sent_or_lost(slot, slot.queue.join())


async def wsdisconn(ctx: PortContext, link_id: int) -> None:
    state = ws(ctx)
    link = state.open_link(link_id)
    if link is None:
        raise AtError(2, why=f"link {link_id} is not connected")
    link.begin_close()

    async def close() -> None:
        with contextlib.suppress(TransportError):
            await link.close(graceful=True)
        if state.links.get(link_id) is link:
            await state.close(link_id, graceful=False)
            ctx.unsolicited(b"[$][WS][EVENT]:linkid:%d, disconnect\r\n" % link_id)

    ctx.spawn(close())


async def wstxqueuecheck(ctx: PortContext, link_id: int) -> bytes:
    slot = _open_slot(ctx, link_id)
    assert slot.queue is not None
    full = slot.queue.qsize() >= slot.config.max_queue_size
    # As documented: OK first, then the text (LF only, as the firmware prints it).
    return b"\r\nOK\r\n" + (b"Tx queue is full\n" if full else b"Tx queue is not full\n")


# -- table -------------------------------------------------------------------------

_LINK = Int("link_id", lo=LINK_IDS.start, hi=LINK_IDS.stop - 1)
_U32 = 2**31 - 1


def _glcfg_param(name: str, default: int) -> Int:
    return Int(name, default=default, lo=-(2**31), hi=_U32)


COMMANDS = (
    CommandSpec("+WSGLCFG", "global WebSocket client settings", section=SECTION, group=GROUP,
                set=Setter(wsglcfg, tuple(
                    _glcfg_param(name, default) for name, default in (
                        ("connect_timeout", 0), ("recv_timeout", 0), ("send_timeout", 0),
                        ("send_blocktime", 30000), ("keepalive_idle", 0),
                        ("keepalive_interval", 0), ("keepalive_count", 0))), escaped=True)),
    CommandSpec("+WSCFG", "settings of one link", section=SECTION, group=GROUP, set=Setter(wscfg, (
        _LINK, Int("ping_interval", lo=1, hi=7200), Int("ping_timeout", lo=1, hi=7200),
        Int("buffer_size", default=1500, lo=1, hi=16384),
        Int("max_queue_size", default=3, lo=1, hi=50), Str("protocol", default=""),
        Str("version", default="13"), Int("stable_buf_num", default=None, lo=1, hi=50)),
        escaped=True)),
    CommandSpec("+WSHEAD", "add a request header (0 clears)", section=SECTION, group=GROUP,
                set=Setter(wshead, (_LINK, Int("header_len", lo=0, hi=_U32),
                                    Raw("header", default=None, secret="header")),
                           escaped=True)),
    CommandSpec("+WSHEADRAW", "add a request header through >>> (0 clears)",
                section=SECTION, group=GROUP,
                set=Setter(wsheadraw, (_LINK, Int("header_len", lo=0, hi=_U32)),
                           escaped=True, raw_secret="header")),
    CommandSpec("+WSCONN", "connect a link", section=SECTION, group=GROUP, set=Setter(wsconn, (
        _LINK, Str("host", default=""), Str("path", default="/"),
        Int("port", default=0, lo=0, hi=65535), Int("conn_type", lo=1, hi=5),
        Int("cert_index", default=0, lo=0, hi=10)), escaped=True)),
    CommandSpec("+WSSEND", "send a frame with escaped data", section=SECTION, group=GROUP,
                set=Setter(wssend, (_LINK, Int("length", lo=0, hi=_U32),
                                    Int("use_mask", default=1, lo=0, hi=1),
                                    Int("opcode", default=1, lo=0, hi=15),
                                    Raw("data", default=None)), escaped=True)),
    CommandSpec("+WSSENDRAW", "send raw data through >>>", section=SECTION, group=GROUP,
                set=Setter(wssendraw, (_LINK, Int("length", lo=0, hi=_U32),
                                       Int("use_mask", default=1, lo=0, hi=1),
                                       Int("opcode", default=1, lo=0, hi=15)), escaped=True)),
    CommandSpec("+WSDISCONN", "close a link (close frame)", section=SECTION, group=GROUP,
                set=Setter(wsdisconn, (_LINK,))),
    CommandSpec("+WSQUERY", "global and per-link settings and state", section=SECTION, group=GROUP,
                execute=wsquery_all, set=Setter(wsquery_set, (Raw("link_id", default=b""),))),
    CommandSpec("+WSTXQUEUECHECK", "is the link's send queue full?", section=SECTION, group=GROUP,
                set=Setter(wstxqueuecheck, (_LINK,))),
)

__all__ = ["COMMANDS", "AmebaWsState"]
