"""The ESP-AT commands a firmware sends around its TCP/IP links (reference
esp-at-tcpip.md §3 names and §5): AT+CIPDOMAIN, AT+CIPDNS, AT+PING,
AT+CWSTATE, AT+CWLAP, AT+CWAUTOCONN, AT+CWHOSTNAME, AT+SYSSTORE, AT+GSLP,
AT+SLEEP, AT+CWQAP closing links. Names resolved are ``localhost`` (from
/etc/hosts) and literals; a label over 63 bytes fails without asking DNS.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gatewayd.links import icmp
from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
UNRESOLVABLE = b"a" * 64  # one label over 63 bytes: fails before any DNS query


def port_config(extra: str = "") -> str:
    return ('[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "esp-at"\n'
            'wifi_interface = "lo"\n' + extra)


async def join(mcu) -> None:
    await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await mcu.command(b'AT+CWJAP="espressif","1234567890"',
                      b"WIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)


async def test_cipdomain(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await join(mcu)
        await mcu.command(b'AT+CIPDOMAIN="localhost",2', b'+CIPDOMAIN:"127.0.0.1"\r\n' + OK)
        await mcu.command(b'AT+CIPDOMAIN="127.0.0.1"', b'+CIPDOMAIN:"127.0.0.1"\r\n' + OK)
        await mcu.command(b'AT+CIPDOMAIN="%s"' % UNRESOLVABLE, ERROR)
        await mcu.command(b'AT+CIPDOMAIN="localhost",3', ERROR)  # IPv6 is off
        await mcu.command(b'AT+CIPDOMAIN="localhost",4', ERROR)
        await mcu.command(b'AT+CIPDOMAIN=""', ERROR)


async def test_cipdns_reports_the_hosts_resolvers_and_never_writes_them(tmp_path):
    before = Path("/etc/resolv.conf").read_bytes()
    servers = [line.split()[1] for line in before.decode(errors="replace").splitlines()
               if line.startswith("nameserver") and ":" not in line.split()[1]][:3] \
        or ["208.67.222.222", "114.114.114.114", "8.8.8.8"]
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await join(mcu)
        shown = b"".join(b',"%s"' % s.encode() for s in servers)
        await mcu.command(b"AT+CIPDNS?", b"+CIPDNS:0" + shown + b"\r\n" + OK)
        await mcu.command(b'AT+CIPDNS=1,"1.1.1.1","9.9.9.9"', OK)
        await mcu.command(b"AT+CIPDNS?", b'+CIPDNS:1,"1.1.1.1","9.9.9.9"\r\n' + OK)
        await mcu.command(b'AT+CIPDNS=1,"1.1.1.1","1.1.1.1"', ERROR)
        await mcu.command(b'AT+CIPDNS=1,"not-an-ip"', ERROR)
        await mcu.command(b"AT+CIPDNS=1", OK)
        await mcu.command(b"AT+CIPDNS?", b'+CIPDNS:1,"208.67.222.222","114.114.114.114",'
                          b'"8.8.8.8"\r\n' + OK)
    assert Path("/etc/resolv.conf").read_bytes() == before


async def test_ping(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await join(mcu)
        await mcu.command(b'AT+PING="%s"' % UNRESOLVABLE, b"+PING:TIMEOUT\r\n" + ERROR)
        await mcu.command(b'AT+PING=""', ERROR)
        await mcu.send(b'AT+PING="127.0.0.1"\r\n')
        got = await mcu.read_until(OK if icmp.icmp_socket() else ERROR, timeout=3)
        if icmp.icmp_socket() is not None:  # ping_group_range admits us: a real echo
            assert got.startswith(b"+PING:") and got.endswith(b"\r\n" + OK)
            assert 1 <= int(got[6:got.index(b"\r")]) < 1000
        else:  # as a module that hears no reply
            assert got == b"+PING:TIMEOUT\r\n" + ERROR


async def test_cwstate_and_cwqap_closing_links(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b"AT+CWSTATE?", b'+CWSTATE:0,""\r\n' + OK)
        await mcu.command(b"AT+CWJAP?", OK)  # not connected: OK alone
        await mcu.command(b'AT+CWJAP="espressif","1234567890"',
                          b"WIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)
        await mcu.command(b"AT+CWSTATE?", b'+CWSTATE:2,"espressif"\r\n' + OK)
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await mcu.command(b'AT+CIPSTART="TCP","127.0.0.1",%d' % port, b"CONNECT\r\n" + OK)
            await mcu.command(b"AT+CWQAP", OK + b"CLOSED\r\nWIFI DISCONNECT\r\n")
        finally:
            server.close()
        await mcu.command(b"AT+CWSTATE?", b'+CWSTATE:4,"espressif"\r\n' + OK)
        await mcu.command(b"AT+CIPSTATUS", b"STATUS:5\r\n" + OK)


async def test_cwlap_lists_the_network_the_host_is_on(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await join(mcu)
        mac = Path("/sys/class/net/lo/address").read_text().strip()
        bssid = mac[:-2] + f"{(int(mac[-2:], 16) + 1) % 256:02x}"
        await mcu.command(b"AT+CWLAP", b'+CWLAP:(3,"espressif",-40,"%s",6,-1,-1,4,4,7,0)\r\n'
                          % bssid.encode() + OK)
        await mcu.command(b"AT+CWLAPOPT=0,6", OK)  # ssid and rssi only
        await mcu.command(b"AT+CWLAP", b'+CWLAP:("espressif",-40)\r\n' + OK)
        await mcu.command(b"AT+CWLAPOPT=0,6,-30", OK)  # a filter above the signal
        await mcu.command(b"AT+CWLAP", OK)
        await mcu.command(b"AT+CWMODE=2", OK)
        await mcu.command(b"AT+CWLAP", ERROR)


async def test_autoconnect_after_restart_and_cwautoconn(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await join(mcu)
        await mcu.command(b"AT+CWAUTOCONN?", b"+CWAUTOCONN:1" + OK)
        await mcu.command(b"AT+RST", OK)
        await mcu.expect(b"\r\nready\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n")
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b"AT+CWSTATE?", b'+CWSTATE:2,"espressif"\r\n' + OK)
        await mcu.command(b"AT+CWAUTOCONN=0", OK)
        await mcu.command(b"AT+RST", OK)
        await mcu.expect(b"\r\nready\r\n")
        await mcu.expect_silence(0.2)
        await mcu.command(b"AT+CWAUTOCONN?", b"AT+CWAUTOCONN?\r\n+CWAUTOCONN:0" + OK)
        await mcu.command(b"AT+RESTORE", b"AT+RESTORE\r\n" + OK)
        await mcu.expect(b"\r\nready\r\n")
        await mcu.expect_silence(0.2)  # the stored AP is gone


async def test_sysstore_0_keeps_the_join_out_of_the_state_file(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b"AT+SYSSTORE?", b"+SYSSTORE:1\r\n" + OK)
        await mcu.command(b"AT+SYSSTORE=0", OK)
        await mcu.command(b'AT+CWJAP="espressif","1234567890"',
                          b"WIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)
        await mcu.command(b"AT+RST", OK)
        await mcu.expect(b"\r\nready\r\n")
        await mcu.expect_silence(0.2)


async def test_cwhostname_and_sleep(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b"AT+CWHOSTNAME?", b"+CWHOSTNAME:espressif\r\n" + OK)
        await mcu.command(b'AT+CWHOSTNAME="plc-7"', OK)
        await mcu.command(b"AT+CWHOSTNAME?", b"+CWHOSTNAME:plc-7\r\n" + OK)
        await mcu.command(b'AT+CWHOSTNAME="' + b"h" * 33 + b'"', ERROR)
        await mcu.command(b"AT+SLEEP?", b"+SLEEP:1\r\n" + OK)
        await mcu.command(b"AT+SLEEP=0", OK)
        await mcu.command(b"AT+SLEEP?", b"+SLEEP:0\r\n" + OK)
        await mcu.command(b"AT+SLEEP=4", ERROR)
        await mcu.command(b"AT+CWMODE=3", OK)
        await mcu.command(b"AT+SLEEP=1", ERROR)  # not with a SoftAP


async def test_gslp_is_silent_for_its_time_then_ready(tmp_path):
    async with running_gateway(tmp_path, config_text=port_config()) as (_, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        started = time.monotonic()
        await mcu.command(b"AT+GSLP=400", OK)
        await mcu.send(b"AT\r\n")  # lost: the module sleeps
        await mcu.expect(b"\r\nready\r\n", timeout=3)
        assert time.monotonic() - started >= 0.4
        await mcu.command(b"AT", b"AT\r\n" + OK)
        await mcu.command(b"AT+GSLP=-1", b"AT+GSLP=-1\r\n" + ERROR)
