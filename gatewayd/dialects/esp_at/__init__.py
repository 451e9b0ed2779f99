"""Espressif ESP-AT: the dialect object assembled from its command modules."""

from gatewayd.dialects.esp_at import (
    core,
    ipsend,
    ipssl,
    names,
    passthrough,
    servers,
    tcpip,
    websocket,
    wifi,
)
from gatewayd.dialects.esp_at.dialect import EspAtDialect

DIALECT = EspAtDialect(core.COMMANDS + wifi.COMMANDS + tcpip.COMMANDS + passthrough.COMMANDS
                       + ipsend.COMMANDS + ipssl.COMMANDS + servers.COMMANDS
                       + names.COMMANDS + websocket.COMMANDS,
                       boot_hooks=(wifi.autoconnect, passthrough.autostart))

__all__ = ["DIALECT", "EspAtDialect"]
