"""The syntax of ``[[route]]`` rules: destinations and the patterns that match them.

A destination is ``scheme://host[:port][/path]`` with scheme ``ws``, ``wss``,
``tcp``, ``tls`` or ``udp``. In a ``match`` pattern ``*`` matches any run of
characters (none included) in the host and in the path; a pattern without a
port (or with ``:*``) matches every port, one without a path every path. A ``to`` target
names the new scheme, host, and optionally port and path.

Only these scheme changes are allowed (the MCU keeps speaking as before):
the same scheme, ``ws`` → ``wss`` and ``tcp`` → ``tls`` (upgrades). UDP can
be rewritten but not upgraded.

Everything here is pure parsing, shared by the config models (validation) and
the link layer (:mod:`gatewayd.links.egress`, matching).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass

__all__ = ["SCHEMES", "UPGRADES", "Destination", "Pattern", "parse_destination",
           "parse_pattern"]

SCHEMES = ("ws", "wss", "tcp", "tls", "udp")
#: Allowed (from, to) scheme changes besides keeping the scheme.
UPGRADES = {("ws", "wss"), ("tcp", "tls")}
DEFAULT_PORTS = {"ws": 80, "wss": 443}
_SPLIT = re.compile(r"^(?P<scheme>[a-z]+)://(?P<host>\[[^\]]*\]|[^/:]*)(?::(?P<port>[^/]*))?"
                    r"(?P<path>/.*)?$")


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a link goes. ``path`` is ``""`` for stream and datagram links."""

    scheme: str
    host: str
    port: int
    path: str = ""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed ``match`` (globs) or ``to`` (literal) value; ``None`` = unset."""

    scheme: str
    host: str
    port: int | None
    path: str | None

    def matches(self, dest: Destination) -> bool:
        return (dest.scheme == self.scheme
                and fnmatch.fnmatchcase(dest.host.lower(), self.host.lower())
                and (self.port is None or self.port == dest.port)
                and (self.path is None or fnmatch.fnmatchcase(dest.path or "/", self.path)))


def _split(text: str) -> tuple[str, str, str | None, str | None]:
    match = _SPLIT.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not scheme://host[:port][/path]")
    scheme = match["scheme"]
    if scheme not in SCHEMES:
        raise ValueError(f"scheme {scheme!r} is none of {', '.join(SCHEMES)}")
    host = match["host"].strip("[]")
    if not host:
        raise ValueError(f"{text!r} has no host")
    return scheme, host, match["port"], match["path"]


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"port {text!r} is not 1..65535")
    return int(text)


def parse_pattern(text: str) -> Pattern:
    """A ``match`` value; ``*`` only in the host and the path."""
    scheme, host, port, path = _split(text)
    return Pattern(scheme, host, None if port == "*" else _port(port), path)


def parse_target(text: str) -> Pattern:
    """A ``to`` value: no wildcards."""
    scheme, host, port, path = _split(text)
    if "*" in host or (path is not None and "*" in path):
        raise ValueError(f"{text!r}: `*` belongs in match, not in to")
    if path is not None and scheme not in ("ws", "wss"):
        raise ValueError(f"{text!r}: only ws and wss destinations have a path")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
            raise ValueError(f"{text!r}: {host!r} is not a host name or address") from None
    return Pattern(scheme, host, _port(port), path)


def parse_destination(text: str) -> Destination:
    """A full destination as ``gatewayd route`` takes it (default ws/wss ports)."""
    scheme, host, port, path = _split(text)
    number = _port(port) or DEFAULT_PORTS.get(scheme)
    if number is None:
        raise ValueError(f"{text!r} needs a port")
    return Destination(scheme, host, number,
                       (path or "/") if scheme in ("ws", "wss") else "")


def check_change(match: Pattern, target: Pattern) -> None:
    """Refuse a scheme change the MCU's link cannot survive."""
    if match.scheme != target.scheme and (match.scheme, target.scheme) not in UPGRADES:
        raise ValueError(f"{match.scheme} links cannot become {target.scheme}"
                         " (allowed: the same scheme, ws to wss, tcp to tls)")


def rewrite(dest: Destination, match: Pattern, target: Pattern) -> Destination:
    """*dest* (matched by *match*) sent where *target* says."""
    port = target.port or (DEFAULT_PORTS.get(target.scheme) if target.scheme != dest.scheme
                           and dest.port == DEFAULT_PORTS.get(dest.scheme) else None)
    path = dest.path
    if target.path is not None:
        path = target.path
        if match.path is not None and match.path.endswith("/*") and target.path.endswith("/"):
            prefix = match.path[:-1]  # up to and with the last /: the rest is what * took
            cut = next((i for i in range(len(dest.path) + 1)
                        if fnmatch.fnmatchcase(dest.path[:i], prefix)), len(dest.path))
            path = target.path + dest.path[cut:]
    return Destination(target.scheme, target.host, port or dest.port, path)
