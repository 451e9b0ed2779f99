"""One transport contract, run against every registered transport kind.

The kinds come from :func:`gatewayd.plugin.manager.load_plugins`, so a
third-party transport installed next to the built-ins is tested too: each kind
needs a real peer in :data:`PEERS` (a kind without one fails, naming what to add).
Peers are real servers and clients on 127.0.0.1 only: ``websockets`` for ws/wss,
asyncio TCP/UDP endpoints, trustme certificates for TLS. Every wait is bounded.

The cases (see docs/plugins.md, "The transport contract"):

- ``connect``: an outgoing link to a real peer carries data both ways.
- ``listen``: a listener accepts a real client; data goes both ways.
- ``refuse_connect``: connecting to a closed port raises ``TransportError``
  with stage ``"connect"``.
- ``reject_peer``: a listener turns away a peer outside ``allow``; it is told
  to ``on_rejected`` with stage ``"refused"`` and never reaches ``accept``.
- ``reject_tls``: a TLS listener's peer that fails the handshake is told to
  ``on_rejected`` with stage ``"tls"``.
- ``reject_slow``: a peer that does not finish its handshake (TLS, WebSocket
  upgrade) within ``handshake_timeout`` is dropped and told with ``"timeout"``.
- ``refused_by_core``: ``accept`` raising ``Refused`` turns the peer away, and
  ``on_rejected`` is not told.
- ``close_by_peer`` / ``close_local``: however a link ends, ``closed`` is
  reported exactly once, with ``by_peer`` saying who ended it.
- ``backpressure``: while ``LinkEvents.data`` does not return, the transport
  reads no further: the peer's writes stall after a bounded amount; once
  ``data`` returns, everything arrives.

Where a case does not apply to a kind, :data:`NOT_APPLICABLE` says why, and
the case is not parametrized for that kind (no skips).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

from gatewayd.plugin.manager import load_plugins
from gatewayd.transport import (
    ClientRequest,
    Connection,
    ListenRequest,
    Opcode,
    Refused,
    Transport,
    TransportError,
)

WAIT = 5.0
#: A flood stops here; a transport that honours backpressure stalls it far earlier.
FLOOD_LIMIT = 64 * 1024 * 1024
FLOOD_CHUNK = 64 * 1024
Address = tuple[str, int]

TRANSPORTS: dict[str, Transport] = dict(load_plugins().transports)
KINDS = sorted(TRANSPORTS)

#: (case, kind) pairs that do not apply, and why.
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("refuse_connect", "udp"): "UDP has no connection to refuse: a datagram to a closed "
                               "port is just lost (ICMP errors are ignored)",
    ("reject_peer", "udp"): "a UDP listener drops datagrams from outside allow and counts "
                            "them; there is no peer connection to report",
    ("close_by_peer", "udp"): "UDP has no close handshake: a peer cannot end the link",
    ("backpressure", "udp"): "UDP may drop instead of slowing the peer (a bounded queue, "
                             "drops counted)",
    ("reject_tls", "tcp"): "plain TCP has no TLS handshake",
    ("reject_tls", "udp"): "UDP has no TLS",
    ("reject_tls", "ws"): "plain ws has no TLS handshake",
    ("reject_slow", "tcp"): "plain TCP has no handshake to wait for",
    ("reject_slow", "udp"): "UDP has no handshake to wait for",
    ("refused_by_core", "udp"): "a UDP listener calls accept once, inside listen(): a "
                                "refusal there fails listen() itself",
}


def kinds(case: str) -> list[Any]:
    return [pytest.param(kind, id=kind) for kind in KINDS if (case, kind) not in NOT_APPLICABLE]


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def closed_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    """LinkEvents that records; ``gate`` cleared = ``data()`` does not return."""

    def __init__(self) -> None:
        self.payloads: list[tuple[bytes, Address | None]] = []
        self.closes: list[tuple[bool, int | None, BaseException | None]] = []
        self.count = 0  # bytes delivered
        self.gate = asyncio.Event()
        self.gate.set()

    async def data(self, payload: bytes, *, opcode: Opcode = Opcode.BINARY, fin: bool = True,
                   peer: Address | None = None) -> None:
        async with asyncio.timeout(WAIT * 4):
            await self.gate.wait()
        self.payloads.append((bytes(payload), peer))
        self.count += len(payload)

    def pong(self, payload: bytes) -> None:
        pass

    def closed(self, *, by_peer: bool, code: int | None = None,
               error: BaseException | None = None) -> None:
        self.closes.append((by_peer, code, error))

    @property
    def received(self) -> bytes:
        return b"".join(payload for payload, _ in self.payloads)

    @property
    def sender(self) -> Address | None:
        return self.payloads[-1][1] if self.payloads else None


class Side(ABC):
    """The real peer's end of one connection."""

    @abstractmethod
    async def send(self, data: bytes) -> None: ...

    @abstractmethod
    async def recv(self) -> bytes: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ended(self) -> None:
        """Return once the peer sees the link end."""


class StreamSide(Side):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self) -> bytes:
        return await self.reader.read(65536)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()

    async def ended(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            while await self.reader.read(65536):
                pass


class WsSide(Side):
    def __init__(self, websocket: Any) -> None:
        self.websocket = websocket

    async def send(self, data: bytes) -> None:
        await self.websocket.send(data)

    async def recv(self) -> bytes:
        message = await self.websocket.recv()
        return message if isinstance(message, bytes) else message.encode()

    async def close(self) -> None:
        await self.websocket.close()

    async def ended(self) -> None:
        await self.websocket.wait_closed()


class DatagramSide(Side, asyncio.DatagramProtocol):
    """A UDP endpoint; answers the last sender (or its connected peer)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.last: Address | None = None
        self.transport: Any = None  # the selector transport is no DatagramTransport subclass

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, (addr[0], addr[1])))

    async def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, self.last)

    async def recv(self) -> bytes:
        data, self.last = await self.queue.get()
        return data

    async def close(self) -> None:
        assert self.transport is not None
        self.transport.close()

    async def ended(self) -> None:
        raise AssertionError("a UDP peer cannot see the link end")


class Peer(ABC):
    """How to meet one link kind with a real peer."""

    kind: str
    tls: bool = False

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.files["server_cert"], self.files["server_key"])
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.files["ca"]))

    def client_request(self, port: int) -> ClientRequest:
        return ClientRequest(self.kind, "127.0.0.1", port,
                             tls=self.client_context() if self.tls else None,
                             connect_timeout=WAIT)

    def listen_request(self, **settings: Any) -> ListenRequest:
        settings.setdefault("handshake_timeout", WAIT)
        return ListenRequest(self.kind, "127.0.0.1", 0,
                             tls=self.server_context() if self.tls else None, **settings)

    @abstractmethod
    def serve(self) -> contextlib.AbstractAsyncContextManager[
            tuple[int, asyncio.Queue[Side]]]:
        """A real server on 127.0.0.1: its port, and each accepted connection's side."""

    @abstractmethod
    async def dial(self, port: int) -> Side:
        """A real client connected to 127.0.0.1:*port*."""


class StreamPeer(Peer):
    kind = "tcp"

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[tuple[int, asyncio.Queue[Side]]]:
        sides: asyncio.Queue[Side] = asyncio.Queue()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sides.put_nowait(StreamSide(reader, writer))

        server = await asyncio.start_server(
            handler, "127.0.0.1", 0, ssl=self.server_context() if self.tls else None)
        async with server:
            yield server.sockets[0].getsockname()[1], sides

    async def dial(self, port: int) -> Side:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=self.client_context() if self.tls else None)
        return StreamSide(reader, writer)


class TlsPeer(StreamPeer):
    kind = "tls"
    tls = True


class WsPeer(Peer):
    kind = "ws"

    def _scheme(self) -> str:
        return "wss" if self.tls else "ws"

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[tuple[int, asyncio.Queue[Side]]]:
        sides: asyncio.Queue[Side] = asyncio.Queue()

        async def handler(websocket: Any) -> None:
            side = WsSide(websocket)
            sides.put_nowait(side)
            await websocket.wait_closed()  # the test drives the connection

        async with ws_serve(handler, "127.0.0.1", 0,
                            ssl=self.server_context() if self.tls else None) as server:
            yield next(iter(server.sockets)).getsockname()[1], sides

    async def dial(self, port: int) -> Side:
        websocket = await ws_connect(f"{self._scheme()}://127.0.0.1:{port}/",
                                     ssl=self.client_context() if self.tls else None,
                                     open_timeout=WAIT)
        return WsSide(websocket)


class WssPeer(WsPeer):
    kind = "wss"
    tls = True


class UdpPeer(Peer):
    kind = "udp"

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[tuple[int, asyncio.Queue[Side]]]:
        side = DatagramSide()
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: side, local_addr=("127.0.0.1", 0))
        sides: asyncio.Queue[Side] = asyncio.Queue()
        sides.put_nowait(side)
        try:
            yield transport.get_extra_info("sockname")[1], sides
        finally:
            transport.close()

    async def dial(self, port: int) -> Side:
        side = DatagramSide()
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: side, remote_addr=("127.0.0.1", port))
        return side


#: A real peer for each known kind; a transport plugin adding a kind adds one here.
PEERS: dict[str, type[Peer]] = {"tcp": StreamPeer, "tls": TlsPeer, "ws": WsPeer,
                                "wss": WssPeer, "udp": UdpPeer}


@pytest.fixture
def transport(kind: str) -> Transport:
    return TRANSPORTS[kind]


@pytest.fixture
def peer(kind: str, tls_files: dict[str, Path]) -> Peer:
    if kind not in PEERS:
        pytest.fail(f"transport kind {kind!r} ({TRANSPORTS[kind].name}) has no contract "
                    "peer: add one to PEERS in tests/test_transport_contract.py")
    return PEERS[kind](tls_files)


class Accepted:
    """An ``accept`` callback that records each connection with a Recorder."""

    def __init__(self) -> None:
        self.links: list[tuple[Connection, Recorder]] = []
        self.rejected: list[tuple[Address, TransportError]] = []

    def __call__(self, connection: Connection) -> Recorder:
        events = Recorder()
        self.links.append((connection, events))
        return events

    def on_rejected(self, peer: Address, error: TransportError) -> None:
        self.rejected.append((peer, error))


@contextlib.asynccontextmanager
async def listening(transport: Transport, peer: Peer, accept: Accepted,
                    **settings: Any) -> AsyncIterator[int]:
    """A listener of *transport* on 127.0.0.1 that tells *accept* of rejections; its port."""
    listener = await transport.listen(
        peer.listen_request(on_rejected=accept.on_rejected, **settings), accept)
    try:
        yield listener.local[1]
    finally:
        await listener.close()


async def the_rejection(accepted: Accepted) -> TransportError:
    """The one rejection *accepted* was told of (a peer on 127.0.0.1, never accepted)."""
    await until(lambda: bool(accepted.rejected))
    await asyncio.sleep(0.05)  # nothing more follows
    [(where, error)] = accepted.rejected
    assert where[0] == "127.0.0.1" and accepted.links == []
    return error


async def raw_client(port: int, data: bytes) -> None:
    """A plain TCP client that sends *data* and waits for the listener to drop it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    with contextlib.suppress(OSError):
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
    writer.close()


def test_every_kind_has_a_peer_or_a_reason() -> None:
    assert {"tcp", "udp", "tls", "ws", "wss"} <= set(KINDS)
    for (case, kind), why in NOT_APPLICABLE.items():
        assert case in {"refuse_connect", "reject_peer", "close_by_peer", "backpressure",
                        "reject_tls", "reject_slow", "refused_by_core"} \
            and kind in PEERS and why


@pytest.mark.parametrize("kind", kinds("connect"))
async def test_connect(kind: str, transport: Transport, peer: Peer) -> None:
    async with peer.serve() as (port, sides):
        events = Recorder()
        connection = await transport.connect(peer.client_request(port), events)
        try:
            await connection.send(b"hello from the MCU")
            async with asyncio.timeout(WAIT):
                side = await sides.get()
                assert await side.recv() == b"hello from the MCU"
                await side.send(b"hello from the network")
            await until(lambda: events.received == b"hello from the network")
        finally:
            await connection.close()
        assert events.closes == [(False, events.closes[0][1], None)]


@pytest.mark.parametrize("kind", kinds("listen"))
async def test_listen(kind: str, transport: Transport, peer: Peer) -> None:
    accepted = Accepted()
    async with listening(transport, peer, accepted) as port:
        assert port > 0
        side = await asyncio.wait_for(peer.dial(port), WAIT)
        await side.send(b"ping")
        await until(lambda: bool(accepted.links) and accepted.links[0][1].received == b"ping")
        connection, events = accepted.links[0]
        await connection.send(b"pong", peer=events.sender)
        assert await asyncio.wait_for(side.recv(), WAIT) == b"pong"
        await connection.close()
        assert events.closes and events.closes[0][0] is False
        await side.close()
    assert accepted.rejected == []


@pytest.mark.parametrize("kind", kinds("refuse_connect"))
async def test_refuse_connect(kind: str, transport: Transport, peer: Peer) -> None:
    events = Recorder()
    with pytest.raises(TransportError) as info:
        async with asyncio.timeout(WAIT):
            await transport.connect(peer.client_request(closed_port()), events)
    assert info.value.stage == "connect"
    assert events.closes == []


@pytest.mark.parametrize("kind", kinds("reject_peer"))
async def test_reject_peer(kind: str, transport: Transport, peer: Peer) -> None:
    accepted = Accepted()
    outside = (ipaddress.ip_network("192.0.2.0/24"),)
    async with listening(transport, peer, accepted, allow=outside) as port:
        with contextlib.suppress(Exception):  # a WebSocket client sees HTTP 403
            side = await asyncio.wait_for(peer.dial(port), WAIT)
            await asyncio.wait_for(side.ended(), WAIT)
        assert (await the_rejection(accepted)).stage == "refused"


@pytest.mark.parametrize("kind", kinds("reject_tls"))
async def test_reject_tls(kind: str, transport: Transport, peer: Peer) -> None:
    accepted = Accepted()
    async with listening(transport, peer, accepted) as port:
        await raw_client(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # not TLS
        assert (await the_rejection(accepted)).stage == "tls"


@pytest.mark.parametrize("kind", kinds("reject_slow"))
async def test_reject_slow(kind: str, transport: Transport, peer: Peer) -> None:
    accepted = Accepted()
    async with listening(transport, peer, accepted, handshake_timeout=0.3) as port:
        await raw_client(port, b"")  # sends nothing at all, and is dropped
        assert (await the_rejection(accepted)).stage == "timeout"


@pytest.mark.parametrize("kind", kinds("refused_by_core"))
async def test_refused_by_core(kind: str, transport: Transport, peer: Peer) -> None:
    """``accept`` raising ``Refused``: the peer is turned away, ``on_rejected``
    is not told (the core refused it itself)."""

    class Refusing(Accepted):
        def __call__(self, connection: Connection) -> Recorder:
            super().__call__(connection)
            raise Refused("no free link id", status=429)

    accepted = Refusing()
    async with listening(transport, peer, accepted) as port:
        with contextlib.suppress(Exception):  # a WebSocket client sees HTTP 429
            side = await asyncio.wait_for(peer.dial(port), WAIT)
            await asyncio.wait_for(side.ended(), WAIT)
        await until(lambda: bool(accepted.links))
        await asyncio.sleep(0.05)
        assert len(accepted.links) == 1 and accepted.rejected == []


@pytest.mark.parametrize("kind", kinds("close_by_peer"))
async def test_close_by_peer(kind: str, transport: Transport, peer: Peer) -> None:
    async with peer.serve() as (port, sides):
        events = Recorder()
        connection = await transport.connect(peer.client_request(port), events)
        side = await asyncio.wait_for(sides.get(), WAIT)
        await side.close()
        await until(lambda: bool(events.closes))
        await connection.close()  # after the end: nothing more is reported
        connection.abort()
        await asyncio.sleep(0.05)
        assert len(events.closes) == 1 and events.closes[0][0] is True


@pytest.mark.parametrize("kind", kinds("close_local"))
async def test_close_local(kind: str, transport: Transport, peer: Peer) -> None:
    async with peer.serve() as (port, sides):
        events = Recorder()
        connection = await transport.connect(peer.client_request(port), events)
        await connection.send(b"x")
        side = await asyncio.wait_for(sides.get(), WAIT)
        assert await asyncio.wait_for(side.recv(), WAIT) == b"x"
        await asyncio.wait_for(connection.close(), WAIT)
        if kind != "udp":  # UDP sends nothing when it ends
            await asyncio.wait_for(side.ended(), WAIT)
        await connection.close()
        connection.abort()
        await asyncio.sleep(0.05)
        assert len(events.closes) == 1 and events.closes[0][0] is False
        assert events.closes[0][2] is None


@pytest.mark.parametrize("kind", kinds("backpressure"))
async def test_backpressure(kind: str, transport: Transport, peer: Peer) -> None:
    async with peer.serve() as (port, sides):
        events = Recorder()
        events.gate.clear()  # data() does not return
        connection = await transport.connect(peer.client_request(port), events)
        side = await asyncio.wait_for(sides.get(), WAIT)
        written = 0
        stop = False

        async def flood() -> None:
            nonlocal written
            chunk = b"\x5a" * FLOOD_CHUNK
            while written < FLOOD_LIMIT and not stop:
                await side.send(chunk)
                written += len(chunk)

        flooding = asyncio.get_running_loop().create_task(flood())
        try:
            # The peer's writes stall: no progress for half a second.
            async with asyncio.timeout(WAIT * 2):
                last = -1
                while written != last:
                    last = written
                    await asyncio.sleep(0.5)
            assert not flooding.done() and written < FLOOD_LIMIT
            assert events.count == 0  # the first data() has not returned
            stop = True  # the write under way is the last
            events.gate.set()
            await asyncio.wait_for(flooding, WAIT)
            await until(lambda: events.count == written, WAIT * 2)
        finally:
            flooding.cancel()
            await asyncio.wait({flooding})
            connection.abort()
