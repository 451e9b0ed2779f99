"""Ameba WebSocket client commands end to end: a virtual MCU on gatewayd's pty,
real WebSocket servers from the `websockets` library on 127.0.0.1 (or a
hand-written peer where a frame must be seen as it is), real TLS from trustme.

Expected bytes: seed document 000 (AT+WSGLCFG … AT+WSTXQUEUECHECK) and
shared/reference/ameba-at-behaviour.md §1 (framing), §2 (TT mode),
§3 (certificates), §4 (parsing), §5 (WebSocket client).

Error numbers the document lists that no real peer can provoke, and which are
therefore not tested here (rather than faked):

* ERROR: 2 "memory allocation failed" of AT+WSCFG, AT+WSHEAD, AT+WSHEADRAW
  and AT+WSCONN, and ERROR: 3 "memory allocation failed" of AT+WSSENDRAW;
* ERROR: 3 "socket creation failed" of AT+WSCONN;
* ERROR: 6 "connection task creation failed" of AT+WSCONN.

AT+WSHEADRAW's ERROR: 3 ("failed to enter TT mode") is provoked by aborting
the raw block before any byte arrives, the way AT+WSSENDRAW's ERROR: 4 is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import socket
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import pytest
import trustme
from conftest import echo, mutual_tls_server_context, port_of
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.utils import accept_key

from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
TT = b">>>\r\n"
READY = b"ATCMD READY\r\n"
HIGH = b"[$][TT]:High Watermark\r\n"
LOW = b"[$][TT]:Low Watermark\r\n"
NOT_FULL = b"Tx queue is not full\n"
FULL = b"Tx queue is full\n"

CLOSING, CLOSED, CONNECTING, OPEN = 0, 1, 2, 3
DEFAULT_GLOBAL = (0, 0, 0, 30000, 0, 0, 0)
GLOBAL_KEYS = (b"connect_timeout", b"recv_timeout", b"send_timeout", b"send_blocktime",
               b"keepalive_idle", b"keepalive_interval", b"keepalive_count")


def error(code: int) -> bytes:
    return b"\r\nERROR: %d\r\n" % code


def connected(link: int = 0) -> bytes:
    return b"[$][WS][EVENT]:linkid:%d, connected\r\n" % link


def disconnect(link: int = 0) -> bytes:
    return b"[$][WS][EVENT]:linkid:%d, disconnect\r\n" % link


def pong(link: int = 0) -> bytes:
    return b"[$][WS][EVENT]:linkid:%d, pong\r\n" % link


def data(link: int, payload: bytes, opcode: int | None = None) -> bytes:
    """A DATA URC: the documented form, or the newer one with the opcode."""
    if opcode is None:
        head = b"[$][WS][DATA][%d][%d]:" % (link, len(payload))
    else:
        head = b"[$][WS][DATA][%d][%d][%d]:" % (link, opcode, len(payload))
    return head + payload + b"\r\n"


def global_block(values: tuple[int, ...] = DEFAULT_GLOBAL) -> bytes:
    return b"Global config:\r\n" + b"".join(
        b"%s: %d\r\n" % (key, value) for key, value in zip(GLOBAL_KEYS, values, strict=True))


def link_block(link: int, *, status: int = CLOSED, ping_interval: int = 10,
               ping_timeout: int = 120, buffer_size: int = 1500, max_queue_size: int = 3,
               protocol: bytes = b"", stable_buf_num: int = 3,
               headers: tuple[bytes, ...] = ()) -> bytes:
    lines = [b"link_id: %d" % link, b"status: %d" % status,
             b"ping_interval: %d" % ping_interval, b"ping_timeout: %d" % ping_timeout,
             b"buffer_size: %d" % buffer_size, b"max_queue_size: %d" % max_queue_size,
             b"protocol: " + protocol, b"version: 13", b"stable_buf_num: %d" % stable_buf_num,
             b"header:", *headers]
    return b"".join(line + b"\r\n" for line in lines)


def port_config(extra: str = "", certs: str = "") -> str:
    return ('[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n'
            + extra + certs)


def suite(index: int, **files: Path) -> str:
    """A `[certs.client.N]` table with the given ca/cert/key files."""
    return f"[certs.client.{index}]\n" + "".join(
        f'{field} = "{path}"\n' for field, path in files.items())


def wsconn(link: int, port: int, conn_type: int = 1, cert: int | None = None,
           path: bytes = b"", host: bytes = b"127.0.0.1") -> bytes:
    line = b"AT+WSCONN=%d,%s,%s,%d,%d" % (link, host, path, port, conn_type)
    return line if cert is None else line + b",%d" % cert


async def connect(mcu, port: int, link: int = 0, **kwargs) -> None:
    await mcu.command(wsconn(link, port, **kwargs), connected(link) + OK)


async def expect_ok_and(mcu, urc: bytes, timeout: float = 5.0) -> None:
    """OK of a send and the URC its answer causes, in either order (both are
    whole writes; which one reaches the UART first is a race on the module)."""
    got = await mcu.read_exactly(len(OK) + len(urc), timeout)
    assert got in (OK + urc, urc + OK), got


async def abort_tt(mcu) -> None:
    """The documented abort: `<` three times, each its own transfer, then silence."""
    for _ in range(3):
        await mcu.send(b"<")
        await asyncio.sleep(0.005)


async def expect_error_around_prompt(mcu, code: int, payload: bytes) -> None:
    """ERROR <code>, whether refused before the TT prompt or after the raw block."""
    head = await mcu.read_exactly(len(TT))
    if head == TT:
        await mcu.send(payload)
        await mcu.expect(error(code))
    else:
        rest = error(code)
        assert head == rest[: len(TT)], head
        await mcu.expect(rest[len(TT):])


class Recorder:
    """A websockets handler that keeps every request, connection and message;
    with ``echo=True`` it also sends every message back."""

    def __init__(self, *, echo: bool = False) -> None:
        self.echo = echo
        self.requests: list = []
        self.connections: list = []
        self.messages: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def __call__(self, websocket) -> None:
        self.requests.append(websocket.request)
        self.connections.append(websocket)
        try:
            async for message in websocket:
                self.messages.put_nowait(message)
                if self.echo:
                    await websocket.send(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def next_message(self, timeout: float = 5.0) -> str | bytes:
        async with asyncio.timeout(timeout):
            return await self.messages.get()


@dataclass
class Frame:
    fin: bool
    opcode: int
    masked: bool
    payload: bytes


class RawPeer:
    """A hand-written WebSocket server on 127.0.0.1: it completes the opening
    handshake, then records every frame the client sends and answers nothing
    (no pong, no close), so masking, opcodes and fragmentation are seen as sent.

    ``stalled=True``: after the handshake it reads nothing until
    :attr:`reading` is set, with a 4 KiB receive buffer, so the client's
    sends soon meet flow control."""

    def __init__(self, *, stalled: bool = False) -> None:
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self.heads: list[bytes] = []
        self.reading = asyncio.Event()
        if not stalled:
            self.reading.set()
        self._stalled = stalled
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> RawPeer:
        listener = socket.socket()
        if self._stalled:  # accepted sockets inherit it
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        listener.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._handle, sock=listener)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            key = re.search(rb"(?i)\r\nsec-websocket-key: *(\S+)", head).group(1).decode()
            writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode())
            await self.reading.wait()
            while True:
                first, second = await reader.readexactly(2)
                size = second & 0x7F
                if size == 126:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                elif size == 127:
                    size = int.from_bytes(await reader.readexactly(8), "big")
                mask = await reader.readexactly(4) if second & 0x80 else None
                payload = await reader.readexactly(size)
                if mask is not None:
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                self.frames.put_nowait(Frame(bool(first & 0x80), first & 0x0F,
                                             mask is not None, payload))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def next_frame(self, timeout: float = 5.0) -> Frame:
        async with asyncio.timeout(timeout):
            return await self.frames.get()

    async def next_data_frame(self, timeout: float = 5.0) -> Frame:
        """The next frame that is not a ping (the client may ping at any time)."""
        while (frame := await self.next_frame(timeout)).opcode == 0x9:
            pass
        return frame


def server_only_context(files: dict[str, Path]) -> ssl.SSLContext:
    """A wss server that presents its trustme certificate and asks for none."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile=files["server_cert"], keyfile=files["server_key"])
    return context


def gateway_sockets_to(port: int) -> list[socket.socket]:
    """Duplicates of this process's TCP sockets connected to 127.0.0.1:<port>
    (gatewayd runs in the test's process, so its link sockets are here)."""
    found = []
    seen = set()  # socket inodes: a duplicate made here may reuse a listed fd number
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
            if not target.startswith("socket:") or target in seen:
                continue
            seen.add(target)
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM \
                    and sock.getpeername() == ("127.0.0.1", port):
                found.append(sock)
                continue
        except OSError:
            pass
        sock.close()
    return found


async def serve_on_fixed_port(handler, port: int, **kwargs):
    try:
        return await serve(handler, "127.0.0.1", port, **kwargs)
    except OSError as exc:
        pytest.fail(f"port 0 means {port}: the test needs to listen on 127.0.0.1:{port} "
                    f"(root, as in CI): {exc}")


# -- AT+WSGLCFG ----------------------------------------------------------------


async def test_query_shows_the_defaults_of_every_link(tmp_path):
    everything = global_block() + link_block(0) + link_block(1) + link_block(2) + OK
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSQUERY", everything)
        await mcu.command(b"AT+WSQUERY=", everything)
        await mcu.command(b"AT+WSQUERY=1", global_block() + link_block(1) + OK)


async def test_wsglcfg_document_example(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSGLCFG=5,2000,2000,0,300,5,3", OK)
        await mcu.command(b"AT+WSQUERY=0",
                          global_block((5, 2000, 2000, 0, 300, 5, 3)) + link_block(0) + OK)


async def test_wsglcfg_is_absolute_omitted_fields_take_their_defaults(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSGLCFG=1,2,3,4,5,6,7", OK)
        await mcu.command(b"AT+WSQUERY=2",
                          global_block((1, 2, 3, 4, 5, 6, 7)) + link_block(2) + OK)
        await mcu.command(b"AT+WSGLCFG=9", OK)
        await mcu.command(b"AT+WSQUERY=2",
                          global_block((9, 0, 0, 30000, 0, 0, 0)) + link_block(2) + OK)
        await mcu.command(b"AT+WSGLCFG=,,,,7200,75,10", OK)
        await mcu.command(b"AT+WSQUERY=2",
                          global_block((0, 0, 0, 30000, 7200, 75, 10)) + link_block(2) + OK)
        await mcu.command(b"AT+WSGLCFG=", OK)
        await mcu.command(b"AT+WSQUERY=2", global_block() + link_block(2) + OK)


async def test_wsglcfg_range_errors_leave_the_config_alone(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSGLCFG=10,20,30,40,50,6,7", OK)
        for line in [
            b"AT+WSGLCFG=-1",
            b"AT+WSGLCFG=0,-1",
            b"AT+WSGLCFG=0,0,-1",
            b"AT+WSGLCFG=0,0,0,-1",
            b"AT+WSGLCFG=0,0,0,0,-1",
            b"AT+WSGLCFG=0,0,0,0,7201",
            b"AT+WSGLCFG=0,0,0,0,1,-1",
            b"AT+WSGLCFG=0,0,0,0,1,76",
            b"AT+WSGLCFG=0,0,0,0,1,1,-1",
            b"AT+WSGLCFG=0,0,0,0,1,1,11",
        ]:
            await mcu.command(line, error(1))
        await mcu.command(b"AT+WSQUERY=0",
                          global_block((10, 20, 30, 40, 50, 6, 7)) + link_block(0) + OK)
        await mcu.command(b"AT+TEST", OK)


async def test_wsglcfg_keepalive_reaches_the_socket_of_links_opened_afterwards(tmp_path):
    async with serve(echo, "127.0.0.1", 0) as before, serve(echo, "127.0.0.1", 0) as after, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(before), link=1)
        await mcu.command(b"AT+WSGLCFG=0,0,0,30000,30,5,4", OK)
        await connect(mcu, port_of(after), link=0)
        [old] = gateway_sockets_to(port_of(before))
        [new] = gateway_sockets_to(port_of(after))
        with old, new:
            assert old.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
            assert new.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
            assert new.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert new.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
            assert new.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4


async def test_wsglcfg_timeouts_bound_a_server_that_never_answers_the_handshake(tmp_path):
    writers = []
    server = await asyncio.start_server(lambda r, w: writers.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
            await mcu.command(b"AT+WSGLCFG=500,500", OK)
            await mcu.command(wsconn(0, port), error(5), timeout=5)
            await mcu.command(b"AT+WSQUERY=0", global_block((500, 500, 0, 30000, 0, 0, 0))
                              + link_block(0) + OK)
    finally:
        for writer in writers:
            writer.close()
        server.close()


# -- AT+WSCFG ------------------------------------------------------------------


async def test_wscfg_document_example(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSCFG=0,30,120,2048,5,chat,13,3", OK)
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(
            0, ping_interval=30, ping_timeout=120, buffer_size=2048, max_queue_size=5,
            protocol=b"chat", stable_buf_num=3) + OK)


async def test_wscfg_omitted_fields_take_their_defaults(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSCFG=1,5,6", OK)
        await mcu.command(b"AT+WSCFG=2,7200,7200,,,,,", OK)
        await mcu.command(b"AT+WSQUERY", global_block() + link_block(0)
                          + link_block(1, ping_interval=5, ping_timeout=6)
                          + link_block(2, ping_interval=7200, ping_timeout=7200) + OK)


async def test_wscfg_upper_bounds_are_accepted(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSCFG=0,1,1,16384,50,superchat,13,50", OK)
        await mcu.command(b"AT+WSCFG=1,1,1,1,1,,13,1", OK)
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(
            0, ping_interval=1, ping_timeout=1, buffer_size=16384, max_queue_size=50,
            protocol=b"superchat", stable_buf_num=50) + OK)
        await mcu.command(b"AT+WSQUERY=1", global_block() + link_block(
            1, ping_interval=1, ping_timeout=1, buffer_size=1, max_queue_size=1,
            stable_buf_num=1) + OK)


async def test_wscfg_range_errors_leave_the_config_alone(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSCFG=0,20,60,4096,12,,13,8", OK)
        for line in [
            b"AT+WSCFG",                              # no parameters at all
            b"AT+WSCFG=",
            b"AT+WSCFG=3,10,120",                     # link id
            b"AT+WSCFG=-1,10,120",
            b"AT+WSCFG=0,10",                         # ping_timeout is mandatory
            b"AT+WSCFG=0,,120",                       # so is ping_interval
            b"AT+WSCFG=0,0,120",
            b"AT+WSCFG=0,7201,120",
            b"AT+WSCFG=0,10,0",
            b"AT+WSCFG=0,10,7201",
            b"AT+WSCFG=0,10,120,0",                   # buffer_size
            b"AT+WSCFG=0,10,120,16385",
            b"AT+WSCFG=0,10,120,1500,0",              # max_queue_size
            b"AT+WSCFG=0,10,120,1500,51",
            b"AT+WSCFG=0,10,120,1500,3,chat,12",      # version: "13" only
            b"AT+WSCFG=0,10,120,1500,3,chat,14",
            b"AT+WSCFG=0,10,120,1500,3,chat,13,0",    # stable_buf_num
            b"AT+WSCFG=0,10,120,1500,3,chat,13,4",    # above max_queue_size
            b"AT+WSCFG=0,10,120,1500,3,ch\\at",        # a backslash escape that is not one
        ]:
            await mcu.command(line, error(1))
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(
            0, ping_interval=20, ping_timeout=60, buffer_size=4096, max_queue_size=12,
            stable_buf_num=8) + OK)
        await mcu.command(b"AT+TEST", OK)


async def test_wscfg_protocol_is_offered_in_the_handshake(tmp_path):
    recorder = Recorder()
    async with serve(recorder, "127.0.0.1", 0, subprotocols=["chat"]) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSCFG=0,10,120,1500,3,chat", OK)
        await connect(mcu, port_of(server))
    [request] = recorder.requests
    assert request.headers["Sec-WebSocket-Protocol"] == "chat"
    assert request.headers["Sec-WebSocket-Version"] == "13"
    assert recorder.connections[0].subprotocol == "chat"


# -- AT+WSHEAD / AT+WSHEADRAW --------------------------------------------------


async def test_wshead_document_example(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSHEAD=1,26,Origin: http://example.com", OK)
        await mcu.command(b"AT+WSHEAD=1,24,Cookie: sessionId=abc789", OK)
        await mcu.command(b"AT+WSQUERY=1", global_block() + link_block(
            1, headers=(b"Origin: http://example.com", b"Cookie: sessionId=abc789")) + OK)
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(0) + OK)


async def test_wsheadraw_document_example(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSHEADRAW=1,39", TT)
        await mcu.send(b"Sec-WebSocket-Protocol: chat, superchat")
        await mcu.expect(OK)
        await mcu.command(b"AT+WSQUERY=1", global_block() + link_block(
            1, headers=(b"Sec-WebSocket-Protocol: chat, superchat",)) + OK)


async def test_wshead_escapes_and_header_len_truncation(tmp_path):
    headers = (b"Sec-WebSocket-Protocol: chat, superchat", b"X-Cut: ab", b"X-Path: a\\b")
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSHEAD=0,39,Sec-WebSocket-Protocol: chat\\, superchat", OK)
        await mcu.command(b"AT+WSHEAD=0,9,X-Cut: abcdef", OK)
        await mcu.command(b"AT+WSHEAD=0,11,X-Path: a\\\\b", OK)
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(0, headers=headers) + OK)


async def test_headers_reach_the_server_in_the_next_handshake(tmp_path):
    recorder = Recorder()
    big = b"X-Big: " + b"v" * 2993  # 3000 bytes: longer than a command line
    async with serve(recorder, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSHEAD=0,26,Origin: http://example.com", OK)
        await mcu.command(b"AT+WSHEAD=0,22,X-Comma: a\\, b\\\\c", OK)
        await mcu.command(b"AT+WSHEADRAW=0,13", TT)
        await mcu.send(b"X-Raw: a\\,b\\\\")  # raw: no escaping at all
        await mcu.expect(OK)
        await mcu.command(b"AT+WSHEADRAW=0,%d" % len(big), TT)
        await mcu.send(big)
        await mcu.expect(OK)
        await mcu.command(b"AT+WSHEAD=2,16,X-Other-Link: 2", OK)  # another link's: not sent
        await connect(mcu, port_of(server), path=b"/chat?x=1")
    [request] = recorder.requests
    assert request.path == "/chat?x=1"
    assert request.headers["Origin"] == "http://example.com"
    assert request.headers["X-Comma"] == "a, b\\c"
    assert request.headers["X-Raw"] == "a\\,b\\\\"
    assert request.headers["X-Big"] == "v" * 2993
    assert "X-Other-Link" not in request.headers


async def test_wshead_limits_and_errors(tmp_path):
    recorder = Recorder()
    async with serve(recorder, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        for line in [
            b"AT+WSHEAD",
            b"AT+WSHEAD=3,7,X-A: 12",   # link id
            b"AT+WSHEAD=-1,7,X-A: 12",
            b"AT+WSHEAD=0,7",           # header missing with header_len > 0
            b"AT+WSHEAD=0,7,",
            b"AT+WSHEAD=0,-1,X-A: 12",
            b"AT+WSHEAD=0,7,X-A\\: 1",  # not an escape the parser knows
        ]:
            await mcu.command(line, error(1))
        headers = tuple(b"X-H%d: %d" % (i, i) for i in range(10))
        for header in headers:
            await mcu.command(b"AT+WSHEAD=0,7," + header, OK)
        await mcu.command(b"AT+WSHEAD=0,7,X-HA: A", error(3))
        await mcu.send(b"AT+WSHEADRAW=0,7\r\n")
        await expect_error_around_prompt(mcu, 4, b"X-HB: B")
        await mcu.command(b"AT+WSHEAD=1,7,X-L1: 1", OK)  # the limit is per link
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(0, headers=headers) + OK)
        await connect(mcu, port_of(server))
        await mcu.command(b"AT+WSDISCONN=0", OK + disconnect(0))
        await mcu.command(b"AT+WSHEAD=0,0", OK)  # clears every header of link 0
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(0) + OK)
        await mcu.command(b"AT+WSQUERY=1", global_block()
                          + link_block(1, headers=(b"X-L1: 1",)) + OK)
        await mcu.command(b"AT+WSHEAD=0,7,X-HC: C", OK)
        await connect(mcu, port_of(server))
    first, second = recorder.requests
    assert [first.headers[f"X-H{i}"] for i in range(10)] == [str(i) for i in range(10)]
    assert "X-HA" not in first.headers and "X-HB" not in first.headers
    assert second.headers["X-HC"] == "C"
    assert not any(f"X-H{i}" in second.headers for i in range(10))


async def test_wsheadraw_clear_errors_and_abort(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        for line in [b"AT+WSHEADRAW", b"AT+WSHEADRAW=3,5", b"AT+WSHEADRAW=-1,5",
                     b"AT+WSHEADRAW=0", b"AT+WSHEADRAW=0,-5"]:
            await mcu.command(line, error(1))  # refused before any prompt
        await mcu.expect_silence(0.1)
        await mcu.command(b"AT+WSHEADRAW=2,7", TT)
        await mcu.send(b"X-A: 1\n")  # raw bytes, LF included
        await mcu.expect(OK)
        await mcu.command(b"AT+WSHEADRAW=2,6", TT)
        await mcu.send(b"X-B: 2")
        await mcu.expect(OK)
        await mcu.command(b"AT+WSHEADRAW=2,0", OK)  # clears, no prompt
        await mcu.command(b"AT+WSQUERY=2", global_block() + link_block(2) + OK)


async def test_wsheadraw_abort_before_any_data_is_error_3(tmp_path):
    # §2: a raw block aborted with nothing received fails as "tt mode get failed",
    # which for AT+WSHEADRAW is ERROR: 3 ("failed to enter TT mode").
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSHEADRAW=2,6", TT)
        await abort_tt(mcu)
        await mcu.expect(error(3), timeout=2)
        await mcu.command(b"AT+TEST", OK)
        await mcu.command(b"AT+WSQUERY=2", global_block() + link_block(2) + OK)


# -- AT+WSQUERY ----------------------------------------------------------------


async def test_wsquery_document_example(tmp_path, ws_echo):
    expected = (b"Global config:\r\n"
                b"connect_timeout: 3000\r\n"
                b"recv_timeout: 3000\r\n"
                b"send_timeout: 3000\r\n"
                b"send_blocktime: 4000\r\n"
                b"keepalive_idle: 0\r\n"
                b"keepalive_interval: 0\r\n"
                b"keepalive_count: 0\r\n"
                b"link_id: 0\r\n"
                b"status: 3\r\n"
                b"ping_interval: 20\r\n"
                b"ping_timeout: 60\r\n"
                b"buffer_size: 4096\r\n"
                b"max_queue_size: 12\r\n"
                b"protocol: \r\n"
                b"version: 13\r\n"
                b"stable_buf_num: 8\r\n"
                b"header:\r\n"
                b"Sec-WebSocket-Protocol: chat, superchat\r\n"
                b"Origin: http://example.com\r\n"
                b"\r\nOK\r\n")
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSGLCFG=3000,3000,3000,4000,0,0,0", OK)
        await mcu.command(b"AT+WSCFG=0,20,60,4096,12,,13,8", OK)
        await mcu.command(b"AT+WSHEADRAW=0,39", TT)
        await mcu.send(b"Sec-WebSocket-Protocol: chat, superchat")
        await mcu.expect(OK)
        await mcu.command(b"AT+WSHEAD=0,26,Origin: http://example.com", OK)
        await connect(mcu, port_of(ws_echo))
        await mcu.command(b"AT+WSQUERY=0", expected)


async def test_wsquery_errors(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        for line in [b"AT+WSQUERY=3", b"AT+WSQUERY=-1", b"AT+WSQUERY=99"]:
            await mcu.command(line, error(1))
        await mcu.command(b"AT+TEST", OK)


# -- AT+WSCONN -----------------------------------------------------------------


async def test_wsconn_ws_default_path_and_status(tmp_path):
    recorder = Recorder()
    async with serve(recorder, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(server))
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(0, status=OPEN) + OK)
        await mcu.command(b"AT+WSQUERY=1", global_block() + link_block(1) + OK)
        await mcu.command(wsconn(0, port_of(server)), error(1))  # link already open
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(0, status=OPEN) + OK)
    [request] = recorder.requests
    assert request.path == "/"
    assert len(recorder.connections) == 1


async def test_wsconn_path_escapes_and_maximum_lengths(tmp_path):
    recorder = Recorder()
    long_path = b"/" + b"p" * 255  # 256 characters: the maximum
    async with serve(recorder, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        port = port_of(server)
        await connect(mcu, port, link=0, path=b"/a\\,b")
        await connect(mcu, port, link=1, path=long_path)
        await connect(mcu, port, link=2, path=b"/chat")
    assert [r.path for r in recorder.requests] == ["/a,b", long_path.decode(), "/chat"]


async def test_wsconn_parameter_errors(tmp_path, ws_echo):
    port = port_of(ws_echo)
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        for line in [
            b"AT+WSCONN",
            b"AT+WSCONN=",
            wsconn(3, port),                                # link id
            wsconn(-1, port),
            b"AT+WSCONN=0,,,%d,1" % port,                   # empty host
            wsconn(0, port, host=b"h" * 129),                # host longer than 128
            wsconn(0, port, path=b"/" + b"p" * 256),         # path longer than 256
            b"AT+WSCONN=0,127.0.0.1,,65536,1",               # port
            b"AT+WSCONN=0,127.0.0.1,,-1,1",
            b"AT+WSCONN=0,127.0.0.1,,%d" % port,             # conn_type missing
            b"AT+WSCONN=0,127.0.0.1,,%d," % port,
            wsconn(0, port, conn_type=0),
            wsconn(0, port, conn_type=6),
            wsconn(0, port, conn_type=3),                    # conn_type 3..5 need cert_index
            wsconn(0, port, conn_type=4),
            wsconn(0, port, conn_type=5),
            wsconn(0, port, conn_type=3, cert=0),
            wsconn(0, port, path=b"/a\\qb"),                  # not an escape
        ]:
            await mcu.command(line, error(1))
        await mcu.command(b"AT+WSQUERY", global_block() + link_block(0) + link_block(1)
                          + link_block(2) + OK)
        await connect(mcu, port)


async def test_wsconn_connection_failures_are_error_5(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]

    def not_a_websocket(connection, request):
        return connection.respond(HTTPStatus.NOT_FOUND, "nothing here\n")

    async with serve(echo, "127.0.0.1", 0, process_request=not_a_websocket) as refusing, \
            serve(echo, "127.0.0.1", 0) as plain, \
            running_gateway(tmp_path, config_text=port_config(
                "trust_any_server_cert = true\n")) as (_, mcu):
        await mcu.command(wsconn(0, dead), error(5))                    # refused
        await mcu.command(wsconn(0, port_of(refusing)), error(5))       # handshake refused
        await mcu.command(wsconn(0, port_of(plain), conn_type=2), error(5))  # TLS to plain
        await mcu.expect_silence(0.2)  # no connected/disconnect events
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(0) + OK)
        await connect(mcu, port_of(plain))


async def test_port_0_means_80_for_ws(tmp_path):
    server = await serve_on_fixed_port(echo, 80)
    try:
        async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
            await mcu.command(b"AT+WSCONN=0,127.0.0.1,,0,1", connected(0) + OK)
            await mcu.command(b"AT+WSCONN=1,127.0.0.1,/x,,1", connected(1) + OK)
    finally:
        server.close()
        async with asyncio.timeout(5):
            await server.wait_closed()


async def test_port_0_means_443_for_wss(tmp_path, tls_files):
    server = await serve_on_fixed_port(echo, 443, ssl=server_only_context(tls_files))
    try:
        config = port_config(certs=suite(1, ca=tls_files["ca"]))
        async with running_gateway(tmp_path, config_text=config) as (_, mcu):
            await mcu.command(b"AT+WSCONN=0,127.0.0.1,,0,3,1", connected(0) + OK)
    finally:
        server.close()
        async with asyncio.timeout(5):
            await server.wait_closed()


async def test_wss_conn_type_2_uses_the_system_store_unless_trusting(tmp_path, tls_files):
    async with serve(echo, "127.0.0.1", 0, ssl=server_only_context(tls_files)) as server:
        port = port_of(server)
        async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
            # trustme's CA is not in the system trust store.
            await mcu.command(wsconn(0, port, conn_type=2), error(5))
        trusting = port_config("trust_any_server_cert = true\n")
        async with running_gateway(tmp_path, config_text=trusting) as (_, mcu):
            await connect(mcu, port, conn_type=2)
            await mcu.send(b"AT+WSSEND=0,2,,,hi\r\n")
            await expect_ok_and(mcu, data(0, b"hi"))


async def test_wss_conn_type_3_verifies_the_server_with_the_suite_ca(tmp_path, tls_files):
    other = trustme.CA()
    other_ca = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(other_ca)
    certs = (suite(1, ca=tls_files["ca"]) + suite(2, ca=other_ca)
             + suite(3, cert=tls_files["client_cert"], key=tls_files["client_key"])
             + suite(10, ca=tls_files["ca"]) + suite(0, ca=tls_files["ca"]))
    recorder = Recorder(echo=True)
    async with serve(recorder, "127.0.0.1", 0, ssl=server_only_context(tls_files)) as server, \
            running_gateway(tmp_path, config_text=port_config(certs=certs)) as (_, mcu):
        port = port_of(server)
        await mcu.command(wsconn(0, port, conn_type=3, cert=0), error(1))  # 1..10 only
        await mcu.command(wsconn(0, port, conn_type=3, cert=2), error(5))  # wrong CA
        await mcu.command(wsconn(0, port, conn_type=3, cert=3), error(4))  # suite has no CA
        await mcu.command(wsconn(0, port, conn_type=3, cert=7), error(4))  # no such suite
        await mcu.command(b"AT+WSCONN=0,127.0.0.1,/chat,%d,3,1" % port, connected(0) + OK)
        await connect(mcu, port, link=1, conn_type=3, cert=10)
        await mcu.send(b"AT+WSSEND=0,11,1,1,HelloWorld!\r\n")
        await expect_ok_and(mcu, data(0, b"HelloWorld!"))
    assert [r.path for r in recorder.requests] == ["/chat", "/"]


async def test_wss_conn_type_4_presents_the_client_certificate(tmp_path, tls_files):
    certs = (suite(1, ca=tls_files["ca"])
             + suite(3, cert=tls_files["client_cert"], key=tls_files["client_key"]))
    seen = []

    async def recording_peer(websocket):
        seen.append(websocket.transport.get_extra_info("ssl_object").getpeercert())
        await echo(websocket)

    context = mutual_tls_server_context(tls_files)  # requires a client certificate
    trusting = port_config("trust_any_server_cert = true\n", certs)
    async with serve(recording_peer, "127.0.0.1", 0, ssl=context) as server, \
            running_gateway(tmp_path, config_text=trusting) as (_, mcu):
        port = port_of(server)
        await mcu.command(wsconn(0, port, conn_type=2), error(5))          # no client cert
        await mcu.command(wsconn(0, port, conn_type=4, cert=1), error(4))  # suite has no cert
        await mcu.command(wsconn(0, port, conn_type=4, cert=9), error(4))  # no such suite
        await connect(mcu, port, conn_type=4, cert=3)
        await mcu.send(b"AT+WSSEND=0,4,,,ping\r\n")
        await expect_ok_and(mcu, data(0, b"ping"))
    assert seen and seen[0]["subjectAltName"] == (("DNS", "mcu.gatewayd.test"),)


async def test_wss_conn_type_5_mutual_authentication(tmp_path, tls_files):
    other = trustme.CA()
    other_ca = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(other_ca)
    client = {"cert": tls_files["client_cert"], "key": tls_files["client_key"]}
    certs = (suite(1, ca=tls_files["ca"]) + suite(2, **client)
             + suite(4, ca=tls_files["ca"], **client) + suite(5, ca=other_ca, **client))
    seen = []

    async def recording_peer(websocket):
        seen.append(websocket.transport.get_extra_info("ssl_object").getpeercert())
        await echo(websocket)

    context = mutual_tls_server_context(tls_files)
    async with serve(recording_peer, "127.0.0.1", 0, ssl=context) as server, \
            running_gateway(tmp_path, config_text=port_config(certs=certs)) as (_, mcu):
        port = port_of(server)
        await mcu.command(wsconn(0, port, conn_type=5, cert=1), error(4))  # CA only
        await mcu.command(wsconn(0, port, conn_type=5, cert=2), error(4))  # cert+key, no CA
        await mcu.command(wsconn(0, port, conn_type=5, cert=5), error(5))  # wrong CA
        await mcu.command(wsconn(0, port, conn_type=3, cert=1), error(5))  # no client cert
        await connect(mcu, port, conn_type=5, cert=4)
        await mcu.send(b"AT+WSSEND=0,3,,,abc\r\n")
        await expect_ok_and(mcu, data(0, b"abc"))
    assert seen and seen[-1]["subjectAltName"] == (("DNS", "mcu.gatewayd.test"),)


# -- AT+WSSEND -----------------------------------------------------------------


async def test_wssend_document_example(tmp_path, ws_echo):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(ws_echo))
        await mcu.send(b"AT+WSSEND=0,11,1,1,HelloWorld!\r\n")
        await expect_ok_and(mcu, data(0, b"HelloWorld!"))


async def test_wssend_escapes_and_truncation(tmp_path, ws_echo):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(ws_echo))
        for line, echoed in [
            (b"AT+WSSEND=0,5,,,hello", b"hello"),
            (b"AT+WSSEND=0,3,,,a\\,b", b"a,b"),
            (b"AT+WSSEND=0,3,,,a\\\\b", b"a\\b"),
            (b"AT+WSSEND=0,3,,,abcdef", b"abc"),        # length smaller: truncated
            (b"AT+WSSEND=0,3,,,a\\,bcd", b"a,b"),
            (b"AT+WSSEND=0,6,,,quo\"te", b'quo"te'),    # quotes are not special
        ]:
            await mcu.send(line + b"\r\n")
            await expect_ok_and(mcu, data(0, echoed))


async def test_wssend_frames_follow_use_mask_and_opcode(tmp_path):
    async with RawPeer() as peer, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, peer.port)
        await mcu.command(b"AT+WSSEND=0,5,,,hello", OK)
        assert await peer.next_data_frame() == Frame(True, 1, True, b"hello")
        await mcu.command(b"AT+WSSEND=0,3,1,2,abc", OK)
        assert await peer.next_data_frame() == Frame(True, 2, True, b"abc")
        await mcu.command(b"AT+WSSEND=0,3,0,2,xyz", OK)
        assert await peer.next_data_frame() == Frame(True, 2, False, b"xyz")
        await mcu.command(b"AT+WSSEND=0,4,0,,text", OK)
        assert await peer.next_data_frame() == Frame(True, 1, False, b"text")


async def test_wssend_binary_opcode_to_a_websockets_server(tmp_path):
    recorder = Recorder()
    async with serve(recorder, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(server))
        await mcu.command(b"AT+WSSEND=0,4,1,2,\x01\x02\x03\x04", OK)
        assert await recorder.next_message() == b"\x01\x02\x03\x04"
        await mcu.command(b"AT+WSSEND=0,4,1,1,text", OK)
        assert await recorder.next_message() == "text"


async def test_wssend_ping_opcode_brings_a_pong_event(tmp_path, ws_echo):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(ws_echo))
        await mcu.send(b"AT+WSSEND=0,2,1,9,hi\r\n")
        await expect_ok_and(mcu, pong(0))


async def test_wssend_errors(tmp_path, ws_echo):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSSEND=0,5,,,hello", error(2))  # link not open
        await mcu.command(b"AT+WSCFG=0,10,120,4", OK)
        await connect(mcu, port_of(ws_echo))
        for line in [
            b"AT+WSSEND",
            b"AT+WSSEND=",
            b"AT+WSSEND=3,5,,,hello",      # link id
            b"AT+WSSEND=-1,5,,,hello",
            b"AT+WSSEND=0,5,hello",        # fewer than five positions
            b"AT+WSSEND=0,5,,hello",
            b"AT+WSSEND=0,4,,,",           # empty data
            b"AT+WSSEND=0,0,,,hell",       # length 0
            b"AT+WSSEND=0,-1,,,hell",
            b"AT+WSSEND=0,5,,,hello",      # above buffer_size 4
            b"AT+WSSEND=0,4,,,abc",        # length greater than the data
            b"AT+WSSEND=0,3,,,a\\qb",      # not an escape
        ]:
            await mcu.command(line, error(1))
        await mcu.command(b"AT+WSSEND=1,4,,,hell", error(2))  # other link: not open
        await mcu.send(b"AT+WSSEND=0,4,,,hell\r\n")       # exactly buffer_size
        await expect_ok_and(mcu, data(0, b"hell"))


# -- AT+WSSENDRAW --------------------------------------------------------------


async def test_wssendraw_document_example(tmp_path, ws_echo):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(ws_echo))
        await mcu.command(b"AT+WSSENDRAW=0,10,1,1", TT)
        await mcu.send(b"1234567890")
        await expect_ok_and(mcu, data(0, b"1234567890"))


async def test_wssendraw_counts_every_byte(tmp_path, ws_echo):
    payload = b"a\r\nb,\x00\\c<"
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(ws_echo))
        await mcu.command(b"AT+WSSENDRAW=0,%d,1,2" % len(payload), TT)
        await mcu.send(payload)
        await expect_ok_and(mcu, data(0, payload))
        await mcu.command(b"AT+WSSENDRAW=0,4", TT)  # use_mask and opcode omitted
        await mcu.send(b"\r\n\r\n")
        await expect_ok_and(mcu, data(0, b"\r\n\r\n"))
        await mcu.command(b"AT+TEST", OK)


async def test_wssendraw_errors_come_before_the_prompt(tmp_path, ws_echo):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSSENDRAW=0,5", error(2))  # link not open
        await mcu.command(b"AT+TEST", OK)                 # not in TT mode
        await connect(mcu, port_of(ws_echo))
        for line in [b"AT+WSSENDRAW", b"AT+WSSENDRAW=", b"AT+WSSENDRAW=3,5",
                     b"AT+WSSENDRAW=-1,5", b"AT+WSSENDRAW=0", b"AT+WSSENDRAW=0,0",
                     b"AT+WSSENDRAW=0,-5"]:
            await mcu.command(line, error(1))
            await mcu.command(b"AT+TEST", OK)
        await mcu.command(b"AT+WSSENDRAW=2,5,1,1", error(2))
        await mcu.command(b"AT+TEST", OK)


async def test_wssendraw_frames_follow_use_mask_opcode_and_buffer_size(tmp_path):
    payload = bytes(range(256)) * 40  # 10 KiB
    async with RawPeer() as peer, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, peer.port)
        await mcu.command(b"AT+WSSENDRAW=0,5,0,1", TT)
        await mcu.send(b"abcde")
        await mcu.expect(OK)
        assert await peer.next_data_frame() == Frame(True, 1, False, b"abcde")
        await mcu.command(b"AT+WSSENDRAW=0,%d,1,2" % len(payload), TT)
        await mcu.send(payload)
        await mcu.expect(OK, timeout=10)
        frames = [await peer.next_data_frame()]
        while not frames[-1].fin:
            frames.append(await peer.next_data_frame())
    assert len(frames) >= 2
    assert frames[0].opcode == 2
    assert all(frame.opcode == 0 for frame in frames[1:])
    assert all(frame.masked for frame in frames)
    assert not any(frame.fin for frame in frames[:-1])
    assert b"".join(frame.payload for frame in frames) == payload


async def test_wssendraw_10_kib_over_buffer_size_is_one_message(tmp_path):
    recorder = Recorder()
    payload = bytes(range(256)) * 40  # 10 KiB, larger than buffer_size 1500
    async with serve(recorder, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSCFG=0,10,120,1500", OK)
        await connect(mcu, port_of(server))
        await mcu.command(b"AT+WSSENDRAW=0,%d,1,2" % len(payload), TT)
        await mcu.send(payload)
        await mcu.expect(OK, timeout=10)
        assert await recorder.next_message() == payload
        await mcu.command(b"AT+WSSENDRAW=0,3000", TT)  # text, default opcode
        await mcu.send(b"t" * 3000)
        await mcu.expect(OK)
        assert await recorder.next_message() == "t" * 3000
        assert recorder.messages.empty()


async def test_wssendraw_200_kib_completes_with_well_formed_watermarks(tmp_path):
    recorder = Recorder()
    payload = random.Random(5).randbytes(200 * 1024)
    async with serve(recorder, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(server))
        await mcu.command(b"AT+WSSENDRAW=0,%d,1,2" % len(payload), TT)
        for start in range(0, len(payload), 4096):
            # Pause after High Watermark until Low Watermark, as a host must.
            async with asyncio.timeout(10):
                while (seen := mcu.pending()).count(HIGH) > seen.count(LOW):
                    await asyncio.sleep(0.005)
            await mcu.send(payload[start : start + 4096])
            await asyncio.sleep(0)
        reply = await mcu.read_until(OK, timeout=30)
        assert re.fullmatch(b"(?:" + re.escape(HIGH + LOW) + b")*" + re.escape(OK), reply), reply
        assert await recorder.next_message(timeout=10) == payload
        await mcu.command(b"AT+TEST", OK)


async def test_wssendraw_abort_before_any_data_is_error_4(tmp_path):
    recorder = Recorder()
    async with serve(recorder, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(server))
        await mcu.command(b"AT+WSSENDRAW=0,10", TT)
        await abort_tt(mcu)
        await mcu.expect(error(4), timeout=2)
        await mcu.command(b"AT+TEST", OK)
        await mcu.command(b"AT+WSSEND=0,5,,,after", OK)
        assert await recorder.next_message() == "after"  # nothing was sent before it


async def test_wssendraw_abort_after_some_data_sends_what_arrived(tmp_path):
    recorder = Recorder()
    async with serve(recorder, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(server))
        await mcu.command(b"AT+WSSENDRAW=0,10", TT)
        await mcu.send(b"hello")
        await asyncio.sleep(0.05)
        await abort_tt(mcu)
        await mcu.expect(OK, timeout=2)
        assert await recorder.next_message() == "hello"
        await mcu.command(b"AT+TEST", OK)
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(0, status=OPEN) + OK)


async def test_wssendraw_three_lt_in_one_write_are_data(tmp_path):
    recorder = Recorder()
    async with serve(recorder, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(server))
        await mcu.command(b"AT+WSSENDRAW=0,5", TT)
        await mcu.send(b"<<<")  # one burst: not the abort sequence
        await asyncio.sleep(0.1)
        await mcu.send(b"ab")
        await mcu.expect(OK)
        assert await recorder.next_message() == "<<<ab"


# -- AT+WSDISCONN / AT+WSTXQUEUECHECK ------------------------------------------


async def test_wsdisconn(tmp_path):
    recorder = Recorder()
    async with serve(recorder, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSDISCONN=0", error(2))
        for line in [b"AT+WSDISCONN", b"AT+WSDISCONN=", b"AT+WSDISCONN=3",
                     b"AT+WSDISCONN=-1"]:
            await mcu.command(line, error(1))
        await connect(mcu, port_of(server))
        await mcu.command(b"AT+WSDISCONN=0", OK + disconnect(0))
        async with asyncio.timeout(5):
            await recorder.closed.wait()
        assert recorder.connections[0].close_code != 1006  # a close frame came, not a drop
        await mcu.command(b"AT+WSDISCONN=0", error(2))
        await mcu.command(b"AT+WSSEND=0,2,,,hi", error(2))
        await mcu.command(b"AT+WSQUERY=0", global_block() + link_block(0) + OK)
        await connect(mcu, port_of(server))  # the link can be opened again
        assert len(recorder.connections) == 2


async def test_wstxqueuecheck(tmp_path, ws_echo):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSTXQUEUECHECK=0", error(2))
        for line in [b"AT+WSTXQUEUECHECK", b"AT+WSTXQUEUECHECK=",
                     b"AT+WSTXQUEUECHECK=3", b"AT+WSTXQUEUECHECK=-1"]:
            await mcu.command(line, error(1))
        await connect(mcu, port_of(ws_echo))
        await mcu.command(b"AT+WSTXQUEUECHECK=0", OK + NOT_FULL)
        await mcu.expect_silence(0.1)
        await mcu.command(b"AT+WSTXQUEUECHECK=1", error(2))
        await mcu.command(b"AT+TEST", OK)


async def fill_send_queue(mcu, payload: bytes, limit: int = 500) -> int:
    """``AT+WSSEND`` of payload i (*payload* with i in front) until
    ``AT+WSTXQUEUECHECK`` says the queue is full, at most *limit* times: the
    number sent. The link's peer must have stopped reading."""
    for count in range(1, limit + 1):
        frame = b"%05d" % (count - 1) + payload
        await mcu.command(b"AT+WSSEND=0,%d,,,%s" % (len(frame), frame), OK)
        await mcu.send(b"AT+WSTXQUEUECHECK=0\r\n")
        reply = await mcu.read_exactly(len(OK + FULL))
        if reply == OK + FULL:
            return count
        assert reply + await mcu.read_exactly(len(NOT_FULL) - len(FULL)) == OK + NOT_FULL
    raise AssertionError(f"the send queue was not full after {limit} frames")


async def test_queue_full_then_wssendraw_waits_and_goes_out_last(tmp_path):
    """A peer that stops reading: the frames of AT+WSSEND fill the queue, which
    AT+WSTXQUEUECHECK reports; an AT+WSSENDRAW then answers only once its
    frame has gone out, after every queued one, when the peer reads again."""
    filler = b"x" * 1400
    async with RawPeer(stalled=True) as peer, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, peer.port)
        for sock in gateway_sockets_to(peer.port):  # the link's: full sooner
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock.close()
        sent = await fill_send_queue(mcu, filler)
        await mcu.command(b"AT+WSSENDRAW=0,5,1,2", TT)
        await mcu.send(b"tail!")
        await mcu.expect_silence(0.3)  # held until there is room and it is sent
        peer.reading.set()
        await mcu.expect(OK, timeout=10)
        frames = [await peer.next_data_frame() for _ in range(sent + 1)]
        await mcu.command(b"AT+WSTXQUEUECHECK=0", OK + NOT_FULL)
    assert [frame.payload for frame in frames] == [
        b"%05d" % index + filler for index in range(sent)] + [b"tail!"]
    assert [frame.opcode for frame in frames] == [1] * sent + [2]


# -- what the server does ------------------------------------------------------


async def test_server_messages_become_data_events(tmp_path):
    async def sender(websocket):
        await websocket.send("hi")
        await websocket.send(b"\x00\r\n\xff,")
        await websocket.send("héllo")
        await websocket.wait_closed()

    async with serve(sender, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(server))
        await mcu.expect(data(0, b"hi"))
        await mcu.expect(data(0, b"\x00\r\n\xff,"))
        await mcu.expect(data(0, "héllo".encode()))


async def test_fragmented_server_message_is_one_data_event(tmp_path):
    async def sender(websocket):
        await websocket.send(["Hel", "lo, ", "world"])
        await websocket.send([b"\x01" * 1000, b"\x02" * 1000, b"\x03" * 1000])
        await websocket.wait_closed()

    async with serve(sender, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSCFG=0,10,120,4096", OK)
        await connect(mcu, port_of(server))
        await mcu.expect(data(0, b"Hello, world"))
        await mcu.expect(data(0, b"\x01" * 1000 + b"\x02" * 1000 + b"\x03" * 1000))


async def test_data_events_with_opcode_when_configured(tmp_path):
    async def sender(websocket):
        await websocket.send("hi")
        await websocket.send(b"\r\n\x00")
        await websocket.send(["ab", "cd"])  # TEXT ab, CONT cd, an empty CONT with FIN
        await websocket.send([b"\x01", b"\x02"])
        async with websocket.send_context():  # TEXT "ab" (FIN=0), CONT "cd" (FIN=1)
            websocket.protocol.send_text(b"ab", fin=False)
            websocket.protocol.send_continuation(b"cd", fin=True)
        await echo(websocket)

    config = port_config("ameba_ws_data_opcode = true\n")
    async with serve(sender, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=config) as (_, mcu):
        await connect(mcu, port_of(server))
        await mcu.expect(data(0, b"hi", opcode=1))
        await mcu.expect(data(0, b"\r\n\x00", opcode=2))
        # A fragmented message has the final frame's opcode, 0, as on the firmware.
        await mcu.expect(b"[$][WS][DATA][0][0][4]:abcd\r\n")
        await mcu.expect(b"[$][WS][DATA][0][0][2]:\x01\x02\r\n")
        await mcu.expect(b"[$][WS][DATA][0][0][4]:abcd\r\n")
        await mcu.send(b"AT+WSSEND=0,3,1,2,bin\r\n")
        await expect_ok_and(mcu, data(0, b"bin", opcode=2))


async def test_message_larger_than_buffer_size_is_discarded_and_the_link_stays(tmp_path):
    async def sender(websocket):
        await websocket.send("x" * 17)                # one byte too many
        await websocket.send("y" * 16)                # exactly buffer_size
        await websocket.send(["a" * 10, "b" * 10])    # small fragments, too big a message
        await websocket.send(b"z" * 5000)
        await websocket.send("end")
        await echo(websocket)

    async with serve(sender, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSCFG=0,10,120,16", OK)
        await connect(mcu, port_of(server))
        await mcu.expect(data(0, b"y" * 16))
        await mcu.expect(data(0, b"end"))
        await mcu.command(b"AT+WSQUERY=0", global_block()
                          + link_block(0, status=OPEN, buffer_size=16) + OK)
        await mcu.send(b"AT+WSSEND=0,4,,,ping\r\n")
        await expect_ok_and(mcu, data(0, b"ping"))


async def test_links_are_independent(tmp_path):
    first, second = Recorder(echo=True), Recorder(echo=True)
    async with serve(first, "127.0.0.1", 0) as one, serve(second, "127.0.0.1", 0) as two, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(one), link=0)
        await connect(mcu, port_of(two), link=2)
        await mcu.send(b"AT+WSSEND=2,3,,,two\r\n")
        await expect_ok_and(mcu, data(2, b"two"))
        await mcu.send(b"AT+WSSEND=0,3,,,one\r\n")
        await expect_ok_and(mcu, data(0, b"one"))
        await mcu.command(b"AT+WSSEND=1,3,,,bad", error(2))
        await mcu.command(b"AT+WSDISCONN=2", OK + disconnect(2))
        await mcu.command(b"AT+WSQUERY", global_block() + link_block(0, status=OPEN)
                          + link_block(1) + link_block(2) + OK)
    assert await first.next_message() == "one"
    assert await second.next_message() == "two"


async def test_server_close_frame_disconnects_without_reconnect_and_config_persists(tmp_path):
    connections = []

    async def closer(websocket):
        connections.append(websocket)
        await websocket.close(1000, "bye")

    headers = (b"Origin: http://example.com",)
    settled = link_block(0, ping_interval=30, ping_timeout=90, buffer_size=2048,
                         headers=headers)
    async with serve(closer, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSCFG=0,30,90,2048", OK)
        await mcu.command(b"AT+WSHEAD=0,26,Origin: http://example.com", OK)
        await connect(mcu, port_of(server))
        await mcu.expect(disconnect(0))
        await mcu.expect_silence(1.0)  # no automatic reconnection
        assert len(connections) == 1
        await mcu.command(b"AT+WSQUERY=0", global_block() + settled + OK)
        await mcu.command(b"AT+WSSEND=0,2,,,hi", error(2))
        await connect(mcu, port_of(server))  # the host reconnects itself
        await mcu.expect(disconnect(0))
    assert len(connections) == 2
    assert connections[1].request.headers["Origin"] == "http://example.com"


async def test_vanishing_server_disconnects_without_reconnect(tmp_path):
    connections = []

    async def handler(websocket):
        connections.append(websocket)
        await websocket.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSHEAD=0,7,X-A: 1", OK)
        await connect(mcu, port_of(server))
        connections[0].transport.abort()  # TCP reset, no close frame
        await mcu.expect(disconnect(0))
        await mcu.expect_silence(1.0)
        assert len(connections) == 1
        await mcu.command(b"AT+WSQUERY=0", global_block()
                          + link_block(0, headers=(b"X-A: 1",)) + OK)
        await mcu.command(b"AT+WSDISCONN=0", error(2))


async def test_pong_events_from_a_live_server(tmp_path, ws_echo):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSCFG=0,1,120", OK)
        await connect(mcu, port_of(ws_echo))
        await mcu.expect(pong(0), timeout=2.5)
        await mcu.expect(pong(0), timeout=2.5)  # one per ping interval


async def test_server_that_never_answers_pings_is_dropped(tmp_path):
    async with RawPeer() as peer, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSCFG=0,1,2", OK)
        await connect(mcu, peer.port)
        await mcu.expect(disconnect(0), timeout=4.5)
        await mcu.command(b"AT+WSQUERY=0", global_block()
                          + link_block(0, ping_interval=1, ping_timeout=2) + OK)
        frames = []
        while not peer.frames.empty():
            frames.append(peer.frames.get_nowait())
    pings = [frame for frame in frames if frame.opcode == 0x9]
    assert pings and all(frame.masked for frame in pings)


async def test_server_pings_are_answered_silently(tmp_path):
    answered = asyncio.Event()

    async def pinger(websocket):
        waiter = await websocket.ping(b"are you there")
        async with asyncio.timeout(3):
            await waiter
        answered.set()
        await websocket.wait_closed()

    async with serve(pinger, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await connect(mcu, port_of(server))
        async with asyncio.timeout(5):
            await answered.wait()
        await mcu.expect_silence(0.2)  # no URC for a ping the server sent


# -- AT+RST --------------------------------------------------------------------


async def test_rst_closes_every_link_and_resets_the_config(tmp_path):
    first, second = Recorder(), Recorder()
    async with serve(first, "127.0.0.1", 0) as one, serve(second, "127.0.0.1", 0) as two, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"AT+WSGLCFG=4000,5000,6000,7000,300,5,3", OK)
        await mcu.command(b"AT+WSCFG=1,30,60,2048", OK)
        await mcu.command(b"AT+WSHEAD=1,7,X-A: 1", OK)
        await connect(mcu, port_of(one), link=0)
        await connect(mcu, port_of(two), link=1)
        await mcu.command(b"AT+RST", OK + READY)
        async with asyncio.timeout(5):
            await first.closed.wait()
            await second.closed.wait()
        await mcu.expect_silence(0.2)
        await mcu.command(b"AT+WSQUERY", global_block() + link_block(0) + link_block(1)
                          + link_block(2) + OK)
        await connect(mcu, port_of(one), link=0)


async def test_wsheadraw_length_is_capped_before_the_prompt(tmp_path):
    config = '[[port]]\nname = "mcu"\ndevice = "pty:tty"\ndialect = "ameba"\n'
    async with running_gateway(tmp_path, config_text=config) as (_, mcu):
        await mcu.command(b"AT+WSHEADRAW=0,16385", b"\r\nERROR: 1\r\n")
        await mcu.command(b"AT+WSHEADRAW=0,16384", b">>>\r\n")
        await mcu.send(b"X-Big: " + b"v" * (16384 - 7))
        await mcu.expect(b"\r\nOK\r\n")


async def test_link_lost_mid_wssendraw_swallows_the_rest_of_the_block(tmp_path):
    connections = []

    async def keep(websocket):
        connections.append(websocket)
        await websocket.wait_closed()

    config = '[[port]]\nname = "mcu"\ndevice = "pty:tty"\ndialect = "ameba"\n'
    async with serve(keep, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=config) as (_, mcu):
        await mcu.command(b"AT+WSCFG=0,30,120,100", b"\r\nOK\r\n")
        await mcu.command(b"AT+WSCONN=0,127.0.0.1,,%d,1" % port_of(server),
                          b"[$][WS][EVENT]:linkid:0, connected\r\n\r\nOK\r\n")
        await mcu.send(b"AT+WSSENDRAW=0,300\r\n")
        await mcu.expect(b">>>\r\n")
        await mcu.send(b"a" * 150)
        await asyncio.sleep(0.2)
        connections[0].transport.abort()  # the server vanishes mid-block
        await asyncio.sleep(0.2)
        # The rest of the block is data, even when it looks like a command.
        await mcu.send(b"AT+TEST\r\n" + b"b" * 141)
        await mcu.expect(b"\r\nERROR: 2\r\n[$][WS][EVENT]:linkid:0, disconnect\r\n")
        await mcu.expect_silence(0.2)
        await mcu.command(b"AT+TEST", b"\r\nOK\r\n")
