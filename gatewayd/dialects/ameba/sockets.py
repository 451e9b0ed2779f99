"""Ameba socket commands: AT+SKTCFG … AT+SKTDEL.

Bytes follow seed 004 and ``shared/reference/ameba-at-behaviour.md`` §4, §5
("Sockets"). One pool of 20 link ids per port (lwIP's ``MEMP_NUM_NETCONN``)
holds servers, clients and the "seeds" a TCP/TLS server accepts; a seed takes
the lowest free id and is announced with ``[$][SKT][EVENT]: A client[…]``.
``socket_fd`` in AT+SKTSTATE is numbered as lwIP numbers its sockets (lowest
free descriptor first), ``-1`` once the socket is closed.

Receiving, limits and defaults:

- ``auto_rcv=1``: ``[$][SKT][DATA][<id>][<len>]:<data>\\r\\n`` (UDP adds the
  sender: ``[<ip>][<port>]``), at most :data:`URC_CHUNK` bytes per message.
  A slow UART slows the peer (TCP flow control), nothing is dropped.
- ``auto_rcv=0``: data waits for AT+SKTREAD. A stream link holds at most
  :data:`READ_BUFFER_LIMIT` bytes (plus one socket read) and then stops
  reading its socket; a UDP link holds :data:`READ_DATAGRAM_LIMIT`
  datagrams, each kept whole, and drops (counts and logs) the rest.
  AT+SKTREAD waits :data:`READ_WAIT` s for data (the firmware's select), and
  prints every byte it reports, NULs included (the firmware's ``%s`` stops at
  the first NUL; an MCU cannot want that).
- A peer that closes is logged; as on the firmware the id stays taken until
  AT+SKTDEL. With ``auto_rcv=1`` the socket closes at once (shown as ``-1``;
  later sends and reads give ``ERROR: 1``). With ``auto_rcv=0`` the buffered
  data stays readable, then AT+SKTREAD answers ``ERROR: 4`` once and the
  socket closes; a send before that fails with ``ERROR: 2``.

Beyond the firmware: IPv6 literals and names that resolve only to IPv6;
servers bind where the port's ``server_bind`` says and admit only
``server_allow`` peers; AT+SKTCFG's send timeout bounds how long a send may
wait for the network (then ``ERROR: 2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gatewayd.dialects.ameba.suites import client_context, client_suite, load, server_suite
from gatewayd.dialects.ameba.tt import exact, stream_block
from gatewayd.dialects.base import (
    AtError,
    CommandSpec,
    Int,
    PortContext,
    Raw,
    Setter,
    Str,
    transport_for,
)
from gatewayd.links import (
    LinkDescription,
    LinkState,
    LinkTable,
    Token,
    close_connection,
    hostnet,
    routed_to,
)
from gatewayd.links.deadline import within
from gatewayd.links.tls import Stage, log_untrusted_server, server_context
from gatewayd.transport import (
    ClientRequest,
    Connection,
    Listener,
    ListenRequest,
    Opcode,
    Refused,
    SocketOptions,
    TransportError,
)

__all__ = ["COMMANDS", "SocketLink", "SocketState"]

SECTION = "Socket AT Commands:"
#: The build option (``CONFIG_ATCMD_SOCKET``) the port's ``ameba_command_groups`` switches.
GROUP = "socket"
#: Link ids per port: 0..19.
MAX_LINKS = 20
#: Largest payload of one DATA message (the firmware's receive buffer).
URC_CHUNK = 16 * 1024
#: auto_rcv=0: bytes a stream link buffers before it stops reading its socket.
READ_BUFFER_LIMIT = 64 * 1024
#: auto_rcv=0: datagrams a UDP link buffers; more are dropped and counted.
READ_DATAGRAM_LIMIT = 64
#: AT+SKTREAD waits this long for data before answering with 0 bytes.
READ_WAIT = 0.02
#: AT+SKTSENDRAW hands a TCP/TLS block to the network in pieces this large.
SEND_CHUNK = 16 * 1024
#: Largest UDP payload (IPv4).
MAX_DATAGRAM = 65507
MAX_HOST = 255
ANY = ("0.0.0.0", 0)

Address = tuple[str, int]
TCP, UDP, TLS = "tcp", "udp", "tls"


@dataclass(frozen=True, slots=True)
class SocketConfig:
    """AT+SKTCFG: every command sets all seven (an omitted field is 0)."""

    so_sndtimeo: int = 0
    so_rcvtimeo: int = 0
    tcp_nodelay: int = 0
    so_keepalive: int = 0
    tcp_keepidle: int = 0
    tcp_keepintvl: int = 0
    tcp_keepcnt: int = 0

    def options(self) -> SocketOptions:
        return SocketOptions(
            send_timeout=self.so_sndtimeo / 1000 or None,
            recv_timeout=self.so_rcvtimeo / 1000 or None,
            nodelay=bool(self.tcp_nodelay), keepalive=bool(self.so_keepalive),
            keepalive_idle=self.tcp_keepidle or None,
            keepalive_interval=self.tcp_keepintvl or None,
            keepalive_count=self.tcp_keepcnt or None)


class Inbox:
    """What an ``auto_rcv=0`` link received and AT+SKTREAD has not read yet."""

    def __init__(self, *, stream: bool, log: Any) -> None:
        self.stream = stream
        self.log = log
        self._bytes = bytearray()
        self._datagrams: deque[tuple[bytes, Address]] = deque()
        self._changed = asyncio.Event()
        self.ended = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._bytes) if self.stream else len(self._datagrams)

    async def put(self, payload: bytes, peer: Address | None) -> None:
        """Stream: wait for room (the socket is not read meanwhile). UDP: drop when full."""
        if self.stream:
            while len(self._bytes) >= READ_BUFFER_LIMIT:
                self._changed.clear()
                await self._changed.wait()
            self._bytes += payload
        elif len(self._datagrams) >= READ_DATAGRAM_LIMIT:
            self.dropped += 1
            self.log.warning("UDP datagram dropped: AT+SKTREAD buffer full",
                             limit=READ_DATAGRAM_LIMIT, dropped=self.dropped)
            return
        else:
            self._datagrams.append((payload, peer or ANY))
        self._changed.set()

    def end(self) -> None:
        self.ended = True
        self._changed.set()

    async def take(self, size: int, wait: float) -> tuple[bytes, Address | None] | None:
        """Up to *size* bytes (one datagram, cut to *size*); ``b""`` when nothing came
        within *wait* s; ``None`` when the peer closed and everything was read."""
        if not len(self) and not self.ended:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)
        if self.stream:
            if not self._bytes:
                return None if self.ended else (b"", None)
            data = bytes(self._bytes[:size])
            del self._bytes[:size]
            self._changed.set()
            return data, None
        if not self._datagrams:
            return None if self.ended else (b"", None)
        payload, peer = self._datagrams.popleft()
        if len(payload) > size:
            self.log.info("UDP datagram longer than AT+SKTREAD asked: rest discarded",
                          length=len(payload), read=size)
        return payload[:size], peer


@dataclass(eq=False)
class SocketLink:
    """One link id: a server, a client, or a seed a server accepted."""

    id: int
    role: str  # "server", "client", "seed"
    protocol: str  # TCP, UDP, TLS
    auto_rcv: bool
    state: LinkState = LinkState.CONNECTING
    fd: int = -1  # as lwIP numbers it, -1 unless OPEN
    local: Address = ANY
    peer: Address = ANY
    server: int | None = None  # a seed's server
    connection: Connection | None = None
    listener: Listener | None = None
    inbox: Inbox | None = None
    events: SocketEvents | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    last_error: str | None = None
    routed_to: str | None = None

    @property
    def is_server(self) -> bool:
        return self.role == "server"

    def describe(self) -> LinkDescription:
        """What ``gatewayd status`` shows of this link (a link still
        connecting shows as closed, as it has no socket yet)."""
        return LinkDescription(
            id=self.id,
            kind=f"{self.protocol} {self.role}",
            peer=f"{self.peer[0]}:{self.peer[1]}" if self.peer != ANY else None,
            state=LinkState.OPEN if self.state is LinkState.OPEN else LinkState.CLOSED,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            last_error=self.last_error,
            routed_to=self.routed_to,
        )


@dataclass
class SocketState:
    """A port's socket commands: the socket config, the links by id and the
    descriptors (`fd`) in use."""

    config: SocketConfig = field(default_factory=SocketConfig)
    links: LinkTable[SocketLink] = field(default_factory=lambda: LinkTable(range(MAX_LINKS)))
    fds: set[int] = field(default_factory=set)

    def opened(self, link: SocketLink) -> None:
        """The link has its socket: OPEN, with the lowest free descriptor."""
        fd = next(i for i in range(len(self.fds) + 1) if i not in self.fds)
        self.fds.add(fd)
        link.fd, link.state = fd, LinkState.OPEN

    def release(self, link: SocketLink) -> None:
        """The link's socket is gone (its id stays until AT+SKTDEL)."""
        self.fds.discard(link.fd)
        link.fd, link.state = -1, LinkState.CLOSED
        if link.events is not None:
            link.events.token.end()

    def seeds_of(self, server: SocketLink) -> list[SocketLink]:
        return [link for link in self.links.values() if link.server == server.id]

    async def delete(self, link: SocketLink) -> None:
        """Close *link* (a server with its seeds) and free its id."""
        for seed in self.seeds_of(link) if link.is_server else ():
            await self.delete(seed)
        self.links.pop(link.id)
        self.release(link)
        listener, link.listener = link.listener, None
        connection, link.connection = link.connection, None
        if listener is not None:
            await listener.close()
        if connection is not None:
            await close_connection(connection, 1)

    async def close_all(self) -> None:
        """Close every link cleanly (FIN), servers with their seeds, together."""
        await asyncio.gather(*(self.delete(link) for link in list(self.links.values())
                               if link.server is None))


def sockets(ctx: PortContext) -> SocketState:
    state: SocketState = ctx.state.sockets
    return state


# -- receiving ---------------------------------------------------------------


class SocketEvents:
    """The :class:`~gatewayd.transport.LinkEvents` of one link."""

    def __init__(self, ctx: PortContext, link: SocketLink) -> None:
        self.ctx, self.link = ctx, link
        self.state = sockets(ctx)  # the module's state this link belongs to
        self.token: Token = self.state.links.token()
        link.events = self

    @property
    def stale(self) -> bool:
        """Deleted, or left over from before a restart: the MCU hears nothing."""
        return not self.token.live

    async def data(self, payload: bytes, *, opcode: Opcode = Opcode.BINARY, fin: bool = True,
                   peer: Address | None = None) -> None:
        link = self.link
        if self.stale:
            return
        link.bytes_in += len(payload)
        if link.inbox is not None:
            await link.inbox.put(payload, peer if link.protocol == UDP else None)
            return
        for start in range(0, max(len(payload), 1), URC_CHUNK):
            piece = payload[start:start + URC_CHUNK]
            if link.protocol == UDP:
                sender = peer or link.peer
                head = b"[$][SKT][DATA][%d][%d][%s][%d]:" % (
                    link.id, len(piece), sender[0].encode(), sender[1])
            else:
                head = b"[$][SKT][DATA][%d][%d]:" % (link.id, len(piece))
            if self.stale:  # deleted while the UART was busy
                return
            await self.ctx.deliver(head + piece + b"\r\n")

    def pong(self, payload: bytes) -> None:
        pass

    def closed(self, *, by_peer: bool, code: int | None = None,
               error: BaseException | None = None) -> None:
        if not self.token.live:
            return
        self.token.end()
        link = self.link
        link.last_error = repr(error) if error else "closed by peer"
        self.ctx.log.info("socket closed by peer" if error is None else "socket failed",
                          link=link.id, role=link.role, protocol=link.protocol,
                          peer=f"{link.peer[0]}:{link.peer[1]}", error=link.last_error)
        if link.inbox is not None:
            link.inbox.end()  # what arrived stays readable; then ERROR: 4
        else:
            link.connection = None
            self.state.release(link)
        self.ctx.link_changed(link)


def _new_link(ctx: PortContext, link_id: int, role: str, protocol: str, auto_rcv: bool,
              **extra: Any) -> SocketLink:
    link = SocketLink(link_id, role, protocol, auto_rcv, **extra)
    if not auto_rcv and (role != "server" or protocol == UDP):
        link.inbox = Inbox(stream=protocol != UDP, log=ctx.log.bind(link=link_id))
    return link


# -- configuration -----------------------------------------------------------------


async def sktcfg(ctx: PortContext, *values: int) -> None:
    sockets(ctx).config = SocketConfig(*values)


async def sktquery(ctx: PortContext) -> None:
    c = sockets(ctx).config
    lines = ["", "Global SOCKET configuration:", f"so_sndtimeo: {c.so_sndtimeo}",
             f"so_rcvtimeo: {c.so_rcvtimeo}", f"tcp_nodelay: {c.tcp_nodelay}",
             f"so_keepalive: {c.so_keepalive}", f"tcp_keepidle: {c.tcp_keepidle}",
             f"tcp_keepintvl: {c.tcp_keepintvl}", f"tcp_keepcnt: {c.tcp_keepcnt}"]
    ctx.write("".join(f"{line}\r\n" for line in lines).encode())


async def sktquery_set(ctx: PortContext, _args: bytes) -> None:
    raise AtError(1, why="AT+SKTQUERY takes no parameters")


# -- opening ---------------------------------------------------------------------------


def _unused_id(ctx: PortContext, link_id: int) -> None:
    if link_id in sockets(ctx).links:
        raise AtError(1, why=f"link id {link_id} is in use")


#: The firmware's numbers for a suite that fails to load: 9 a certificate it
#: cannot parse, 10 a key that does not go with the certificate, else 6 (a
#: file it cannot read from flash).
LOAD_ERRORS: dict[Stage, int] = {"parse": 9, "key": 10}


def _server_tls(ctx: PortContext, conn_type: int, cert_index: int) -> ssl.SSLContext:
    verify = conn_type == 3
    suite = server_suite(ctx, cert_index, ("cert", "key", "ca") if verify else ("cert", "key"),
                         missing=1)
    return load(lambda: server_context(suite, require_client_cert=verify), LOAD_ERRORS, 6)


def _client_tls(ctx: PortContext, conn_type: int, cert_index: int) -> ssl.SSLContext:
    suite = client_suite(ctx, conn_type, cert_index, missing=1)
    return load(lambda: client_context(ctx, conn_type, suite), LOAD_ERRORS, 6)


def bind_address(ctx: PortContext) -> str:
    """Where servers listen: the port's ``server_bind`` ("" = every interface)."""
    host = hostnet.server_host(ctx.config.server_bind)
    if host is None:
        raise AtError(1, why=f"server_bind interface {ctx.config.server_bind!r} has no IPv4"
                             " address")
    return host


def shown_address(host: str) -> str:
    """The module shows its own address as a server's source."""
    if host not in ("", "0.0.0.0", "::"):
        return host
    iface = hostnet.default_interface()
    return iface.address if iface is not None else "0.0.0.0"


async def sktserver(ctx: PortContext, link_id: int, conn_type: int, cert_index: int,
                    src_port: int, auto_rcv: int) -> None:
    _unused_id(ctx, link_id)
    protocol = {0: UDP, 1: TCP, 2: TLS, 3: TLS}[conn_type]
    failed = 4 if protocol == UDP else 2  # "failed to create UDP/TCP server"
    tls = _server_tls(ctx, conn_type, cert_index) if protocol == TLS else None
    transport = transport_for(ctx, protocol, failed)
    state = sockets(ctx)
    try:
        host = bind_address(ctx)
    except AtError as exc:
        raise AtError(11 if tls else failed, why=exc.why) from None
    server = _new_link(ctx, link_id, "server", protocol, bool(auto_rcv))
    state.opened(server)

    def accept(connection: Connection) -> SocketEvents:
        if protocol == UDP:
            server.connection = connection
            return SocketEvents(ctx, server)
        return _accept_seed(ctx, server, connection)

    request = ListenRequest(kind=protocol, host=host, port=src_port, tls=tls,
                            options=state.config.options(), allow=ctx.config.allowed_networks)
    try:
        with state.links.reserving(link_id, server, undo=state.release):
            server.listener = await transport.listen(request, accept)
    except TransportError as exc:
        raise AtError(11 if tls else failed, why=f"cannot listen ({exc.stage}): {exc}") \
            from None
    server.local = (shown_address(host), server.listener.local[1])
    ctx.log.info("socket server listening", link=link_id, protocol=protocol,
                 address=f"{host or '*'}:{server.listener.local[1]}")
    ctx.link_changed(server)


def _accept_seed(ctx: PortContext, server: SocketLink, connection: Connection) -> SocketEvents:
    state = sockets(ctx)
    if state.links.get(server.id) is not server:
        raise Refused("the server was deleted")
    seed_id = state.links.free_id()
    if seed_id is None:
        ctx.log.warning("client refused: all link ids are in use", server=server.id,
                        peer=f"{connection.peer[0]}:{connection.peer[1]}")
        raise Refused(f"all {MAX_LINKS} link ids are in use")
    seed = _new_link(ctx, seed_id, "seed", server.protocol, server.auto_rcv,
                     peer=connection.peer, server=server.id, connection=connection)
    state.opened(seed)
    state.links.add(seed_id, seed)
    events = SocketEvents(ctx, seed)
    ctx.unsolicited(
        b"[$][SKT][EVENT]: A client[link_id:%d,seed,%s,dst_address:%s,dst_port:%d]"
        b" connected to server[link_id:%d]\r\n"
        % (seed_id, server.protocol.encode(), connection.peer[0].encode(),
           connection.peer[1], server.id))
    ctx.log.info("socket client accepted", link=seed_id, server=server.id,
                 peer=f"{connection.peer[0]}:{connection.peer[1]}")
    ctx.link_changed(seed)
    return events


async def sktclient(ctx: PortContext, link_id: int, conn_type: int, cert_index: int,
                    host: str, dst_port: int, src_port: int, auto_rcv: int) -> None:
    _unused_id(ctx, link_id)
    if not host or len(host) > MAX_HOST:
        raise AtError(1, why="dst_host empty or longer than 255 bytes")
    protocol = {0: UDP, 1: TCP}.get(conn_type, TLS)
    if protocol == UDP and not src_port:
        raise AtError(1, why="a UDP client needs src_port")
    failed = {UDP: 4, TCP: 2, TLS: 13}[protocol]
    tls = _client_tls(ctx, conn_type, cert_index) if protocol == TLS else None
    transport = transport_for(ctx, protocol, failed, link_id=link_id)
    state = sockets(ctx)
    link = _new_link(ctx, link_id, "client", protocol, bool(auto_rcv))
    request = ClientRequest(kind=protocol, host=host.strip("[]"), port=dst_port, tls=tls,
                            local_port=src_port if protocol == UDP else None,
                            options=state.config.options())
    try:
        # Reserved while connecting: seeds must not take the id.
        with state.links.reserving(link_id, link):
            link.connection = await transport.connect(request, SocketEvents(ctx, link))
            link.routed_to = routed_to(transport)
    except TransportError as exc:
        log_untrusted_server(ctx.log, tls, exc)
        code = 14 if protocol == TLS and exc.stage == "tls" else failed
        raise AtError(code, why=f"cannot connect ({exc.stage}): {exc}") from None
    state.opened(link)
    link.peer = link.connection.peer
    if protocol == UDP:
        link.local = ("0.0.0.0", link.connection.local[1])
    ctx.log.info("socket client connected", link=link_id, protocol=protocol,
                 peer=f"{link.peer[0]}:{link.peer[1]}")
    ctx.link_changed(link)


# -- sending -------------------------------------------------------------------------


def _sendable(ctx: PortContext, link_id: int, dst_ip: str, dst_port: int) -> tuple[
        SocketLink, Address | None]:
    """The open link *link_id* can send on, and the destination a UDP server needs."""
    link = sockets(ctx).links.get(link_id)
    if link is None or link.connection is None or link.state is not LinkState.OPEN:
        raise AtError(1, why=f"link {link_id} is not open")
    if link.is_server and link.protocol != UDP:
        raise AtError(1, why="a TCP/TLS server sends through its seeds")
    if link.is_server:
        if not dst_ip or not dst_port:
            raise AtError(1, why="a UDP server needs dst_ip and dst_port")
        return link, (dst_ip.strip("[]"), dst_port)
    return link, None


async def _send(ctx: PortContext, link: SocketLink, payload: bytes,
                peer: Address | None) -> None:
    assert link.connection is not None
    timeout = sockets(ctx).config.so_sndtimeo / 1000 or None
    try:
        await within(timeout, link.connection.send(payload, peer=peer))
    except (TransportError, TimeoutError) as exc:
        link.last_error = str(exc) or "send timed out"
        raise AtError(2, why=f"send failed: {link.last_error}") from None
    link.bytes_out += len(payload)


async def sktsend(ctx: PortContext, link_id: int, size: int, dst_ip: str, dst_port: int,
                  data: bytes | None) -> None:
    if not data or size != len(data):
        raise AtError(1, why="data_size does not match the data")
    link, peer = _sendable(ctx, link_id, dst_ip, dst_port)
    await _send(ctx, link, data, peer)


async def sktsendraw(ctx: PortContext, link_id: int, size: int, dst_ip: str,
                     dst_port: int) -> None:
    if size < 1:
        raise AtError(1, why="data_size must be at least 1")
    link, peer = _sendable(ctx, link_id, dst_ip, dst_port)
    if link.protocol == UDP and size > MAX_DATAGRAM:
        raise AtError(1, why=f"a datagram carries at most {MAX_DATAGRAM} bytes")
    pending = bytearray()

    async def send(piece: bytes, first: bool, last: bool) -> None:
        if link.protocol != UDP:
            if piece:
                await _send(ctx, link, piece, peer)
            return
        pending.extend(piece)  # one datagram: what arrived, once the block ends
        if last and pending:
            await _send(ctx, link, bytes(pending), peer)

    chunk = size if link.protocol == UDP else SEND_CHUNK
    await stream_block(ctx, size, chunk, send, empty_abort=4)


# -- reading, state, delete ------------------------------------------------------------


async def sktread(ctx: PortContext, link_id: int, size: int) -> bytes:
    state = sockets(ctx)
    link = state.links.get(link_id)
    if link is None or link.state is not LinkState.OPEN or size < 1:
        raise AtError(1, why=f"link {link_id} is not open, or size < 1")
    if link.is_server and link.protocol != UDP:
        raise AtError(1, why="a TCP/TLS server reads through its seeds")
    if link.inbox is None:
        # auto_rcv=1: everything already went out as DATA messages.
        await asyncio.sleep(READ_WAIT)
        got: tuple[bytes, Address | None] | None = (b"", None)
    else:
        got = await link.inbox.take(size, READ_WAIT)
    if got is None:
        connection, link.connection = link.connection, None
        state.release(link)
        if connection is not None:
            connection.abort()
        ctx.link_changed(link)
        raise AtError(4, why="the peer closed the connection")
    data, peer = got
    if link.protocol == UDP:
        sender = peer or (link.peer if data else ANY)
        head = b"+SKTREAD:%d,%d,%s,%d," % (link_id, len(data), sender[0].encode(), sender[1])
    else:
        head = b"+SKTREAD:%d,%d," % (link_id, len(data))
    return head + data + b"\r\nOK\r\n"


def _state_line(link: SocketLink) -> bytes:
    protocol = "ssl" if link.protocol == TLS else link.protocol
    return (f"link_id:{link.id},{link.role},{protocol},src_address:{link.local[0]},"
            f"src_port:{link.local[1]},dst_address:{link.peer[0]},dst_port:{link.peer[1]},"
            f"socket_fd:{link.fd}\r\n").encode()


async def sktstate(ctx: PortContext) -> None:
    state = sockets(ctx)
    out = []
    for _, link in state.links.sorted():
        if link.role == "seed":
            continue
        out.append(_state_line(link))
        out.extend(_state_line(seed) for seed in sorted(state.seeds_of(link),
                                                       key=lambda s: s.id))
    ctx.write(b"".join(out))


async def sktstate_set(ctx: PortContext, _args: bytes) -> None:
    await sktstate(ctx)


async def sktdel(ctx: PortContext, link_id: int) -> None:
    state = sockets(ctx)
    link = state.links.get(link_id)
    if link is None:
        raise AtError(1, why=f"link {link_id} does not exist")
    await state.delete(link)
    ctx.log.info("socket link deleted", link=link_id, role=link.role)
    ctx.link_changed(link)


# -- table -----------------------------------------------------------------------------

_LINK = Int("link_id", lo=0, hi=MAX_LINKS - 1)
_PORT = Int("port", lo=1, hi=65535)
_U31 = 2**31 - 1

COMMANDS = (
    CommandSpec("+SKTCFG", "global socket options for sockets created afterwards",
                section=SECTION, group=GROUP, set=exact(every_field=True, run=sktcfg, params=(
                    Int("so_sndtimeo", default=0, lo=0, hi=_U31),
                    Int("so_rcvtimeo", default=0, lo=0, hi=_U31),
                    Int("tcp_nodelay", default=0, lo=0, hi=1),
                    Int("so_keepalive", default=0, lo=0, hi=1),
                    Int("tcp_keepidle", default=0, lo=0, hi=7200),
                    Int("tcp_keepintvl", default=0, lo=0, hi=75),
                    Int("tcp_keepcnt", default=0, lo=0, hi=10)))),
    CommandSpec("+SKTQUERY", "show the global socket options", section=SECTION, group=GROUP,
                execute=sktquery, set=Setter(sktquery_set, (Raw("args", default=b""),))),
    CommandSpec("+SKTSERVER", "start a UDP, TCP or TLS server", section=SECTION, group=GROUP,
                set=exact(sktserver, (
                    _LINK, Int("conn_type", lo=0, hi=3), Int("cert_index", default=0, lo=0,
                                                             hi=_U31),
                    Int("src_port", lo=1, hi=65535), Int("auto_rcv", lo=0, hi=1)))),
    CommandSpec("+SKTCLIENT", "open a UDP, TCP or TLS client link", section=SECTION, group=GROUP,
                set=exact(sktclient, (
                    _LINK, Int("conn_type", lo=0, hi=5),
                    Int("cert_index", default=0, lo=0, hi=_U31), Str("dst_host", default=""),
                    _PORT, Int("src_port", default=0, lo=0, hi=65535),
                    Int("auto_rcv", lo=0, hi=1)))),
    CommandSpec("+SKTSEND", "send escaped data", section=SECTION, group=GROUP, set=exact(sktsend, (
        _LINK, Int("data_size", lo=0, hi=_U31), Str("dst_ip", default=""),
        Int("dst_port", default=0, lo=0, hi=65535), Raw("data", default=None)), escaped=True)),
    CommandSpec("+SKTREAD", "read buffered data", section=SECTION, group=GROUP, set=exact(sktread, (
        _LINK, Int("data_size", lo=-(2**31), hi=_U31)))),
    CommandSpec("+SKTSENDRAW", "send raw data through >>>", section=SECTION, group=GROUP,
                set=exact(sktsendraw, (
                    _LINK, Int("data_size", lo=-(2**31), hi=_U31), Str("dst_ip", default=""),
                    Int("dst_port", default=0, lo=0, hi=65535)), escaped=True)),
    CommandSpec("+SKTSTATE", "list every link", section=SECTION, group=GROUP, execute=sktstate,
                set=Setter(sktstate_set, (Raw("args", default=b""),))),
    CommandSpec("+SKTDEL", "close and free a link (a server with its seeds)",
                section=SECTION, group=GROUP, set=exact(sktdel, (_LINK,))),
)
