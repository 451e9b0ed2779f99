"""The tcp/udp/tls transport (gatewayd_sockets) against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

import pytest
import trustme
from gatewayd_sockets import KINDS, NAME
from gatewayd_sockets.plugin import Sockets
from gatewayd_sockets.transport import SocketTransport

from gatewayd.plugin.manager import load_plugins
from gatewayd.transport import (
    ClientRequest,
    Connection,
    ListenRequest,
    Opcode,
    SocketOptions,
    TransportError,
)

WAIT = 5.0


class Recorder:
    """LinkEvents that records what arrives; ``gate`` cleared = data() blocks."""

    def __init__(self, *, blocked: bool = False) -> None:
        self.items: list[tuple[bytes, tuple[str, int] | None]] = []
        self.closes: list[tuple[bool, int | None, BaseException | None]] = []
        self.gate = asyncio.Event()
        if not blocked:
            self.gate.set()
        self.pending = 0  # data() calls waiting at the gate

    async def data(self, payload: bytes, *, opcode: Opcode = Opcode.BINARY, fin: bool = True,
                   peer: tuple[str, int] | None = None) -> None:
        self.pending += 1
        try:
            await self.gate.wait()
        finally:
            self.pending -= 1
        self.items.append((payload, peer))

    def pong(self, payload: bytes) -> None:
        raise AssertionError("no pongs on sockets")

    def closed(self, *, by_peer: bool, code: int | None = None,
               error: BaseException | None = None) -> None:
        self.closes.append((by_peer, code, error))

    @property
    def received(self) -> bytes:
        return b"".join(payload for payload, _ in self.items)


class Echo(Recorder):
    """Records, then sends every payload back (to its sender for UDP)."""

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self.connection = connection

    async def data(self, payload: bytes, *, opcode: Opcode = Opcode.BINARY, fin: bool = True,
                   peer: tuple[str, int] | None = None) -> None:
        await super().data(payload, peer=peer)
        await self.connection.send(payload, peer=peer)


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def transport() -> Sockets:
    return Sockets()  # through the lazy registration, as the core gets it


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


class UdpEcho(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.senders: list[tuple[str, int]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.senders.append(addr)
        self.transport.sendto(data, addr)


def test_plugin_serves_tcp_udp_tls() -> None:
    plugins = load_plugins()
    for kind in ("tcp", "udp", "tls"):
        assert plugins.transports[kind].name == NAME
    assert {"tcp", "udp", "tls"} == KINDS
    assert any(p.name == NAME and p.plugin == "sockets" for p in plugins.provided_transports)


async def test_tcp_echo_round_trip_and_local_close(transport: Sockets) -> None:
    seen_eof = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await echo_handler(reader, writer)
        seen_eof.set()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        events = Recorder()
        conn = await transport.connect(ClientRequest("tcp", "127.0.0.1", port), events)
        assert conn.peer == ("127.0.0.1", port)
        assert conn.local[0] == "127.0.0.1" and conn.local[1] > 0
        await conn.send(b"hello ")
        await conn.send(b"world")
        await until(lambda: events.received == b"hello world")
        assert all(peer == ("127.0.0.1", port) for _, peer in events.items)
        await conn.close()
        async with asyncio.timeout(WAIT):
            await seen_eof.wait()  # the server read our FIN
        assert events.closes == [(False, None, None)]
        with pytest.raises(TransportError) as info:
            await conn.send(b"late")
        assert info.value.stage == "send"


async def test_tcp_abort_reports_local_close(transport: Sockets) -> None:
    server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
    async with server:
        events = Recorder()
        conn = await transport.connect(
            ClientRequest("tcp", "127.0.0.1", server.sockets[0].getsockname()[1]), events)
        conn.abort()
        await until(lambda: events.closes != [])
        await asyncio.sleep(0.02)
        assert events.closes == [(False, None, None)]


def _server_context(tls_files) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
    return context


async def test_tls_client_verifies_with_ca(transport: Sockets, tls_files) -> None:
    server = await asyncio.start_server(echo_handler, "127.0.0.1", 0,
                                        ssl=_server_context(tls_files))
    port = server.sockets[0].getsockname()[1]
    async with server:
        client = ssl.create_default_context(cafile=str(tls_files["ca"]))
        events = Recorder()
        conn = await transport.connect(
            ClientRequest("tls", "127.0.0.1", port, tls=client, connect_timeout=WAIT), events)
        assert conn.get_extra_info("peercert") is not None
        await conn.send(b"secret")
        await until(lambda: events.received == b"secret")
        await conn.close()
        assert events.closes == [(False, None, None)]

        # server_hostname names the certificate's other identity.
        events = Recorder()
        conn = await transport.connect(
            ClientRequest("tls", "127.0.0.1", port, tls=client, server_hostname="localhost"),
            events)
        await conn.send(b"x")
        await until(lambda: events.received == b"x")
        conn.abort()


async def test_tls_wrong_ca_fails_at_tls_stage(transport: Sockets, tls_files) -> None:
    server = await asyncio.start_server(echo_handler, "127.0.0.1", 0,
                                        ssl=_server_context(tls_files))
    port = server.sockets[0].getsockname()[1]
    async with server:
        other = ssl.create_default_context()
        trustme.CA().configure_trust(other)
        with pytest.raises(TransportError) as info:
            await transport.connect(
                ClientRequest("tls", "127.0.0.1", port, tls=other, connect_timeout=WAIT),
                Recorder())
        assert info.value.stage == "tls"
        # A name the certificate does not hold fails at the same stage.
        good = ssl.create_default_context(cafile=str(tls_files["ca"]))
        with pytest.raises(TransportError) as info:
            await transport.connect(
                ClientRequest("tls", "127.0.0.1", port, tls=good,
                              server_hostname="elsewhere.test", connect_timeout=WAIT),
                Recorder())
        assert info.value.stage == "tls"


async def test_tls_against_plain_server_fails_at_tls_stage(transport: Sockets, tls_files) -> None:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    async with server:
        context = ssl.create_default_context(cafile=str(tls_files["ca"]))
        with pytest.raises(TransportError) as info:
            await transport.connect(
                ClientRequest("tls", "127.0.0.1", server.sockets[0].getsockname()[1],
                              tls=context, connect_timeout=WAIT), Recorder())
        assert info.value.stage == "tls"


async def test_udp_client_bound_to_local_port(transport: Sockets) -> None:
    loop = asyncio.get_running_loop()
    echo_transport, echo = await loop.create_datagram_endpoint(
        UdpEcho, local_addr=("127.0.0.1", 0))
    echo_addr = echo_transport.get_extra_info("sockname")
    try:
        local_port = free_port(socket.SOCK_DGRAM)
        events = Recorder()
        conn = await transport.connect(
            ClientRequest("udp", "127.0.0.1", echo_addr[1], local_port=local_port), events)
        assert conn.local[1] == local_port
        assert conn.peer == echo_addr
        await conn.send(b"one")
        await conn.send(b"two-two")
        await conn.send(b"three", peer=echo_addr)  # the connected address is accepted
        await until(lambda: len(events.items) == 3)
        assert events.items == [(b"one", echo_addr), (b"two-two", echo_addr),
                                (b"three", echo_addr)]
        assert {port for _, port in echo.senders} == {local_port}
        with pytest.raises(TransportError) as info:
            await conn.send(b"elsewhere", peer=("127.0.0.1", 9))
        assert info.value.stage == "send"
        await conn.close()
        assert events.closes == [(False, None, None)]
    finally:
        echo_transport.close()


async def test_udp_client_ipv6_literal(transport: Sockets) -> None:
    loop = asyncio.get_running_loop()
    try:
        echo_transport, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    port = echo_transport.get_extra_info("sockname")[1]
    try:
        events = Recorder()
        conn = await transport.connect(
            ClientRequest("udp", "::1", port, local_port=free_port(socket.SOCK_DGRAM)), events)
        await conn.send(b"six")
        await until(lambda: len(events.items) == 1)
        assert events.items == [(b"six", ("::1", port))]
        await conn.close()
    finally:
        echo_transport.close()


async def recvfrom(sock: socket.socket, size: int) -> tuple[bytes, tuple[str, int]]:
    """``loop.sock_recvfrom`` for any loop (uvloop has none)."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: readable.done() or readable.set_result(None))
    try:
        await readable
    finally:
        loop.remove_reader(sock.fileno())
    return sock.recvfrom(size)


async def test_udp_drops_beyond_queue_limit() -> None:
    loop = asyncio.get_running_loop()
    sender_transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    sender = sender_transport.get_extra_info("sockname")
    try:
        events = Recorder(blocked=True)
        accepted: list[Connection] = []

        def accept(connection: Connection) -> Recorder:
            accepted.append(connection)
            return events

        listener = await SocketTransport(max_queued_datagrams=4).listen(
            ListenRequest("udp", "127.0.0.1", 0), accept)
        for n in range(20):
            sender_transport.sendto(b"%d" % n, listener.local)
        conn = accepted[0]
        # Four wait in the queue, and one more in the reader's hands if it ran
        # before the burst ended (asyncio's loop; uvloop reads the burst first).
        await until(lambda: events.pending == 1 and conn.dropped >= 20 - 5)
        kept = 20 - conn.dropped
        assert kept in (4, 5)
        events.gate.set()
        await until(lambda: len(events.items) == kept)
        assert [payload for payload, _ in events.items] == [b"%d" % n for n in range(kept)]
        assert all(peer == sender for _, peer in events.items)
        await conn.close()
    finally:
        sender_transport.close()


async def test_tcp_server_accepts_two_clients(transport: Sockets) -> None:
    accepted: list[Echo] = []

    def accept(connection: Connection) -> Echo:
        events = Echo(connection)
        accepted.append(events)
        return events

    listener = await transport.listen(ListenRequest("tcp", "127.0.0.1", 0), accept)
    host, port = listener.local
    assert host == "127.0.0.1" and port > 0
    clients = [await asyncio.open_connection(host, port) for _ in range(2)]
    async with asyncio.timeout(WAIT):
        for n, (reader, writer) in enumerate(clients):
            writer.write(b"client %d" % n)
            await writer.drain()
            assert await reader.readexactly(8) == b"client %d" % n
    assert len(accepted) == 2
    assert {events.connection.peer for events in accepted} == {
        writer.get_extra_info("sockname") for _, writer in clients}

    await listener.close()
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)
    # Accepted links outlive the listener.
    reader, writer = clients[1]
    writer.write(b"still up")
    async with asyncio.timeout(WAIT):
        assert await reader.readexactly(8) == b"still up"
    for _reader, writer in clients:
        writer.close()
    await until(lambda: all(events.closes for events in accepted))
    assert [events.closes for events in accepted] == [[(True, None, None)]] * 2


async def test_tls_server(transport: Sockets, tls_files) -> None:
    accepted: list[Echo] = []

    def accept(connection: Connection) -> Echo:
        accepted.append(Echo(connection))
        return accepted[-1]

    listener = await transport.listen(
        ListenRequest("tls", "127.0.0.1", 0, tls=_server_context(tls_files)), accept)
    client = ssl.create_default_context(cafile=str(tls_files["ca"]))
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_connection(*listener.local, ssl=client)
        writer.write(b"over tls")
        assert await reader.readexactly(8) == b"over tls"
    writer.close()
    await listener.close()
    await until(lambda: accepted[0].closes != [])
    assert accepted[0].closes[0][0] is True


async def test_udp_listener_two_senders(transport: Sockets) -> None:
    accepted: list[Connection] = []
    events = Recorder()

    def accept(connection: Connection) -> Recorder:
        accepted.append(connection)
        return events

    listener = await transport.listen(ListenRequest("udp", "127.0.0.1", 0), accept)
    assert listener.local[0] == "127.0.0.1" and listener.local[1] > 0
    senders = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        senders.append(sock)
    try:
        senders[0].sendto(b"from A", listener.local)
        senders[1].sendto(b"from B", listener.local)
        await until(lambda: len(events.items) == 2)
        assert sorted(events.items) == [(b"from A", senders[0].getsockname()),
                                        (b"from B", senders[1].getsockname())]
        (conn,) = accepted
        await conn.send(b"to B", peer=senders[1].getsockname())
        async with asyncio.timeout(WAIT):
            data, addr = await recvfrom(senders[1], 100)
        assert (data, addr) == (b"to B", listener.local)
        with pytest.raises(TransportError) as info:
            await conn.send(b"nowhere")
        assert info.value.stage == "send"
        await listener.close()  # the endpoint itself stays open
        senders[0].sendto(b"again", listener.local)
        await until(lambda: len(events.items) == 3)
        await conn.close()
        assert events.closes == [(False, None, None)]
    finally:
        for sock in senders:
            sock.close()


async def test_socket_options_reach_the_socket(transport: Sockets) -> None:
    options = SocketOptions(nodelay=True, keepalive=True, keepalive_idle=42,
                            keepalive_interval=7, keepalive_count=3, send_timeout=1.5,
                            recv_timeout=2.0)
    accepted: list[Connection] = []

    def accept(connection: Connection) -> Recorder:
        accepted.append(connection)
        return Recorder()

    listener = await transport.listen(ListenRequest("tcp", "127.0.0.1", 0, options=options),
                                      accept)
    conn = await transport.connect(
        ClientRequest("tcp", *listener.local, options=options), Recorder())
    await until(lambda: len(accepted) == 1)
    for link in (conn, accepted[0]):
        sock = link.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 42
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 7
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16) != bytes(16)
    await conn.close()
    await accepted[0].close()
    await listener.close()

    udp = await transport.connect(
        ClientRequest("udp", "127.0.0.1", 9, options=SocketOptions(recv_timeout=0.25,
                                                                 nodelay=True)), Recorder())
    sock = udp.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) != bytes(16)
    await udp.close()


@pytest.mark.parametrize("kind", ["tcp", "tls"])
async def test_backpressure_bounds_what_is_read(transport: Sockets, tls_files, kind: str) -> None:
    size = 4 * 1024 * 1024
    blob = bytes(range(256)) * (size // 256)
    sent = asyncio.Event()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(blob)
        await writer.drain()
        sent.set()
        writer.close()

    tls = kind == "tls"
    server = await asyncio.start_server(flood, "127.0.0.1", 0,
                                        ssl=_server_context(tls_files) if tls else None)
    async with server:
        events = Recorder(blocked=True)
        client = ssl.create_default_context(cafile=str(tls_files["ca"])) if tls else None
        conn = await transport.connect(
            ClientRequest(kind, "127.0.0.1", server.sockets[0].getsockname()[1], tls=client),
            events)
        await until(lambda: events.pending == 1)
        await asyncio.sleep(0.2)  # let the peer push what it can
        assert conn.bytes_received < 1024 * 1024
        events.gate.set()
        await until(lambda: len(events.received) == size)
        assert events.received == blob
        async with asyncio.timeout(WAIT):
            await sent.wait()
        await until(lambda: events.closes != [])
        assert events.closes == [(True, None, None)]


async def test_peer_close_reported_once(transport: Sockets) -> None:
    async def bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(bye, "127.0.0.1", 0)
    async with server:
        events = Recorder()
        conn = await transport.connect(
            ClientRequest("tcp", "127.0.0.1", server.sockets[0].getsockname()[1]), events)
        await until(lambda: events.closes != [])
        assert events.received == b"bye"  # delivered before the close
        await asyncio.sleep(0.02)
        await conn.close()
        conn.abort()
        assert events.closes == [(True, None, None)]
        with pytest.raises(TransportError):
            await conn.send(b"x")


async def test_connection_refused(transport: Sockets) -> None:
    with pytest.raises(TransportError) as info:
        await transport.connect(ClientRequest("tcp", "127.0.0.1", free_port(),
                                              connect_timeout=WAIT), Recorder())
    assert info.value.stage == "connect"


async def test_unresolvable_host(transport: Sockets) -> None:
    with pytest.raises(TransportError) as info:
        await transport.connect(ClientRequest("tcp", "no-such-host.invalid", 80,
                                              connect_timeout=WAIT), Recorder())
    assert info.value.stage in {"resolve", "timeout"}


async def test_connect_timeout(transport: Sockets, tls_files) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers the TLS handshake
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        context = ssl.create_default_context(cafile=str(tls_files["ca"]))
        with pytest.raises(TransportError) as info:
            await transport.connect(
                ClientRequest("tls", "127.0.0.1", server.sockets[0].getsockname()[1],
                              tls=context, connect_timeout=0.2), Recorder())
        assert info.value.stage == "timeout"


async def test_listen_on_every_interface(transport: Sockets) -> None:
    events = Recorder()
    tcp = await transport.listen(ListenRequest("tcp", "", 0), lambda connection: events)
    udp = await transport.listen(ListenRequest("udp", "", 0), lambda connection: events)
    try:
        async with asyncio.timeout(WAIT):
            _, writer = await asyncio.open_connection("127.0.0.1", tcp.local[1])
        writer.close()
        assert tcp.local[0] == "0.0.0.0"
        assert udp.local[0] == "0.0.0.0"
    finally:
        await tcp.close()
        await udp.close()
        await udp.connection.close()


async def test_tls_handshakes_in_progress_are_capped(transport: Sockets, tls_files) -> None:
    """Silent TLS peers fill MAX_HANDSHAKES places; more are closed at accept,
    unreported; once the deadline frees the places a real client gets through."""
    from gatewayd.transport.sockopts import MAX_HANDSHAKES

    rejected: list[str] = []
    accepted: list[Echo] = []

    def accept(connection: Connection) -> Echo:
        accepted.append(Echo(connection))
        return accepted[-1]

    listener = await transport.listen(
        ListenRequest("tls", "127.0.0.1", 0, tls=_server_context(tls_files),
                      handshake_timeout=1.0,
                      on_rejected=lambda peer, error: rejected.append(error.stage)), accept)
    silent = [await asyncio.open_connection(*listener.local) for _ in range(MAX_HANDSHAKES)]
    extra = [await asyncio.open_connection(*listener.local) for _ in range(3)]
    async with asyncio.timeout(WAIT):
        for reader, _ in extra:
            assert await reader.read() == b""
    assert rejected == []
    await until(lambda: len(rejected) == MAX_HANDSHAKES)
    assert set(rejected) == {"timeout"}
    client = ssl.create_default_context(cafile=str(tls_files["ca"]))
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_connection(*listener.local, ssl=client)
        writer.write(b"over tls")
        assert await reader.readexactly(8) == b"over tls"
    for _, w in [*silent, *extra, (reader, writer)]:
        w.close()
    await listener.close()
