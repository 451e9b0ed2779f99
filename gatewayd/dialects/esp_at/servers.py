"""ESP-AT server: AT+CIPSERVER, AT+CIPSERVERMAXCONN, AT+CIPSTO (reference
esp-at-tcpip.md §3).

- One TCP or SSL server per port, in mux 1. Each accepted peer takes the
  lowest free link id and is announced as ``<id>,CONNECT`` (or
  ``+LINK_CONN:0,<id>,"TCP",1,…``); its data arrives as on client links.
- Listening follows the port's ``server_bind`` (default: every interface),
  and only ``server_allow`` peers reach the MCU; others are closed before it
  hears of them.
- At AT+CIPSERVERMAXCONN open links (or with no free id) a further peer is
  accepted by the host and closed at once (the module stops listening
  instead: its peer is refused); below the maximum, peers are taken again.
- AT+CIPSERVER's parameter order follows the firmware: for a TCP server the
  fourth parameter is ``<netif>``; for SSL it is ``<CA enable>`` and the
  fifth ``<netif>``. An SSL server presents ``certs.server.0``; with CA
  enabled it demands a client certificate signed by that suite's ``ca``.
- AT+CIPSTO closes server links idle (no data either way) longer than its
  value, checked every second; 0, the default, never does.
"""

from __future__ import annotations

import asyncio
import ssl

from gatewayd.dialects.base import AtError, CommandSpec, Int, PortContext, Setter, transport_for
from gatewayd.dialects.esp_at.fields import Fields, raw_fields
from gatewayd.dialects.esp_at.iplinks import IpEvents, IpLink, IpState, Server
from gatewayd.dialects.esp_at.tcpip import close_link, ip_state
from gatewayd.links import LinkState, hostnet
from gatewayd.links.tls import SuiteLoadError, server_context
from gatewayd.transport import Connection, ListenRequest, Refused, TransportError

__all__ = ["COMMANDS"]

DEFAULT_PORT = 333
SERVER_TYPES = ("TCP", "TCPv6", "SSL", "SSLv6")
#: How often AT+CIPSTO's idle timeout is checked (s).
IDLE_CHECK = 1.0


async def cipserver_query(ctx: PortContext) -> None:
    server = ip_state(ctx).server
    if server is None:
        ctx.write(b"+CIPSERVER:0\r\n")
    else:
        ctx.write(b'+CIPSERVER:1,%d,"%s",%d,%d\r\n' % (server.port, server.type.encode(),
                                                        server.ca_enable, server.netif))


async def cipserver_set(ctx: PortContext, *raw: bytes | None) -> None:
    ip = ip_state(ctx)
    f = Fields(raw)
    if f.number("mode", 0, 1) == 0:
        close_all = f.number("close all", 0, 1, default=0)
        f.done()
        await _stop(ctx, ip, close_all=bool(close_all))
        return
    port = f.number("port", 1, 65535, default=DEFAULT_PORT)
    server_type = f.text("type", default="TCP")
    if server_type not in SERVER_TYPES:
        raise AtError(why=f"server type {server_type!r}")
    ca_enable = f.number("CA enable", 0, 1, default=0) if server_type.startswith("SSL") else 0
    netif = f.number("netif", 0, 3, default=0)
    f.done()
    if not ip.mux:
        raise AtError(why="a server needs AT+CIPMUX=1")
    if ip.mode == 1 and (len(ip.links) or ip.max_conn != 1):
        raise AtError(why="passthrough server needs AT+CIPSERVERMAXCONN=1 and no link")
    wanted = Server(port, server_type, ca_enable, netif)
    if ip.server is not None:
        current = ip.server
        if (current.port, current.type, current.ca_enable, current.netif) != \
                (port, server_type, ca_enable, netif):
            raise AtError(why="a server with other parameters is running")
        return
    _require_interface(ctx, netif)
    await _start(ctx, ip, wanted)


def _require_interface(ctx: PortContext, netif: int) -> None:
    wifi = ctx.state.wifi
    station_up = wifi.mode in (1, 3) and wifi.joined_ssid is not None
    softap_up = wifi.mode in (2, 3)
    up = {0: station_up or softap_up, 1: station_up, 2: softap_up, 3: False}[netif]
    if not up:
        raise AtError(why=f"netif {netif} is not up")


def _tls(ctx: PortContext, ca_enable: int) -> ssl.SSLContext:
    suite = ctx.certs.server.get(0)
    if suite is None:
        raise AtError(why="an SSL server needs certs.server.0")
    try:
        return server_context(suite, require_client_cert=bool(ca_enable))
    except SuiteLoadError as exc:
        raise AtError(why=f"TLS setup failed: {exc}") from None


async def _start(ctx: PortContext, ip: IpState, server: Server) -> None:
    ssl_server = server.type.startswith("SSL")
    tls = _tls(ctx, server.ca_enable) if ssl_server else None
    transport = transport_for(ctx, "tls" if ssl_server else "tcp")
    host = hostnet.server_host(ctx.config.server_bind)
    if host is None:
        raise AtError(why=f"server_bind {ctx.config.server_bind!r} has no IPv4 address")
    if not host and server.type.endswith("v6"):
        host = "::"
    request = ListenRequest(kind="tls" if ssl_server else "tcp", host=host, port=server.port,
                            tls=tls, allow=ctx.config.allowed_networks,
                            on_rejected=lambda peer, error: ctx.log.info(
                                "server peer rejected", peer=f"{peer[0]}:{peer[1]}",
                                stage=error.stage, error=str(error)))
    try:
        server.listener = await transport.listen(request, lambda c: _accept(ctx, ip, server, c))
    except TransportError as exc:
        raise AtError(why=f"cannot listen ({exc.stage}): {exc}") from None
    ip.server = server
    ctx.log.info("server listening", address=f"{host or '*'}:{server.port}", type=server.type)
    if ip.server_timeout:
        ip.spawn(_idle_watch(ctx, ip, server))


def _accept(ctx: PortContext, ip: IpState, server: Server, connection: Connection) -> IpEvents:
    peer = f"{connection.peer[0]}:{connection.peer[1]}"
    if ip.server is not server:
        raise Refused("the server was deleted")
    peers = sum(1 for link in ip.links.values() if link.tetype == 1)
    link_id = ip.links.free_id()
    if link_id is None or peers >= ip.max_conn:
        ctx.log.warning("server peer refused: AT+CIPSERVERMAXCONN links are open", peer=peer,
                        max_conn=ip.max_conn)
        raise Refused("no free link")
    link = IpLink(link_id, server.type, remote=connection.peer, local_port=connection.local[1],
                  tetype=1, connection=connection)
    link.last_activity = asyncio.get_running_loop().time()
    events = IpEvents(ctx, ip, link)
    ip.links.add(link_id, link)
    ip.status_after_change()
    if not ip.quiet():
        ctx.unsolicited(ip.link_up_message(link))
    ctx.log.info("server peer accepted", link=link_id, peer=peer)
    ctx.link_changed(link)
    return events


async def _stop(ctx: PortContext, ip: IpState, *, close_all: bool) -> None:
    server, ip.server = ip.server, None
    if server is not None and server.listener is not None:
        await server.listener.close()
    if close_all:
        for _, link in ip.links.sorted():
            if link.tetype == 1:
                await close_link(ctx, link)
                ctx.write(ip.closed_message(link))


async def _idle_watch(ctx: PortContext, ip: IpState, server: Server) -> None:
    loop = asyncio.get_running_loop()
    while ip.server is server and ip.server_timeout:
        await asyncio.sleep(IDLE_CHECK)
        limit = ip.server_timeout
        for _, link in ip.links.sorted():
            if link.tetype == 1 and link.state is LinkState.OPEN and limit and \
                    loop.time() - link.last_activity > limit:
                ctx.log.info("server link idle: closed (AT+CIPSTO)", link=link.id, limit=limit)
                await close_link(ctx, link)
                ctx.unsolicited(ip.closed_message(link))


async def cipservermaxconn_query(ctx: PortContext) -> None:
    ctx.write(b"+CIPSERVERMAXCONN:%d\r\n" % ip_state(ctx).max_conn)


async def cipservermaxconn_set(ctx: PortContext, count: int) -> None:
    ip = ip_state(ctx)
    if ip.server is not None:
        raise AtError(why="set AT+CIPSERVERMAXCONN before AT+CIPSERVER=1")
    open_links = sum(1 for link in ip.links.values() if link.tetype == 1)
    if count < open_links:
        ctx.write(b"Have %d Connections\r\n" % open_links)
        raise AtError(why=f"{open_links} links are open")
    ip.max_conn = count


async def cipsto_query(ctx: PortContext) -> None:
    ctx.write(b"+CIPSTO:%d\r\n" % ip_state(ctx).server_timeout)


async def cipsto_set(ctx: PortContext, seconds: int) -> None:
    ip = ip_state(ctx)
    if ip.server is None:
        raise AtError(why="AT+CIPSTO needs a running server")
    was = ip.server_timeout
    ip.server_timeout = seconds
    if seconds and not was:
        ip.spawn(_idle_watch(ctx, ip, ip.server))


COMMANDS = (
    CommandSpec("+CIPSERVER", "a TCP/SSL server: accepted peers take the lowest free link",
                query=cipserver_query, set=raw_fields(cipserver_set, 5)),
    CommandSpec("+CIPSERVERMAXCONN", "most links the server holds at once",
                query=cipservermaxconn_query,
                set=Setter(cipservermaxconn_set, (Int("num", lo=1, hi=5),))),
    CommandSpec("+CIPSTO", "close server links idle longer than <s> (0: never)",
                query=cipsto_query, set=Setter(cipsto_set, (Int("time", lo=0, hi=7200),))),
)
