"""ESP-AT WebSocket links end to end: virtual MCU on the pty, real WebSocket
servers from the `websockets` library on 127.0.0.1, real TLS from trustme.

Expected bytes: seed documents 001/002/003 and shared/reference/esp-at-behaviour.md.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
import time
from pathlib import Path

from conftest import (
    accept,
    echo,
    listener_that_never_reads,
    mutual_tls_server_context,
    port_of,
    send_until_refused,
)
from websockets.asyncio.server import serve
from websockets.utils import accept_key

from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
PROMPT = b"\r\nOK\r\n\r\n>"
SEND_OK = b"\r\nSEND OK\r\n"


def port_config(extra: str = "", certs: str = "") -> str:
    return ('[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "esp-at"\n'
            'wifi_interface = "lo"\nws_reconnect_interval = 0.3\n' + extra + certs)


async def quiet(mcu) -> None:
    await mcu.command(b"ATE0", b"ATE0\r\n" + OK)


async def open_link(mcu, uri: str, link: int = 0) -> None:
    await mcu.command(b'AT+WSOPEN=%d,"%s"' % (link, uri.encode()),
                      b"+WS_CONNECTED:%d\r\n" % link + OK)


# -- seed 003, byte for byte ---------------------------------------------------


async def test_seed_003_websocket_over_tcp(tmp_path, ws_echo):
    uri = f"ws://127.0.0.1:{port_of(ws_echo)}"
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        # Echo is on by default, as on the module: every command comes back first.
        await mcu.command(b"AT+CWMODE=1", b"AT+CWMODE=1\r\n" + OK)
        await mcu.command(b'AT+CWJAP="espressif","1234567890"',
                          b'AT+CWJAP="espressif","1234567890"\r\n'
                          b"WIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)
        line = b'AT+WSOPEN=0,"%s"' % uri.encode()
        await mcu.command(line, line + b"\r\n+WS_CONNECTED:0\r\n" + OK)
        await mcu.command(b"AT+WSSEND=0,4", b"AT+WSSEND=0,4\r\n" + PROMPT)
        await mcu.send(b"test")
        await mcu.expect(SEND_OK)
        await mcu.expect(b"+WS_DATA:0,4,test\r\n")


async def test_seed_003_websocket_over_mutual_tls(tmp_path, tls_files):
    certs = (f'[certs.client.0]\nca = "{tls_files["ca"]}"\ncert = "{tls_files["client_cert"]}"\n'
             f'key = "{tls_files["client_key"]}"\n')
    seen_client_certs = []

    async def echo_recording_peer(websocket):
        ssl_object = websocket.transport.get_extra_info("ssl_object")
        seen_client_certs.append(ssl_object.getpeercert())
        await echo(websocket)

    context = mutual_tls_server_context(tls_files)
    async with serve(echo_recording_peer, "127.0.0.1", 0, ssl=context) as server, \
            running_gateway(tmp_path, config_text=port_config(certs=certs)) as (_, mcu):
        await mcu.command(b"AT+CWMODE=1", b"AT+CWMODE=1\r\n" + OK)
        await mcu.command(b'AT+CWJAP="espressif","1234567890"',
                          b'AT+CWJAP="espressif","1234567890"\r\n'
                          b"WIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)
        line = b'AT+CIPSNTPCFG=1,8,"cn.ntp.org.cn","ntp.sjtu.edu.cn"'
        await mcu.command(line, line + b"\r\n" + OK)
        await mcu.send(b"AT+CIPSNTPTIME?\r\n")
        reply = await mcu.read_until(OK)
        match = re.fullmatch(rb"AT\+CIPSNTPTIME\?\r\n\+CIPSNTPTIME:(.{24})\r\n\r\nOK\r\n", reply)
        assert match, reply
        shown = time.mktime(time.strptime(match.group(1).decode(), "%a %b %d %H:%M:%S %Y"))
        expected = time.mktime(time.gmtime(time.time() + 8 * 3600))
        assert abs(shown - expected) < 5
        await mcu.command(b"AT+WSCFG=0,30,60,4096,3,0,0", b"AT+WSCFG=0,30,60,4096,3,0,0\r\n" + OK)
        line = b'AT+WSOPEN=0,"wss://127.0.0.1:%d"' % port_of(server)
        await mcu.command(line, line + b"\r\n+WS_CONNECTED:0\r\n" + OK)
        await mcu.command(b"AT+WSSEND=0,4", b"AT+WSSEND=0,4\r\n" + PROMPT)
        await mcu.send(b"test")
        await mcu.expect(SEND_OK)
        await mcu.expect(b"+WS_DATA:0,4,test\r\n")
    assert seen_client_certs and seen_client_certs[0]["subjectAltName"] == (
        ("DNS", "mcu.gatewayd.test"),)


async def test_wssend_to_a_server_that_stopped_reading_fails_after_its_timeout(tmp_path):
    """Once the server's window, the socket's buffer and the transport's are
    full, a frame waits, and AT+WSSEND's timeout bounds that wait: ERROR, and
    the port answers again. The server answers the upgrade by hand, then
    never reads."""
    loop = asyncio.get_running_loop()

    async def upgrade(server: socket.socket) -> socket.socket:
        conn = await accept(server)
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 65536:
            chunk = await asyncio.wait_for(loop.sock_recv(conn, 4096), 5)
            assert chunk, "the client left during the upgrade"
            request += chunk
        key = re.search(rb"(?i)\r\nsec-websocket-key: *(\S+)", request)
        assert key is not None, request
        await loop.sock_sendall(conn, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                                b"\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                                % accept_key(key.group(1).decode()).encode())
        return conn

    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        with listener_that_never_reads() as server:
            await quiet(mcu)
            upgraded = asyncio.create_task(upgrade(server))
            await open_link(mcu, f"ws://127.0.0.1:{server.getsockname()[1]}/")
            conn = await asyncio.wait_for(upgraded, 5)
            reply, waited = await send_until_refused(
                mcu, b"AT+WSSEND=0,8192,2,300", PROMPT, SEND_OK)  # a 300 ms timeout
            assert reply == ERROR
            assert waited >= 0.25
            await mcu.command(b"AT", OK)
            conn.close()


async def test_excess_input_after_the_block_gets_busy_and_only_n_bytes_go_out(tmp_path, ws_echo):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await open_link(mcu, f"ws://127.0.0.1:{port_of(ws_echo)}")
        await mcu.command(b"AT+WSSEND=0,4", PROMPT)
        await mcu.send(b"test\r\n")
        await mcu.expect(b"\r\nbusy p...\r\n" + SEND_OK)
        await mcu.expect(b"+WS_DATA:0,4,test\r\n")


# -- AT+WSOPEN -----------------------------------------------------------------


async def test_wsopen_query_states_and_link_in_use(tmp_path, ws_echo):
    uri = f"ws://127.0.0.1:{port_of(ws_echo)}"
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+WSOPEN?", OK)
        await open_link(mcu, uri)
        await open_link(mcu, uri + "/two?x=1", link=2)
        await mcu.command(b"AT+WSOPEN?", b'+WSOPEN:0,2,"%s"\r\n+WSOPEN:2,2,"%s/two?x=1"\r\n'
                          % (uri.encode(), uri.encode()) + OK)
        await mcu.command(b'AT+WSOPEN=0,"%s"' % uri.encode(), ERROR)  # in use
        await mcu.command(b"AT+WSCLOSE=0", OK)
        await mcu.expect_silence(0.2)  # no URC for a local close
        await mcu.command(b"AT+WSOPEN?", b'+WSOPEN:2,2,"%s/two?x=1"\r\n' % uri.encode() + OK)
        await mcu.command(b"AT+WSCLOSE=1", OK)  # unused id: still OK


async def test_wsopen_to_a_dead_port_reports_disconnected_then_error(tmp_path):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b'AT+WSOPEN=1,"ws://127.0.0.1:%d"' % dead,
                          b"+WS_DISCONNECTED:1\r\n" + ERROR)
        await mcu.command(b"AT+WSOPEN?", OK)


async def test_wsopen_busy_while_connecting(tmp_path):
    # A listener that accepts TCP but never answers the handshake.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.send(b'AT+WSOPEN=0,"ws://127.0.0.1:%d",,300\r\n' % port)
        await asyncio.sleep(0.05)
        await mcu.send(b"AT\r\n")
        await mcu.expect(b"\r\nbusy p...\r\n")
        await mcu.expect(b"+WS_DISCONNECTED:0\r\n" + ERROR, timeout=3)
    server.close()


async def test_wsopen_parameter_errors(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        for line in [
            b'AT+WSOPEN=3,"ws://127.0.0.1:1"',          # link id out of range
            b'AT+WSOPEN=0,"http://127.0.0.1:1"',        # not ws/wss
            b'AT+WSOPEN=0,"ws://"',                      # no host
            b'AT+WSOPEN=0,"ws://127.0.0.1:1",,0',       # timeout 0 is rejected
            b'AT+WSOPEN=0,"ws://127.0.0.1:1",,180001',
            b'AT+WSOPEN=0,"ws://127.0.0.1:1",,',        # present but empty timeout
            b"AT+WSOPEN=0,ws://127.0.0.1:1",            # uri not quoted
            b"AT+WSOPEN=0",                              # uri missing
            b'AT+WSOPEN=0,"ws://127.0.0.1:1",,1000,"a",x',  # too many
            b"AT+WSOPEN",                                # no execute form
            b"AT+WSOPEN=?",
        ]:
            await mcu.command(line, ERROR)
        await mcu.command(b"AT", OK)


async def test_subprotocol_auth_and_wshead_headers_reach_the_server(tmp_path):
    requests = []

    async def record(websocket):
        requests.append(websocket.request)
        await echo(websocket)

    async with serve(record, "127.0.0.1", 0, subprotocols=["chat"]) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+WSHEAD=12", PROMPT)
        await mcu.send(b"X-Token: abc")
        await mcu.expect(OK)
        await mcu.command(b"AT+WSHEAD=17", PROMPT)
        await mcu.send(b"Origin: http://mc")
        await mcu.expect(OK)
        await mcu.command(b"AT+WSHEAD?", b'+WSHEAD:0,"Origin: http://mc"\r\n'
                          b'+WSHEAD:1,"X-Token: abc"\r\n' + OK)
        await mcu.command(b'AT+WSOPEN=0,"ws://127.0.0.1:%d/p?q=1","chat",5000,"Bearer xyz"'
                          % port_of(server), b"+WS_CONNECTED:0\r\n" + OK)
    [request] = requests
    assert request.path == "/p?q=1"
    assert request.headers["X-Token"] == "abc"
    assert request.headers["Origin"] == "http://mc"
    assert request.headers["Authorization"] == "Bearer xyz"
    assert request.headers["Sec-WebSocket-Protocol"] == "chat"
    assert request.headers["User-Agent"] == "ESP32 Websocket Client"


async def test_userinfo_becomes_basic_auth(tmp_path):
    requests = []

    async def record(websocket):
        requests.append(websocket.request)
        await echo(websocket)

    async with serve(record, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await open_link(mcu, f"ws://user:pa%3Ass@127.0.0.1:{port_of(server)}")
    expected = "Basic " + base64.b64encode(b"user:pa:ss").decode()
    assert requests[0].headers["Authorization"] == expected


async def test_wshead_errors_and_clear(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+WSHEAD=5", PROMPT)
        await mcu.send(b"nocol")  # no colon
        await mcu.expect(ERROR)
        await mcu.command(b"AT+WSHEAD=6", PROMPT)
        await mcu.send(b"a: b\r\n")  # ends with CRLF
        await mcu.expect(ERROR)
        await mcu.command(b"AT+WSHEAD=4", PROMPT)
        await mcu.send(b"a:\x00b")
        await mcu.expect(ERROR)
        await mcu.command(b"AT+WSHEAD=3", PROMPT)
        await mcu.send(b"a:b")
        await mcu.expect(OK)
        await mcu.command(b"AT+WSHEAD=0", OK)
        await mcu.command(b"AT+WSHEAD?", OK)
        await mcu.command(b"AT+WSHEAD=-1", ERROR)
        await mcu.command(b"AT+WSHEAD=1,2", ERROR)


# -- AT+WSCFG ------------------------------------------------------------------


async def test_wscfg_parameter_rules(tmp_path, tls_files):
    certs = f'[certs.client.0]\nca = "{tls_files["ca"]}"\n'
    async with running_gateway(tmp_path, config_text=port_config(certs=certs)) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+WSCFG=0,30,60,4096", OK)        # seed example
        await mcu.command(b"AT+WSCFG=0,30,60", OK)
        await mcu.command(b"AT+WSCFG=2,7200,7200,8192,0", OK)  # 5 params: auth_mode 0 only
        for line in [
            b"AT+WSCFG=3,30,60", b"AT+WSCFG=0,0,60", b"AT+WSCFG=0,30,7201",
            b"AT+WSCFG=0,30,60,0", b"AT+WSCFG=0,30,60,8193", b"AT+WSCFG=0,30",
            b"AT+WSCFG=0,30,60,,3,0,0",      # empty buffer_size before auth_mode
            b"AT+WSCFG=0,30,60,4096,2",      # auth_mode 2 without indexes
            b"AT+WSCFG=0,30,60,4096,2,0",    # 6 parameters
            b"AT+WSCFG=0,30,60,4096,4,0,0",  # auth_mode out of range
            b"AT+WSCFG=0,30,60,4096,2,0,-1",
            b"AT+WSCFG?", b"AT+WSCFG",
        ]:
            await mcu.command(line, ERROR)
        await mcu.command(b"AT+WSCFG=0,30,60,4096,2,0,0", OK)  # suite 0 has a CA
        await mcu.command(b"AT+WSCFG=0,30,60,4096,2,0,5", b"NO CA FOUND\r\n" + ERROR)
        await mcu.command(b"AT+WSCFG=0,30,60,4096,1,0,0", b"NO CERT FOUND\r\n" + ERROR)
        await mcu.command(b"AT+WSCFG=0,30,60,4096,3,7,0", b"NO CERT FOUND\r\n" + ERROR)


async def test_wscfg_buffer_size_follows_the_version_gmr_reports(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+GMR", b"AT version:4.1.1.0(", timeout=5)
        await mcu.read_until(OK)
        # 4.1.1.0 is before v5.0.1.0's successor: buffer_size is 1..8192 there.
        await mcu.command(b"AT+WSCFG=0,10,120,8193", ERROR)
        await mcu.command(b"AT+WSCFG=0,10,120,16384", ERROR)
        await mcu.command(b"AT+WSCFG=0,10,120,8192", OK)


async def test_wss_with_wrong_ca_fails_and_private_server_needs_trust_switch(tmp_path, tls_files):
    import trustme
    other = trustme.CA()
    other_ca = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(other_ca)
    certs = f'[certs.client.0]\nca = "{other_ca}"\n[certs.client.1]\nca = "{tls_files["ca"]}"\n'
    server_context = mutual_tls_server_context(tls_files)
    server_context.verify_mode = 0  # plain server auth: no client cert needed
    async with serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
        uri = b'"wss://127.0.0.1:%d"' % port_of(server)
        async with running_gateway(tmp_path, config_text=port_config(certs=certs)) as (_, mcu):
            await quiet(mcu)
            # auth_mode 0: verified against the system store, which lacks trustme's CA.
            await mcu.command(b"AT+WSOPEN=0," + uri, b"+WS_DISCONNECTED:0\r\n" + ERROR)
            await mcu.command(b"AT+WSCFG=0,30,60,1024,2,0,0", OK)  # the wrong CA
            await mcu.command(b"AT+WSOPEN=0," + uri, b"+WS_DISCONNECTED:0\r\n" + ERROR)
            await mcu.command(b"AT+WSCFG=0,30,60,1024,2,0,1", OK)  # the right CA
            await mcu.command(b"AT+WSOPEN=0," + uri, b"+WS_CONNECTED:0\r\n" + OK)
        trusting = port_config('trust_any_server_cert = true\n')
        async with running_gateway(tmp_path, config_text=trusting) as (_, mcu):
            await quiet(mcu)
            await mcu.command(b"AT+WSOPEN=0," + uri, b"+WS_CONNECTED:0\r\n" + OK)


# -- AT+WSSEND -----------------------------------------------------------------


async def test_wssend_errors(tmp_path, ws_echo):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+WSSEND=0,4", ERROR)  # no link
        await open_link(mcu, f"ws://127.0.0.1:{port_of(ws_echo)}")
        for line in [b"AT+WSSEND=0,16385", b"AT+WSSEND=3,4", b"AT+WSSEND=0,4,16",
                     b"AT+WSSEND=0,4,1,60001", b"AT+WSSEND=0,4,1,100,2", b"AT+WSSEND=0,4,,",
                     b"AT+WSSEND=0", b"AT+WSSEND=0,-1", b"AT+WSSEND?"]:
            await mcu.command(line, ERROR)
        # A control opcode without FIN is refused after the data was read.
        await mcu.command(b"AT+WSSEND=0,2,9,1000,0", PROMPT)
        await mcu.send(b"hi")
        await mcu.expect(ERROR)
        await mcu.command(b"AT", OK)


async def test_empty_ping_has_no_prompt(tmp_path, ws_echo):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await open_link(mcu, f"ws://127.0.0.1:{port_of(ws_echo)}")
        await mcu.command(b"AT+WSSEND=0,0,9", SEND_OK)


async def test_fragmented_message_from_the_mcu_is_reassembled_by_the_server(tmp_path):
    received = []

    async def record(websocket):
        async for message in websocket:
            received.append(message)

    async with serve(record, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await open_link(mcu, f"ws://127.0.0.1:{port_of(server)}")
        for line, data in [(b"AT+WSSEND=0,5,1,1000,0", b"Hello"),
                           (b"AT+WSSEND=0,2,0,1000,0", b", "),
                           (b"AT+WSSEND=0,6,0,1000,1", b"world!")]:
            await mcu.command(line, PROMPT)
            await mcu.send(data)
            await mcu.expect(SEND_OK)
        async with asyncio.timeout(5):
            while not received:
                await asyncio.sleep(0.01)
    assert received == ["Hello, world!"]


async def test_a_message_longer_than_buffer_size_goes_out_fragmented(tmp_path):
    received = []

    async def record(websocket):
        async for message in websocket:
            received.append(message)

    payload = bytes(range(256)) * 40  # 10240 bytes
    async with serve(record, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+WSCFG=0,30,60,1000", OK)
        await open_link(mcu, f"ws://127.0.0.1:{port_of(server)}")
        await mcu.command(b"AT+WSSEND=0,10240,2", PROMPT)
        await mcu.send(payload)
        await mcu.expect(SEND_OK)
        async with asyncio.timeout(5):
            while not received:
                await asyncio.sleep(0.01)
    assert received == [payload]


# -- messages from the network -------------------------------------------------


async def test_16k_binary_message_is_split_into_buffer_size_chunks(tmp_path):
    payload = bytes(range(256)) * 64  # 16 KiB, with CR and LF inside

    async def sender(websocket):
        await websocket.send(payload)
        await websocket.wait_closed()

    async with serve(sender, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b'AT+WSOPEN=0,"ws://127.0.0.1:%d"' % port_of(server),
                          b"+WS_CONNECTED:0\r\n" + OK)
        for offset in range(0, len(payload), 1024):
            await mcu.expect(b"+WS_DATA:0,1024," + payload[offset : offset + 1024] + b"\r\n")


async def test_a_fragmented_message_is_reported_frame_by_frame(tmp_path):
    async def sender(websocket):
        await websocket.send(["ab", "cd"])  # TEXT ab, CONT cd, then an empty CONT with FIN
        async with websocket.send_context():  # TEXT "ab" (FIN=0), CONT "cd" (FIN=1)
            websocket.protocol.send_text(b"ab", fin=False)
            websocket.protocol.send_continuation(b"cd", fin=True)
        await websocket.send(b"whole")
        await websocket.wait_closed()

    async with serve(sender, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await open_link(mcu, f"ws://127.0.0.1:{port_of(server)}")
        await mcu.expect(b"+WS_DATA:0,2,ab\r\n+WS_DATA:0,2,cd\r\n+WS_DATA:0,0,\r\n"
                         b"+WS_DATA:0,2,ab\r\n+WS_DATA:0,2,cd\r\n"
                         b"+WS_DATA:0,5,whole\r\n")
        await mcu.expect_silence(0.2)


async def test_server_close_frame_gives_ws_closed_and_frees_the_link(tmp_path, ws_echo):
    async def closer(websocket):
        await websocket.close(1000, "bye")

    async with serve(closer, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+WSCFG=0,30,60,2048", OK)
        await open_link(mcu, f"ws://127.0.0.1:{port_of(server)}")
        await mcu.expect(b"+WS_CLOSED:0\r\n")
        await mcu.command(b"AT+WSOPEN?", OK)
        # The link and its WSCFG are gone: the id can be reopened, with defaults.
        await open_link(mcu, f"ws://127.0.0.1:{port_of(ws_echo)}")


async def test_vanishing_server_gives_disconnected_then_reconnects(tmp_path):
    connections = []

    async def handler(websocket):
        connections.append(websocket)
        await websocket.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await open_link(mcu, f"ws://127.0.0.1:{port_of(server)}")
        connections[0].transport.abort()  # TCP reset, no close frame
        await mcu.expect(b"+WS_DISCONNECTED:0\r\n")
        await mcu.command(b"AT+WSOPEN?", b'+WSOPEN:0,3,"ws://127.0.0.1:%d"\r\n'
                          % port_of(server) + OK)
        await mcu.expect(b"+WS_CONNECTED:0\r\n", timeout=5)
        assert len(connections) == 2


async def test_server_that_never_answers_pings_is_dropped(tmp_path):
    """A hand-written WebSocket peer that completes the handshake, then ignores everything."""
    pings_seen = 0

    async def mute_peer(reader, writer):
        nonlocal pings_seen
        head = await reader.readuntil(b"\r\n\r\n")
        key = re.search(rb"(?i)sec-websocket-key: *(\S+)", head).group(1).decode()
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
                      ).encode())
        while chunk := await reader.read(1024):
            pings_seen += chunk[0] == 0x89

    server = await asyncio.start_server(mute_peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+WSCFG=0,1,1", OK)
        await open_link(mcu, f"ws://127.0.0.1:{port}")
        await mcu.expect(b"+WS_DISCONNECTED:0\r\n", timeout=4)
    server.close()
    assert pings_seen >= 1


# -- backpressure --------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_10_mb_from_a_fast_server_to_a_slow_uart_arrives_intact_in_bounded_memory(tmp_path):
    import random

    from gatewayd.testing import GatewaydProcess, VirtualMcu

    message_size, count = 64 * 1024, 160  # 10 MiB
    rng = random.Random(7)
    messages = [rng.randbytes(message_size) for _ in range(count)]

    async def flood(websocket):
        for message in messages:
            await websocket.send(message)
        await websocket.wait_closed()

    config = tmp_path / "gw.toml"
    config.write_text(port_config())
    async with serve(flood, "127.0.0.1", 0) as server, \
            GatewaydProcess(["run", "-c", str(config), "--log-level", "warning"],
                            cwd=tmp_path) as proc:
        await proc.wait_for("READY=1")
        mcu = await VirtualMcu.open(tmp_path / "ttyAT0")
        await mcu.expect(b"\r\nready\r\n")
        await quiet(mcu)
        await mcu.command(b"AT+WSCFG=0,60,120,8192", OK)
        baseline = rss_bytes(proc.pid)
        await open_link(mcu, f"ws://127.0.0.1:{port_of(server)}")
        received = bytearray()
        peak = baseline
        expected = b"".join(messages)
        async with asyncio.timeout(120):
            while len(received) < len(expected):
                header = await mcu.read_until(b",", timeout=10)
                header += await mcu.read_until(b",", timeout=10)
                match = re.fullmatch(rb"\+WS_DATA:0,(\d+),", header)
                assert match, header
                size = int(match.group(1))
                assert size <= 8192
                received += await mcu.read_exactly(size, timeout=10)
                assert await mcu.read_exactly(2) == b"\r\n"
                if len(received) % (256 * 1024) < size:
                    await asyncio.sleep(0.05)  # a slow UART: the server must wait for us
                    peak = max(peak, rss_bytes(proc.pid))
        assert received == expected
        growth = peak - baseline
        assert growth < 16 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB for 10 MiB"
        await mcu.close()
        assert (await proc.stop())[0] == 0


async def test_wshead_limits(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+WSHEAD=4097", ERROR)
        for index in range(32):
            await mcu.command(b"AT+WSHEAD=4", PROMPT)
            await mcu.send(b"h:%02d" % index)
            await mcu.expect(OK)
        await mcu.command(b"AT+WSHEAD=4", ERROR)
        await mcu.command(b"AT+WSHEAD=0", OK)
        await mcu.command(b"AT+WSHEAD=4096", PROMPT)
        await mcu.send(b"K:" + b"v" * 4094)
        await mcu.expect(OK)


async def test_wscfg_arms_only_the_next_open_and_dies_with_the_link(tmp_path):
    payload = bytes(range(256)) * 16  # 4 KiB

    async def sender(websocket):
        await websocket.send(payload)
        await websocket.wait_closed()

    async def expect_chunks(mcu, size: int) -> None:
        for offset in range(0, len(payload), size):
            await mcu.expect(b"+WS_DATA:0,%d," % size + payload[offset : offset + size] + b"\r\n")

    async with serve(sender, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        uri = f"ws://127.0.0.1:{port_of(server)}"
        await mcu.command(b"AT+WSCFG=0,30,60,2048", OK)
        await open_link(mcu, uri)
        await expect_chunks(mcu, 2048)
        # A WSCFG sent while the link is open is never used, and the teardown frees it.
        await mcu.command(b"AT+WSCFG=0,30,60,512", OK)
        await mcu.command(b"AT+WSCLOSE=0", OK)
        await open_link(mcu, uri)
        await expect_chunks(mcu, 1024)  # the default buffer_size
        await mcu.command(b"AT+WSCLOSE=0", OK)
        # WSCFG on a free link arms exactly the next open.
        await mcu.command(b"AT+WSCFG=0,30,60,512", OK)
        await open_link(mcu, uri)
        await expect_chunks(mcu, 512)
        await mcu.command(b"AT+WSCLOSE=0", OK)
        await open_link(mcu, uri)
        await expect_chunks(mcu, 1024)


async def test_rst_closes_every_link(tmp_path):
    closed = asyncio.Event()

    async def handler(websocket):
        await websocket.wait_closed()
        closed.set()

    async with serve(handler, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await open_link(mcu, f"ws://127.0.0.1:{port_of(server)}")
        await mcu.command(b"AT+RST", OK + b"\r\nready\r\n")
        async with asyncio.timeout(5):
            await closed.wait()
        await mcu.command(b"AT+WSOPEN?", b"AT+WSOPEN?\r\n" + OK)


async def test_message_above_the_transport_limit_drops_the_link(tmp_path):
    from gatewayd_ws.client import MAX_MESSAGE

    async def sender(websocket):
        await websocket.send(b"x" * (MAX_MESSAGE + 1))
        await websocket.wait_closed()

    async with serve(sender, "127.0.0.1", 0, max_size=None) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await open_link(mcu, f"ws://127.0.0.1:{port_of(server)}")
        await mcu.expect(b"+WS_DISCONNECTED:0\r\n")


async def test_auth_mode_1_presents_the_client_certificate(tmp_path, tls_files):
    certs = (f'[certs.client.2]\ncert = "{tls_files["client_cert"]}"\n'
             f'key = "{tls_files["client_key"]}"\n')
    context = mutual_tls_server_context(tls_files)  # requires a client certificate
    async with serve(echo, "127.0.0.1", 0, ssl=context) as server:
        uri = b'"wss://127.0.0.1:%d"' % port_of(server)
        trusting = port_config("trust_any_server_cert = true\n", certs)
        async with running_gateway(tmp_path, config_text=trusting) as (_, mcu):
            await quiet(mcu)
            # Without a client certificate the server refuses the handshake.
            await mcu.command(b"AT+WSOPEN=0," + uri, b"+WS_DISCONNECTED:0\r\n" + ERROR)
            await mcu.command(b"AT+WSCFG=0,30,60,1024,1,2,0", OK)
            await mcu.command(b"AT+WSOPEN=0," + uri, b"+WS_CONNECTED:0\r\n" + OK)
            await mcu.command(b"AT+WSSEND=0,2", PROMPT)
            await mcu.send(b"hi")
            await mcu.expect(SEND_OK + b"+WS_DATA:0,2,hi\r\n")


async def test_with_a_ca_the_server_hostname_is_checked(tmp_path, ca):
    wrong_name = ca.issue_cert("not-this-host.example")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    wrong_name.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    certs = f'[certs.client.0]\nca = "{ca_file}"\n'
    async with serve(echo, "127.0.0.1", 0, ssl=context) as server, \
            running_gateway(tmp_path, config_text=port_config(certs=certs)) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+WSCFG=0,30,60,1024,2,0,0", OK)
        # The chain is valid, but the certificate names another host.
        await mcu.command(b'AT+WSOPEN=0,"wss://127.0.0.1:%d"' % port_of(server),
                          b"+WS_DISCONNECTED:0\r\n" + ERROR)


async def test_a_server_that_answers_pings_keeps_the_link(tmp_path):
    pings = 0

    async def counting(websocket):
        nonlocal pings
        # websockets answers pings itself; count them from its frame log.
        original = websocket.protocol.recv_frame

        def recv_frame(frame):
            nonlocal pings
            pings += frame.opcode.name == "PING"
            return original(frame)

        websocket.protocol.recv_frame = recv_frame
        await websocket.wait_closed()

    async with serve(counting, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+WSCFG=0,1,1", OK)
        await open_link(mcu, f"ws://127.0.0.1:{port_of(server)}")
        await mcu.expect_silence(2.6)  # pings answered: no +WS_DISCONNECTED
        await mcu.command(b"AT+WSOPEN?", b'+WSOPEN:0,2,"ws://127.0.0.1:%d"\r\n'
                          % port_of(server) + OK)
    assert pings >= 2


async def test_an_untrusted_wss_server_is_explained_in_the_log(tmp_path, tls_files):
    """auth_mode 0: the module would not verify the server; gatewayd does (system
    store), so the failure's log line names trust_any_server_cert."""
    import io
    import json

    from gatewayd.logs import configure_logging

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        async with serve(echo, "127.0.0.1", 0, ssl=context) as server, \
                running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
            await quiet(mcu)
            await mcu.command(b'AT+WSOPEN=0,"wss://127.0.0.1:%d"' % port_of(server),
                              b"+WS_DISCONNECTED:0\r\n" + ERROR)
    finally:
        configure_logging("info", "json")
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    [event] = [e for e in events if e["event"] == "server certificate not trusted"]
    assert event["port"] == "mcu" and event["setting"] == "trust_any_server_cert"
