"""The plugin platform around links: ``gatewayd_route_link`` (plugins decide
before the built-in ``[[route]]`` rules, wrappers see what they decided),
``[plugins] disable`` freeing a built-in's link kinds, ``[plugin.<name>]``
tables checked by their plugin. Real peers on 127.0.0.1, plugins registered
in code as a test or an embedding application does."""

from __future__ import annotations

import dataclasses

import pytest
from test_esp_at_tcpip import ERROR, OK, station_up
from test_routes import config_with, recording_ws_server

from gatewayd.plugin import PluginConfigError, hookimpl
from gatewayd.plugin.manager import PluginError, load_plugins
from gatewayd.testing import running_gateway
from gatewayd.transport import Refused


class Redirect:
    """Sends ``ws://legacy.example.com`` to a local server; refuses ``evil.example.com``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[tuple[str | None, str | None, int | None]] = []

    @hookimpl
    def gatewayd_route_link(self, request):
        self.seen.append((request.port_name, request.dialect, request.link_id))
        if request.host == "evil.example.com":
            raise Refused("no evil")
        if request.host == "legacy.example.com":
            return dataclasses.replace(request, host="127.0.0.1", port=self.port,
                                       decided_by="plugin redirect")
        return None


class Watcher:
    """A pluggy wrapper around the whole decision (plugins and built-in rules)."""

    def __init__(self) -> None:
        self.results: list[str] = []

    @hookimpl(wrapper=True)
    def gatewayd_route_link(self, request):
        result = yield
        self.results.append(f"{request.host} -> {result.host if result else None}")
        return result


async def test_a_plugin_rewrites_and_refuses_links_before_the_rules(tmp_path):
    async with recording_ws_server() as (port, seen):
        redirect, watcher = Redirect(port), Watcher()
        routes = f'[[route]]\nmatch = "ws://rules.example.com/*"\nto = "ws://127.0.0.1:{port}/r/"\n'
        async with running_gateway(tmp_path, config_text=config_with(routes),
                                   extra_plugins=[redirect, watcher]) as (daemon, mcu):
            await station_up(mcu)
            await mcu.command(b'AT+WSOPEN=1,"ws://legacy.example.com/a"',
                              b"+WS_CONNECTED:1\r\n" + OK)
            await mcu.command(b'AT+WSOPEN=2,"ws://rules.example.com/b"',
                              b"+WS_CONNECTED:2\r\n" + OK)
            await mcu.command(b'AT+WSOPEN=0,"ws://evil.example.com/"',
                              b"+WS_DISCONNECTED:0\r\n" + ERROR)
            links = {link.id: link for link in daemon.sessions["mcu"].describe().links}
            assert links[1].routed_to == f"ws://127.0.0.1:{port}/a"
            assert daemon.router.counts[("plugin redirect", "rewritten")] == 1
    assert [path for path, _ in seen] == ["/a", "/r/b"]
    assert redirect.seen[:2] == [("mcu", "esp-at", 1), ("mcu", "esp-at", 2)]
    assert watcher.results == ["legacy.example.com -> 127.0.0.1",
                               "rules.example.com -> 127.0.0.1"]


class Replacement:
    """A third-party ws/wss transport: it counts links and delegates to the built-in."""

    def __init__(self) -> None:
        from gatewayd_ws.plugin import WsTransport

        self.inner = WsTransport()
        self.connects = 0

    @hookimpl
    def gatewayd_transports(self):
        outer = self

        class Counting(type(self.inner)):
            name = "counting-ws"

            async def connect(self, request, events):
                outer.connects += 1
                return await outer.inner.connect(request, events)

        return [Counting()]


def test_two_transports_for_one_kind_clash_unless_one_is_disabled():
    with pytest.raises(PluginError, match="'ws' served by both"):
        load_plugins(Replacement())
    plugins = load_plugins(Replacement(), disable=["aiohttp-ws-client"])
    assert plugins.transports["ws"].name == "counting-ws"
    with pytest.raises(PluginError, match="no-such-transport, which no plugin provides"):
        load_plugins(disable=["no-such-transport"])


async def test_disable_frees_ws_for_another_transport(tmp_path):
    replacement = Replacement()
    async with recording_ws_server() as (port, seen):
        text = config_with('[plugins]\ndisable = ["aiohttp-ws-client"]\n')
        async with running_gateway(tmp_path, config_text=text,
                                   extra_plugins=[replacement]) as (_, mcu):
            await station_up(mcu)
            await mcu.command(b'AT+WSOPEN=0,"ws://127.0.0.1:%d/x"' % port,
                              b"+WS_CONNECTED:0\r\n" + OK)
    assert replacement.connects == 1 and seen[0][0] == "/x"


class Configured:
    """A plugin that takes ``[plugin.greeter]`` and checks it."""

    def __init__(self) -> None:
        self.greeting: str | None = None

    @hookimpl
    def gatewayd_configure(self, name, table):
        if name != "greeter":
            return None
        problems = [(key, "unknown key") for key in table if key != "greeting"]
        if not isinstance(table.get("greeting"), str):
            problems.append(("greeting", "must be a string"))
        if problems:
            raise PluginConfigError(problems)
        self.greeting = table["greeting"]
        return True


def test_plugin_tables_go_to_their_plugin_and_its_problems_are_reported():
    plugin = Configured()
    plugins = load_plugins(plugin)
    assert plugins.configure({"greeter": {"greeting": "hi"}}) == []
    assert plugin.greeting == "hi"
    assert plugins.configure({"greeter": {"greeting": 7, "colour": "red"}}) == [
        ("plugin.greeter.colour", "unknown key"), ("plugin.greeter.greeting", "must be a string")]
    assert plugins.configure({"nobody": {}}) == [
        ("plugin.nobody", "no plugin named 'nobody' takes configuration")]


def test_check_config_reports_plugin_tables_nobody_takes(tmp_path):
    import subprocess
    import sys

    file = tmp_path / "gatewayd.toml"
    file.write_text(config_with('[plugin.nobody]\nkey = 1\n[plugins]\ndisable = ["nope"]\n'))
    result = subprocess.run([sys.executable, "-m", "gatewayd", "check-config", str(file)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "plugins: plugins failed to load: [plugins] disable names nope" in result.stderr
    file.write_text(config_with('[plugin.nobody]\nkey = 1\n'))
    result = subprocess.run([sys.executable, "-m", "gatewayd", "check-config", str(file)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "plugin.nobody: no plugin named 'nobody' takes configuration" in result.stderr


async def test_refused_by_a_plugin_is_the_dialects_connect_failure(tmp_path):
    class NoTcp:
        @hookimpl
        def gatewayd_route_link(self, request):
            if request.kind == "tcp":
                raise Refused("no tcp here")

    async with running_gateway(tmp_path, config_text=config_with(""),
                               extra_plugins=[NoTcp()]) as (_, mcu):
        await station_up(mcu)
        await mcu.command(b'AT+CIPSTART="TCP","127.0.0.1",9', ERROR)
