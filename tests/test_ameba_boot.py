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
