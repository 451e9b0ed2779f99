"""Route rules and the egress policy: where the MCU's hard-coded links really go.

Real peers only: a websockets server that records the path and headers it
gets, TCP and TLS echo servers, and a real HTTP CONNECT proxy (tinyproxy,
started by the test). The MCU's names (``old-cloud.example.com``,
``legacy.example.com``) are in no hosts file and this machine resolves no
other name: a link that reaches its peer was never looked up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from test_esp_at_tcpip import ERROR, OK, PROMPT, SEND_OK, free_tcp_port, station_up
from websockets.asyncio.server import serve

from gatewayd.config import load_config
from gatewayd.config.routes import Destination, parse_destination
from gatewayd.links.egress import Router
from gatewayd.testing import running_gateway


def config_with(routes: str, *, dialect: str = "esp-at", extra: str = "") -> str:
    return (f'[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "{dialect}"\n'
            f'wifi_interface = "lo"\n{extra}\n' + routes)


def router_of(tmp_path: Path, routes: str) -> Router:
    file = tmp_path / "routes.toml"
    file.write_text(routes)
    config = load_config(file, need_ports=False)
    return Router(config.routes, config.egress)


# -- decisions -----------------------------------------------------------------------


def test_first_match_wins_and_the_rest_of_the_path_is_appended(tmp_path):
    router = router_of(tmp_path, '''
[[route]]
match = "ws://old-cloud.example.com/*"
to = "wss://api.example.net/v2/"
headers = { "X-Fleet" = "unit-7" }
[[route]]
match = "ws://*.example.com/*"
deny = true
''')
    decision = router.decide(parse_destination("ws://old-cloud.example.com/feed/a?x=1"))
    assert (decision.rule, str(decision.actual)) == (0, "wss://api.example.net:443/v2/feed/a?x=1")
    assert decision.headers == (("X-Fleet", "unit-7"),)
    assert router.decide(parse_destination("ws://other.example.com/")).denied
    assert not router.decide(parse_destination("ws://example.org/")).denied


def test_ports_filter_egress_default_and_proxy_opt_out(tmp_path):
    router = router_of(tmp_path, '''
[[route]]
match = "tcp://*:25"
deny = true
[[route]]
match = "tcp://plc.lan:502"
ports = ["line-2"]
proxy = ""
[[route]]
match = "tcp://plc.lan:*"
[egress]
default = "deny"
proxy = "socks5://127.0.0.1:1080"
''')
    smtp = Destination("tcp", "mail.example.com", 25)
    assert router.decide(smtp, "mcu").rule == 0 and router.decide(smtp).denied
    plc = Destination("tcp", "plc.lan", 502)
    assert (router.decide(plc, "line-2").rule, router.decide(plc, "line-2").proxy) == (1, None)
    assert (router.decide(plc, "mcu").rule, router.decide(plc, "mcu").proxy) == \
        (2, "socks5://127.0.0.1:1080")
    other = router.decide(Destination("udp", "ntp.example.com", 123))
    assert other.denied and other.rule is None


@pytest.mark.parametrize(("rule", "complaint"), [
    ('match = "ws://a/*"\nto = "tcp://b:1"', "cannot become tcp"),
    ('match = "udp://a:1"\nto = "tls://b:1"', "cannot become tls"),
    ('match = "tcp://a:1"\nheaders = { X = "y" }', "headers are for ws and wss"),
    ('match = "tcp://a:25"\ndeny = true\nto = "tcp://b:25"', "a deny rule takes no"),
    ('match = "ftp://a/"', "scheme 'ftp'"),
    ('match = "ws://a/"\nproxy = "ftp://p:1"', "is not http://"),
    ('match = "ws://a/"\nto = "ws://b*/"', "belongs in match"),
    ('match = "tcp://a:99999"', "not 1..65535"),
    ('match = "ws://a/"\nheaders = { A = { file = "missing-token" } }', "file not found"),
])
def test_check_config_reports_bad_rules_with_their_key_path(tmp_path, rule, complaint):
    from gatewayd.service.checkconfig import check_config

    file = tmp_path / "gatewayd.toml"
    file.write_text(config_with(f"[[route]]\n{rule}\n"))
    errors, _ = check_config(file)
    assert any(complaint in str(e) and "route" in str(e) for e in errors), errors


def test_gatewayd_route_prints_the_decision(tmp_path):
    file = tmp_path / "gatewayd.toml"
    file.write_text('[[route]]\nmatch = "ws://old-cloud.example.com/*"\n'
                    'to = "wss://api.example.net/v2/"\n[egress]\ndefault = "deny"\n')
    run = [sys.executable, "-m", "gatewayd", "route", "-c", str(file)]
    out = subprocess.run([*run, "ws://old-cloud.example.com/feed"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert out.startswith("ws://old-cloud.example.com:80/feed -> "
                          "wss://api.example.net:443/v2/feed ([[route]] 0")
    out = subprocess.run([*run, "tcp://x.example.com:80"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert out == "tcp://x.example.com:80 -> denied by [egress] default\n"


# -- ESP-AT WebSocket: rewrite, headers, upgrade ----------------------------------


@contextlib.asynccontextmanager
async def recording_ws_server(ssl_context: ssl.SSLContext | None = None):
    seen: list[tuple[str, dict[str, str]]] = []

    async def echo(websocket):
        request = websocket.request
        seen.append((request.path, dict(request.headers.raw_items())))
        async for message in websocket:
            await websocket.send(message)

    async with serve(echo, "127.0.0.1", 0, ssl=ssl_context) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield port, seen


async def test_a_hard_coded_ws_endpoint_goes_to_wss_with_a_token(tmp_path, tls_files):
    token = tmp_path / "token"
    token.write_text("Bearer s3cret\n")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
    async with recording_ws_server(context) as (port, seen):
        routes = (f'[[route]]\nmatch = "ws://old-cloud.example.com/*"\n'
                  f'to = "wss://localhost:{port}/v2/"\nca = "{tls_files["ca"]}"\n'
                  f'headers = {{ "X-Fleet" = "unit-7", Authorization = {{ file = "{token}" }} }}\n')
        async with running_gateway(tmp_path, config_text=config_with(routes)) as (daemon, mcu):
            await station_up(mcu)
            await mcu.command(b'AT+WSOPEN=0,"ws://old-cloud.example.com/feed?id=7"',
                              b"+WS_CONNECTED:0\r\n" + OK)
            await mcu.command(b"AT+WSSEND=0,4", PROMPT)
            await mcu.send(b"test")
            await mcu.expect(SEND_OK + b"+WS_DATA:0,4,test\r\n")
            link = daemon.sessions["mcu"].describe().links[0]
            assert (link.peer, link.routed_to) == (
                "old-cloud.example.com:80", f"wss://localhost:{port}/v2/feed?id=7")
            assert ("0", "rewritten") in daemon.router.counts
    path, headers = seen[0]
    assert path == "/v2/feed?id=7"
    assert headers["X-Fleet"] == "unit-7" and headers["Authorization"] == "Bearer s3cret"


async def test_deny_and_default_deny_answer_the_connect_failure(tmp_path):
    routes = '[[route]]\nmatch = "tcp://*:25"\ndeny = true\n[egress]\ndefault = "deny"\n'
    async with running_gateway(tmp_path, config_text=config_with(routes)) as (daemon, mcu):
        await station_up(mcu)
        await mcu.command(b'AT+CIPSTART="TCP","mail.example.com",25', ERROR)
        await mcu.command(b'AT+CIPSTART="TCP","127.0.0.1",8080', ERROR)
        await mcu.command(b'AT+WSOPEN=0,"ws://127.0.0.1:8080/"', b"+WS_DISCONNECTED:0\r\n"
                          + ERROR)
        assert daemon.router.counts[("0", "denied")] == 1
        assert daemon.router.counts[("default", "denied")] == 2


# -- ESP-AT TCP upgraded to TLS ----------------------------------------------------


async def test_a_plain_tcp_link_is_upgraded_to_tls(tmp_path, tls_files):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
    accepted: asyncio.Queue = asyncio.Queue()
    server = await asyncio.start_server(lambda r, w: accepted.put_nowait((r, w)),
                                        "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    routes = (f'[[route]]\nmatch = "tcp://legacy.example.com:23"\n'
              f'to = "tls://localhost:{port}"\nca = "{tls_files["ca"]}"\n')
    try:
        async with running_gateway(tmp_path, config_text=config_with(routes)) as (_, mcu):
            await station_up(mcu)
            await mcu.command(b'AT+CIPSTART="TCP","legacy.example.com",23',
                              b"CONNECT\r\n" + OK)
            reader, writer = await asyncio.wait_for(accepted.get(), 5)
            assert writer.get_extra_info("ssl_object") is not None
            await mcu.command(b"AT+CIPSEND=5", PROMPT)
            await mcu.send(b"plain")
            await mcu.expect(b"\r\nRecv 5 bytes\r\n" + SEND_OK)
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"plain"
            writer.write(b"back")
            await mcu.expect(b"\r\n+IPD,4:back\r\n")
    finally:
        server.close()


# -- through a real proxy -------------------------------------------------------------


@contextlib.asynccontextmanager
async def tinyproxy(tmp_path: Path):
    port = free_tcp_port()
    log = tmp_path / "tinyproxy.log"
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(f'Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\n'
                    f'LogFile "{log}"\nMaxClients 20\nAllow 127.0.0.1\n')
    proc = await asyncio.create_subprocess_exec("tinyproxy", "-d", "-c", str(conf),
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(5):
            while True:
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 5)


async def test_links_go_through_an_http_connect_proxy(tmp_path):
    async with tinyproxy(tmp_path) as (proxy, log), recording_ws_server() as (ws_port, seen):
        echo = await asyncio.start_server(
            lambda r, w: w.write(b"hello from the far side"), "127.0.0.1", 0)
        tcp_port = echo.sockets[0].getsockname()[1]
        routes = (f'[[route]]\nmatch = "ws://old-cloud.example.com/*"\n'
                  f'to = "ws://localhost:{ws_port}/"\n'
                  f'[[route]]\nmatch = "tcp://127.0.0.1:*"\nproxy = ""\n'
                  f'[egress]\nproxy = "{proxy}"\n')
        try:
            async with running_gateway(tmp_path, config_text=config_with(routes)) as (_, mcu):
                await station_up(mcu)
                await mcu.command(b'AT+WSOPEN=0,"ws://old-cloud.example.com/x"',
                                  b"+WS_CONNECTED:0\r\n" + OK)
                await mcu.command(b'AT+CIPSTART="TCP","localhost",%d' % tcp_port,
                                  b"CONNECT\r\n" + OK)
                await mcu.expect(b"\r\n+IPD,23:hello from the far side\r\n")
        finally:
            echo.close()
        text = log.read_text()
    assert seen[0][0] == "/x"
    assert f"localhost:{ws_port}" in text and f"localhost:{tcp_port}" in text, text


# -- Ameba sockets and WebSocket -----------------------------------------------------


async def test_ameba_socket_and_websocket_clients_are_routed(tmp_path):
    async with recording_ws_server() as (ws_port, seen):
        echo = await asyncio.start_server(lambda r, w: w.write(b"hi"), "127.0.0.1", 0)
        tcp_port = echo.sockets[0].getsockname()[1]
        routes = (f'[[route]]\nmatch = "tcp://legacy.example.com:*"\n'
                  f'to = "tcp://127.0.0.1:{tcp_port}"\n'
                  f'[[route]]\nmatch = "ws://old-cloud.example.com/*"\n'
                  f'to = "ws://127.0.0.1:{ws_port}/new/"\n')
        try:
            async with running_gateway(tmp_path, config_text=config_with(
                    routes, dialect="ameba")) as (_, mcu):
                await mcu.command(b"AT+SKTCLIENT=0,1,,legacy.example.com,23,,1", b"\r\nOK\r\n")
                await mcu.expect(b"[$][SKT][DATA][0][2]:hi\r\n")
                await mcu.send(b"AT+WSCONN=1,old-cloud.example.com,/feed,80,1\r\n")
                got = await mcu.read_until(b"\r\nOK\r\n")
                assert b"connected" in got
        finally:
            echo.close()
    assert seen[0][0] == "/new/feed"
