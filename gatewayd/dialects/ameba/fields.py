"""``parse_param`` fields, as the Wi-Fi, network and system commands take them.

The firmware splits these commands' arguments at every comma (no escapes, no
quotes) and checks the field count itself, so the handlers here get every
field: ``b""`` for an empty one, ``None`` beyond the last one given. A
trailing empty field (``ssid,MyWiFi,``) therefore counts, as in the firmware.
At most :data:`MAX_FIELDS` fields are seen (``MAX_ARGC`` 23 minus argv[0]);
later ones are ignored.
"""

from __future__ import annotations

from typing import Any

from gatewayd.dialects.base import AtError, Field, PortContext, Setter

__all__ = ["MAX_FIELDS", "field_count", "fields_setter", "missing", "value_after"]

MAX_FIELDS = 22


def fields_setter(run: Any, secrets: Any = None) -> Setter:
    """Every field of a ``parse_param`` line, in order; *secrets* as
    :attr:`~gatewayd.dialects.base.Setter.secrets` (which fields the log hides)."""
    return Setter(run, tuple(Field(f"field{i}", default=None) for i in range(MAX_FIELDS)),
                  secrets=secrets)


def field_count(fields: tuple[bytes | None, ...]) -> int:
    """How many fields were given: the firmware's argc - 1 (``AT+X=`` has one)."""
    return max((i + 1 for i, f in enumerate(fields) if f is not None), default=1)


def value_after(fields: tuple[bytes | None, ...], key_index: int) -> bytes | None:
    """The value of the key/value pair whose key is ``fields[key_index]``."""
    return fields[key_index + 1] if key_index + 1 < len(fields) else None


async def missing(ctx: PortContext) -> None:
    """``AT+X`` without ``=`` for a command that needs parameters: ``ERROR: 1``."""
    raise AtError(1, why="parameters required")
