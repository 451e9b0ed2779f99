"""A flood of connections under a low descriptor limit (RLIMIT_NOFILE in the
daemon's process): the port keeps answering AT and the control socket keeps
answering ``status``, during the flood and after it, on either event loop:
asyncio's, where gatewayd's descriptor reserve sheds the flood (and logs
``out of file descriptors``), and uvloop, where libuv sheds it itself
(silently). Real daemon, real sockets on 127.0.0.1, bounded waits only."""

from __future__ import annotations

import asyncio
import resource
import socket
import sys

import pytest

from gatewayd.testing import GatewaydProcess, VirtualMcu

OK = b"\r\nOK\r\n"
#: Low enough that the flood's seeds (20 ids) take every descriptor left.
LIMIT = 32
FLOOD = 80


def _low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


async def _status(config) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gatewayd", "status", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err
    return out


async def _answers_at(mcu: VirtualMcu) -> None:
    await asyncio.sleep(0.2)
    mcu.flush_input()  # the seeds' [$][SKT] messages
    await mcu.send(b"AT+TEST\r\n")
    await mcu.read_until(OK, timeout=10)


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
async def test_a_connection_flood_leaves_the_port_and_the_control_socket_serving(
        tmp_path, event_loop):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "gatewayd.toml"
    config.write_text('[[port]]\nname = "mcu"\ndevice = "pty:tty"\ndialect = "ameba"\n'
                      'server_bind = "127.0.0.1"\n[control]\nsocket = "ctl.sock"\n'
                      f'[daemon]\nevent_loop = "{event_loop}"\n')
    async with GatewaydProcess(["run", "-c", str(config)], cwd=tmp_path,
                               preexec=_low_limit) as proc:
        await proc.wait_for("READY=1", timeout=20)
        mcu = await VirtualMcu.open(tmp_path / "tty")
        await mcu.read_until(b"ATCMD READY\r\n")
        await mcu.send(b"AT+SKTSERVER=1,1,,%d,1\r\n" % port)
        await mcu.read_until(OK)
        flood: list[asyncio.StreamWriter] = []
        for _ in range(FLOOD):
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), 5)
            except (OSError, TimeoutError):
                continue  # the backlog is full: that is the flood doing its work
            flood.append(writer)
        await asyncio.sleep(1.5)  # asyncio retries a starved listener after 1 s
        await _answers_at(mcu)  # during the flood: every descriptor taken
        assert b"port mcu " in await _status(config)
        for writer in flood:
            writer.close()
        await asyncio.sleep(0.5)
        await _answers_at(mcu)  # and after it
        assert b"port mcu " in await _status(config)
        await mcu.close()
        code, err = await proc.stop()
    assert code == 0, err
    if event_loop == "asyncio":
        assert b"out of file descriptors" in err, err[-2000:]
