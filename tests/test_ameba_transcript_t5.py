"""Transcript T5 of shared/reference/ameba-wifi-network.md §9, byte for byte:
baud change, scan, open network, SNTP, secure WebSocket.

The port boots at 38400 8N1 as in T5; the scan reports T5's two networks as
the port's ``wifi_networks`` describe them; the join succeeds while the host
has a default route (the address is the host's); SNTP reads the host clock
(the time is checked for its form and against the clock); the MCU's
hard-coded ``wss://ws.example.com/stream`` reaches a local TLS echo through a
``[[route]]`` rule (the name is never resolved), verified against trustme's CA.
"""

from __future__ import annotations

import datetime
import re
import ssl
import termios

import pytest
from websockets.asyncio.server import serve

from gatewayd.links import hostnet
from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"


@pytest.mark.skipif(hostnet.default_interface() is None,
                    reason="the host has no default route: the join would fail as offline")
async def test_t5_baud_change_scan_open_network_sntp_secure_websocket(tmp_path, tls_files):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
    paths: list[str] = []

    async def echo(websocket):
        paths.append(websocket.request.path)
        async for message in websocket:
            await websocket.send(message)

    async with serve(echo, "127.0.0.1", 0, ssl=context) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        config = (
            '[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n'
            "baudrate = 38400\n"
            'wifi_networks = [\n'
            '  {ssid = "CafeGuest", bssid = "a4:1a:3a:0d:0f:35", channel = 1, rssi = -26,'
            ' mode = "AX"},\n'
            '  {ssid = "MyWiFi", password = "password123", bssid = "78:60:5b:0f:b1:d7",'
            ' channel = 6, rssi = -34, security = "WPA/WPA2 AES"},\n'
            "]\n"
            f'[[route]]\nmatch = "wss://ws.example.com/*"\nto = "wss://localhost:{port}/"\n'
            f'ca = "{tls_files["ca"]}"\n')
        async with running_gateway(tmp_path, config_text=config) as (_, mcu):
            assert mcu.line_settings()[4] == termios.B38400
            await mcu.command(b"AT+UART=0,115200", OK)
            assert mcu.line_settings()[4] == termios.B115200  # OK came at the new rate
            await mcu.command(b"AT+WLSCAN",
                              b' 1, a4:1a:3a:0d:0f:35, -26, 1, AX, "Open", "CafeGuest" \r\n'
                              b' 2, 78:60:5b:0f:b1:d7, -34, 6, N, "WPA/WPA2 AES", "MyWiFi" \r\n'
                              + OK)
            address = hostnet.default_interface().address.encode()
            await mcu.command(b"AT+WLCONN=ssid,CafeGuest",
                              b'[$]wifi connected\r\n[$]wifi got ip:"%s"\r\n' % address + OK)
            await mcu.command(b"AT+SNTPCFG=1,8,3600,pool.ntp.org", OK)
            await mcu.send(b"AT+SNTPTIME\r\n")
            reply = await mcu.read_until(b"\r\n" + OK)
            match = re.fullmatch(rb"\r\n\+SNTPTIME:(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\+08:00"
                                 rb"\r\n\r\nOK\r\n", reply)
            assert match, reply
            shown = datetime.datetime.strptime(match.group(1).decode(), "%Y-%m-%d %H:%M:%S")
            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            assert abs((shown - now).total_seconds() - 8 * 3600) < 5
            await mcu.command(b"AT+WSCONN=1,ws.example.com,/stream,0,2",
                              b"[$][WS][EVENT]:linkid:1, connected\r\n" + OK)
    assert paths == ["/stream"]
