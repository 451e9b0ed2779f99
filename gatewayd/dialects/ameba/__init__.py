"""Realtek Ameba: the dialect object assembled from its command modules."""

from gatewayd.dialects.ameba import core, websocket
from gatewayd.dialects.ameba.dialect import AmebaDialect

DIALECT = AmebaDialect(core.COMMANDS + websocket.COMMANDS)

__all__ = ["DIALECT", "AmebaDialect"]
