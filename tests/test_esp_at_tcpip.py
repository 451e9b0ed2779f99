"""ESP-AT TCP/IP links end to end: a virtual MCU on the pty, real TCP and UDP
peers on 127.0.0.1 (asyncio servers and sockets), real TLS from trustme.

Expected bytes are literal, from shared/reference/esp-at-tcpip.md (§3, §4 and
the worked examples of §6, with the peers' addresses in place of the
document's).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

import pytest
from conftest import accept, listener_that_never_reads, send_until_refused

from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
PROMPT = b"\r\nOK\r\n\r\n>"
SEND_OK = b"\r\nSEND OK\r\n"
SEND_FAIL = b"\r\nSEND FAIL\r\n"
BUSY = b"\r\nbusy p...\r\n"


def port_config(extra: str = "") -> str:
    return ('[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "esp-at"\n'
            'wifi_interface = "lo"\n' + extra)


class Peer:
    """A TCP server on 127.0.0.1 that keeps each accepted connection."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.Queue()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Peer:
        self.server = await asyncio.start_server(
            lambda r, w: self.connections.put_nowait((r, w)), "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        while not self.connections.empty():
            self.connections.get_nowait()[1].close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def accept(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(self.connections.get(), 5)


async def connect_tcp(mcu, peer: Peer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """AT+CIPSTART of a TCP link to *peer* (mux 0): ``CONNECT``, ``OK``; the
    peer's side of it."""
    await mcu.command(b'AT+CIPSTART="TCP","127.0.0.1",%d' % peer.port, b"CONNECT\r\n" + OK)
    return await peer.accept()


async def station_up(mcu) -> None:
    """Reference §6 "station up", echo off first."""
    await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await mcu.command(b"AT+CWMODE=1", OK)
    await mcu.command(b'AT+CWJAP="espressif","1234567890"',
                      b"WIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)


@pytest.fixture
async def gateway(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await station_up(mcu)
        yield mcu


# -- E1: TCP client, single connection -------------------------------------------


async def test_e1_tcp_client_single_connection(gateway):
    mcu = gateway
    async with Peer() as peer:
        reader, writer = await connect_tcp(mcu, peer)
        await mcu.command(b"AT+CIPSEND=4", PROMPT)
        await mcu.send(b"test")
        await mcu.expect(b"\r\nRecv 4 bytes\r\n" + SEND_OK)
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"test"
        writer.write(b"test")
        await mcu.expect(b"\r\n+IPD,4:test\r\n")
        await mcu.command(b"AT+CIPCLOSE", b"CLOSED\r\n" + OK)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # FIN


async def test_e1_variant_surplus_bytes_get_busy(gateway):
    mcu = gateway
    async with Peer() as peer:
        reader, _ = await connect_tcp(mcu, peer)
        await mcu.command(b"AT+CIPSEND=4", PROMPT)
        await mcu.send(b"test\r\n")
        got = await mcu.read_until(SEND_OK)
        # busy p... lands around Recv (timing-dependent, reference E1).
        assert got.replace(BUSY, b"", 1) == b"\r\nRecv 4 bytes\r\n" + SEND_OK
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"test"


async def test_cipstate_and_cipstatus_list_the_open_link(gateway):
    mcu = gateway
    await mcu.command(b"AT+CIPSTATUS", b"STATUS:2\r\n" + OK)
    async with Peer() as peer:
        _, writer = await connect_tcp(mcu, peer)
        local_port = writer.get_extra_info("peername")[1]
        await mcu.command(b"AT+CIPSTATE?", b'+CIPSTATE:0,"TCP","127.0.0.1",%d,%d,0\r\n'
                          % (peer.port, local_port) + OK)
        await mcu.command(b"AT+CIPSTATUS", b'STATUS:3\r\n+CIPSTATUS:0,"TCP","127.0.0.1",%d,%d,0'
                          b"\r\n" % (peer.port, local_port) + OK)
        writer.close()
        await mcu.expect(b"CLOSED\r\n")
        await mcu.command(b"AT+CIPSTATE?", OK)
        await mcu.command(b"AT+CIPSTATUS", b"STATUS:4\r\n" + OK)


async def test_peer_close_prints_closed_and_frees_the_link(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+CIPMUX=1", OK)
        await mcu.command(b'AT+CIPSTART=3,"TCP","127.0.0.1",%d' % peer.port,
                          b"3,CONNECT\r\n" + OK)
        _, writer = await peer.accept()
        writer.write(b"bye")
        writer.close()
        await mcu.expect(b"\r\n+IPD,3,3:bye\r\n3,CLOSED\r\n")
        await mcu.command(b'AT+CIPSTART=3,"TCP","127.0.0.1",%d' % peer.port,
                          b"3,CONNECT\r\n" + OK)


async def test_connect_failure_is_a_bare_error_without_closed(gateway):
    mcu = gateway
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await mcu.command(b'AT+CIPSTART="TCP","127.0.0.1",%d' % port, ERROR)
    await mcu.expect_silence(0.2)


async def test_already_connected_is_a_bare_error(gateway):
    mcu = gateway
    async with Peer() as peer:
        start = b'AT+CIPSTART="TCP","127.0.0.1",%d' % peer.port
        await mcu.command(start, b"CONNECT\r\n" + OK)
        await mcu.command(start, ERROR)


@pytest.mark.parametrize("line", [
    b'AT+CIPSTART="tcp","127.0.0.1",80',            # the type is case-sensitive
    b'AT+CIPSTART="TCP","127.0.0.1",0',             # port 0
    b'AT+CIPSTART="TCP","127.0.0.1",65536',
    b'AT+CIPSTART="TCP","",80',                     # empty host
    b'AT+CIPSTART="TCP","' + b"a" * 65 + b'",80',   # host over 64 bytes
    b'AT+CIPSTART="TCP","127.0.0.1",80,7201',       # keep_alive over 7200
    b'AT+CIPSTART="TCP","127.0.0.1",80,1,"",1000,9',  # too many parameters
    b'AT+CIPSTART="TCP","127.0.0.1"',               # no port
    b'AT+CIPSTART="UDP","127.0.0.1",80,1234,3',     # UDP mode over 2
    b'AT+CIPSTART="TCPv6","::1",80',                # IPv6 is off (AT+CIPV6)
    b'AT+CIPSTART="TCP","::1",80',                  # an IPv6 literal for "TCP"
    b'AT+CIPSTART="TCP","' + b"a" * 64 + b'",80',   # a label over 63 bytes: never resolves
    b'AT+CIPSTART=0,"TCP","127.0.0.1",80',          # an id in mux 0
    b"AT+CIPSEND=4",                                # no link
    b"AT+CIPSEND=0",
    b"AT+CIPSEND=8193",
    b"AT+CIPCLOSE",                                 # nothing open
    b"AT+CIPCLOSE=0",                               # an id in mux 0
    b"AT+CIPRECVDATA=4",                            # not passive
    b"AT+CIPMUX=2",
    b"AT+CIPSSLSIZE=4096",                          # ESP8266 only: tells an ESP32
])
async def test_errors(gateway, line):
    await gateway.command(line, ERROR)


async def test_cipstart_needs_a_joined_station(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b'AT+CIPSTART="TCP","127.0.0.1",80', ERROR)
        await mcu.command(b"AT+CWMODE=0", OK)
        await mcu.command(b'AT+CIPSTART="TCP","127.0.0.1",80', ERROR)


# -- E3, E4: UDP -----------------------------------------------------------------------


class UdpPeer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.received.put_nowait((data, addr))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])


@contextlib.asynccontextmanager
async def udp_peer():
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0))
    try:
        yield peer
    finally:
        transport.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_e3_udp_fixed_peer_mux_1(gateway):
    mcu = gateway
    local = free_udp_port()
    async with udp_peer() as peer, udp_peer() as other:
        await mcu.command(b"AT+CIPMUX=1", OK)
        await mcu.command(b'AT+CIPSTART=4,"UDP","127.0.0.1",%d,%d,0' % (peer.port, local),
                          b"4,CONNECT\r\n" + OK)
        await mcu.command(b"AT+CIPSEND=4,7", PROMPT)
        await mcu.send(b"abcdefg")
        await mcu.expect(b"\r\nRecv 7 bytes\r\n" + SEND_OK)
        data, _ = await asyncio.wait_for(peer.received.get(), 5)
        assert data == b"abcdefg"
        peer.transport.sendto(b"test", ("127.0.0.1", local))
        await mcu.expect(b"\r\n+IPD,4,4:test\r\n")
        other.transport.sendto(b"more", ("127.0.0.1", local))
        await mcu.expect(b"\r\n+IPD,4,4:more\r\n")
        await mcu.command(b"AT+CIPSTATE?", b'+CIPSTATE:4,"UDP","127.0.0.1",%d,%d,0\r\n'
                          % (peer.port, local) + OK)
        await mcu.command(b"AT+CIPCLOSE=4", b"4,CLOSED\r\n" + OK)


async def test_e4_udp_changeable_peer_mux_0(gateway):
    mcu = gateway
    local = free_udp_port()
    async with udp_peer() as peer, udp_peer() as other:
        await mcu.command(b'AT+CIPSTART="UDP","127.0.0.1",%d,%d,2' % (peer.port, local),
                          b"CONNECT\r\n" + OK)
        await mcu.command(b"AT+CIPSEND=4", PROMPT)
        await mcu.send(b"test")
        await mcu.expect(b"\r\nRecv 4 bytes\r\n" + SEND_OK)
        assert (await asyncio.wait_for(peer.received.get(), 5))[0] == b"test"
        await mcu.command(b'AT+CIPSEND=4,"127.0.0.1",%d' % other.port, PROMPT)
        await mcu.send(b"test")
        await mcu.expect(b"\r\nRecv 4 bytes\r\n" + SEND_OK)
        assert (await asyncio.wait_for(other.received.get(), 5))[0] == b"test"
        # The one-off destination became the stored peer.
        await mcu.command(b"AT+CIPSTATE?", b'+CIPSTATE:0,"UDP","127.0.0.1",%d,%d,0\r\n'
                          % (other.port, local) + OK)
        peer.transport.sendto(b"test", ("127.0.0.1", local))
        await mcu.expect(b"\r\n+IPD,4:test\r\n")
        # Mode 2: the peer follows the sender.
        await mcu.command(b"AT+CIPSTATE?", b'+CIPSTATE:0,"UDP","127.0.0.1",%d,%d,0\r\n'
                          % (peer.port, local) + OK)
        await mcu.command(b"AT+CIPCLOSE", b"CLOSED\r\n" + OK)


async def test_cipsend_remote_address_is_for_udp_only(gateway):
    mcu = gateway
    async with Peer() as peer:
        await connect_tcp(mcu, peer)
        await mcu.command(b'AT+CIPSEND=4,"127.0.0.1",80', ERROR)


# -- E12: passive receive ------------------------------------------------------------


async def test_e12_passive_receive(gateway):
    mcu = gateway
    async with Peer() as peer:
        _, writer = await connect_tcp(mcu, peer)
        await mcu.command(b"AT+CIPRECVTYPE=1", OK)
        writer.write(b"test")
        await mcu.expect(b"\r\n+IPD,4\r\n")
        writer.write(b"more")
        await writer.drain()
        await mcu.expect_silence(0.2)  # notified once until a read
        await mcu.command(b"AT+CIPRECVLEN?", b"+CIPRECVLEN:8\r\n" + OK)
        await mcu.command(b"AT+CIPRECVDATA=4", b"+CIPRECVDATA:4,test" + OK + b"\r\n+IPD,4\r\n")
        await mcu.command(b"AT+CIPRECVDATA=3", b"+CIPRECVDATA:3,mor" + OK + b"\r\n+IPD,1\r\n")
        await mcu.command(b"AT+CIPRECVDATA=4", b"+CIPRECVDATA:1,e" + OK)
        await mcu.command(b"AT+CIPRECVDATA=4", ERROR)


async def test_passive_close_is_held_until_the_data_is_read(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+CIPRECVTYPE=1", OK)
        _, writer = await connect_tcp(mcu, peer)
        writer.write(b"last words")
        writer.close()
        await mcu.expect(b"\r\n+IPD,10\r\n")
        await mcu.expect_silence(0.3)
        await mcu.command(b"AT+CIPSTATE?", b'+CIPSTATE:0,"TCP","127.0.0.1",%d,' % peer.port,
                          )
        mcu.flush_input()
        await mcu.command(b"AT+CIPDINFO=1", OK)
        await mcu.command(b"AT+CIPRECVDATA=100", b'+CIPRECVDATA:10,"127.0.0.1",%d,last words'
                          % peer.port + OK + b"CLOSED\r\n")


async def test_cipdinfo_shows_the_peer_in_ipd(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+CIPDINFO?", b"+CIPDINFO:false" + OK)
        await mcu.command(b"AT+CIPDINFO=1", OK)
        await mcu.command(b"AT+CIPDINFO?", b"+CIPDINFO:true" + OK)
        _, writer = await connect_tcp(mcu, peer)
        writer.write(b"hi")
        await mcu.expect(b'\r\n+IPD,2,"127.0.0.1",%d:hi\r\n' % peer.port)


async def test_ipd_trailing_crlf_can_be_switched_off(tmp_path):
    config = port_config("ipd_trailing_crlf = false\n")
    async with running_gateway(tmp_path, config_text=config) as (_, mcu), Peer() as peer:
        await station_up(mcu)
        _, writer = await connect_tcp(mcu, peer)
        writer.write(b"hi")
        await mcu.expect(b"\r\n+IPD,2:hi")
        await mcu.command(b"AT", OK)  # nothing between the data and the next answer


async def test_sysmsg_link_conn_replaces_connect(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+SYSMSG?", b"+SYSMSG:0" + OK)
        await mcu.command(b"AT+SYSMSG=2", OK)
        await mcu.command(b"AT+CIPMUX=1", OK)
        await mcu.send(b'AT+CIPSTARTEX="TCP","127.0.0.1",%d\r\n' % peer.port)
        got = await mcu.read_until(OK)
        _, writer = await peer.accept()
        local_port = writer.get_extra_info("peername")[1]
        assert got == b'+LINK_CONN:0,0,"TCP",0,"127.0.0.1",%d,%d\r\n' % (
            peer.port, local_port) + OK


async def test_five_links_at_once_and_the_sixth_refused(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+CIPMUX=1", OK)
        for link in range(5):
            await mcu.command(b'AT+CIPSTARTEX="TCP","127.0.0.1",%d' % peer.port,
                              b"%d,CONNECT\r\n" % link + OK)
        await mcu.command(b'AT+CIPSTARTEX="TCP","127.0.0.1",%d' % peer.port, ERROR)
        writers = [(await peer.accept())[1] for _ in range(5)]
        for link, writer in enumerate(writers):
            writer.write(b"%d" % link)
            await writer.drain()
            await mcu.expect(b"\r\n+IPD,%d,1:%d\r\n" % (link, link))
        await mcu.command(b"AT+CIPMUX=0", ERROR)  # links are open
        await mcu.command(b"AT+CIPCLOSE=5", b"".join(b"%d,CLOSED\r\n" % i for i in range(5))
                          + OK)
        await mcu.command(b"AT+CIPMUX=0", OK)


async def test_cipsendex_ends_at_backslash_zero(gateway):
    mcu = gateway
    async with Peer() as peer:
        reader, _ = await connect_tcp(mcu, peer)
        await mcu.command(b"AT+CIPSENDEX=10", PROMPT)
        await mcu.send(b"a\\\\b\\0")
        await mcu.expect(b"\r\nRecv 3 bytes\r\n" + SEND_OK)
        assert await asyncio.wait_for(reader.readexactly(3), 5) == b"a\\b"


async def test_cipsend_cancelled_by_plus_plus_plus(gateway):
    mcu = gateway
    async with Peer() as peer:
        await connect_tcp(mcu, peer)
        await mcu.command(b"AT+CIPSEND=10", PROMPT)
        await mcu.send(b"abc")
        await asyncio.sleep(0.05)
        await mcu.send(b"+++")
        await mcu.expect(b"\r\nSEND Canceled\r\n")
        await mcu.command(b"AT", OK)


async def test_cipsend_to_a_link_the_peer_closed_fails(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+CIPMUX=1", OK)
        await mcu.command(b'AT+CIPSTART=1,"TCP","127.0.0.1",%d' % peer.port,
                          b"1,CONNECT\r\n" + OK)
        _, writer = await peer.accept()
        await mcu.command(b"AT+CIPSEND=1,4", PROMPT)
        writer.close()
        await asyncio.sleep(0.2)
        await mcu.send(b"late")
        await mcu.expect(b"\r\nRecv 4 bytes\r\n" + SEND_FAIL + b"1,CLOSED\r\n")


async def test_cipsend_to_a_peer_that_stopped_reading_fails_after_so_sndtimeo(gateway):
    """Once the peer's window, the socket's buffer and the transport's are full,
    a send waits, and AT+CIPTCPOPT's so_sndtimeo bounds that wait: SEND FAIL,
    and the port answers again."""
    mcu = gateway
    with listener_that_never_reads() as server:
        await mcu.command(b'AT+CIPSTART="TCP","127.0.0.1",%d' % server.getsockname()[1],
                          b"CONNECT\r\n" + OK)
        peer = await accept(server)
        await mcu.command(b"AT+CIPTCPOPT=0,1,300", OK)  # so_sndtimeo 300 ms
        reply, waited = await send_until_refused(mcu, b"AT+CIPSEND=8192", PROMPT,
                                                 b"\r\nRecv 8192 bytes\r\n" + SEND_OK)
        assert reply == b"\r\nRecv 8192 bytes\r\n" + SEND_FAIL
        assert waited >= 0.25
        await mcu.command(b"AT", OK)
        peer.close()


async def test_cipsendl_streams_with_progress(gateway):
    mcu = gateway
    async with Peer() as peer:
        reader, _ = await connect_tcp(mcu, peer)
        await mcu.command(b"AT+CIPSENDLCFG?", b"+CIPSENDLCFG:1024,2920\r\n" + OK)
        await mcu.command(b"AT+CIPSENDL=3000", PROMPT)
        await mcu.send(b"x" * 3000)
        got = await mcu.read_until(SEND_OK)
        assert got.endswith(b"+CIPSENDL:3000,3000\r\n" + SEND_OK)
        assert b"+CIPSENDL:1024," in got and b"+CIPSENDL:2048," in got
        assert await asyncio.wait_for(reader.readexactly(3000), 5) == b"x" * 3000


async def test_ciptcpopt_query_and_set(gateway):
    mcu = gateway
    await mcu.command(b"AT+CIPTCPOPT?", b"+CIPTCPOPT:0,-1,0,0,0\r\n" + OK)
    await mcu.command(b"AT+CIPTCPOPT=0,1,,30", OK)
    await mcu.command(b"AT+CIPTCPOPT?", b"+CIPTCPOPT:0,0,1,0,30\r\n" + OK)
    await mcu.command(b"AT+CIPTCPOPT=-2", ERROR)
    await mcu.command(b"AT+CIPMUX=1", OK)
    await mcu.command(b"AT+CIPTCPOPT=5,,,100", OK)
    await mcu.command(b"AT+CIPTCPOPT?", b"+CIPTCPOPT:0,0,1,100,30\r\n" + b"".join(
        b"+CIPTCPOPT:%d,-1,0,100,0\r\n" % i for i in range(1, 5)) + OK)


async def test_linger_zero_closes_with_rst(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+CIPTCPOPT=0", OK)
        reader, _ = await connect_tcp(mcu, peer)
        await mcu.command(b"AT+CIPCLOSE", b"CLOSED\r\n" + OK)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 5)


async def test_tls_link_to_a_trustme_server(tmp_path, tls_files):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
    certs = f'[certs.client.0]\nca = "{tls_files["ca"]}"\n'
    async with running_gateway(tmp_path, config_text=port_config(certs)) as (_, mcu):
        await station_up(mcu)
        accepted: asyncio.Queue = asyncio.Queue()
        server = await asyncio.start_server(lambda r, w: accepted.put_nowait((r, w)),
                                            "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        try:
            # auth mode 0: the system store does not know trustme's CA
            await mcu.command(b'AT+CIPSTART="SSL","localhost",%d' % port, ERROR)
            await mcu.command(b"AT+CIPSSLCCONF=2,0,0", OK)
            await mcu.command(b'AT+CIPSTART="SSL","localhost",%d' % port, b"CONNECT\r\n" + OK)
            reader, writer = await asyncio.wait_for(accepted.get(), 5)
            await mcu.command(b"AT+CIPSEND=4", PROMPT)
            await mcu.send(b"test")
            await mcu.expect(b"\r\nRecv 4 bytes\r\n" + SEND_OK)
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"test"
            writer.write(b"test")
            await mcu.expect(b"\r\n+IPD,4:test\r\n")
            await mcu.command(b"AT+CIPSTATE?", b'+CIPSTATE:0,"SSL","127.0.0.1",%d,' % port)
        finally:
            server.close()


# -- E2, E8: servers -------------------------------------------------------------------


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_e2_tcp_server_multiple_connections(gateway):
    mcu = gateway
    port = free_tcp_port()
    await mcu.command(b"AT+CIPSERVER=1,%d" % port, ERROR)  # mux 0
    await mcu.command(b"AT+CIPMUX=1", OK)
    await mcu.command(b"AT+CIPSERVER?", b"+CIPSERVER:0\r\n" + OK)
    await mcu.command(b"AT+CIPSERVER=1,%d" % port, OK)
    await mcu.command(b"AT+CIPSERVER?", b'+CIPSERVER:1,%d,"TCP",0,0\r\n' % port + OK)
    await mcu.command(b"AT+CIPSERVER=1,%d" % port, OK)  # the same again
    await mcu.command(b"AT+CIPSERVER=1,%d" % (port + 1), ERROR)  # another
    await mcu.command(b"AT+CIPMUX=0", ERROR)  # the server runs
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await mcu.expect(b"0,CONNECT\r\n")
    await mcu.command(b"AT+CIPSEND=0,4", PROMPT)
    await mcu.send(b"test")
    await mcu.expect(b"\r\nRecv 4 bytes\r\n" + SEND_OK)
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"test"
    writer.write(b"test")
    await mcu.expect(b"\r\n+IPD,0,4:test\r\n")
    await mcu.command(b"AT+CIPCLOSE=0", b"0,CLOSED\r\n" + OK)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_server_with_five_clients_and_the_sixth_closed(gateway):
    mcu = gateway
    port = free_tcp_port()
    await mcu.command(b"AT+CIPMUX=1", OK)
    await mcu.command(b"AT+CIPSERVER=1,%d" % port, OK)
    clients = []
    for link in range(5):
        clients.append(await asyncio.open_connection("127.0.0.1", port))
        await mcu.expect(b"%d,CONNECT\r\n" % link)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # turned away
    writer.close()
    for link, (_, client) in enumerate(clients):
        client.write(b"c%d" % link)
        await mcu.expect(b"\r\n+IPD,%d,2:c%d\r\n" % (link, link))
    clients[2][1].close()
    await mcu.expect(b"2,CLOSED\r\n")
    replacement = await asyncio.open_connection("127.0.0.1", port)
    await mcu.expect(b"2,CONNECT\r\n")
    await mcu.command(b"AT+CIPSERVER=0,1", b"".join(b"%d,CLOSED\r\n" % i for i in range(5))
                      + OK)
    for _, client in [*clients, replacement]:
        client.close()


async def test_cipservermaxconn_and_cipsto(gateway):
    mcu = gateway
    port = free_tcp_port()
    await mcu.command(b"AT+CIPSERVERMAXCONN?", b"+CIPSERVERMAXCONN:5\r\n" + OK)
    await mcu.command(b"AT+CIPSTO=10", ERROR)  # no server
    await mcu.command(b"AT+CIPMUX=1", OK)
    await mcu.command(b"AT+CIPSERVERMAXCONN=1", OK)
    await mcu.command(b"AT+CIPSERVER=1,%d" % port, OK)
    await mcu.command(b"AT+CIPSERVERMAXCONN=2", ERROR)  # the server runs
    await mcu.command(b"AT+CIPSTO?", b"+CIPSTO:0\r\n" + OK)
    await mcu.command(b"AT+CIPSTO=1", OK)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await mcu.expect(b"0,CONNECT\r\n")
    second_reader, second = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(second_reader.read(), 5) == b""  # over the maximum
    await mcu.expect(b"0,CLOSED\r\n", timeout=5)  # idle for over a second
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    second.close()


async def test_e8_ssl_server_with_mutual_authentication(tmp_path, tls_files):
    certs = (f'[certs.server.0]\ncert = "{tls_files["server_cert"]}"\n'
             f'key = "{tls_files["server_key"]}"\nca = "{tls_files["ca"]}"\n')
    port = free_tcp_port()
    async with running_gateway(tmp_path, config_text=port_config(certs)) as (_, mcu):
        await station_up(mcu)
        await mcu.command(b"AT+CIPMUX=1", OK)
        await mcu.command(b'AT+CIPSERVER=1,%d,"SSL",1' % port, OK)
        client = ssl.create_default_context(cafile=str(tls_files["ca"]))
        client.load_cert_chain(tls_files["client_cert"], tls_files["client_key"])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client,
                                                       server_hostname="localhost")
        await mcu.expect(b"0,CONNECT\r\n")
        await mcu.command(b"AT+CIPSEND=0,4", PROMPT)
        await mcu.send(b"test")
        await mcu.expect(b"\r\nRecv 4 bytes\r\n" + SEND_OK)
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"test"
        writer.write(b"test")
        await mcu.expect(b"\r\n+IPD,0,4:test\r\n")
        await mcu.command(b"AT+CIPCLOSE=0", b"0,CLOSED\r\n" + OK)
        await mcu.command(b"AT+CIPSERVER=0", OK)
        writer.close()
        # Without a client certificate the peer never reaches the MCU.
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
            await mcu.command(b'AT+CIPSERVER=1,%d,"SSL",1' % port, OK)
            anonymous = ssl.create_default_context(cafile=str(tls_files["ca"]))
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=anonymous,
                                                 server_hostname="localhost")
            await asyncio.wait_for(r.read(), 5)
            w.close()
        await mcu.expect_silence(0.3)


# -- E9: passthrough ------------------------------------------------------------------


async def enter_passthrough(mcu, peer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    streams = await connect_tcp(mcu, peer)
    await mcu.command(b"AT+CIPMODE=1", OK)
    await mcu.command(b"AT+CIPSEND", PROMPT)
    return streams


async def test_e9_passthrough_tcp_client(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+CIPSEND", ERROR)  # CIPMODE=0
        reader, writer = await enter_passthrough(mcu, peer)
        await mcu.send(b"AT+GMR\r\nraw bytes")
        assert await asyncio.wait_for(reader.readexactly(17), 5) == b"AT+GMR\r\nraw bytes"
        writer.write(b"from the peer")
        await mcu.expect(b"from the peer")
        await asyncio.sleep(0.05)
        await mcu.send(b"+++")
        await asyncio.sleep(0.05)
        await mcu.expect_silence(0.2)  # no +QUITT without SYSMSG bit 0
        writer.write(b"still raw")
        await mcu.expect(b"still raw")
        await mcu.command(b"AT+CIPSEND=4", ERROR)  # CIPMODE is still 1
        await mcu.command(b"AT+CIPMODE=0", OK)
        await mcu.command(b"AT+CIPCLOSE", b"CLOSED\r\n" + OK)
        assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_plus_plus_plus_with_the_wrong_timing_is_payload(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+SYSMSG=1", OK)
        reader, _ = await enter_passthrough(mcu, peer)
        await mcu.send(b"a+++")                     # no silence before
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"a+++"
        await asyncio.sleep(0.05)
        await mcu.send(b"+++b")                     # data right after
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"+++b"
        await asyncio.sleep(0.05)
        await mcu.send(b"++++")                     # four
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"++++"
        await asyncio.sleep(0.05)
        await mcu.send(b"+")
        await asyncio.sleep(0.05)                   # gaps of 50 ms between the +
        await mcu.send(b"+")
        await asyncio.sleep(0.05)
        await mcu.send(b"+")
        assert await asyncio.wait_for(reader.readexactly(3), 5) == b"+++"
        await asyncio.sleep(0.05)
        await mcu.send(b"+")                        # the right timing, byte by byte
        await mcu.send(b"+")
        await mcu.send(b"+")
        await mcu.expect(b"\r\n+QUITT\r\n")
        await mcu.command(b"AT", OK)


async def test_passthrough_packs_large_writes(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+TRANSINTVL?", b"+TRANSINTVL:20\r\n" + OK)
        reader, writer = await enter_passthrough(mcu, peer)
        payload = bytes(range(256)) * 400  # 100 KiB
        await mcu.send(payload)
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload
        writer.write(payload)
        got = await mcu.read_exactly(len(payload), timeout=10)
        assert got == payload


async def test_passthrough_redials_a_dropped_link(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+CIPRECONNINTV?", b"+CIPRECONNINTV:1\r\n" + OK)
        await mcu.command(b"AT+SYSMSG=4", OK)
        _, writer = await enter_passthrough(mcu, peer)
        writer.close()
        await mcu.expect(b"CLOSED\r\n")
        reader, _ = await peer.accept()
        await mcu.expect(b"CONNECT\r\n")
        await mcu.send(b"again")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"again"


async def test_cipmode_rules(gateway):
    mcu = gateway
    async with Peer() as peer:
        await mcu.command(b"AT+CIPMODE?", b"+CIPMODE:0\r\n" + OK)
        await mcu.command(b"AT+CIPMUX=1", OK)
        await mcu.command(b'AT+CIPSTART=0,"TCP","127.0.0.1",%d' % peer.port,
                          b"0,CONNECT\r\n" + OK)
        await mcu.command(b'AT+CIPSTART=1,"TCP","127.0.0.1",%d' % peer.port,
                          b"1,CONNECT\r\n" + OK)
        await mcu.command(b"AT+CIPMODE=1", ERROR)  # two client links
        await mcu.command(b"AT+CIPCLOSE=1", b"1,CLOSED\r\n" + OK)
        await mcu.command(b"AT+CIPMODE=1", OK)
        await mcu.command(b'AT+CIPSTART=1,"TCP","127.0.0.1",%d' % peer.port, ERROR)
        await mcu.command(b"AT+CIPRECVTYPE=1", ERROR)  # not in passthrough


# -- TLS settings -------------------------------------------------------------------


async def test_ssl_settings_queries(gateway):
    mcu = gateway
    await mcu.command(b"AT+CIPSSLCCONF?", b"+CIPSSLCCONF:0,0,0,0\r\n" + OK)
    await mcu.command(b"AT+CIPSSLCSNI?", OK)
    await mcu.command(b'AT+CIPSSLCSNI="example.com"', OK)
    await mcu.command(b"AT+CIPSSLCSNI?", b"+CIPSSLCSNI:0,example.com\r\n" + OK)
    await mcu.command(b'AT+CIPSSLCALPN=2,"h2","http/1.1"', OK)
    await mcu.command(b"AT+CIPSSLCALPN?", b"+CIPSSLCALPN:0,h2,http/1.1\r\n" + OK)
    await mcu.command(b'AT+CIPSSLCALPN=6,"a","b","c","d","e","f"', ERROR)
    await mcu.command(b'AT+CIPSSLCCN="myserver"', OK)
    await mcu.command(b"AT+CIPSSLCCN?", b"+CIPSSLCCN:0,myserver\r\n" + OK)
    await mcu.command(b'AT+CIPSSLCPSK="key","hint"', OK)
    await mcu.command(b"AT+CIPSSLCPSK?", b"+CIPSSLCPSK:0,key,hint\r\n" + OK)
    await mcu.command(b'AT+CIPSSLCPSK="' + b"k" * 33 + b'","hint"', ERROR)
    await mcu.command(b"AT+CIPSSLCCONF=1,0,0", b"NO CERT FOUND\r\n" + ERROR)
    await mcu.command(b"AT+CIPSSLCCONF=2,0,0", b"NO CA FOUND\r\n" + ERROR)
    await mcu.command(b"AT+CIPSSLCCONF=4", ERROR)


async def test_e7_ssl_client_with_mutual_authentication(tmp_path, tls_files):
    from conftest import mutual_tls_server_context

    certs = (f'[certs.client.0]\nca = "{tls_files["ca"]}"\ncert = "{tls_files["client_cert"]}"\n'
             f'key = "{tls_files["client_key"]}"\n')
    accepted: asyncio.Queue = asyncio.Queue()
    server = await asyncio.start_server(lambda r, w: accepted.put_nowait((r, w)), "127.0.0.1",
                                        0, ssl=mutual_tls_server_context(tls_files))
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_gateway(tmp_path, config_text=port_config(certs)) as (_, mcu):
            await station_up(mcu)
            await mcu.command(b"AT+CIPSSLCCONF=3,0,0", OK)
            await mcu.command(b'AT+CIPSTART="SSL","127.0.0.1",%d' % port, b"CONNECT\r\n" + OK)
            reader, writer = await asyncio.wait_for(accepted.get(), 5)
            peer_cert = writer.get_extra_info("peercert")
            assert peer_cert["subjectAltName"] == (("DNS", "mcu.gatewayd.test"),)
            await mcu.command(b"AT+CIPSEND=4", PROMPT)
            await mcu.send(b"test")
            await mcu.expect(b"\r\nRecv 4 bytes\r\n" + SEND_OK)
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"test"
            writer.write(b"test")
            await mcu.expect(b"\r\n+IPD,4:test\r\n")
    finally:
        server.close()


async def test_savetranslink_dials_at_boot_and_enters_passthrough(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu), Peer() as peer:
        await station_up(mcu)
        await mcu.command(b'AT+SAVETRANSLINK=1,"127.0.0.1",%d,"TCP"' % peer.port, OK)
        await mcu.command(b'AT+SAVETRANSLINK=1,"127.0.0.1",0,"TCP"', ERROR)
        await mcu.command(b"AT+RST", OK)
        # Rejoined from flash, dialled, in the send state by itself.
        await mcu.expect(b"\r\nready\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n\r\n>")
        reader, writer = await peer.accept()
        await mcu.send(b"raw at boot")
        assert await asyncio.wait_for(reader.readexactly(11), 5) == b"raw at boot"
        writer.write(b"back")
        await mcu.expect(b"back")
        await asyncio.sleep(0.05)
        await mcu.send(b"+++")
        await asyncio.sleep(0.05)
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b"AT+CIPMODE?", b"+CIPMODE:1\r\n" + OK)
        await mcu.command(b"AT+SAVETRANSLINK=0", OK)
        await mcu.command(b"AT+RST", OK)
        await mcu.expect(b"\r\nready\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n")
        await mcu.expect_silence(0.5)  # no saved link: command mode


async def test_cipservermaxconn_below_the_links_kept_says_how_many(gateway):
    mcu = gateway
    port = free_tcp_port()
    await mcu.command(b"AT+CIPMUX=1", OK)
    await mcu.command(b"AT+CIPSERVER=1,%d" % port, OK)
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    await mcu.expect(b"0,CONNECT\r\n1,CONNECT\r\n")
    await mcu.command(b"AT+CIPSERVER=0", OK)  # the accepted links stay
    await mcu.command(b"AT+CIPSERVERMAXCONN=1", b"Have 2 Connections\r\n" + ERROR)
    await mcu.command(b"AT+CIPSERVERMAXCONN=2", OK)
    for _, writer in clients:
        writer.close()
