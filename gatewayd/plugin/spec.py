"""The hooks a gatewayd plugin may implement.

A plugin is a module (or object) registered under the ``gatewayd`` entry-point
group in its distribution's metadata::

    [project.entry-points.gatewayd]
    mytransport = "mypackage.plugin"

and decorated with :data:`gatewayd.plugin.hookimpl`. Hooks are synchronous
(pluggy has no async hooks): they return objects, and those objects do the
asynchronous work. The built-in dialects and transports register exactly
this way.

gatewayd calls each hook through pluggy, so ``@hookimpl(wrapper=True)``,
``hookwrapper=True``, ``tryfirst`` and ``trylast`` behave as pluggy documents.
An ``@hookimpl`` whose name is not one of the hooks below is refused when
plugins load, naming the plugin and its distribution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatewayd.plugin import hookspec

if TYPE_CHECKING:
    from typing import Any

    from gatewayd.dialects.base import Dialect, LazyDialect
    from gatewayd.transport import ClientRequest, Transport


@hookspec
def gatewayd_dialects() -> list[Dialect | LazyDialect]:
    """Return the AT dialects this plugin provides: :class:`Dialect` instances,
    or :class:`~gatewayd.dialects.base.LazyDialect` entries (name, summary,
    ``"module:ATTRIBUTE"``) imported when a port first uses them. Names must be
    unique across all plugins (``esp-at`` and ``ameba`` are built in)."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def gatewayd_transports() -> list[Transport]:
    """Return the transports this plugin provides. Each serves one or more
    link kinds; a kind served twice is a configuration error reported at
    start-up, naming both plugins."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec(firstresult=True)
def gatewayd_route_link(request: ClientRequest) -> ClientRequest | None:
    """Decide where an outgoing client link goes, before any name is resolved.

    *request* is what the dialect asked for; ``request.port_name``,
    ``request.dialect`` and ``request.link_id`` say whose link it is. Return
    the request to use instead (``dataclasses.replace(request, …)``, with
    ``decided_by`` saying why), raise :class:`gatewayd.transport.Refused` to
    refuse the link (the MCU gets its dialect's connect-failure answer), or
    return ``None`` to leave it to the next implementation. The first result
    that is not ``None`` wins; the built-in ``[[route]]`` rules run last
    (``trylast``), so a plugin decides before them and a wrapper
    (``wrapper=True``) sees and may change what they decided. Called for
    every connect, reconnects included."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def gatewayd_configure(name: str, table: dict[str, Any]) -> bool | None:
    """Configure the plugin called *name* from its ``[plugin.<name>]`` table.

    The plugin that owns *name* validates *table* — raising
    :class:`gatewayd.plugin.PluginConfigError` with key paths, which
    ``check-config`` and start-up report like gatewayd's own problems —
    keeps what it needs, and returns ``True``. Others return ``None``. A
    table no plugin takes is a configuration error. Called when the config
    is loaded (start-up, reload, check-config), before any link opens."""
    raise NotImplementedError  # a specification: plugins implement it
