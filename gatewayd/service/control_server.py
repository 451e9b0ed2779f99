"""The control socket: what ``gatewayd status`` and ``gatewayd trace`` talk to.

A unix stream socket, mode 0660 (the daemon's user and group only) from the
moment it exists, whatever the umask: it is bound in a private folder beside
its path and renamed into place (:func:`bind_private`). A client sends one
JSON line and gets JSON lines back:

* ``{"command": "status"}`` → one line: ``{"ports": [port, …]}`` as
  :meth:`gatewayd.session.port.PortSession.describe` gives them.
* ``{"command": "trace", "port": NAME}`` → ``{"tracing": NAME}``, then
  ``{"t": unix time, "port": NAME, "dir": "in"|"out", "data": base64}`` lines
  until the client disconnects: the UART's bytes with Wi-Fi passwords,
  header values and URI passwords redacted, a line at a time
  (:mod:`gatewayd.session.redact`); the MCU's unfinished line (a raw block)
  is shown after :data:`~gatewayd.session.redact.TRACE_QUIET` s of silence
  or as soon as a whole line goes to the MCU. With ``"raw": true``: one line per UART
  chunk, unredacted, and only for a client running as the daemon's user or
  root (its peer credentials); anyone else in the socket's group gets an
  error. A trace client that cannot keep up is dropped once
  :data:`TRACE_BACKLOG` bytes wait for it, so tracing never slows the MCU
  down.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from gatewayd.config import Config
from gatewayd.session.redact import TRACE_QUIET, StreamRedactor

__all__ = ["ControlServer", "bind_private", "control_socket_path", "may_trace_raw"]

TRACE_BACKLOG = 1024 * 1024
#: Where the systemd unit's RuntimeDirectory puts the socket.
SYSTEMD_SOCKET = Path("/run/gatewayd/gatewayd.sock")


def control_socket_path(config: Config, environ: dict[str, str] | None = None) -> Path | None:
    """The socket the daemon listens on: ``control.socket``, else
    ``$RUNTIME_DIRECTORY/gatewayd.sock`` under systemd, else none."""
    env = os.environ if environ is None else environ
    if config.control.socket is not None:
        return config.control.socket
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / "gatewayd.sock" if runtime else None


def bind_private(path: Path, mode: int = 0o660) -> socket.socket:
    """A unix stream socket bound at *path* with *mode* from the moment it is
    there: bound and chmod-ed inside a fresh 0700 folder in *path*'s folder,
    then renamed onto *path* (atomic; a stale socket there is replaced). A
    *path* that exists and is not a socket is refused (FileExistsError)."""
    if path.exists() and not path.is_socket():
        raise FileExistsError(f"{path} exists and is not a socket")
    folder = tempfile.mkdtemp(prefix=".gatewayd-", dir=path.parent)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        staged = os.path.join(folder, "sock")
        sock.bind(staged)
        os.chmod(staged, mode)
        os.rename(staged, path)
    except BaseException:
        sock.close()
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return sock


def may_trace_raw(peer_uid: int, own_uid: int | None = None) -> bool:
    """Unredacted trace is for the daemon's own user (default: this
    process's) and root, not for the rest of the socket's group."""
    return peer_uid in (0, os.geteuid() if own_uid is None else own_uid)


def _peer_uid(writer: asyncio.StreamWriter) -> int:
    sock = writer.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class ControlServer:
    def __init__(self, daemon: Any, path: Path, log: Any) -> None:
        self.daemon = daemon
        self.path = path
        self.log = log
        self._server: asyncio.AbstractServer | None = None
        self.socket: socket.socket | None = None  #: the listening socket, once started

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sock = self.socket = bind_private(self.path)  # replaces a socket left by a previous run
        try:
            self._server = await asyncio.start_unix_server(self._client, sock=sock)
        except BaseException:
            sock.close()
            self.path.unlink(missing_ok=True)
            raise
        self.log.info("control socket listening", path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def serve_accepted(self, conn: socket.socket) -> None:
        """Serve a client accepted outside asyncio (from the descriptor
        reserve, :mod:`gatewayd.service.fds`) as any other."""
        reader, writer = await asyncio.open_unix_connection(sock=conn)
        await self._client(reader, writer)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            request = json.loads(line or b"{}")
            command = request.get("command") if isinstance(request, dict) else None
            if command == "status":
                ports = [s.describe().as_dict() for s in self.daemon.sessions.values()]
                await self._send(writer, {"ports": ports})
            elif command == "trace":
                await self._trace(reader, writer, str(request.get("port", "")),
                                  raw=request.get("raw") is True)
            else:
                await self._send(writer, {"error": f"unknown command {command!r}"})
        except (TimeoutError, ValueError, ConnectionError) as exc:
            self.log.info("control client dropped", error=repr(exc))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()

    async def _trace(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     name: str, *, raw: bool) -> None:
        session = self.daemon.sessions.get(name)
        if session is None:
            known = ", ".join(self.daemon.sessions)
            await self._send(writer, {"error": f"no port {name!r} (ports: {known})"})
            return
        if raw and not may_trace_raw(_peer_uid(writer)):
            await self._send(writer, {"error": "a raw trace is for the daemon's user or root"})
            return
        gone = asyncio.Event()
        loop = asyncio.get_running_loop()
        redactors = {way: StreamRedactor(session.redact) for way in ("in", "out")}
        timers: dict[str, asyncio.TimerHandle] = {}

        def emit(direction: str, data: bytes) -> None:
            if not data:
                return
            if writer.transport.get_write_buffer_size() > TRACE_BACKLOG:
                gone.set()  # too slow a reader: stop rather than hold the MCU's bytes
                return
            event = {"t": time.time(), "port": name, "dir": direction,
                     "data": base64.b64encode(data).decode()}
            writer.write(json.dumps(event).encode() + b"\n")

        def quiet(direction: str, *, end: bool = False) -> None:
            timer = timers.pop(direction, None)
            if timer is not None:
                timer.cancel()
            emit(direction, redactors[direction].flush(end=end))

        def tracer(direction: str, data: bytes) -> None:
            if raw:
                emit(direction, data)
                return
            redactor = redactors[direction]
            shown = redactor.feed(data)
            if direction == "out" and b"\n" in shown and redactors["in"].holding:
                quiet("in", end=True)  # the module answered: the MCU's raw block is over
            emit(direction, shown)
            if direction in timers:
                timers.pop(direction).cancel()
            if redactor.holding:
                timers[direction] = loop.call_later(TRACE_QUIET, quiet, direction)

        session.tracers.add(tracer)
        await self._send(writer, {"tracing": name})
        try:
            eof = asyncio.ensure_future(reader.read())  # the client closing ends the trace
            stop = asyncio.ensure_future(gone.wait())
            await asyncio.wait({eof, stop}, return_when=asyncio.FIRST_COMPLETED)
            for task in (eof, stop):
                task.cancel()
        finally:
            session.tracers.discard(tracer)
            for timer in timers.values():
                timer.cancel()
