"""Loads plugins from the ``gatewayd`` entry-point group and indexes what they
provide, remembering which distribution each dialect and transport came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pluggy

from gatewayd.plugin import ENTRY_POINT_GROUP, PROJECT, spec

if TYPE_CHECKING:
    from gatewayd.dialects.base import Dialect
    from gatewayd.transport import Transport

__all__ = ["PluginError", "Plugins", "Provided", "load_plugins"]


class PluginError(Exception):
    """Two plugins claim the same dialect or link kind, or a plugin is broken."""


@dataclass(frozen=True, slots=True)
class Provided:
    """Something a plugin registered, and where it came from."""

    name: str
    summary: str
    plugin: str  # the plugin's registered name (entry-point name)
    distribution: str  # "gatewayd 0.1.0", or "(registered in code)"


class Plugins:
    """The loaded plugins: dialects by name, transports by link kind."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self.dialects: dict[str, Dialect] = {}
        self.transports: dict[str, Transport] = {}
        self.provided_dialects: list[Provided] = []
        self.provided_transports: list[Provided] = []
        self._index()

    def _origin(self, plugin: object) -> tuple[str, str]:
        name = self.manager.get_name(plugin) or repr(plugin)
        for dist_plugin, dist in self.manager.list_plugin_distinfo():
            if dist_plugin is plugin:
                return name, f"{dist.project_name} {dist.version}"
        return name, "(registered in code)"

    def _index(self) -> None:
        hook = self.manager.hook
        for impl in hook.gatewayd_dialects.get_hookimpls():
            name, dist = self._origin(impl.plugin)
            for dialect in impl.function() or []:
                if dialect.name in self.dialects:
                    raise PluginError(
                        f"dialect {dialect.name!r} registered twice (again by {name})")
                self.dialects[dialect.name] = dialect
                self.provided_dialects.append(Provided(dialect.name, dialect.summary, name, dist))
        for impl in hook.gatewayd_transports.get_hookimpls():
            name, dist = self._origin(impl.plugin)
            for transport in impl.function() or []:
                for kind in sorted(transport.kinds):
                    if kind in self.transports:
                        other = self.transports[kind].name
                        raise PluginError(
                            f"link kind {kind!r} served by both {other!r} and {transport.name!r}"
                        )
                    self.transports[kind] = transport
                self.provided_transports.append(
                    Provided(transport.name, transport.summary, name, dist)
                )


def load_plugins(*extra: object) -> Plugins:
    """Load every plugin of the entry-point group, plus *extra* objects
    registered in code (tests, embedding)."""
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(spec)
    try:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    except Exception as exc:  # a broken third-party plugin must say who it is
        raise PluginError(f"cannot load plugins: {exc!r}") from exc
    for plugin in extra:
        manager.register(plugin)
    return Plugins(manager)
