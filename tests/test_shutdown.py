"""SIGTERM closes every link cleanly before gatewayd exits 0: WebSocket
links, client and server side, with a close frame 1001 ("going away"), TCP
links with a FIN, all within a bounded time. A restart or upgrade then looks
like one to the cloud side, not like a crash (close code 1006)."""

from __future__ import annotations

import asyncio

from conftest import port_of
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from gatewayd.testing import GatewaydProcess, VirtualMcu

OK = b"\r\nOK\r\n"


async def started(tmp_path, config: str, banner: bytes) -> tuple[GatewaydProcess, VirtualMcu]:
    (tmp_path / "gatewayd.toml").write_text(config)
    proc = await GatewaydProcess(["run", "-c", str(tmp_path / "gatewayd.toml")],
                                 cwd=tmp_path).start()
    await proc.wait_for("READY=1")
    mcu = await VirtualMcu.open(tmp_path / "tty")
    await mcu.expect(banner)
    return proc, mcu


async def test_sigterm_closes_esp_at_websocket_links_with_1001(tmp_path):
    codes: asyncio.Queue[int | None] = asyncio.Queue()

    async def record(ws):
        await ws.wait_closed()
        codes.put_nowait(ws.close_code)

    async with serve(record, "127.0.0.1", 0) as server:
        port = port_of(server)
        proc, mcu = await started(
            tmp_path, '[[port]]\nname = "mcu"\ndevice = "pty:tty"\n', b"\r\nready\r\n")
        try:
            await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
            for link in (0, 1):
                await mcu.command(b'AT+WSOPEN=%d,"ws://127.0.0.1:%d/"' % (link, port),
                                  b"+WS_CONNECTED:%d\r\n" % link + OK)
            loop = asyncio.get_running_loop()
            began = loop.time()
            assert (await proc.stop())[0] == 0
            took = loop.time() - began
        finally:
            await mcu.close()
        async with asyncio.timeout(5):
            assert sorted([await codes.get(), await codes.get()]) == [1001, 1001]
    assert took < 4, took


async def test_sigterm_closes_ameba_links_cleanly(tmp_path):
    """Ameba: a WebSocket client link (1001), a client of the MCU's WebSocket
    server (1001) and a TCP socket link (FIN: the peer reads EOF)."""
    codes: asyncio.Queue[int | None] = asyncio.Queue()

    async def record(ws):
        await ws.wait_closed()
        codes.put_nowait(ws.close_code)

    eof = asyncio.get_running_loop().create_future()

    async def tcp_peer(reader, writer):
        data = await reader.read()  # b"" only on FIN; a reset raises instead
        eof.set_result(data)
        writer.close()

    tcp = await asyncio.start_server(tcp_peer, "127.0.0.1", 0)
    config = ('[[port]]\nname = "mcu"\ndevice = "pty:tty"\ndialect = "ameba"\n'
              'server_bind = "127.0.0.1"\n')
    async with serve(record, "127.0.0.1", 0) as server, tcp:
        proc, mcu = await started(tmp_path, config, b"ATCMD READY\r\n")
        try:
            await mcu.command(b"AT+WSCONN=0,127.0.0.1,,%d,1" % port_of(server),
                              b"[$][WS][EVENT]:linkid:0, connected\r\n" + OK)
            await mcu.command(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1"
                              % tcp.sockets[0].getsockname()[1], OK)
            await mcu.command(b"AT+WSSRVSTART=0,1", b"[WSSRV][EVENT]:start\r\n" + OK)
            async with connect("ws://127.0.0.1:80/") as client:
                await mcu.expect(b"[$][WSSRV][EVENT]:linkid:0, connected\r\n")
                assert (await proc.stop())[0] == 0
                async with asyncio.timeout(5):
                    await client.wait_closed()
                assert client.close_code == 1001
        finally:
            await mcu.close()
        async with asyncio.timeout(5):
            assert await codes.get() == 1001
            assert await eof == b""
