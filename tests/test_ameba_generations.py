"""Ameba firmware generations on a pty: the ATCMD 2.x bytes (the default) and
the Gen-1 compatibility profile (``ameba_generation = "gen1"``).

Expected bytes: shared/reference/ameba-wifi-network.md §0 (the three
generations; Gen-1 "no ``[$]`` URCs at all"), §3 (AT+WLCONN's
``+WLCONN:OK`` / ``+WLCONN:ERROR:%d`` and its own numbers, ``+WLSTATE:OK``,
``+WLRSSI:OK``), §4 (``+PING:OK``, AT+IPDOMAIN in place of AT+DNS), §5
(``+RST:OK``, ``+STATE:OK``) and §8 ("``+CMD:OK`` replies, no URCs", the rule
AT+WLDISCONN's form follows). A port whose ``wifi_interface`` is ``lo`` (no
default route there) stands for a host that is offline.
"""

from __future__ import annotations

import pytest

from gatewayd.dialects.ameba import generations, wifi
from gatewayd.dialects.base import AtError
from gatewayd.links import hostnet
from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
READY = b"ATCMD READY\r\n"
MAC = "00:e0:4c:b7:23:12"
HEAP = (b"HeapStats: \r\nTotal Heap:\t393216\r\nHeap Free Now:\t327680\r\n"
        b"Heap Used Now:\t65536\r\nHeap Used Max:\t98304\r\n")
STATE_NOT_JOINED = (b"WLAN0 Status: Running\r\n"
                    b"==============================\r\n"
                    b"WLAN0 Setting:\r\n"
                    b"==============================\r\n"
                    b"      MODE => STATION\r\n"
                    b"      SSID => \r\n"
                    b"     BSSID => 00:00:00:00:00:00\r\n"
                    b"   CHANNEL => 0\r\n"
                    b"  SECURITY => OPEN\r\n"
                    b"  PASSWORD => \r\n"
                    b"\r\n"
                    b"Interface (0)\r\n"
                    b"==============================\r\n"
                    b"MAC => 00:e0:4c:b7:23:12\r\n"
                    b"IP  => 0.0.0.0\r\n"
                    b"GW  => 0.0.0.0\r\n"
                    b"MSK  => 0.0.0.0\r\n\r\n")
RSSI_NOT_JOINED = b"rssi = -0\r\ndata rssi = -0\r\nbeacon rssi = -0\r\n"

online = pytest.mark.skipif(hostnet.default_interface() is None,
                            reason="the host has no default route")


def config(extra: str = "") -> str:
    return (f'[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n'
            f'wifi_mac = "{MAC}"\n{extra}')


GEN1 = 'ameba_generation = "gen1"\n'


def got_ip() -> bytes:
    iface = hostnet.default_interface()
    assert iface is not None
    return b'[$]wifi got ip:"%s"\r\n' % iface.address.encode()


@pytest.fixture
async def gen1(tmp_path):
    async with running_gateway(tmp_path, config_text=config(GEN1)) as (_, mcu):
        yield mcu


@pytest.fixture
async def gen1_offline(tmp_path):
    async with running_gateway(tmp_path, config_text=config(
            GEN1 + 'wifi_interface = "lo"\nameba_ping_results = true\n')) as (_, mcu):
        yield mcu


@pytest.fixture
async def gen2(tmp_path):
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        yield mcu


@pytest.fixture
async def gen2_offline(tmp_path):
    async with running_gateway(tmp_path, config_text=config('wifi_interface = "lo"\n')) \
            as (_, mcu):
        yield mcu


# -- 2.x, the default ------------------------------------------------------------


@online
async def test_2x_join_and_leave(gen2):
    await gen2.command(b"AT+WLCONN=ssid,MyWiFi,pw,password123",
                       b"[$]wifi connected\r\n" + got_ip() + OK)
    await gen2.command(b"AT+WLDISCONN", b"[$]wifi disconnected\r\n" + OK)


async def test_2x_final_lines(gen2):
    await gen2.command(b"AT+WLCONN", b"\r\nERROR: 1\r\n")
    await gen2.command(b"AT+WLCONN=ch,6", b"\r\nERROR: 1\r\n")
    await gen2.command(b"AT+WLSTATE", STATE_NOT_JOINED + OK)
    await gen2.command(b"AT+WLRSSI", RSSI_NOT_JOINED + OK)
    await gen2.command(b"AT+DNS=localhost", b"\r\n+DNS:127.0.0.1\r\n" + OK)
    await gen2.command(b"AT+STATE", HEAP + OK)
    await gen2.command(b"AT+RST", OK + READY)


async def test_2x_join_failure(gen2_offline):
    await gen2_offline.command(b"AT+WLRECONN=auto,0", OK)
    await gen2_offline.command(b"AT+WLCONN=ssid,MyWiFi,pw,password123",
                               b"[$]wifi connect failed\r\n\r\nERROR: 17\r\n")


async def test_2x_has_no_ipdomain(gen2):
    await gen2.send(b"AT+IPDOMAIN=localhost\r\n")  # a Gen-1 command: unknown, silence
    await gen2.expect_silence(0.3)
    await gen2.command(b"AT+TEST", OK)


# -- Gen-1 ---------------------------------------------------------------------------


@online
async def test_gen1_join_and_leave_without_events(gen1):
    await gen1.command(b"AT+WLCONN=ssid,MyWiFi,pw,password123", b"\r\n+WLCONN:OK\r\n")
    await gen1.command(b"AT+WLDISCONN", b"\r\n+WLDISCONN:OK\r\n")
    await gen1.command(b"AT+WLDISCONN", b"\r\n+WLDISCONN:OK\r\n")  # not joined: still OK


@pytest.mark.parametrize(("line", "expected"), [
    (b"AT+WLCONN", b"\r\n+WLCONN:ERROR:1\r\n"),                 # no parameters
    (b"AT+WLCONN=ssid,a,pw,b,ch,1,key_id,0,bssid,a4:1a:3a:0d:0f:35,ch",  # 11 fields
     b"\r\n+WLCONN:ERROR:1\r\n"),                                 # 2.x: 3 (argc)
    (b"AT+WLCONN=ssid,MyWiFi,color,blue", b"\r\n+WLCONN:ERROR:2\r\n"),  # bad key
    (b"AT+WLCONN=ch,6", b"\r\n+WLCONN:ERROR:3\r\n"),             # no SSID (2.x: 1)
])
async def test_gen1_wlconn_errors(gen1, line, expected):
    await gen1.command(line, expected)
    await gen1.command(b"AT+TEST", OK)  # not in the Gen-1 table: the 2.x OK


async def test_gen1_join_failure_without_events(gen1_offline):
    """Connect failed is Gen-1's 4 (2.x: 17), and neither the failure nor the
    background retries print ``[$]wifi …``."""
    await gen1_offline.command(b"AT+WLCONN=ssid,MyWiFi,pw,password123",
                               b"\r\n+WLCONN:ERROR:4\r\n")
    await gen1_offline.expect_silence(wifi.RECONNECT_INTERVAL + 1.0)  # a retry ran, silently
    await gen1_offline.command(b"AT+WLRECONN=auto,0", OK)


async def test_gen1_status_and_system_final_lines(gen1):
    await gen1.command(b"AT+WLSTATE", STATE_NOT_JOINED + b"\r\n+WLSTATE:OK\r\n")
    await gen1.command(b"AT+WLRSSI", RSSI_NOT_JOINED + b"\r\n+WLRSSI:OK\r\n")
    await gen1.command(b"AT+STATE", HEAP + b"\r\n+STATE:OK\r\n")
    await gen1.command(b"AT+RST", b"\r\n+RST:OK\r\n" + READY)


async def test_gen1_ping_ok_and_no_ping_events(gen1_offline):
    await gen1_offline.command(b"AT+PING=127.0.0.1,-n,1", b"\r\n+PING:OK\r\n", timeout=0.5)
    # ameba_ping_results is on, but Gen-1 has no [$][ping_test] lines.
    await gen1_offline.expect_silence(4.5)
    await gen1_offline.command(b"AT+PING", b"\r\n+PING:ERROR:1\r\n")


async def test_gen1_ipdomain_replaces_dns(gen1):
    await gen1.command(b"AT+IPDOMAIN=localhost",
                       b"\r\n+IPDOMAIN:127.0.0.1\r\n\r\n+IPDOMAIN:OK\r\n")
    await gen1.command(b"AT+IPDOMAIN", b"\r\n+IPDOMAIN:ERROR:1\r\n")
    await gen1.command(b"AT+IPDOMAIN=localhost,localhost", b"\r\n+IPDOMAIN:ERROR:1\r\n")
    await gen1.command(b"AT+IPDOMAIN=" + b"a" * 64 + b".example", b"\r\n+IPDOMAIN:ERROR:2\r\n")
    await gen1.send(b"AT+DNS=localhost\r\n")  # 2.x's command: unknown in Gen-1, silence
    await gen1.expect_silence(0.3)
    await gen1.command(b"AT+TEST", OK)


async def test_gen1_list_has_ipdomain_in_place_of_dns(gen1):
    await gen1.send(b"AT+LIST\r\n")
    reply = await gen1.read_until(OK)
    assert b"NETWORK AT command:\r\nAT+PING\r\nAT+IPERF\r\nAT+IPERF3\r\n" \
           b"AT+IPDOMAIN\r\nAT+QUERYDNSSRV\r\n" in reply
    assert b"AT+DNS\r\n" not in reply  # AT+LIST keeps the 2.x OK (not in the table)


@online
async def test_gen1_fast_connect_after_rst_is_silent(gen1):
    """The stored profile is rejoined after ATCMD READY, without the 2.x
    ``[$]wifi connected`` / ``got ip`` messages."""
    await gen1.command(b"AT+WLCONN=ssid,MyWiFi,pw,password123", b"\r\n+WLCONN:OK\r\n")
    await gen1.command(b"AT+RST", b"\r\n+RST:OK\r\n" + READY)
    await gen1.expect_silence(wifi.FAST_CONNECT_DELAY + 1.0)
    await gen1.command(b"AT+WLDISCONN", b"\r\n+WLDISCONN:OK\r\n")


# -- the table itself ------------------------------------------------------------------


def test_every_wifi_event_has_a_gen1_form():
    for message in (wifi.CONNECTED, wifi.CONNECT_FAILED_URC, wifi.DISCONNECTED,
                    wifi.GOT_IP % b"192.168.1.57", wifi.GOT_IP_TIMEOUT, wifi.RECONNECTING,
                    wifi.RECONNECT_DONE, b"[$][ping_test] min: 3 ms, max: 135 ms\r\n"):
        assert generations.gen1_event(message) is None, message
    # Socket and WebSocket messages are not Wi-Fi events: kept.
    kept = b"[$][WS][EVENT]:linkid:0, connected\r\n"
    assert generations.gen1_event(kept) == kept


def test_gen1_final_maps_only_ok_and_error():
    assert generations.gen1_final("+WLCONN", OK, None) == b"\r\n+WLCONN:OK\r\n"
    assert generations.gen1_final("+WLCONN", b"\r\nERROR: 17\r\n", AtError(17)) \
        == b"\r\n+WLCONN:ERROR:4\r\n"
    assert generations.gen1_final("+WLCONN", b"\r\nERROR: 4\r\n", AtError(4)) \
        == b"\r\n+WLCONN:ERROR:3\r\n"  # malloc: Gen-1's "no SSID or malloc"
    assert generations.gen1_final("+TEST", OK, None) == OK
    assert generations.gen1_final("+WLSTATE", b"other", None) == b"other"
