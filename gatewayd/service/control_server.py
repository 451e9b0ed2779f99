"""The control socket: what ``gatewayd status`` and ``gatewayd trace`` talk to.

A unix stream socket, mode 0660 (the daemon's user and group only) from the
moment it exists, whatever the umask: it is bound in a private folder beside
its path and renamed into place (:func:`bind_private`). A client sends one
JSON line and gets JSON lines back:

* ``{"command": "status"}`` → one line: ``{"ports": [port, …]}`` as
  :meth:`gatewayd.session.port.PortSession.describe` gives them.
* ``{"command": "trace", "port": NAME}`` → one line per UART chunk,
  ``{"t": unix time, "port": NAME, "dir": "in"|"out", "data": base64}``,
  until the client disconnects. A trace client that cannot keep up is
  dropped once :data:`TRACE_BACKLOG` bytes wait for it, so tracing never
  slows the MCU down.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from gatewayd.config import Config

__all__ = ["ControlServer", "bind_private", "control_socket_path"]

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


class ControlServer:
    def __init__(self, daemon: Any, path: Path, log: Any) -> None:
        self.daemon = daemon
        self.path = path
        self.log = log
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sock = bind_private(self.path)  # replaces a socket left by a previous run
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

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            request = json.loads(line or b"{}")
            command = request.get("command") if isinstance(request, dict) else None
            if command == "status":
                ports = [s.describe().as_dict() for s in self.daemon.sessions.values()]
                await self._send(writer, {"ports": ports})
            elif command == "trace":
                await self._trace(reader, writer, str(request.get("port", "")))
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
                     name: str) -> None:
        session = self.daemon.sessions.get(name)
        if session is None:
            known = ", ".join(self.daemon.sessions)
            await self._send(writer, {"error": f"no port {name!r} (ports: {known})"})
            return
        gone = asyncio.Event()

        def tracer(direction: str, data: bytes) -> None:
            if writer.transport.get_write_buffer_size() > TRACE_BACKLOG:
                gone.set()  # too slow a reader: stop rather than hold the MCU's bytes
                return
            event = {"t": time.time(), "port": name, "dir": direction,
                     "data": base64.b64encode(data).decode()}
            writer.write(json.dumps(event).encode() + b"\n")

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
