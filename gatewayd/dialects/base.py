"""What every dialect is made of: a command table, parameter specs and result bytes.

A dialect is data plus small handlers. Each :class:`CommandSpec` names the
handlers for the four ESP-AT command forms (Ameba uses only ``set`` and
``execute``); a :class:`Setter` pairs a set handler with its parameter
grammar, so ranges and error numbers sit in the table beside the command.
Adding a command means adding one entry and one handler.

Handlers are coroutines ``handler(ctx, *values) -> bytes | None``. They write
information lines with ``ctx.write``, read raw blocks with ``ctx.read_raw``,
return ``None`` for the dialect's ``OK`` or other bytes for a different final
result (``SEND OK``), and raise :class:`AtError` to fail.
"""

from __future__ import annotations

import enum
import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from gatewayd.at.engine import Framing, Overflow
from gatewayd.at.grammar import GrammarError
from gatewayd.links import (
    ClientLink,
    DescribedLink,
    LinkObserver,
    LinkTable,
    PingPolicy,
    ReconnectPolicy,
)
from gatewayd.links.egress import RoutedTransport
from gatewayd.transport import ClientRequest, Transport

if TYPE_CHECKING:
    from gatewayd.config import CertsConfig, PortConfig, UartSettings

__all__ = [
    "REQUIRED",
    "AtError",
    "ChunkAbort",
    "CommandSpec",
    "Conversions",
    "Dialect",
    "Field",
    "Form",
    "Int",
    "Invocation",
    "LazyDialect",
    "Param",
    "PortContext",
    "Raw",
    "RawAborted",
    "Secret",
    "Setter",
    "Str",
    "Unknown",
    "Watermarks",
    "after_keys",
    "bind_one",
    "bind_params",
    "from_end",
    "mask",
    "open_client_link",
    "transport_for",
]

E = TypeVar("E")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Marks a parameter without a default.
REQUIRED: Any = _Required()

#: What logs and traces hide of a value: ``True`` all of it (a password, a
#: token, a PSK); ``"header"`` what follows the first ``:`` of a
#: ``Name: value`` header; ``False`` nothing.
Secret = bool | Literal["header"]
#: What stands for a hidden value.
REDACTED = b"<redacted>"
#: The characters of a command's name (what a line that names no command is
#: logged by), and how many of them are shown.
_NAME = re.compile(rb"[A-Za-z0-9_!%\-./:+]{0,40}")


def mask(value: bytes, how: Secret) -> bytes:
    """*value* as logs show it under *how* (an empty value hides nothing)."""
    if not how or not value:
        return value
    name, colon, _ = value.partition(b":")
    return name + b": " + REDACTED if how == "header" and colon else REDACTED


class AtError(Exception):
    """A command failed. The dialect turns it into its error result.

    *code* is Ameba's ``ERROR: <n>`` number; *err_code* is the ESP-AT
    ``ERR CODE:0x…`` value printed before ``ERROR`` when ``AT+SYSLOG=1``."""

    def __init__(self, code: int | None = None, *, err_code: int | None = None, why: str = ""):
        super().__init__(why or f"error {code if code is not None else err_code}")
        self.code = code
        self.err_code = err_code
        self.why = why


class RawAborted(Exception):
    """The MCU aborted a raw block. ``received`` is what arrived before."""

    def __init__(self, received: int) -> None:
        super().__init__(f"raw block aborted after {received} bytes")
        self.received = received
        self.data = b""  # filled in by PortContext.read_raw


@dataclass(frozen=True, slots=True)
class ChunkAbort:
    """A raw block ends early when one UART transfer is exactly ``pattern``
    (ESP-AT ``+++`` during ``AT+CIPSEND`` data)."""

    pattern: bytes


@dataclass(frozen=True, slots=True)
class Watermarks:
    """Flow-control messages written while a raw block is read (Ameba TT):
    ``high`` once ``high_at`` bytes wait unconsumed, ``low`` once they fall
    below ``low_at`` again."""

    high_at: int
    low_at: int
    high: bytes
    low: bytes


class Form(enum.Enum):
    """The four forms of an AT command."""

    EXECUTE = "execute"  # AT+X
    QUERY = "query"  # AT+X?
    TEST = "test"  # AT+X=?
    SET = "set"  # AT+X=<params>


@dataclass(frozen=True, slots=True)
class Param:
    """One positional parameter. ``default`` is used when the field is empty or
    absent; ``REQUIRED`` makes that an error. ``error`` is the Ameba error number
    for a bad value (ESP-AT answers a plain ``ERROR``)."""

    name: str
    default: Any = REQUIRED
    error: int = 1
    #: ESP-AT: may the field be present but empty (``,,``) to mean "default"?
    allow_empty: bool = True
    #: Hidden from logs and traces (:data:`Secret`; :meth:`Dialect.loggable`).
    secret: Secret = False


@dataclass(frozen=True, slots=True)
class Int(Param):
    """An integer in ``lo..hi`` inclusive."""

    lo: int = -(2**31)
    hi: int = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Str(Param):
    """A string (ESP-AT: double-quoted; Ameba: the field as written), at most
    ``max_len`` bytes."""

    max_len: int | None = None


@dataclass(frozen=True, slots=True)
class Raw(Param):
    """The field's bytes exactly as split, for handlers with their own rules."""


@dataclass(frozen=True, slots=True)
class Field(Param):
    """The field as split, telling empty from absent: ``b""`` for an empty
    field, ``None`` beyond the fields given (for handlers that count fields,
    as Ameba's ``parse_param`` users do). ``default`` is not used."""


Handler = Callable[..., Awaitable[bytes | None]]


@dataclass(frozen=True, slots=True)
class Setter:
    """A set handler with its parameter grammar.

    ``escaped`` selects Ameba's escape-aware split (``\\,`` ``\\\\``); ESP-AT
    always honours backslashes. ``max_params`` defaults to ``len(params)``;
    fewer than ``min_params`` fields (empty ones count) is an error.

    Secrets: a param's ``secret``; ``secrets`` for layouts positions cannot
    name (fields as written → the indices of the secret ones: see
    :func:`after_keys`, :func:`from_end`); ``raw_secret`` for the raw block
    that follows the command's prompt (AT+WSHEAD's header)."""

    run: Handler
    params: tuple[Param, ...] = ()
    escaped: bool = False
    max_params: int | None = None
    min_params: int = 0
    secrets: Callable[[Sequence[bytes]], Iterable[int]] | None = None
    raw_secret: Secret = False

    def secret_fields(self, fields: Sequence[bytes]) -> dict[int, Secret]:
        """Which of *fields* hold secrets, and how each is hidden."""
        hidden: dict[int, Secret] = {i: p.secret for i, p in enumerate(self.params[:len(fields)])
                                     if p.secret}
        for index in self.secrets(fields) if self.secrets is not None else ():
            if 0 <= index < len(fields):
                hidden[index] = True
        return hidden


def after_keys(*keys: bytes) -> Callable[[Sequence[bytes]], list[int]]:
    """Key/value commands (Ameba ``pw,<value>``): the field after each key in *keys*."""
    return lambda fields: [i + 1 for i, field in enumerate(fields) if field in keys]


def from_end(n: int) -> Callable[[Sequence[bytes]], list[int]]:
    """The *n*-th field from the end (1: the last), for a command whose
    leading fields depend on a mode (ESP-AT AT+CIPSSLCPSK in AT+CIPMUX=1)."""
    return lambda fields: [len(fields) - n]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One row of a dialect's command table."""

    name: str  #: as typed after ``AT`` (``+GMR``, ``E0``)
    summary: str
    execute: Handler | None = None
    query: Handler | None = None
    test: Handler | None = None
    set: Setter | None = None
    section: str = ""  #: Ameba ``AT+LIST`` section header
    #: The firmware build option that brings the command (a port may switch it
    #: off, see :meth:`Dialect.available`); empty: always built in.
    group: str = ""

    def handler(self, form: Form) -> Handler | Setter | None:
        # By identity: hashing an enum member, or its .value, runs Python code.
        if form is Form.SET:
            return self.set
        if form is Form.EXECUTE:
            return self.execute
        return self.query if form is Form.QUERY else self.test


@dataclass(frozen=True, slots=True)
class Invocation:
    """A parsed command line: which command, which form, its raw argument text."""

    spec: CommandSpec
    form: Form
    args: bytes | None


class PortContext(Protocol):
    """What a handler may do with the port it runs on (implemented by the
    port session)."""

    config: PortConfig
    certs: CertsConfig
    plugins: Any  # gatewayd.plugin.manager.Plugins
    log: Any
    dialect: Dialect
    state: Any  # the dialect's per-port state, from Dialect.new_state()

    def write(self, data: bytes) -> None: ...

    async def read_raw(self, length: int, prompt: bytes, *,
                       abort: bytes | ChunkAbort | None = None) -> bytes: ...

    async def writable(self) -> None:
        """Returns once the UART's write buffer has room (backpressure)."""

    def read_raw_stream(self, length: int, prompt: bytes, *, chunk: int | None = None,
                        abort: bytes | ChunkAbort | None = None, watermarks: Any = None,
                        eager: bool = False) -> Any:
        """Async iterator over the raw block's pieces (see gatewayd.session.rawblock.RawStream)."""

    def spawn(self, coro: Any) -> None: ...

    def link_changed(self, link: DescribedLink) -> None: ...

    def run_unprompted(self, work: Callable[[Any], Awaitable[bytes | None]],
                       name: str) -> bool:
        """Run *work(ctx)* as the module's own command, with no MCU line (input
        busy, raw blocks allowed, its bytes end it); False if one runs."""

    def restart_after_reply(self, boot_time: float | None = None) -> None:
        """Restart once the result has left, silent for *boot_time* s (default:
        the port's) before the banner."""

    #: What the module keeps in flash (gatewayd.session.store.PortStore).
    store: Any
    #: The route rules (gatewayd.links.egress.Router), or None.
    router: Any

    @property
    def uart_settings(self) -> UartSettings:
        """The line settings in force."""

    @property
    def boot_uart_settings(self) -> UartSettings:
        """The line settings the module boots with (stored, else the config's)."""

    def set_uart(self, settings: UartSettings, *, store: bool = False,
                 before_reply: bool = False) -> None:
        """Switch the line once the result has left (or at once, *before_reply*);
        *store* makes them the settings the module boots with."""

    def set_echo(self, on: bool) -> None: ...

    def unsolicited(self, message: bytes) -> None: ...

    async def deliver(self, message: bytes) -> None: ...


@dataclass
class Unknown:
    """A line that names no command. ``reply`` is what the MCU gets (ESP-AT:
    an error; Ameba: nothing, the firmware only logs it)."""

    line: bytes
    reason: str
    err_code: int | None = None


class Dialect(ABC):
    """A module's AT personality. Instances are immutable and shared by ports;
    per-port mutable state lives in the object :meth:`new_state` returns."""

    name: str
    summary: str
    framing: Framing
    #: Written when the port opens and after every restart.
    banner: bytes
    #: Seconds of silence before the banner (the port's ``boot_time`` overrides it).
    boot_time: float = 0.0
    commands: Mapping[str, CommandSpec]

    def __init__(self, commands: Iterable[CommandSpec],
                 boot_hooks: Iterable[Callable[[PortContext], None]] = ()) -> None:
        """Index the command table by name; a name given twice is a bug, and so
        is a framing that reports events the dialect has no reply for.
        *boot_hooks* run after each banner (a module's autoconnect)."""
        self.boot_hooks = tuple(boot_hooks)
        table: dict[str, CommandSpec] = {}
        for spec in commands:
            if spec.name in table:
                raise ValueError(f"command AT{spec.name} is defined twice")
            table[spec.name] = spec
        self.commands = table
        cls = type(self)
        needs = {"line_too_long": self.framing.overflow is Overflow.REJECT,
                 "busy": self.framing.busy_rejects_input,
                 "forced_restart": self.framing.restart_line is not None}
        for name, needed in needs.items():
            if needed and getattr(cls, name) is getattr(Dialect, name):
                raise TypeError(f"{cls.__name__} must define {name}() for its framing")

    @abstractmethod
    def parse(self, line: bytes) -> Invocation | Unknown:
        """Identify the command on *line* (terminator already removed).

        A function of *line* alone: the port session remembers the answer for
        a short line it has seen, and asks again only for a new one."""

    @abstractmethod
    def bind(self, setter: Setter, args: bytes) -> tuple[Any, ...]:
        """Split and validate set arguments; raise :class:`AtError`.

        A function of its arguments alone, returning immutable values (ints,
        strings, bytes, ``None``): the port session reuses a short line's values
        (an error is never remembered; the line is bound again)."""

    def fields(self, setter: Setter, args: bytes) -> list[bytes]:
        """*args* split where :meth:`bind` splits them, each field as written
        (escapes kept: ``b",".join(fields) == args``). Default: every comma."""
        return args.split(b",")

    def loggable(self, line: bytes, parsed: Invocation | Unknown | None = None) -> bytes:
        """*line* (terminator removed; *parsed* is its :meth:`parse`) as logs
        and traces show it. A set command is rebuilt from its fields with every
        secret field (:meth:`Setter.secret_fields`) hidden; another command is
        shown as typed; a line that names no command, or whose form leaves
        text unread, by its name (at most 40 characters) and ``<redacted>``.
        Header values and URI passwords elsewhere are :func:`gatewayd.logs.redact_text`'s."""
        parsed = self.parse(line) if parsed is None else parsed
        setter = parsed.spec.set if isinstance(parsed, Invocation) else None
        if isinstance(parsed, Invocation) and parsed.args is not None and setter is not None:
            fields = self.fields(setter, parsed.args)
            for index, how in setter.secret_fields(fields).items():
                fields[index] = mask(fields[index], how)
            return line[: len(line) - len(parsed.args)] + b",".join(fields)
        name = _NAME.match(line)
        assert name is not None
        rest = line[name.end():]
        if isinstance(parsed, Invocation) and rest in (b"", b"?", b"=?"):
            return line
        return name.group() + REDACTED if rest else line

    @abstractmethod
    def ok(self) -> bytes: ...

    @abstractmethod
    def error(self, exc: AtError, state: Any) -> bytes:
        """The final result for a failed command."""

    def final(self, final: bytes, invocation: Invocation, exc: AtError | None,
              config: PortConfig) -> bytes:
        """The final result *final* (:meth:`ok`, :meth:`error` or a handler's
        own bytes) of *invocation* as this port writes it; *exc* is the
        command's error, if it failed. Default: unchanged (a dialect with
        per-port reply forms rewrites it)."""
        return final

    @abstractmethod
    def unknown(self, unknown: Unknown, state: Any) -> bytes:
        """What the MCU gets for a line that names no command."""

    # The engine reports these only under some framings (see __init__).

    def line_too_long(self, state: Any) -> bytes:
        """The reply to an overlong line (``Overflow.REJECT`` only)."""
        raise NotImplementedError(f"{self.name}'s framing does not reject long lines")

    def busy(self, state: Any) -> bytes:
        """The reply to input that arrived while a command ran
        (``busy_rejects_input`` only)."""
        raise NotImplementedError(f"{self.name}'s framing holds input during a command")

    def forced_restart(self) -> bytes:
        """What is written before a forced restart (``restart_line`` only)."""
        raise NotImplementedError(f"{self.name}'s framing has no restart line")

    @abstractmethod
    def new_state(self) -> Any:
        """Fresh per-port state, as after power-on."""

    def shutdown(self, state: Any, *, going_away: bool = False) -> Coroutine[Any, Any, None]:
        """Close every link *state* holds. The links stop reporting to the MCU
        at once (:meth:`retire`, before this returns); the coroutine returned
        closes them: as the module's restart does, or, with *going_away* (the
        daemon stopping), cleanly and together: WebSocket close 1001, TCP FIN,
        each within 2 s."""
        self.retire(state)
        return self.close_links(state, going_away=going_away)

    def retire(self, state: Any) -> None:  # noqa: B027 - most dialects hold no links
        """End the generation of every link table *state* holds."""

    async def close_links(self, state: Any, *, going_away: bool = False) -> None:  # noqa: B027
        """Close every link *state* holds (see :meth:`shutdown`)."""

    def available(self, spec: CommandSpec, config: PortConfig) -> bool:
        """Is *spec* built into the port's module? A command that is not
        behaves as an unknown one. Default: every command is."""
        return True

    def links(self, state: Any) -> list[DescribedLink]:
        """Every link *state* holds, table by table, by id; ``describe()``
        gives each one's :class:`~gatewayd.links.LinkDescription`."""
        return []


# -- shared by the dialects' command modules --------------------------------------


@dataclass(frozen=True, slots=True)
class Conversions:
    """A dialect's field syntax and error numbers, for :func:`bind_params`."""

    #: Field text to an integer / to the string's bytes; may raise GrammarError.
    integer: Callable[[bytes], int]
    string: Callable[[bytes], bytes]
    #: ``(param, index, why)``: the error for a required field that is missing,
    #: or a field that does not parse.
    malformed: Callable[[Param, int, str], AtError]
    #: ``(param, why)``: the error for a value outside its range, or too long.
    out_of_range: Callable[[Param, str], AtError]
    #: Honour :attr:`Param.allow_empty` (else an empty field is an absent one).
    empty_fields: bool = False


def bind_one(param: Param, index: int, field: bytes | None, conv: Conversions) -> Any:
    """*param*'s value from field number *index* (``None``: absent)."""
    if isinstance(param, Field):
        return field
    if not field:
        if param.default is REQUIRED or (
                conv.empty_fields and field is not None and not param.allow_empty):
            raise conv.malformed(param, index, f"{param.name} missing")
        return param.default
    if isinstance(param, Raw):
        return field
    try:
        if isinstance(param, Int):
            value = conv.integer(field)
            if not param.lo <= value <= param.hi:
                raise conv.out_of_range(
                    param, f"{param.name}={value} outside {param.lo}..{param.hi}")
            return value
        if isinstance(param, Str):
            text = conv.string(field)
            if param.max_len is not None and len(text) > param.max_len:
                raise conv.out_of_range(param, f"{param.name} longer than {param.max_len} bytes")
            return text.decode("utf-8", "surrogateescape")
    except GrammarError as error:
        raise conv.malformed(param, index, f"{param.name}: {error}") from None
    raise TypeError(f"unsupported parameter type {type(param).__name__}")


def bind_params(params: tuple[Param, ...], fields: list[bytes], conv: Conversions,
                ) -> tuple[Any, ...]:
    """Each parameter's value from its field (absent beyond the fields given)."""
    given = len(fields)
    return tuple([bind_one(param, index, fields[index] if index < given else None, conv)
                  for index, param in enumerate(params)])


def transport_for(ctx: PortContext, kind: str, code: int | None = None, *,
                  link_id: int | None = None) -> Transport:
    """The transport for one link (*link_id*) of *kind*, through the route
    rules and ``gatewayd_route_link`` plugins
    (:class:`~gatewayd.links.egress.RoutedTransport`), or ``AtError(code)``
    when no plugin serves *kind*."""
    transports = ctx.plugins.transports if ctx.plugins is not None else {}
    if kind not in transports:
        raise AtError(code, why=f"no transport plugin serves {kind!r} links")
    return RoutedTransport(kind, ctx.plugins, getattr(ctx, "router", None),
                           port=ctx.config.name, dialect=ctx.dialect.name, link_id=link_id,
                           log=ctx.log)


async def open_client_link(ctx: PortContext, table: LinkTable[E], link_id: int, kind: str,
                           request: Callable[[], ClientRequest], observer: LinkObserver, *,
                           entry: Callable[[ClientLink], E], ping: PingPolicy | None,
                           reconnect: ReconnectPolicy | None = None,
                           timeout: float | None, no_transport: int | None) -> ClientLink:
    """Open a client link of *kind* on *link_id* of *table*: the transport
    (``AtError(no_transport)`` if none serves *kind*), the id held by
    ``entry(link)`` while connecting and freed again when the open fails
    (:class:`~gatewayd.transport.TransportError`) or is cancelled."""
    transport = transport_for(ctx, kind, no_transport, link_id=link_id)
    link = ClientLink(link_id, transport, request, observer, ctx.log, ping=ping,
                      reconnect=reconnect, generation=table.generation,
                      on_state_change=ctx.link_changed)
    with table.reserving(link_id, entry(link)):
        await link.open(timeout)
    return link


@dataclass(frozen=True)
class LazyDialect:
    """A dialect registered by name and summary, imported when a port first
    uses it: a daemon whose ports all speak ESP-AT never imports Ameba's
    command modules (about 75 ms of start-up and 3 MB here).

    *target* is ``"module:ATTRIBUTE"`` naming the :class:`Dialect` instance;
    its ``name`` and ``summary`` must be the ones given here."""

    name: str
    summary: str
    target: str

    def load(self) -> Dialect:
        """The dialect, imported (Python caches the module: later calls are cheap)."""
        module, _, attribute = self.target.partition(":")
        dialect = getattr(importlib.import_module(module), attribute)
        if not isinstance(dialect, Dialect):
            raise TypeError(f"{self.target} is not a gatewayd Dialect")
        if (dialect.name, dialect.summary) != (self.name, self.summary):
            raise TypeError(f"{self.target} is dialect {dialect.name!r} ({dialect.summary!r}),"
                            f" registered as {self.name!r} ({self.summary!r})")
        return dialect
