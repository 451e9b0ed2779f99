"""Parameter grammars of the two dialects. Pure functions over bytes.

ESP-AT (``esp_at_*``): the argument text is split at every comma not preceded
by a backslash (quotes do not protect commas); an empty field means "omitted";
strings are double-quoted with ``\\x`` → ``x``; integers are decimal with an
optional ``-``, or hexadecimal with ``0x``, and must fit in 32 signed bits.

Ameba (``ameba_*``): ``parse_param`` splits at every comma with no escapes;
``parse_param_advance`` also turns ``\\,`` into a comma and ``\\\\`` into a
backslash and rejects any other backslash sequence. Quotes are ordinary
characters. Numbers go through C ``atoi``: leading blanks and a sign are
allowed, anything non-numeric reads as 0, trailing junk is ignored.
"""

from __future__ import annotations

import re

__all__ = [
    "GrammarError",
    "ameba_atoi",
    "ameba_split",
    "ameba_split_escaped",
    "esp_at_int",
    "esp_at_split",
    "esp_at_string",
]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class GrammarError(ValueError):
    """Malformed parameter text."""


def esp_at_split(args: bytes) -> list[bytes]:
    """Split at commas not preceded by a backslash; fields keep their escapes."""
    if b"\\" not in args:
        return args.split(b",")
    fields: list[bytes] = []
    start = i = 0
    n = len(args)
    while i < n:
        c = args[i]
        if c == 0x5C:  # backslash: the next byte is never a separator
            i += 2
            continue
        if c == 0x2C:
            fields.append(args[start:i])
            start = i + 1
        i += 1
    fields.append(args[start:])
    return fields


def esp_at_string(field: bytes) -> bytes:
    """A quoted string field → its bytes. Raises :class:`GrammarError`."""
    if len(field) < 2 or field[0] != 0x22 or field[-1] != 0x22:
        raise GrammarError("a string parameter starts and ends with a double quote")
    body = field[1:-1]
    if b"\\" not in body and b'"' not in body:
        return body
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == 0x5C:
            if i + 1 >= n:
                raise GrammarError("a lone backslash ends the string")
            out.append(body[i + 1])
            i += 2
            continue
        if c == 0x22:
            raise GrammarError("an unescaped double quote inside a string")
        out.append(c)
        i += 1
    return bytes(out)


_ESP_INT = re.compile(rb"-?[0-9]+|0[xX][0-9a-fA-F]+")


def esp_at_int(field: bytes) -> int:
    """An integer field → int. Raises :class:`GrammarError`."""
    if not _ESP_INT.fullmatch(field):
        raise GrammarError("not a decimal or 0x-hexadecimal integer")
    value = int(field, 16) if field[:2] in (b"0x", b"0X") else int(field)
    if not INT32_MIN <= value <= INT32_MAX:
        raise GrammarError("integer overflow")
    return value


def ameba_split(args: bytes) -> list[bytes]:
    """``parse_param``: split at every comma, nothing escaped."""
    return args.split(b",")


def ameba_split_escaped(args: bytes) -> list[bytes]:
    """``parse_param_advance``: ``\\,`` and ``\\\\`` are literal; other escapes fail."""
    if b"\\" not in args:
        return args.split(b",")
    fields: list[bytes] = []
    cur = bytearray()
    i, n = 0, len(args)
    while i < n:
        c = args[i]
        if c == 0x5C:
            nxt = args[i + 1] if i + 1 < n else None
            if nxt not in (0x2C, 0x5C):
                raise GrammarError("only \\, and \\\\ may be escaped")
            cur.append(nxt)
            i += 2
            continue
        if c == 0x2C:
            fields.append(bytes(cur))
            cur.clear()
        else:
            cur.append(c)
        i += 1
    fields.append(bytes(cur))
    return fields


_ATOI = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def ameba_atoi(field: bytes | None) -> int:
    """C ``atoi`` on a field (``None`` and junk read as 0), clamped to int32
    the way newlib's ``strtol`` saturates."""
    if not field:
        return 0
    m = _ATOI.match(field)
    if m is None:
        return 0
    return max(INT32_MIN, min(INT32_MAX, int(m.group(1))))
