"""``[daemon] event_loop``: the daemon runs the same conversation on asyncio's
loop and on uvloop, reports which one it runs on, and refuses ``uvloop`` when
uvloop cannot be imported. Real processes, a pty and a websockets echo server."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys

import pytest
from conftest import port_of

from gatewayd.testing import GatewaydProcess, VirtualMcu

OK = b"\r\nOK\r\n"


def ready_loop(stderr: bytes) -> str:
    """The ``event_loop`` field of the ``gatewayd ready`` log line."""
    line = next(line for line in stderr.decode().splitlines() if "gatewayd ready" in line)
    match = re.search(r"event_loop\W+(\w+)", line)
    assert match, line
    return match.group(1)


async def run_conversation(tmp_path, ws_echo, choice: str | None) -> bytes:
    """Boot, AT, a WebSocket link and an echoed frame; the daemon's stderr."""
    config = tmp_path / "gatewayd.toml"
    config.write_text("" if choice is None else f'[daemon]\nevent_loop = "{choice}"\n')
    link = tmp_path / "ttyAT0"
    uri = b"ws://127.0.0.1:%d" % port_of(ws_echo)
    async with GatewaydProcess(["run", "-c", str(config), "--device", f"pty:{link}"],
                               cwd=tmp_path) as proc:
        await proc.wait_for("READY=1")
        mcu = await VirtualMcu.open(link)
        await mcu.expect(b"\r\nready\r\n")
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b'AT+WSOPEN=0,"%s"' % uri, b"+WS_CONNECTED:0\r\n" + OK)
        await mcu.command(b"AT+WSSEND=0,5", b"\r\nOK\r\n\r\n>")
        await mcu.send(b"hello")
        await mcu.expect(b"\r\nSEND OK\r\n+WS_DATA:0,5,hello\r\n")
        await mcu.close()
        code, stderr = await proc.stop()
    assert code == 0, stderr
    return stderr


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
async def test_the_conversation_runs_on_the_chosen_loop(tmp_path, ws_echo, choice):
    stderr = await run_conversation(tmp_path, ws_echo, choice)
    assert ready_loop(stderr) == choice


async def test_auto_takes_uvloop_when_it_is_installed(tmp_path, ws_echo):
    assert importlib.util.find_spec("uvloop") is not None, "the test extra installs uvloop"
    stderr = await run_conversation(tmp_path, ws_echo, None)
    assert ready_loop(stderr) == "uvloop"


def without_uvloop(tmp_path) -> dict[str, str]:
    """An environment in which ``import uvloop`` fails, as where it is not installed."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "uvloop.py").write_text('raise ImportError("No module named \'uvloop\'")\n')
    return {"PYTHONPATH": str(shadow)}


async def test_uvloop_required_but_missing_is_a_config_error(tmp_path):
    config = tmp_path / "gatewayd.toml"
    config.write_text('[daemon]\nevent_loop = "uvloop"\n')
    async with GatewaydProcess(["run", "-c", str(config), "--device", f"pty:{tmp_path / 't'}"],
                               cwd=tmp_path, env=without_uvloop(tmp_path)) as proc:
        assert proc.proc is not None
        await asyncio.wait_for(proc.proc.wait(), 30)  # it exits by itself
        code, stderr = await proc.stop()
    assert code == 2
    assert b"daemon.event_loop" in stderr and b"uvloop cannot be imported" in stderr
    assert not (tmp_path / "t").exists()


async def test_auto_without_uvloop_runs_on_asyncio(tmp_path):
    link = tmp_path / "ttyAT0"
    async with GatewaydProcess(["run", "--device", f"pty:{link}"], cwd=tmp_path,
                               env=without_uvloop(tmp_path)) as proc:
        await proc.wait_for("READY=1")
        mcu = await VirtualMcu.open(link)
        await mcu.expect(b"\r\nready\r\n")
        await mcu.command(b"AT", b"AT\r\n" + OK)
        await mcu.close()
        code, stderr = await proc.stop()
    assert code == 0, stderr
    assert ready_loop(stderr) == "asyncio"


def test_event_loop_value_is_checked(tmp_path):
    config = tmp_path / "gatewayd.toml"
    config.write_text('[[port]]\nname = "mcu"\ndevice = "pty:t"\n[daemon]\nevent_loop = "trio"\n')
    result = subprocess.run([sys.executable, "-m", "gatewayd", "check-config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "daemon.event_loop" in result.stderr, result.stderr


@pytest.mark.parametrize("loop", ["", "uvloop"])
def test_the_pytest_plugin_runs_asyncio_tests_on_the_loop_asked_for(tmp_path, loop):
    """``GATEWAYD_TEST_LOOP=uvloop``: a plugin author's async tests run on uvloop."""
    (tmp_path / "test_loop.py").write_text(
        "import asyncio\n\n"
        "async def test_loop():\n"
        "    print('LOOP', type(asyncio.get_running_loop()).__module__)\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "-o", "asyncio_mode=auto", str(tmp_path / "test_loop.py")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "GATEWAYD_TEST_LOOP": loop})
    assert result.returncode == 0, result.stdout + result.stderr
    module = re.search(r"LOOP (\S+)", result.stdout)
    assert module, result.stdout
    assert module.group(1).startswith("uvloop") == (loop == "uvloop"), module.group(1)
