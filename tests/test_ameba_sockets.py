"""Ameba socket commands end to end: a virtual MCU on gatewayd's pty, real
TCP/UDP peers from asyncio and real TLS (Python ``ssl`` with trustme suites)
on 127.0.0.1 and ::1.

Expected bytes: seed document 004 (AT+SKTCFG … AT+SKTDEL) and
shared/reference/ameba-at-behaviour.md §1, §2, §4 and §5 "Sockets". The
document's examples use the module's LAN addresses and fixed ports; here the
same command lines and replies carry 127.0.0.1 and the ports the peers got.

Error numbers the document lists that no real peer can provoke, and which are
therefore not tested here (rather than faked): the "failed to create the
task …" numbers (AT+SKTSERVER 3, 5, 12; AT+SKTCLIENT 3, 5, 15), "memory
allocation failed" (AT+SKTSERVER 7, AT+SKTCLIENT 7, AT+SKTREAD 2,
AT+SKTSENDRAW 3), mbedtls set-up steps without a host counterpart
(AT+SKTSERVER 8, AT+SKTCLIENT 8, 11, 12) and AT+SKTREAD's 3 ("select()
failed").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import accept, listener_that_never_reads, send_until_refused

from gatewayd.dialects.ameba.sockets import READ_BUFFER_LIMIT, READ_DATAGRAM_LIMIT
from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
TT = b">>>\r\n"
WAIT = 5.0


def error(code: int) -> bytes:
    return b"\r\nERROR: %d\r\n" % code


def config(tmp_path: Path, tls_files: dict[str, Path] | None = None, extra: str = "") -> str:
    text = f'[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n{extra}\n'
    if tls_files is not None:
        f = {k: str(v) for k, v in tls_files.items()}
        text += (f'[certs.server.1]\nca = "{f["ca"]}"\ncert = "{f["server_cert"]}"\n'
                 f'key = "{f["server_key"]}"\n'
                 f'[certs.client.1]\nca = "{f["ca"]}"\ncert = "{f["client_cert"]}"\n'
                 f'key = "{f["client_key"]}"\n'
                 f'[certs.client.2]\nca = "{f["ca"]}"\n'
                 f'[certs.client.3]\ncert = "{f["client_cert"]}"\nkey = "{f["client_key"]}"\n')
    return text


def accepted(seed: int, server: int, peer: tuple[str, int], protocol: str = "tcp") -> bytes:
    return (b"[$][SKT][EVENT]: A client[link_id:%d,seed,%s,dst_address:%s,dst_port:%d]"
            b" connected to server[link_id:%d]\r\n"
            % (seed, protocol.encode(), peer[0].encode(), peer[1], server))


def data_urc(link: int, payload: bytes, sender: tuple[str, int] | None = None) -> bytes:
    if sender is None:
        return b"[$][SKT][DATA][%d][%d]:" % (link, len(payload)) + payload + b"\r\n"
    return (b"[$][SKT][DATA][%d][%d][%s][%d]:" % (link, len(payload), sender[0].encode(),
                                                  sender[1]) + payload + b"\r\n")


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def session_of(daemon):
    return next(iter(daemon.sessions.values()))


def links_of(daemon):
    return session_of(daemon).state.sockets.links


class Peer:
    """A TCP (or TLS) server that records what it receives and can write back."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.arrived = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.connected.set()
        while data := await reader.read(65536):
            self.received += data
            self.arrived.set()

    async def wait_for(self, n: int) -> bytes:
        async with asyncio.timeout(WAIT):
            while len(self.received) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return bytes(self.received)


@contextlib.asynccontextmanager
async def tcp_peer(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None,
                   echo: bool = False) -> AsyncIterator[tuple[Peer, int]]:
    peer = Peer()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if echo:
            peer.writers.append(writer)
            peer.connected.set()
            while data := await reader.read(65536):
                peer.received += data
                writer.write(data)
                await writer.drain()
            writer.close()
        else:
            await peer.handle(reader, writer)

    server = await asyncio.start_server(handler, host, 0, ssl=tls)
    try:
        yield peer, server.sockets[0].getsockname()[1]
    finally:
        for writer in peer.writers:
            writer.close()
        server.close()


class UdpPeer(asyncio.DatagramProtocol):
    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.queue.put_nowait((data, addr[:2]))
        if self.echo:
            self.transport.sendto(data, addr)

    async def next(self) -> tuple[bytes, tuple[str, int]]:
        async with asyncio.timeout(WAIT):
            return await self.queue.get()


@contextlib.asynccontextmanager
async def udp_peer(host: str = "127.0.0.1", echo: bool = False
                   ) -> AsyncIterator[tuple[UdpPeer, int]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: UdpPeer(echo),
                                                           local_addr=(host, 0))
    try:
        yield proto, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def server_tls(files: dict[str, Path], require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files["server_cert"], files["server_key"])
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(files["ca"])
    return context


def client_tls(files: dict[str, Path], with_cert: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files["ca"]))
    if with_cert:
        context.load_cert_chain(files["client_cert"], files["client_key"])
    return context


# -- AT+SKTCFG / AT+SKTQUERY ---------------------------------------------------

QUERY_DEFAULT = (b"\r\nGlobal SOCKET configuration:\r\nso_sndtimeo: 0\r\nso_rcvtimeo: 0\r\n"
                 b"tcp_nodelay: 0\r\nso_keepalive: 0\r\ntcp_keepidle: 0\r\ntcp_keepintvl: 0\r\n"
                 b"tcp_keepcnt: 0\r\n" + OK)


async def test_sktquery_default_example(ameba_mcu):
    await ameba_mcu.command(b"AT+SKTQUERY", QUERY_DEFAULT)


async def test_sktcfg_example_then_query(ameba_mcu):
    await ameba_mcu.command(b"AT+SKTCFG=2000,2000,,1,60,10,3", OK)
    await ameba_mcu.command(b"AT+SKTQUERY", (
        b"\r\nGlobal SOCKET configuration:\r\nso_sndtimeo: 2000\r\nso_rcvtimeo: 2000\r\n"
        b"tcp_nodelay: 0\r\nso_keepalive: 1\r\ntcp_keepidle: 60\r\ntcp_keepintvl: 10\r\n"
        b"tcp_keepcnt: 3\r\n" + OK))


async def test_sktcfg_is_absolute(ameba_mcu):
    await ameba_mcu.command(b"AT+SKTCFG=2000,2000,1,1,60,10,3", OK)
    await ameba_mcu.command(b"AT+SKTCFG=,,1,,,,", OK)  # all seven fields, five empty
    await ameba_mcu.command(b"AT+SKTQUERY", QUERY_DEFAULT.replace(b"tcp_nodelay: 0",
                                                                   b"tcp_nodelay: 1"))


@pytest.mark.parametrize("args", [
    b"-1", b",-5", b",,2", b",,,2", b",,,,7201", b",,,,,76", b",,,,,,11", b"0,0,0,0,0,0,0,0",
    # The firmware's handler wants exactly seven fields (once answered OK,
    # resetting the other options to 0).
    b"1", b"", b",,1", b"2000,2000,,1,60,10",
])
async def test_sktcfg_parameter_error(ameba_mcu, args):
    await ameba_mcu.command(b"AT+SKTCFG=" + args, error(1))
    await ameba_mcu.command(b"AT+SKTQUERY", QUERY_DEFAULT)


async def test_sktquery_with_parameters_is_error_1(ameba_mcu):
    await ameba_mcu.command(b"AT+SKTQUERY=1", error(1))


async def test_sktcfg_options_reach_client_and_seed_sockets(tmp_path):
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (daemon, mcu), \
            tcp_peer() as (_peer, port):
        await mcu.command(b"AT+SKTCFG=2000,1500,1,1,60,10,3", OK)
        await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1" % port, OK)
        server_port = free_port()
        await mcu.command(b"AT+SKTSERVER=1,1,,%d,1" % server_port, OK)
        _, writer = await asyncio.open_connection("127.0.0.1", server_port)
        await mcu.read_until(b"connected to server[link_id:1]\r\n")
        links = links_of(daemon)
        for link_id in (0, 2):
            sock = links[link_id].connection.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            sndtimeo = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16)
            rcvtimeo = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
            assert int.from_bytes(sndtimeo[:8], "little") == 2
            assert int.from_bytes(rcvtimeo[8:], "little") == 500_000
        writer.close()
        # Options apply to sockets created afterwards only: a new default.
        await mcu.command(b"AT+SKTCFG=,,,,,,", OK)  # seven empty fields: all 0
        await mcu.command(b"AT+SKTCLIENT=3,1,,127.0.0.1,%d,,1" % port, OK)
        sock = links_of(daemon)[3].connection.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


# -- AT+SKTSERVER ---------------------------------------------------------------


async def test_tcp_server_example_seed_takes_lowest_free_id(tmp_path):
    port = free_port()
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu):
        await mcu.command(b"AT+SKTSERVER=1,1,,%d,1" % port, OK)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        me = writer.get_extra_info("sockname")[:2]
        await mcu.expect(accepted(0, 1, me))
        writer.write(b"hello")
        await mcu.expect(data_urc(0, b"hello"))
        await mcu.command(b"AT+SKTSEND=0,6,,,Hello!", OK)
        async with asyncio.timeout(WAIT):
            assert await reader.readexactly(6) == b"Hello!"
        _, writer2 = await asyncio.open_connection("127.0.0.1", port)
        await mcu.expect(accepted(2, 1, writer2.get_extra_info("sockname")[:2]))
        writer.close()
        writer2.close()


async def test_udp_server_example_without_auto_receive(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu), \
            udp_peer() as (peer, peer_port):
        await mcu.command(b"AT+SKTSERVER=2,0,,%d,0" % port, OK)
        peer.transport.sendto(b"12345", ("127.0.0.1", port))
        await asyncio.sleep(0.1)
        await mcu.command(b"AT+SKTREAD=2,10",
                          b"+SKTREAD:2,5,127.0.0.1,%d,12345" % peer_port + OK)
        await mcu.command(b"AT+SKTREAD=2,10", b"+SKTREAD:2,0,0.0.0.0,0," + OK)
        await mcu.command(b"AT+SKTSEND=2,10,127.0.0.1,%d,Lwip_Test!" % peer_port, OK)
        assert await peer.next() == (b"Lwip_Test!", ("127.0.0.1", port))


async def test_udp_server_auto_receive_reports_senders(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu), \
            udp_peer() as (a, a_port), udp_peer() as (b, b_port):
        await mcu.command(b"AT+SKTSERVER=3,0,,%d,1" % port, OK)
        a.transport.sendto(b"from a", ("127.0.0.1", port))
        await mcu.expect(data_urc(3, b"from a", ("127.0.0.1", a_port)))
        b.transport.sendto(b"from\r\nb", ("127.0.0.1", port))
        await mcu.expect(data_urc(3, b"from\r\nb", ("127.0.0.1", b_port)))
        # No implicit reply address: a UDP server send needs a destination.
        await mcu.command(b"AT+SKTSEND=3,2,,,hi", error(1))
        await mcu.command(b"AT+SKTSEND=3,2,127.0.0.1,%d,hi" % b_port, OK)
        assert await b.next() == (b"hi", ("127.0.0.1", port))


async def test_tls_server_example_verifies_client_certificates(tmp_path, tls_files):
    port = free_port()
    async with running_gateway(tmp_path, config_text=config(tmp_path, tls_files)) as (_, mcu):
        await mcu.command(b"AT+SKTSERVER=0,3,1,%d,1" % port, OK)
        # Without a client certificate the handshake fails; the MCU hears nothing.
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_tls(tls_files, with_cert=False))
            await reader.readexactly(1)  # TLS 1.3 reports the refusal on first read
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       ssl=client_tls(tls_files))
        me = writer.get_extra_info("sockname")[:2]
        await mcu.expect(accepted(1, 0, me, "tls"))
        writer.write(b"secret")
        await mcu.expect(data_urc(1, b"secret"))
        await mcu.command(b"AT+SKTSEND=1,5,,,12345", OK)
        async with asyncio.timeout(WAIT):
            assert await reader.readexactly(5) == b"12345"
        writer.close()


async def test_tls_server_without_client_verification(tmp_path, tls_files):
    port = free_port()
    async with running_gateway(tmp_path, config_text=config(tmp_path, tls_files)) as (_, mcu):
        await mcu.command(b"AT+SKTSERVER=4,2,1,%d,0" % port, OK)
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_tls(tls_files, with_cert=False))
        me = writer.get_extra_info("sockname")[:2]
        await mcu.expect(accepted(0, 4, me, "tls"))
        writer.write(b"ABC")
        await asyncio.sleep(0.1)
        await mcu.command(b"AT+SKTREAD=0,10", b"+SKTREAD:0,3,ABC" + OK)
        writer.close()


@pytest.mark.parametrize("args", [
    b"20,1,,1234,1",  # link id out of range
    b"0,4,,1234,1",  # conn_type
    b"0,1,,0,1",  # port 0
    b"0,1,,65536,1",
    b"0,1,,1234,2",  # auto_rcv
    b"0,1,,1234",  # too few fields
    b"0,1,,1234,1,1",  # too many
    b"0,2,,1234,1",  # TLS without cert_index
    b"0,2,11,1234,1",  # cert_index out of range
    b"0,2,5,1234,1",  # no such suite
])
async def test_sktserver_parameter_errors(ameba_mcu, args):
    await ameba_mcu.command(b"AT+SKTSERVER=" + args, error(1))
    await ameba_mcu.command(b"AT+SKTSTATE", OK)


async def test_sktserver_link_id_in_use_is_error_1(ameba_mcu):
    await ameba_mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % free_port(), OK)
    await ameba_mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % free_port(), error(1))


async def test_sktserver_port_taken_errors(tmp_path, tls_files):
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    udp_taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_taken.bind(("0.0.0.0", 0))
    port, udp_port = taken.getsockname()[1], udp_taken.getsockname()[1]
    try:
        async with running_gateway(tmp_path,
                                   config_text=config(tmp_path, tls_files)) as (_, mcu):
            await mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % port, error(2))
            await mcu.command(b"AT+SKTSERVER=0,0,,%d,1" % udp_port, error(4))
            await mcu.command(b"AT+SKTSERVER=0,2,1,%d,1" % port, error(11))
            # Nothing was left behind: the ids and descriptors are free.
            await mcu.command(b"AT+SKTSTATE", OK)
            await mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % free_port(), OK)
    finally:
        taken.close()
        udp_taken.close()


async def test_sktserver_certificate_errors(tmp_path, tls_files):
    """Suites that were fine at start-up and broke on disk afterwards."""
    import shutil

    import trustme

    def suite(n: int) -> tuple[Path, Path]:
        cert, key = tmp_path / f"server{n}.pem", tmp_path / f"server{n}.key"
        shutil.copy(tls_files["server_cert"], cert)
        shutil.copy(tls_files["server_key"], key)
        return cert, key

    suites = {n: suite(n) for n in (2, 3, 4)}
    extra = "".join(f'[certs.server.{n}]\ncert = "{cert}"\nkey = "{key}"\n'
                    for n, (cert, key) in suites.items())
    text = config(tmp_path, tls_files) + extra
    async with running_gateway(tmp_path, config_text=text) as (_, mcu):
        suites[2][0].unlink()
        suites[3][0].write_text("not a certificate\n")
        trustme.CA().issue_cert("x").private_key_pem.write_to_path(suites[4][1])
        await mcu.command(b"AT+SKTSERVER=0,2,2,%d,1" % free_port(), error(6))
        await mcu.command(b"AT+SKTSERVER=0,2,3,%d,1" % free_port(), error(9))
        await mcu.command(b"AT+SKTSERVER=0,2,4,%d,1" % free_port(), error(10))
        await mcu.command(b"AT+SKTSTATE", OK)


# -- AT+SKTCLIENT -----------------------------------------------------------------


async def test_tcp_client_example_with_echo(tmp_path):
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu), \
            tcp_peer(echo=True) as (_, port):
        await mcu.command(b"AT+SKTCLIENT=1,1,,127.0.0.1,%d,,1" % port, OK)
        await mcu.command(b"AT+SKTSEND=1,6,,,Hello!", OK)
        await mcu.expect(data_urc(1, b"Hello!"))
        # Escapes: "\," is a comma and "\\" a backslash; data_size counts them once.
        await mcu.command(b"AT+SKTSEND=1,7,,,a\\,b\\\\c d", OK)
        await mcu.expect(data_urc(1, b"a,b\\c d"))


async def test_udp_client_example_bound_to_src_port(tmp_path):
    src = free_port(socket.SOCK_DGRAM)
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu), \
            udp_peer(echo=True) as (peer, port):
        await mcu.command(b"AT+SKTCLIENT=0,0,,127.0.0.1,%d,%d,1" % (port, src), OK)
        await mcu.command(b"AT+SKTSEND=0,4,,,ping", OK)
        assert await peer.next() == (b"ping", ("127.0.0.1", src))
        await mcu.expect(data_urc(0, b"ping", ("127.0.0.1", port)))


async def test_tls_client_example_without_verification_needs_opt_in(tmp_path, tls_files):
    async with tcp_peer(tls=server_tls(tls_files), echo=True) as (_, port):
        # gatewayd verifies by default, even where the module would not.
        async with running_gateway(tmp_path,
                                   config_text=config(tmp_path, tls_files)) as (_, mcu):
            await mcu.command(b"AT+SKTCLIENT=5,2,,127.0.0.1,%d,,1" % port, error(14))
            await mcu.command(b"AT+SKTSTATE", OK)
        trusting = config(tmp_path, tls_files, "trust_any_server_cert = true")
        async with running_gateway(tmp_path, config_text=trusting) as (_, mcu):
            await mcu.command(b"AT+SKTCLIENT=5,2,,127.0.0.1,%d,,1" % port, OK)
            await mcu.command(b"AT+SKTSEND=5,3,,,abc", OK)
            await mcu.expect(data_urc(5, b"abc"))


@pytest.mark.parametrize(("conn_type", "suite", "server_wants_cert"), [
    (3, 2, False),  # verify the server with certs.client.2's CA
    (4, 3, True),  # present certs.client.3's certificate (server not verified: opt-in)
    (5, 1, True),  # both
])
async def test_tls_client_conn_types(tmp_path, tls_files, conn_type, suite, server_wants_cert):
    extra = "trust_any_server_cert = true" if conn_type == 4 else ""
    async with tcp_peer(tls=server_tls(tls_files, server_wants_cert), echo=True) as (_, port), \
            running_gateway(tmp_path, config_text=config(tmp_path, tls_files, extra)) as (_, mcu):
        await mcu.command(b"AT+SKTCLIENT=2,%d,%d,127.0.0.1,%d,,0" % (conn_type, suite, port), OK)
        await mcu.command(b"AT+SKTSEND=2,3,,,ABC", OK)
        await asyncio.sleep(0.1)
        await mcu.command(b"AT+SKTREAD=2,10", b"+SKTREAD:2,3,ABC" + OK)


async def test_tls_client_wrong_ca_is_error_14(tmp_path, tls_files):
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(other)
    extra = f'[certs.client.4]\nca = "{other}"\n'
    async with tcp_peer(tls=server_tls(tls_files)) as (_, port), \
            running_gateway(tmp_path, config_text=config(tmp_path, tls_files) + extra) as (
                _, mcu):
        await mcu.command(b"AT+SKTCLIENT=2,3,4,127.0.0.1,%d,,1" % port, error(14))


@contextlib.asynccontextmanager
async def blocking_tls_server(context: ssl.SSLContext, greeting: bytes):
    """A plain ``ssl``-module server in a thread: unlike asyncio's, it sends the
    TLS alert when it refuses a client. Greets each client it accepts, then
    reads until the client leaves. Yields its port."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(WAIT)
            # ssl.SSLError (an OSError): a refused client.
            with sock, contextlib.suppress(OSError), \
                    context.wrap_socket(sock, server_side=True) as tls:
                tls.sendall(greeting)
                while tls.recv(4096):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, WAIT)
        listener.close()


@contextlib.asynccontextmanager
async def asyncio_tls_server(context: ssl.SSLContext, greeting: bytes):
    """An asyncio TLS server: it refuses a client by closing, without an alert."""

    async def greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(greeter, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.mark.parametrize("kind", ["ssl-module", "asyncio"])
async def test_tls13_server_refusing_the_client_certificate_is_error_14(tmp_path, tls_files,
                                                                        kind):
    """TLS 1.3: the server judges the client's certificate after the client's
    handshake is done, so its refusal comes after; gatewayd waits for it."""
    import trustme

    stranger = trustme.CA().issue_cert("mcu.gatewayd.test")
    stranger.cert_chain_pems[0].write_to_path(tmp_path / "stranger.pem")
    stranger.private_key_pem.write_to_path(tmp_path / "stranger.key")
    extra = (f'[certs.client.5]\nca = "{tls_files["ca"]}"\ncert = "{tmp_path / "stranger.pem"}"\n'
             f'key = "{tmp_path / "stranger.key"}"\n')
    context = server_tls(tls_files, require_client_cert=True)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # The greeting goes out at once: nothing the server sends may be lost.
    peer = blocking_tls_server if kind == "ssl-module" else asyncio_tls_server
    async with peer(context, b"hello") as port, running_gateway(
            tmp_path, config_text=config(tmp_path, tls_files) + extra) as (_, mcu):
        await mcu.command(b"AT+SKTCLIENT=2,3,2,127.0.0.1,%d,,1" % port, error(14))  # no cert
        await mcu.command(b"AT+SKTCLIENT=2,5,5,127.0.0.1,%d,,1" % port, error(14))  # wrong CA
        await mcu.command(b"AT+SKTSTATE", OK)
        await mcu.command(b"AT+SKTCLIENT=2,5,1,127.0.0.1,%d,,1" % port, OK)
        await mcu.expect(data_urc(2, b"hello"))


async def test_tls_client_connection_refused_is_error_13(tmp_path, tls_files):
    async with running_gateway(tmp_path, config_text=config(tmp_path, tls_files)) as (_, mcu):
        await mcu.command(b"AT+SKTCLIENT=2,3,1,127.0.0.1,%d,,1" % free_port(), error(13))


async def test_tcp_client_connection_refused_is_error_2(ameba_mcu):
    await ameba_mcu.command(b"AT+SKTCLIENT=1,1,,127.0.0.1,%d,,1" % free_port(), error(2))
    await ameba_mcu.command(b"AT+SKTCLIENT=1,1,,no-such-host.invalid,80,,1", error(2))
    await ameba_mcu.command(b"AT+SKTSTATE", OK)


async def test_udp_client_src_port_taken_is_error_4(ameba_mcu):
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("0.0.0.0", 0))
    try:
        await ameba_mcu.command(b"AT+SKTCLIENT=0,0,,127.0.0.1,9,%d,1" % taken.getsockname()[1],
                                error(4))
    finally:
        taken.close()


async def test_client_certificate_load_failures(tmp_path, tls_files):
    import shutil

    gone, broken = tmp_path / "gone-ca.pem", tmp_path / "broken-ca.pem"
    for path in (gone, broken):
        shutil.copy(tls_files["ca"], path)
    extra = f'[certs.client.5]\nca = "{gone}"\n[certs.client.6]\nca = "{broken}"\n'
    async with running_gateway(tmp_path,
                               config_text=config(tmp_path, tls_files) + extra) as (_, mcu):
        gone.unlink()
        broken.write_text("garbage\n")
        await mcu.command(b"AT+SKTCLIENT=2,3,5,127.0.0.1,443,,1", error(6))
        await mcu.command(b"AT+SKTCLIENT=2,3,6,127.0.0.1,443,,1", error(9))


@pytest.mark.parametrize("args", [
    b"20,1,,127.0.0.1,80,,1",  # link id
    b"0,6,,127.0.0.1,80,,1",  # conn_type
    b"0,1,,,80,,1",  # empty host
    b"0,1,,127.0.0.1,0,,1",  # port 0
    b"0,1,,127.0.0.1,80,,",  # auto_rcv missing
    b"0,1,,127.0.0.1,80,1",  # too few fields
    b"0,0,,127.0.0.1,80,,1",  # UDP without src_port
    b"0,3,,127.0.0.1,80,,1",  # conn_type 3 without cert_index
    b"0,4,2,127.0.0.1,80,,1",  # certs.client.2 has no client certificate
    b"0,5,9,127.0.0.1,80,,1",  # no such suite
])
async def test_sktclient_parameter_errors(tmp_path, tls_files, args):
    async with running_gateway(tmp_path, config_text=config(tmp_path, tls_files)) as (_, mcu):
        await mcu.command(b"AT+SKTCLIENT=" + args, error(1))
        await mcu.command(b"AT+SKTCLIENT=0,1,,%s,80,,1" % (b"h" * 256), error(1))


async def test_sktclient_link_id_in_use_is_error_1(tmp_path):
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu), \
            tcp_peer() as (_, port):
        await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1" % port, OK)
        await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1" % port, error(1))


async def test_domain_name_and_ipv6(tmp_path):
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu), \
            tcp_peer(echo=True) as (_, port), tcp_peer("::1", echo=True) as (_, port6), \
            udp_peer("::1", echo=True) as (_, udp6):
        await mcu.command(b"AT+SKTCLIENT=0,1,,localhost,%d,,1" % port, OK)
        await mcu.command(b"AT+SKTCLIENT=1,1,,::1,%d,,1" % port6, OK)
        await mcu.command(b"AT+SKTCLIENT=2,0,,::1,%d,%d,1" % (udp6, free_port(
            socket.SOCK_DGRAM, "::1")), OK)
        for link in (0, 1):
            await mcu.command(b"AT+SKTSEND=%d,2,,,v%d" % (link, link), OK)
            await mcu.expect(data_urc(link, b"v%d" % link))
        await mcu.command(b"AT+SKTSEND=2,2,,,v6", OK)
        await mcu.expect(data_urc(2, b"v6", ("::1", udp6)))
        await mcu.send(b"AT+SKTSTATE\r\n")
        state = await mcu.read_until(OK)
        assert b"link_id:1,client,tcp,src_address:0.0.0.0,src_port:0,dst_address:::1," \
               b"dst_port:%d,socket_fd:1\r\n" % port6 in state


#: Run in a mount namespace whose /etc/hosts maps a name to ::1 only.
V6_ONLY_NAME = "v6only.gatewayd.test"
V6_SCRIPT = """
import asyncio, socket, sys
from pathlib import Path
from gatewayd.testing import running_gateway

NAME = sys.argv[2]
OK = b"\\r\\nOK\\r\\n"


async def main(tmp):
    assert {info[0] for info in socket.getaddrinfo(NAME, 80)} == {socket.AF_INET6}

    async def echo(reader, writer):
        while data := await reader.read(100):
            writer.write(data)

    server = await asyncio.start_server(echo, "::1", 0)
    port = server.sockets[0].getsockname()[1]
    text = '[[port]]\\nname = "mcu"\\ndevice = "pty:ttyAT0"\\ndialect = "ameba"\\n'
    async with running_gateway(Path(tmp), config_text=text) as (_, mcu):
        await mcu.command(b"AT+SKTCLIENT=0,1,,%s,%d,,1" % (NAME.encode(), port), OK)
        await mcu.command(b"AT+SKTSEND=0,2,,,v6", OK)
        await mcu.expect(b"[$][SKT][DATA][0][2]:v6\\r\\n")
    print("resolved to IPv6 only and connected")


asyncio.run(main(sys.argv[1]))
"""


def test_name_that_resolves_only_to_ipv6(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + f"\n::1 {V6_ONLY_NAME}\n")
    script = tmp_path / "v6.py"
    script.write_text(V6_SCRIPT)
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
         str(hosts), sys.executable, str(script), str(tmp_path), V6_ONLY_NAME],
        capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    assert b"resolved to IPv6 only and connected" in result.stdout


# -- AT+SKTSEND / AT+SKTSENDRAW / AT+SKTREAD ----------------------------------------


async def test_sktsend_errors(tmp_path):
    port = free_port()
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu), \
            tcp_peer() as (_, peer_port):
        await mcu.command(b"AT+SKTSEND=0,6,,,Hello!", error(1))  # no such link
        await mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % port, OK)
        await mcu.command(b"AT+SKTSEND=0,6,,,Hello!", error(1))  # TCP server id
        await mcu.command(b"AT+SKTCLIENT=1,1,,127.0.0.1,%d,,1" % peer_port, OK)
        await mcu.command(b"AT+SKTSEND=1,5,,,Hello!", error(1))  # size mismatch
        await mcu.command(b"AT+SKTSEND=1,7,,,Hello!", error(1))
        await mcu.command(b"AT+SKTSEND=1,0,,,", error(1))  # no data
        await mcu.command(b"AT+SKTSEND=1,6,,Hello!", error(1))  # four fields
        await mcu.command(b"AT+SKTSEND=1,3,,,a,b", error(1))  # unescaped comma
        await mcu.command(b"AT+SKTSEND=1,2,,,a\\b", error(1))  # bad escape
        await mcu.command(b"AT+SKTSEND=1,6,,,Hello!", OK)


async def test_udp_send_to_unresolvable_destination_is_error_2(tmp_path):
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu):
        await mcu.command(b"AT+SKTSERVER=0,0,,%d,1" % free_port(socket.SOCK_DGRAM), OK)
        await mcu.command(b"AT+SKTSEND=0,2,no-such-host.invalid,9,hi", error(2))
        await mcu.command(b"AT+SKTSENDRAW=0,2,no-such-host.invalid,9", TT)
        await mcu.send(b"hi")
        await mcu.expect(error(2))
        await mcu.command(b"AT+SKTSTATE", b"link_id:0,server,udp,src_address:", timeout=WAIT)
        await mcu.read_until(OK)


async def test_sktsendraw_examples(tmp_path, tls_files):
    udp_port, tls_port = free_port(socket.SOCK_DGRAM), free_port()
    async with running_gateway(tmp_path, config_text=config(tmp_path, tls_files)) as (_, mcu), \
            tcp_peer() as (peer, port), udp_peer() as (udp, udp_peer_port):
        await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1" % port, OK)
        await mcu.command(b"AT+SKTSENDRAW=0,6", TT)
        await mcu.send(b"Hello!")
        await mcu.expect(OK)
        assert await peer.wait_for(6) == b"Hello!"

        await mcu.command(b"AT+SKTSERVER=3,0,,%d,1" % udp_port, OK)
        await mcu.command(b"AT+SKTSENDRAW=3,10,127.0.0.1,%d" % udp_peer_port, TT)
        await mcu.send(b"Lwip_Test!")
        await mcu.expect(OK)
        assert await udp.next() == (b"Lwip_Test!", ("127.0.0.1", udp_port))

        await mcu.command(b"AT+SKTSERVER=1,2,1,%d,1" % tls_port, OK)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", tls_port, ssl=client_tls(tls_files, with_cert=False))
        await mcu.expect(accepted(2, 1, writer.get_extra_info("sockname")[:2], "tls"))
        await mcu.command(b"AT+SKTSENDRAW=2,5", TT)
        await mcu.send(b"12345")
        await mcu.expect(OK)
        async with asyncio.timeout(WAIT):
            assert await reader.readexactly(5) == b"12345"
        writer.close()


async def test_sktsendraw_binary_large_block_with_watermarks(tmp_path):
    block = os.urandom(200 * 1024)
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu), \
            tcp_peer() as (peer, port):
        await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1" % port, OK)
        await mcu.command(b"AT+SKTSENDRAW=0,%d" % len(block), TT)
        for start in range(0, len(block), 4096):
            await mcu.send(block[start:start + 4096])
            await asyncio.sleep(0)
        reply = await mcu.read_until(OK, timeout=10)
        assert reply.replace(b"[$][TT]:High Watermark\r\n", b"").replace(
            b"[$][TT]:Low Watermark\r\n", b"") == OK
        assert hashlib.sha256(await peer.wait_for(len(block))).digest() == \
            hashlib.sha256(block).digest()


async def test_sktsendraw_to_a_peer_that_stopped_reading_is_error_2_after_so_sndtimeo(tmp_path):
    """Once the peer's window, the socket's buffer and the transport's are full,
    a send waits, and AT+SKTCFG's so_sndtimeo bounds that wait: ERROR: 2, and
    the port answers again."""
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu):
        with listener_that_never_reads() as server:
            await mcu.command(b"AT+SKTCFG=300,0,0,0,0,0,0", OK)  # so_sndtimeo 300 ms
            await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1" % server.getsockname()[1],
                              OK)
            peer = await accept(server)
            reply, waited = await send_until_refused(mcu, b"AT+SKTSENDRAW=0,8192", TT, OK)
            assert reply == error(2)
            assert waited >= 0.25
            await mcu.command(b"AT+TEST", OK)
            peer.close()


async def test_sktsendraw_errors_and_abort(tmp_path):
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu), \
            tcp_peer() as (peer, port):
        await mcu.command(b"AT+SKTSENDRAW=0,5", error(1))  # no such link
        await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1" % port, OK)
        await mcu.command(b"AT+SKTSENDRAW=0,0", error(1))
        await mcu.command(b"AT+SKTSENDRAW=0,-3", error(1))
        # "<" three times, each alone, then silence: abort before any data.
        await mcu.command(b"AT+SKTSENDRAW=0,10", TT)
        for _ in range(3):
            await mcu.send(b"<")
            await asyncio.sleep(0.005)
        await mcu.expect(error(4))
        # Partial data: what arrived is sent and the command answers OK.
        await mcu.command(b"AT+SKTSENDRAW=0,10", TT)
        await mcu.send(b"abc")
        await asyncio.sleep(0.05)
        for _ in range(3):
            await mcu.send(b"<")
            await asyncio.sleep(0.005)
        await mcu.expect(OK)
        assert await peer.wait_for(3) == b"abc"
        await mcu.command(b"AT+SKTSEND=0,2,,,ok", OK)


async def test_sktread_example_tcp_seed(tmp_path):
    port = free_port()
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu):
        await mcu.command(b"AT+SKTSERVER=0,1,,%d,0" % port, OK)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await mcu.expect(accepted(1, 0, writer.get_extra_info("sockname")[:2]))
        writer.write(b"Hello!")
        await asyncio.sleep(0.1)
        await mcu.command(b"AT+SKTREAD=1,10", b"+SKTREAD:1,6,Hello!" + OK)
        await mcu.command(b"AT+SKTREAD=1,10", b"+SKTREAD:1,0," + OK)
        # Binary data, NULs and CR LF included, comes out whole.
        writer.write(b"\x00\r\nOK\r\n\xff")
        await asyncio.sleep(0.1)
        await mcu.command(b"AT+SKTREAD=1,3", b"+SKTREAD:1,3,\x00\r\n" + OK)
        await mcu.command(b"AT+SKTREAD=1,100", b"+SKTREAD:1,5,OK\r\n\xff" + OK)
        writer.close()


@pytest.mark.parametrize("args", [b"5,10", b"0,10", b"1,0", b"1,-1", b"1", b"1,10,1", b"20,1"])
async def test_sktread_parameter_errors(tmp_path, args):
    port = free_port()
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu):
        await mcu.command(b"AT+SKTSERVER=0,1,,%d,0" % port, OK)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await mcu.expect(accepted(1, 0, writer.get_extra_info("sockname")[:2]))
        await mcu.command(b"AT+SKTREAD=" + args, error(1))
        writer.close()


async def test_one_megabyte_through_sktread_in_pieces(tmp_path):
    payload = os.urandom(1024 * 1024)
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (daemon, mcu), \
            tcp_peer() as (peer, port):
        await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,0" % port, OK)
        async with asyncio.timeout(WAIT):
            await peer.connected.wait()
        writer = peer.writers[0]
        writer.write(payload)
        drained = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.3)
        link = links_of(daemon)[0]
        inbox = link.inbox
        # The socket is no longer read: gatewayd holds its bounded buffer (plus
        # one socket read) and the rest waits in the kernel and in the peer.
        assert len(inbox) <= READ_BUFFER_LIMIT + 256 * 1024
        assert link.bytes_in <= READ_BUFFER_LIMIT + 256 * 1024
        got = bytearray()
        peak = 0
        async with asyncio.timeout(60):
            while len(got) < len(payload):
                await mcu.send(b"AT+SKTREAD=0,16384\r\n")
                head = await mcu.read_until(b",", timeout=WAIT)
                head += await mcu.read_until(b",", timeout=WAIT)
                assert head.startswith(b"+SKTREAD:0,")
                size = int(head.split(b",")[1])
                got += await mcu.read_exactly(size)
                await mcu.expect(OK)
                peak = max(peak, len(inbox))
        assert bytes(got) == payload
        assert peak <= READ_BUFFER_LIMIT + 256 * 1024
        await drained


async def test_udp_auto_receive_off_keeps_boundaries_and_counts_overflow(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (daemon, mcu), \
            udp_peer() as (peer, peer_port):
        await mcu.command(b"AT+SKTSERVER=0,0,,%d,0" % port, OK)
        total = READ_DATAGRAM_LIMIT + 16
        for i in range(total):
            peer.transport.sendto(b"datagram %03d" % i, ("127.0.0.1", port))
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.2)
        inbox = links_of(daemon)[0].inbox
        assert inbox.dropped == total - READ_DATAGRAM_LIMIT
        await mcu.command(b"AT+SKTREAD=0,100",
                          b"+SKTREAD:0,12,127.0.0.1,%d,datagram 000" % peer_port + OK)
        # A read shorter than the datagram takes its start; the rest is discarded.
        await mcu.command(b"AT+SKTREAD=0,8", b"+SKTREAD:0,8,127.0.0.1,%d,datagram" % peer_port + OK)
        await mcu.command(b"AT+SKTREAD=0,100",
                          b"+SKTREAD:0,12,127.0.0.1,%d,datagram 002" % peer_port + OK)


# -- peers closing -------------------------------------------------------------------


async def test_peer_close_with_auto_receive_keeps_the_id(tmp_path):
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (daemon, mcu), \
            tcp_peer() as (peer, port):
        await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1" % port, OK)
        async with asyncio.timeout(WAIT):
            await peer.connected.wait()
        peer.writers[0].write(b"bye")
        await mcu.expect(data_urc(0, b"bye"))
        peer.writers[0].close()
        async with asyncio.timeout(WAIT):
            while links_of(daemon)[0].fd >= 0:
                await asyncio.sleep(0.01)
        await mcu.expect_silence(0.1)  # the firmware prints nothing when a peer closes
        await mcu.command(b"AT+SKTSTATE",
                          b"link_id:0,client,tcp,src_address:0.0.0.0,src_port:0,"
                          b"dst_address:127.0.0.1,dst_port:%d,socket_fd:-1\r\n" % port + OK)
        await mcu.command(b"AT+SKTSEND=0,2,,,hi", error(1))
        await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1" % port, error(1))
        await mcu.command(b"AT+SKTDEL=0", OK)
        await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1" % port, OK)


async def test_peer_close_without_auto_receive_data_then_error_4(tmp_path):
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu), \
            tcp_peer() as (peer, port):
        await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,0" % port, OK)
        async with asyncio.timeout(WAIT):
            await peer.connected.wait()
        peer.writers[0].write(b"last words")
        peer.writers[0].close()
        await asyncio.sleep(0.2)
        await mcu.command(b"AT+SKTREAD=0,4", b"+SKTREAD:0,4,last" + OK)
        await mcu.command(b"AT+SKTREAD=0,100", b"+SKTREAD:0,6, words" + OK)
        await mcu.command(b"AT+SKTREAD=0,100", error(4))
        await mcu.command(b"AT+SKTREAD=0,100", error(1))
        await mcu.command(b"AT+SKTSTATE", b"link_id:0,client,tcp,src_address:0.0.0.0,"
                          b"src_port:0,dst_address:127.0.0.1,dst_port:%d,socket_fd:-1\r\n"
                          % port + OK)


# -- AT+SKTSTATE / AT+SKTDEL --------------------------------------------------------------


async def test_state_and_delete_document_scenario(tmp_path, tls_files):
    """TCP server 0 with seed 3, UDP server 1, TLS client 2, then AT+SKTDEL=0."""
    tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    text = config(tmp_path, tls_files, 'server_bind = "127.0.0.1"')
    async with running_gateway(tmp_path, config_text=text) as (_, mcu), \
            tcp_peer(tls=server_tls(tls_files)) as (_, tls_port):
        await mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % tcp_port, OK)
        await mcu.command(b"AT+SKTSERVER=1,0,,%d,1" % udp_port, OK)
        await mcu.command(b"AT+SKTCLIENT=2,3,1,127.0.0.1,%d,,1" % tls_port, OK)
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        seed_port = writer.get_extra_info("sockname")[1]
        await mcu.expect(accepted(3, 0, ("127.0.0.1", seed_port)))
        server0 = (b"link_id:0,server,tcp,src_address:127.0.0.1,src_port:%d,"
                   b"dst_address:0.0.0.0,dst_port:0,socket_fd:0\r\n" % tcp_port)
        seed3 = (b"link_id:3,seed,tcp,src_address:0.0.0.0,src_port:0,"
                 b"dst_address:127.0.0.1,dst_port:%d,socket_fd:3\r\n" % seed_port)
        server1 = (b"link_id:1,server,udp,src_address:127.0.0.1,src_port:%d,"
                   b"dst_address:0.0.0.0,dst_port:0,socket_fd:1\r\n" % udp_port)
        client2 = (b"link_id:2,client,ssl,src_address:0.0.0.0,src_port:0,"
                   b"dst_address:127.0.0.1,dst_port:%d,socket_fd:2\r\n" % tls_port)
        await mcu.command(b"AT+SKTSTATE", server0 + seed3 + server1 + client2 + OK)
        await mcu.command(b"AT+SKTDEL=0", OK)
        await mcu.command(b"AT+SKTSTATE", server1 + client2 + OK)
        # The seed's connection went with its server, and nothing listens any more.
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", tcp_port), WAIT)
        writer.close()


async def test_delete_server_closes_its_seeds(tmp_path):
    port = free_port()
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu):
        await mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % port, OK)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await mcu.expect(accepted(1, 0, writer.get_extra_info("sockname")[:2]))
        await mcu.command(b"AT+SKTDEL=1", OK)  # a seed alone
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await mcu.expect(accepted(1, 0, writer.get_extra_info("sockname")[:2]))
        await mcu.command(b"AT+SKTDEL=0", OK)
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
        await mcu.command(b"AT+SKTSTATE", OK)


@pytest.mark.parametrize("args", [b"0", b"20", b"-1", b""])
async def test_sktdel_unknown_id_is_error_1(ameba_mcu, args):
    await ameba_mcu.command(b"AT+SKTDEL=" + args, error(1))


async def test_sktstate_with_nothing_open(ameba_mcu):
    await ameba_mcu.command(b"AT+SKTSTATE", OK)


# -- the pool of 20 ids ---------------------------------------------------------------------


async def test_twenty_links_and_the_twenty_first_refused(tmp_path):
    port = free_port()
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu):
        await mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % port, OK)
        clients = []
        for seed in range(1, 20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            clients.append((reader, writer))
            await mcu.expect(accepted(seed, 0, writer.get_extra_info("sockname")[:2]))
        # Every id is taken: a 21st peer is closed unannounced, and there is no id 20.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
        writer.close()
        await mcu.expect_silence(0.1)
        await mcu.command(b"AT+SKTCLIENT=20,1,,127.0.0.1,%d,,1" % port, error(1))
        await mcu.send(b"AT+SKTSTATE\r\n")
        state = await mcu.read_until(OK)
        assert state.count(b",seed,tcp,") == 19
        # All 20 work at once.
        for seed, (_, writer) in enumerate(clients, start=1):
            writer.write(b"n%02d" % seed)
        got = b""
        async with asyncio.timeout(WAIT):
            while got.count(b"[$][SKT][DATA]") < 19:
                got += await mcu.read_until(b"\r\n")
        for seed in range(1, 20):
            assert data_urc(seed, b"n%02d" % seed) in got
        # Freeing one id lets the next peer in, with that id.
        await mcu.command(b"AT+SKTDEL=7", OK)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await mcu.expect(accepted(7, 0, writer.get_extra_info("sockname")[:2]))
        for _, w in clients:
            w.close()
        writer.close()


# -- operator settings -----------------------------------------------------------------------


async def test_server_bind_address_from_config(tmp_path):
    port = free_port()
    text = config(tmp_path, extra='server_bind = "127.0.0.1"')
    async with running_gateway(tmp_path, config_text=text) as (_, mcu):
        await mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % port, OK)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.2", port)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await mcu.expect(accepted(1, 0, writer.get_extra_info("sockname")[:2]))
        writer.close()


async def test_server_bind_every_interface_by_default(tmp_path):
    port = free_port()
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu):
        await mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % port, OK)
        _, writer = await asyncio.open_connection("127.0.0.2", port)
        await mcu.expect(accepted(1, 0, writer.get_extra_info("sockname")[:2]))
        _, writer6 = await asyncio.open_connection("::1", port)
        await mcu.expect(accepted(2, 0, writer6.get_extra_info("sockname")[:2]))
        writer.close()
        writer6.close()


async def test_server_allow_turns_other_networks_away(tmp_path):
    port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    text = config(tmp_path, extra='server_allow = ["127.0.0.2/32"]')
    async with running_gateway(tmp_path, config_text=text) as (_, mcu):
        await mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % port, OK)
        await mcu.command(b"AT+SKTSERVER=1,0,,%d,1" % udp_port, OK)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
        writer.close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.sendto(b"not you", ("127.0.0.1", udp_port))
        await mcu.expect_silence(0.2)
        _, writer = await asyncio.open_connection("127.0.0.1", port,
                                                  local_addr=("127.0.0.2", 0))
        await mcu.expect(accepted(2, 0, writer.get_extra_info("sockname")[:2]))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as allowed:
            allowed.bind(("127.0.0.2", 0))
            allowed.sendto(b"welcome", ("127.0.0.1", udp_port))
            await mcu.expect(data_urc(1, b"welcome", allowed.getsockname()))
        writer.close()


async def test_restart_closes_every_socket(tmp_path):
    port = free_port()
    async with running_gateway(tmp_path, config_text=config(tmp_path)) as (_, mcu), \
            tcp_peer() as (_peer, peer_port):
        await mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % port, OK)
        await mcu.command(b"AT+SKTCLIENT=1,1,,127.0.0.1,%d,,1" % peer_port, OK)
        await mcu.command(b"AT+RST", OK + b"ATCMD READY\r\n")
        await mcu.command(b"AT+SKTSTATE", OK)
        await mcu.command(b"AT+SKTSERVER=0,1,,%d,1" % port, OK)  # the port is free again


async def test_an_untrusted_server_is_explained_in_the_log(tmp_path, tls_files):
    """Where gatewayd is stricter than the module (conn_type 2 verifies against
    the system store), the failure's log line says so and names the setting."""
    import io
    import json

    from gatewayd.logs import configure_logging

    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        async with tcp_peer(tls=server_tls(tls_files), echo=True) as (_, port), \
                running_gateway(tmp_path, config_text=config(tmp_path, tls_files)) as (_, mcu):
            await mcu.command(b"AT+SKTCLIENT=5,2,,127.0.0.1,%d,,1" % port, error(14))
    finally:
        configure_logging("info", "json")
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    [event] = [e for e in events if e["event"] == "server certificate not trusted"]
    assert event["port"] == "mcu" and event["setting"] == "trust_any_server_cert"
    assert "trust_any_server_cert = true" in event["hint"]
