"""The plugin manager: built-ins arrive through the entry point like any third
party, code-registered plugins sit beside them, and clashes are refused."""

from __future__ import annotations

import pytest

from gatewayd.dialects.esp_at import EspAtDialect
from gatewayd.dialects.esp_at.core import COMMANDS
from gatewayd.plugin import hookimpl
from gatewayd.plugin.manager import PluginError, load_plugins
from gatewayd.transport import ClientRequest, Connection, LinkEvents, Transport


class NullTransport(Transport):
    def __init__(self, name: str, kinds: set[str]) -> None:
        self.name, self.kinds, self.summary = name, frozenset(kinds), "test transport"

    async def connect(self, request: ClientRequest, events: LinkEvents) -> Connection:
        raise NotImplementedError


class TransportPlugin:
    def __init__(self, *transports: Transport) -> None:
        self.transports = list(transports)

    @hookimpl
    def gatewayd_transports(self):
        return self.transports


class DialectPlugin:
    def __init__(self, name: str) -> None:
        self.dialect = EspAtDialect(COMMANDS)
        self.dialect.name = name

    @hookimpl
    def gatewayd_dialects(self):
        return [self.dialect]


def test_builtin_dialects_come_from_the_entry_point():
    plugins = load_plugins()
    assert {"esp-at", "ameba"} <= set(plugins.dialects)
    origins = {p.name: p for p in plugins.provided_dialects}
    assert origins["esp-at"].plugin == "dialects"
    assert origins["esp-at"].distribution.startswith("gatewayd ")


def test_code_registered_transport_is_indexed_by_kind():
    transport = NullTransport("null", {"null", "void"})
    plugins = load_plugins(TransportPlugin(transport))
    assert plugins.transports["null"] is transport
    assert plugins.transports["void"] is transport
    [provided] = [p for p in plugins.provided_transports if p.name == "null"]
    assert provided.distribution == "(registered in code)"


def test_two_transports_for_one_kind_are_refused():
    with pytest.raises(PluginError, match="'x-test' served by both 'one' and 'two'"):
        load_plugins(TransportPlugin(NullTransport("one", {"x-test"})),
                     TransportPlugin(NullTransport("two", {"x-test"})))


def test_a_plugin_claiming_a_builtin_kind_is_refused():
    with pytest.raises(PluginError, match="'ws' served by both 'aiohttp-ws-client' and 'mine'"):
        load_plugins(TransportPlugin(NullTransport("mine", {"ws"})))


def test_a_dialect_name_registered_twice_is_refused():
    with pytest.raises(PluginError, match="'esp-at' registered twice"):
        load_plugins(DialectPlugin("esp-at"))


async def test_a_plugin_dialect_serves_a_port(gateway):
    async with gateway(dialect="esp-at-clone", extra_plugins=[DialectPlugin("esp-at-clone")]) \
            as (daemon, mcu):
        assert daemon.sessions["mcu"].dialect.name == "esp-at-clone"
        await mcu.command(b"AT", b"AT\r\n\r\nOK\r\n")
