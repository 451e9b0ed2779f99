"""What the host's own network looks like, read-only: the ESP-AT Wi-Fi
commands answer from it (gatewayd never changes the host's configuration).

Linux only: the default route from ``/proc/net/route``, addresses through the
``SIOCGIFADDR``/``SIOCGIFNETMASK`` ioctls, the MAC from ``/sys/class/net``.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Interface", "default_interface", "interface", "server_host"]

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B


@dataclass(frozen=True, slots=True)
class Interface:
    """One host interface as the Wi-Fi commands report it: name, IPv4 address,
    netmask, gateway and MAC."""

    name: str
    address: str
    netmask: str
    gateway: str
    mac: str


def _routes() -> list[tuple[str, str, str]]:
    """(interface, destination hex, gateway hex) of the IPv4 routing table."""
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return []
    return [(f[0], f[1], f[2]) for f in (line.split() for line in lines) if len(f) >= 3]


def _hex_ip(value: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(value, 16)))


def _ioctl_ip(name: str, request: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), request, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def interface(name: str) -> Interface | None:
    """The IPv4 view of interface *name*, or ``None`` when it has no address."""
    address = _ioctl_ip(name, SIOCGIFADDR)
    if address is None:
        return None
    gateway = next((_hex_ip(gw) for iface, dest, gw in _routes()
                    if iface == name and dest == "00000000"), "0.0.0.0")
    try:
        mac = Path(f"/sys/class/net/{name}/address").read_text().strip()
    except OSError:
        mac = "00:00:00:00:00:00"
    return Interface(name, address, _ioctl_ip(name, SIOCGIFNETMASK) or "0.0.0.0", gateway, mac)


def default_interface() -> Interface | None:
    """The interface of the default route, or ``None`` when the host is offline."""
    for iface, dest, _gateway in _routes():
        if dest == "00000000":
            return interface(iface)
    return None


def server_host(bind: str | None) -> str | None:
    """Where the MCU's servers listen, from a port's ``server_bind``: ``""``
    (every interface) when unset, the address itself, or the IPv4 address
    of the interface it names; ``None`` when that interface has none."""
    if not bind:
        return ""
    try:
        ipaddress.ip_address(bind.split("%", 1)[0])
    except ValueError:
        iface = interface(bind)
        return iface.address if iface is not None else None
    return bind
