"""Registers the built-in dialects through the ``gatewayd`` entry-point group,
exactly as a third-party plugin would; each is imported when a port first uses it."""

from __future__ import annotations

from gatewayd.dialects.base import LazyDialect
from gatewayd.plugin import hookimpl

ESP_AT = LazyDialect("esp-at", "Espressif ESP-AT: AT core and WebSocket commands",
                     "gatewayd.dialects.esp_at:DIALECT")
AMEBA = LazyDialect("ameba", "Realtek Ameba ATCMD 2.x (Host Control Mode)",
                    "gatewayd.dialects.ameba:DIALECT")


@hookimpl
def gatewayd_dialects() -> list[LazyDialect]:
    return [ESP_AT, AMEBA]
