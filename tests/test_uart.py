"""The UART layer against real peers: a pty, a socat pty pair standing in for
a serial device that can be unplugged, and a TCP socket for socket:// URLs."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from gatewayd.config import Config, PortConfig
from gatewayd.logs import get_logger
from gatewayd.plugin.manager import load_plugins
from gatewayd.service.daemon import Daemon
from gatewayd.testing import GatewaydProcess, VirtualMcu

OK = b"\r\nOK\r\n"
READY = b"\r\nready\r\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: AT+TEST=2 downstream data: this pattern, repeated.
DOWNSTREAM_PATTERN = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


async def test_256k_to_a_slow_reader_then_the_daemon_is_idle(tmp_path):
    link = tmp_path / "tty"
    async with GatewaydProcess(["run", "--device", f"pty:{link}", "--dialect", "ameba",
                                "--log-level", "warning"], cwd=tmp_path) as proc:
        await proc.wait_for("READY=1")
        mcu = await VirtualMcu.open(link)
        await mcu.expect(b"ATCMD READY\r\n")
        expected = (DOWNSTREAM_PATTERN * 1100)[:65536] + OK
        for _ in range(4):
            await mcu.send(b"AT+TEST=2,65536\r\n")
            # Read slowly, 4 KiB at a time with pauses, so that the pty fills
            # up and gatewayd's writes would block.
            got = bytearray()
            while len(got) < len(expected):
                await asyncio.sleep(0.005)
                got += await mcu.read_exactly(min(4096, len(expected) - len(got)))
            assert got == expected
        before = cpu_seconds(proc.pid)
        await asyncio.sleep(1.0)
        used = cpu_seconds(proc.pid) - before
        assert used < 0.05, f"daemon used {used * 1000:.0f} ms of CPU in an idle second"
        await mcu.command(b"AT+TEST", OK)
        await mcu.close()
        assert (await proc.stop())[0] == 0


class _FakeMcuOverTcp(asyncio.Protocol):
    """An MCU reached through socket://: records what gatewayd writes."""

    def __init__(self, server: McuServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.server.connections.put_nowait(transport)

    def data_received(self, data: bytes) -> None:
        self.server.received += data
        self.server.arrived.set()


class McuServer:
    def __init__(self) -> None:
        self.connections: asyncio.Queue[asyncio.Transport] = asyncio.Queue()
        self.received = bytearray()
        self.arrived = asyncio.Event()

    async def expect(self, expected: bytes, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < len(expected):
                self.arrived.clear()
                await self.arrived.wait()
        got = bytes(self.received[: len(expected)])
        del self.received[: len(expected)]
        assert got == expected


async def daemon_on(device: str) -> Daemon:
    config = Config(ports=(PortConfig(name="mcu", device=device),))
    daemon = Daemon(config, load_plugins(), get_logger())
    await daemon.start()
    return daemon


async def test_socket_url_device_and_reconnect_after_the_peer_goes(tmp_path):
    mcu = McuServer()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _FakeMcuOverTcp(mcu), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    daemon = await daemon_on(f"socket://127.0.0.1:{port}")
    try:
        first = await asyncio.wait_for(mcu.connections.get(), 5)
        await mcu.expect(READY)
        first.write(b"AT\r\n")
        await mcu.expect(b"AT\r\n" + OK)
        first.close()  # the "device" goes away
        second = await asyncio.wait_for(mcu.connections.get(), 5)
        await mcu.expect(READY)  # reopened: the module announces itself again
        second.write(b"AT\r\n")
        await mcu.expect(b"AT\r\n" + OK)
    finally:
        await daemon.stop()
        server.close()


async def test_serial_device_path_unplugged_and_replugged(tmp_path):
    device, mcu_end = tmp_path / "ttyS-gw", tmp_path / "ttyS-mcu"

    def plug() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={device}", f"pty,raw,echo=0,link={mcu_end}"])

    async def wait_for_links() -> None:
        async with asyncio.timeout(5):
            while not (device.exists() and mcu_end.exists()):
                await asyncio.sleep(0.02)

    socat = plug()
    daemon = None
    try:
        await wait_for_links()
        daemon = await daemon_on(str(device))
        mcu = await VirtualMcu.open(mcu_end)
        await mcu.expect(READY)
        await mcu.command(b"AT", b"AT\r\n" + OK)
        await mcu.close()
        socat.terminate()  # unplug: gatewayd's reads fail with EIO / EOF
        socat.wait(5)
        await asyncio.sleep(0.3)
        assert "mcu" in daemon.sessions, "the daemon dropped the port instead of retrying"
        socat = plug()  # plug back in
        await wait_for_links()
        mcu = await VirtualMcu.open(mcu_end)
        await mcu.expect(READY, timeout=15)
        await mcu.command(b"AT", b"AT\r\n" + OK)
        await mcu.close()
    finally:
        if daemon is not None:
            await daemon.stop()
        socat.terminate()
        socat.wait(5)
