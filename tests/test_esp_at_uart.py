"""AT+UART_CUR / AT+UART_DEF / AT+UART (reference esp-at-tcpip.md §5): OK at
the old settings, then the real serial port switches; the default survives
AT+RST and a daemon restart, and AT+RESTORE brings back the config's. The
pty's MCU end carries the settings, so the test reads them back with termios."""

from __future__ import annotations

import asyncio
import json
import termios

import pytest

from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
READY = b"\r\nready\r\n"
CONFIG = '[[port]]\nname = "mcu"\ndevice = "pty:tty"\n'


async def settled(mcu, check, timeout: float = 2.0) -> list:
    """The MCU end's termios once *check* holds (the switch follows the OK)."""
    async with asyncio.timeout(timeout):
        while not check(attrs := mcu.line_settings()):
            await asyncio.sleep(0.01)
    return attrs


def speed(value: int):
    return lambda attrs: attrs[4] == value and attrs[5] == value


async def quiet(mcu) -> None:
    await mcu.command(b"ATE0", b"ATE0\r\n" + OK)


async def test_uart_cur_switches_after_the_ok(tmp_path, state_dir):
    async with running_gateway(tmp_path, config_text=CONFIG) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+UART_CUR?", b"+UART_CUR:115200,8,1,0,0\r\n" + OK)
        assert mcu.line_settings()[4] == termios.B115200
        await mcu.command(b"AT+UART_CUR=921600,8,1,0,0", OK)
        await settled(mcu, speed(termios.B921600))
        await mcu.command(b"AT+UART_CUR?", b"+UART_CUR:921600,8,1,0,0\r\n" + OK)
        # Not stored: the default is still the config's, and a restart goes back.
        await mcu.command(b"AT+UART_DEF?", b"+UART_DEF:115200,8,1,0,0\r\n" + OK)
        await mcu.command(b"AT+RST", OK + READY)
        await settled(mcu, speed(termios.B115200))
        assert not (state_dir / "mcu.json").exists()


async def test_uart_cur_data_bits_parity_stop_bits_and_flow(tmp_path, state_dir):
    async with running_gateway(tmp_path, config_text=CONFIG) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+UART_CUR=115200,7,3,2,3", OK)

        # Linux keeps a pty at 8 data bits without parity whatever it is told;
        # stop bits and RTS/CTS it carries (a real UART gets all of them).
        def two_stop_bits_rtscts(attrs) -> bool:
            return bool(attrs[2] & termios.CSTOPB) and bool(attrs[2] & termios.CRTSCTS)

        await settled(mcu, two_stop_bits_rtscts)
        await mcu.command(b"AT+UART_CUR?", b"+UART_CUR:115200,7,3,2,3\r\n" + OK)
        await mcu.command(b"AT+UART_CUR=115200,8,2,1,1", OK)  # 1.5 stop bits, odd, RTS only

        def no_rtscts(attrs) -> bool:  # RTS alone: the host driver has no such mode
            return bool(attrs[2] & termios.CSTOPB) and not attrs[2] & termios.CRTSCTS

        await settled(mcu, no_rtscts)
        await mcu.command(b"AT+UART_CUR?", b"+UART_CUR:115200,8,2,1,1\r\n" + OK)


@pytest.mark.parametrize("args", [
    b"79,8,1,0,0", b"5000001,8,1,0,0", b"115200,4,1,0,0", b"115200,9,1,0,0",
    b"115200,8,0,0,0", b"115200,8,4,0,0", b"115200,8,1,3,0", b"115200,8,1,0,4",
    b"115200,8,1,0", b"115200,8,1,0,0,0", b"", b"fast,8,1,0,0",
])
async def test_bad_uart_settings_change_nothing(tmp_path, state_dir, args):
    async with running_gateway(tmp_path, config_text=CONFIG) as (_, mcu):
        await quiet(mcu)
        for command in (b"AT+UART_CUR=", b"AT+UART_DEF=", b"AT+UART="):
            await mcu.command(command + args, ERROR)
        await asyncio.sleep(0.05)
        assert mcu.line_settings()[4] == termios.B115200
        await mcu.command(b"AT+UART_CUR?", b"+UART_CUR:115200,8,1,0,0\r\n" + OK)
        await mcu.command(b"AT+UART_DEF?", b"+UART_DEF:115200,8,1,0,0\r\n" + OK)


@pytest.mark.parametrize("command", [b"AT+UART_DEF", b"AT+UART"])
async def test_uart_def_survives_restart_and_daemon_restart(tmp_path, state_dir, command):
    async with running_gateway(tmp_path, config_text=CONFIG) as (_, mcu):
        await quiet(mcu)
        await mcu.command(command + b"=460800,8,1,0,1", OK)
        await settled(mcu, speed(termios.B460800))
        await mcu.command(b"AT+UART_DEF?", b"+UART_DEF:460800,8,1,0,1\r\n" + OK)
        await mcu.command(b"AT+RST", OK + READY)
        await quiet(mcu)
        await mcu.command(b"AT+UART_CUR?", b"+UART_CUR:460800,8,1,0,1\r\n" + OK)
    stored = json.loads((state_dir / "mcu.json").read_text())
    assert stored["uart"]["baudrate"] == 460800
    assert (state_dir / "mcu.json").stat().st_mode & 0o777 == 0o600
    # The next start boots at the stored rate, as a module powered on again.
    async with running_gateway(tmp_path, config_text=CONFIG) as (_, mcu):
        assert mcu.line_settings()[4] == termios.B460800
        await quiet(mcu)
        await mcu.command(b"AT+UART_CUR?", b"+UART_CUR:460800,8,1,0,1\r\n" + OK)
        # AT+RESTORE: erased, and ready comes at the config's settings.
        await mcu.command(b"AT+RESTORE", OK + READY)
        await settled(mcu, speed(termios.B115200))
        await mcu.command(b"AT+UART_DEF?", b"AT+UART_DEF?\r\n+UART_DEF:115200,8,1,0,0\r\n" + OK)
    assert json.loads((state_dir / "mcu.json").read_text()) == {}


async def test_a_broken_settings_file_is_a_factory_fresh_module(tmp_path, state_dir):
    state_dir.mkdir()
    (state_dir / "mcu.json").write_text("{not json")
    async with running_gateway(tmp_path, config_text=CONFIG) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+UART_DEF?", b"+UART_DEF:115200,8,1,0,0\r\n" + OK)
