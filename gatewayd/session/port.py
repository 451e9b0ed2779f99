"""A port session: one UART, its AT engine, its dialect, and its links.

The session is the I/O shell around the sans-I/O engine. Bytes from the UART
go into :class:`~gatewayd.at.engine.AtEngine`; the events that come back are
dispatched to the dialect's handlers, which run one at a time as asyncio
tasks (the module is strictly serial); whatever the engine has to send goes
straight back to the UART.

Handlers see the session through :class:`~gatewayd.dialects.base.PortContext`.
Links report to the MCU through :meth:`PortSession.unsolicited`, which the
engine holds back while a command's response is being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatewayd.at.engine import (
    AtEngine,
    Busy,
    Command,
    Discarded,
    Event,
    ForcedRestart,
    LineTooLong,
    RawData,
)
from gatewayd.config import CertsConfig, PortConfig
from gatewayd.dialects.base import (
    AtError,
    ChunkAbort,
    Dialect,
    Invocation,
    RawAborted,
    Setter,
    Unknown,
    Watermarks,
    mask,
)
from gatewayd.links.egress import Router
from gatewayd.links.table import LinkDescription
from gatewayd.logs import RateLimit
from gatewayd.session.rawblock import RawStream
from gatewayd.session.redact import StreamRedactor, port_redaction
from gatewayd.session.store import PortStore
from gatewayd.session.uart import Uart, UartSettings

__all__ = ["PortDescription", "PortSession"]

#: How much of a line or block the debug log shows.
LOG_PREVIEW = 160
#: Unsolicited bytes the engine may hold while a command runs before links
#: wait (:meth:`PortSession.deliver`); with the UART's own write buffer this
#: bounds what a port keeps in memory for the MCU.
UNSOLICITED_LIMIT = 32 * 1024
#: Command lines of at most this many bytes are remembered parsed and bound
#: (:meth:`PortSession._dispatch`): an MCU repeats a few short lines, such as
#: ``AT+CIPSEND=0,2048`` before every block, and parsing one is a tenth of
#: the round trip. Lines that carry their data (Ameba ``AT+WSSEND``) are longer.
MEMO_LINE = 64
#: Lines remembered at most; the memo starts over when it is full.
MEMO_LINES = 32


@dataclass(frozen=True, slots=True)
class PortDescription:
    """One port as ``gatewayd status`` and the metrics see it."""

    name: str
    dialect: str
    device: str
    pty: str | None
    uart_open: bool
    bytes_in: int
    bytes_out: int
    commands: int
    links: tuple[LinkDescription, ...]

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the control socket's ``status`` answer."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["links"] = [link.as_dict() for link in self.links]
        return fields


def preview(data: bytes) -> str:
    text = repr(data[:LOG_PREVIEW])[2:-1]
    return text + f"…(+{len(data) - LOG_PREVIEW} bytes)" if len(data) > LOG_PREVIEW else text


class PortSession:
    """Runs one port. Create, then ``await start()``; ``await stop()`` to end."""

    def __init__(self, config: PortConfig, dialect: Dialect, log: Any,
                 plugins: Any = None, certs: CertsConfig | None = None,
                 state_directory: Path | None = None, router: Router | None = None) -> None:
        """*state_directory* holds what the module would keep in flash
        (:class:`~gatewayd.session.store.PortStore`); default: systemd's
        ``$STATE_DIRECTORY``, else memory only."""
        self.config = config
        self.dialect = dialect
        self.plugins = plugins
        self.certs = certs if certs is not None else CertsConfig()
        #: The daemon's route rules (replaced on reload); None: links go where asked.
        self.router = router
        self.log = log.bind(port=config.name, dialect=dialect.name)
        #: Debug lines are built only when they are logged (the per-byte path).
        self._debug = bool(getattr(self.log, "is_enabled_for", lambda level: True)(logging.DEBUG))
        #: Events the MCU can cause at will: a few lines per window, then a count.
        self._noisy = RateLimit()
        #: Whole lines of this port's UART with secrets hidden (logs, gatewayd trace).
        self.redact = port_redaction(dialect)
        self._out_log = StreamRedactor(self.redact)
        #: The command running, whose raw block the debug log may have to hide.
        self._invocation: Invocation | None = None
        #: Short lines already parsed: the invocation, and once bound the values.
        self._memo: dict[bytes, tuple[Invocation, tuple[Any, ...] | None]] = {}
        self.engine = AtEngine(dialect.framing)
        self.state = dialect.new_state()
        if state_directory is None and os.environ.get("STATE_DIRECTORY"):
            state_directory = Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        self.store = PortStore(
            state_directory / f"{config.name}.json" if state_directory else None, self.log)
        self.uart = Uart(config.device, self.boot_uart_settings, self, self.log)
        #: Run once the current command's result has left for the MCU.
        self._after_reply: list[Callable[[], None]] = []
        self._running: asyncio.Task[None] | None = None
        self._events: deque[Event] = deque()
        self._handling = False
        #: Set while the emulated module boots: input is dropped, the banner waits.
        self._boot_timer: asyncio.TimerHandle | None = None
        self._flush_pending = False
        #: The next boot's silence, when a command chose it (ESP-AT AT+GSLP).
        self._next_boot_time: float | None = None
        self._raw: RawStream | None = None
        self._restart_requested = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._nothing_held = asyncio.Event()
        self._nothing_held.set()
        self._shutdowns: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.commands_run = 0
        self.bytes_in = self.bytes_out = 0
        #: Called with ("in" | "out", bytes) for everything on the UART (gatewayd trace).
        self.tracers: set[Callable[[str, bytes], None]] = set()
        #: Called when any link of the port changes state (the daemon sets it).
        self.on_links_changed: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        """Open the UART, write the banner, publish the pty symlink."""
        await self.uart.open()
        self.uart.publish()
        self.log.info("port ready", device=self.config.device, pty=self.uart.pty_path)

    async def stop(self) -> None:
        """Cancel the running command, close every link, flush, close the UART."""
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running
        for task in list(self._background):
            task.cancel()
        self._cancel_boot()
        await self.dialect.shutdown(self.state, going_away=True)
        await self.uart.drain(timeout=1.0)
        await self.uart.close()
        self.log.info("port closed")

    # -- UartConsumer ----------------------------------------------------

    def uart_opened(self) -> None:
        # A (re)opened device starts clean: nothing is running, nothing held,
        # and a write pause of the lost device no longer applies.
        if self._raw is not None:
            self._raw.finish()
        self.engine.reset()
        self._events.clear()
        self._writable.set()
        self._nothing_held.set()
        self._boot()

    def uart_data(self, data: bytes) -> None:
        self.bytes_in += len(data)
        for tracer in self.tracers:
            tracer("in", data)
        if self.booting:
            self.log.debug("at input dropped while booting", length=len(data),
                           data=preview(data))
            return
        if self._raw is not None and self._raw.abort is not None:
            self._raw.watch_for_abort(data)
        self._handle(self.engine.receive_data(data))
        self._flush()

    def uart_lost(self, exc: BaseException | None) -> None:
        self._cancel_boot()
        if self._running is not None:
            self._running.cancel()

    def uart_pause_writing(self) -> None:
        # An MCU that stops reading stops being read: every reply (echo too)
        # waits in a buffer of bounded size instead of growing without end.
        self._writable.clear()
        self.uart.pause_reading(True, reason="write")

    def uart_resume_writing(self) -> None:
        self._writable.set()
        self.uart.pause_reading(False, reason="write")

    # -- engine events ---------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        """Act on engine events in order. Events that acting produces (the next
        queued line once a command finishes at once) join the same queue, so a
        burst of a thousand bad lines is a loop, never a recursion."""
        self._events.extend(events)
        if self._handling:
            return
        self._handling = True
        try:
            while self._events:
                if self.booting:  # a forced restart: what followed it is lost
                    self.log.debug("at input dropped while booting", events=len(self._events))
                    self._events.clear()
                    return
                self._act(self._events.popleft())
        finally:
            self._handling = False

    def _act(self, event: Event) -> None:
        if isinstance(event, Command):
            self._dispatch(event)
        elif isinstance(event, RawData):
            if self._debug:
                setter = self._invocation.spec.set if self._invocation is not None else None
                secret = setter.raw_secret if setter is not None else False
                self.log.debug("at raw in", length=len(event.data),
                               data=preview(mask(event.data, secret)))
            if self._raw is not None:
                self._raw.put(event.data, final=event.final)
        elif isinstance(event, Busy):
            if self._debug:
                self.log.debug("at busy", data=preview(event.data))
            self.engine.send(self.dialect.busy(self.state))
        elif isinstance(event, ForcedRestart):
            self.log.info("at forced restart")
            self.engine.send(self.dialect.forced_restart())
            if self._running is not None:
                self._running.cancel()
            self._restart()
        elif isinstance(event, LineTooLong):
            self._noisy.log(self.log, "warning", "at line too long", length=event.length,
                            limit=self.dialect.framing.max_line)
            self._finish(self.dialect.line_too_long(self.state))
        elif isinstance(event, Discarded):
            self._noisy.log(self.log, "warning", "at input discarded",
                            reason=event.reason, length=len(event.data))

    def _dispatch(self, command: Command) -> None:
        """Parse the line (or find it in the memo: a dialect's ``parse`` and
        ``bind`` depend on the line alone) and run the command as a task."""
        line = command.line
        short = len(line) <= MEMO_LINE
        known = self._memo.get(line) if short else None
        parsed, values = known if known is not None else (self.dialect.parse(line), None)
        if not isinstance(parsed, Unknown) and not self.dialect.available(parsed.spec,
                                                                          self.config):
            parsed = Unknown(command.line, "command group switched off")
        unknown = isinstance(parsed, Unknown)
        if unknown or self._debug:
            # As rebuilt from its fields, secrets hidden; an unknown line by its name.
            shown = preview(self.dialect.loggable(command.line, parsed))
            self.log.debug("at in", line=shown, truncated=command.truncated)
        if isinstance(parsed, Unknown):
            self._noisy.log(self.log, "info", "at unknown command", command=shown,
                            reason=parsed.reason)
            self._finish(self.dialect.unknown(parsed, self.state))
            return
        if short and known is None:
            self._remember(line, parsed, None)
        self._invocation = parsed
        self._running = asyncio.get_running_loop().create_task(
            self._run(parsed, line if short else None, values))

    async def _run(self, invocation: Invocation, line: bytes | None,
                   values: tuple[Any, ...] | None) -> None:
        """Run *invocation* (bound to *values* when the memo had them; *line*:
        where to remember them, ``None`` for a line too long to)."""
        spec, form = invocation.spec, invocation.form
        failure: AtError | None = None
        try:
            handler = spec.handler(form)
            if handler is None:
                raise AtError(1, why=f"AT{spec.name} has no {form.value} form")
            if isinstance(handler, Setter):
                if values is None:
                    values = self.dialect.bind(handler, invocation.args or b"")
                    if line is not None:
                        self._remember(line, invocation, values)
                result = await handler.run(self, *values)
            else:
                result = await handler(self)
        except AtError as exc:
            self._after_reply.clear()  # a failed command changes nothing
            self._noisy.log(self.log, "info", "at error", command=f"AT{spec.name}",
                            form=form.value, code=exc.code, reason=exc.why)
            final = self.dialect.error(exc, self.state)
            failure = exc
        except asyncio.CancelledError:
            self._running = None
            if self._raw is not None:
                self._raw.finish()
            raise
        except Exception:
            self.log.exception("handler crashed", command=f"AT{spec.name}")
            failure = AtError(1, why="internal error")
            final = self.dialect.error(failure, self.state)
        else:
            final = self.dialect.ok() if result is None else result
        final = self.dialect.final(final, invocation, failure, self.config)
        self.commands_run += 1
        await self._end_command(final)
        if self._after_reply:
            actions, self._after_reply = self._after_reply, []
            self.spawn(self._run_after_reply(actions))

    def _remember(self, line: bytes, invocation: Invocation,
                  values: tuple[Any, ...] | None) -> None:
        if len(self._memo) >= MEMO_LINES:
            self._memo.clear()
        self._memo[line] = (invocation, values)

    def run_unprompted(self, work: Callable[[Any], Awaitable[bytes | None]],
                       name: str) -> bool:
        """Run *work(ctx)* as a command of the module's own (no MCU line):
        input is busy meanwhile, *work* may read raw blocks, and the bytes it
        returns (``None``: nothing) end it. ``False`` when a command runs."""
        if self._running is not None or self.booting:
            return False
        try:
            self.engine.begin()
        except RuntimeError:
            return False
        self._running = asyncio.get_running_loop().create_task(
            self._run_unprompted(work, name))
        return True

    async def _run_unprompted(self, work: Callable[[Any], Awaitable[bytes | None]],
                              name: str) -> None:
        try:
            final = await work(self) or b""
        except AtError as exc:
            self.log.info("module task failed", task=name, reason=exc.why)
            final = b""
        except asyncio.CancelledError:
            self._running = None
            if self._raw is not None:
                self._raw.finish()
            raise
        except Exception:
            self.log.exception("module task crashed", task=name)
            final = b""
        await self._end_command(final)

    async def _end_command(self, final: bytes) -> None:
        """Write the running command's *final* result; the UART reads commands again."""
        if self.engine.raw_remaining and self._raw is not None:
            # The handler gave up mid-block: the MCU is still sending it, so
            # its bytes are read and dropped before the result, never run.
            await self._raw.discard_rest()
        self._running = None
        if self._raw is not None:
            self._raw.finish()
        self._finish(final)
        self._flush()

    async def _run_after_reply(self, actions: list[Callable[[], None]]) -> None:
        await self.uart.drain(timeout=2.0)
        for action in actions:
            action()

    def _finish(self, final: bytes) -> None:
        events = self.engine.finish(final)
        self._nothing_held.set()
        if self._restart_requested:
            self._restart()
            events = []
        self._handle(events)

    def _restart(self) -> None:
        """Reboot the emulated module: links close, state resets, banner."""
        self._restart_requested = False
        old_state = self.state
        self._shutdowns.add(task := asyncio.get_running_loop().create_task(
            self.dialect.shutdown(old_state)))
        task.add_done_callback(self._shutdowns.discard)
        self.engine.reset()
        self._events.clear()
        self._nothing_held.set()
        self.state = self.dialect.new_state()
        self.log.info("module restarted")
        self._boot()

    # -- booting ---------------------------------------------------------

    @property
    def boot_time(self) -> float:
        """Seconds of silence before the banner: the port's ``boot_time``,
        else the dialect's."""
        configured = self.config.boot_time
        return self.dialect.boot_time if configured is None else configured

    @property
    def booting(self) -> bool:
        return self._boot_timer is not None

    def _boot(self) -> None:
        """Write what is already queued (the OK of AT+RST), then stay silent and
        deaf for :attr:`boot_time` before the banner, as a rebooting module."""
        self._flush()
        self._cancel_boot()
        silence, self._next_boot_time = self._next_boot_time, None
        if silence is None:
            silence = self.boot_time
        if silence <= 0:
            self._booted()
            return
        self._boot_timer = asyncio.get_running_loop().call_later(silence, self._booted)

    def _booted(self) -> None:
        self._boot_timer = None
        # The module boots at its stored line settings (AT+UART_DEF).
        if self.uart.settings != self.boot_uart_settings:
            self.uart.reconfigure(self.boot_uart_settings)
            self.log.info("uart settings at boot", **_settings_fields(self.uart.settings))
        self.engine.send(self.dialect.banner)
        self._flush()
        for hook in self.dialect.boot_hooks:
            hook(self)

    # -- line settings ---------------------------------------------------

    @property
    def boot_uart_settings(self) -> UartSettings:
        """What the module boots with: the stored default, else the config's."""
        stored = self.store.get("uart")
        if isinstance(stored, dict):
            with contextlib.suppress(TypeError, ValueError):
                return UartSettings(**stored)
        return self.config.line

    @property
    def uart_settings(self) -> UartSettings:
        return self.uart.settings

    def set_uart(self, settings: UartSettings, *, store: bool = False,
                 before_reply: bool = False) -> None:
        """Switch the line to *settings*: once the command's result has left
        (ESP-AT: OK at the old rate), or, with *before_reply*, at once (Ameba:
        OK at the new rate). *store* keeps them as the boot default."""
        if store:
            self.store.set("uart", _settings_fields(settings))

        def switch() -> None:
            self.uart.reconfigure(settings)
            self.log.info("uart settings changed", **_settings_fields(settings))

        if before_reply:
            switch()
        else:
            self._after_reply.append(switch)

    def _cancel_boot(self) -> None:
        if self._boot_timer is not None:
            self._boot_timer.cancel()
            self._boot_timer = None

    def _flush_soon(self) -> None:
        """Flush at the end of this turn of the event loop: what handlers and
        links write in one turn (``Recv``/``SEND OK``, the ``+IPD`` messages
        of one socket read) goes to the UART in one write."""
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        data = self.engine.data_to_send()
        if data:
            self._log_out(data)
            self.bytes_out += len(data)
            for tracer in self.tracers:
                tracer("out", data)
            self.uart.write(data)

    def _log_out(self, data: bytes) -> None:
        """``at out`` at debug: whole lines, redacted, held while the MCU is
        typing one (ESP-AT's echo comes a byte at a time from a slow MCU)."""
        if not self._debug:
            return
        shown = self._out_log.feed(data)
        if not self.engine.typing:
            shown += self._out_log.flush(end=True)
        if shown:
            self.log.debug("at out", data=preview(shown))

    # -- RawHost (what raw blocks use) -----------------------------------

    def pause_reading(self, paused: bool) -> None:
        self.uart.pause_reading(paused, reason="raw")

    def abort_raw(self) -> bytes:
        return self.engine.abort_raw()

    def raw_finished(self, stream: RawStream) -> None:
        if self._raw is stream:
            self._raw = None

    # -- PortContext (what handlers use) ---------------------------------

    def write(self, data: bytes) -> None:
        """Part of the running command's response; it leaves with whatever else
        this turn of the event loop writes (one UART write, not several)."""
        self.engine.send(data)
        self._flush_soon()

    async def read_raw(self, length: int, prompt: bytes, *,
                       abort: bytes | ChunkAbort | None = None) -> bytes:
        """The whole raw block; with *abort*, :class:`RawAborted` carries what arrived."""
        pieces: list[bytes] = []
        try:
            async for piece in self.read_raw_stream(length, prompt, abort=abort):
                pieces.append(piece)
        except RawAborted as exc:
            exc.data = b"".join(pieces)
            raise
        return b"".join(pieces)

    def read_raw_stream(self, length: int, prompt: bytes, *, chunk: int | None = None,
                        abort: bytes | ChunkAbort | None = None,
                        watermarks: Watermarks | None = None,
                        eager: bool = False) -> RawStream:
        """Write *prompt* and yield the *length* raw bytes that follow, in
        pieces of *chunk* bytes (default: one piece; *eager*: whatever each
        UART transfer brought). See :class:`RawStream`."""
        stream = RawStream(self, length, chunk, abort, watermarks)
        self._raw = stream
        self.engine.expect_raw(length, prompt, chunk, eager=eager)
        self._flush()
        return stream

    async def writable(self) -> None:
        """Wait until the UART's write buffer is below its low-water mark."""
        await self._writable.wait()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run *coro* beside the command (e.g. a close that ends after OK);
        cancelled when the port stops."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def restart_after_reply(self, boot_time: float | None = None) -> None:
        """Restart once the result has left; silent for *boot_time* s (default:
        the port's :attr:`boot_time`) before the banner."""
        self._restart_requested = True
        self._next_boot_time = boot_time

    def set_echo(self, on: bool) -> None:
        self.engine.echo = on

    def link_changed(self, link: Any) -> None:
        """A link opened, dropped or closed (keeps systemd's STATUS= current)."""
        if self.on_links_changed is not None:
            self.on_links_changed()

    def describe(self) -> PortDescription:
        """What ``gatewayd status`` and the metrics show of this port."""
        return PortDescription(
            name=self.config.name, dialect=self.dialect.name, device=self.config.device,
            pty=self.uart.pty_path, uart_open=self.uart.opened.is_set(),
            bytes_in=self.bytes_in, bytes_out=self.bytes_out, commands=self.commands_run,
            links=tuple(link.describe() for link in self.dialect.links(self.state)))

    # -- for links -------------------------------------------------------

    def unsolicited(self, message: bytes) -> None:
        """Send a message the MCU did not ask for, never inside a response."""
        self.engine.unsolicited(message)
        if self.engine.unsolicited_pending:
            self._nothing_held.clear()
        self._flush_soon()

    async def deliver(self, message: bytes) -> None:
        """Like :meth:`unsolicited`, but first wait until the UART has room and
        the engine holds less than :data:`UNSOLICITED_LIMIT` bytes: links
        await this before reading more from the network (backpressure)."""
        while not self._writable.is_set() or self.engine.unsolicited_pending > UNSOLICITED_LIMIT:
            await self._writable.wait()
            if self.engine.unsolicited_pending > UNSOLICITED_LIMIT:
                await self._nothing_held.wait()
        self.unsolicited(message)


def _settings_fields(settings: UartSettings) -> dict[str, Any]:
    return {"baudrate": settings.baudrate, "bytesize": settings.bytesize,
            "parity": settings.parity, "stopbits": settings.stopbits,
            "rtscts": settings.rtscts}
