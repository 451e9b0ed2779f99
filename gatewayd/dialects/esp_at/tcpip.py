"""ESP-AT TCP/IP links: AT+CIPMUX, AT+CIPSTART, AT+CIPSTARTEX, AT+CIPCLOSE,
AT+CIPSTATE?, AT+CIPSTATUS, AT+CIPTCPOPT, AT+CIPDINFO, AT+SYSMSG, AT+CIPV6,
AT+CIPMODE (``shared/reference/esp-at-tcpip.md`` §3).

Every failure is a bare ``ERROR``, as on the v4.x cores gatewayd reports
(``ALREADY CONNECTED``, ``no ip``, ``link is not valid`` go to the module's
log UART, here to the log). Links are carried by the transport plugins that
serve ``tcp``, ``tls`` and ``udp``; names are resolved on the host.

- ``AT+CIPSTART`` waits for DNS, TCP and TLS at most its ``<timeout>`` (ms),
  without one :data:`CONNECT_LIMIT` s, and answers ``[<id>,]CONNECT`` (or
  ``+LINK_CONN:…`` with AT+SYSMSG bit 1) before ``OK``; a failed connect
  prints no ``CLOSED``.
- A UDP link is an unconnected socket on its local port: datagrams from any
  sender are reported; mode 1 takes the first new sender as the peer, mode 2
  every sender. Broadcast destinations are allowed. A local port below 1024
  that the host refuses to bind (no CAP_NET_BIND_SERVICE) is replaced by an
  ephemeral one; AT+CIPSTATE still shows the requested port.
- TLS (``"SSL"``) uses the link's AT+CIPSSLCCONF suites, SNI and ALPN; where
  the module would not verify the server (auth modes 0 and 1), gatewayd
  verifies against the system store unless ``trust_any_server_cert``.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from gatewayd.dialects.base import AtError, CommandSpec, Int, PortContext, Setter, transport_for
from gatewayd.dialects.esp_at.fields import Fields, raw_fields
from gatewayd.dialects.esp_at.iplinks import (
    ALL_LINKS,
    IpEvents,
    IpLink,
    IpState,
    LinkOptions,
)
from gatewayd.dialects.esp_at.suites import client_tls
from gatewayd.links import LinkState, close_connection, routed_to
from gatewayd.transport import (
    ClientRequest,
    Connection,
    ListenRequest,
    SocketOptions,
    TransportError,
    plain_ip,
)
from gatewayd.transport.sockopts import apply_socket_options

__all__ = ["COMMANDS", "close_link", "ip_state", "link_options", "resolve"]

#: AT+CIPSTART type strings (case-sensitive): (transport kind, address family).
TYPES = {"TCP": ("tcp", 4), "TCPv6": ("tcp", 6), "UDP": ("udp", 4), "UDPv6": ("udp", 6),
         "SSL": ("tls", 4), "SSLv6": ("tls", 6)}
MAX_HOST = 64
#: Seconds AT+CIPSTART may block without a ``<timeout>`` (hosts wait about 10).
CONNECT_LIMIT = 30.0
#: Seconds a close (FIN, flushing what was sent) may take before the socket is dropped.
CLOSE_LIMIT = 2.0


def ip_state(ctx: PortContext) -> IpState:
    state: IpState = ctx.state.ip
    return state


def link_options(link: IpLink, options: LinkOptions) -> SocketOptions:
    """The socket options of *link* from its id's AT+CIPTCPOPT."""
    tcp = options.tcp
    if not link.stream:
        return SocketOptions(broadcast=True)
    keep = tcp.keep_alive
    return SocketOptions(
        nodelay=bool(tcp.nodelay), linger=tcp.linger if tcp.linger >= 0 else None,
        keepalive=bool(keep), keepalive_idle=keep or None,
        keepalive_interval=1 if keep else None, keepalive_count=3 if keep else None)


async def resolve(host: str, family: int, timeout: float | None) -> str:
    """*host* (a literal or a name) as an address of IPv*family* (4 or 6), or AtError."""
    literal = plain_ip(host.strip("[]"))
    if literal is not None:
        if literal.version != family:
            raise AtError(why=f"{host} is not an IPv{family} address")
        return str(literal)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(
                host, None, family=socket.AF_INET if family == 4 else socket.AF_INET6,
                type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, TimeoutError) as exc:
        raise AtError(why=f"unknown host: {host} ({exc or 'timed out'})") from None
    if not infos:
        raise AtError(why=f"unknown host: {host}")
    return str(infos[0][4][0])


def _route_udp(ctx: PortContext, host: str, port: int) -> ClientRequest:
    """The route rules' destination for a UDP link's peer; refused: ERROR."""
    try:
        routed: ClientRequest = transport_for(ctx, "udp").route(  # type: ignore[attr-defined]
            ClientRequest(kind="udp", host=host.strip("[]"), port=port))
    except TransportError as exc:
        raise AtError(why=f"udp://{host}:{port}: {exc}") from None
    return routed


def _require_network(ctx: PortContext) -> None:
    wifi = ctx.state.wifi
    if wifi.mode == 0:
        raise AtError(why="mode:null (AT+CWMODE=0)")
    if wifi.mode == 1 and wifi.joined_ssid is None:
        raise AtError(why="no ip: the station has not joined (AT+CWJAP)")


# -- AT+CIPSTART / AT+CIPSTARTEX ------------------------------------------------


async def cipstart(ctx: PortContext, *raw: bytes | None) -> None:
    await _start(ctx, Fields(raw), auto_id=False)


async def cipstartex(ctx: PortContext, *raw: bytes | None) -> None:
    await _start(ctx, Fields(raw), auto_id=True)


async def _start(ctx: PortContext, f: Fields, *, auto_id: bool) -> None:
    ip = ip_state(ctx)
    if ip.mode == 1 and (ip.server is not None or len(ip.links)):
        raise AtError(why="passthrough (AT+CIPMODE=1) allows one link only")
    link_id: int | None = 0
    if ip.mux:
        link_id = None if auto_id else f.number("link ID", 0, 4)
    link_type = f.text("type")
    if link_type not in TYPES:
        raise AtError(why=f"type {link_type!r} is none of {', '.join(TYPES)}")
    kind, family = TYPES[link_type]
    host = f.text("remote host", max_len=MAX_HOST)
    if not host:
        raise AtError(why="remote host is empty")
    port = f.number("remote port", 1, 65535)
    keep_alive = local_port = None
    udp_mode = 0
    if kind == "udp":
        local_port = f.number("local port", 1, 65535, default=None)
        udp_mode = f.number("mode", 0, 2, default=0)
        if ip.mode == 1 and udp_mode != 0:
            raise AtError(why="passthrough needs UDP mode 0")
    else:
        keep_alive = f.number("keep_alive", 0, 7200, default=None)
    local_ip = f.text("local IP", max_len=64, default="")
    timeout_ms = f.number("timeout", 0, 60000, default=0)
    f.done()
    _require_network(ctx)
    if family == 6 and not ip.ipv6:
        raise AtError(why="IPv6 is off (AT+CIPV6=1)")
    timeout = timeout_ms / 1000 or CONNECT_LIMIT
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if kind == "udp":  # an unconnected socket: its first peer is routed here
        routed = _route_udp(ctx, host, port)
        host, port = routed.host, routed.port
        address = await resolve(host, family, timeout)
    else:  # the transport resolves what the route rules leave (a proxy: the proxy)
        literal = plain_ip(host.strip("[]"))
        if literal is not None and literal.version != family:
            raise AtError(why=f"{host} is not an IPv{family} address")
        address = str(literal) if literal is not None else host
    if link_id is None:
        link_id = ip.links.free_id()
        if link_id is None:
            raise AtError(why="no free link")
    if link_id in ip.links:
        raise AtError(why=f"ALREADY CONNECTED (link {link_id})")
    options = ip.options[link_id]
    if keep_alive is not None:
        options.tcp.keep_alive = keep_alive
    link = IpLink(link_id, link_type, remote=(address, port), local_port=local_port or 0,
                  udp_mode=udp_mode, host=host, state=LinkState.CONNECTING)
    await connect(ctx, ip, link, kind, local_ip, max(deadline - loop.time(), 0.001))
    ctx.write(ip.link_up_message(link))


async def connect(ctx: PortContext, ip: IpState, link: IpLink, kind: str, local_ip: str,
                  timeout: float) -> None:
    """Open *link* on its id (held while connecting); AtError when it fails."""
    transport = transport_for(ctx, kind, link_id=link.id)
    events = IpEvents(ctx, ip, link)
    options = link_options(link, ip.options[link.id])
    try:
        with ip.links.reserving(link.id, link):
            async with asyncio.timeout(timeout):
                if kind == "udp":
                    link.connection = await _bind_udp(ctx, transport, link, events, local_ip,
                                                      options)
                else:
                    link.connection = await transport.connect(
                        _stream_request(ctx, ip, link, kind, local_ip, options, timeout),
                        events)
                    link.local_port = link.connection.local[1]
                    link.routed_to = routed_to(transport)
                    if plain_ip(link.remote[0]) is None:  # routed: show whom it reached
                        link.remote = link.connection.peer
            if not events.token.live:
                raise TransportError("closed right after opening", stage="connect")
    except (TransportError, TimeoutError) as exc:
        link.state = LinkState.CLOSED
        events.token.end()
        stage = exc.stage if isinstance(exc, TransportError) else "timeout"
        ctx.log.info("link failed", link=link.id, type=link.type,
                     peer=f"{link.remote[0]}:{link.remote[1]}", stage=stage, error=str(exc))
        raise AtError(why=f"connect failed ({stage}): {exc}") from None
    link.state = LinkState.OPEN
    link.last_activity = asyncio.get_running_loop().time()
    ip.status_after_change()
    ctx.log.info("link open", link=link.id, type=link.type, host=link.host,
                 peer_port=link.remote[1])
    ctx.link_changed(link)


def _stream_request(ctx: PortContext, ip: IpState, link: IpLink, kind: str, local_ip: str,
                    options: SocketOptions, timeout: float) -> ClientRequest:
    tls = None
    server_hostname = None
    if kind == "tls":
        conf = ip.options[link.id].tls
        tls = client_tls(ctx, conf.auth_mode, conf.pki_number, conf.ca_number, conf.alpn)
        named = plain_ip(link.host.strip("[]")) is None
        server_hostname = conf.sni or (link.host if named else None)
    return ClientRequest(kind=kind, host=link.remote[0], port=link.remote[1], tls=tls,
                         server_hostname=server_hostname, connect_timeout=timeout,
                         local_host=local_ip or None, options=options)


async def _bind_udp(ctx: PortContext, transport: Any, link: IpLink, events: IpEvents,
                    local_ip: str, options: SocketOptions) -> Connection:
    bound: list[Connection] = []

    def accept(connection: Connection) -> IpEvents:
        bound.append(connection)
        return events

    host = local_ip or ("::" if link.type.endswith("v6") else "0.0.0.0")
    request = ListenRequest(kind="udp", host=host, port=link.local_port, options=options)
    try:
        await transport.listen(request, accept)
    except TransportError:
        if not 0 < link.local_port < 1024:
            raise
        # No CAP_NET_BIND_SERVICE: an ephemeral port; the MCU is shown its own.
        ctx.log.warning("UDP local port below 1024 refused; bound an ephemeral port",
                        link=link.id, requested=link.local_port)
        await transport.listen(ListenRequest(kind="udp", host=host, port=0, options=options),
                               accept)
    connection = bound[0]
    if not link.local_port:
        link.local_port = connection.local[1]
    return connection


# -- AT+CIPCLOSE -----------------------------------------------------------------


async def close_link(ctx: PortContext, link: IpLink) -> None:
    """Close *link* from the MCU's side: FIN (RST with SO_LINGER 0), unread data dropped."""
    ip = ip_state(ctx)
    ip.forget(link)
    connection, link.connection = link.connection, None
    link.buffer.clear()
    if connection is not None:
        if ip.options[link.id].tcp.linger == 0:
            connection.abort()
        else:
            await close_connection(connection, CLOSE_LIMIT)
    ctx.log.info("link closed", link=link.id, type=link.type)
    ctx.link_changed(link)


async def cipclose_execute(ctx: PortContext) -> None:
    ip = ip_state(ctx)
    if ip.mux:
        raise AtError(why="AT+CIPCLOSE without an id needs AT+CIPMUX=0")
    link = ip.links.get(0)
    if link is None or link.state is not LinkState.OPEN:
        raise AtError(why="no link is open")
    await close_link(ctx, link)
    ctx.write(ip.closed_message(link))


async def cipclose_set(ctx: PortContext, link_id: int) -> None:
    ip = ip_state(ctx)
    if not ip.mux:
        raise AtError(why="AT+CIPCLOSE=<id> needs AT+CIPMUX=1")
    if link_id == ALL_LINKS:
        links = [link for _, link in ip.links.sorted() if link.state is LinkState.OPEN]
    else:
        link = ip.links.get(link_id)
        if link is None or link.state is not LinkState.OPEN:
            raise AtError(why=f"link {link_id} is not open")
        links = [link]
    for link in links:
        await close_link(ctx, link)
        ctx.write(ip.closed_message(link))


# -- status ------------------------------------------------------------------------


def _link_lines(ip: IpState, name: bytes) -> bytes:
    return b"".join(
        b'%s:%d,"%s","%s",%d,%d,%d\r\n' % (
            name, link.id, link.type.encode(), link.remote[0].encode(), link.remote[1],
            link.local_port, link.tetype)
        for _, link in ip.links.sorted() if link.state is LinkState.OPEN)


async def cipstate_query(ctx: PortContext) -> None:
    ctx.write(_link_lines(ip_state(ctx), b"+CIPSTATE"))


async def cipstatus(ctx: PortContext) -> None:
    ip = ip_state(ctx)
    ctx.write(b"STATUS:%d\r\n" % ip.status + _link_lines(ip, b"+CIPSTATUS"))


# -- AT+CIPMUX, AT+CIPMODE ------------------------------------------------------


async def cipmux_query(ctx: PortContext) -> None:
    ctx.write(b"+CIPMUX:%d\r\n" % ip_state(ctx).mux)


async def cipmux_set(ctx: PortContext, mux: int) -> None:
    ip = ip_state(ctx)
    if mux == ip.mux:
        return
    if any(link.stream for link in ip.links.values()):
        raise AtError(why="a TCP/SSL link is open")
    if mux == 1 and ip.mode == 1:
        raise AtError(why="passthrough (AT+CIPMODE=1) is on")
    if mux == 0 and (ip.server is not None or len(ip.links)):
        raise AtError(why="a server or a link exists")
    ip.mux = mux


async def cipmode_query(ctx: PortContext) -> None:
    ctx.write(b"+CIPMODE:%d\r\n" % ip_state(ctx).mode)


async def cipmode_set(ctx: PortContext, mode: int) -> None:
    ip = ip_state(ctx)
    if mode == 1:
        clients = [link for link in ip.links.values() if link.tetype == 0]
        if ip.server is not None and clients:
            raise AtError(why="a client and a server both exist")
        if len(clients) > 1:
            raise AtError(why="more than one client link")
        if ip.server is not None and ip.max_conn != 1:
            raise AtError(why="a server with AT+CIPSERVERMAXCONN other than 1")
        if any(not link.stream and link.udp_mode != 0 for link in clients):
            raise AtError(why="a UDP link whose mode is not 0")
    ip.mode = mode


# -- switches: AT+CIPDINFO, AT+SYSMSG, AT+CIPV6 -----------------------------------


async def cipdinfo_query(ctx: PortContext) -> None:
    ctx.write(b"+CIPDINFO:true" if ip_state(ctx).dinfo else b"+CIPDINFO:false")


async def cipdinfo_set(ctx: PortContext, mode: int) -> None:
    ip_state(ctx).dinfo = bool(mode)


async def sysmsg_query(ctx: PortContext) -> None:
    ctx.write(b"+SYSMSG:%d" % ip_state(ctx).sysmsg)


async def sysmsg_set(ctx: PortContext, state: int) -> None:
    ip_state(ctx).sysmsg = state


async def cipv6_query(ctx: PortContext) -> None:
    ctx.write(b"+CIPV6:%d\r\n" % ip_state(ctx).ipv6)


async def cipv6_set(ctx: PortContext, enable: int) -> None:
    ip_state(ctx).ipv6 = bool(enable)


# -- AT+CIPTCPOPT ----------------------------------------------------------------


async def ciptcpopt_query(ctx: PortContext) -> None:
    ip = ip_state(ctx)
    ctx.write(b"".join(
        b"+CIPTCPOPT:%d,%d,%d,%d,%d\r\n" % (i, o.tcp.linger, o.tcp.nodelay, o.tcp.sndtimeo,
                                            o.tcp.keep_alive)
        for i, o in ((i, ip.options[i]) for i in ip.ids())))


async def ciptcpopt_set(ctx: PortContext, *raw: bytes | None) -> None:
    ip = ip_state(ctx)
    f = Fields(raw)
    link_id = f.number("link ID", 0, ALL_LINKS) if ip.mux else 0
    linger = f.number("so_linger", -1, 2**31 - 1, default=None)
    nodelay = f.number("tcp_nodelay", 0, 1, default=None)
    sndtimeo = f.number("so_sndtimeo", 0, 2**31 - 1, default=None)
    keep_alive = f.number("keep_alive", 0, 7200, default=None)
    f.done()
    for i in range(5) if link_id == ALL_LINKS else (link_id,):
        tcp = ip.options[i].tcp
        tcp.linger = tcp.linger if linger is None else linger
        tcp.nodelay = tcp.nodelay if nodelay is None else nodelay
        tcp.sndtimeo = tcp.sndtimeo if sndtimeo is None else sndtimeo
        tcp.keep_alive = tcp.keep_alive if keep_alive is None else keep_alive
        link = ip.links.get(i)
        if link is not None and link.connection is not None and link.stream:
            _apply_now(link, link_options(link, ip.options[i]))


def _apply_now(link: IpLink, options: SocketOptions) -> None:
    extra = getattr(link.connection, "get_extra_info", None)
    sock = extra("socket") if extra is not None else None
    if sock is not None:
        apply_socket_options(sock, options, stream=True)


_ONE_OF_TWO = (Int("mode", lo=0, hi=1),)

COMMANDS = (
    CommandSpec("+CIPMUX", "single (0) or multiple (1) links", query=cipmux_query,
                set=Setter(cipmux_set, _ONE_OF_TWO)),
    CommandSpec("+CIPSTART", "open a TCP, UDP or SSL link: [<id>,]CONNECT, then OK",
                set=raw_fields(cipstart, 8)),
    CommandSpec("+CIPSTARTEX", "AT+CIPSTART on the lowest free link id",
                set=raw_fields(cipstartex, 7)),
    CommandSpec("+CIPCLOSE", "close a link (mux 0), or link <id> (5: all)",
                execute=cipclose_execute,
                set=Setter(cipclose_set, (Int("link_id", lo=0, hi=ALL_LINKS),))),
    CommandSpec("+CIPSTATE", "the open links", query=cipstate_query),
    CommandSpec("+CIPSTATUS", "STATUS:<n> and the open links (deprecated)",
                execute=cipstatus),
    CommandSpec("+CIPMODE", "normal (0) or passthrough (1) transmission",
                query=cipmode_query, set=Setter(cipmode_set, _ONE_OF_TWO)),
    CommandSpec("+CIPDINFO", "show the peer in +IPD", query=cipdinfo_query,
                set=Setter(cipdinfo_set, _ONE_OF_TWO)),
    CommandSpec("+SYSMSG", "system message bits: +QUITT, +LINK_CONN, messages in passthrough",
                query=sysmsg_query, set=Setter(sysmsg_set, (Int("state", lo=0, hi=7),))),
    CommandSpec("+CIPV6", "allow IPv6 links", query=cipv6_query,
                set=Setter(cipv6_set, _ONE_OF_TWO)),
    CommandSpec("+CIPTCPOPT", "socket options per link: linger, nodelay, send timeout, "
                "keep-alive", query=ciptcpopt_query, set=raw_fields(ciptcpopt_set, 5)),
)
