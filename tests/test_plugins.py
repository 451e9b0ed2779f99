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


class CountingWrapper:
    """A new-style pluggy wrapper around the transports hook: it sees what the
    other plugins returned and adds a transport of its own."""

    def __init__(self, extra: Transport) -> None:
        self.extra = extra
        self.seen: list[str] = []

    @hookimpl(wrapper=True)
    def gatewayd_transports(self):
        results = yield
        self.seen = [t.name for returned in results for t in returned]
        return [*results, [self.extra]]


class OldStyleWrapper:
    def __init__(self) -> None:
        self.called = False

    @hookimpl(hookwrapper=True)
    def gatewayd_dialects(self):
        outcome = yield
        self.called = bool(outcome.get_result())


def test_a_wrapper_sees_the_builtins_and_its_addition_is_indexed():
    added = NullTransport("wrapped-in", {"x-wrapped"})
    wrapper = CountingWrapper(added)
    plugins = load_plugins(wrapper)
    assert {"aiohttp-ws-client", "asyncio-sockets"} <= set(wrapper.seen)
    assert plugins.transports["x-wrapped"] is added
    assert plugins.transports["ws"].name == "aiohttp-ws-client"
    [provided] = [p for p in plugins.provided_transports if p.name == "wrapped-in"]
    assert provided.plugin == "CountingWrapper"
    assert provided.distribution == "(registered in code)"
    [ws] = [p for p in plugins.provided_transports if p.name == "aiohttp-ws-client"]
    assert ws.plugin == "ws-client"


def test_an_old_style_hookwrapper_runs():
    wrapper = OldStyleWrapper()
    plugins = load_plugins(wrapper)
    assert wrapper.called
    assert {"esp-at", "ameba"} <= set(plugins.dialects)


def test_tryfirst_and_trylast_keep_their_transports():
    class First(TransportPlugin):
        @hookimpl(tryfirst=True)
        def gatewayd_transports(self):
            return self.transports

    class Last(TransportPlugin):
        @hookimpl(trylast=True)
        def gatewayd_transports(self):
            return self.transports

    plugins = load_plugins(First(NullTransport("first", {"x-first"})),
                           Last(NullTransport("last", {"x-last"})))
    origins = {p.name: p.plugin for p in plugins.provided_transports}
    assert origins["first"] == "First"
    assert origins["last"] == "Last"


class MisspeltPlugin:
    @hookimpl
    def gatewayd_transport(self):  # the hook is gatewayd_transports
        return []


def test_a_misspelt_hook_is_refused_naming_the_plugin():
    with pytest.raises(PluginError, match=r"plugin MisspeltPlugin \(from \(registered in code\)\)"
                       r".*unknown hook 'gatewayd_transport'"):
        load_plugins(MisspeltPlugin())


def test_a_misspelt_hook_in_a_module_plugin_names_the_module():
    import types

    module = types.ModuleType("my_gatewayd_plugin")

    @hookimpl
    def gatewayd_dialect():
        return []

    module.gatewayd_dialect = gatewayd_dialect
    with pytest.raises(PluginError, match=r"plugin my_gatewayd_plugin .*'gatewayd_dialect'"):
        load_plugins(module)


def test_a_wrapper_that_is_not_a_generator_is_refused_naming_the_plugin():
    class NotAGenerator:
        @hookimpl(wrapper=True)
        def gatewayd_transports(self):
            return []

    with pytest.raises(PluginError, match="cannot register plugin NotAGenerator"):
        load_plugins(NotAGenerator())


class BrokenPlugin:
    @hookimpl
    def gatewayd_transports(self):
        raise RuntimeError("no network stack here")


def test_a_hook_that_raises_is_reported_naming_its_plugin():
    with pytest.raises(PluginError, match=r"plugin BrokenPlugin \(from \(registered in code\)\): "
                       r"gatewayd_transports failed: RuntimeError\('no network stack here'\)"):
        load_plugins(BrokenPlugin(), TransportPlugin(NullTransport("fine", {"x-fine"})))


def test_a_dialect_is_imported_only_when_a_port_uses_it() -> None:
    """Start-up and memory: a daemon whose ports all speak ESP-AT never imports
    Ameba's command modules (a fresh interpreter, as the daemon starts)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from gatewayd.plugin.manager import load_plugins\n"
        "plugins = load_plugins()\n"
        "assert {'esp-at', 'ameba'} <= set(plugins.dialects)\n"
        "print(plugins.dialects['esp-at'].name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('gatewayd.dialects.')"
        " and m.count('.') == 2))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.splitlines() == [
        "esp-at",
        "['gatewayd.dialects.base', 'gatewayd.dialects.builtin', 'gatewayd.dialects.esp_at']"]


class LazyPlugin:
    def __init__(self, entry: object) -> None:
        self.entry = entry

    @hookimpl
    def gatewayd_dialects(self):
        return [self.entry]


def test_a_lazy_dialect_that_is_not_what_it_says_fails_when_looked_up() -> None:
    from gatewayd.dialects.base import LazyDialect

    wrong = LazyDialect("modem", "a modem", "gatewayd.dialects.esp_at:DIALECT")
    plugins = load_plugins(LazyPlugin(wrong))
    assert "modem" in plugins.dialects  # listed without importing anything
    with pytest.raises(PluginError, match=r"dialect modem: cannot load gatewayd\.dialects\.esp_at"
                       r":DIALECT: TypeError.*registered as 'modem'"):
        plugins.dialects["modem"]
    missing = LazyDialect("gone", "nothing", "gatewayd.dialects.absent:DIALECT")
    with pytest.raises(PluginError, match=r"dialect gone: cannot load "
                       r"gatewayd\.dialects\.absent:DIALECT: ModuleNotFoundError"):
        load_plugins(LazyPlugin(missing)).dialects["gone"]
