"""Ameba Wi-Fi station commands: AT+WLSTATICIP, AT+WLCONN, AT+WLDISCONN,
AT+WLSCAN, AT+WLRSSI, AT+WLSTARTAP, AT+WLSTOPAP, AT+WLSTATE, AT+WLRECONN,
AT+WLPROMISC, AT+WLDBG, AT+WLPS.

Bytes, error numbers and message order follow
``shared/reference/ameba-wifi-network.md`` §1-§3, §6 and §8 (ATCMD 2.x).
gatewayd never touches the host's network: a "join" succeeds while the host
has a default route (on the port's ``wifi_interface`` when set) and, when the
port lists ``wifi_networks``, the SSID and password match an entry. The
addresses reported are the host's (the default-route interface's IPv4
address, gateway and mask), or the AT+WLSTATICIP values the MCU set, which
are reported only: traffic keeps the host's address. There is no radio: the
BSSID, channel, RSSI and security are the configured entry's or constants,
and AT+WLSCAN lists the joined network and the configured ones, never a scan.

Join: ``[$]wifi connected`` → ``[$]wifi got ip:"a.b.c.d"`` (not with a
static IP) → ``OK``; a host with a default route but no IPv4 address gets
``[$]wifi got ip timeout`` after :data:`DHCP_TIMEOUT` s and still ``OK``.
Failure: ``[$]wifi connect failed`` → ``ERROR: 17``, then, with
auto-reconnect on, ``[$]wifi reconnecting`` and a new attempt every
:data:`RECONNECT_INTERVAL` s, :data:`RECONNECT_COUNT` times, then
``[$]wifi reconnect done``. A new AT+WLCONN, AT+WLDISCONN, ``auto,0`` or a
restart ends the retries. While joined, the host is watched through
rtnetlink (:mod:`gatewayd.links.netwatch`): losing the default route or the
address is the AP lost, ``[$]wifi disconnected`` and the same retries.
Every event goes through :func:`~gatewayd.dialects.ameba.generations.event`,
which leaves it out on a Gen-1 port (``ameba_generation = "gen1"``).

The firmware splits arguments with ``parse_param``: handlers get every
field (:mod:`gatewayd.dialects.ameba.fields`), and a trailing empty field
counts (``AT+WLCONN=ssid,MyWiFi,`` is ``ERROR: 2``, an empty key).

Fast-connect (reference §3 AT+WLRECONN, §6): a successful AT+WLCONN, with
fast-connect on (the default at every boot), keeps its profile (ssid,
password, bssid, key_id, channel; not the static IP, which §6 resets) in the
port's state file (``ctx.store``, key :data:`PROFILE_KEY`), as the module
keeps it in flash. After each ``ATCMD READY`` (AT+RST, a daemon restart)
:func:`fast_connect` rejoins it :data:`FAST_CONNECT_DELAY` s later with the
join's messages, unsolicited, and no AT+WLCONN. ``AT+WLRECONN=fast,0``
erases the profile and stops storing until ``fast,1`` or the next boot.

Everything else here is RAM state (a restart resets it, reference §6); the
password is kept for AT+WLSTATE, which prints it as the module does, and is
never logged by this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from dataclasses import dataclass, field
from typing import Any

from gatewayd.at.grammar import ameba_atoi
from gatewayd.dialects.ameba.fields import field_count, fields_setter, missing, value_after
from gatewayd.dialects.ameba.generations import NO_SSID, event
from gatewayd.dialects.base import AtError, CommandSpec, PortContext, after_keys
from gatewayd.links import hostnet, netwatch, routes

__all__ = ["COMMANDS", "PROFILE_KEY", "WifiState", "fast_connect"]

SECTION = "Wi-Fi AT Command:"

# Error numbers (enum rtw_atcmd_err_no).
REQUIRED_PARAM_MISS = 1
INVALID_PARAM_VALUE = 2
PARAM_NUM_ERR = 3
CONNECT_FAILED = 17
SAP_START_FAILED = 21

CONNECTED = b"[$]wifi connected\r\n"
CONNECT_FAILED_URC = b"[$]wifi connect failed\r\n"
DISCONNECTED = b"[$]wifi disconnected\r\n"
GOT_IP = b'[$]wifi got ip:"%s"\r\n'
GOT_IP_TIMEOUT = b"[$]wifi got ip timeout\r\n"
RECONNECTING = b"[$]wifi reconnecting\r\n"
RECONNECT_DONE = b"[$]wifi reconnect done\r\n"

#: Seconds between auto-reconnect attempts, and how many (wifi user config).
RECONNECT_INTERVAL = 5.0
RECONNECT_COUNT = 10
#: Seconds from ``ATCMD READY`` to the fast-connect rejoin (the firmware's
#: ~1-3 s are not measured, reference §6).
FAST_CONNECT_DELAY = 1.0
#: The port's state file keeps the fast-connect profile here (the module's KV
#: key ``wlan_data``).
PROFILE_KEY = "ameba_wlan_data"
#: Seconds lwIP's DHCP client tries before ``got ip timeout``.
DHCP_TIMEOUT = 60.0
#: What there is no radio to measure.
DEFAULT_CHANNEL = 6
DEFAULT_RSSI = -45
NO_IP = "0.0.0.0"
NO_MAC = "00:00:00:00:00:00"
ALL_ONES = "255.255.255.255"
STRING_MAX = 32


@dataclass
class Join:
    """What the MCU asked AT+WLCONN for."""

    ssid: bytes | None = None
    password: bytes | None = None
    bssid: str | None = None
    key_id: int | None = None
    channel: int = 0

    def stored(self) -> dict[str, Any]:
        """The profile as the state file keeps it (bytes as latin-1 text)."""
        return {"ssid": _latin1(self.ssid), "password": _latin1(self.password),
                "bssid": self.bssid, "key_id": self.key_id, "channel": self.channel}

    @classmethod
    def from_stored(cls, value: Any) -> Join | None:
        """The profile of :meth:`stored`; None for anything else (a file
        edited by hand, another version's)."""
        if not isinstance(value, dict):
            return None
        try:
            join = cls(ssid=_bytes(value.get("ssid")), password=_bytes(value.get("password")),
                       bssid=value.get("bssid"), key_id=value.get("key_id"),
                       channel=int(value.get("channel") or 0))
        except (TypeError, ValueError, UnicodeEncodeError):
            return None
        if join.ssid is None and join.bssid is None:
            return None
        if not isinstance(join.bssid, str | None) or not isinstance(join.key_id, int | None):
            return None
        return join


def _latin1(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("not text")
    return value.encode("latin-1")


@dataclass
class WifiState:
    """The station as the module keeps it in RAM."""

    joined: bool = False
    target: Join | None = None  #: the last AT+WLCONN: auto-reconnect's target
    #: AT+WLSTATICIP: (ip, gateway, mask) and whether the next join uses it.
    static: tuple[str, str, str] = (NO_IP, NO_IP, NO_IP)
    use_static: bool = False
    #: The static address the current connection uses (None: the host's).
    applied_static: tuple[str, str, str] | None = None
    auto_reconnect: bool = True
    fast_connect: bool = True
    power_save: dict[str, bool] = field(default_factory=lambda: {"lps": True, "ips": True})
    #: Bumped to end a running auto-reconnect loop (it checks between attempts).
    retry_generation: int = 0
    promiscuous: bool = False  #: AT+WLPROMISC, stored only
    watching: bool = False  #: the host watch (AP loss) runs for this state

    def cancel_retry(self) -> None:
        self.retry_generation += 1


def checked_ssid(value: bytes | None) -> bytes:
    """An SSID field: not empty, at most 32 bytes (``ERROR: 2`` otherwise)."""
    if not value or len(value) > STRING_MAX:
        raise AtError(INVALID_PARAM_VALUE, why="ssid empty or longer than 32 bytes")
    return value


def inet_addr(value: bytes | None) -> str:
    """lwIP's ``inet_addr``: no validation, garbage becomes 255.255.255.255."""
    try:
        return socket.inet_ntoa(socket.inet_aton((value or b"").decode("ascii")))
    except (OSError, UnicodeDecodeError):
        return ALL_ONES


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


# -- host facts -----------------------------------------------------------


def host_interface(ctx: PortContext) -> hostnet.Interface | None:
    name = ctx.config.wifi_interface
    return hostnet.interface(name) if name else hostnet.default_interface()


def _network(ctx: PortContext, join: Join) -> Any:
    """The ``wifi_networks`` entry *join* names, if any."""
    for net in ctx.config.wifi_networks:
        if join.ssid is not None and net.ssid.encode() == join.ssid:
            return net
        if join.ssid is None and net.bssid and join.bssid == net.bssid.lower():
            return net
    return None


def _credentials_ok(ctx: PortContext, join: Join) -> bool:
    if not ctx.config.wifi_networks:
        return True
    net = _network(ctx, join)
    if net is None:
        return False
    if join.bssid is not None and net.bssid and join.bssid != net.bssid.lower():
        return False
    expected = None if net.password is None else net.password.encode()
    return join.password == expected


def station_mac(ctx: PortContext) -> str:
    if ctx.config.wifi_mac:
        return ctx.config.wifi_mac.lower()
    digest = hashlib.sha256(ctx.config.name.encode()).digest()
    return "00:e0:4c:" + ":".join(f"{b:02x}" for b in digest[:3])


def _bssid(ctx: PortContext, join: Join) -> str:
    if join.bssid is not None:
        return join.bssid
    net = _network(ctx, join)
    if net is not None and net.bssid:
        return str(net.bssid).lower()
    # A locally administered address: plainly not a real AP's.
    digest = hashlib.sha256(join.ssid or b"").digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def _channel(ctx: PortContext, join: Join) -> int:
    if join.channel > 0:
        return join.channel
    net = _network(ctx, join)
    return int(net.channel) if net is not None else DEFAULT_CHANNEL


def _security(join: Join, *, scan: bool = False) -> str:
    if join.password is None:
        return "Open" if scan else "OPEN"
    if join.key_id is not None:
        return "WEP"
    return "WPA2 AES"


# -- AT+WLCONN --------------------------------------------------------------


def parse_join(fields: tuple[bytes | None, ...]) -> Join:
    count = field_count(fields)
    if count + 1 > 11:
        raise AtError(PARAM_NUM_ERR, why=f"{count} fields, at most 10")
    join = Join()
    i = 0
    while i < count:
        key, value = fields[i], value_after(fields, i)
        if key == b"ch":
            join.channel = ameba_atoi(value) if value else join.channel
        elif key == b"ssid":
            join.ssid = checked_ssid(value)
        elif key == b"pw":
            if not value:
                raise AtError(INVALID_PARAM_VALUE, why="pw empty")
            join.password = value[:128]
        elif key == b"bssid":
            if value is None or len(value) != 17:
                raise AtError(INVALID_PARAM_VALUE, why="bssid not aa:bb:cc:dd:ee:ff")
            join.bssid = ":".join(_hex_octet(value[j:j + 2]) for j in range(0, 17, 3))
        elif key == b"key_id":
            if value is None or len(value) != 1 or value not in b"0123":
                raise AtError(INVALID_PARAM_VALUE, why="key_id not 0..3")
            join.key_id = int(value)
        else:
            raise AtError(INVALID_PARAM_VALUE, why="unknown key")
        i += 2
    if join.ssid is None and join.bssid is None:
        raise AtError(REQUIRED_PARAM_MISS, why=NO_SSID)
    return join


def _hex_octet(pair: bytes) -> str:
    try:
        return f"{int(pair, 16):02x}"
    except ValueError:
        return "00"


async def wlconn_missing(ctx: PortContext) -> None:
    raise AtError(REQUIRED_PARAM_MISS, why="AT+WLCONN needs key/value pairs")


async def wlconn(ctx: PortContext, *fields: bytes | None) -> None:
    join = parse_join(fields)
    wifi: WifiState = ctx.state.wifi
    wifi.cancel_retry()
    wifi.target = join
    if not await _attempt(ctx, wifi, join):
        if wifi.auto_reconnect:
            ctx.spawn(_reconnect(ctx, wifi, wifi.retry_generation))
        raise AtError(CONNECT_FAILED, why="join failed")
    if wifi.fast_connect:
        ctx.store.set(PROFILE_KEY, join.stored())


def fast_connect(ctx: PortContext) -> None:
    """Boot hook: rejoin the stored profile shortly after ``ATCMD READY``."""
    join = Join.from_stored(ctx.store.get(PROFILE_KEY))
    if join is None:
        return
    wifi: WifiState = ctx.state.wifi
    wifi.target = join
    ctx.spawn(_fast_connect(ctx, wifi, wifi.retry_generation))


async def _fast_connect(ctx: PortContext, wifi: WifiState, generation: int) -> None:
    await asyncio.sleep(FAST_CONNECT_DELAY)
    # An AT+WLCONN, AT+WLDISCONN or restart meanwhile takes over.
    if ctx.state.wifi is not wifi or wifi.retry_generation != generation \
            or wifi.target is None:
        return
    ctx.log.info("wifi fast-connect from the stored profile")
    if not await _attempt(ctx, wifi, wifi.target, unsolicited=True) and wifi.auto_reconnect:
        ctx.spawn(_reconnect(ctx, wifi, wifi.retry_generation))


async def _attempt(ctx: PortContext, wifi: WifiState, join: Join, *,
                   unsolicited: bool = False) -> bool:
    """One join: the messages of a success or a failure; True when joined."""

    def say(message: bytes) -> None:
        event(ctx, message, inline=not unsolicited)

    wifi.joined = False
    wifi.applied_static = None
    online = routes.has_default_route(ctx.config.wifi_interface)
    if not online or not _credentials_ok(ctx, join):
        ctx.log.info("wifi join failed", ssid=_text(join.ssid or b""),
                     reason="not in wifi_networks" if online else "host has no default route")
        say(CONNECT_FAILED_URC)
        return False
    wifi.joined = True
    if not wifi.watching:
        wifi.watching = True
        ctx.spawn(_watch_host(ctx, wifi))
    say(CONNECTED)
    ctx.log.info("wifi joined", ssid=_text(join.ssid or b""), static_ip=wifi.use_static)
    if wifi.use_static:
        wifi.applied_static = wifi.static
        return True
    iface = host_interface(ctx)
    if iface is None:  # a route but no IPv4 address: DHCP times out
        await asyncio.sleep(DHCP_TIMEOUT)
        say(GOT_IP_TIMEOUT)
        return True
    say(GOT_IP % iface.address.encode())
    return True


async def _reconnect(ctx: PortContext, wifi: WifiState, generation: int) -> None:
    """Auto-reconnect after a failed join, until it works or the budget is spent."""

    def cancelled() -> bool:  # restarted, switched off, rejoined or disconnected meanwhile
        return (ctx.state.wifi is not wifi or wifi.retry_generation != generation
                or not wifi.auto_reconnect or wifi.target is None)

    for _ in range(RECONNECT_COUNT):
        await asyncio.sleep(RECONNECT_INTERVAL)
        if cancelled():
            return
        event(ctx, RECONNECTING)
        assert wifi.target is not None
        if await _attempt(ctx, wifi, wifi.target, unsolicited=True):
            return
    if not cancelled():
        event(ctx, RECONNECT_DONE)


async def _watch_host(ctx: PortContext, wifi: WifiState) -> None:
    """The host losing its default route or address is the AP lost:
    ``[$]wifi disconnected``, then (auto-reconnect on) the retries, which
    rejoin once the host is back."""
    try:
        async for _ in netwatch.changes():
            if ctx.state.wifi is not wifi:
                return  # restarted
            if not wifi.joined:
                continue
            if routes.has_default_route(ctx.config.wifi_interface) and (
                    wifi.applied_static is not None or host_interface(ctx) is not None):
                continue
            wifi.joined = False
            wifi.applied_static = None
            ctx.log.info("wifi lost: the host has no default route or address")
            event(ctx, DISCONNECTED)
            wifi.cancel_retry()
            if wifi.auto_reconnect:
                ctx.spawn(_reconnect(ctx, wifi, wifi.retry_generation))
    except OSError as exc:
        ctx.log.warning("cannot watch the host's network", error=str(exc))
    finally:
        if ctx.state.wifi is wifi:
            wifi.watching = False


# -- AT+WLDISCONN, AT+WLSTATE, AT+WLRSSI, AT+WLSCAN -------------------------


async def wldisconn(ctx: PortContext) -> None:
    wifi: WifiState = ctx.state.wifi
    wifi.cancel_retry()
    if wifi.joined:
        event(ctx, DISCONNECTED, inline=True)
        ctx.log.info("wifi left", ssid=_text(wifi.target.ssid or b"") if wifi.target else "")
    wifi.joined = False
    wifi.target = None
    wifi.applied_static = None
    wifi.use_static = False


def _addresses(ctx: PortContext, wifi: WifiState) -> tuple[str, str, str]:
    if not wifi.joined:
        return NO_IP, NO_IP, NO_IP
    if wifi.applied_static is not None:
        return wifi.applied_static
    iface = host_interface(ctx)
    if iface is None:
        return NO_IP, NO_IP, NO_IP
    return iface.address, iface.gateway, iface.netmask


async def wlstate(ctx: PortContext) -> None:
    wifi: WifiState = ctx.state.wifi
    join = wifi.target if wifi.joined and wifi.target is not None else None
    if join is not None:
        ssid, password = join.ssid or b"", join.password or b""
        bssid, channel, security = _bssid(ctx, join), _channel(ctx, join), _security(join)
    else:
        ssid, password, bssid, channel, security = b"", b"", NO_MAC, 0, "OPEN"
    ip, gw, mask = _addresses(ctx, wifi)
    key_index = b""
    if join is not None and security == "WEP":
        key_index = b" KEY INDEX => %d\r\n" % (join.key_id or 0)
    ctx.write(
        b"WLAN0 Status: Running\r\n"
        b"==============================\r\n"
        b"WLAN0 Setting:\r\n"
        b"==============================\r\n"
        b"      MODE => STATION\r\n"
        b"      SSID => " + ssid + b"\r\n"
        b"     BSSID => " + bssid.encode() + b"\r\n"
        b"   CHANNEL => %d\r\n" % channel
        + b"  SECURITY => " + security.encode() + b"\r\n" + key_index
        + b"  PASSWORD => " + password + b"\r\n"
        b"\r\n"
        b"Interface (0)\r\n"
        b"==============================\r\n"
        b"MAC => " + station_mac(ctx).encode() + b"\r\n"
        b"IP  => " + ip.encode() + b"\r\n"
        b"GW  => " + gw.encode() + b"\r\n"
        b"MSK  => " + mask.encode() + b"\r\n\r\n")


async def wlrssi(ctx: PortContext) -> None:
    rssi = -DEFAULT_RSSI if ctx.state.wifi.joined else 0
    ctx.write(b"rssi = -%d\r\ndata rssi = -%d\r\nbeacon rssi = -%d\r\n" % (rssi, rssi, rssi))


def _scan_list(ctx: PortContext) -> list[Join]:
    wifi: WifiState = ctx.state.wifi
    seen: list[Join] = []
    if wifi.joined and wifi.target is not None:
        seen.append(wifi.target)
    for net in ctx.config.wifi_networks:
        if any(j.ssid == net.ssid.encode() for j in seen):
            continue
        seen.append(Join(ssid=net.ssid.encode(),
                         password=None if net.password is None else net.password.encode(),
                         bssid=net.bssid.lower() if net.bssid else None, channel=net.channel))
    return seen


async def wlscan(ctx: PortContext) -> None:
    await _scan(ctx, None, None)


async def wlscan_set(ctx: PortContext, *fields: bytes | None) -> None:
    ssid: bytes | None = None
    channels: set[int] | None = None
    count = field_count(fields)
    for i in range(0, count, 2):
        key, value = fields[i], value_after(fields, i)
        if not value:
            raise AtError(INVALID_PARAM_VALUE, why="key without a value")
        if key == b"ssid":
            ssid = checked_ssid(value)
        elif key == b"ch":
            parts = value.split(b":")
            if not all(p.isdigit() for p in parts):
                raise AtError(INVALID_PARAM_VALUE, why="channel list")
            channels = {int(p) for p in parts}
        else:
            raise AtError(INVALID_PARAM_VALUE, why="unknown key")
    await _scan(ctx, ssid, channels)


async def _scan(ctx: PortContext, ssid: bytes | None, channels: set[int] | None) -> None:
    lines: list[bytes] = []
    for join in _scan_list(ctx):
        channel = _channel(ctx, join)
        if (ssid is not None and join.ssid != ssid) or (channels and channel not in channels):
            continue
        net = _network(ctx, join)
        rssi, mode = (net.rssi, net.mode) if net is not None else (DEFAULT_RSSI, "N")
        security = net.security if net is not None and net.security else \
            _security(join, scan=True)
        lines.append(b'%2d, %s, %d, %d, %s, "%s", "%s" \r\n' % (
            len(lines) + 1, _bssid(ctx, join).encode(), rssi, channel, mode.encode(),
            security.encode(), join.ssid or b""))
    ctx.write(b"".join(lines))


# -- AT+WLSTATICIP, AT+WLRECONN, AT+WLPS --------------------------------------


async def wlstaticip(ctx: PortContext, *fields: bytes | None) -> None:
    count = field_count(fields)
    if count not in (1, 3):
        raise AtError(INVALID_PARAM_VALUE, why="give <ip> or <ip>,<gateway>,<netmask>")
    wifi: WifiState = ctx.state.wifi
    _, gw, mask = wifi.static
    if count == 3:
        gw, mask = inet_addr(fields[1]), inet_addr(fields[2])
    wifi.static = (inet_addr(fields[0]), gw, mask)
    wifi.use_static = True


async def wlreconn(ctx: PortContext, *fields: bytes | None) -> None:
    if field_count(fields) != 2:
        raise AtError(PARAM_NUM_ERR, why="AT+WLRECONN=<auto|fast>,<0|1>")
    which, value = fields[0], fields[1]
    if which not in (b"auto", b"fast") or value not in (b"0", b"1"):
        raise AtError(INVALID_PARAM_VALUE, why="AT+WLRECONN=<auto|fast>,<0|1>")
    wifi: WifiState = ctx.state.wifi
    on = value == b"1"
    if which == b"auto":
        wifi.auto_reconnect = on
        if not on:
            wifi.cancel_retry()
    else:
        wifi.fast_connect = on
        if not on:
            ctx.store.delete(PROFILE_KEY)


async def wlps(ctx: PortContext, *fields: bytes | None) -> None:
    count = field_count(fields)
    if count < 2:
        raise AtError(PARAM_NUM_ERR, why="AT+WLPS=<lps|ips>,<0|1>")
    settings = {}
    for i in range(0, count, 2):
        mode, value = fields[i], value_after(fields, i)
        if mode not in (b"lps", b"ips") or not value:
            raise AtError(INVALID_PARAM_VALUE, why="AT+WLPS=<lps|ips>,<0|1>")
        settings[mode.decode()] = ameba_atoi(value) != 0
    ctx.state.wifi.power_save.update(settings)


# -- AT+WLPROMISC, AT+WLDBG ---------------------------------------------------------


async def wlpromisc(ctx: PortContext, *fields: bytes | None) -> None:
    mode, scope = fields[0], fields[1]
    if mode == b"disable":
        ctx.state.wifi.promiscuous = False
        return
    if mode != b"enable":
        raise AtError(INVALID_PARAM_VALUE, why="AT+WLPROMISC=<enable|disable>[,<all|apall>]")
    if not scope:
        raise AtError(REQUIRED_PARAM_MISS, why="enable needs <all|apall>")
    if scope not in (b"all", b"apall"):
        raise AtError(INVALID_PARAM_VALUE, why="AT+WLPROMISC=enable,<all|apall>")
    ctx.log.info("promiscuous mode accepted; there is no radio to sniff with")
    ctx.state.wifi.promiscuous = True


async def wldbg(ctx: PortContext, *fields: bytes | None) -> None:
    ctx.log.info("driver debug command ignored", command=_text(fields[0] or b"")[:40])


# -- AT+WLSTARTAP, AT+WLSTOPAP -------------------------------------------------


async def wlstartap(ctx: PortContext, *fields: bytes | None) -> None:
    count = field_count(fields)
    if not 1 <= count <= 17:
        raise AtError(PARAM_NUM_ERR, why="1..17 fields")
    ssid = password = security = None
    i = 0
    while i < count:
        key, value = fields[i], value_after(fields, i)
        if not value:
            raise AtError(INVALID_PARAM_VALUE, why="key without a value")
        if key == b"ssid":
            ssid = checked_ssid(value)
        elif key == b"pw":
            if not (len(value) == 5 or 8 <= len(value) <= 64):
                raise AtError(INVALID_PARAM_VALUE, why="pw length")
            password = value
        elif key == b"sec":
            if value not in (b"open", b"wep", b"tkip", b"wpa2", b"wpa3"):
                raise AtError(INVALID_PARAM_VALUE, why="sec")
            security = value
        elif key == b"band":
            if value not in (b"2g", b"5g", b"2g_5g"):
                raise AtError(INVALID_PARAM_VALUE, why="band")
        elif key == b"pl":
            if i + 2 >= len(fields) or not fields[i + 2]:
                raise AtError(INVALID_PARAM_VALUE, why="pl needs <start>,<end>")
            i += 1
        elif key not in (b"ch", b"ip", b"gw", b"msk"):
            raise AtError(INVALID_PARAM_VALUE, why="unknown key")
        i += 2
    if ssid is None:
        raise AtError(REQUIRED_PARAM_MISS, why="ssid missing")
    if security not in (None, b"open") and password is None:
        raise AtError(INVALID_PARAM_VALUE, why="a secured AP needs pw")
    ctx.log.info("soft-AP not started: the host is no access point", ssid=_text(ssid))
    raise AtError(SAP_START_FAILED, why="the host cannot be an access point")


async def wlstopap(ctx: PortContext) -> None:
    return None


COMMANDS = (
    CommandSpec("+WLSTATICIP", "static IPv4 for the next join (reported only)",
                execute=missing, set=fields_setter(wlstaticip), section=SECTION),
    CommandSpec("+WLCONN", "join a network (decided from the host's connectivity)",
                execute=wlconn_missing, set=fields_setter(wlconn, after_keys(b"pw")),
                section=SECTION),
    CommandSpec("+WLDISCONN", "leave the network; clears the static IP",
                execute=wldisconn, section=SECTION),
    CommandSpec("+WLSCAN", "the joined and configured networks (no radio scan)",
                execute=wlscan, set=fields_setter(wlscan_set), section=SECTION),
    CommandSpec("+WLRSSI", "signal strength", execute=wlrssi, section=SECTION),
    CommandSpec("+WLSTARTAP", "soft-AP: validated, then ERROR: 21 (the host is no AP)",
                execute=missing, set=fields_setter(wlstartap, after_keys(b"pw")), section=SECTION),
    CommandSpec("+WLSTOPAP", "soft-AP stop", execute=wlstopap, section=SECTION),
    CommandSpec("+WLSTATE", "station status with the host's addresses",
                execute=wlstate, section=SECTION),
    CommandSpec("+WLRECONN", "auto-reconnect / fast-connect switches",
                execute=missing, set=fields_setter(wlreconn), section=SECTION),
    CommandSpec("+WLPROMISC", "promiscuous mode (stored; nothing is sniffed)",
                execute=missing, set=fields_setter(wlpromisc), section=SECTION),
    CommandSpec("+WLDBG", "driver debug command (accepted, ignored)",
                execute=missing, set=fields_setter(wldbg), section=SECTION),
    CommandSpec("+WLPS", "power save switches (stored)",
                execute=missing, set=fields_setter(wlps), section=SECTION),
)
