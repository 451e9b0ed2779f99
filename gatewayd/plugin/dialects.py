"""Registers the built-in dialects through the ``gatewayd`` entry-point group,
exactly as a third-party plugin would; each is imported when a port first uses it."""

from __future__ import annotations

from gatewayd.dialects.base import LazyDialect
from gatewayd.dialects.builtin import AMEBA, ESP_AT
from gatewayd.plugin import hookimpl


@hookimpl
def gatewayd_dialects() -> list[LazyDialect]:
    return [ESP_AT, AMEBA]
