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
    from gatewayd.dialects.base import Dialect
    from gatewayd.transport import Transport


@hookspec
def gatewayd_dialects() -> list[Dialect]:
    """Return the AT dialects this plugin provides. Names must be unique
    across all plugins (``esp-at`` and ``ameba`` are built in)."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def gatewayd_transports() -> list[Transport]:
    """Return the transports this plugin provides. Each serves one or more
    link kinds; a kind served twice is a configuration error reported at
    start-up, naming both plugins."""
    raise NotImplementedError  # a specification: plugins implement it
