"""The initialisation commands ESP-AT host libraries send (reference
esp-at-tcpip.md §5 and §8.3), answered in the module's bytes while nothing on
the host changes."""

from __future__ import annotations

import pytest

from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"


def config(extra: str = 'wifi_interface = "lo"\n') -> str:
    return '[[port]]\nname = "mcu"\ndevice = "pty:tty"\n' + extra


@pytest.fixture
async def mcu(tmp_path):
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        yield mcu


async def test_rfpower_reports_the_level_an_esp32_applies(mcu):
    await mcu.command(b"AT+RFPOWER?", b"+RFPOWER:78,0,0,0\r\n" + OK)
    for setting, level in ((b"84", b"78"), (b"60", b"60"), (b"65", b"60"), (b"43", b"34"),
                           (b"40", b"34"), (b"44", b"44"), (b"77", b"72")):
        await mcu.command(b"AT+RFPOWER=" + setting, OK)
        await mcu.command(b"AT+RFPOWER?", b"+RFPOWER:" + level + b",0,0,0\r\n" + OK)


@pytest.mark.parametrize("line", [
    b"AT+RFPOWER=39", b"AT+RFPOWER=85", b"AT+RFPOWER=", b"AT+RFPOWER",
    b"AT+RFPOWER=78,0,0,0",  # Bluetooth LE powers: BLE is not initialised
    b"AT+RFPOWER=78,8", b"AT+RFPOWER=78,1,1,1,1",
])
async def test_rfpower_errors(mcu, line):
    await mcu.command(line, ERROR)
    await mcu.command(b"AT+RFPOWER?", b"+RFPOWER:78,0,0,0\r\n" + OK)


async def test_cwdhcp_bits(mcu):
    await mcu.command(b"AT+CWDHCP?", b"+CWDHCP:3\r\n" + OK)
    await mcu.command(b"AT+CWDHCP=0,2", OK)  # SoftAP DHCP off
    await mcu.command(b"AT+CWDHCP?", b"+CWDHCP:1\r\n" + OK)
    await mcu.command(b"AT+CWDHCP=0,1", OK)
    await mcu.command(b"AT+CWDHCP?", b"+CWDHCP:0\r\n" + OK)
    await mcu.command(b"AT+CWDHCP=1,1", OK)
    await mcu.command(b"AT+CWDHCP?", b"+CWDHCP:1\r\n" + OK)
    for line in (b"AT+CWDHCP=2,1", b"AT+CWDHCP=1,4", b"AT+CWDHCP=1", b"AT+CWDHCP=1,1,1"):
        await mcu.command(line, ERROR)
    await mcu.command(b"AT+CWDHCP?", b"+CWDHCP:1\r\n" + OK)


async def test_cwlapopt(mcu):
    await mcu.command(b"AT+CWLAPOPT=,31", OK)  # the document's example
    await mcu.command(b"AT+CWLAPOPT=,31,-100,1", OK)
    await mcu.command(b"AT+CWLAPOPT=1,2047", OK)
    for line in (b"AT+CWLAPOPT=,2048", b"AT+CWLAPOPT=,31,-101", b"AT+CWLAPOPT=,31,41",
                 b"AT+CWLAPOPT=,31,-100,65536", b"AT+CWLAPOPT=", b"AT+CWLAPOPT=2,31",
                 b"AT+CWLAPOPT?"):
        await mcu.command(line, ERROR)


async def test_station_and_softap_addresses(mcu):
    await mcu.command(b"AT+CIPSTAMAC?", b'+CIPSTAMAC:"00:00:00:00:00:00"\r\n' + OK)
    # Station only: there is no SoftAP to report.
    await mcu.command(b"AT+CIPAP?", ERROR)
    await mcu.command(b"AT+CIPAPMAC?", ERROR)
    await mcu.command(b"AT+CWMODE=3", OK)
    await mcu.command(b"AT+CIPAP?", b'+CIPAP:ip:"192.168.4.1"\r\n+CIPAP:gateway:"192.168.4.1"\r\n'
                      b'+CIPAP:netmask:"255.255.255.0"\r\n' + OK)
    await mcu.command(b"AT+CIPAPMAC?", b'+CIPAPMAC:"00:00:00:00:00:01"\r\n' + OK)
    await mcu.command(b'AT+CWJAP="espressif","1234567890"',
                      b"WIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)
    await mcu.command(b"AT+CIPSTA?", b'+CIPSTA:ip:"127.0.0.1"\r\n+CIPSTA:gateway:"0.0.0.0"\r\n'
                      b'+CIPSTA:netmask:"255.0.0.0"\r\n' + OK)
    await mcu.command(b"AT+CWMODE=2", OK)
    await mcu.command(b"AT+CIPAP?", b'+CIPAP:ip:"192.168.4.1"\r\n+CIPAP:gateway:"192.168.4.1"\r\n'
                      b'+CIPAP:netmask:"255.255.255.0"\r\n' + OK)


async def test_rf_power_is_not_kept_across_a_restart(mcu):
    """The document: RF power changes are not saved in flash."""
    await mcu.command(b"AT+RFPOWER=60", OK)
    await mcu.command(b"AT+RST", OK + b"\r\nready\r\n")
    await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await mcu.command(b"AT+RFPOWER?", b"+RFPOWER:78,0,0,0\r\n" + OK)
