"""ESP-AT TCP/IP links: the five-link table, what each link receives, and
the messages the MCU hears about them (``shared/reference/esp-at-tcpip.md``
§2 and §4).

One :class:`IpState` per port holds links 0..4 (``AT+CIPMUX=0`` uses link 0
only), the per-id options that outlive a link (receive mode, socket options,
TLS settings), and the port-wide switches (mux, CIPMODE, CIPDINFO,
SYSMSG). The WebSocket links of ``AT+WSOPEN`` have their own ids, as on the
module.

Receiving (:class:`IpEvents`):

- active mode: ``\\r\\n+IPD,[<id>,]<len>[,"<ip>",<port>]:<data>`` and, by
  default, a trailing ``\\r\\n`` (the firmware's ``at_construct_tail``; the
  port's ``ipd_trailing_crlf = false`` drops it). One socket read gives
  ``+IPD`` messages of at most :data:`IPD_CHUNK` bytes. The next read waits
  until the UART has taken them: a slow UART slows the peer.
- passive mode (``AT+CIPRECVTYPE=1``): data waits, up to
  :data:`PASSIVE_WINDOW` bytes per link (then TCP stops reading its socket;
  UDP drops the datagram and counts it); ``+IPD,[<id>,]<len>`` once, when
  data arrives at an empty buffer, and again after each read that leaves
  some. A peer's close is reported only once the data is read.
- CIPMODE=1: data is written raw, no header.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gatewayd.dialects.base import PortContext
from gatewayd.links import LinkDescription, LinkState, LinkTable, Token, close_connection
from gatewayd.transport import Connection, Listener, Opcode

__all__ = [
    "IPD_CHUNK",
    "LINK_IDS",
    "PASSIVE_WINDOW",
    "IpEvents",
    "IpLink",
    "IpState",
    "LinkOptions",
    "Server",
    "TcpOptions",
    "TlsOptions",
]

#: Link ids 0..4 (``AT_SOCKET_MAX_CONN_NUM``); 5 means "all" where allowed.
LINK_IDS = range(5)
ALL_LINKS = 5
#: Largest ``+IPD`` payload. The firmware reads up to 2920 bytes; real
#: modules show about one TCP segment, and MCU firmware commonly keeps
#: ``+IPD`` in a 1500-byte buffer.
IPD_CHUNK = 1460
#: Passive mode: bytes a link holds for AT+CIPRECVDATA (the lwIP receive window).
PASSIVE_WINDOW = 5760

Address = tuple[str, int]


@dataclass
class TcpOptions:
    """AT+CIPTCPOPT of one link id."""

    linger: int = -1
    nodelay: int = 0
    sndtimeo: int = 0  #: ms; 0 = wait as long as it takes
    keep_alive: int = 0  #: s; 0 = off


@dataclass
class TlsOptions:
    """AT+CIPSSLCCONF, CCN, CSNI, CALPN, CPSK of one link id."""

    auth_mode: int = 0
    pki_number: int = 0
    ca_number: int = 0
    common_name: str | None = None
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    psk: bytes | None = None
    psk_hint: str | None = None
    psk_hex: bool = False


@dataclass
class LinkOptions:
    """What the module keeps per link id, whether a link is open or not."""

    passive: bool = False
    tcp: TcpOptions = field(default_factory=TcpOptions)
    tls: TlsOptions = field(default_factory=TlsOptions)


@dataclass(eq=False)
class IpLink:
    """One open link: a client (``tetype`` 0) or a server's peer (1)."""

    id: int
    type: str  #: "TCP", "UDP", "SSL", or one of them with "v6"
    remote: Address
    local_port: int
    tetype: int = 0
    udp_mode: int = 0
    #: The UDP peer has changed once already (mode 1 changes it only once).
    udp_peer_changed: bool = False
    host: str = ""  #: as the MCU named it (for passthrough's reconnects)
    connection: Connection | None = None
    events: IpEvents | None = None
    state: LinkState = LinkState.OPEN
    buffer: bytearray = field(default_factory=bytearray)
    #: Passive mode: the MCU was told of the buffered data and has not read since.
    notified: bool = False
    #: The peer closed while unread data waited (CLOSED is held back).
    peer_closed: bool = False
    dropped: int = 0
    last_activity: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    last_error: str | None = None
    routed_to: str | None = None

    @property
    def stream(self) -> bool:
        return not self.type.startswith("UDP")

    @property
    def counts_for_status(self) -> bool:
        """TCP and SSL links set AT+CIPSTATUS's STATUS:3; UDP never does."""
        return self.stream

    def describe(self) -> LinkDescription:
        return LinkDescription(
            id=self.id, kind=self.type.lower() + (" server peer" if self.tetype else ""),
            peer=f"{self.remote[0]}:{self.remote[1]}", state=self.state,
            bytes_in=self.bytes_in, bytes_out=self.bytes_out, last_error=self.last_error,
            routed_to=self.routed_to)


@dataclass
class Server:
    """The AT+CIPSERVER listener (at most one)."""

    port: int
    type: str
    ca_enable: int
    netif: int
    listener: Listener | None = None


@dataclass
class IpState:
    """A port's TCP/IP family: its links, their AT+CIPTCPOPT/SSL options, AT+CIPMUX,
    AT+CIPMODE, the server, and the switches that shape its messages."""

    links: LinkTable[IpLink] = field(default_factory=lambda: LinkTable(LINK_IDS))
    options: list[LinkOptions] = field(
        default_factory=lambda: [LinkOptions() for _ in LINK_IDS])
    mux: int = 0
    mode: int = 0  #: AT+CIPMODE: 1 = passthrough
    #: In passthrough's send state (after AT+CIPSEND with no parameters).
    sending: bool = False
    dinfo: bool = False
    sysmsg: int = 0
    ipv6: bool = False
    server: Server | None = None
    max_conn: int = 5
    server_timeout: int = 0  #: AT+CIPSTO, s
    trans_interval: int = 20  #: AT+TRANSINTVL, ms
    reconnect_interval: int = 1  #: AT+CIPRECONNINTV, 100 ms units
    sendl_report: int = 1024
    sendl_transmit: int = 2920
    dns_manual: bool = False
    dns_servers: tuple[str, ...] = ()
    #: AT+CIPSTATUS's STATUS (the firmware's ``g_sta_state``).
    status: int = 1
    #: Passthrough's send state: re-dial a client link that dropped.
    redial: Callable[[IpLink], None] | None = None
    #: Tasks that belong to this state (CIPSTO timers, passthrough reconnects).
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def ids(self) -> range:
        """The link ids in use under the current mux setting."""
        return LINK_IDS if self.mux else range(1)

    def prefix(self, link_id: int) -> bytes:
        """``<id>,`` in mux 1, nothing in mux 0."""
        return b"%d," % link_id if self.mux else b""

    def link_up_message(self, link: IpLink) -> bytes:
        if self.sysmsg & 2:
            return b'+LINK_CONN:0,%d,"%s",%d,"%s",%d,%d\r\n' % (
                link.id if self.mux else 0, link.type.encode(), link.tetype,
                link.remote[0].encode(), link.remote[1], link.local_port)
        return self.prefix(link.id) + b"CONNECT\r\n"

    def closed_message(self, link: IpLink) -> bytes:
        return self.prefix(link.id) + b"CLOSED\r\n"

    def quiet(self) -> bool:
        """In passthrough's send state, link messages only with SYSMSG bit 2."""
        return self.sending and not self.sysmsg & 4

    def status_after_change(self) -> None:
        """STATUS:3 while a TCP/SSL link is open, 4 once the last one closed."""
        open_streams = any(link.counts_for_status for link in self.links.values())
        if open_streams:
            self.status = 3
        elif self.status == 3:
            self.status = 4

    def forget(self, link: IpLink) -> bool:
        """Free the link's id and silence it; ``False`` if it was gone already."""
        if not self.links.remove(link.id, link):
            return False
        link.state = LinkState.CLOSED
        if link.events is not None:
            link.events.token.end()
        self.status_after_change()
        return True

    async def close_all(self, *, graceful: bool) -> None:
        """Every link and the server, at once (a restart, the daemon stopping)."""
        for task in list(self.tasks):
            task.cancel()
        links = self.links.clear()
        server, self.server = self.server, None
        if server is not None and server.listener is not None:
            with contextlib.suppress(Exception):
                await server.listener.close()
        await asyncio.gather(*(_end(link, graceful) for link in links))


async def _end(link: IpLink, graceful: bool) -> None:
    connection, link.connection = link.connection, None
    link.state = LinkState.CLOSED
    if link.events is not None:
        link.events.token.end()
    if connection is None:
        return
    if graceful:
        await close_connection(connection, 2)
    else:
        connection.abort()


def ipd_header(state: IpState, link: IpLink, length: int, peer: Address | None) -> bytes:
    """``\\r\\n+IPD,[<id>,]<len>[,"<ip>",<port>]`` (without the colon)."""
    head = b"\r\n+IPD," + state.prefix(link.id) + b"%d" % length
    if state.dinfo:
        ip, port = peer or link.remote
        head += b',"%s",%d' % (ip.encode(), port)
    return head


class IpEvents:
    """The :class:`~gatewayd.transport.LinkEvents` of one link."""

    def __init__(self, ctx: PortContext, state: IpState, link: IpLink) -> None:
        self.ctx, self.state, self.link = ctx, state, link
        self.token: Token = state.links.token()
        self.changed = asyncio.Event()  #: the passive buffer shrank
        link.events = self

    async def data(self, payload: bytes, *, opcode: Opcode = Opcode.BINARY, fin: bool = True,
                   peer: Address | None = None) -> None:
        link, state = self.link, self.state
        if not self.token.live:
            return
        link.bytes_in += len(payload)
        link.last_activity = asyncio.get_running_loop().time()
        if not link.stream and peer is not None:
            self._follow_peer(peer)
        if state.mode == 1:
            await self._raw(payload)
        elif state.options[link.id].passive:
            await self._hold(payload)
        else:
            await self._report(payload, peer)

    def _follow_peer(self, peer: Address) -> None:
        link = self.link
        if peer == link.remote or link.udp_mode == 0:
            return
        if link.udp_mode == 2 or not link.udp_peer_changed:
            link.remote = peer
            link.udp_peer_changed = True

    async def _raw(self, payload: bytes) -> None:
        if self.state.sending:
            # The passthrough command runs for as long as the send state lasts:
            # its output is the data itself, written as it comes.
            await self.ctx.writable()
            if self.token.live:
                self.ctx.write(payload)
        else:
            await self.ctx.deliver(payload)

    async def _report(self, payload: bytes, peer: Address | None) -> None:
        tail = b"\r\n" if self.ctx.config.ipd_trailing_crlf else b""
        for start in range(0, len(payload), IPD_CHUNK):
            piece = payload[start:start + IPD_CHUNK]
            if not self.token.live:
                return
            await self.ctx.deliver(
                ipd_header(self.state, self.link, len(piece), peer) + b":" + piece + tail)

    async def _hold(self, payload: bytes) -> None:
        link = self.link
        if link.stream:
            while len(link.buffer) >= PASSIVE_WINDOW and self.token.live:
                self.changed.clear()
                await self.changed.wait()
        elif len(link.buffer) + len(payload) > PASSIVE_WINDOW:
            link.dropped += 1
            self.ctx.log.warning("UDP datagram dropped: passive receive buffer full",
                                 link=link.id, limit=PASSIVE_WINDOW, dropped=link.dropped)
            return
        if not self.token.live:
            return
        link.buffer += payload
        self.notify()

    def notify(self) -> None:
        """``+IPD,[<id>,]<len>`` for unread data, once until the next read."""
        link = self.link
        if link.buffer and not link.notified:
            link.notified = True
            self.ctx.unsolicited(b"\r\n+IPD," + self.state.prefix(link.id)
                                 + b"%d\r\n" % len(link.buffer))

    def read(self, size: int) -> bytes:
        """Take up to *size* buffered bytes (AT+CIPRECVDATA)."""
        link = self.link
        data = bytes(link.buffer[:size])
        del link.buffer[:size]
        link.notified = False
        self.changed.set()
        return data

    def after_read(self) -> None:
        """Notify what remains, or report a close held back for the data."""
        if self.link.buffer:
            self.notify()
        elif self.link.peer_closed:
            self.announce_closed()

    def pong(self, payload: bytes) -> None:
        pass

    def closed(self, *, by_peer: bool, code: int | None = None,
               error: BaseException | None = None) -> None:
        if not self.token.live:
            return
        link = self.link
        link.connection = None
        link.last_error = repr(error) if error else "closed by peer"
        self.ctx.log.info("link closed by peer" if error is None else "link failed",
                          link=link.id, type=link.type, error=link.last_error)
        if link.buffer and self.state.options[link.id].passive:
            link.peer_closed = True  # CLOSED once the MCU has read the rest
            self.changed.set()
            return
        self.announce_closed()

    def announce_closed(self) -> None:
        state, link = self.state, self.link
        if not state.forget(link):
            return
        if state.sending:  # the passthrough command writes as it goes
            if not state.quiet():
                self.ctx.write(state.closed_message(link))
        else:
            self.ctx.unsolicited(state.closed_message(link))
        self.ctx.link_changed(link)
        if state.sending and link.tetype == 0 and state.redial is not None:
            state.redial(link)
