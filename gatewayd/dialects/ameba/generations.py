"""Ameba firmware generations: the ATCMD 2.x bytes (the default) and the
Gen-1 reply forms, a per-port compatibility profile (``ameba_generation``).

``shared/reference/ameba-wifi-network.md`` §0 names three generations: Gen-1
("ATCMD v1", SDK v1.0, May-Oct 2024), 2.x-a and 2.x-b (byte-identical for
the commands emulated). The command modules write 2.x bytes; this module is
the one place that turns them into Gen-1's, for the port whose
``ameba_generation`` is ``gen1``:

- :data:`GEN1_RESULTS`: per command, the Gen-1 final lines
  (``\\r\\n+WLCONN:OK\\r\\n``, ``\\r\\n+WLCONN:ERROR:%d\\r\\n``, no space) and
  Gen-1's own error numbers where they differ. The dialect's result writer
  (:meth:`AmebaDialect.final`) applies it; a command not listed keeps its 2.x
  final line.
- :data:`GEN1_EVENTS`: the 2.x ``[$]`` event messages of the Wi-Fi and
  network area and their Gen-1 form: none, Gen-1 had no ``[$]`` messages at
  all. :func:`event` is the writer the Wi-Fi and network modules send their
  events through.
- :data:`GEN1_ONLY` / :data:`NOT_IN_GEN1`: commands only one generation has
  (AT+IPDOMAIN was Gen-1's AT+DNS).

Rows marked *rule* are not spelled out for that command in the reference;
they follow its general Gen-1 rule, "``+CMD:OK`` replies, no URCs" (§8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gatewayd.dialects.base import AtError, PortContext

if TYPE_CHECKING:
    from gatewayd.config import PortConfig

__all__ = ["GEN1", "GEN1_EVENTS", "GEN1_ONLY", "GEN1_RESULTS", "GEN2", "NOT_IN_GEN1",
           "NO_SSID", "Gen1Result", "event", "gen1_event", "gen1_final", "is_gen1"]

GEN2 = "2.x"
GEN1 = "gen1"

OK = b"\r\nOK\r\n"

#: AT+WLCONN's "neither ssid nor bssid": ``ERROR: 1`` in 2.x, as for no
#: parameters at all, but Gen-1's own number 3 ("no SSID").
NO_SSID = "neither ssid nor bssid"


@dataclass(frozen=True)
class Gen1Result:
    """How one command ends in Gen-1."""

    ok: bytes  #: replaces ``\\r\\nOK\\r\\n``
    error: bytes  #: replaces ``\\r\\nERROR: <n>\\r\\n``; ``%d`` is the number
    #: 2.x error number -> Gen-1's (a number not listed is kept).
    codes: Mapping[int, int] = field(default_factory=dict)
    #: Where one 2.x number stands for several Gen-1 ones: the
    #: :attr:`AtError.why` of the case -> Gen-1's number (checked first).
    reasons: Mapping[str, int] = field(default_factory=dict)


def _form(command: str, codes: Mapping[int, int] | None = None,
          reasons: Mapping[str, int] | None = None) -> Gen1Result:
    name = command.encode()
    return Gen1Result(b"\r\n" + name + b":OK\r\n", b"\r\n" + name + b":ERROR:%d\r\n",
                      codes or {}, reasons or {})


#: Command -> its Gen-1 final lines (reference ameba-wifi-network.md §3-§5).
GEN1_RESULTS: Mapping[str, Gen1Result] = {
    # §3: "+WLCONN:OK / +WLCONN:ERROR:%d with its own numbers (1 param count/none,
    # 2 bad value, 3 no SSID or malloc, 4 connect failed, 5 wifi on failed)".
    "+WLCONN": _form("+WLCONN", codes={1: 1, 2: 2, 3: 1, 4: 3, 17: 4},
                     reasons={NO_SSID: 3}),
    "+WLDISCONN": _form("+WLDISCONN"),  # rule
    "+WLSTATE": _form("+WLSTATE"),  # §3
    "+WLRSSI": _form("+WLRSSI"),  # §3
    "+WLSTATICIP": _form("+WLSTATICIP"),  # rule
    "+WLPS": _form("+WLPS"),  # rule
    "+PING": _form("+PING"),  # §4
    # §4: "+IPDOMAIN:ERROR:1 (no/extra fields), …ERROR:2 (not resolved)".
    "+IPDOMAIN": _form("+IPDOMAIN"),
    "+RST": _form("+RST"),  # §5
    "+STATE": _form("+STATE"),  # §5
    "+CPULOAD": _form("+CPULOAD"),  # §5
}

#: 2.x event message (its leading bytes) -> its Gen-1 form; None: not sent.
#: Reference §2, "All produced by at_printf_indicate … 2.x only", and §0,
#: Gen-1: "no [$] URCs at all".
GEN1_EVENTS: Mapping[bytes, bytes | None] = {
    b"[$]wifi connected\r\n": None,
    b"[$]wifi connect failed\r\n": None,
    b"[$]wifi disconnected\r\n": None,
    b"[$]wifi got ip:": None,
    b"[$]wifi got ip timeout\r\n": None,
    b"[$]wifi reconnecting\r\n": None,
    b"[$]wifi reconnect done\r\n": None,
    b"[$][ping_test] ": None,
}

#: Commands only Gen-1 has, and 2.x commands Gen-1 answers as unknown.
GEN1_ONLY = frozenset({"+IPDOMAIN"})
NOT_IN_GEN1 = frozenset({"+DNS"})


def is_gen1(config: PortConfig) -> bool:
    return config.ameba_generation == GEN1


def gen1_final(command: str, final: bytes, exc: AtError | None) -> bytes:
    """*command*'s 2.x final line *final* in its Gen-1 form."""
    form = GEN1_RESULTS.get(command)
    if form is None:
        return final
    if exc is None:
        return form.ok if final == OK else final
    code = exc.code if exc.code is not None else 1
    code = form.reasons.get(exc.why, form.codes.get(code, code))
    return form.error % code


def gen1_event(message: bytes) -> bytes | None:
    """*message*'s Gen-1 form (None: Gen-1 sends nothing); a message not in
    :data:`GEN1_EVENTS` is kept."""
    for head, replacement in GEN1_EVENTS.items():
        if message.startswith(head):
            return replacement
    return message


def event(ctx: PortContext, message: bytes, *, inline: bool = False) -> None:
    """Send a Wi-Fi or network event message: within the running command's
    reply when *inline* (AT+WLCONN's ``wifi connected``), else unsolicited;
    in the port's generation's form."""
    if is_gen1(ctx.config):
        converted = gen1_event(message)
        if converted is None:
            ctx.log.debug("event not sent: Gen-1 has no [$] messages",
                          message=message.decode("latin-1").strip())
            return
        message = converted
    (ctx.write if inline else ctx.unsolicited)(message)
