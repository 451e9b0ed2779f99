"""Realtek Ameba: the dialect object assembled from its command modules."""

from gatewayd.dialects.ameba import core, sockets, websocket, wsserver
from gatewayd.dialects.ameba.dialect import AmebaDialect

DIALECT = AmebaDialect(core.COMMANDS + sockets.COMMANDS + websocket.COMMANDS + wsserver.COMMANDS)

__all__ = ["DIALECT", "AmebaDialect"]
