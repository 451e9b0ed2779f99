"""The host's DNS resolvers, read-only, from ``/etc/resolv.conf``.

gatewayd reports them (Ameba AT+QUERYDNSSRV) and never writes the file.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

__all__ = ["RESOLV_CONF", "ipv4_nameservers"]

RESOLV_CONF = Path("/etc/resolv.conf")


def ipv4_nameservers(path: Path = RESOLV_CONF) -> list[str]:
    """The IPv4 ``nameserver`` lines of *path*, in order (none when unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    servers = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                servers.append(str(ipaddress.IPv4Address(words[1])))
            except ValueError:
                continue  # IPv6 or junk: lwIP's DHCP hands out IPv4 servers only
    return servers
