"""Registers the built-in dialects through the ``gatewayd`` entry-point group,
exactly as a third-party plugin would."""

from __future__ import annotations

from gatewayd.dialects.ameba import DIALECT as AMEBA
from gatewayd.dialects.base import Dialect
from gatewayd.dialects.esp_at import DIALECT as ESP_AT
from gatewayd.plugin import hookimpl


@hookimpl
def gatewayd_dialects() -> list[Dialect]:
    return [ESP_AT, AMEBA]
