"""ESP-AT limits that differ between firmware versions, keyed on the version
that AT+GMR reports, so a range and the reported version never disagree.

From ``shared/reference/esp-at-behaviour.md`` §3 and §9: releases up to
v5.0.1.0 take an AT+WSCFG ``buffer_size`` of 1..8192; later cores (master)
take 1..16384. gatewayd reports :data:`AT_VERSION` (an ESP-AT v4.1 build,
the first with WSCFG's TLS auth modes), so its tables use :data:`LIMITS`,
the row for that version. A new version-dependent limit is one more
:class:`Limits` field and a value in each row.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AT_VERSION", "LIMITS", "Limits", "limits_for"]

#: The ``AT version:`` that AT+GMR prints.
AT_VERSION = (4, 1, 1, 0)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one range of versions accepts."""

    #: Largest AT+WSCFG ``buffer_size``.
    ws_buffer_size: int


#: (first version a row applies to, its limits), oldest first.
_ROWS: tuple[tuple[tuple[int, ...], Limits], ...] = (
    ((0,), Limits(ws_buffer_size=8192)),
    ((5, 0, 1, 1), Limits(ws_buffer_size=16384)),  # after v5.0.1.0: master
)


def limits_for(version: tuple[int, ...]) -> Limits:
    """The limits of firmware *version* (the last row that starts at or before it)."""
    return [limits for first, limits in _ROWS if first <= version][-1]


LIMITS = limits_for(AT_VERSION)
