"""Realtek Ameba: the dialect object assembled from its command modules."""

from gatewayd.dialects.ameba import core, network, sockets, websocket, wifi, wsserver
from gatewayd.dialects.ameba.dialect import AmebaDialect

DIALECT = AmebaDialect(core.COMMANDS + wifi.COMMANDS + sockets.COMMANDS + websocket.COMMANDS
                       + wsserver.COMMANDS + network.COMMANDS,
                       boot_hooks=(wifi.fast_connect,))

__all__ = ["DIALECT", "AmebaDialect"]
