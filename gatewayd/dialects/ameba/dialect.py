"""The Realtek Ameba dialect (ATCMD 2.x, Host Control Mode): syntax and results.

Bytes follow ``shared/reference/ameba-at-behaviour.md``: ``\\r\\nOK\\r\\n`` and
``\\r\\nERROR: <n>\\r\\n`` (with the space), no echo on the AT port, no ``busy``
reply (input typed during a command is read once it ends), and nothing at all
on the AT port for a line that names no command: the firmware writes
``unknown command`` to its separate log UART, so gatewayd logs it instead.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from gatewayd.at.engine import Framing, Overflow
from gatewayd.at.grammar import (
    GrammarError,
    ameba_atoi,
    ameba_split,
    ameba_split_escaped,
    esp_at_split,
)
from gatewayd.dialects.ameba import generations
from gatewayd.dialects.ameba.state import AmebaState
from gatewayd.dialects.base import (
    AtError,
    CommandSpec,
    Conversions,
    Dialect,
    Form,
    Invocation,
    Setter,
    Unknown,
    bind_params,
)
from gatewayd.dialects.builtin import AMEBA
from gatewayd.links import DescribedLink

if TYPE_CHECKING:
    from gatewayd.config import PortConfig

OK = b"\r\nOK\r\n"
READY = b"ATCMD READY\r\n"
FRAMING = Framing(
    max_line=2000,
    echo=False,
    busy_rejects_input=False,
    line_editing=True,
    overflow=Overflow.SPLIT,
)


class AmebaDialect(Dialect):
    name = AMEBA.name
    summary = AMEBA.summary
    framing = FRAMING
    banner = READY

    def parse(self, line: bytes) -> Invocation | Unknown:
        head, eq, args = line.partition(b"=")
        if not head.startswith(b"AT") or len(head) <= 3:
            return Unknown(line, "unknown command")
        spec = self.commands.get(head[2:].decode("latin-1"))
        if spec is None:
            return Unknown(line, "unknown command")
        if not eq:
            return Invocation(spec, Form.EXECUTE, None)
        if spec.set is None:
            # Commands without parameters ignore whatever follows "=".
            return Invocation(spec, Form.EXECUTE, None)
        return Invocation(spec, Form.SET, args)

    def bind(self, setter: Setter, args: bytes) -> tuple[Any, ...]:
        try:
            fields = ameba_split_escaped(args) if setter.escaped else ameba_split(args)
        except GrammarError as exc:
            raise AtError(1, why=str(exc)) from None
        # Extra fields are ignored unless the table limits them (the socket and
        # server commands check their field count, as the firmware does).
        if setter.max_params is not None and len(fields) > setter.max_params:
            raise AtError(1, why="too many parameters")
        if len(fields) < setter.min_params:
            raise AtError(1, why=f"{setter.min_params} fields needed, {len(fields)} given")
        return bind_params(setter.params, fields, CONVERSIONS)

    def fields(self, setter: Setter, args: bytes) -> list[bytes]:
        # parse_param_advance splits where ESP-AT does: at commas no backslash escapes.
        return esp_at_split(args) if setter.escaped else ameba_split(args)

    def available(self, spec: CommandSpec, config: PortConfig) -> bool:
        """A command of a group the port's ``ameba_command_groups`` leaves out
        is not built in (Kconfig), hence unknown; so is a command the port's
        ``ameba_generation`` does not have (AT+IPDOMAIN is Gen-1's, AT+DNS 2.x's)."""
        if spec.name in (generations.NOT_IN_GEN1 if generations.is_gen1(config)
                         else generations.GEN1_ONLY):
            return False
        return not spec.group or spec.group in config.ameba_command_groups

    def ok(self) -> bytes:
        return OK

    def error(self, exc: AtError, state: Any) -> bytes:
        return b"\r\nERROR: %d\r\n" % (exc.code if exc.code is not None else 1)

    def final(self, final: bytes, invocation: Invocation, exc: AtError | None,
              config: PortConfig) -> bytes:
        """2.x final lines as they are; on a ``gen1`` port, the command's Gen-1
        form (:data:`~gatewayd.dialects.ameba.generations.GEN1_RESULTS`)."""
        if not generations.is_gen1(config):
            return final
        return generations.gen1_final(invocation.spec.name, final, exc)

    def unknown(self, unknown: Unknown, state: Any) -> bytes:
        return b""

    def new_state(self) -> AmebaState:
        return AmebaState()

    def retire(self, state: AmebaState) -> None:
        state.ws.links.retire()
        state.sockets.links.retire()
        state.wsserver.slots.retire()

    async def close_links(self, state: AmebaState, *, going_away: bool = False) -> None:
        await asyncio.gather(state.ws.close_all(going_away=going_away),
                             state.sockets.close_all(),
                             state.wsserver.stop(going_away=going_away))

    def links(self, state: AmebaState) -> list[DescribedLink]:
        ws: list[DescribedLink] = [link for _, link in state.ws.links.sorted()]
        clients: list[DescribedLink] = [slot for _, slot in state.wsserver.slots.sorted()]
        return ws + clients + [link for _, link in state.sockets.links.sorted()]


CONVERSIONS = Conversions(
    integer=ameba_atoi, string=lambda field: field,
    malformed=lambda param, index, why: AtError(param.error, why=why),
    out_of_range=lambda param, why: AtError(param.error, why=why))
