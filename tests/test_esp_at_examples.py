"""The worked examples of shared/reference/esp-at-tcpip.md §6 not covered by
test_esp_at_tcpip.py (E2 with its SoftAP prefix, E5, E6, E10, E11, E13),
an HTTP GET through AT+CIPSEND and +IPD, passive mode with 1 MB read back,
10 MB from a fast peer to an MCU that reads late (nothing lost, memory
bounded), and a whole firmware conversation. Real peers on 127.0.0.1;
addresses in the transcripts are the peers'.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl

from test_bounded_memory import rss_kib
from test_esp_at_tcpip import (
    ERROR,
    OK,
    PROMPT,
    SEND_OK,
    Peer,
    free_tcp_port,
    free_udp_port,
    port_config,
    station_up,
    udp_peer,
)

from gatewayd.testing import GatewaydProcess, VirtualMcu, running_gateway

RECV4 = b"\r\nRecv 4 bytes\r\n"
SOFTAP_CIPAP = (b'+CIPAP:ip:"192.168.4.1"\r\n+CIPAP:gateway:"192.168.4.1"\r\n'
                b'+CIPAP:netmask:"255.255.255.0"\r\n' + OK)


async def softap_up(mcu, *, mux_first: bool = False) -> None:
    """Reference §6 "SoftAP up" (E2 puts AT+CIPMUX=1 before AT+CWSAP)."""
    await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await mcu.command(b"AT+CWMODE=2", OK)
    if mux_first:
        await mcu.command(b"AT+CIPMUX=1", OK)
    await mcu.command(b'AT+CWSAP="ESP32_softAP","1234567890",5,3', OK)
    await mcu.command(b"AT+CIPAP?", SOFTAP_CIPAP)


def server_certs(files, *, ca: bool = False) -> str:
    text = f'[certs.server.0]\ncert = "{files["server_cert"]}"\nkey = "{files["server_key"]}"\n'
    return text + (f'ca = "{files["ca"]}"\n' if ca else "")


async def test_e2_tcp_server_softap(tmp_path):
    port = 333 if os.geteuid() == 0 else free_tcp_port()  # 333: the default needs root
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await softap_up(mcu, mux_first=True)
        await mcu.command(b'AT+CWSAP?', b'+CWSAP:"ESP32_softAP","1234567890",5,3,10,0\r\n' + OK)
        await mcu.command(b"AT+CIPSERVER=1" if port == 333 else b"AT+CIPSERVER=1,%d" % port, OK)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await mcu.expect(b"0,CONNECT\r\n")
        await mcu.command(b"AT+CIPSEND=0,4", PROMPT)
        await mcu.send(b"test")
        await mcu.expect(RECV4 + SEND_OK)
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"test"
        writer.write(b"test")
        await mcu.expect(b"\r\n+IPD,0,4:test\r\n")
        await mcu.command(b"AT+CIPCLOSE=0", b"0,CLOSED\r\n" + OK)
        writer.close()


async def test_e5_ssl_client_single_connection(tmp_path, tls_files):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
    accepted: asyncio.Queue = asyncio.Queue()
    server = await asyncio.start_server(lambda r, w: accepted.put_nowait((r, w)),
                                        "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    # auth_mode 0: the module does not verify; the port's switch does as it does.
    config = port_config("trust_any_server_cert = true\n")
    try:
        async with running_gateway(tmp_path, config_text=config) as (_, mcu):
            await station_up(mcu)
            await mcu.command(b'AT+CIPSTART="SSL","127.0.0.1",%d' % port, b"CONNECT\r\n" + OK)
            reader, writer = await asyncio.wait_for(accepted.get(), 5)
            await mcu.command(b"AT+CIPSEND=4", PROMPT)
            await mcu.send(b"test")
            await mcu.expect(RECV4 + SEND_OK)
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"test"
            writer.write(b"test")
            await mcu.expect(b"\r\n+IPD,4:test\r\n")
    finally:
        server.close()


async def test_e6_ssl_server_multiple_connections_softap(tmp_path, tls_files):
    port = free_tcp_port()
    config = port_config(server_certs(tls_files))
    async with running_gateway(tmp_path, config_text=config) as (_, mcu):
        await softap_up(mcu)
        await mcu.command(b"AT+CIPMUX=1", OK)
        await mcu.command(b'AT+CIPSERVER=1,%d,"SSL"' % port, OK)
        client = ssl.create_default_context(cafile=str(tls_files["ca"]))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client,
                                                       server_hostname="localhost")
        await mcu.expect(b"0,CONNECT\r\n")
        await mcu.command(b"AT+CIPSEND=0,4", PROMPT)
        await mcu.send(b"test")
        await mcu.expect(RECV4 + SEND_OK)
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"test"
        writer.write(b"test")
        await mcu.expect(b"\r\n+IPD,0,4:test\r\n")
        await mcu.command(b"AT+CIPCLOSE=0", b"0,CLOSED\r\n" + OK)
        writer.close()


async def test_e10_passthrough_tcp_server(tmp_path):
    port = free_tcp_port()
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await station_up(mcu)
        await mcu.command(b"AT+CIPMUX=1", OK)
        await mcu.command(b"AT+CIPSERVERMAXCONN=1", OK)
        await mcu.command(b"AT+CIPSERVER=1,%d" % port, OK)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await mcu.expect(b"0,CONNECT\r\n")
        await mcu.command(b"AT+CIPMODE=1", OK)
        await mcu.command(b"AT+CIPSEND", PROMPT)
        await mcu.send(b"to the PC")
        assert await asyncio.wait_for(reader.readexactly(9), 5) == b"to the PC"
        writer.write(b"to the MCU")
        await mcu.expect(b"to the MCU")
        await asyncio.sleep(0.05)
        await mcu.send(b"+++")
        await asyncio.sleep(0.05)
        await mcu.command(b"AT+CIPMODE=0", OK)
        await mcu.command(b"AT+CIPCLOSE", ERROR)  # the document's OK is wrong in mux 1
        await mcu.command(b"AT+CIPCLOSE=0", b"0,CLOSED\r\n" + OK)
        writer.close()


async def test_e11_passthrough_udp_softap(tmp_path):
    local = free_udp_port()
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu), \
            udp_peer() as pc:
        await softap_up(mcu)
        await mcu.command(b'AT+CIPSTART="UDP","127.0.0.1",%d,%d,0' % (pc.port, local),
                          b"CONNECT\r\n" + OK)
        await mcu.command(b"AT+CIPMODE=1", OK)
        await mcu.command(b"AT+CIPSEND", PROMPT)
        await mcu.send(b"datagram")
        assert (await asyncio.wait_for(pc.received.get(), 5))[0] == b"datagram"
        pc.transport.sendto(b"reply", ("127.0.0.1", local))
        await mcu.expect(b"reply")
        await asyncio.sleep(0.05)
        await mcu.send(b"+++")
        await asyncio.sleep(0.05)
        await mcu.command(b"AT+CIPMODE=0", OK)
        await mcu.command(b"AT+CIPCLOSE", b"CLOSED\r\n" + OK)


async def test_e13_mdns_then_a_server(tmp_path):
    port = 35 if os.geteuid() == 0 else free_tcp_port()
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await station_up(mcu)
        await mcu.command(b'AT+MDNS=1,"espressif","_printer",%d,"my_instance","_tcp",2,'
                          b'"product","my_printer","firmware_version","AT-V3.4.1.0"' % port, OK)
        await mcu.command(b"AT+CIPMUX=1", OK)
        await mcu.command(b"AT+CIPSERVER=1,%d" % port, OK)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await mcu.expect(b"0,CONNECT\r\n")
        await mcu.command(b"AT+MDNS=0", OK)
        await mcu.command(b'AT+MDNS=1,"espressif","_printer",0', ERROR)  # port 0
        writer.close()


# -- HTTP over a TCP link ----------------------------------------------------------


IPD = re.compile(rb"\r\n\+IPD,(\d+):")


async def read_ipd_payload(mcu, total: int) -> bytes:
    """Payloads of +IPD messages (each followed by the trailing CRLF) until *total* bytes."""
    body = bytearray()
    packets = 0
    while len(body) < total:
        head = await mcu.read_until(b":")
        match = IPD.fullmatch(head)
        assert match, head
        body += await mcu.read_exactly(int(match.group(1)))
        assert await mcu.read_exactly(2) == b"\r\n"
        packets += 1
    assert len(body) == total
    return bytes(body) + b"%d" % packets


async def test_http_get_over_cipsend_and_several_ipd(tmp_path):
    page = b"<html>" + b"gatewayd " * 1000 + b"</html>"  # 9 KB: several +IPD

    async def http(reader, writer):
        request = await reader.readuntil(b"\r\n\r\n")
        assert request.startswith(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % len(page) + page)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
            await station_up(mcu)
            await mcu.command(b'AT+CIPSTART="TCP","localhost",%d' % port, b"CONNECT\r\n" + OK)
            request = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"
            await mcu.command(b"AT+CIPSEND=%d" % len(request), PROMPT)
            await mcu.send(request)
            await mcu.expect(b"\r\nRecv %d bytes\r\n" % len(request) + SEND_OK)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" \
                % len(page)
            got = await read_ipd_payload(mcu, len(head) + len(page))
            response, packets = got[:len(head) + len(page)], int(got[len(head) + len(page):])
            assert response == head + page
            assert packets >= 7  # at most 1460 bytes each
            await mcu.expect(b"CLOSED\r\n")
    finally:
        server.close()


# -- passive mode, 1 MB ------------------------------------------------------------


async def test_passive_mode_reads_back_one_megabyte(tmp_path):
    data = bytes(b"0123456789abcdef"[i % 16] for i in range(1 << 20))
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu), \
            Peer() as peer:
        await station_up(mcu)
        await mcu.command(b"AT+CIPRECVMODE=1", OK)
        await mcu.command(b"AT+CIPRECVMODE?", b"+CIPRECVMODE:1\r\n" + OK)
        await mcu.command(b'AT+CIPSTART="TCP","127.0.0.1",%d' % peer.port, b"CONNECT\r\n" + OK)
        _, writer = await peer.accept()
        writer.write(data)
        got = bytearray()
        async with asyncio.timeout(60):
            while len(got) < len(data):
                notice = await mcu.read_until(b"\r\n", timeout=10)
                notice += await mcu.read_until(b"\r\n", timeout=10)
                assert re.fullmatch(rb"\r\n\+IPD,\d+\r\n", notice), notice
                await mcu.send(b"AT+CIPRECVDATA=5760\r\n")
                head = await mcu.read_until(b",")
                size = int(head.removeprefix(b"+CIPRECVDATA:")[:-1])
                assert 0 < size <= 5760
                got += await mcu.read_exactly(size)
                await mcu.expect(OK)
        assert got == data
        await mcu.command(b"AT+CIPRECVLEN?", b"+CIPRECVLEN:0\r\n" + OK)


# -- 10 MB to an MCU that reads late ---------------------------------------------


async def test_ten_megabytes_to_a_slow_mcu_nothing_lost_memory_bounded(tmp_path):
    total = 10 * 1024 * 1024
    block = bytes(range(256)) * 256  # 64 KiB
    sent = asyncio.Event()

    async def flood(reader, writer):
        # A small send buffer: what waits is in gatewayd's receive buffer (up to
        # tcp_rmem's maximum, some MB) and in gatewayd, not on the peer's side.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        for _ in range(total // len(block)):
            writer.write(block)
            await writer.drain()  # blocks while gatewayd does not read
        sent.set()
        writer.close()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "gatewayd.toml").write_text(
        '[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\nwifi_interface = "lo"\n'
        "boot_time = 0\n")
    try:
        async with GatewaydProcess(["run", "-c", "gatewayd.toml"], cwd=tmp_path) as proc:
            await proc.wait_for("READY=1")
            mcu = await VirtualMcu.open(tmp_path / "ttyAT0")
            try:
                await mcu.expect(b"\r\nready\r\n")
                await station_up(mcu)
                before = rss_kib(proc.pid)
                mcu.pause_reading()
                await mcu.send(b'AT+CIPSTART="TCP","127.0.0.1",%d\r\n' % port)
                await asyncio.sleep(2)  # the MCU reads nothing meanwhile
                stalled = rss_kib(proc.pid)
                assert not sent.is_set()  # the peer was held back
                mcu.resume_reading()
                await mcu.expect(b"CONNECT\r\n" + OK)
                body = bytearray()
                async with asyncio.timeout(120):
                    while len(body) < total:
                        head = await mcu.read_until(b":", timeout=10)
                        size = int(IPD.fullmatch(head).group(1))
                        body += await mcu.read_exactly(size, timeout=10)
                        assert await mcu.read_exactly(2) == b"\r\n"
                assert body == block * (total // len(block))
                after = rss_kib(proc.pid)
            finally:
                await mcu.close()
            assert (await proc.stop())[0] == 0
    finally:
        server.close()
    assert stalled - before < 4 * 1024, (before, stalled)
    assert after - before < 8 * 1024, (before, after)


# -- a whole firmware conversation ---------------------------------------------------


async def test_a_firmware_conversation_from_sync_to_server(tmp_path, tls_files):
    """What an ESP-AT host library does after power-on, unchanged."""
    https = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    https.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
    tls_peer: asyncio.Queue = asyncio.Queue()
    tls_server = await asyncio.start_server(lambda r, w: tls_peer.put_nowait((r, w)),
                                            "127.0.0.1", 0, ssl=https)
    tls_port = tls_server.sockets[0].getsockname()[1]
    certs = f'[certs.client.0]\nca = "{tls_files["ca"]}"\n'
    server_port = free_tcp_port()
    local_udp = free_udp_port()
    try:
        async with running_gateway(tmp_path, config_text=port_config(certs)) as (_, mcu), \
                Peer() as tcp, udp_peer() as udp:
            # sync, echo off, version, ESP32 or ESP8266?
            for _ in range(3):
                await mcu.command(b"AT", b"AT\r\n" + OK)
            await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
            await mcu.send(b"AT+GMR\r\n")
            assert (await mcu.read_until(OK)).startswith(b"AT version:4.1.1.0(")
            await mcu.command(b"AT+CIPSSLSIZE=4096", ERROR)  # an ESP32
            await mcu.command(b"AT+CIPMUX?", b"+CIPMUX:0\r\n" + OK)
            # baud switch: OK at the old rate, then the line changes
            await mcu.command(b"AT+UART_CUR=921600,8,1,0,0", OK)
            await asyncio.sleep(0.25)
            assert mcu.line_settings()[4] == termios_speed(921600)
            await mcu.command(b"AT", OK)
            # Wi-Fi join and state
            await mcu.command(b"AT+CWMODE=1", OK)
            await mcu.command(b'AT+CWJAP="plant","secret"', b"WIFI CONNECTED\r\nWIFI GOT IP\r\n"
                              + OK)
            await mcu.command(b"AT+CWSTATE?", b'+CWSTATE:2,"plant"\r\n' + OK)
            await mcu.command(b"AT+CIPSTA?", b'+CIPSTA:ip:"127.0.0.1"\r\n+CIPSTA:gateway:'
                              b'"0.0.0.0"\r\n+CIPSTA:netmask:"255.0.0.0"\r\n' + OK)
            await mcu.command(b'AT+CIPDOMAIN="localhost",2', b'+CIPDOMAIN:"127.0.0.1"\r\n' + OK)
            # three links at once: TCP, UDP, SSL
            await mcu.command(b"AT+CIPMUX=1", OK)
            await mcu.command(b"AT+SYSMSG=2", OK)
            await mcu.send(b'AT+CIPSTART=0,"TCP","localhost",%d,60\r\n' % tcp.port)
            assert (await mcu.read_until(OK)).startswith(b'+LINK_CONN:0,0,"TCP",0,"127.0.0.1",')
            await mcu.send(b'AT+CIPSTART=1,"UDP","127.0.0.1",%d,%d,0\r\n' % (udp.port, local_udp))
            assert await mcu.read_until(OK) == b'+LINK_CONN:0,1,"UDP",0,"127.0.0.1",%d,%d\r\n' \
                % (udp.port, local_udp) + OK
            await mcu.command(b"AT+CIPSSLCCONF=2,2,0,0", OK)
            await mcu.send(b'AT+CIPSTART=2,"SSL","localhost",%d\r\n' % tls_port)
            assert (await mcu.read_until(OK)).startswith(b'+LINK_CONN:0,2,"SSL",0,')
            tcp_reader, tcp_writer = await tcp.accept()
            tls_reader, tls_writer = await asyncio.wait_for(tls_peer.get(), 5)
            for link, reader_of in ((0, tcp_reader), (2, tls_reader)):
                await mcu.command(b"AT+CIPSEND=%d,4" % link, PROMPT)
                await mcu.send(b"ping")
                await mcu.expect(RECV4 + SEND_OK)
                assert await asyncio.wait_for(reader_of.readexactly(4), 5) == b"ping"
            await mcu.command(b"AT+CIPSEND=1,4", PROMPT)
            await mcu.send(b"ping")
            await mcu.expect(RECV4 + SEND_OK)
            assert (await asyncio.wait_for(udp.received.get(), 5))[0] == b"ping"
            tls_writer.write(b"pong")
            await mcu.expect(b"\r\n+IPD,2,4:pong\r\n")
            await mcu.send(b"AT+CIPSTATUS\r\n")
            status = await mcu.read_until(OK)
            assert status.startswith(b"STATUS:3\r\n") and status.count(b"+CIPSTATUS:") == 3
            # a server beside them
            await mcu.command(b"AT+CIPSERVER=1,%d" % server_port, OK)
            _, visitor = await asyncio.open_connection("127.0.0.1", server_port)
            got = await mcu.read_until(b"\r\n")
            assert got.startswith(b'+LINK_CONN:0,3,"TCP",1,"127.0.0.1",')
            await mcu.command(b"AT+CIPCLOSE=5", b"0,CLOSED\r\n1,CLOSED\r\n2,CLOSED\r\n"
                              b"3,CLOSED\r\n" + OK)
            await mcu.command(b"AT+CIPSERVER=0", OK)
            for writer in (tcp_writer, tls_writer, visitor):
                writer.close()
    finally:
        tls_server.close()


def termios_speed(baud: int) -> int:
    import termios

    return int(getattr(termios, f"B{baud}"))
