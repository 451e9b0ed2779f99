"""Structured logging with structlog.

Output: readable console lines on a terminal, JSON lines otherwise, and
native journald fields (``PORT``, ``LINK``, ``DIALECT``, …) when running under
systemd with systemd-python importable. Every event passes
:func:`redact_secrets` first: values of secret-looking keys, the values of
``Authorization``/``Cookie`` headers inside any string, the password of
``AT+CWJAP`` and the auth of ``AT+WSOPEN`` (in command lines and in their
echo), Ameba's ``pw,<value>`` (AT+WLCONN, AT+WLSTARTAP) and the AT+WLSTATE
``PASSWORD => <value>`` line, and the password of ``user:password@`` in URIs
become ``<redacted>``. :func:`redact_text` applies the same to one string.
These patterns are the last line: command lines reach the logs and
``gatewayd trace`` already rebuilt by their dialect with the secret
parameters of its command table hidden (``Dialect.loggable``,
``gatewayd.session.redact``), which no spelling of a line defeats.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["RateLimit", "configure_logging", "get_logger", "redact_secrets", "redact_text"]

REDACTED = "<redacted>"
_SECRET_KEYS = re.compile(r"(?i)^(password|passwd|pwd|auth|authorization|cookie|token|secret|"
                          r"private_key|api_key)$")
#: Header values, and the ``PASSWORD => `` line of Ameba's AT+WLSTATE.
_SECRET_HEADERS = re.compile(r"(?i)\b((?:proxy-)?authorization|cookie|set-cookie|x-api-key"
                             r"|password(?= *=>))(\s*(?::|=>)\s*)[^\r\n\\]*")
_QUOTED = r'"(?:[^"\\]|\\.)*"'
#: AT parameters that carry credentials: the password of AT+CWJAP, the auth
#: of AT+WSOPEN (its fifth parameter) and Ameba's ``pw,`` value, in lines and
#: in their echo.
_SECRET_PARAMS = re.compile(
    rf"(?i)(AT\+CWJAP=(?:{_QUOTED})?,|AT\+WSOPEN=[^,]*,{_QUOTED},[^,]*,[^,]*,"
    rf"|AT\+WL(?:CONN|STARTAP)=(?:[^\r\n]*?,)?pw,)({_QUOTED}|[^,\r\n\\]+)")
#: user:password@ in URIs, up to the authority's last ``@`` (a raw ``@`` in
#: the password, as ``ws://u:p@ss@host`` is parsed).
_USERINFO = re.compile(r"(://[^/:@\s\"]*:)[^/?#\s\"]*@")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def redact_text(text: str) -> str:
    """*text* with header values, AT credentials and URI passwords replaced
    by ``<redacted>`` (what every log event gets)."""
    if ":" in text or "=" in text:
        text = _SECRET_HEADERS.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        text = _SECRET_PARAMS.sub(lambda m: m.group(1) + REDACTED, text)
        text = _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)
    return text


def _scrub(value: Any) -> Any:
    return redact_text(value) if isinstance(value, str) else value


def redact_secrets(_logger: Any, _method: str,
                   event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: hide secrets in keys and header-like text."""
    for key, value in event.items():
        if _SECRET_KEYS.match(key) and value not in (None, ""):
            event[key] = REDACTED
        else:
            event[key] = _scrub(value)
    return event


def _journal_renderer() -> Any | None:
    if "JOURNAL_STREAM" not in os.environ and "INVOCATION_ID" not in os.environ:
        return None
    try:
        from systemd import journal
    except ImportError:
        return None
    priorities = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}

    def send(_logger: Any, method: str, event: dict[str, Any]) -> str:
        message = event.pop("event", "")
        level = event.pop("level", method)
        event.pop("timestamp", None)
        fields = {k.upper(): str(v) for k, v in event.items()}
        journal.send(f"{message}", PRIORITY=priorities.get(level, 6),
                     SYSLOG_IDENTIFIER="gatewayd", **fields)
        raise structlog.DropEvent

    return send


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog for the process. ``fmt``: auto, console or json."""
    stream = stream or sys.stderr
    renderer: Any
    journal = _journal_renderer() if fmt == "auto" else None
    if journal is not None:
        renderer = journal
    elif fmt == "console" or (fmt == "auto" and stream.isatty()):
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    return structlog.get_logger("gatewayd").bind(**context)


class RateLimit:
    """At most *burst* events of one kind per *window* seconds; the rest are
    counted, and the next event let through carries ``suppressed=<count>``.

    For events a peer or the MCU can cause at will (unknown commands, overlong
    lines): a flood costs a few lines per window, never a disk. Memory is one
    small entry per kind of event. *clock* is ``time.monotonic`` unless given.
    """

    def __init__(self, burst: int = 10, window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.window = window
        self._clock = clock
        self._kinds: dict[str, list[float | int]] = {}  # kind: [window start, seen, suppressed]

    def allow(self, kind: str) -> int | None:
        """None: drop this event. Otherwise log it, with the returned number of
        events of this kind suppressed since the last one logged (0 for none)."""
        now = self._clock()
        entry = self._kinds.get(kind)
        if entry is None or now - entry[0] >= self.window:
            suppressed = int(entry[2]) if entry is not None else 0
            self._kinds[kind] = [now, 1, 0]
            return suppressed
        if entry[1] < self.burst:
            entry[1] += 1
            return 0
        entry[2] += 1
        return None

    def log(self, logger: Any, level: str, event: str, **fields: Any) -> None:
        """``logger.<level>(event, **fields)`` if :meth:`allow` lets it through."""
        suppressed = self.allow(event)
        if suppressed is None:
            return
        if suppressed:
            fields["suppressed"] = suppressed
        getattr(logger, level)(event, **fields)
