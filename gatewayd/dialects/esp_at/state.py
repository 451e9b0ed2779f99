"""Per-port ESP-AT state, as the module keeps it in RAM (a restart resets it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gatewayd.dialects.esp_at.iplinks import IpState
from gatewayd.links import GOING_AWAY, ClientLink, LinkTable

#: AT+WSOPEN link ids.
WS_LINK_IDS = range(3)


@dataclass(frozen=True, slots=True)
class WsConfig:
    """One link's AT+WSCFG; consumed by the next AT+WSOPEN of that link."""

    ping_interval: int = 10
    ping_timeout: int = 120
    buffer_size: int = 1024
    auth_mode: int = 0
    pki_number: int = 0
    ca_number: int = 0


@dataclass
class WsLinkInfo:
    """An open AT+WSOPEN link: the link, the URI it opened and its AT+WSCFG."""

    link: ClientLink
    uri: str
    config: WsConfig


@dataclass
class WsState:
    """A port's WebSocket commands: AT+WSCFG per link id, AT+WSHEAD headers
    and the links."""

    configs: dict[int, WsConfig] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)  # newest first
    links: LinkTable[WsLinkInfo] = field(default_factory=lambda: LinkTable(WS_LINK_IDS))

    async def close_all(self, *, going_away: bool = False) -> None:
        """Drop every link (a restart), or close each cleanly with 1001."""
        links = self.links.clear()
        self.configs.clear()
        code = GOING_AWAY if going_away else None
        await asyncio.gather(*(info.link.close(graceful=going_away, code=code)
                               for info in links))


@dataclass
class WifiState:
    """A port's Wi-Fi commands: mode, the joined network, DHCP, AT+CWLAPOPT and
    SNTP settings, as the module keeps them."""

    mode: int = 1
    joined_ssid: str | None = None
    dhcp: int = 3  #: AT+CWDHCP bits: 0 station, 1 SoftAP
    #: AT+CWLAPOPT: print mask, RSSI filter, authmode mask (for AT+CWLAP).
    lap_print_mask: int = 0x7FF
    lap_rssi_filter: int = -100
    lap_authmode_mask: int = 0xFFFF
    sntp_enabled: bool = False
    sntp_timezone: int = 0
    sntp_servers: tuple[str, ...] = ("cn.ntp.org.cn", "ntp.sjtu.edu.cn", "us.pool.ntp.org")
    #: AT+CWSTATE: a join was tried since boot; the SSID last joined.
    attempted: bool = False
    last_ssid: str = ""
    hostname: str = "espressif"
    sleep: int = 1  #: AT+SLEEP (modem sleep, the ESP32 default)
    #: AT+CWSAP: ssid (None: derived from the MAC), password, channel, ecn, max conn, hidden.
    softap: tuple[str | None, str, int, int, int, int] = (None, "", 1, 0, 10, 0)


@dataclass
class EspAtState:
    """Everything an ESP-AT port remembers between commands."""

    syslog: bool = False
    rf_power: int = 78  #: AT+RFPOWER, 0.25 dBm units (an ESP32's factory maximum)
    #: AT+SYSSTORE: set commands also write the port's state file.
    sysstore: bool = True
    #: AT+UART_CUR's flow-control number as set (None: from the line's RTS/CTS).
    uart_flow: int | None = None
    ws: WsState = field(default_factory=WsState)
    ip: IpState = field(default_factory=IpState)
    wifi: WifiState = field(default_factory=WifiState)
