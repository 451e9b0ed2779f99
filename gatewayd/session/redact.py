"""A UART's byte streams with every secret redacted, a line at a time: what
``gatewayd trace`` shows of each direction, and what the port's ``at out``
debug lines hold of ESP-AT's echo and the replies.

Each line goes through :func:`port_redaction`: a command line as its
dialect rebuilds it with secret fields hidden
(:meth:`~gatewayd.dialects.base.Dialect.loggable`), then everything through
:func:`gatewayd.logs.redact_text`, the logs' own redaction (header values,
URI passwords).

Redaction needs whole lines: a password split over two UART reads (an MCU
writing byte by byte, ESP-AT echoing each byte) matches no pattern in
either half. So a :class:`StreamRedactor` hands out complete lines (up to the
last ``\\n``) as they arrive and holds a line's tail until it ends, or until
:meth:`~StreamRedactor.flush` (the control server calls it after
:data:`TRACE_QUIET` s without bytes: a ``>`` prompt, a raw block; the port,
whenever the MCU is not in the middle of typing a line). A line
flushed early stays held: when it goes on, its redaction is computed again
over the whole line and only what was not shown yet is handed out, so a
secret that begins before the flush is still hidden after it. Limits: a
line is held for at most :data:`MAX_LINE` bytes, then shown and forgotten;
a secret whose pattern only matches once complete (``user:password@``)
shows in part if the MCU pauses inside it for :data:`TRACE_QUIET` s.
"""

from __future__ import annotations

from collections.abc import Callable

from gatewayd.dialects.base import Dialect
from gatewayd.logs import redact_text

__all__ = ["MAX_LINE", "TRACE_QUIET", "StreamRedactor", "port_redaction"]

#: Longest line held for redaction (both dialects' lines are shorter).
MAX_LINE = 4096
#: Seconds without bytes after which a held line's tail is shown.
TRACE_QUIET = 0.2


Redaction = Callable[[bytes], bytes]


def _redact(data: bytes) -> bytes:
    return redact_text(data.decode("latin-1")).encode("latin-1")


def port_redaction(dialect: Dialect) -> Redaction:
    """Lines redacted for a port of *dialect*: each ``AT+`` line as
    :meth:`Dialect.loggable` shows it, then all of them through
    :func:`~gatewayd.logs.redact_text`. Other lines (``AT``, ``ATE0``,
    results, Ameba's ``ATCMD READY``) keep their words."""

    def redact(data: bytes) -> bytes:
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            if line[:3].upper() == b"AT+":
                end = b"\r" if line.endswith(b"\r") else b""
                lines[i] = dialect.loggable(line[: len(line) - len(end)]) + end
        return _redact(b"\n".join(lines))

    return redact


class StreamRedactor:
    """Sans-I/O: :meth:`feed` bytes, get back the redacted bytes to show.
    *redact* turns whole lines into what may be shown (default: only
    :func:`~gatewayd.logs.redact_text`; a port's is :func:`port_redaction`)."""

    def __init__(self, redact: Redaction = _redact) -> None:
        self._redact = redact
        self._line = b""  # the current line, from its start
        self._shown = b""  # its redaction as of the last flush
        self._flushed = 0  # its length then

    @property
    def holding(self) -> bool:
        """Bytes wait that :meth:`flush` would show."""
        return len(self._line) > self._flushed

    def feed(self, data: bytes) -> bytes:
        self._line += data
        end = self._line.rfind(b"\n") + 1
        out = b""
        if end:
            out = self._rest(self._line[:end])
            self._line, self._shown, self._flushed = self._line[end:], b"", 0
        return out + self.flush() if len(self._line) > MAX_LINE else out

    def flush(self, *, end: bool = False) -> bytes:
        """Show what is held of the current line. It stays held (see above)
        unless *end* (the line is known to be over: the module answered a
        raw block) or it is over :data:`MAX_LINE` bytes; then it is forgotten."""
        out = self._rest(self._line)
        self._shown, self._flushed = self._redact(self._line), len(self._line)
        if end or len(self._line) > MAX_LINE:
            self._line, self._shown, self._flushed = b"", b"", 0
        return out

    def _rest(self, line: bytes) -> bytes:
        """The redaction of *line* past what was shown of it."""
        redacted = self._redact(line)
        common = 0
        for shown, now in zip(self._shown, redacted, strict=False):
            if shown != now:
                break
            common += 1
        return redacted[common:]
