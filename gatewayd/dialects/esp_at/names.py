"""ESP-AT names and reachability: AT+CIPDOMAIN, AT+CIPDNS, AT+PING
(reference esp-at-tcpip.md §3). All answer from the host and change nothing
on it.

- AT+CIPDOMAIN resolves with the host's resolver (``<ip network>`` 1 prefers
  IPv4, 2 IPv4 only, 3 IPv6 only) within its ``<timeout>`` ms, else
  :data:`RESOLVE_LIMIT` s; a failure is a bare ERROR.
- AT+CIPDNS? reports the servers of ``/etc/resolv.conf`` (the "DHCP-provided"
  ones, enable 0), or those the MCU set (enable 1). Setting them is stored
  and reported only: the host keeps resolving with its own.
- AT+PING sends one real ICMP echo (64 bytes, 1 s) through an unprivileged
  ICMP socket where the host's ``net.ipv4.ping_group_range`` admits
  gatewayd's group (:mod:`gatewayd.links.icmp`); otherwise it answers as a
  module that gets no reply: ``+PING:TIMEOUT`` then ERROR.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from gatewayd.dialects.base import AtError, CommandSpec, PortContext
from gatewayd.dialects.esp_at.fields import Fields, raw_fields
from gatewayd.dialects.esp_at.tcpip import MAX_HOST, ip_state
from gatewayd.links import icmp, resolvers

__all__ = ["COMMANDS"]

#: Seconds a name may take to resolve when the command gives no timeout.
RESOLVE_LIMIT = 10.0
#: Used when the host has no resolver and the MCU set none (the firmware's).
DEFAULT_DNS = ("208.67.222.222", "114.114.114.114", "8.8.8.8")
PING_SIZE = 64
PING_TIMEOUT = 1.0
PING_TIMEOUT_REPLY = b"+PING:TIMEOUT\r\n"


async def _addresses(host: str, families: tuple[int, ...], timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    found: list[str] = []
    for family in families:
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, None, family=family,
                                               type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, TimeoutError):
            continue
        found += [str(info[4][0]) for info in infos if str(info[4][0]) not in found]
        if found:
            break
    return found


async def cipdomain(ctx: PortContext, *raw: bytes | None) -> None:
    f = Fields(raw)
    domain = f.text("domain", max_len=MAX_HOST)
    network = f.number("ip network", 1, 3, default=1)
    timeout_ms = f.number("timeout", 0, 60000, default=0)
    f.done()
    if not domain:
        raise AtError(why="domain is empty")
    if network == 3 and not ip_state(ctx).ipv6:
        raise AtError(why="IPv6 is off (AT+CIPV6=1)")
    families = {1: (socket.AF_INET, socket.AF_INET6), 2: (socket.AF_INET,),
                3: (socket.AF_INET6,)}[network]
    found = await _addresses(domain, families, timeout_ms / 1000 or RESOLVE_LIMIT)
    if not found:
        raise AtError(why=f"unknown host: {domain}")
    ctx.write(b'+CIPDOMAIN:"%s"\r\n' % found[0].encode())


async def cipdns_query(ctx: PortContext) -> None:
    ip = ip_state(ctx)
    servers = ip.dns_servers if ip.dns_manual else \
        tuple(resolvers.ipv4_nameservers()[:3]) or DEFAULT_DNS
    ctx.write(b"+CIPDNS:%d" % ip.dns_manual
              + b"".join(b',"%s"' % s.encode() for s in servers) + b"\r\n")


async def cipdns_set(ctx: PortContext, *raw: bytes | None) -> None:
    f = Fields(raw)
    enable = f.number("enable", 0, 1)
    given = [f.text(f"dns{n}", max_len=64, default=None) for n in range(3)]
    f.done()
    servers = [s for s in given if s]
    for server in servers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise AtError(why=f"{server!r} is not an IP address") from None
    if len(set(servers)) != len(servers):
        raise AtError(why="the DNS servers must differ")
    ip = ip_state(ctx)
    ip.dns_manual = bool(enable)
    ip.dns_servers = (tuple(servers) or DEFAULT_DNS) if enable else ()
    ctx.log.info("AT+CIPDNS stored; the host's resolvers stay in use", servers=ip.dns_servers)


async def ping(ctx: PortContext, *raw: bytes | None) -> None:
    f = Fields(raw)
    host = f.text("host", max_len=MAX_HOST)
    f.done()
    if not host:
        raise AtError(why="host is empty")
    found = await _addresses(host, (socket.AF_INET,), RESOLVE_LIMIT)
    elapsed = None
    if found:
        sock = icmp.icmp_socket()
        try:
            elapsed = await icmp.echo(sock, found[0], 1, PING_SIZE, PING_TIMEOUT)
        finally:
            if sock is not None:
                sock.close()
    if elapsed is None:
        ctx.write(PING_TIMEOUT_REPLY)
        raise AtError(why=f"no echo reply from {host}" if found else f"unknown host: {host}")
    ctx.write(b"+PING:%d\r\n" % max(1, round(elapsed)))


#: AT+MDNS TXT records, at most.
MAX_TXT = 10


async def mdns(ctx: PortContext, *raw: bytes | None) -> None:
    """Validated and accepted; nothing is advertised on the host network."""
    f = Fields(raw)
    if f.number("enable", 0, 1) == 0:
        f.done()
        return
    hostname = f.text("hostname", max_len=64)
    service = f.text("service_name", max_len=64)
    f.number("port", 1, 65535)
    f.text("instance", max_len=64, default="")
    proto = f.text("proto", max_len=8, default="_tcp")
    records = f.number("txt_number", 0, MAX_TXT, default=0)
    for n in range(records):
        f.text(f"key{n}", max_len=64)
        f.text(f"value{n}", max_len=64)
    f.done()
    if not hostname or not service or proto not in ("_tcp", "_udp"):
        raise AtError(why="AT+MDNS needs a hostname, a service and _tcp or _udp")
    ctx.log.info("AT+MDNS accepted; nothing is advertised on the host network",
                 hostname=hostname, service=service)


COMMANDS = (
    CommandSpec("+MDNS", "mDNS service: validated, nothing advertised on the host",
                set=raw_fields(mdns, 7 + 2 * MAX_TXT)),
    CommandSpec("+CIPDOMAIN", "resolve a name with the host's resolver",
                set=raw_fields(cipdomain, 4)),
    CommandSpec("+CIPDNS", "DNS servers: the host's, or stored ones (the host is untouched)",
                query=cipdns_query, set=raw_fields(cipdns_set, 4)),
    CommandSpec("+PING", "one ICMP echo from the host: +PING:<ms> or +PING:TIMEOUT",
                set=raw_fields(ping, 1)),
)
