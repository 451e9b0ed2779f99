"""The ws/wss server transport (plugins/gatewayd_ws/server.py) against real clients on
127.0.0.1: the `websockets` library, aiohttp's ClientSession.ws_connect, trustme TLS
material and plain sockets that read and write exact bytes. Nothing is mocked."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket
import ssl
import struct
import subprocess
import sys
import time

import aiohttp
import pytest
from conftest import mutual_tls_server_context
from gatewayd_ws import NAME
from gatewayd_ws.frames import encode_frame
from gatewayd_ws.plugin import WsTransport
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from gatewayd.plugin.manager import load_plugins
from gatewayd.transport import ListenRequest, Opcode, Refused, SocketOptions, TransportError

WAIT = 5.0  # upper bound for every wait below
ZERO_MASK = b"\0\0\0\0"  # a valid masking key that leaves the payload as it is


class Recorder:
    """LinkEvents that remember everything; ``echo`` sends each message back,
    ``gate`` (when cleared) makes data() block."""

    def __init__(self, connection, *, echo: bool = True,
                 gate: asyncio.Event | None = None) -> None:
        self.connection = connection
        self.echo = echo
        self.gate = gate
        self.messages: asyncio.Queue[tuple[bytes, Opcode, bool]] = asyncio.Queue()
        self.delivered = 0
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()
        self.closes: list[tuple[bool, int | None, BaseException | None]] = []
        self.ended = asyncio.Event()

    async def data(self, payload: bytes, *, opcode: Opcode = Opcode.BINARY, fin: bool = True,
                   peer: tuple[str, int] | None = None) -> None:
        self.delivered += 1
        self.messages.put_nowait((payload, opcode, fin))
        if self.gate is not None:
            await self.gate.wait()
        if self.echo:
            await self.connection.send(payload, opcode=opcode)

    def pong(self, payload: bytes) -> None:
        self.pongs.put_nowait(payload)

    def closed(self, *, by_peer: bool, code: int | None = None,
               error: BaseException | None = None) -> None:
        self.closes.append((by_peer, code, error))
        self.ended.set()

    async def message(self) -> tuple[bytes, Opcode, bool]:
        async with asyncio.timeout(WAIT):
            return await self.messages.get()

    async def wait_closed(self) -> tuple[bool, int | None, BaseException | None]:
        async with asyncio.timeout(WAIT):
            await self.ended.wait()
        await asyncio.sleep(0.02)  # a second report would show up by now
        assert len(self.closes) == 1, self.closes
        return self.closes[0]


class Harness:
    """A listener started through the registered transport; records the links it
    accepted and the peers it rejected."""

    def __init__(self, kind: str = "ws", host: str = "127.0.0.1", *, echo: bool = True,
                 gate: asyncio.Event | None = None, refuse: Refused | None = None,
                 on_accept=None, **request) -> None:
        self.request = ListenRequest(kind=kind, host=host, port=0,
                                     on_rejected=self._rejected, **request)
        self.echo, self.gate, self.refuse, self.on_accept = echo, gate, refuse, on_accept
        self.links: asyncio.Queue = asyncio.Queue()
        self.rejections: asyncio.Queue[tuple[tuple[str, int], TransportError]] = asyncio.Queue()
        self.connections: list = []
        self.accept_calls = 0

    def _accept(self, connection) -> Recorder:
        self.accept_calls += 1
        if self.refuse is not None:
            raise self.refuse
        events = Recorder(connection, echo=self.echo, gate=self.gate)
        self.connections.append(connection)
        self.links.put_nowait((connection, events))
        if self.on_accept is not None:
            self.on_accept(connection)
        return events

    def _rejected(self, peer: tuple[str, int], error: TransportError) -> None:
        self.rejections.put_nowait((peer, error))

    async def __aenter__(self) -> Harness:
        self.listener = await WsTransport().listen(self.request, self._accept)
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.listener.close()
        for connection in self.connections:
            connection.abort()

    @property
    def port(self) -> int:
        return self.listener.local[1]

    def url(self, path: str = "/") -> str:
        scheme = "wss" if self.request.kind == "wss" else "ws"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def link(self):
        async with asyncio.timeout(WAIT):
            return await self.links.get()

    async def rejection(self) -> tuple[tuple[str, int], TransportError]:
        async with asyncio.timeout(WAIT):
            return await self.rejections.get()


def client(url: str, **kwargs):
    """A websockets client without proxy, compression or pings of its own."""
    kwargs.setdefault("open_timeout", WAIT)
    return ws_connect(url, proxy=None, compression=None, ping_interval=None,
                      close_timeout=WAIT, **kwargs)


# -- raw sockets ---------------------------------------------------------------


def upgrade_request(path: str = "/", extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
            + b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n")


async def raw_client(port: int, path: str = "/"):
    """A hand-made client past the upgrade: (reader, writer) on the frame stream."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade_request(path))
    async with asyncio.timeout(WAIT):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


async def http_exchange(port: int, request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send *request*, read the answer to EOF: status line, headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(WAIT):
            answer = await reader.read(-1)  # the server closes after answering
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


async def read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bool, bytes]:
    """(fin, opcode, masked, payload) of the next frame the server sent."""
    async with asyncio.timeout(WAIT):
        first, second = await reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await reader.readexactly(8))[0]
        key = await reader.readexactly(4) if second & 0x80 else None
        payload = await reader.readexactly(size)
    assert key is None
    return bool(first & 0x80), first & 0x0F, bool(second & 0x80), payload


def close_code(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0]


def server_context(tls_files) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
    return context


def trusting_context(tls_files, *, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls_files["ca"]))
    if with_cert:
        context.load_cert_chain(tls_files["client_cert"], tls_files["client_key"])
    return context


# -- registration --------------------------------------------------------------


def test_one_transport_connects_and_listens_and_loads_aiohttp_lazily():
    plugins = load_plugins()
    transport = plugins.transports["ws"]
    assert transport is plugins.transports["wss"]
    assert isinstance(transport, WsTransport) and transport.name == NAME
    assert "server" in transport.summary
    # Loading the plugins must not import aiohttp; a listener does.
    code = ("import sys, asyncio\n"
            "from gatewayd.plugin.manager import load_plugins\n"
            "from gatewayd.transport import ListenRequest\n"
            "t = load_plugins().transports['ws']\n"
            "assert 'aiohttp' not in sys.modules\n"
            "async def main():\n"
            "    listener = await t.listen(ListenRequest('ws', '127.0.0.1', 0), print)\n"
            "    await listener.close()\n"
            "asyncio.run(main())\n"
            "assert 'aiohttp' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


async def test_a_wss_listener_needs_a_certificate():
    with pytest.raises(TransportError) as info:
        await WsTransport().listen(ListenRequest("wss", "127.0.0.1", 0), print)
    assert info.value.stage == "tls"


# -- traffic -------------------------------------------------------------------


async def test_text_and_binary_echo_with_websockets():
    async with Harness() as server, client(server.url("/chat?room=1")) as ws:
        connection, events = await server.link()
        assert connection.peer == ws.local_address[:2]
        assert connection.local == ("127.0.0.1", server.port)
        assert connection.path == "/chat?room=1"
        assert ("Upgrade", "websocket") in connection.headers
        await ws.send("héllo")
        assert await events.message() == ("héllo".encode(), Opcode.TEXT, True)
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\x01binary")
        assert await events.message() == (b"\x00\x01binary", Opcode.BINARY, True)
        assert await ws.recv() == b"\x00\x01binary"


async def test_text_and_binary_echo_with_aiohttp():
    async with Harness() as server, aiohttp.ClientSession() as session, \
            session.ws_connect(server.url(), autoping=False) as ws:
        _connection, events = await server.link()
        await ws.send_str("text")
        assert await ws.receive_str(timeout=WAIT) == "text"
        await ws.send_bytes(b"bytes")
        assert await ws.receive_bytes(timeout=WAIT) == b"bytes"
        assert events.delivered == 2


async def test_server_frames_are_unmasked_with_the_opcode_and_fin_asked():
    async with Harness(echo=False) as server:
        reader, writer = await raw_client(server.port)
        connection, _events = await server.link()
        await connection.send(b"frag-1", opcode=Opcode.TEXT, fin=False, masked=True)
        await connection.send(b"frag-2", opcode=Opcode.CONTINUATION, fin=True)
        await connection.send(b"odd", opcode=0x3)
        big = bytes(range(256)) * 300  # 76800 bytes: a 64-bit length
        await connection.send(big, opcode=Opcode.BINARY)
        assert await read_frame(reader) == (False, Opcode.TEXT, False, b"frag-1")
        assert await read_frame(reader) == (True, Opcode.CONTINUATION, False, b"frag-2")
        assert await read_frame(reader) == (True, 0x3, False, b"odd")
        assert await read_frame(reader) == (True, Opcode.BINARY, False, big)
        with pytest.raises(TransportError) as info:
            await connection.send(b"x", opcode=0x10)
        assert info.value.stage == "send"
        writer.close()


async def test_a_send_before_the_upgrade_waits_for_the_101():
    early: list[asyncio.Task] = []

    def send_at_once(connection) -> None:
        early.append(asyncio.ensure_future(connection.send(b"early", opcode=Opcode.TEXT)))

    async with Harness(echo=False, on_accept=send_at_once) as server, \
            client(server.url()) as ws:
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == "early"
        await early[0]


async def test_a_64_kib_message_is_one_data_call_even_in_fragments():
    payload = os.urandom(64 * 1024)
    async with Harness(echo=False) as server, client(server.url()) as ws:
        _connection, events = await server.link()
        await ws.send(payload)
        assert await events.message() == (payload, Opcode.BINARY, True)
        await ws.send([payload[:1000], payload[1000:40000], payload[40000:]])
        assert await events.message() == (payload, Opcode.BINARY, True)
        assert events.delivered == 2


async def test_backpressure_stops_the_client_and_loses_nothing():
    gate = asyncio.Event()
    chunk = 64 * 1024
    async with Harness(echo=False, gate=gate) as server:
        _reader, writer = await raw_client(server.port)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, chunk)
        _connection, events = await server.link()
        sent = 0
        stalled = False
        while sent < 400:  # 25 MiB: far beyond what the socket buffers hold
            writer.write(encode_frame(Opcode.BINARY, sent.to_bytes(4, "big") * (chunk // 4),
                                      fin=True, mask=ZERO_MASK))
            sent += 1
            try:
                await asyncio.wait_for(writer.drain(), 0.3)
            except TimeoutError:
                stalled = True
                break
        assert stalled, "the client could push 25 MiB into a blocked link"
        assert events.delivered == 1  # the first message waits at the gate
        gate.set()
        async with asyncio.timeout(WAIT):
            await writer.drain()
            for index in range(sent):
                payload, opcode, fin = await events.messages.get()
                assert (opcode, fin, len(payload)) == (Opcode.BINARY, True, chunk)
                assert payload == index.to_bytes(4, "big") * (chunk // 4)
        writer.close()


# -- admission -----------------------------------------------------------------


async def test_refused_by_accept_answers_its_http_status():
    async with Harness(refuse=Refused("no free link", status=429)) as server:
        status, _headers, body = await http_exchange(server.port, upgrade_request())
        assert status == b"HTTP/1.1 429 Too Many Requests"
        assert b"no free link" in body
        with pytest.raises(InvalidStatus) as info:
            async with client(server.url()):
                pass
        assert info.value.response.status_code == 429
        assert server.accept_calls == 2
        assert server.rejections.empty()  # the core refused: nothing to report


async def test_a_peer_outside_the_allow_list_gets_403():
    async with Harness(allow=(ipaddress.ip_network("10.0.0.0/8"),)) as server:
        with pytest.raises(InvalidStatus) as info:
            async with client(server.url()):
                pass
        assert info.value.response.status_code == 403
        peer, error = await server.rejection()
        assert peer[0] == "127.0.0.1" and error.stage == "refused"
        assert server.accept_calls == 0


async def test_token_required_in_the_header_or_the_query():
    async with Harness(token="s3cret") as server, aiohttp.ClientSession() as session:
        status, headers, _body = await http_exchange(server.port, upgrade_request())
        assert status.startswith(b"HTTP/1.1 401 ")
        assert headers["www-authenticate"] == "Bearer"
        assert (await server.rejection())[1].stage == "refused"
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(server.url("/?token=wrong"),
                                     headers={"Authorization": "Bearer nope"})
        assert info.value.status == 401
        assert (await server.rejection())[1].stage == "refused"
        assert server.accept_calls == 0

        async with session.ws_connect(server.url("/a"),
                                      headers={"Authorization": "Bearer s3cret"}) as ws:
            connection, _events = await server.link()
            assert connection.path == "/a"
            assert all(name.lower() != "authorization" for name, _ in connection.headers)
            await ws.send_str("in")
            assert await ws.receive_str(timeout=WAIT) == "in"
        async with session.ws_connect(server.url("/b?x=1&token=s3cret")) as ws:
            connection, _events = await server.link()
            assert connection.path == "/b?x=1"
            await ws.send_str("in")
            assert await ws.receive_str(timeout=WAIT) == "in"
        assert server.rejections.empty()


async def test_not_an_upgrade_gets_aiohttps_400():
    async with Harness() as server:
        status, _headers, body = await http_exchange(
            server.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 400 ")
        assert b"Upgrade" in body or b"UPGRADE" in body
        assert (await server.rejection())[1].stage == "handshake"
        status, _headers, _body = await http_exchange(server.port,
                                                       b"\x16\x03\x01 not http\r\n\r\n")
        assert b" 400 " in status  # aiohttp's parser answers
        assert (await server.rejection())[1].stage == "handshake"
        assert server.accept_calls == 0


@pytest.mark.parametrize("kind", ["ws", "wss"])
async def test_a_silent_peer_times_out(kind, tls_files):
    tls = server_context(tls_files) if kind == "wss" else None
    async with Harness(kind, tls=tls, handshake_timeout=0.3) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        peer, error = await server.rejection()
        assert error.stage == "timeout"
        assert 0.25 <= time.monotonic() - started < 2
        assert peer == writer.get_extra_info("sockname")[:2]
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""  # dropped
        writer.close()


# -- TLS -----------------------------------------------------------------------


async def test_wss_with_a_trustme_certificate(tls_files):
    async with Harness("wss", tls=server_context(tls_files)) as server, \
            client(server.url(), ssl=trusting_context(tls_files)) as ws:
        connection, events = await server.link()
        assert connection.get_extra_info("cipher") is not None
        assert connection.get_extra_info("socket") is not None
        assert not connection.get_extra_info("peercert")
        await ws.send("secret")
        assert await ws.recv() == "secret"
        assert await events.message() == (b"secret", Opcode.TEXT, True)


async def test_wss_client_certificate_required(tls_files):
    async with Harness("wss", tls=mutual_tls_server_context(tls_files)) as server:
        with pytest.raises((OSError, WebSocketException)):
            async with client(server.url(), ssl=trusting_context(tls_files)) as ws:
                await ws.recv()
        _peer, error = await server.rejection()
        assert error.stage == "tls"
        assert server.accept_calls == 0

        async with client(server.url(),
                          ssl=trusting_context(tls_files, with_cert=True)) as ws:
            connection, _events = await server.link()
            peercert = connection.get_extra_info("peercert")
            assert ("DNS", "mcu.gatewayd.test") in peercert["subjectAltName"]
            await ws.send(b"mutual")
            assert await ws.recv() == b"mutual"


# -- ping, pong, limits and violations -----------------------------------------


async def test_pings_both_ways():
    async with Harness() as server, client(server.url()) as ws:
        connection, events = await server.link()
        await connection.send(b"are you there", opcode=Opcode.PING)
        async with asyncio.timeout(WAIT):
            assert await events.pongs.get() == b"are you there"
            pong = await ws.ping(b"and you")
            await pong  # answered by the transport itself
        assert events.delivered == 0


async def test_a_message_over_max_message_ends_the_link_with_1009():
    async with Harness(max_message=1024) as server, client(server.url()) as ws:
        _connection, events = await server.link()
        await ws.send(b"x" * 1024)  # exactly the limit: fine
        assert await ws.recv() == b"x" * 1024
        await ws.send(b"y" * 1025)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(WAIT):
                await ws.recv()
        assert ws.close_code == 1009
        by_peer, code, error = await events.wait_closed()
        assert (by_peer, code) == (False, None)
        assert isinstance(error, aiohttp.WebSocketError) and error.code == 1009


@pytest.mark.parametrize(("frames", "expected"), [
    (encode_frame(Opcode.TEXT, b"ok", fin=True, mask=os.urandom(4))
     + encode_frame(Opcode.TEXT, b"unmasked", fin=True, mask=None), 1002),
    (encode_frame(Opcode.TEXT, b"ok", fin=True, mask=os.urandom(4))
     + encode_frame(Opcode.TEXT, b"\xff\xfe bad utf-8", fin=True, mask=os.urandom(4)), 1007),
    (encode_frame(Opcode.TEXT, b"ok", fin=True, mask=os.urandom(4))
     + encode_frame(0x3, b"reserved", fin=True, mask=os.urandom(4)), 1002),
], ids=["unmasked", "bad-utf8", "reserved-opcode"])
async def test_protocol_violations_get_the_rfc_close_code(frames, expected):
    async with Harness(echo=False) as server:
        reader, writer = await raw_client(server.port)
        _connection, events = await server.link()
        writer.write(frames)
        fin, opcode, _masked, payload = await read_frame(reader)
        assert (fin, opcode, close_code(payload)) == (True, Opcode.CLOSE, expected)
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""  # and the server closed TCP
        assert await events.message() == (b"ok", Opcode.TEXT, True)
        by_peer, code, error = await events.wait_closed()
        assert (by_peer, code) == (True, None)
        assert isinstance(error, aiohttp.WebSocketError) and error.code == expected
        writer.close()


# -- closing -------------------------------------------------------------------


async def test_client_close_is_echoed_and_reported():
    async with Harness() as server, client(server.url()) as ws:
        _connection, events = await server.link()
        await ws.close(code=1000)
        assert ws.close_code == 1000
        assert await events.wait_closed() == (True, 1000, None)


async def test_client_close_without_a_code_reports_1005():
    async with Harness() as server:
        reader, writer = await raw_client(server.port)
        _connection, events = await server.link()
        writer.write(encode_frame(Opcode.CLOSE, b"", fin=True, mask=os.urandom(4)))
        assert await read_frame(reader) == (True, Opcode.CLOSE, False, b"")
        assert await events.wait_closed() == (True, 1005, None)
        writer.close()


async def test_a_vanishing_client_is_reported_with_an_error():
    async with Harness() as server:
        _reader, writer = await raw_client(server.port)
        _connection, events = await server.link()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, no close frame
        by_peer, code, error = await events.wait_closed()
        assert (by_peer, code) == (True, None)
        assert isinstance(error, ConnectionError)


async def test_local_close_sends_1000_and_reports_once():
    async with Harness() as server, client(server.url()) as ws:
        connection, events = await server.link()
        started = time.monotonic()
        await connection.close()
        assert time.monotonic() - started < 0.9  # the client answered at once
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(WAIT):
                await ws.recv()
        assert ws.close_code == 1000
        assert await events.wait_closed() == (False, 1000, None)
        with pytest.raises(TransportError) as info:
            await connection.send(b"late")
        assert info.value.stage == "send"
        await connection.close()  # again: nothing more
        assert len(events.closes) == 1


async def test_local_close_gives_up_after_a_second_without_the_clients_close():
    async with Harness() as server:
        reader, writer = await raw_client(server.port)
        connection, events = await server.link()
        started = time.monotonic()
        await connection.close(code=4000)
        assert 0.9 <= time.monotonic() - started < 3
        _fin, opcode, _masked, payload = await read_frame(reader)
        assert (opcode, close_code(payload)) == (Opcode.CLOSE, 4000)
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
        assert await events.wait_closed() == (False, None, None)
        writer.close()


async def test_abort_drops_the_connection():
    async with Harness() as server, client(server.url()) as ws:
        connection, events = await server.link()
        connection.abort()
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(WAIT):
                await ws.recv()
        assert ws.close_code == 1006  # no close frame
        assert await events.wait_closed() == (False, None, None)


# -- the listener --------------------------------------------------------------


async def test_closing_the_listener_keeps_its_links():
    async with Harness() as server, client(server.url()) as ws:
        await server.link()
        await server.listener.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", server.port)
        await ws.send("still here")
        assert await ws.recv() == "still here"


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_every_interface_on_one_port_with_options():
    options = SocketOptions(nodelay=False, keepalive=True)
    async with Harness(host="", options=options) as server:
        assert server.listener.local == ("0.0.0.0", server.port)
        async with client(f"ws://127.0.0.1:{server.port}/") as ws:
            connection, _events = await server.link()
            sock = connection.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            await ws.send("v4")
            assert await ws.recv() == "v4"
        if _ipv6_loopback():
            async with client(f"ws://[::1]:{server.port}/") as ws:
                connection, _events = await server.link()
                assert connection.peer[0] == "::1"
                await ws.send("v6")
                assert await ws.recv() == "v6"


async def test_listen_on_a_busy_port_fails_at_the_listen_stage():
    async with Harness() as server:
        with pytest.raises(TransportError) as info:
            await WsTransport().listen(ListenRequest("ws", "127.0.0.1", server.port), print)
        assert info.value.stage == "listen"


@pytest.mark.parametrize("kind", ["ws", "wss"])
async def test_handshakes_in_progress_are_capped_per_listener(kind, tls_files):
    """Silent connections fill MAX_HANDSHAKES places; the next ones are closed
    at accept without a rejection report, and the server still upgrades once
    places are free again."""
    from gatewayd.transport.sockopts import MAX_HANDSHAKES

    tls = server_context(tls_files) if kind == "wss" else None
    async with Harness(kind, tls=tls, handshake_timeout=1.0) as server:
        silent = [await asyncio.open_connection("127.0.0.1", server.port)
                  for _ in range(MAX_HANDSHAKES)]
        extra = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
        async with asyncio.timeout(WAIT):
            for reader, _ in extra:
                assert await reader.read() == b""  # closed at once, before the deadline
        assert server.rejections.empty()
        for _ in silent:  # the deadline frees the places
            assert (await server.rejection())[1].stage == "timeout"
        ssl_context = trusting_context(tls_files) if kind == "wss" else None
        async with client(server.url(), ssl=ssl_context) as ws:
            await server.link()
            await ws.send("still serving")
        for _, writer in silent + extra:
            writer.close()


def test_preload_imports_aiohttp_before_any_link():
    """The daemon preloads at start, so a listener later needs no import."""
    code = ("import sys\n"
            "from gatewayd.plugin.manager import load_plugins\n"
            "plugins = load_plugins()\n"
            "assert 'aiohttp' not in sys.modules\n"
            "plugins.preload()\n"
            "assert 'gatewayd_ws.server' in sys.modules\n"
            "assert 'gatewayd_sockets.transport' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
