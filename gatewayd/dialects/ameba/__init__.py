"""Realtek Ameba: the dialect object assembled from its command modules."""

from gatewayd.dialects.ameba import core
from gatewayd.dialects.ameba.dialect import AmebaDialect

DIALECT = AmebaDialect(core.COMMANDS)

__all__ = ["DIALECT", "AmebaDialect"]
