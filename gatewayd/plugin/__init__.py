"""Plugin hooks: markers, the hook specification and the plugin manager."""

import pluggy

PROJECT = "gatewayd"
ENTRY_POINT_GROUP = "gatewayd"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["ENTRY_POINT_GROUP", "PROJECT", "hookimpl", "hookspec"]
