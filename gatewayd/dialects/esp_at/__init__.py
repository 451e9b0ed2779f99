"""Espressif ESP-AT: the dialect object assembled from its command modules."""

from gatewayd.dialects.esp_at import core
from gatewayd.dialects.esp_at.dialect import EspAtDialect

DIALECT = EspAtDialect(core.COMMANDS)

__all__ = ["DIALECT", "EspAtDialect"]
