"""The ws/wss client transport (plugins/gatewayd_ws) against real peers: the
`websockets` library's asyncio server, trustme TLS material, plain sockets and
an aiohttp web app. Nothing crossing a wire is mocked."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import socket
import struct
import time

import pytest
import trustme
from aiohttp import web
from conftest import echo, mutual_tls_server_context, port_of
from gatewayd_ws.client import USER_AGENT, WsClientTransport, request_url
from gatewayd_ws.frames import encode_frame, mask_payload
from websockets.asyncio.server import serve

from gatewayd.config import CertSuite
from gatewayd.links.tls import client_context
from gatewayd.plugin.manager import load_plugins
from gatewayd.transport import ClientRequest, Opcode, SocketOptions, TransportError

WAIT = 5.0  # upper bound for every wait below


class Recorder:
    """LinkEvents that remember everything; ``gate`` (when set) makes data() block."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
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
        await asyncio.sleep(0.05)  # a second report would show up by now
        assert len(self.closes) == 1, self.closes
        return self.closes[0]


def ws_request(port: int, **kwargs) -> ClientRequest:
    kwargs.setdefault("connect_timeout", WAIT)
    return ClientRequest(kind=kwargs.pop("kind", "ws"), host=kwargs.pop("host", "127.0.0.1"),
                         port=port, **kwargs)


async def open_link(port: int, events: Recorder | None = None, **kwargs):
    events = events or Recorder()
    connection = await WsClientTransport().connect(ws_request(port, **kwargs), events)
    return connection, events


async def expect_failure(request: ClientRequest) -> TransportError:
    events = Recorder()
    with pytest.raises(TransportError) as info:
        async with asyncio.timeout(WAIT + 2):
            await WsClientTransport().connect(request, events)
    assert events.closes == []
    return info.value


@contextlib.asynccontextmanager
async def raw_ws_peer():
    """A hand-written WebSocket server: it answers the handshake and hands the raw
    stream over, so a test reads and writes exact frame bytes. Yields the port and
    a future of (reader, writer)."""
    accepted = asyncio.get_running_loop().create_future()

    async def handshake(reader, writer):
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(
            key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(handshake, "127.0.0.1", 0)
    async with server:
        try:
            yield server.sockets[0].getsockname()[1], accepted
        finally:
            if accepted.done():
                accepted.result()[1].close()


async def read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bool, bytes]:
    """(fin, opcode, masked, unmasked payload) of the next frame the client sent."""
    async with asyncio.timeout(WAIT):
        first, second = await reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await reader.readexactly(8))[0]
        key = await reader.readexactly(4) if second & 0x80 else None
        payload = await reader.readexactly(size)
    if key is not None:
        payload = mask_payload(payload, key)
    return bool(first & 0x80), first & 0x0F, key is not None, payload



# -- encode_frame: RFC 6455 §5.7 ---------------------------------------------


def test_unmasked_hello():
    assert encode_frame(1, b"Hello", fin=True, mask=None) == bytes.fromhex("810548656c6c6f")


def test_masked_hello():
    frame = encode_frame(1, b"Hello", fin=True, mask=bytes.fromhex("37fa213d"))
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


def test_fragmented_unmasked_hello():
    assert encode_frame(1, b"Hel", fin=False, mask=None) == bytes.fromhex("010348656c")
    assert encode_frame(0, b"lo", fin=True, mask=None) == bytes.fromhex("80026c6f")


def test_unmasked_ping_and_masked_pong():
    assert encode_frame(9, b"Hello", fin=True, mask=None) == bytes.fromhex("890548656c6c6f")
    frame = encode_frame(0xA, b"Hello", fin=True, mask=bytes.fromhex("37fa213d"))
    assert frame == bytes.fromhex("8a8537fa213d7f9f4d5158")


def test_256_bytes_use_the_16_bit_length():
    frame = encode_frame(2, bytes(256), fin=True, mask=None)
    assert frame[:4] == bytes.fromhex("827e0100") and len(frame) == 4 + 256
    assert encode_frame(2, bytes(125), fin=True, mask=None)[:2] == bytes.fromhex("827d")
    assert encode_frame(2, bytes(126), fin=True, mask=None)[:4] == bytes.fromhex("827e007e")
    assert encode_frame(2, bytes(65535), fin=True, mask=None)[:4] == bytes.fromhex("827effff")


def test_64_kib_uses_the_64_bit_length():
    frame = encode_frame(2, bytes(65536), fin=True, mask=None)
    assert frame[:10] == bytes.fromhex("827f0000000000010000") and len(frame) == 10 + 65536


def test_masked_long_frame_sets_the_mask_bit_and_key():
    key = bytes.fromhex("01020304")
    frame = encode_frame(2, b"\x00" * 300, fin=True, mask=key)
    assert frame[:4] == bytes.fromhex("82fe012c") and frame[4:8] == key
    assert frame[8:] == key * 75


def test_masking_is_its_own_inverse_for_16_kib():
    payload = bytes(range(256)) * 64 + b"xyz"
    key = b"\x9a\x00\xff\x13"
    masked = mask_payload(payload, key)
    assert masked != payload
    assert mask_payload(masked, key) == payload
    assert masked[:4] == bytes(p ^ k for p, k in zip(payload[:4], key, strict=True))
    assert mask_payload(b"", key) == b""


def test_reserved_opcodes_encode_and_bad_arguments_are_refused():
    assert encode_frame(3, b"", fin=True, mask=None) == b"\x83\x00"
    with pytest.raises(ValueError):
        encode_frame(16, b"", fin=True, mask=None)
    with pytest.raises(ValueError):
        encode_frame(1, b"", fin=True, mask=b"\x00")


def test_url_from_request():
    assert str(request_url(ClientRequest("ws", "::1", 8080, "/chat?x=1"))) \
        == "ws://[::1]:8080/chat?x=1"
    assert str(request_url(ClientRequest("wss", "example.com", 443, ""))) \
        == "wss://example.com/"
    assert request_url(ClientRequest("ws", "h", 80, "/a%20b?q=1")).raw_path_qs == "/a%20b?q=1"


# -- the plugin ----------------------------------------------------------------


def test_the_transport_is_registered_for_ws_and_wss():
    plugins = load_plugins()
    assert plugins.transports["ws"].name == "aiohttp-ws-client"
    assert plugins.transports["wss"] is plugins.transports["ws"]
    [provided] = [p for p in plugins.provided_transports if p.name == "aiohttp-ws-client"]
    assert provided.distribution.startswith("gatewayd ")
    assert provided.plugin == "ws-client"


# -- traffic -------------------------------------------------------------------


async def test_text_and_binary_echo(ws_echo):
    connection, events = await open_link(port_of(ws_echo))
    assert connection.peer == ("127.0.0.1", port_of(ws_echo))
    assert connection.local[0] == "127.0.0.1" and connection.local[1] > 0
    await connection.send(b"hello", opcode=Opcode.TEXT)
    assert await events.message() == (b"hello", Opcode.TEXT, True)
    payload = bytes(range(256)) * 64  # 16 KiB, as large as one AT+WSSEND
    await connection.send(payload, opcode=Opcode.BINARY)
    assert await events.message() == (payload, Opcode.BINARY, True)
    await connection.send(b"", opcode=Opcode.BINARY)
    assert await events.message() == (b"", Opcode.BINARY, True)
    await connection.close()
    assert events.closes[0][0] is False


async def test_invalid_utf8_text_is_delivered_as_sent():
    async def raw_text(ws):
        await ws.send(b"\xff\xfe", text=True)
        await ws.wait_closed()

    async with serve(raw_text, "127.0.0.1", 0) as server:
        connection, events = await open_link(port_of(server))
        assert await events.message() == (b"\xff\xfe", Opcode.TEXT, True)
        connection.abort()


async def test_fragmented_message_is_reassembled_by_the_server(ws_echo):
    connection, events = await open_link(port_of(ws_echo))
    await connection.send(b"Hel", opcode=Opcode.TEXT, fin=False)
    await connection.send(b"lo, ", opcode=Opcode.CONTINUATION, fin=False)
    await connection.send(b"world", opcode=Opcode.CONTINUATION, fin=True)
    assert await events.message() == (b"Hello, world", Opcode.TEXT, True)
    await connection.close()


async def test_headers_subprotocol_and_authorization_arrive():
    seen = asyncio.get_running_loop().create_future()

    async def inspect(ws):
        seen.set_result((ws.request.path, ws.request.headers, ws.subprotocol))
        await ws.wait_closed()

    async with serve(inspect, "127.0.0.1", 0, subprotocols=["chat"]) as server:
        connection, _ = await open_link(
            port_of(server), path="/socket?id=7",
            headers=(("X-Device", "mcu-1"), ("Authorization", "Bearer xyz"),
                     ("X-Multi", "a"), ("X-Multi", "b")),
            subprotocols=("chat",))
        async with asyncio.timeout(WAIT):
            path, headers, subprotocol = await seen
        assert path == "/socket?id=7"
        assert headers["X-Device"] == "mcu-1"
        assert headers["Authorization"] == "Bearer xyz"
        assert headers.get_all("X-Multi") == ["a", "b"]
        assert headers["User-Agent"] == USER_AGENT
        assert headers["Sec-WebSocket-Protocol"] == "chat"
        assert subprotocol == "chat"
        assert "Accept-Encoding" not in headers
        assert connection.subprotocol == "chat"
        await connection.close()


async def test_a_given_user_agent_replaces_the_default():
    seen = asyncio.get_running_loop().create_future()

    async def inspect(ws):
        seen.set_result(ws.request.headers.get_all("User-Agent"))
        await ws.wait_closed()

    async with serve(inspect, "127.0.0.1", 0) as server:
        connection, _ = await open_link(port_of(server), headers=(("user-agent", "mine/1"),))
        async with asyncio.timeout(WAIT):
            assert await seen == ["mine/1"]
        await connection.close()


async def test_server_ping_is_answered_with_the_same_payload():
    answered = asyncio.get_running_loop().create_future()

    async def pinger(ws):
        waiter = await ws.ping(b"x")
        await waiter
        answered.set_result(True)
        await ws.wait_closed()

    async with serve(pinger, "127.0.0.1", 0) as server:
        connection, events = await open_link(port_of(server))
        async with asyncio.timeout(WAIT):
            assert await answered
        assert events.pongs.empty()
        await connection.close()


async def test_our_ping_brings_a_pong_event(ws_echo):
    connection, events = await open_link(port_of(ws_echo))
    await connection.send(b"are you there", opcode=Opcode.PING)
    async with asyncio.timeout(WAIT):
        assert await events.pongs.get() == b"are you there"
    await connection.send(b"", opcode=Opcode.PING)
    async with asyncio.timeout(WAIT):
        assert await events.pongs.get() == b""
    assert events.messages.empty()
    await connection.close()


# -- endings -------------------------------------------------------------------


async def test_server_close_is_echoed_and_reported_once():
    reply = asyncio.get_running_loop().create_future()

    async def closer(ws):
        await ws.close(1000, "bye")
        reply.set_result(ws.protocol.close_rcvd)

    async with serve(closer, "127.0.0.1", 0) as server:
        connection, events = await open_link(port_of(server))
        assert await events.wait_closed() == (True, 1000, None)
        async with asyncio.timeout(WAIT):
            rcvd = await reply
        assert rcvd is not None and rcvd.code == 1000
        with pytest.raises(TransportError) as info:
            await connection.send(b"late")
        assert info.value.stage == "send"
        await connection.close()  # harmless afterwards
        connection.abort()
        assert len(events.closes) == 1


async def test_server_close_with_an_application_code():
    async def closer(ws):
        await ws.close(4001)

    async with serve(closer, "127.0.0.1", 0) as server:
        _, events = await open_link(port_of(server))
        assert await events.wait_closed() == (True, 4001, None)


async def test_server_vanishing_is_a_drop_without_code():
    async def vanish(ws):
        ws.transport.abort()  # no close frame, connection reset

    async with serve(vanish, "127.0.0.1", 0) as server:
        connection, events = await open_link(port_of(server))
        by_peer, code, error = await events.wait_closed()
        assert (by_peer, code) == (True, None)
        assert error is not None
        with pytest.raises(TransportError):
            await connection.send(b"late")


async def test_server_closing_tcp_without_close_frame_is_a_drop():
    async def hang_up(ws):
        ws.transport.close()  # FIN, no close frame

    async with serve(hang_up, "127.0.0.1", 0) as server:
        _, events = await open_link(port_of(server))
        by_peer, code, _ = await events.wait_closed()
        assert (by_peer, code) == (True, None)


async def test_local_close_sends_the_code_and_reports_once():
    code_seen = asyncio.get_running_loop().create_future()

    async def watch(ws):
        await ws.wait_closed()
        code_seen.set_result(ws.close_code)

    async with serve(watch, "127.0.0.1", 0) as server:
        connection, events = await open_link(port_of(server))
        started = time.monotonic()
        async with asyncio.timeout(WAIT):
            await connection.close(code=1000)
        assert time.monotonic() - started < 1.0  # the server answered; no 1 s wait
        async with asyncio.timeout(WAIT):
            assert await code_seen == 1000
        assert await events.wait_closed() == (False, 1000, None)
        with pytest.raises(TransportError):
            await connection.send(b"late")


async def test_local_close_gives_up_after_a_second_without_answer():
    async with raw_ws_peer() as (port, accepted):
        connection, events = await open_link(port)
        async with asyncio.timeout(WAIT):
            reader, _ = await accepted
        started = time.monotonic()
        async with asyncio.timeout(WAIT):
            await connection.close(code=1001)
        assert 0.9 < time.monotonic() - started < 2.0
        assert await events.wait_closed() == (False, None, None)
        assert await read_frame(reader) == (True, 8, True, struct.pack("!H", 1001))


async def test_local_close_while_the_receiver_is_blocked():
    async def talk(ws):
        for _ in range(3):
            await ws.send(b"more")
        await ws.wait_closed()

    async with serve(talk, "127.0.0.1", 0) as server:
        connection, events = await open_link(port_of(server), Recorder(asyncio.Event()))
        await events.message()
        started = time.monotonic()
        async with asyncio.timeout(WAIT):
            await connection.close()
        assert time.monotonic() - started < 2.0
        assert await events.wait_closed() == (False, None, None)
        assert events.delivered == 1


async def test_a_close_frame_without_code_reports_1005_and_is_echoed_empty():
    async with raw_ws_peer() as (port, accepted):
        _, events = await open_link(port)
        async with asyncio.timeout(WAIT):
            reader, writer = await accepted
        writer.write(b"\x88\x00")
        assert await events.wait_closed() == (True, 1005, None)
        assert await read_frame(reader) == (True, 8, True, b"")


async def test_frames_on_the_wire_are_masked_with_fin_and_opcode_as_asked():
    async with raw_ws_peer() as (port, accepted):
        connection, events = await open_link(port)
        async with asyncio.timeout(WAIT):
            reader, writer = await accepted
        await connection.send(b"abc", opcode=Opcode.TEXT, fin=False)
        assert await read_frame(reader) == (False, 1, True, b"abc")
        await connection.send(b"", opcode=Opcode.CONTINUATION, fin=True)
        assert await read_frame(reader) == (True, 0, True, b"")
        big = bytes(range(256)) * 300
        await connection.send(big, opcode=Opcode.BINARY)
        assert await read_frame(reader) == (True, 2, True, big)
        await connection.send(b"odd", opcode=3)
        assert await read_frame(reader) == (True, 3, True, b"odd")
        with pytest.raises(TransportError):
            await connection.send(b"", opcode=16)
        writer.write(encode_frame(9, b"hb", fin=True, mask=None))  # a server ping
        assert await read_frame(reader) == (True, 10, True, b"hb")
        writer.write(encode_frame(2, b"two", fin=False, mask=None)
                     + encode_frame(0, b" parts", fin=True, mask=None))
        assert await events.message() == (b"two parts", Opcode.BINARY, True)
        connection.abort()


async def test_with_frames_each_data_frame_is_delivered_with_its_opcode_and_fin():
    async with raw_ws_peer() as (port, accepted):
        _, events = await open_link(port, frames=True)
        async with asyncio.timeout(WAIT):
            reader, writer = await accepted
        writer.write(encode_frame(1, b"ab", fin=False, mask=None)
                     + encode_frame(9, b"hb", fin=True, mask=None)  # a ping between
                     + encode_frame(0, b"cd", fin=False, mask=b"\x01\x02\x03\x04")
                     + encode_frame(0, b"", fin=True, mask=None)
                     + encode_frame(2, b"x" * 70000, fin=True, mask=None))
        assert await events.message() == (b"ab", Opcode.TEXT, False)
        assert await read_frame(reader) == (True, 10, True, b"hb")
        assert await events.message() == (b"cd", Opcode.CONTINUATION, False)
        assert await events.message() == (b"", Opcode.CONTINUATION, True)
        assert await events.message() == (b"x" * 70000, Opcode.BINARY, True)
        writer.write(b"\x88\x02\x03\xe8")
        assert await events.wait_closed() == (True, 1000, None)


@pytest.mark.parametrize(("frame", "code"), [
    (encode_frame(0, b"cd", fin=True, mask=None), 1002),  # no message to continue
    (encode_frame(1, b"a", fin=False, mask=None) + encode_frame(2, b"b", fin=True, mask=None),
     1002),  # a new message inside one
    (encode_frame(9, b"p", fin=False, mask=None), 1002),  # a fragmented ping
    (b"\xc1\x01a", 1002),  # RSV1 without an extension
    (b"\x82\x7f" + struct.pack("!Q", 1 << 40), 1009),  # larger than MAX_MESSAGE
])
async def test_with_frames_protocol_errors_end_the_link(frame, code):
    async with raw_ws_peer() as (port, accepted):
        _, events = await open_link(port, frames=True)
        async with asyncio.timeout(WAIT):
            reader, writer = await accepted
        writer.write(frame)
        by_peer, _, error = await events.wait_closed()
        assert by_peer and error is not None
        assert await read_frame(reader) == (True, 8, True, struct.pack("!H", code))


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000])
async def test_with_frames_a_close_code_no_endpoint_may_send_is_a_protocol_error(code):
    """Autobahn 7.9.x: the link fails with 1002 instead of echoing the code."""
    reply = asyncio.get_running_loop().create_future()

    async def bad_close(ws):
        # websockets refuses to send such a code itself: the frame goes out raw.
        ws.transport.write(encode_frame(8, struct.pack("!H", code), fin=True, mask=None))
        with contextlib.suppress(Exception):
            await ws.wait_closed()
        reply.set_result(ws.protocol.close_rcvd)

    async with serve(bad_close, "127.0.0.1", 0) as server:
        _, events = await open_link(port_of(server), frames=True)
        by_peer, end_code, error = await events.wait_closed()
        assert by_peer and end_code is None and error is not None
        async with asyncio.timeout(WAIT):
            rcvd = await reply
        assert rcvd is not None and rcvd.code == 1002


@pytest.mark.parametrize("code", [1000, 1003, 1007, 1014, 3000, 4999])
async def test_with_frames_a_valid_close_code_is_echoed(code):
    reply = asyncio.get_running_loop().create_future()

    async def closer(ws):
        await ws.close(code)
        reply.set_result(ws.protocol.close_rcvd)

    async with serve(closer, "127.0.0.1", 0) as server:
        _, events = await open_link(port_of(server), frames=True)
        assert await events.wait_closed() == (True, code, None)
        async with asyncio.timeout(WAIT):
            rcvd = await reply
        assert rcvd is not None and rcvd.code == code


async def test_abort_sends_nothing_and_reports_a_local_end():
    frames = asyncio.get_running_loop().create_future()

    async def watch(ws):
        await ws.wait_closed()
        frames.set_result(ws.protocol.close_rcvd)

    async with serve(watch, "127.0.0.1", 0) as server:
        connection, events = await open_link(port_of(server))
        connection.abort()
        async with asyncio.timeout(WAIT):
            assert await frames is None  # no close frame arrived
        assert await events.wait_closed() == (False, None, None)
        connection.abort()
        await connection.close()
        assert len(events.closes) == 1


# -- TLS -----------------------------------------------------------------------


async def test_wss_verifies_with_the_trustme_ca(tls_files):
    server_context = mutual_tls_server_context(tls_files)
    server_context.verify_mode = 0  # ssl.CERT_NONE: no client certificate needed here
    async with serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        context = client_context(CertSuite(ca=tls_files["ca"]))
        connection, events = await open_link(port_of(server), kind="wss", tls=context)
        await connection.send(b"secret", opcode=Opcode.TEXT)
        assert await events.message() == (b"secret", Opcode.TEXT, True)
        await connection.close()


async def test_wss_with_mutual_tls_and_a_server_hostname(tls_files):
    async with serve(echo, "127.0.0.1", 0, ssl=mutual_tls_server_context(tls_files)) as server:
        suite = CertSuite(ca=tls_files["ca"], cert=tls_files["client_cert"],
                          key=tls_files["client_key"])
        connection, events = await open_link(port_of(server), kind="wss",
                                             tls=client_context(suite),
                                             server_hostname="localhost")
        await connection.send(b"\x00\x01", opcode=Opcode.BINARY)
        assert await events.message() == (b"\x00\x01", Opcode.BINARY, True)
        await connection.close()


async def test_wss_with_a_wrong_ca_fails_at_tls(tls_files, tmp_path):
    other = trustme.CA()
    other.cert_pem.write_to_path(tmp_path / "other-ca.pem")
    server_context = mutual_tls_server_context(tls_files)
    server_context.verify_mode = 0
    async with serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        context = client_context(CertSuite(ca=tmp_path / "other-ca.pem"))
        error = await expect_failure(ws_request(port_of(server), kind="wss", tls=context))
        assert error.stage == "tls"


async def test_wss_with_the_wrong_host_name_fails_at_tls(tls_files):
    server_context = mutual_tls_server_context(tls_files)
    server_context.verify_mode = 0
    async with serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        context = client_context(CertSuite(ca=tls_files["ca"]))
        error = await expect_failure(ws_request(port_of(server), kind="wss", tls=context,
                                                server_hostname="elsewhere.test"))
        assert error.stage == "tls"


async def test_wss_to_a_plain_server_fails_at_tls(ws_echo, tls_files):
    context = client_context(CertSuite(ca=tls_files["ca"]))
    error = await expect_failure(ws_request(port_of(ws_echo), kind="wss", tls=context))
    assert error.stage == "tls"


# -- failures to open ----------------------------------------------------------


async def test_connection_refused_fails_at_connect():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await expect_failure(ws_request(port))
    assert error.stage == "connect"


async def test_unknown_host_fails_at_resolve():
    error = await expect_failure(ws_request(80, host="nonexistent.invalid"))
    assert error.stage == "resolve"


async def test_a_plain_http_server_fails_at_handshake():
    async def hello(_request):
        return web.Response(text="not a websocket")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        error = await expect_failure(ws_request(port))
        assert error.stage == "handshake"
        assert "200" in str(error)
    finally:
        await runner.cleanup()


async def test_a_wrong_accept_key_fails_at_handshake():
    finished = asyncio.Event()

    async def liar(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n")
        await reader.read()  # until the client gives up
        writer.close()
        finished.set()

    server = await asyncio.start_server(liar, "127.0.0.1", 0)
    async with server:
        error = await expect_failure(ws_request(server.sockets[0].getsockname()[1]))
        assert error.stage == "handshake"
        async with asyncio.timeout(WAIT):
            await finished.wait()  # the client hung up


async def test_a_silent_listener_times_out_within_the_timeout():
    with socket.create_server(("127.0.0.1", 0), backlog=4) as silent:  # never accepts
        started = time.monotonic()
        error = await expect_failure(ws_request(silent.getsockname()[1], connect_timeout=0.5))
        elapsed = time.monotonic() - started
    assert error.stage == "timeout"
    assert 0.4 < elapsed < 1.5


# -- socket options ------------------------------------------------------------


async def test_socket_options_are_applied(ws_echo):
    options = SocketOptions(nodelay=False, keepalive=True, keepalive_idle=30,
                            keepalive_interval=5, keepalive_count=4,
                            send_timeout=2.5, recv_timeout=1.0)
    connection, _ = await open_link(port_of(ws_echo), options=options)
    sock = connection.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
    size = struct.calcsize("@ll")
    sndtimeo = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, size)
    assert struct.unpack("@ll", sndtimeo) == (2, 500000)
    await connection.close()


# -- backpressure --------------------------------------------------------------


async def test_a_blocked_receiver_throttles_the_server():
    count, size = 200, 64 * 1024
    sent = 0
    done = asyncio.get_running_loop().create_future()

    async def flood(ws):
        nonlocal sent
        # A small kernel send buffer on the server, so that what piles up is on our side.
        ws.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        for i in range(count):
            await ws.send(struct.pack("!I", i) + bytes([i % 251]) * (size - 4))
            sent += 1
        done.set_result(True)
        await ws.wait_closed()

    gate = asyncio.Event()
    async with serve(flood, "127.0.0.1", 0, max_size=None) as server:
        connection, events = await open_link(port_of(server), Recorder(gate))
        # Wait until the server is stuck: its count stops moving.
        async with asyncio.timeout(WAIT):
            last = -1
            while sent != last:
                last = sent
                await asyncio.sleep(0.3)
        assert events.delivered == 1  # data() was awaited before reading on
        assert sent <= count // 4, f"server was not throttled: sent {sent} of {count}"
        gate.set()
        for i in range(count):
            payload, opcode, fin = await events.message()
            assert (opcode, fin, len(payload)) == (Opcode.BINARY, True, size)
            assert payload == struct.pack("!I", i) + bytes([i % 251]) * (size - 4)
        async with asyncio.timeout(WAIT):
            assert await done
        await connection.close()
