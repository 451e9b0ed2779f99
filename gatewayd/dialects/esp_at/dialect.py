"""The ESP-AT dialect: line syntax, parameter binding and result bytes.

Exact bytes follow the firmware's ``at_port.c`` result table (see
``shared/reference/esp-at-behaviour.md`` §5): results are ``\\r\\nOK\\r\\n``
and ``\\r\\nERROR\\r\\n``; with ``AT+SYSLOG=1`` an ``ERR CODE:0x%08x\\r\\n``
line precedes ``ERROR`` where the core knows the code.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from gatewayd.at.engine import Framing, Overflow
from gatewayd.at.grammar import esp_at_int, esp_at_split, esp_at_string
from gatewayd.dialects.base import (
    AtError,
    Conversions,
    Dialect,
    Form,
    Invocation,
    Setter,
    Unknown,
    bind_params,
)
from gatewayd.dialects.builtin import ESP_AT
from gatewayd.dialects.esp_at.state import EspAtState
from gatewayd.links import DescribedLink

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
    name = ESP_AT.name
    summary = ESP_AT.summary
    framing = FRAMING
    banner = READY
    #: An ESP32 reboots for a few hundred ms; hosts flush their UART after the
    #: OK of AT+RST and lose a ``ready`` that comes within milliseconds.
    boot_time = 0.3

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
        if len(fields) < setter.min_params:
            raise AtError(err_code=ERR_PARSE | min(len(fields), 0xF), why="too few parameters")
        return bind_params(setter.params, fields, CONVERSIONS)

    def fields(self, setter: Setter, args: bytes) -> list[bytes]:
        return esp_at_split(args)

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
        state.ip.links.retire()

    async def close_links(self, state: EspAtState, *, going_away: bool = False) -> None:
        await asyncio.gather(state.ws.close_all(going_away=going_away),
                             state.ip.close_all(graceful=going_away))

    def links(self, state: EspAtState) -> list[DescribedLink]:
        ws: list[DescribedLink] = [info.link for _, info in state.ws.links.sorted()]
        return ws + [link for _, link in state.ip.links.sorted()]


CONVERSIONS = Conversions(
    integer=esp_at_int, string=esp_at_string,
    malformed=lambda param, index, why: AtError(err_code=ERR_PARSE | index, why=why),
    out_of_range=lambda param, why: AtError(why=why),
    empty_fields=True)
