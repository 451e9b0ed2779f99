"""The Wi-Fi and time commands an ESP-AT MCU sends before WebSocket (seed 003
steps 1-4), answered from the host's own network and clock without touching them."""

from __future__ import annotations

import re
import time

from gatewayd.links import hostnet
from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"


def config(extra: str = 'wifi_interface = "lo"\n') -> str:
    return '[[port]]\nname = "mcu"\ndevice = "pty:tty"\n' + extra


async def quiet(mcu) -> None:
    await mcu.command(b"ATE0", b"ATE0\r\n" + OK)


async def test_cwmode_set_and_query(tmp_path):
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+CWMODE?", b"+CWMODE:1\r\n" + OK)
        await mcu.command(b"AT+CWMODE=3", OK)
        await mcu.command(b"AT+CWMODE?", b"+CWMODE:3\r\n" + OK)
        await mcu.command(b"AT+CWMODE=3,0", OK)
        for line in (b"AT+CWMODE=4", b"AT+CWMODE=", b"AT+CWMODE=1,2", b"AT+CWMODE"):
            await mcu.command(line, ERROR)


async def test_cwjap_reports_the_host_interface(tmp_path):
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+CWJAP?", OK)  # "No AP" goes to the log UART only
        await mcu.command(b"AT+CIFSR", b'+CIFSR:STAIP,"0.0.0.0"\r\n'
                          b'+CIFSR:STAMAC,"00:00:00:00:00:00"\r\n' + OK)
        await mcu.command(b'AT+CWJAP="espressif","1234567890"',
                          b"WIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)
        await mcu.command(b"AT+CWJAP?",
                          b'+CWJAP:"espressif","00:00:00:00:00:00",1,-40,0,1,3,0,1\r\n' + OK)
        await mcu.command(b"AT+CIFSR", b'+CIFSR:STAIP,"127.0.0.1"\r\n'
                          b'+CIFSR:STAMAC,"00:00:00:00:00:00"\r\n' + OK)
        await mcu.command(b"AT+CIPSTA?", b'+CIPSTA:ip:"127.0.0.1"\r\n'
                          b'+CIPSTA:gateway:"0.0.0.0"\r\n+CIPSTA:netmask:"255.0.0.0"\r\n' + OK)
        # Joining again reports the implicit disconnect first.
        await mcu.command(b'AT+CWJAP="other","pw"',
                          b"WIFI DISCONNECT\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)
        await mcu.command(b"AT+CWQAP", OK + b"WIFI DISCONNECT\r\n")
        await mcu.command(b"AT+CWJAP?", OK)  # "No AP" goes to the log UART only


async def test_configured_ssid_is_reported(tmp_path):
    extra = 'wifi_interface = "lo"\nwifi_ssid = "plant-floor"\n'
    async with running_gateway(tmp_path, config_text=config(extra)) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b'AT+CWJAP="espressif","x"', b"WIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)
        await mcu.send(b"AT+CWJAP?\r\n")
        assert (await mcu.read_until(OK)).startswith(b'+CWJAP:"plant-floor",')


async def test_cwjap_without_host_network_fails_like_a_missing_ap(tmp_path):
    extra = 'wifi_interface = "gw-no-such0"\n'
    async with running_gateway(tmp_path, config_text=config(extra)) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b'AT+CWJAP="espressif","1234567890"', b"+CWJAP:3\r\n" + ERROR)
        await mcu.command(b"AT+CWJAP?", OK)  # "No AP" goes to the log UART only


async def test_cwjap_refused_when_station_mode_is_off(tmp_path):
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        await quiet(mcu)
        await mcu.command(b"AT+CWMODE=2", OK)
        await mcu.command(b'AT+CWJAP="espressif","1234567890"', ERROR)


async def test_default_interface_is_the_default_route(tmp_path):
    iface = hostnet.default_interface()
    async with running_gateway(tmp_path, config_text=config("")) as (_, mcu):
        await quiet(mcu)
        if iface is None:
            await mcu.command(b'AT+CWJAP="a","b"', b"+CWJAP:3\r\n" + ERROR)
        else:
            await mcu.command(b'AT+CWJAP="a","b"', b"WIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)
            await mcu.command(b"AT+CIFSR", b'+CIFSR:STAIP,"%s"\r\n+CIFSR:STAMAC,"%s"\r\n'
                              % (iface.address.encode(), iface.mac.encode()) + OK)


async def test_sntp_config_and_time(tmp_path):
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        await quiet(mcu)
        # Before SNTP is enabled the module's clock is at the epoch.
        await mcu.command(b"AT+CIPSNTPTIME?", b"+CIPSNTPTIME:Thu Jan  1 00:00:00 1970\r\n" + OK)
        await mcu.command(b'AT+CIPSNTPCFG=1,8,"cn.ntp.org.cn","ntp.sjtu.edu.cn"', OK)
        await mcu.command(b"AT+CIPSNTPCFG?",
                          b'+CIPSNTPCFG:1,8,"cn.ntp.org.cn","ntp.sjtu.edu.cn"\r\n' + OK)
        await mcu.command(b"AT+CIPSNTPCFG=1,-530", OK)  # UTC-05:30 in HHMM form
        await mcu.send(b"AT+CIPSNTPTIME?\r\n")
        reply = await mcu.read_until(OK)
        match = re.fullmatch(rb"\+CIPSNTPTIME:(.{24})\r\n\r\nOK\r\n", reply)
        assert match, reply
        shown = time.mktime(time.strptime(match.group(1).decode(), "%a %b %d %H:%M:%S %Y"))
        expected = time.mktime(time.gmtime(time.time() - 5.5 * 3600))
        assert abs(shown - expected) < 5
        for line in (b"AT+CIPSNTPCFG=2", b"AT+CIPSNTPCFG=1,1401", b"AT+CIPSNTPCFG=1,-1299",
                     b"AT+CIPSNTPCFG=1,860", b'AT+CIPSNTPCFG=1,8,"a","b","c","d"'):
            await mcu.command(line, ERROR)
