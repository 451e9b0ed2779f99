"""pytest fixtures for gatewayd and its plugins (loaded through ``pytest11``).

* ``esp_at_mcu`` / ``ameba_mcu``: a :class:`~gatewayd.testing.VirtualMcu`
  talking to an in-process gatewayd port of that dialect, banner already read.
* ``gateway``: the factory behind them, ``async with gateway(dialect=…,
  extra_plugins=[my_plugin]) as (daemon, mcu):`` for plugin authors.

``GATEWAYD_TEST_LOOP=uvloop`` in the environment runs every asyncio test on
uvloop (through pytest-asyncio's ``pytest_asyncio_loop_factories`` hook), the
loop the daemon itself runs on where uvloop is installed.

The fixtures need pytest-asyncio; without it this plugin defines nothing, so
installing gatewayd never breaks an unrelated test suite.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    from gatewayd.testing.virtual_mcu import VirtualMcu, running_gateway

    @pytest.fixture
    def gateway(tmp_path: Path) -> Callable[..., Any]:
        """Factory: ``async with gateway(dialect="ameba") as (daemon, mcu): …``."""
        return functools.partial(running_gateway, tmp_path)

    @pytest_asyncio.fixture
    async def esp_at_mcu(tmp_path: Path) -> AsyncIterator[VirtualMcu]:
        async with running_gateway(tmp_path, dialect="esp-at") as (_, mcu):
            yield mcu

    @pytest_asyncio.fixture
    async def ameba_mcu(tmp_path: Path) -> AsyncIterator[VirtualMcu]:
        async with running_gateway(tmp_path, dialect="ameba") as (_, mcu):
            yield mcu

    if os.environ.get("GATEWAYD_TEST_LOOP") == "uvloop":
        @pytest.hookimpl(optionalhook=True)
        def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
            import uvloop

            return {"uvloop": uvloop.new_event_loop}
