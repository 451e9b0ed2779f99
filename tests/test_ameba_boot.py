"""The Ameba start-up conversation across restarts: fast-connect (reference
ameba-wifi-network.md §3 AT+WLRECONN, §6, transcript T2) and what survives
AT+RST and a daemon restart (§6, ameba-at-behaviour.md §6).

The state file (``state_dir``) stands for the module's flash. Joins are
decided from the host's own network, as in tests/test_ameba_wifi.py: the
``online`` tests need a default route, and a port whose ``wifi_interface``
is ``lo`` stands for a host that is offline.
"""

from __future__ import annotations

import json
import termios

import pytest

from gatewayd.links import hostnet
from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
READY = b"ATCMD READY\r\n"
CONNECTED = b"[$]wifi connected\r\n"
#: AT+WLCONN's join of T1, and the profile the state file keeps for it.
JOIN = b"AT+WLCONN=ssid,MyWiFi,pw,password123"
PROFILE = {"ssid": "MyWiFi", "password": "password123", "bssid": None, "key_id": None,
           "channel": 0}
#: Fast-connect comes about 1 s after the banner; a bounded wait around it.
REJOIN_WITHIN = 3.0

online = pytest.mark.skipif(hostnet.default_interface() is None,
                            reason="the host has no default route")


def config(extra: str = "") -> str:
    return f'[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n{extra}'


def got_ip() -> bytes:
    iface = hostnet.default_interface()
    assert iface is not None
    return b'[$]wifi got ip:"%s"\r\n' % iface.address.encode()


def stored(state_dir) -> dict:
    path = state_dir / "mcu.json"
    return json.loads(path.read_text()) if path.exists() else {}


@online
async def test_fast_connect_after_rst_and_daemon_restart(tmp_path, state_dir):
    """T2: after ATCMD READY the module rejoins by itself."""
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        await mcu.expect_silence(1.5)  # nothing stored yet: no rejoin
        await mcu.command(JOIN, CONNECTED + got_ip() + OK)
        assert stored(state_dir)["ameba_wlan_data"] == PROFILE
        await mcu.command(b"AT+RST", OK + READY)
        await mcu.expect_silence(0.5)
        await mcu.expect(CONNECTED + got_ip(), timeout=REJOIN_WITHIN)
        await mcu.command(b"AT+TEST", OK)
        await mcu.send(b"AT+WLSTATE\r\n")
        state = await mcu.read_until(b"\r\n\r\n" + OK)
        assert b"      SSID => MyWiFi\r\n" in state
        assert b"  PASSWORD => password123\r\n" in state
    assert (state_dir / "mcu.json").stat().st_mode & 0o777 == 0o600
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        await mcu.expect(CONNECTED + got_ip(), timeout=REJOIN_WITHIN)
        await mcu.command(b"AT+TEST", OK)


@online
async def test_a_wlconn_before_the_rejoin_takes_over(tmp_path, state_dir):
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        await mcu.command(JOIN, CONNECTED + got_ip() + OK)
        await mcu.command(b"AT+RST", OK + READY)
        await mcu.command(b"AT+WLCONN=ssid,Other", CONNECTED + got_ip() + OK)
        await mcu.expect_silence(1.5)  # the pending rejoin was cancelled
        assert stored(state_dir)["ameba_wlan_data"]["ssid"] == "Other"
        await mcu.command(b"AT+WLDISCONN", b"[$]wifi disconnected\r\n" + OK)
        await mcu.command(b"AT+RST", OK + READY)
        await mcu.command(b"AT+WLDISCONN", OK)  # before the rejoin: cancels it
        await mcu.expect_silence(1.5)


@online
async def test_fast_0_erases_the_profile(tmp_path, state_dir):
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        await mcu.command(JOIN, CONNECTED + got_ip() + OK)
        await mcu.command(b"AT+WLRECONN=fast,0", OK)
        assert "ameba_wlan_data" not in stored(state_dir)
        # Off until fast,1 or the next boot: this join is not stored either.
        await mcu.command(JOIN, CONNECTED + got_ip() + OK)
        assert "ameba_wlan_data" not in stored(state_dir)
        await mcu.command(b"AT+RST", OK + READY)
        await mcu.expect_silence(1.5)
        # At boot fast-connect is on again: the next join is stored.
        await mcu.command(JOIN, CONNECTED + got_ip() + OK)
        assert stored(state_dir)["ameba_wlan_data"] == PROFILE
        await mcu.command(b"AT+WLRECONN=fast,0", OK)
        await mcu.command(b"AT+WLRECONN=fast,1", OK)
        await mcu.command(JOIN, CONNECTED + got_ip() + OK)
        assert stored(state_dir)["ameba_wlan_data"] == PROFILE


@online
async def test_a_failed_join_stores_nothing_and_auto_0_keeps_the_profile(tmp_path, state_dir):
    networks = 'wifi_networks = [{ssid = "MyWiFi", password = "password123"}]\n'
    async with running_gateway(tmp_path, config_text=config(networks)) as (_, mcu):
        await mcu.command(b"AT+WLRECONN=auto,0", OK)
        await mcu.command(b"AT+WLCONN=ssid,MyWiFi,pw,wrong",
                          b"[$]wifi connect failed\r\n\r\nERROR: 17\r\n")
        assert "ameba_wlan_data" not in stored(state_dir)
        await mcu.command(JOIN, CONNECTED + got_ip() + OK)
        await mcu.command(b"AT+WLRECONN=auto,0", OK)  # RAM only; the profile stays
        assert stored(state_dir)["ameba_wlan_data"] == PROFILE


async def test_fast_connect_on_an_offline_host_fails_then_retries(tmp_path, state_dir):
    state_dir.mkdir()
    (state_dir / "mcu.json").write_text(json.dumps({"ameba_wlan_data": PROFILE}))
    async with running_gateway(tmp_path, config_text=config('wifi_interface = "lo"\n')) \
            as (_, mcu):
        await mcu.expect(b"[$]wifi connect failed\r\n", timeout=REJOIN_WITHIN)
        # Auto-reconnect is on at boot: a retry 5 s later.
        await mcu.expect(b"[$]wifi reconnecting\r\n[$]wifi connect failed\r\n", timeout=7.0)
        await mcu.command(b"AT+WLRECONN=auto,0", OK)


@pytest.mark.parametrize("profile", [
    "not a dict", {"ssid": None, "bssid": None}, {"ssid": 5}, {"ssid": "x", "key_id": "0"},
    {"ssid": "\u20ac"},
])
async def test_a_broken_profile_is_no_profile(tmp_path, state_dir, profile):
    state_dir.mkdir()
    (state_dir / "mcu.json").write_text(json.dumps({"ameba_wlan_data": profile}))
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        await mcu.expect_silence(1.5)
        await mcu.command(b"AT+TEST", OK)


# -- reference §6: what survives AT+RST and a daemon restart ------------------------------

#: Queries whose answers are RAM state: each is captured at boot, changed, and
#: must be back after AT+RST (static IP, DNS, SNTP, log levels, WS and socket
#: settings; ameba-at-behaviour.md §6 for the last two).
RAM_QUERIES = (b"AT+QUERYDNSSRV", b"AT+SNTPQUERY", b"AT+LOG=0,WIFI", b"AT+WSQUERY=0",
               b"AT+SKTQUERY")
RAM_SETTINGS = (b"AT+SETDNSSRV=9.9.9.9", b"AT+SNTPCFG=1,530,60,time.example",
                b"AT+LOG=1,WIFI,1", b"AT+WSCFG=0,30,60", b"AT+SKTCFG=1000,1000,1,1,60,10,3")
NETWORKS = 'wifi_networks = [{ssid = "MyWiFi", password = "password123"}]\n'


async def answers(mcu, queries=RAM_QUERIES) -> list[bytes]:
    replies = []
    for query in queries:
        await mcu.send(query + b"\r\n")
        replies.append(await mcu.read_until(OK))
    return replies


def baudrate(mcu) -> int:
    return mcu.line_settings()[4]


@online
async def test_what_survives_a_restart(tmp_path, state_dir):
    """§6 row by row: the fast-connect profile and the stored baud rate
    survive AT+RST and a daemon restart; the link, addresses, static IP,
    auto-reconnect off, DNS servers, SNTP, power save, log levels (and the WS
    and socket settings, the CPU statistics task) do not."""
    async with running_gateway(tmp_path, config_text=config(NETWORKS)) as (_, mcu):
        defaults = await answers(mcu)
        for line in RAM_SETTINGS:
            await mcu.command(line, OK)
        changed = await answers(mcu)
        assert all(a != b for a, b in zip(defaults, changed, strict=True)), changed
        await mcu.command(b"AT+UART=1,38400", OK)
        await mcu.command(b"AT+WLPS=lps,0,ips,0", OK)           # no query: RAM, reset
        await mcu.command(b"AT+WLRECONN=auto,0", OK)
        await mcu.command(b"AT+WLSTATICIP=192.168.1.200,192.168.1.1,255.255.255.0", OK)
        await mcu.command(JOIN, CONNECTED + OK)                  # static IP: no got ip
        await mcu.command(b"AT+CPULOAD=0,1", b"current mode: 0 time: 1(s) count: -1"
                          b" (-1 for infinite)\r\n" + OK)
        await mcu.read_until(b"IDLE", timeout=2.5)
        await mcu.read_until(b"\r\n")

        await mcu.command(b"AT+RST", OK + READY)
        assert baudrate(mcu) == termios.B38400                   # stored: kept
        # The link went; the profile rejoins, by DHCP (the static IP is gone).
        await mcu.expect(CONNECTED + got_ip(), timeout=REJOIN_WITHIN)
        assert await answers(mcu) == defaults                    # RAM state: reset
        await mcu.expect_silence(1.5)                            # no CPU tables
        # Auto-reconnect is on again: a failed join retries 5 s later.
        await mcu.command(b"AT+WLCONN=ssid,MyWiFi,pw,wrong",
                          b"[$]wifi connect failed\r\n\r\nERROR: 17\r\n")
        await mcu.expect(b"[$]wifi reconnecting\r\n[$]wifi connect failed\r\n", timeout=7.0)
        await mcu.command(b"AT+WLRECONN=auto,0", OK)
        assert stored(state_dir)["ameba_wlan_data"] == PROFILE   # the failure stored nothing

    async with running_gateway(tmp_path, config_text=config(NETWORKS)) as (_, mcu):
        assert baudrate(mcu) == termios.B38400
        await mcu.expect(CONNECTED + got_ip(), timeout=REJOIN_WITHIN)
        assert await answers(mcu) == defaults
        # fast,0 erases the profile: the next boots stay unjoined.
        await mcu.command(b"AT+WLRECONN=fast,0", OK)
        await mcu.command(b"AT+RST", OK + READY)
        await mcu.expect_silence(1.5)
        await mcu.send(b"AT+WLSTATE\r\n")
        assert b"      SSID => \r\n" in await mcu.read_until(b"\r\n\r\n" + OK)

    async with running_gateway(tmp_path, config_text=config(NETWORKS)) as (_, mcu):
        assert baudrate(mcu) == termios.B38400
        await mcu.expect_silence(1.5)
    assert set(stored(state_dir)) == {"uart"}


@online
async def test_t2_boot_with_a_stored_profile_then_websocket(tmp_path, state_dir):
    """Transcript T2 byte for byte: the module rejoins from its stored profile,
    then the MCU opens its hard-coded ``echo.example.com`` (routed to a local
    echo: the name is never resolved) and gets its message back."""
    from test_routes import recording_ws_server

    async with recording_ws_server() as (port, seen):
        text = config(f'ameba_ws_data_opcode = true\n[[route]]\n'
                      f'match = "ws://echo.example.com/*"\nto = "ws://127.0.0.1:{port}/"\n')
        async with running_gateway(tmp_path, config_text=text) as (_, mcu):
            await mcu.command(JOIN, CONNECTED + got_ip() + OK)
        async with running_gateway(tmp_path, config_text=text) as (_, mcu):  # the next boot
            await mcu.expect(CONNECTED + got_ip(), timeout=REJOIN_WITHIN)
            await mcu.command(b"AT+TEST", OK)
            await mcu.send(b"AT+WLSTATE\r\n")
            state = await mcu.read_until(b"\r\n\r\n" + OK)
            assert b"      SSID => MyWiFi\r\n" in state
            await mcu.command(b"AT+WSCFG=0,30,120", OK)
            await mcu.command(b"AT+WSCONN=0,echo.example.com,/,80,1",
                              b"[$][WS][EVENT]:linkid:0, connected\r\n" + OK)
            await mcu.command(b"AT+WSSEND=0,5,,,hello",
                              OK + b"[$][WS][DATA][0][1][5]:hello\r\n")
    assert seen[0][0] == "/"
