"""Which event loop the daemon runs on: asyncio's own, or uvloop.

uvloop (libuv, in C) runs the same asyncio code with a fraction of the
per-callback and per-transport cost: on the benchmark's 64-byte round trips it
takes roughly a third of gatewayd's user CPU away (``bench/ws_echo.py
--loop``). It is an optional extra (``pip install 'gatewayd[uvloop]'``), since
not every board has a wheel for it. ``[daemon] event_loop`` chooses:

* ``auto`` (default): uvloop when it is installed, else asyncio's loop;
* ``asyncio``: asyncio's loop even when uvloop is installed;
* ``uvloop``: uvloop, and the daemon refuses to start without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["EventLoopUnavailable", "loop_factory", "running_loop_name"]


class EventLoopUnavailable(Exception):
    """``event_loop = "uvloop"`` and uvloop cannot be imported."""


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``asyncio.Runner`` that *choice* names (``None``:
    asyncio's default loop)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        if choice == "uvloop":
            raise EventLoopUnavailable(
                f"event_loop = \"uvloop\" but uvloop cannot be imported ({exc}); "
                "install gatewayd[uvloop] or choose \"auto\"") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: what the running loop is."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.partition(".")[0] == "uvloop" else "asyncio"
