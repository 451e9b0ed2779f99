"""Real peers for the example plugin's tests: a websockets server on
127.0.0.1 that records the path and headers of every upgrade."""

from __future__ import annotations

import contextlib
import importlib.metadata

import gatewayd_example_plugin
import pytest
from websockets.asyncio.server import serve


def installed() -> bool:
    """Whether the plugin is installed (its entry point in group "gatewayd"):
    then every gatewayd loads it, and registering it again in code fails."""
    return any(ep.value == "gatewayd_example_plugin"
               for ep in importlib.metadata.entry_points(group="gatewayd"))


#: Pass to running_gateway(extra_plugins=...): the module only while it is not installed.
EXTRA = () if installed() else (gatewayd_example_plugin,)


@pytest.fixture(autouse=True)
def unconfigured():
    """Each test starts with the plugin unconfigured: gatewayd hands it only
    the tables a config has, so one test's [plugin.example] would outlive it."""
    gatewayd_example_plugin.reset()
    yield
    gatewayd_example_plugin.reset()


@contextlib.asynccontextmanager
async def recording_ws_server():
    """Yields (port, seen): seen gets (path, headers) for each upgrade."""
    seen: list[tuple[str, dict[str, str]]] = []

    async def echo(websocket):
        request = websocket.request
        seen.append((request.path, dict(request.headers.raw_items())))
        async for message in websocket:
            await websocket.send(message)

    async with serve(echo, "127.0.0.1", 0) as server:
        yield next(iter(server.sockets)).getsockname()[1], seen
