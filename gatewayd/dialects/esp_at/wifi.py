"""The Wi-Fi and time commands an ESP-AT MCU sends before it opens links
(seed 003 steps 1-4): AT+CWMODE, AT+CWJAP, AT+CWQAP, AT+CIPSNTPCFG,
AT+CIPSNTPTIME?, AT+CIFSR, AT+CIPSTA?.

They answer from the host's own network and clock (:mod:`gatewayd.links.hostnet`)
and never change either: "joining" succeeds when the host has an IPv4
address on the port's ``wifi_interface`` (default: the default route's
interface). The password is accepted and ignored (and redacted from logs).
"""

from __future__ import annotations

import time

from gatewayd.dialects.base import AtError, CommandSpec, Int, PortContext, Setter, Str
from gatewayd.links import hostnet

#: AT+CWJAP failure code: "cannot find the target AP".
CWJAP_NO_AP = 3


def _interface(ctx: PortContext) -> hostnet.Interface | None:
    name = ctx.config.wifi_interface
    return hostnet.interface(name) if name else hostnet.default_interface()


async def cwmode_set(ctx: PortContext, mode: int, auto_connect: int) -> None:
    ctx.state.wifi.mode = mode


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
    wifi.joined_ssid = ssid or wifi.joined_ssid or ""
    ctx.write(b"WIFI CONNECTED\r\nWIFI GOT IP\r\n")


async def cwjap_query(ctx: PortContext) -> None:
    wifi = ctx.state.wifi
    iface = _interface(ctx)
    if wifi.joined_ssid is None or iface is None:
        ctx.write(b"No AP\r\n")
        return
    ssid = ctx.config.wifi_ssid or wifi.joined_ssid
    ctx.write(f'+CWJAP:"{ssid}","{iface.mac}",1,-40,0,1,3,0,1\r\n'.encode())


async def cwqap(ctx: PortContext) -> None:
    if ctx.state.wifi.joined_ssid is not None:
        ctx.state.wifi.joined_ssid = None
        ctx.unsolicited(b"WIFI DISCONNECT\r\n")


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
                                       Str("pwd", default=None, max_len=64)), max_params=10)),
    CommandSpec("+CWQAP", "leave the AP (the host's network is untouched)", execute=cwqap),
    CommandSpec("+CIPSNTPCFG", "SNTP settings (time comes from the host clock)",
                query=sntpcfg_query,
                set=Setter(sntpcfg_set, (Int("enable", lo=0, hi=1),
                                         Int("timezone", default=0, lo=-1200, hi=1400),
                                         _SERVER, _SERVER, _SERVER))),
    CommandSpec("+CIPSNTPTIME", "the current time", query=sntptime_query),
    CommandSpec("+CIFSR", "station IP and MAC of the host interface", execute=cifsr),
    CommandSpec("+CIPSTA", "station IP, gateway and netmask of the host interface",
                query=cipsta_query),
)
