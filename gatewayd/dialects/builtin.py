"""The built-in dialects' registry entries: name, summary and where each lives,
importable without importing their command modules (the plugin registers these;
each dialect class takes its name and summary from here)."""

from __future__ import annotations

from gatewayd.dialects.base import LazyDialect

ESP_AT = LazyDialect("esp-at", "Espressif ESP-AT: AT core and WebSocket commands",
                     "gatewayd.dialects.esp_at:DIALECT")
AMEBA = LazyDialect("ameba", "Realtek Ameba ATCMD 2.x (Host Control Mode)",
                    "gatewayd.dialects.ameba:DIALECT")
