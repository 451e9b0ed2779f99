"""Ameba WebSocket server commands end to end: a virtual MCU on gatewayd's pty,
real clients from the `websockets` library and aiohttp on 127.0.0.1, real TLS
with trustme suites.

Expected bytes: seed document 000 (AT+WSSRVCFG … AT+WSSRVQUERY) and
shared/reference/ameba-at-behaviour.md §1, §2 and §5 "WebSocket server".

Not provoked here, rather than faked: ERROR 4 of AT+WSSRVSTART and ERROR 2
of AT+WSSRVSEND/AT+WSSRVSENDRAW ("memory allocation failed"), and
disconnect reasons 1, 2, 7 and 9 (firmware-internal set-up failures with no
counterpart in gatewayd). Reason 6 (TLS handshake timeout) needs a client
silent for the 10 s handshake deadline; the transport's own tests cover
that deadline with a short timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
TT = b">>>\r\n"
START = b"[WSSRV][EVENT]:start\r\n" + OK
WAIT = 5.0
#: What a websockets client raises when the server drops it during TLS.
TLS_REFUSED = (ssl.SSLError, OSError, EOFError, InvalidMessage, InvalidStatus, ConnectionClosed)


def error(code: int) -> bytes:
    return b"\r\nERROR: %d\r\n" % code


def connected(link: int) -> bytes:
    return b"[$][WSSRV][EVENT]:linkid:%d, connected\r\n" % link


def disconnected(link: int, reason: int) -> bytes:
    return b"[$][WSSRV][EVENT]:linkid:%d, disconnected, reason:%d\r\n" % (link, reason)


def data(link: int, opcode: int, payload: bytes) -> bytes:
    return b"[$][WSSRV][DATA][%d][%d][%d]:" % (link, opcode, len(payload)) + payload + b"\r\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config(tls_files: dict[str, Path] | None = None, extra: str = "") -> str:
    text = (f'[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n'
            f'server_bind = "127.0.0.1"\n{extra}\n')
    if tls_files is not None:
        f = {k: str(v) for k, v in tls_files.items()}
        for n in (1, 2):
            text += (f'[certs.server.{n}]\nca = "{f["ca"]}"\ncert = "{f["server_cert"]}"\n'
                     f'key = "{f["server_key"]}"\n')
        text += f'[certs.server.3]\ncert = "{f["server_cert"]}"\nkey = "{f["server_key"]}"\n'
    return text


def client_tls(files: dict[str, Path], with_cert: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files["ca"]))
    if with_cert:
        context.load_cert_chain(files["client_cert"], files["client_key"])
    return context


@contextlib.asynccontextmanager
async def gateway(tmp_path, text=None):
    async with running_gateway(tmp_path, config_text=text or config()) as (daemon, mcu):
        yield daemon, mcu


async def started(mcu, port: int, conn_type: int = 1, cert: int | None = None) -> None:
    args = b"%d,%d" % (port, conn_type) + (b",%d" % cert if cert else b"")
    await mcu.command(b"AT+WSSRVSTART=" + args, START)


# -- AT+WSSRVCFG / AT+WSSRVQUERY ----------------------------------------------------


def query(port: int, cfg=(3, 30, 0, 4096, 4096), clients=()) -> bytes:
    keys = (b"max_conn", b"ping_interval", b"idle_timeout", b"tx_size", b"rx_size")
    out = b"port: %d\r\n" % port + b"".join(b"%s: %d\r\n" % kv for kv in zip(keys, cfg,
                                                                          strict=True))
    for link, status, ip in clients:
        out += b"link_id: %d\r\nstatus: %d\r\nip: %s\r\n" % (link, status, ip)
    return out + OK


async def test_wssrvcfg_example_and_query(ameba_mcu):
    await ameba_mcu.command(b"AT+WSSRVQUERY", query(0))
    await ameba_mcu.command(b"AT+WSSRVCFG=2,30,90,16384,16384", OK)
    await ameba_mcu.command(b"AT+WSSRVQUERY", query(0, (2, 30, 90, 16384, 16384)))
    await ameba_mcu.command(b"AT+WSSRVCFG=", OK)  # every field back to its default
    await ameba_mcu.command(b"AT+WSSRVQUERY", query(0))


@pytest.mark.parametrize("args", [b"0", b"4", b",0", b",7201", b",,-1", b",,7201", b",,,0",
                                  b",,,16385", b",,,,0", b",,,,16385", b"1,1,1,1,1,1"])
async def test_wssrvcfg_range_errors(ameba_mcu, args):
    await ameba_mcu.command(b"AT+WSSRVCFG=" + args, error(1))
    await ameba_mcu.command(b"AT+WSSRVQUERY", query(0))


async def test_query_example_with_a_client(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await started(mcu, port)
        async with connect(f"ws://127.0.0.1:{port}/"):
            await mcu.expect(connected(0))
            await mcu.command(b"AT+WSSRVQUERY", query(port, clients=[(0, 2, b"127.0.0.1")]))


# -- AT+WSSRVSTART ------------------------------------------------------------------------


async def test_start_example_port_0_is_80(tmp_path):
    async with gateway(tmp_path) as (_, mcu):
        await mcu.command(b"AT+WSSRVSTART=0,1", START)
        await mcu.command(b"AT+WSSRVQUERY", query(80))
        async with connect("ws://127.0.0.1:80/") as ws:
            await mcu.expect(connected(0))
            await ws.send("on 80")
            await mcu.expect(data(0, 1, b"on 80"))


async def test_start_tls_example_and_port_443_default(tmp_path, tls_files):
    port = free_port()
    async with gateway(tmp_path, config(tls_files)) as (_, mcu):
        await mcu.command(b"AT+WSSRVSTART=%d,2,2" % port, START)
        async with connect(f"wss://127.0.0.1:{port}/",
                           ssl=client_tls(tls_files, with_cert=False)) as ws:
            await mcu.expect(connected(0))
            await ws.send(b"\x00\x01")
            await mcu.expect(data(0, 2, b"\x00\x01"))
    async with gateway(tmp_path, config(tls_files)) as (_, mcu):
        await mcu.command(b"AT+WSSRVSTART=,2,1", START)
        await mcu.command(b"AT+WSSRVQUERY", query(443))


@pytest.mark.parametrize("args", [b"", b"0", b"0,0", b"0,4", b"65536,1", b"-1,1", b"0,2",
                                  b"0,2,11", b"0,1,1,1"])
async def test_start_parameter_errors(ameba_mcu, args):
    await ameba_mcu.command(b"AT+WSSRVSTART=" + args, error(1))


async def test_start_errors_2_3_5_6(tmp_path, tls_files):
    import shutil

    broken = tmp_path / "broken.pem"
    shutil.copy(tls_files["server_cert"], broken)
    extra = (f'[certs.server.4]\nca = "{tls_files["ca"]}"\ncert = "{broken}"\n'
             f'key = "{tls_files["server_key"]}"\n')
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        async with gateway(tmp_path, config(tls_files) + extra) as (_, mcu):
            await mcu.command(b"AT+WSSRVSTART=%d,2,3" % free_port(), error(3))  # no ca
            await mcu.command(b"AT+WSSRVSTART=%d,2,9" % free_port(), error(3))  # no suite
            broken.write_text("not a certificate\n")
            await mcu.command(b"AT+WSSRVSTART=%d,2,4" % free_port(), error(5))
            await mcu.command(b"AT+WSSRVSTART=%d,1" % taken.getsockname()[1], error(6))
            await started(mcu, free_port())
            await mcu.command(b"AT+WSSRVSTART=%d,1" % free_port(), error(2))
    finally:
        taken.close()


# -- clients ------------------------------------------------------------------------------


async def test_three_clients_and_a_fourth_refused(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu), contextlib.AsyncExitStack() as stack:
        await started(mcu, port)
        clients = []
        for link in range(3):
            clients.append(await stack.enter_async_context(connect(f"ws://127.0.0.1:{port}/")))
            await mcu.expect(connected(link))
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{port}/"):
                pass
        assert refused.value.response.status_code == 429
        await mcu.expect_silence(0.1)
        for link, ws in enumerate(clients):
            await ws.send(f"client {link}")
            await mcu.expect(data(link, 1, b"client %d" % link))
        # The middle slot frees and is the next one taken.
        await clients[1].close()
        await mcu.expect(disconnected(1, 3))
        async with connect(f"ws://127.0.0.1:{port}/"):
            await mcu.expect(connected(1))


async def test_max_conn_applies_at_next_start(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await mcu.command(b"AT+WSSRVCFG=1", OK)
        await started(mcu, port)
        async with connect(f"ws://127.0.0.1:{port}/"):
            await mcu.expect(connected(0))
            with pytest.raises(InvalidStatus):
                async with connect(f"ws://127.0.0.1:{port}/"):
                    pass


async def test_send_examples_and_opcodes(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu), contextlib.AsyncExitStack() as stack:
        await started(mcu, port)
        first = await stack.enter_async_context(connect(f"ws://127.0.0.1:{port}/"))
        await mcu.expect(connected(0))
        second = await stack.enter_async_context(connect(f"ws://127.0.0.1:{port}/"))
        await mcu.expect(connected(1))
        await mcu.command(b"AT+WSSRVSEND=1,11,1,HelloWorld!", OK)
        async with asyncio.timeout(WAIT):
            assert await second.recv() == "HelloWorld!"
        await mcu.command(b"AT+WSSRVSEND=0,5,2,a\\,b\\\\c", OK)
        async with asyncio.timeout(WAIT):
            assert await first.recv() == b"a,b\\c"
        await mcu.command(b"AT+WSSRVSEND=0,3,,abcdef", OK)  # default text; first 3 bytes
        async with asyncio.timeout(WAIT):
            assert await first.recv() == "abc"
        await mcu.command(b"AT+WSSRVSEND=0,0,2,", OK)  # beyond the firmware: empty message
        async with asyncio.timeout(WAIT):
            assert await first.recv() == b""


@pytest.mark.parametrize("args", [b"0,5,1,hello", b"3,5,1,hello"])
async def test_send_to_missing_link_is_error_1(ameba_mcu, args):
    await ameba_mcu.command(b"AT+WSSRVSEND=" + args, error(1))


async def test_send_parameter_errors(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await mcu.command(b"AT+WSSRVCFG=3,30,0,8", OK)
        await started(mcu, port)
        async with connect(f"ws://127.0.0.1:{port}/"):
            await mcu.expect(connected(0))
            for args in (b"0,9,1,123456789", b"0,6,1,hello", b"0,-1,1,x", b"0,5,16,hello",
                         b"0,5,1", b"0,2,1,a\\qb", b"0,1,1,a,b"):
                await mcu.command(b"AT+WSSRVSEND=" + args, error(1))
            await mcu.command(b"AT+WSSRVSEND=0,8,1,12345678", OK)


async def test_sendraw_example_and_64_kib_whole(tmp_path):
    port = free_port()
    block = os.urandom(64 * 1024)
    async with gateway(tmp_path) as (_, mcu), contextlib.AsyncExitStack() as stack:
        await started(mcu, port)
        ws = await stack.enter_async_context(connect(f"ws://127.0.0.1:{port}/", max_size=None))
        await mcu.expect(connected(0))
        await mcu.command(b"AT+WSSRVSENDRAW=0,10,1", TT)
        await mcu.send(b"1234567890")
        await mcu.expect(OK)
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == "1234567890"
        await mcu.command(b"AT+WSSRVSENDRAW=0,%d,2" % len(block), TT)
        await mcu.send(block)
        await mcu.expect(OK)
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == block


async def test_sendraw_errors(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await mcu.command(b"AT+WSSRVSENDRAW=0,5", error(1))  # not connected
        await started(mcu, port)
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await mcu.expect(connected(0))
            await mcu.command(b"AT+WSSRVSENDRAW=0,0", error(1))
            await mcu.command(b"AT+WSSRVSENDRAW=3,5", error(1))
            await mcu.command(b"AT+WSSRVSENDRAW=0,5,16", error(1))
            await mcu.command(b"AT+WSSRVSENDRAW=0,5", TT)
            for _ in range(3):
                await mcu.send(b"<")
                await asyncio.sleep(0.005)
            await mcu.expect(error(3))
            await mcu.command(b"AT+WSSRVSEND=0,2,1,ok", OK)
            async with asyncio.timeout(WAIT):
                assert await ws.recv() == "ok"


async def test_client_message_of_64_kib_is_one_data_message(tmp_path):
    port = free_port()
    block = os.urandom(64 * 1024)
    async with gateway(tmp_path) as (_, mcu):
        await started(mcu, port)
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(f"ws://127.0.0.1:{port}/") as ws:
            await mcu.expect(connected(0))
            await ws.send_bytes(block)
            await mcu.expect(data(0, 2, block))
            await ws.send_str("x" * 70000)
            await mcu.expect(data(0, 1, b"x" * 70000))


# -- disconnect reasons ----------------------------------------------------------------------


async def test_reason_3_client_closed_and_10_connection_lost(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await started(mcu, port)
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await mcu.expect(connected(0))
            await ws.close()
        await mcu.expect(disconnected(0, 3))
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}/")
            await mcu.expect(connected(0))
            ws._response.connection.transport.abort()  # TCP gone, no close frame
            await mcu.expect(disconnected(0, 10))
            await ws.close()


async def test_reason_4_disconn_example_and_errors(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu), contextlib.AsyncExitStack() as stack:
        await started(mcu, port)
        await mcu.command(b"AT+WSSRVDISCONN=2", error(2))
        await mcu.command(b"AT+WSSRVDISCONN=3", error(1))
        clients = []
        for link in range(3):
            clients.append(await stack.enter_async_context(connect(f"ws://127.0.0.1:{port}/")))
            await mcu.expect(connected(link))
        await mcu.command(b"AT+WSSRVDISCONN=2", OK)
        await mcu.expect(disconnected(2, 4))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(WAIT):
                await clients[2].recv()
        assert closed.value.rcvd.code == 1000


async def test_reason_13_client_that_never_answers_pings(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await mcu.command(b"AT+WSSRVCFG=3,1", OK)
        await started(mcu, port)
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(f"ws://127.0.0.1:{port}/", autoping=False) as ws:
            await mcu.expect(connected(0))
            await mcu.command(b"AT+WSSRVQUERY", query(port, (3, 1, 0, 4096, 4096),
                                                       [(0, 2, b"127.0.0.1")]))
            ping = await ws.receive(timeout=WAIT)
            assert ping.type == aiohttp.WSMsgType.PING
            await mcu.command(b"AT+WSSRVQUERY", query(port, (3, 1, 0, 4096, 4096),
                                                       [(0, 3, b"127.0.0.1")]))
            await mcu.expect(disconnected(0, 13), timeout=WAIT)


async def test_pings_answered_keep_the_client(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await mcu.command(b"AT+WSSRVCFG=3,1", OK)
        await started(mcu, port)
        async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None):
            await mcu.expect(connected(0))
            await mcu.expect_silence(2.5)


async def test_reason_14_idle_client(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await mcu.command(b"AT+WSSRVCFG=3,30,1", OK)
        await started(mcu, port)
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await mcu.expect(connected(0))
            await asyncio.sleep(0.6)
            await ws.send("still here")  # data resets the idle clock
            await mcu.expect(data(0, 1, b"still here"))
            await mcu.expect(disconnected(0, 14), timeout=WAIT)
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(WAIT):
                    await ws.recv()


async def test_mutual_tls_accepted_and_refused_with_reason_5(tmp_path, tls_files):
    port = free_port()
    async with gateway(tmp_path, config(tls_files)) as (_, mcu):
        await started(mcu, port, 3, 1)
        with pytest.raises(TLS_REFUSED):
            async with connect(f"wss://127.0.0.1:{port}/",
                               ssl=client_tls(tls_files, with_cert=False)) as ws:
                await ws.recv()
        await mcu.expect(disconnected(0, 5))
        async with connect(f"wss://127.0.0.1:{port}/", ssl=client_tls(tls_files)) as ws:
            await mcu.expect(connected(0))
            await mcu.command(b"AT+WSSRVSEND=0,6,1,mutual", OK)
            async with asyncio.timeout(WAIT):
                assert await ws.recv() == "mutual"


async def test_plain_client_on_tls_server_is_reason_5(tmp_path, tls_files):
    port = free_port()
    async with gateway(tmp_path, config(tls_files)) as (_, mcu):
        await started(mcu, port, 2, 1)
        with pytest.raises(TLS_REFUSED):
            async with connect(f"ws://127.0.0.1:{port}/", open_timeout=WAIT):
                pass
        await mcu.expect(disconnected(0, 5))


async def test_stop_closes_every_client(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu), contextlib.AsyncExitStack() as stack:
        await mcu.command(b"AT+WSSRVSTOP", OK)  # not running: nothing to do
        await started(mcu, port)
        clients = []
        for link in range(2):
            clients.append(await stack.enter_async_context(connect(f"ws://127.0.0.1:{port}/")))
            await mcu.expect(connected(link))
        await mcu.command(b"AT+WSSRVSTOP", OK)
        got = await mcu.read_until(b"[$][WSSRV][EVENT]:stop\r\n")
        assert got.replace(disconnected(0, 4), b"").replace(disconnected(1, 4), b"") == \
            b"[$][WSSRV][EVENT]:stop\r\n"
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(WAIT):
                    await ws.recv()
        with pytest.raises(OSError):
            async with connect(f"ws://127.0.0.1:{port}/", open_timeout=WAIT):
                pass
        await started(mcu, port)  # and it starts again


# -- operator settings -------------------------------------------------------------------------


async def test_token_required_before_the_mcu_hears_of_a_client(tmp_path):
    port = free_port()
    token = "0123456789abcdef-token"
    async with gateway(tmp_path, config(extra=f'wssrv_token = "{token}"')) as (_, mcu):
        await started(mcu, port)
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{port}/"):
                pass
        assert refused.value.response.status_code == 401
        await mcu.expect_silence(0.1)
        async with connect(f"ws://127.0.0.1:{port}/",
                           additional_headers={"Authorization": f"Bearer {token}"}):
            await mcu.expect(connected(0))
        await mcu.expect(disconnected(0, 3))
        async with connect(f"ws://127.0.0.1:{port}/?token={token}"):
            await mcu.expect(connected(0))


async def test_client_networks_from_config(tmp_path):
    port = free_port()
    async with gateway(tmp_path, config(extra='server_allow = ["10.0.0.0/8"]')) as (_, mcu):
        await started(mcu, port)
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{port}/"):
                pass
        assert refused.value.response.status_code == 403
        await mcu.expect_silence(0.1)


async def test_bind_address_from_config(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await started(mcu, port)
        with pytest.raises(OSError):
            async with connect(f"ws://127.0.0.2:{port}/", open_timeout=WAIT):
                pass


async def test_required_client_certificate_from_config(tmp_path, tls_files):
    port = free_port()
    text = config(tls_files, "wssrv_require_client_cert = true")
    async with gateway(tmp_path, text) as (_, mcu):
        await mcu.command(b"AT+WSSRVSTART=%d,1" % port, error(6))
        await started(mcu, port, 2, 1)  # conn_type 2 now verifies clients too
        with pytest.raises(TLS_REFUSED):
            async with connect(f"wss://127.0.0.1:{port}/",
                               ssl=client_tls(tls_files, with_cert=False)) as ws:
                await ws.recv()
        await mcu.expect(disconnected(0, 5))
        async with connect(f"wss://127.0.0.1:{port}/", ssl=client_tls(tls_files)):
            await mcu.expect(connected(0))


async def test_restart_stops_the_server_silently(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await started(mcu, port)
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await mcu.expect(connected(0))
            await mcu.command(b"AT+RST", OK + b"ATCMD READY\r\n")
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(WAIT):
                    await ws.recv()
        await mcu.expect_silence(0.2)
        await mcu.command(b"AT+WSSRVQUERY", query(0))
        await started(mcu, port)


def _unit_ambient_capabilities() -> str:
    unit = Path(__file__).parent.parent / "packaging/systemd/gatewayd.service"
    for line in unit.read_text().splitlines():
        if line.startswith("AmbientCapabilities="):
            return line.partition("=")[2].strip()
    raise AssertionError("the unit grants no ambient capability")


@pytest.mark.parametrize("with_capability", [True, False])
async def test_port_80_without_root_given_the_units_capability(with_capability):
    """As the systemd unit runs it: an unprivileged user holding only the
    unit's ambient capability starts a ws server on port 80 (conn_type 1,
    port 0). Without the capability the same user gets ERROR: 6."""
    import shutil
    import sys
    import tempfile

    caps = _unit_ambient_capabilities().lower().replace("cap_", "+")
    assert caps == "+net_bind_service"
    capability = [f"--inh-caps={caps}", f"--ambient-caps={caps}"] if with_capability else []
    workdir = Path(tempfile.mkdtemp(prefix="gwd-nobody-"))
    workdir.chmod(0o777)
    (workdir / "gatewayd.toml").write_text(
        '[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n'
        'server_bind = "127.0.0.1"\n')
    proc = await asyncio.create_subprocess_exec(
        "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *capability,
        sys.executable, "-m", "gatewayd", "run", "-c", str(workdir / "gatewayd.toml"),
        cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    from gatewayd.testing import VirtualMcu

    try:
        mcu = await VirtualMcu.open(workdir / "ttyAT0", timeout=WAIT)
        try:
            await mcu.expect(b"ATCMD READY\r\n")
            if not with_capability:
                await mcu.command(b"AT+WSSRVSTART=0,1", error(6))
                return
            await mcu.command(b"AT+WSSRVSTART=0,1", START)
            async with connect("ws://127.0.0.1:80/") as ws:
                await mcu.expect(connected(0))
                await ws.send("unprivileged")
                await mcu.expect(data(0, 1, b"unprivileged"))
        finally:
            await mcu.close()
    finally:
        proc.terminate()
        async with asyncio.timeout(WAIT):
            await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


async def test_stop_then_start_at_once_keeps_the_order(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await started(mcu, port)
        async with connect(f"ws://127.0.0.1:{port}/"):
            await mcu.expect(connected(0))
            await mcu.send(b"AT+WSSRVSTOP\r\nAT+WSSRVSTART=%d,1\r\n" % port)
            await mcu.expect(OK + disconnected(0, 4) + b"[$][WSSRV][EVENT]:stop\r\n" + START)
        async with connect(f"ws://127.0.0.1:{port}/"):
            await mcu.expect(connected(0))


async def test_sendraw_control_frames_are_single_and_small(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await started(mcu, port)
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(f"ws://127.0.0.1:{port}/", autoping=False) as ws:
            await mcu.expect(connected(0))
            await mcu.command(b"AT+WSSRVSENDRAW=0,126,9", error(1))
            await mcu.command(b"AT+WSSRVSENDRAW=0,5,9", TT)
            await mcu.send(b"ab")
            await asyncio.sleep(0.05)
            await mcu.send(b"cde")
            await mcu.expect(OK)
            ping = await ws.receive(timeout=WAIT)
            assert (ping.type, ping.data) == (aiohttp.WSMsgType.PING, b"abcde")


async def test_no_data_from_old_clients_after_a_restart(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await started(mcu, port)
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(f"ws://127.0.0.1:{port}/", autoclose=False) as ws:
            await mcu.expect(connected(0))
            await mcu.command(b"AT+RST", OK + b"ATCMD READY\r\n")
            await ws.send_str("old data")
            await mcu.expect_silence(0.3)


async def test_idle_timeout_set_later_applies_at_once(tmp_path):
    port = free_port()
    async with gateway(tmp_path) as (_, mcu):
        await started(mcu, port)  # ping every 30 s, no idle timeout
        async with connect(f"ws://127.0.0.1:{port}/"):
            await mcu.expect(connected(0))
            await mcu.command(b"AT+WSSRVCFG=3,30,1", OK)
            await mcu.expect(disconnected(0, 14), timeout=3)


async def test_wss_peers_outside_server_allow_or_without_a_token_never_reach_the_mcu(
        tmp_path, tls_files):
    """A peer outside server_allow gets no TLS handshake at all; with a token, a
    peer that fails TLS never authenticated: the MCU hears of neither (before:
    `disconnected, reason:5` / `reason:6` for any outsider, a UART flood)."""

    async def plain_text_at(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        try:
            return await asyncio.wait_for(reader.read(100), WAIT)
        finally:
            writer.close()

    port = free_port()
    text = config(tls_files, 'server_allow = ["127.0.0.2/32"]')
    async with gateway(tmp_path, text) as (_, mcu):
        await started(mcu, port, 2, 1)
        for _ in range(5):
            assert await plain_text_at(port) == b""  # closed at once: no TLS, no alert
        await mcu.expect_silence(0.3)
    text = config(tls_files, f'wssrv_token = "{"t" * 20}"')
    async with gateway(tmp_path, text) as (_, mcu):
        await started(mcu, port, 2, 1)
        await plain_text_at(port)  # a TLS failure of an unauthenticated peer
        await mcu.expect_silence(0.3)
