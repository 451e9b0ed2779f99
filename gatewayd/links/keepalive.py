"""Keepalive for one live connection, client or server: the ping/pong
deadline and the idle timeout.

:class:`Keepalive` is a timer loop, not polling: it sleeps until the next
ping or deadline is due, and wakes early when its settings change
(:meth:`Keepalive.wake`) or a pong arrives. What "send a ping" and "drop the
link" mean is the owner's business (callbacks), so a WebSocket client link
(:class:`gatewayd.links.client.ClientLink`) and a client of the WebSocket
server share one set of rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Expiry", "Keepalive", "PingPolicy"]


@dataclass(frozen=True, slots=True)
class PingPolicy:
    """Send a ping after ``interval`` s without receiving anything (or, with
    ``periodic``, every ``interval`` s regardless); drop the link when no pong
    arrives within ``timeout`` s of the oldest unanswered ping."""

    interval: float
    timeout: float
    periodic: bool = False


class Expiry(enum.Enum):
    """Why a keepalive gave up on its connection."""

    NO_PONG = "no pong in time"
    IDLE = "idle timeout"


class Keepalive:
    """The keepalive of one connection.

    *policy* and *idle_timeout* are read afresh every round, so a settings
    command applies at once (call :meth:`wake`). *idle_timeout* (s, 0 = off)
    counts from the last payload either way (:meth:`received`, :meth:`sent`).
    *expire* is awaited once, when a deadline passes; :meth:`run` then returns.
    """

    def __init__(self, policy: Callable[[], PingPolicy], *,
                 send_ping: Callable[[], Awaitable[None]],
                 expire: Callable[[Expiry], Awaitable[None]],
                 alive: Callable[[], bool], log: Any,
                 idle_timeout: Callable[[], float] | None = None) -> None:
        self._policy = policy
        self._send_ping = send_ping
        self._expire = expire
        self._alive = alive
        self._idle_timeout = idle_timeout
        self._log = log
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._last_rx = now  # payload or pong received
        self._last_activity = now  # payload received or sent
        self._last_ping = now
        self._unanswered_since: float | None = None
        self._woken = asyncio.Event()

    @property
    def awaiting_pong(self) -> bool:
        return self._unanswered_since is not None

    def received(self) -> None:
        """A payload arrived."""
        self._last_rx = self._last_activity = self._loop.time()

    def sent(self) -> None:
        """A payload went out."""
        self._last_activity = self._loop.time()

    def pong(self) -> None:
        self._last_rx = self._loop.time()
        self._unanswered_since = None
        self.wake()

    def wake(self) -> None:
        """Recompute the deadlines now (the settings changed)."""
        self._woken.set()

    async def run(self) -> None:
        while self._alive():
            ping = self._policy()
            idle = self._idle_timeout() if self._idle_timeout is not None else 0
            now = self._loop.time()
            idle_due = self._last_activity + idle if idle else None
            if idle_due is not None and now >= idle_due:
                await self._expire(Expiry.IDLE)
                return
            if self._unanswered_since is not None \
                    and now >= self._unanswered_since + ping.timeout:
                await self._expire(Expiry.NO_PONG)
                return
            ping_due: float | None = None
            if ping.periodic or self._unanswered_since is None:
                since = self._last_ping if ping.periodic else self._last_rx
                ping_due = since + ping.interval
                if now >= ping_due:
                    self._last_ping = now
                    if self._unanswered_since is None:
                        self._unanswered_since = now
                    # A peer that stops reading must not stall the deadline:
                    # the ping may wait for buffer room only until then.
                    try:
                        async with asyncio.timeout_at(self._unanswered_since + ping.timeout):
                            await self._send_ping()
                    except TimeoutError:
                        continue  # the deadline check above ends the link
                    except Exception as exc:  # a failed ping means a dead link: no pong
                        self._log.info("ping failed", error=repr(exc))
                    ping_due = now + ping.interval
            dues = [due for due in (ping_due, idle_due) if due is not None]
            if self._unanswered_since is not None:
                dues.append(self._unanswered_since + ping.timeout)
            self._woken.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), max(0.0, min(dues) - self._loop.time()))
