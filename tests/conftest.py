"""Shared real peers: websockets echo servers on 127.0.0.1 and trustme TLS material;
a state directory for the ports' state files."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import trustme
from websockets.asyncio.server import serve


async def echo(websocket):
    """The seed 003 echo handler."""
    async for message in websocket:
        await websocket.send(message)


@pytest_asyncio.fixture
async def ws_echo():
    """A websockets echo server on ws://127.0.0.1:<port>; yields the server."""
    async with serve(echo, "127.0.0.1", 0) as server:
        yield server


def port_of(server) -> int:
    return next(iter(server.sockets)).getsockname()[1]


async def sent_in_full(daemon, mcu, burst: bytes, timeout: float = 20) -> None:
    """Send *burst* and wait (bounded) until port ``mcu`` has read all of it.

    A pty carries a burst faster than any UART: one read may bring more than
    Ameba's hold limit after a line, and the rest is then dropped as input
    while busy, which can leave a partial line or take a command sent too
    soon with it. Ending the burst with this wait, then ``\\r\\n`` (an empty
    or unknown line gets no answer), makes what follows deterministic."""
    session = daemon.sessions["mcu"]
    start = session.bytes_in
    await mcu.send(burst)
    async with asyncio.timeout(timeout):
        while session.bytes_in < start + len(burst):
            await asyncio.sleep(0.01)
    await mcu.send(b"\r\n")


@contextlib.contextmanager
def listener_that_never_reads() -> Iterator[socket.socket]:
    """A non-blocking TCP listener on 127.0.0.1 whose accepted sockets have a
    4 KiB receive buffer (inherited from it): a peer that stops reading once
    it has accepted. Closed on exit."""
    server = socket.socket()
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.setblocking(False)
        yield server
    finally:
        server.close()


async def accept(server: socket.socket, timeout: float = 5) -> socket.socket:
    """The next connection *server* accepts, within *timeout* s."""
    loop = asyncio.get_running_loop()
    conn, _ = await asyncio.wait_for(loop.sock_accept(server), timeout)
    return conn


async def send_until_refused(mcu, command: bytes, prompt: bytes, ok: bytes,
                             ) -> tuple[bytes, float]:
    """*command*, then an 8 KiB block after its *prompt*, again and again
    until the reply is not *ok* (as many lines as *ok*); that reply and the
    seconds it came after its block. At most 500 blocks (4 MB): the buffers
    between gatewayd and a peer that stopped reading hold far less."""
    loop = asyncio.get_running_loop()
    block = bytes(range(256)) * 32
    for _ in range(500):
        await mcu.command(command, prompt)
        await mcu.send(block)
        sent = loop.time()
        reply = b""
        for _ in range(ok.count(b"\r\n")):
            reply += await mcu.read_until(b"\r\n", timeout=10)
        if reply != ok:
            break
    return reply, loop.time() - sent


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    """The ports' state files (what a module keeps in flash) go here, as
    under systemd's ``$STATE_DIRECTORY``."""
    folder = tmp_path / "state"
    monkeypatch.setenv("STATE_DIRECTORY", str(folder))
    return folder


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(tmp_path: Path, ca: trustme.CA) -> dict[str, Path]:
    """CA, server cert for 127.0.0.1 and a client cert, as PEM files."""
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("mcu.gatewayd.test")
    files = {
        "ca": tmp_path / "ca.pem",
        "server_cert": tmp_path / "server.pem",
        "server_key": tmp_path / "server.key",
        "client_cert": tmp_path / "client.pem",
        "client_key": tmp_path / "client.key",
    }
    ca.cert_pem.write_to_path(files["ca"])
    server.cert_chain_pems[0].write_to_path(files["server_cert"])
    server.private_key_pem.write_to_path(files["server_key"])
    client.cert_chain_pems[0].write_to_path(files["client_cert"])
    client.private_key_pem.write_to_path(files["client_key"])
    for key in ("server_key", "client_key"):
        files[key].chmod(0o600)
    return files


def mutual_tls_server_context(files: dict[str, Path]) -> ssl.SSLContext:
    """The seed 003 wss server's context: its cert, and client certs required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile=files["server_cert"], keyfile=files["server_key"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(files["ca"])
    return context

