"""Running out of file descriptors (EMFILE, ENFILE) without going deaf.

A flood of connections can take every descriptor the process may open. Then
asyncio cannot accept: it reports ``socket.accept() out of system resource``
to the loop's exception handler and tries that listener again 1 s later, and
the peers it could not accept wait in the backlog. :class:`FdReserve` keeps
:data:`RESERVE` descriptors open on ``/dev/null`` and is that handler. For
each report it gives one descriptor back to the kernel, and with it:

- the control socket (:meth:`FdReserve.keep`) accepts its client and serves
  it, so ``gatewayd status`` answers however many descriptors a flood holds;
- any other listener accepts every waiting connection and closes it at once,
  so its peers see a close rather than a hang;

then takes it back (or, when the control client holds it, once that client is
done). Reports are logged rate-limited (``out of file descriptors``, with
``suppressed=<count>``). Other errors go to asyncio's default handler.

Limits: the descriptors a flood can hold are bounded by the listeners
(:data:`~gatewayd.transport.sockopts.MAX_HANDSHAKES` handshakes each, plus
the links the MCU admits); the systemd unit's ``LimitNOFILE=`` sets the
ceiling. While it holds them, what the MCU asks for that needs a descriptor
(a link, a listener, reading ``/proc/net/route``) fails as on a module out of
sockets; the UART stays open and keeps answering. A control client served from
the reserve that never finishes is dropped by the control server's own 5 s
read deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from gatewayd.logs import RateLimit

__all__ = ["RESERVE", "FdReserve"]

#: Descriptors held back for the moments the process has none left.
RESERVE = 2
_OUT_OF_FDS = "socket.accept() out of system resource"

Serve = Callable[[socket.socket], Awaitable[None]]


class FdReserve:
    """Spare descriptors, and the loop's handler that spends them (see above)."""

    def __init__(self, log: Any, count: int = RESERVE) -> None:
        self.log = log
        self.count = count
        self._spares: list[int] = []
        self._keep: dict[int, Serve] = {}
        self._noisy = RateLimit()
        self._tasks: set[asyncio.Task[None]] = set()
        self.shed = 0  #: connections accepted and closed at once, in all
        self.refill()

    def refill(self) -> None:
        """Open spares up to :attr:`count` (as many as the process may)."""
        with contextlib.suppress(OSError):
            while len(self._spares) < self.count:
                self._spares.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))

    def close(self) -> None:
        while self._spares:
            os.close(self._spares.pop())

    def keep(self, sock: socket.socket, serve: Serve) -> None:
        """On descriptor exhaustion, accept *sock*'s clients and ``serve`` each."""
        self._keep[sock.fileno()] = serve

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(self.handle)

    @contextlib.contextmanager
    def _one_free(self) -> Iterator[None]:
        if self._spares:
            os.close(self._spares.pop())
        try:
            yield
        finally:
            self.refill()

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        sock = context.get("socket")
        if context.get("message") != _OUT_OF_FDS or sock is None:
            loop.default_exception_handler(context)
            return
        serve = self._keep.get(sock.fileno())
        self._noisy.log(self.log, "warning", "out of file descriptors",
                        listener=str(sock.getsockname()), error=str(context.get("exception")),
                        spares=len(self._spares), shed=self.shed)
        # asyncio hides the listening socket; a second object on its descriptor
        # accepts, and is detached so that the descriptor stays the listener's.
        listener = socket.socket(fileno=sock.fileno())
        try:
            with self._one_free():
                while True:
                    try:
                        conn, _ = listener.accept()
                    except OSError as exc:  # nothing waits, or still no descriptor
                        if exc.errno not in (errno.EAGAIN, errno.EMFILE, errno.ENFILE):
                            raise
                        return
                    if serve is not None:
                        self._serve(serve, conn)
                        return
                    conn.close()
                    self.shed += 1
        finally:
            listener.detach()

    def _serve(self, serve: Serve, conn: socket.socket) -> None:
        async def run() -> None:
            try:
                await serve(conn)
            finally:
                conn.close()
                self.refill()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
