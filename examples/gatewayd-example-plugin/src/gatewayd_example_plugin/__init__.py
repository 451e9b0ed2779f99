"""An example gatewayd plugin (entry point ``example`` in the ``gatewayd`` group).

Configured by ``[plugin.example]``::

    [plugin.example]
    header = "X-Gatewayd-Port"        # default; "" sends no header
    deny_hosts = ["blocked.example.com", "*.tracker.example"]

- Every ``ws``/``wss`` client link gets the request header ``<header>: <port
  name>``, so the server can tell which UART the link comes from.
- A link to a host in ``deny_hosts`` (exact, or ``*.`` for any subdomain;
  case-insensitive) is refused, whether the MCU asked for it or a
  ``[[route]]`` rule sent it there.

Without a ``[plugin.example]`` table it does nothing: an installed plugin
loads in every gatewayd of its environment, configured or not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import Any

from gatewayd.logs import get_logger
from gatewayd.plugin import PluginConfigError, hookimpl
from gatewayd.transport import ClientRequest, Refused

__all__ = ["NAME", "Settings", "gatewayd_configure", "gatewayd_route_link", "reset"]

#: The plugin's name: its entry point, its ``[plugin.<name>]`` table, and who
#: ``gatewayd status``, the logs and the metrics say refused a link.
NAME = "example"
#: What a refusal says; gatewayd logs and counts the part after "denied by ".
DENIED_BY = f"denied by plugin {NAME}"
DEFAULT_HEADER = "X-Gatewayd-Port"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    header: str = DEFAULT_HEADER
    deny_hosts: tuple[str, ...] = ()

    def denies(self, host: str) -> bool:
        host = host.strip("[]").rstrip(".").lower()
        for pattern in self.deny_hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]):
                    return True
            elif host == pattern:
                return True
        return False


#: ``None`` until ``[plugin.example]`` is configured: the plugin does nothing.
_settings: Settings | None = None


def reset() -> None:
    """Forget the configuration (for tests that run several gateways in one
    process: gatewayd calls ``gatewayd_configure`` only for tables present)."""
    global _settings
    _settings = None


def _parse(table: dict[str, Any]) -> Settings:
    """*table* as settings, or PluginConfigError naming every wrong key."""
    problems: list[tuple[str, str]] = [
        (key, "unknown key (known: deny_hosts, header)")
        for key in sorted(table) if key not in ("header", "deny_hosts")]
    header = table.get("header", DEFAULT_HEADER)
    if not isinstance(header, str):
        problems.append(("header", f"must be a string, not {type(header).__name__}"))
    elif header and not header.replace("-", "").isalnum():
        problems.append(("header", f"{header!r} is not an HTTP header name"))
    hosts = table.get("deny_hosts", [])
    if not isinstance(hosts, list):
        problems.append(("deny_hosts", "must be a list of host names"))
        hosts = []
    for i, host in enumerate(hosts):
        if not isinstance(host, str) or not host.strip("*.").strip():
            problems.append((f"deny_hosts.{i}", f"{host!r} is not a host name"))
    if problems:
        raise PluginConfigError(problems)
    assert isinstance(header, str)
    return Settings(header, tuple(h.rstrip(".").lower() for h in hosts))


@hookimpl
def gatewayd_configure(name: str, table: dict[str, Any]) -> bool | None:
    if name != NAME:
        return None  # another plugin's table
    global _settings
    _settings = _parse(table)  # all or nothing: nothing is kept if a key is wrong
    return True


def _refuse(request: ClientRequest, host: str) -> Refused:
    get_logger(plugin=NAME).info("link refused", port=request.port_name,
                                 link=request.link_id, host=host)
    return Refused(DENIED_BY)


@hookimpl(wrapper=True)
def gatewayd_route_link(
    request: ClientRequest,
) -> Generator[None, ClientRequest | None, ClientRequest | None]:
    """Around every other implementation, the built-in ``[[route]]`` rules
    included: refuse a denied host before they run, then refuse a denied
    destination they chose, and tag ws/wss links with their port."""
    settings = _settings
    if settings is None:
        return (yield)  # not configured: the decision is the others' alone
    if settings.denies(request.host):
        raise _refuse(request, request.host)
    routed = yield  # what the plugins and rules decided; None: unchanged
    final = routed if routed is not None else request
    if final.host != request.host and settings.denies(final.host):
        raise _refuse(request, final.host)
    if not settings.header or final.kind not in ("ws", "wss") or final.port_name is None:
        return routed
    name = settings.header.lower()
    headers = tuple(h for h in final.headers if h[0].lower() != name)
    # decided_by stays whoever chose the destination: a header is not a route.
    return dataclasses.replace(final, headers=(*headers, (settings.header, final.port_name)))
