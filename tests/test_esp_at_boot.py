"""ESP-AT start-up as host libraries drive it (reference esp-at-tcpip.md §8):
the module is silent for a boot time after the OK of AT+RST / AT+RESTORE and
at power-on, drops what the MCU sends meanwhile, then prints ``ready``; a
command may arrive in many small writes."""

from __future__ import annotations

import asyncio

import pytest

from gatewayd.config import load_config
from gatewayd.logs import get_logger
from gatewayd.plugin.manager import load_plugins
from gatewayd.service.daemon import Daemon
from gatewayd.testing import VirtualMcu, running_gateway

OK = b"\r\nOK\r\n"
READY = b"\r\nready\r\n"


def config(extra: str = "") -> str:
    return '[[port]]\nname = "mcu"\ndevice = "pty:tty"\n' + extra


@pytest.mark.parametrize("command", [b"AT+RST", b"AT+RESTORE"])
async def test_ready_survives_a_flush_right_after_the_ok(tmp_path, command):
    """The host reads the OK, flushes its receive buffer, then waits for ready."""
    async with running_gateway(tmp_path, config_text=config(), boot_time=None) as (_, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.send(command + b"\r\n")
        await mcu.expect(OK)
        await asyncio.sleep(0.02)  # the host's own turnaround before it flushes
        assert mcu.flush_input() == b""
        await mcu.expect(READY, timeout=2)
        # Echo is back on after the reboot, as after power-on.
        await mcu.command(b"AT", b"AT\r\n" + OK)


async def test_boot_time_is_silent_and_drops_input(tmp_path):
    async with running_gateway(tmp_path, config_text=config("boot_time = 0.5\n"),
                               boot_time=None) as (_, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b"AT+RST", OK)
        await mcu.send(b"AT\r\n")  # sent to a rebooting module: lost
        await mcu.expect_silence(0.3)
        await mcu.expect(READY, timeout=2)
        await mcu.expect_silence(0.2)  # the AT sent during the boot is never answered
        await mcu.command(b"AT", b"AT\r\n" + OK)


async def test_zero_boot_time_sends_ready_with_the_ok(tmp_path):
    async with running_gateway(tmp_path, config_text=config("boot_time = 0\n"),
                               boot_time=None) as (_, mcu):
        await mcu.command(b"AT+RST", b"AT+RST\r\n" + OK + READY, timeout=0.5)


async def test_ready_at_start_up_survives_a_flush_on_open(tmp_path):
    """At power-on the host opens its UART, flushes it, and waits for ready."""
    path = tmp_path / "gatewayd.toml"
    path.write_text(config())
    daemon = Daemon(load_config(path), load_plugins(), get_logger())
    await daemon.start()
    try:
        mcu = await VirtualMcu.open(tmp_path / "tty")
        try:
            mcu.flush_input()
            await mcu.expect(READY, timeout=2)
            await mcu.command(b"AT", b"AT\r\n" + OK)
        finally:
            await mcu.close()
    finally:
        await daemon.stop()


async def test_a_command_written_in_pieces_is_one_line(esp_at_mcu):
    mcu = esp_at_mcu
    await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    for piece in (b"AT", b"+CWMODE=", b"3", b",", b"1", b"\r\n"):
        await mcu.send(piece)
        await asyncio.sleep(0.05)  # separate writes, well apart
    await mcu.expect(OK)
    await mcu.command(b"AT+CWMODE?", b"+CWMODE:3\r\n" + OK)
