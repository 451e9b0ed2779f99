"""Reading set-command fields whose meaning depends on state (``AT+CIPMUX``
adds a leading link id; a UDP link takes other parameters than a TCP one).

Such commands declare :func:`raw_fields` and read them in order with a
:class:`Fields`, which applies the ESP-AT grammar and errors of
:mod:`gatewayd.dialects.esp_at.dialect` (an empty field is an absent one).
"""

from __future__ import annotations

from typing import Any

from gatewayd.dialects.base import REQUIRED, AtError, Int, Raw, Setter, Str, bind_one
from gatewayd.dialects.esp_at.dialect import CONVERSIONS, ERR_PARSE

__all__ = ["Fields", "raw_fields"]


def raw_fields(run: Any, count: int, secrets: Any = None) -> Setter:
    """A setter handing *run* up to *count* raw fields (more: ERROR);
    *secrets* as :attr:`Setter.secrets`."""
    return Setter(run, tuple(Raw(f"field{i}", default=None) for i in range(count)),
                  secrets=secrets)


class Fields:
    """The fields of one command, consumed left to right."""

    def __init__(self, fields: tuple[bytes | None, ...]) -> None:
        given = [i for i, f in enumerate(fields) if f is not None]
        self._fields = fields[: given[-1] + 1] if given else ()
        self.index = 0

    @property
    def left(self) -> int:
        """Fields not read yet (empty ones count)."""
        return len(self._fields) - self.index

    def _next(self) -> bytes | None:
        field = self._fields[self.index] if self.index < len(self._fields) else None
        self.index += 1
        return field

    def number(self, name: str, lo: int, hi: int, default: Any = REQUIRED) -> Any:
        return self._bind(Int(name, default=default, lo=lo, hi=hi))

    def text(self, name: str, max_len: int | None = None, default: Any = REQUIRED) -> Any:
        return self._bind(Str(name, default=default, max_len=max_len))

    def _bind(self, param: Int | Str) -> Any:
        """The next field as *param* says, with the dialect's errors."""
        index = self.index
        return bind_one(param, index, self._next(), CONVERSIONS)

    def done(self) -> None:
        """Too many parameters is an error."""
        if self.left > 0:
            raise AtError(err_code=ERR_PARSE | min(self.index, 0xF), why="too many parameters")
