"""Ameba's remaining system commands end to end (reference
ameba-wifi-network.md §5): AT+UART, AT+STATE, AT+LOG, AT+CPULOAD, AT+TICKPS,
AT+RREG/AT+WREG, AT+OTACLEAR/AT+OTARECOVER.

AT+UART's line switch is read back from the pty's MCU end with termios, as
tests/test_esp_at_uart.py does; the stored rate lives in the port's state
file (``state_dir``)."""

from __future__ import annotations

import asyncio
import json
import re
import termios

import pytest

from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
READY = b"ATCMD READY\r\n"
CONFIG = '[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n'
HEAP = (b"HeapStats: \r\nTotal Heap:\t393216\r\nHeap Free Now:\t327680\r\n"
        b"Heap Used Now:\t65536\r\nHeap Used Max:\t98304\r\n")
CPU_TABLE = re.compile(rb"task name\tstate\tprio\tCPU%\n\r"
                       rb"at_cmd\tR\t5\t\d+\.\d\d\r\nIDLE\tR\t0\t\d+\.\d\d\r\n")


def error(code: int) -> bytes:
    return b"\r\nERROR: %d\r\n" % code


def speed(mcu) -> int:
    attrs = mcu.line_settings()
    assert attrs[4] == attrs[5]
    return attrs[4]


# -- AT+UART ------------------------------------------------------------------------------


async def test_uart_ok_arrives_at_the_new_rate(tmp_path, state_dir):
    async with running_gateway(tmp_path, config_text=CONFIG) as (_, mcu):
        assert speed(mcu) == termios.B115200
        await mcu.command(b"AT+UART=0,921600", OK)
        # Switched before the OK was written: the OK came at the new rate.
        assert speed(mcu) == termios.B921600
        await mcu.command(b"AT+TEST", OK)
        # Not stored: the module boots at the config's rate.
        await mcu.command(b"AT+RST", OK + READY)
        await asyncio.sleep(0.05)
        assert speed(mcu) == termios.B115200
    assert not (state_dir / "mcu.json").exists()


async def test_a_stored_uart_rate_survives_rst_and_a_daemon_restart(tmp_path, state_dir):
    async with running_gateway(tmp_path, config_text=CONFIG) as (_, mcu):
        await mcu.command(b"AT+UART=1,38400", OK)
        assert speed(mcu) == termios.B38400
        await mcu.command(b"AT+RST", OK + READY)
        await asyncio.sleep(0.05)
        assert speed(mcu) == termios.B38400
        await mcu.command(b"AT+TEST", OK)
    assert json.loads((state_dir / "mcu.json").read_text())["uart"]["baudrate"] == 38400
    async with running_gateway(tmp_path, config_text=CONFIG) as (_, mcu):
        assert speed(mcu) == termios.B38400  # the banner came at the stored rate
        await mcu.command(b"AT+UART=0,4800", OK)  # for now only
        assert speed(mcu) == termios.B4800
        await mcu.command(b"AT+RST", OK + READY)
        await asyncio.sleep(0.05)
        assert speed(mcu) == termios.B38400


@pytest.mark.parametrize("line", [
    b"AT+UART", b"AT+UART=", b"AT+UART=1", b"AT+UART=1,4799", b"AT+UART=1,6000001",
    b"AT+UART=1,fast", b"AT+UART=1,115200,8", b"AT+UART=1,115200,",
])
async def test_bad_uart_arguments_change_nothing(tmp_path, state_dir, line):
    async with running_gateway(tmp_path, config_text=CONFIG) as (_, mcu):
        await mcu.command(line, error(1))
        assert speed(mcu) == termios.B115200
        await mcu.command(b"AT+TEST", OK)
    assert not (state_dir / "mcu.json").exists()


# -- AT+STATE, AT+LOG ---------------------------------------------------------------------


async def test_state(ameba_mcu):
    await ameba_mcu.command(b"AT+STATE", HEAP + OK)
    await ameba_mcu.command(b"AT+STATE=whatever", HEAP + OK)  # arguments ignored


async def test_log_levels(ameba_mcu):
    await ameba_mcu.command(b"AT+LOG=0,WIFI", b"<WIFI> level is 4\r\n" + OK)
    await ameba_mcu.command(b"AT+LOG=1,WIFI,2", OK)
    await ameba_mcu.command(b"AT+LOG=0,WIFI", b"<WIFI> level is 2\r\n" + OK)
    await ameba_mcu.command(b"AT+LOG=0,AT", b"<AT> level is 4\r\n" + OK)
    await ameba_mcu.command(b"AT+LOG=2", OK)          # printed on the log UART only
    await ameba_mcu.command(b"AT+LOG=3", OK)          # cleared: the default again
    await ameba_mcu.command(b"AT+LOG=0,WIFI", b"<WIFI> level is 4\r\n" + OK)
    await ameba_mcu.command(b"AT+LOG=1,*,1", OK)      # every tag
    await ameba_mcu.command(b"AT+LOG=0,AT", b"<AT> level is 1\r\n" + OK)


@pytest.mark.parametrize(("line", "code"), [
    (b"AT+LOG", 1), (b"AT+LOG=", 1), (b"AT+LOG=0", 1), (b"AT+LOG=0,", 1),
    (b"AT+LOG=0,WIFI,1", 1), (b"AT+LOG=1,WIFI", 1), (b"AT+LOG=1,WIFI,2,", 1),
    (b"AT+LOG=1,WIFI,6", 2), (b"AT+LOG=1,WIFI,-1", 2), (b"AT+LOG=2,x", 1),
    (b"AT+LOG=3,", 1), (b"AT+LOG=4", 1),
])
async def test_log_errors(ameba_mcu, line, code):
    await ameba_mcu.command(line, error(code))
    await ameba_mcu.command(b"AT+TEST", OK)


# -- AT+CPULOAD -----------------------------------------------------------------------------


def mode_line(mode: int, interval: int = 1, count: int = -1) -> bytes:
    return b"current mode: %d time: %d(s) count: %d (-1 for infinite)\r\n" % (
        mode, interval, count)


async def test_cpuload_prints_a_table_now(ameba_mcu):
    await ameba_mcu.send(b"AT+CPULOAD=3\r\n")
    await ameba_mcu.expect(mode_line(3))
    table = await ameba_mcu.read_until(OK)
    assert CPU_TABLE.fullmatch(table[:-len(OK)]), table
    await ameba_mcu.command(b"AT+CPULOAD=2", mode_line(2) + OK)


async def test_cpuload_task_prints_count_tables_after_the_ok(ameba_mcu):
    await ameba_mcu.command(b"AT+CPULOAD=0,1,2", mode_line(0, 1, 2) + OK)
    for _ in range(2):
        table = await ameba_mcu.read_until(b"IDLE", timeout=2.5)
        table += await ameba_mcu.read_until(b"\r\n")
        assert CPU_TABLE.fullmatch(table), table
    await ameba_mcu.expect_silence(1.5)


async def test_cpuload_mode_1_stops_the_task(ameba_mcu):
    await ameba_mcu.command(b"AT+CPULOAD=0", mode_line(0) + OK)
    await ameba_mcu.command(b"AT+CPULOAD=1", mode_line(1) + OK)
    await ameba_mcu.expect_silence(1.5)


@pytest.mark.parametrize(("line", "reply"), [
    (b"AT+CPULOAD", error(1)),
    (b"AT+CPULOAD=0,1,2,3", error(1)),
    (b"AT+CPULOAD=3,1,2,", error(1)),
    (b"AT+CPULOAD=7", mode_line(7) + error(3)),
])
async def test_cpuload_errors(ameba_mcu, line, reply):
    await ameba_mcu.command(line, reply)
    await ameba_mcu.command(b"AT+TEST", OK)


# -- AT+TICKPS, AT+RREG, AT+WREG, AT+OTACLEAR, AT+OTARECOVER ----------------------------------


@pytest.mark.parametrize("line", [
    b"AT+TICKPS", b"AT+TICKPS=R", b"AT+TICKPS=A", b"AT+TICKPS=GET", b"AT+TICKPS=TYPE,PG",
    b"AT+TICKPS=DSLP,1000", b"AT+TICKPS=nonsense,,,",
])
async def test_tickps_answers_nothing(ameba_mcu, line):
    await ameba_mcu.send(line + b"\r\n")
    await ameba_mcu.expect_silence(0.2)
    await ameba_mcu.command(b"AT+TEST", OK)


@pytest.mark.parametrize(("line", "reply"), [
    (b"AT+RREG", error(1)),
    (b"AT+RREG=42008000", OK),
    (b"AT+RREG=42008000,16", OK),
    (b"AT+RREG=42008000,16,b", OK),
    (b"AT+RREG=42008000,16,b,x", error(1)),
    (b"AT+WREG", error(1)),
    (b"AT+WREG=42008000", error(1)),
    (b"AT+WREG=42008000,1", OK),
    (b"AT+WREG=42008000,1,", error(1)),
    (b"AT+OTACLEAR", OK),
    (b"AT+OTARECOVER", OK),
    (b"AT+OTACLEAR=1", OK),
])
async def test_registers_and_ota_signature(ameba_mcu, line, reply):
    await ameba_mcu.command(line, reply)
    await ameba_mcu.command(b"AT+TEST", OK)
