"""Whether the host has a default route, read-only from ``/proc/net/route``.

:mod:`gatewayd.links.hostnet` answers with an interface only when it also has
an IPv4 address; the Ameba join needs the route alone, to tell a host that is
offline (no route: the join fails) from one whose DHCP never finished (a
route but no address: the join succeeds and ``got ip`` times out).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["has_default_route"]

ROUTES = Path("/proc/net/route")


def has_default_route(interface: str | None = None, *, path: Path = ROUTES) -> bool:
    """An IPv4 default route exists (through *interface*, when given)."""
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return False
    return any(f[1] == "00000000" and (interface is None or f[0] == interface)
               for f in (line.split() for line in lines) if len(f) >= 3)
