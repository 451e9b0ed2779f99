"""The ESP-AT dialect: line syntax, parameter binding and result bytes.

Exact bytes follow the firmware's ``at_port.c`` result table (see
``shared/reference/esp-at-behaviour.md`` §5): results are ``\\r\\nOK\\r\\n``
and ``\\r\\nERROR\\r\\n``; with ``AT+SYSLOG=1`` an ``ERR CODE:0x%08x\\r\\n``
line precedes ``ERROR`` where the core knows the code.
"""

from __future__ import annotations

import re
from typing import Any

from gatewayd.at.engine import Framing, Overflow
from gatewayd.at.grammar import GrammarError, esp_at_int, esp_at_split, esp_at_string
from gatewayd.dialects.base import (
    REQUIRED,
    AtError,
    Dialect,
    Form,
    Int,
    Invocation,
    Raw,
    Setter,
    Str,
    Unknown,
)
from gatewayd.dialects.esp_at.state import EspAtState

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
SEND_OK = b"\r\nSEND OK\r\n"
PROMPT = b"\r\nOK\r\n\r\n>"
BUSY = b"\r\nbusy p...\r\n"
READY = b"\r\nready\r\n"
FORCE_RESTART = b"\r\nWill force to restart!!!\r\n"

#: ERR CODE values the core prints with AT+SYSLOG=1.
ERR_LINE_TOO_LONG = 0x01030000
ERR_PARSE = 0x01080000  # | parameter index
ERR_UNKNOWN_COMMAND = 0x01090000
ERR_BUSY = 0x010B0000

FRAMING = Framing(
    max_line=256,
    echo=True,
    busy_rejects_input=True,
    line_editing=False,
    overflow=Overflow.REJECT,
    restart_line=b"AT+RST\r\n",
)

_NAME = re.compile(rb"[A-Za-z0-9_!%\-./:+]*")


class EspAtDialect(Dialect):
    name = "esp-at"
    summary = "Espressif ESP-AT: AT core and WebSocket commands"
    framing = FRAMING
    banner = READY

    def parse(self, line: bytes) -> Invocation | Unknown:
        if line[:2].upper() != b"AT":
            return Unknown(line, "line does not start with AT", ERR_UNKNOWN_COMMAND)
        rest = line[2:]
        name_match = _NAME.match(rest)
        assert name_match is not None
        name = name_match.group().upper().decode("ascii")
        tail = rest[name_match.end() :]
        if tail == b"":
            form, args = Form.EXECUTE, None
        elif tail == b"?":
            form, args = Form.QUERY, None
        elif tail == b"=?":
            form, args = Form.TEST, None
        elif tail[:1] == b"=":
            form, args = Form.SET, tail[1:]
        else:
            return Unknown(line, "malformed command", ERR_UNKNOWN_COMMAND)
        spec = self.commands.get(name)
        if spec is None:
            return Unknown(line, "unknown command", ERR_UNKNOWN_COMMAND)
        return Invocation(spec, form, args)

    def bind(self, setter: Setter, args: bytes) -> tuple[Any, ...]:
        fields = esp_at_split(args)
        limit = setter.max_params if setter.max_params is not None else len(setter.params)
        if len(fields) > limit:
            raise AtError(err_code=ERR_PARSE | min(limit, 0xF), why="too many parameters")
        values = []
        for index, param in enumerate(setter.params):
            field = fields[index] if index < len(fields) else None
            values.append(_bind_one(param, index, field))
        return tuple(values)

    def ok(self) -> bytes:
        return OK

    def error(self, exc: AtError, state: EspAtState) -> bytes:
        if state.syslog and exc.err_code is not None:
            return b"ERR CODE:0x%08x\r\n" % exc.err_code + ERROR
        return ERROR

    def unknown(self, unknown: Unknown, state: EspAtState) -> bytes:
        return self.error(AtError(err_code=unknown.err_code), state)

    def line_too_long(self, state: EspAtState) -> bytes:
        return self.error(AtError(err_code=ERR_LINE_TOO_LONG), state)

    def busy(self, state: EspAtState) -> bytes:
        return (b"ERR CODE:0x%08x\r\n" % ERR_BUSY if state.syslog else b"") + BUSY

    def forced_restart(self) -> bytes:
        return FORCE_RESTART + OK

    def new_state(self) -> EspAtState:
        return EspAtState()

    def retire(self, state: EspAtState) -> None:
        state.ws.links.retire()

    async def close_links(self, state: EspAtState) -> None:
        await state.ws.close_all()

    def links(self, state: EspAtState) -> list[Any]:
        return [info.link for _, info in state.ws.links.sorted()]


def _bind_one(param: Any, index: int, field: bytes | None) -> Any:
    if not field:
        if param.default is REQUIRED or (field is not None and not param.allow_empty):
            raise AtError(err_code=ERR_PARSE | index, why=f"{param.name} missing")
        return param.default
    if isinstance(param, Raw):
        return field
    try:
        if isinstance(param, Int):
            value = esp_at_int(field)
            if not param.lo <= value <= param.hi:
                raise AtError(why=f"{param.name}={value} outside {param.lo}..{param.hi}")
            return value
        if isinstance(param, Str):
            text = esp_at_string(field)
            if param.max_len is not None and len(text) > param.max_len:
                raise AtError(why=f"{param.name} longer than {param.max_len} bytes")
            return text.decode("utf-8", "surrogateescape")
    except GrammarError as exc:
        raise AtError(err_code=ERR_PARSE | index, why=f"{param.name}: {exc}") from None
    raise TypeError(f"unsupported parameter type {type(param).__name__}")
