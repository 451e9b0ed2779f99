"""The example plugin in a real gatewayd: an ESP-AT port on a pty, a virtual
MCU, and a websockets server on 127.0.0.1. The MCU's host names are in no
hosts file: a link that reaches the server was sent there by a [[route]] rule."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import EXTRA, installed, recording_ws_server

from gatewayd.plugin.manager import load_plugins
from gatewayd.testing import running_gateway

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
PROMPT = b"\r\nOK\r\n\r\n>"
SEND_OK = b"\r\nSEND OK\r\n"


def config(extra: str = "") -> str:
    # wifi_interface = "lo": the station "joins" on the loopback interface.
    return ('[[port]]\nname = "line-3"\ndevice = "pty:ttyAT0"\ndialect = "esp-at"\n'
            'wifi_interface = "lo"\n\n' + extra)


EXAMPLE = '[plugin.example]\ndeny_hosts = ["blocked.example.com", "*.tracker.example"]\n'


async def station_up(mcu) -> None:
    await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await mcu.command(b"AT+CWMODE=1", OK)
    await mcu.command(b'AT+CWJAP="espressif","1234567890"',
                      b"WIFI CONNECTED\r\nWIFI GOT IP\r\n" + OK)


async def test_ws_links_carry_their_port_and_rules_still_decide(tmp_path):
    async with recording_ws_server() as (port, seen):
        routes = (f'[[route]]\nmatch = "ws://old-cloud.example.com/*"\n'
                  f'to = "ws://127.0.0.1:{port}/v2/"\n')
        async with running_gateway(tmp_path, config_text=config(EXAMPLE + routes),
                                   extra_plugins=EXTRA) as (daemon, mcu):
            await station_up(mcu)
            await mcu.command(b'AT+WSOPEN=0,"ws://127.0.0.1:%d/direct"' % port,
                              b"+WS_CONNECTED:0\r\n" + OK)
            await mcu.command(b'AT+WSOPEN=1,"ws://old-cloud.example.com/feed"',
                              b"+WS_CONNECTED:1\r\n" + OK)
            await mcu.command(b"AT+WSSEND=1,4", PROMPT)
            await mcu.send(b"ping")
            await mcu.expect(SEND_OK + b"+WS_DATA:1,4,ping\r\n")
            # The header is not a route: the rule that moved link 1 still decided it.
            assert daemon.router.counts[("0", "rewritten")] == 1
    assert [path for path, _ in seen] == ["/direct", "/v2/feed"]
    assert [headers.get("X-Gatewayd-Port") for _, headers in seen] == ["line-3", "line-3"]


async def test_listed_hosts_are_refused_before_and_after_the_rules(tmp_path):
    routes = '[[route]]\nmatch = "ws://moved.example.com/*"\nto = "ws://a.tracker.example/"\n'
    async with running_gateway(tmp_path, config_text=config(EXAMPLE + routes),
                               extra_plugins=EXTRA) as (daemon, mcu):
        await station_up(mcu)
        await mcu.command(b'AT+WSOPEN=0,"ws://blocked.example.com/"',
                          b"+WS_DISCONNECTED:0\r\n" + ERROR)
        await mcu.command(b'AT+WSOPEN=1,"ws://moved.example.com/x"',
                          b"+WS_DISCONNECTED:1\r\n" + ERROR)
        await mcu.command(b'AT+CIPSTART="TCP","BLOCKED.example.com",80', ERROR)
        assert daemon.router.counts[("plugin example", "denied")] == 3


async def test_without_its_table_the_plugin_does_nothing(tmp_path):
    async with recording_ws_server() as (port, seen), \
            running_gateway(tmp_path, config_text=config(), extra_plugins=EXTRA) as (_, mcu):
        await station_up(mcu)
        await mcu.command(b'AT+WSOPEN=0,"ws://127.0.0.1:%d/"' % port,
                          b"+WS_CONNECTED:0\r\n" + OK)
    assert "X-Gatewayd-Port" not in seen[0][1]


async def test_an_empty_header_name_sends_no_header(tmp_path):
    async with recording_ws_server() as (port, seen):
        text = config('[plugin.example]\nheader = ""\n')
        async with running_gateway(tmp_path, config_text=text, extra_plugins=EXTRA) as (_, mcu):
            await station_up(mcu)
            await mcu.command(b'AT+WSOPEN=0,"ws://127.0.0.1:%d/"' % port,
                              b"+WS_CONNECTED:0\r\n" + OK)
    assert "X-Gatewayd-Port" not in seen[0][1]


def test_wrong_keys_are_reported_with_their_key_paths():
    plugins = load_plugins(*EXTRA)
    assert plugins.configure({"example": {"deny_hosts": ["ok.example.com"]}}) == []
    assert plugins.configure({"example": {"header": 7, "deny_hosts": ["", 3], "colour": 1}}) == [
        ("plugin.example.colour", "unknown key (known: deny_hosts, header)"),
        ("plugin.example.header", "must be a string, not int"),
        ("plugin.example.deny_hosts.0", "'' is not a host name"),
        ("plugin.example.deny_hosts.1", "3 is not a host name"),
    ]


@pytest.mark.skipif(not installed(), reason="check-config loads only installed plugins")
def test_check_config_reports_the_plugins_problems(tmp_path):
    file = tmp_path / "gatewayd.toml"
    file.write_text(config('[plugin.example]\ndeny_hosts = "blocked.example.com"\n'))
    result = subprocess.run([sys.executable, "-m", "gatewayd", "check-config", str(file)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == f"{file}: plugin.example.deny_hosts: must be a list of host names\n"
    file.write_text(config(EXAMPLE))
    result = subprocess.run([sys.executable, "-m", "gatewayd", "check-config", str(file)],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, f"{file}: ok\n"), result.stderr
