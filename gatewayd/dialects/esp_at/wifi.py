"""The Wi-Fi and time commands an ESP-AT MCU sends before it opens links
(seed 003 steps 1-4, reference esp-at-tcpip.md §5 and §8.3): AT+CWMODE,
AT+CWJAP, AT+CWQAP, AT+CWDHCP, AT+CWLAPOPT, AT+CIPSNTPCFG, AT+CIPSNTPTIME?,
AT+CIFSR, AT+CIPSTA?, AT+CIPSTAMAC?, AT+CIPAP?, AT+CIPAPMAC?.

They answer from the host's own network and clock (:mod:`gatewayd.links.hostnet`)
and never change either: "joining" succeeds when the host has an IPv4
address on the port's ``wifi_interface`` (default: the default route's
interface). The password is accepted and ignored (and redacted from logs).
The SoftAP of AT+CWMODE=2/3 is reported with the module's factory addresses
(192.168.4.1/24) and never started on the host.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from gatewayd.dialects.base import AtError, CommandSpec, Int, PortContext, Setter, Str
from gatewayd.dialects.esp_at.tcpip import close_link
from gatewayd.links import hostnet

#: The port's state file keeps the AP joined last (AT+CWJAP with AT+SYSSTORE=1)
#: and AT+CWAUTOCONN, as the module's flash.
STORED_AP_KEY = "esp_at_ap"
AUTOCONN_KEY = "esp_at_autoconn"

#: AT+CWJAP failure code: "cannot find the target AP".
CWJAP_NO_AP = 3
#: What an ESP32's SoftAP uses out of the box (AT+CIPAP?).
SOFTAP_ADDRESS = ("192.168.4.1", "192.168.4.1", "255.255.255.0")
NO_MAC = "00:00:00:00:00:00"


def _interface(ctx: PortContext) -> hostnet.Interface | None:
    name = ctx.config.wifi_interface
    return hostnet.interface(name) if name else hostnet.default_interface()


async def cwmode_set(ctx: PortContext, mode: int, auto_connect: int) -> None:
    ctx.state.wifi.mode = mode
    ctx.state.ip.status = 1 if mode in (1, 3) else 0


async def cwmode_query(ctx: PortContext) -> None:
    ctx.write(b"+CWMODE:%d\r\n" % ctx.state.wifi.mode)


async def cwjap_set(ctx: PortContext, ssid: str | None, password: str | None, *_: object) -> None:
    wifi = ctx.state.wifi
    if wifi.mode not in (1, 3):
        raise AtError(why="station mode is off (AT+CWMODE)")
    if _interface(ctx) is None:
        ctx.write(b"+CWJAP:%d\r\n" % CWJAP_NO_AP)
        raise AtError(why="the host has no IPv4 network to report")
    if wifi.joined_ssid is not None:
        ctx.write(b"WIFI DISCONNECT\r\n")
    ssid = ssid or wifi.joined_ssid or wifi.last_ssid or ""
    _joined(ctx, ssid)
    if ctx.state.sysstore:
        ctx.store.set(STORED_AP_KEY, ssid)
    ctx.write(b"WIFI CONNECTED\r\nWIFI GOT IP\r\n")


def _joined(ctx: PortContext, ssid: str) -> None:
    wifi = ctx.state.wifi
    wifi.joined_ssid = wifi.last_ssid = ssid
    wifi.attempted = True
    ctx.state.ip.status = 2


def autoconnect(ctx: PortContext) -> None:
    """After ``ready``: rejoin the stored AP when AT+CWAUTOCONN is on and the
    host is online, as the module does from flash."""
    ssid = ctx.store.get(STORED_AP_KEY)
    if not isinstance(ssid, str) or ctx.store.get(AUTOCONN_KEY) == 0:
        return
    if ctx.state.wifi.mode not in (1, 3) or _interface(ctx) is None:
        return
    _joined(ctx, ssid)
    ctx.unsolicited(b"WIFI CONNECTED\r\nWIFI GOT IP\r\n")


async def cwjap_query(ctx: PortContext) -> None:
    wifi = ctx.state.wifi
    iface = _interface(ctx)
    if wifi.joined_ssid is None or iface is None:
        return  # not connected: OK alone ("No AP" goes to the module's log UART)
    ssid = ctx.config.wifi_ssid or wifi.joined_ssid
    ctx.write(f'+CWJAP:"{ssid}","{iface.mac}",1,-40,0,1,3,0,1\r\n'.encode())


async def cwqap(ctx: PortContext) -> None:
    """Leave the AP: its TCP/IP links close (``[<id>,]CLOSED`` after OK)."""
    if ctx.state.wifi.joined_ssid is None:
        return
    ctx.state.wifi.joined_ssid = None
    ip = ctx.state.ip
    for _, link in ip.links.sorted():
        if link.tetype == 0:
            await close_link(ctx, link)
            ctx.unsolicited(ip.closed_message(link))
    ip.status = 5
    ctx.unsolicited(b"WIFI DISCONNECT\r\n")


# -- AT+CWSTATE, AT+CWLAP, AT+CWAUTOCONN, AT+CWHOSTNAME ------------------------


async def cwstate_query(ctx: PortContext) -> None:
    wifi = ctx.state.wifi
    if wifi.joined_ssid is not None:
        state, ssid = 2, wifi.joined_ssid
    else:
        state, ssid = (4 if wifi.attempted else 0), wifi.last_ssid
    ctx.write(b'+CWSTATE:%d,"%s"\r\n' % (state, ssid.encode("utf-8", "surrogateescape")))


#: AT+CWLAP fields in print-mask bit order (reference §5 "AT+CWLAP").
def _lap_fields(ssid: str, rssi: int, bssid: str) -> list[bytes]:
    return [b"3", b'"%s"' % ssid.encode("utf-8", "surrogateescape"), b"%d" % rssi,
            b'"%s"' % bssid.encode(), b"6", b"-1", b"-1", b"4", b"4", b"7", b"0"]


def _rssi(iface: hostnet.Interface | None) -> int:
    """The host's signal level where its interface is wireless, else -40."""
    if iface is not None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path("/proc/net/wireless").read_text().splitlines()[2:]:
                name, _, rest = line.partition(":")
                if name.strip() == iface.name:
                    return int(float(rest.split()[2]))
    return -40


async def cwlap(ctx: PortContext) -> None:
    """The network the host is on (the SSID the MCU joined, or ``wifi_ssid``)."""
    wifi = ctx.state.wifi
    if wifi.mode not in (1, 3):
        raise AtError(why="station mode is off (AT+CWMODE)")
    ssid = ctx.config.wifi_ssid or wifi.joined_ssid or wifi.last_ssid
    iface = _interface(ctx)
    if not ssid or iface is None:
        return
    rssi = _rssi(iface)
    if rssi < wifi.lap_rssi_filter:
        return
    fields = [value for bit, value in enumerate(_lap_fields(ssid, rssi, _softap_mac(iface.mac)))
              if wifi.lap_print_mask & (1 << bit)]
    ctx.write(b"+CWLAP:(" + b",".join(fields) + b")\r\n")


async def cwautoconn_query(ctx: PortContext) -> None:
    ctx.write(b"+CWAUTOCONN:%d" % (ctx.store.get(AUTOCONN_KEY) != 0))


async def cwautoconn_set(ctx: PortContext, enable: int) -> None:
    ctx.store.set(AUTOCONN_KEY, enable)


async def cwhostname_query(ctx: PortContext) -> None:
    ctx.write(b"+CWHOSTNAME:%s\r\n" % ctx.state.wifi.hostname.encode())


async def cwhostname_set(ctx: PortContext, name: str) -> None:
    if ctx.state.wifi.mode not in (1, 3):
        raise AtError(why="station mode is off (AT+CWMODE)")
    if not name:
        raise AtError(why="the host name is empty")
    ctx.state.wifi.hostname = name


async def sntpcfg_set(ctx: PortContext, enable: int, timezone: int, *servers: str | None) -> None:
    if not (-12 <= timezone <= 14 or (-1200 <= timezone <= 1400 and abs(timezone) % 100 < 60)):
        raise AtError(why=f"timezone {timezone}")
    wifi = ctx.state.wifi
    wifi.sntp_enabled = bool(enable)
    wifi.sntp_timezone = timezone
    given = tuple(s for s in servers if s)
    if given:
        wifi.sntp_servers = given


async def sntpcfg_query(ctx: PortContext) -> None:
    wifi = ctx.state.wifi
    servers = "".join(f',"{s}"' for s in wifi.sntp_servers)
    ctx.write(f"+CIPSNTPCFG:{int(wifi.sntp_enabled)},{wifi.sntp_timezone}{servers}\r\n".encode())


def _offset_seconds(timezone: int) -> int:
    if -12 <= timezone <= 14:
        return timezone * 3600
    sign = -1 if timezone < 0 else 1
    hours, minutes = divmod(abs(timezone), 100)
    return sign * (hours * 3600 + minutes * 60)


async def sntptime_query(ctx: PortContext) -> None:
    """The host clock in the configured zone (1970 until SNTP is enabled, as the module)."""
    wifi = ctx.state.wifi
    now = time.time() + _offset_seconds(wifi.sntp_timezone) if wifi.sntp_enabled else 0
    ctx.write(f"+CIPSNTPTIME:{time.asctime(time.gmtime(now))}\r\n".encode())


async def cifsr(ctx: PortContext) -> None:
    iface = _interface(ctx) if ctx.state.wifi.joined_ssid is not None else None
    address, mac = (iface.address, iface.mac) if iface else ("0.0.0.0", "00:00:00:00:00:00")
    ctx.write(f'+CIFSR:STAIP,"{address}"\r\n+CIFSR:STAMAC,"{mac}"\r\n'.encode())


def _station_mac(ctx: PortContext) -> str:
    iface = _interface(ctx)
    return iface.mac.lower() if iface is not None else NO_MAC


def _softap_mac(station_mac: str) -> str:
    """An ESP32 derives its SoftAP MAC from the station's: the last byte plus one."""
    octets = [int(part, 16) for part in station_mac.split(":")]
    octets[-1] = (octets[-1] + 1) % 256
    return ":".join(f"{octet:02x}" for octet in octets)


def _require_softap(ctx: PortContext) -> None:
    if ctx.state.wifi.mode not in (2, 3):
        raise AtError(why="the SoftAP is off (AT+CWMODE=2 or 3 reports one)")


async def cipstamac_query(ctx: PortContext) -> None:
    ctx.write(f'+CIPSTAMAC:"{_station_mac(ctx)}"\r\n'.encode())


async def cipap_query(ctx: PortContext) -> None:
    _require_softap(ctx)
    ip, gw, mask = SOFTAP_ADDRESS
    ctx.write(f'+CIPAP:ip:"{ip}"\r\n+CIPAP:gateway:"{gw}"\r\n'
              f'+CIPAP:netmask:"{mask}"\r\n'.encode())


async def cipapmac_query(ctx: PortContext) -> None:
    _require_softap(ctx)
    ctx.write(f'+CIPAPMAC:"{_softap_mac(_station_mac(ctx))}"\r\n'.encode())


async def cwsap_set(ctx: PortContext, ssid: str, password: str, channel: int, ecn: int,
                    max_conn: int, hidden: int) -> None:
    """Stored and reported; no access point is started on the host."""
    _require_softap(ctx)
    if ecn == 1:
        raise AtError(why="WEP (ecn 1) is not supported by the SoftAP")
    if ecn and not 8 <= len(password.encode()) <= 64:
        raise AtError(why="a protected SoftAP needs a password of 8..64 bytes")
    if not ssid:
        raise AtError(why="the SSID is empty")
    ctx.state.wifi.softap = (ssid, password if ecn else "", channel, ecn, max_conn, hidden)


async def cwsap_query(ctx: PortContext) -> None:
    _require_softap(ctx)
    ssid, password, channel, ecn, max_conn, hidden = ctx.state.wifi.softap
    if ssid is None:  # the factory name: ESP_ and the SoftAP MAC's last three bytes
        ssid = "ESP_" + _softap_mac(_station_mac(ctx)).replace(":", "")[-6:].upper()
    ctx.write(f'+CWSAP:"{ssid}","{password}",{channel},{ecn},{max_conn},{hidden}\r\n'
              .encode("utf-8", "surrogateescape"))


async def cwdhcp_set(ctx: PortContext, operate: int, mode: int) -> None:
    wifi = ctx.state.wifi
    wifi.dhcp = wifi.dhcp | mode if operate else wifi.dhcp & ~mode


async def cwdhcp_query(ctx: PortContext) -> None:
    ctx.write(b"+CWDHCP:%d\r\n" % ctx.state.wifi.dhcp)


async def cwlapopt_set(ctx: PortContext, _reserved: int, print_mask: int, rssi_filter: int,
                       authmode_mask: int) -> None:
    wifi = ctx.state.wifi
    wifi.lap_print_mask, wifi.lap_rssi_filter = print_mask, rssi_filter
    wifi.lap_authmode_mask = authmode_mask


async def cipsta_query(ctx: PortContext) -> None:
    iface = _interface(ctx) if ctx.state.wifi.joined_ssid is not None else None
    ip, gw, mask = (iface.address, iface.gateway, iface.netmask) if iface else ("0.0.0.0",) * 3
    ctx.write(f'+CIPSTA:ip:"{ip}"\r\n+CIPSTA:gateway:"{gw}"\r\n'
              f'+CIPSTA:netmask:"{mask}"\r\n'.encode())


_SERVER = Str("server", default=None, max_len=64)

COMMANDS = (
    CommandSpec("+CWMODE", "Wi-Fi mode (0 off, 1 station, 2 softAP, 3 both)", query=cwmode_query,
                set=Setter(cwmode_set, (Int("mode", lo=0, hi=3),
                                        Int("auto_connect", default=1, lo=0, hi=1)))),
    CommandSpec("+CWJAP", "join an AP: answered from the host's own network",
                query=cwjap_query,
                set=Setter(cwjap_set, (Str("ssid", default=None, max_len=32),
                                       Str("pwd", default=None, max_len=64, secret=True)),
                           max_params=10)),
    CommandSpec("+CWQAP", "leave the AP (the host's network is untouched)", execute=cwqap),
    CommandSpec("+CWSTATE", "Wi-Fi state and SSID", query=cwstate_query),
    CommandSpec("+CWLAP", "the network the host is on (never a radio scan)", execute=cwlap),
    CommandSpec("+CWAUTOCONN", "rejoin the stored AP at boot (kept in the state file)",
                query=cwautoconn_query,
                set=Setter(cwautoconn_set, (Int("enable", lo=0, hi=1),))),
    CommandSpec("+CWHOSTNAME", "station host name (reported; the host's is untouched)",
                query=cwhostname_query,
                set=Setter(cwhostname_set, (Str("hostname", max_len=32),))),
    CommandSpec("+CIPSNTPCFG", "SNTP settings (time comes from the host clock)",
                query=sntpcfg_query,
                set=Setter(sntpcfg_set, (Int("enable", lo=0, hi=1),
                                         Int("timezone", default=0, lo=-1200, hi=1400),
                                         _SERVER, _SERVER, _SERVER))),
    CommandSpec("+CIPSNTPTIME", "the current time", query=sntptime_query),
    CommandSpec("+CIFSR", "station IP and MAC of the host interface", execute=cifsr),
    CommandSpec("+CIPSTA", "station IP, gateway and netmask of the host interface",
                query=cipsta_query),
    CommandSpec("+CIPSTAMAC", "station MAC: the host interface's", query=cipstamac_query),
    CommandSpec("+CIPAP", "SoftAP IP, gateway and netmask (reported, never started)",
                query=cipap_query),
    CommandSpec("+CIPAPMAC", "SoftAP MAC (reported, never started)", query=cipapmac_query),
    CommandSpec("+CWSAP", "SoftAP settings: stored and reported, never started",
                query=cwsap_query,
                set=Setter(cwsap_set, (Str("ssid", max_len=32), Str("pwd", max_len=64, secret=True),
                                       Int("channel", lo=1, hi=13), Int("ecn", lo=0, hi=4),
                                       Int("max_conn", default=10, lo=1, hi=10),
                                       Int("ssid_hidden", default=0, lo=0, hi=1)))),
    CommandSpec("+CWDHCP", "DHCP switches: stored and reported, the host is untouched",
                query=cwdhcp_query,
                set=Setter(cwdhcp_set, (Int("operate", lo=0, hi=1), Int("mode", lo=0, hi=3)))),
    CommandSpec("+CWLAPOPT", "AT+CWLAP options: stored",
                set=Setter(cwlapopt_set, (Int("reserved", default=0, lo=0, hi=1),
                                          Int("print_mask", lo=0, hi=0x7FF),
                                          Int("rssi_filter", default=-100, lo=-100, hi=40),
                                          Int("authmode_mask", default=0xFFFF, lo=0,
                                              hi=0xFFFF)))),
)
