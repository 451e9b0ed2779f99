"""Ameba network commands: AT+PING, AT+IPERF, AT+IPERF3, AT+DNS,
AT+QUERYDNSSRV, AT+SETDNSSRV, AT+MDNS, AT+SNTPCFG, AT+SNTPQUERY, AT+SNTPTIME
(group "NETWORK AT command").

Bytes and error numbers follow ``shared/reference/ameba-wifi-network.md`` §4
and §8. Everything answers from the host and changes nothing on it:

- AT+PING answers ``OK`` at once and pings from a task: real ICMP echoes
  through an unprivileged ICMP socket where ``net.ipv4.ping_group_range``
  admits gatewayd's group, otherwise every echo times out as on a module
  that gets no reply. Results go to the log, as the firmware prints them on
  its log UART; with the port's ``ameba_ping_results`` they also reach the
  MCU as the documented ``[$][ping_test] …`` lines.
- AT+DNS resolves with the host's resolver (IPv4, first address).
  AT+SETDNSSRV only stores its servers (AT+QUERYDNSSRV reports them); the
  host's ``/etc/resolv.conf`` is read, never written.
- SNTP reads the host clock (assumed synchronised) once AT+SNTPCFG=1 was
  sent, shown in the configured zone; it never sets the clock. Before, the
  module's RTC runs from 1970 as it does before its first sync.

- AT+IPERF/AT+IPERF3 are accepted and run nothing; AT+MDNS is validated and
  accepted while joined, and advertises nothing on the host network.

All of it is RAM state: a restart resets it (reference §6).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import socket
import time
from dataclasses import dataclass, field

from gatewayd.at.grammar import ameba_atoi
from gatewayd.dialects.ameba.fields import field_count, fields_setter, missing, value_after
from gatewayd.dialects.ameba.generations import event
from gatewayd.dialects.base import AtError, CommandSpec, PortContext
from gatewayd.links import icmp, resolvers

__all__ = ["COMMANDS", "NetworkState"]

SECTION = "NETWORK AT command:"
#: Build options (``CONFIG_ATCMD_NETWORK``, ``_DNS``, ``_MDNS``, ``_SNTP``): the
#: port's ``ameba_command_groups`` switches them.
NETWORK, DNS, MDNS, SNTP = "network", "dns", "mdns", "sntp"

#: AT+PING defaults (2.x): echoes, data bytes, seconds per reply, seconds between.
PING_COUNT = 4
PING_SIZE = 32
PING_TIMEOUT = 3.0
PING_INTERVAL = 1.0
PING_MAX_SIZE = 10000
#: Bound on one AT+DNS lookup.
DNS_TIMEOUT = 15.0
#: SNTP defaults: UTC+8 (minutes), lwIP's update interval, the server for an empty list.
SNTP_TIMEZONE = 8 * 60
SNTP_INTERVAL = 3600
SNTP_MIN_INTERVAL = 15
SNTP_DEFAULT_SERVER = "pool.ntp.org"
SNTP_MAX_SERVERS = 4
_TIMEZONE = re.compile(rb"^(-?)(\d{1,4})$")


@dataclass
class NetworkState:
    """A port's network commands: ping, DNS servers, SNTP and mDNS settings."""

    ping_running: bool = False
    ping_stop: bool = False
    dns_servers: tuple[str, ...] = ()  #: AT+SETDNSSRV (empty: the host's)
    sntp_enabled: bool = False
    sntp_timezone: int = SNTP_TIMEZONE  #: minutes east of UTC
    sntp_interval: int = SNTP_INTERVAL
    sntp_servers: list[str] = field(default_factory=list)
    booted: float = field(default_factory=time.monotonic)
    mdns: bool = False  #: AT+MDNS=1 accepted (nothing is advertised)


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "surrogateescape")


async def no_arguments(ctx: PortContext, *fields: bytes | None) -> None:
    raise AtError(1, why="takes no parameters")


# -- AT+PING ------------------------------------------------------------------


async def ping(ctx: PortContext, *fields: bytes | None) -> None:
    net: NetworkState = ctx.state.network
    host = fields[0]
    if not host:
        raise AtError(1, why="AT+PING=<host>")
    count = field_count(fields)
    if host == b"stop" and count == 1:
        net.ping_stop = True
        return
    echoes: int | None = PING_COUNT
    size = PING_SIZE
    i = 1
    while i < count:
        option, value = fields[i], value_after(fields, i)
        if option == b"-t":
            echoes = None
            i += 1
            continue
        if option == b"-n" and value is not None and value.isdigit() and int(value) > 0:
            echoes = int(value)
        elif option == b"-l" and value is not None and value.isdigit() \
                and int(value) <= PING_MAX_SIZE:
            size = int(value)
        elif option != b"if" or value not in (b"0", b"1"):
            raise AtError(2, why="unknown option or bad value")
        i += 2
    if net.ping_running:
        return
    net.ping_running, net.ping_stop = True, False
    ctx.spawn(_ping_task(ctx, net, _text(host), echoes, size))


def _report(ctx: PortContext, text: str) -> None:
    ctx.log.info("ping", result=text)
    if ctx.config.ameba_ping_results:
        event(ctx, b"[$][ping_test] " + text.encode() + b"\r\n")


async def _ping_task(ctx: PortContext, net: NetworkState, host: str, echoes: int | None,
                     size: int) -> None:
    loop = asyncio.get_running_loop()
    try:
        try:
            async with asyncio.timeout(DNS_TIMEOUT):
                infos = await loop.getaddrinfo(host, None, family=socket.AF_INET,
                                               type=socket.SOCK_DGRAM)
            address = str(infos[0][4][0])
        except (OSError, TimeoutError, IndexError):
            _report(ctx, f"Failed to resolve: {host}")
            return
        ctx.log.info("ping", result=f"PING {address} {size}({size + 28}) bytes of data")
        sock = icmp.icmp_socket()
        times: list[int] = []
        sent = 0
        try:
            while echoes is None or sent < echoes:
                if net.ping_stop or ctx.state.network is not net:
                    break
                if sent:
                    await asyncio.sleep(PING_INTERVAL)
                sent += 1
                elapsed = await icmp.echo(sock, address, sent, size, PING_TIMEOUT)
                if elapsed is None:
                    _report(ctx, f"Request timeout for icmp_seq {sent}")
                else:
                    times.append(int(elapsed))
                    _report(ctx, f"{size} bytes from {address}: icmp_seq={sent} "
                                 f"time={int(elapsed)} ms")
        finally:
            if sock is not None:
                sock.close()
        loss = (sent - len(times)) * 100 // sent if sent else 0
        average = sum(times) // len(times) if times else 0
        _report(ctx, f"{sent} packets transmitted, {len(times)} received, {loss}% packet loss,"
                     f" average {average} ms")
        _report(ctx, f"min: {min(times, default=0)} ms, max: {max(times, default=0)} ms")
    finally:
        net.ping_running = False


# -- AT+IPERF, AT+IPERF3, AT+MDNS (accepted, nothing runs) ---------------------------


async def iperf_missing(ctx: PortContext) -> None:
    raise AtError(3, why="AT+IPERF needs options")


async def iperf(ctx: PortContext, *fields: bytes | None) -> None:
    ctx.log.info("iperf not run: gatewayd measures nothing on the MCU's behalf")


async def iperf3(ctx: PortContext, *fields: bytes | None) -> None:
    if fields[0] not in (b"-s", b"-c") or (fields[0] == b"-c" and not fields[1]):
        raise AtError(2, why="AT+IPERF3=-s[,…] or -c,<host>[,…]")
    ctx.log.info("iperf3 not run: gatewayd measures nothing on the MCU's behalf")


async def mdns(ctx: PortContext, *fields: bytes | None) -> None:
    net: NetworkState = ctx.state.network
    count = field_count(fields)
    if fields[0] == b"0" and count == 1:
        net.mdns = False
        return
    if fields[0] != b"1" or count < 4 or not fields[1] or not fields[2]:
        raise AtError(1, why="AT+MDNS=1,<hostname>,<service_type>,<port>[,…]")
    port = fields[3]
    if port is None or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise AtError(1, why="port outside 1..65535")
    if fields[5] and fields[5] not in (b"1", b"2"):
        raise AtError(1, why="proto must be 1 (tcp) or 2 (udp)")
    if count > 6:
        txt = fields[6]
        if txt is None or not txt.isdigit() or not 1 <= int(txt) <= 6 \
                or count != 7 + 2 * int(txt) or any(not f for f in fields[7:count:2]):
            raise AtError(1, why="txt_cnt 1..6 and that many key,value pairs")
    if net.mdns:
        raise AtError(3, why="mDNS already enabled: AT+MDNS=0 first")
    if not ctx.state.wifi.joined:
        raise AtError(4, why="Wi-Fi not connected")
    ctx.log.info("mDNS accepted, not advertised on the host network", hostname=_text(fields[1]))
    net.mdns = True


# -- DNS ------------------------------------------------------------------------


async def dns(ctx: PortContext, *fields: bytes | None) -> None:
    if field_count(fields) != 1:
        raise AtError(1, why="AT+DNS=<name>")
    ctx.write(b"\r\n+DNS:%s\r\n" % await _resolve(_text(fields[0])))


async def ipdomain(ctx: PortContext, *fields: bytes | None) -> None:
    """Gen-1's AT+DNS (``atcmd_lwip.c``): ``+IPDOMAIN:<ip>``, then (through
    the Gen-1 result table) ``+IPDOMAIN:OK``; 1 for no or extra fields, 2 not
    resolved."""
    if field_count(fields) != 1:
        raise AtError(1, why="AT+IPDOMAIN=<name>")
    ctx.write(b"\r\n+IPDOMAIN:%s\r\n" % await _resolve(_text(fields[0])))


async def _resolve(name: str) -> bytes:
    """The host resolver's first IPv4 address for *name*; ``ERROR: 2`` if none."""
    if not name:
        raise AtError(2, why="empty name")
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(DNS_TIMEOUT):
            infos = await loop.getaddrinfo(name, None, family=socket.AF_INET,
                                           type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise AtError(2, why=f"not resolved: {exc}") from None
    if not infos:
        raise AtError(2, why="not resolved")
    return str(infos[0][4][0]).encode()


async def querydnssrv(ctx: PortContext) -> None:
    net: NetworkState = ctx.state.network
    servers = list(net.dns_servers) or resolvers.ipv4_nameservers()[:2]
    primary = servers[0] if servers else ""
    secondary = ", " + servers[1] if len(servers) > 1 else ""
    ctx.write(b"\r\n+QUERYDNSSRV:" + primary.encode() + secondary.encode() + b"\r\n")


async def setdnssrv(ctx: PortContext, *fields: bytes | None) -> None:
    count = field_count(fields)
    if count not in (1, 2):
        raise AtError(1, why="AT+SETDNSSRV=<ip1>[,<ip2>]")
    servers = []
    for value in fields[:count]:
        try:
            servers.append(str(ipaddress.IPv4Address(_text(value))))
        except ValueError:
            raise AtError(2, why="not a dotted IPv4 address") from None
    ctx.state.network.dns_servers = tuple(servers)


# -- SNTP --------------------------------------------------------------------


def _parse_timezone(value: bytes | None) -> int:
    """Minutes east of UTC: ``8``, ``-5``, ``530``, ``-0330``; empty means UTC+8."""
    if not value:
        return SNTP_TIMEZONE
    m = _TIMEZONE.match(value)
    if m is None:
        raise AtError(2, why="timezone")
    digits = m.group(2)
    hours, minutes = (int(digits), 0) if len(digits) <= 2 else (int(digits[:-2]), int(digits[-2:]))
    total = hours * 60 + minutes
    if minutes >= 60 or (m.group(1) and total > 12 * 60) or (not m.group(1) and total > 14 * 60):
        raise AtError(2, why="timezone outside -12:00..+14:00")
    return -total if m.group(1) else total


async def sntpcfg(ctx: PortContext, *fields: bytes | None) -> None:
    count = field_count(fields)
    enable = fields[0]
    if enable not in (b"0", b"1"):
        raise AtError(2, why="enable must be 0 or 1")
    servers = [_text(f) for f in fields[3:count] if f]
    if len(servers) > SNTP_MAX_SERVERS:
        raise AtError(1, why=f"at most {SNTP_MAX_SERVERS} servers")
    timezone = _parse_timezone(fields[1])
    interval = SNTP_INTERVAL
    if fields[2]:
        interval = ameba_atoi(fields[2])
        if interval < SNTP_MIN_INTERVAL:
            raise AtError(2, why=f"interval below {SNTP_MIN_INTERVAL} s")
    net: NetworkState = ctx.state.network
    net.sntp_timezone, net.sntp_interval = timezone, interval
    if enable == b"1":
        net.sntp_enabled = True
        net.sntp_servers = servers or [SNTP_DEFAULT_SERVER]
    else:
        net.sntp_enabled = False
        net.sntp_servers = []


def _zone_digits(minutes: int) -> str:
    sign = "-" if minutes < 0 else ""
    return f"{sign}{abs(minutes) // 60}{abs(minutes) % 60:02d}"


def _zone_label(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


async def sntpquery(ctx: PortContext) -> None:
    net: NetworkState = ctx.state.network
    lines = [f"enable: {int(net.sntp_enabled)}", f"timezone: {_zone_digits(net.sntp_timezone)}",
             f"interval: {net.sntp_interval}", f"server_count: {len(net.sntp_servers)}"]
    lines += [f"server{i}: {server}" for i, server in enumerate(net.sntp_servers)]
    ctx.write(b"\r\n" + "".join(line + "\r\n" for line in lines).encode())


async def sntptime(ctx: PortContext) -> None:
    net: NetworkState = ctx.state.network
    if net.sntp_enabled:
        zone = datetime.timezone(datetime.timedelta(minutes=net.sntp_timezone))
        now = datetime.datetime.now(zone)
    else:  # never synchronised: the RTC counts from 1970
        now = datetime.datetime(1970, 1, 1) + datetime.timedelta(
            seconds=int(time.monotonic() - net.booted))
    ctx.write(b"\r\n+SNTPTIME:%s %s\r\n" % (now.strftime("%Y-%m-%d %H:%M:%S").encode(),
                                             _zone_label(net.sntp_timezone).encode()))


COMMANDS = (
    CommandSpec("+PING", "ICMP echo from the host (OK at once; results logged)",
                execute=missing, set=fields_setter(ping), section=SECTION, group=NETWORK),
    CommandSpec("+IPERF", "throughput test (accepted, not run)", execute=iperf_missing,
                set=fields_setter(iperf), section=SECTION, group=NETWORK),
    CommandSpec("+IPERF3", "throughput test (accepted, not run)", execute=missing,
                set=fields_setter(iperf3), section=SECTION, group=NETWORK),
    CommandSpec("+DNS", "resolve a name with the host's resolver",
                execute=missing, set=fields_setter(dns), section=SECTION, group=DNS),
    CommandSpec("+IPDOMAIN", "Gen-1's AT+DNS (ameba_generation = \"gen1\" only)",
                execute=missing, set=fields_setter(ipdomain), section=SECTION, group=DNS),
    CommandSpec("+QUERYDNSSRV", "DNS servers: AT+SETDNSSRV's, else the host's",
                execute=querydnssrv, set=fields_setter(no_arguments), section=SECTION, group=DNS),
    CommandSpec("+SETDNSSRV", "store DNS servers (the host's resolver is untouched)",
                execute=missing, set=fields_setter(setdnssrv), section=SECTION, group=DNS),
    CommandSpec("+MDNS", "mDNS responder (validated; nothing is advertised)",
                execute=missing, set=fields_setter(mdns), section=SECTION, group=MDNS),
    CommandSpec("+SNTPCFG", "SNTP settings (the host clock is never set)",
                execute=missing, set=fields_setter(sntpcfg), section=SECTION, group=SNTP),
    CommandSpec("+SNTPQUERY", "SNTP settings", execute=sntpquery,
                set=fields_setter(no_arguments), section=SECTION, group=SNTP),
    CommandSpec("+SNTPTIME", "the host clock in the configured zone", execute=sntptime,
                set=fields_setter(no_arguments), section=SECTION, group=SNTP),
)
