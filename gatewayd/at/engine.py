"""The sans-I/O AT engine: bytes from the MCU in, events and bytes for the MCU out.

The engine never touches a file descriptor, a timer or the event loop, in the
manner of ``h11`` and ``websockets``: feed it what the UART delivered with
:meth:`AtEngine.receive_data`, act on the events it returns, and write out
whatever :meth:`AtEngine.data_to_send` hands back.

It owns everything about the byte stream that both dialects share:

* line assembly on ``\\r\\n`` with the dialect's maximum line length;
* echo of command-mode input (ESP-AT);
* what happens to input that arrives while a command runs: answered with
  ``busy p...`` and thrown away (ESP-AT), or held and read as the next lines
  once the command ends (Ameba, whose line editor runs after the command);
* prompts followed by exactly *n* raw bytes (``>`` and ``>>>``);
* the rule that unsolicited messages never land inside a response: they are
  queued while a command runs and written right after its final result.

What a line *means* is the dialect's business (see :mod:`gatewayd.dialects`).
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass

__all__ = [
    "AtEngine",
    "Busy",
    "Command",
    "Discarded",
    "Event",
    "ForcedRestart",
    "Framing",
    "LineTooLong",
    "Overflow",
    "RawData",
    "State",
]

CRLF = b"\r\n"
#: Bytes Ameba's line editor does not simply append: BS, DEL, 0xFF, NUL, TAB,
#: and CR/LF (the terminator).
_EDITOR_SPECIAL = re.compile(rb"[\x00\x08\x09\x0a\x0d\x7f\xff]")


class Overflow(enum.Enum):
    """What the engine does with a line longer than :attr:`Framing.max_line`."""

    #: Drop the line's bytes up to its terminator, then report :class:`LineTooLong`
    #: (ESP-AT answers ``ERROR``).
    REJECT = "reject"
    #: Run the truncated line as a command; the rest starts a new line (Ameba).
    SPLIT = "split"


@dataclass(frozen=True, slots=True)
class Framing:
    """How a dialect frames its command lines. One instance per dialect, shared."""

    #: Longest line, terminator included (ESP-AT 256, Ameba 2000).
    max_line: int
    #: Echo command-mode input back to the MCU at boot (``ATE0``/``ATE1`` change it).
    echo: bool
    #: ``True``: input that arrives while a command runs is reported as :class:`Busy`
    #: and dropped. ``False``: it is held (up to :attr:`hold_limit` bytes) and read
    #: as lines once the command ends.
    busy_rejects_input: bool
    #: Ameba's line editor: BS/DEL erase one byte, TAB becomes a space, 0xFF is
    #: ignored and NUL ends a line.
    line_editing: bool
    overflow: Overflow
    #: A busy chunk containing this line forces a restart (ESP-AT ``AT+RST``).
    restart_line: bytes | None = None
    #: Bytes of input held while a command runs, when not rejected as busy.
    hold_limit: int = 4096

    def __post_init__(self) -> None:
        if self.line_editing != (self.overflow is Overflow.SPLIT):
            raise ValueError("Ameba's line editor is what splits overlong lines: "
                             "line_editing and Overflow.SPLIT go together")


class State(enum.Enum):
    READY = "ready"  #: assembling a command line
    RUNNING = "running"  #: a command is executing; its response is being written
    RAW = "raw"  #: after a prompt, collecting exactly n raw bytes


@dataclass(frozen=True, slots=True)
class Command:
    """A complete command line, terminator removed. The engine is now RUNNING."""

    line: bytes
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line exceeded the limit and was dropped (``Overflow.REJECT``). RUNNING."""

    length: int


@dataclass(frozen=True, slots=True)
class RawData:
    """Bytes of the block asked for with :meth:`AtEngine.expect_raw`: all of it,
    or with a ``chunk`` size one piece at a time. After the ``final`` piece the
    engine is RUNNING again."""

    data: bytes
    final: bool = True


@dataclass(frozen=True, slots=True)
class Busy:
    """Input arrived while a command was running and was dropped."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ForcedRestart:
    """A busy chunk contained the dialect's restart line."""


@dataclass(frozen=True, slots=True)
class Discarded:
    """Input dropped for a reason other than busy (hold buffer full, raw surplus)."""

    data: bytes
    reason: str


Event = Command | LineTooLong | RawData | Busy | ForcedRestart | Discarded


class AtEngine:
    """One UART's AT byte stream. Not thread-safe; owned by one port session."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.echo = framing.echo
        self.state = State.READY
        self._line = bytearray()
        self._line_dropped = 0  # bytes of an overlong line thrown away so far
        self._raw = bytearray()
        self._raw_needed = 0  # bytes of the raw block not received yet
        self._raw_chunk: int | None = None
        self._raw_eager = False
        self._held = bytearray()
        self._out = bytearray()
        self._unsolicited: deque[bytes] = deque()
        self.unsolicited_pending = 0  #: bytes of unsolicited messages waiting

    # -- input ------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the UART; return what they completed, in order."""
        events: list[Event] = []
        self._feed(bytes(data), events)
        return events

    def _feed(self, data: bytes, events: list[Event]) -> None:
        while data:
            if self.state is State.RAW:
                data = self._feed_raw(data, events)
            elif self.state is State.RUNNING:
                self._feed_running(data, events)
                return
            else:
                data = self._feed_line(data, events)

    def _feed_raw(self, data: bytes, events: list[Event]) -> bytes:
        take = min(self._raw_needed, len(data))
        self._raw += data[:take]
        self._raw_needed -= take
        chunk = self._raw_chunk
        if self._raw_eager and self._raw_needed and self._raw:
            events.append(RawData(bytes(self._raw), final=False))
            self._raw.clear()
        elif chunk is not None:
            while len(self._raw) >= chunk and (self._raw_needed or len(self._raw) > chunk):
                events.append(RawData(bytes(self._raw[:chunk]), final=False))
                del self._raw[:chunk]
        if self._raw_needed:
            return b""
        events.append(RawData(bytes(self._raw)))
        self._raw.clear()
        self._raw_chunk = None
        self._raw_eager = False
        self.state = State.RUNNING
        rest = data[take:]
        if rest and not self.framing.busy_rejects_input:
            # Ameba: bytes beyond <length> in the same burst are lost with the
            # transparent-transmission buffer.
            events.append(Discarded(rest, "beyond the raw block's length"))
            return b""
        return rest

    def _feed_running(self, data: bytes, events: list[Event]) -> None:
        if self.framing.busy_rejects_input:
            restart = self.framing.restart_line
            if restart is not None and restart in data:
                events.append(ForcedRestart())
            else:
                events.append(Busy(data))
            return
        room = self.framing.hold_limit - len(self._held)
        self._held += data[:room]
        if len(data) > room:
            events.append(Discarded(data[room:], "input held during a command overflowed"))

    def _feed_line(self, data: bytes, events: list[Event]) -> bytes:
        """Assemble a line from *data*; return the bytes after its terminator."""
        if self.framing.line_editing:
            return self._feed_edited_line(data, events)
        start = len(self._line)
        self._line += data
        # A terminator may straddle the previous chunk and this one.
        end = self._line.find(CRLF, start - 1 if start else 0)
        limit = self.framing.max_line - len(CRLF)
        if end < 0:
            self._echo(data)
            if len(self._line) > limit + 1:
                # Keep only a trailing CR, which may start the terminator.
                keep = 1 if self._line.endswith(b"\r") else 0
                self._line_dropped += len(self._line) - keep
                del self._line[: len(self._line) - keep]
            return b""
        consumed = end + len(CRLF) - start
        self._echo(data[:consumed])
        line = bytes(self._line[:end])
        self._line.clear()
        dropped, self._line_dropped = self._line_dropped, 0
        if dropped or end > limit:
            self._start_command(LineTooLong(dropped + end), events)
        else:
            self._start_command(Command(line), events)
        return data[consumed:]

    def _feed_edited_line(self, data: bytes, events: list[Event]) -> bytes:
        """Ameba's line editor. A line holds at most ``max_line - 2``
        bytes; one more CR may wait for its LF. Any other byte beyond the limit
        runs the first ``max_line - 2`` bytes as a truncated command, and what
        is left starts the next line."""
        limit = self.framing.max_line - len(CRLF)
        line = self._line
        # Ordinary bytes up to the first one the editor treats specially are
        # taken in one slice (when they fit): the per-byte loop below is for
        # those, and for lines that reach the limit.
        special = _EDITOR_SPECIAL.search(data)
        start = special.start() if special is not None else len(data)
        if len(line) + start > limit:
            start = 0
        line += data[:start]
        for i in range(start, len(data)):
            byte = data[i]
            if byte in (0x08, 0x7F):
                if line:
                    line.pop()
                continue
            if byte == 0xFF:
                continue
            if byte == 0x00 or (byte == 0x0A and line.endswith(b"\r")):
                text = bytes(line[:-1] if byte == 0x0A else line)
                line.clear()
                self._echo(data[: i + 1])
                self._start_command(Command(text), events)
                return data[i + 1 :]
            line.append(0x20 if byte == 0x09 else byte)
            if len(line) > limit and not (len(line) == limit + 1 and byte == 0x0D):
                text, rest = bytes(line[:limit]), bytes(line[limit:])
                line.clear()
                self._echo(data[: i + 1])
                self._start_command(Command(text, truncated=True), events)
                return rest + data[i + 1 :]
        self._echo(data)
        return b""

    def _start_command(self, event: Event, events: list[Event]) -> None:
        self.state = State.RUNNING
        events.append(event)

    def _echo(self, data: bytes) -> None:
        if self.echo and data:
            self._out += data

    # -- output -----------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write part of the running command's response (or a prompt-less reply)."""
        self._out += data

    def begin(self) -> None:
        """Start a command that no line asked for (the module's own, such as
        ESP-AT's saved passthrough link at boot): RUNNING, as after a
        :class:`Command`, so input is busy and raw blocks may be read."""
        if self.state is not State.READY:
            raise RuntimeError("a command is already running")
        self.state = State.RUNNING

    def expect_raw(self, length: int, prompt: bytes, chunk: int | None = None, *,
                   eager: bool = False) -> None:
        """Write *prompt*, then collect exactly *length* raw bytes (no echo, no
        escapes), reported as :class:`RawData`: whole, or in pieces of *chunk*
        bytes as they arrive (so a large block need not sit in memory), or,
        *eager*, each time bytes arrive, however few (ESP-AT passthrough).
        *length* must be > 0."""
        if self.state is not State.RUNNING:
            raise RuntimeError("raw input is only read on behalf of a running command")
        if length <= 0 or (chunk is not None and chunk <= 0):
            raise ValueError("a raw block and its pieces have at least one byte")
        self._out += prompt
        self._raw_needed = length
        self._raw_chunk = chunk
        self._raw_eager = eager
        self.state = State.RAW

    def abort_raw(self) -> bytes:
        """Give up on the raw block (the MCU's abort sequence): return the bytes
        received but not yet reported, and go back to RUNNING."""
        if self.state is not State.RAW:
            raise RuntimeError("no raw block is being read")
        rest = bytes(self._raw)
        self._raw.clear()
        self._raw_needed = 0
        self._raw_chunk = None
        self._raw_eager = False
        self.state = State.RUNNING
        return rest

    def finish(self, result: bytes) -> list[Event]:
        """End the running command with its final *result* bytes.

        Queued unsolicited messages follow the result; then held input (Ameba)
        is read, which may start the next command: the events are returned."""
        if self.state is State.READY:
            raise RuntimeError("no command is running")
        self._out += result
        self.state = State.READY
        self._raw.clear()
        self._raw_needed = 0
        self._raw_chunk = None
        self._raw_eager = False
        while self._unsolicited:
            self._out += self._unsolicited.popleft()
        self.unsolicited_pending = 0
        held, self._held = bytes(self._held), bytearray()
        events: list[Event] = []
        self._feed(held, events)
        return events

    def unsolicited(self, message: bytes) -> None:
        """Write an unsolicited message now, or after the running command's result."""
        if self.state is State.READY:
            self._out += message
        else:
            self._unsolicited.append(message)
            self.unsolicited_pending += len(message)

    def reset(self) -> None:
        """Forget all input and queued output state, as a module reboot does.
        Bytes already handed to :meth:`data_to_send`'s buffer are kept."""
        self.echo = self.framing.echo
        self.state = State.READY
        self._line.clear()
        self._line_dropped = 0
        self._raw.clear()
        self._raw_needed = 0
        self._raw_chunk = None
        self._raw_eager = False
        self._held.clear()
        self._unsolicited.clear()
        self.unsolicited_pending = 0

    def data_to_send(self) -> bytes:
        """Everything written since the last call."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def typing(self) -> bool:
        """A command line has begun and not ended yet (its echo is partial)."""
        return self.state is State.READY and bool(self._line)

    @property
    def raw_remaining(self) -> int:
        """Raw bytes still expected (0 outside the RAW state)."""
        return self._raw_needed if self.state is State.RAW else 0
