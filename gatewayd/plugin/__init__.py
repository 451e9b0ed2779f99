"""Plugin hooks: markers, the hook specification and the plugin manager."""

import pluggy

PROJECT = "gatewayd"
ENTRY_POINT_GROUP = "gatewayd"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)



class PluginConfigError(Exception):
    """A plugin's ``[plugin.<name>]`` table is wrong. ``problems`` are
    ``(key path within the table, message)`` pairs, e.g. ``("token", "must
    be set")``; gatewayd reports each as ``plugin.<name>.<key path>``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))
        self.problems = problems


__all__ = ["ENTRY_POINT_GROUP", "PROJECT", "PluginConfigError", "hookimpl", "hookspec"]
