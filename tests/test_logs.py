"""Logs: JSON lines off a terminal, and secrets never reach them."""

from __future__ import annotations

import io
import json

import pytest

from gatewayd.logs import configure_logging, get_logger


@pytest.fixture
def json_log():
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    yield stream
    configure_logging("info", "json")


def events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_context(json_log):
    get_logger(port="mcu").info("hello", link=2)
    [event] = events(json_log)
    assert event["event"] == "hello" and event["port"] == "mcu" and event["link"] == 2
    assert event["level"] == "info" and "timestamp" in event


@pytest.mark.parametrize("text", [
    "AUTHORIZATION: Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg=",
    "Cookie: sessionId=abc789",
    r"AT+WSHEAD=1,24,Cookie: sessionId=abc789",
    "x\\r\\nProxy-Authorization: Bearer abc789\\r\\n",
])
def test_header_values_are_redacted_inside_any_text(json_log, text):
    get_logger().debug("at in", line=text)
    [event] = events(json_log)
    assert "abc789" not in event["line"] and "QTIzMzIy" not in event["line"]
    assert "<redacted>" in event["line"]


def test_secret_keys_are_redacted(json_log):
    get_logger().info("connect", password="hunter2", token="t0k", ssid="home")
    [event] = events(json_log)
    assert event["password"] == "<redacted>" and event["token"] == "<redacted>"
    assert event["ssid"] == "home"


def test_level_filters(json_log):
    configure_logging("warning", "json", json_log)
    get_logger().info("quiet")
    get_logger().warning("loud")
    assert [e["event"] for e in events(json_log)] == ["loud"]


@pytest.mark.parametrize(("text", "secret"), [
    ('AT+CWJAP="espressif","1234567890"', "1234567890"),
    ('AT+CWJAP="espressif","1234567890"\\r\\nWIFI CONNECTED', "1234567890"),
    ('AT+CWJAP=,"p\\\\"w"', 'p\\\\"w'),
    ('AT+WSOPEN=0,"wss://h:1/p","chat",5000,"Bearer s3cret"', "s3cret"),
    ('AT+WSOPEN=0,"ws://user:pa55@127.0.0.1:80"', "pa55"),
])
def test_credentials_in_at_lines_and_echo_are_redacted(json_log, text, secret):
    get_logger().debug("at out", data=text)
    [event] = events(json_log)
    assert secret not in event["data"] and "<redacted>" in event["data"], event["data"]


async def test_cwjap_password_never_reaches_the_debug_log(gateway, json_log):
    config = '[[port]]\nname = "mcu"\ndevice = "pty:tty"\nwifi_interface = "lo"\n'
    async with gateway(config_text=config) as (_, mcu):
        await mcu.send(b'AT+CWJAP="home","hunter2"\r\n')
        await mcu.read_until(b"\r\nOK\r\n")
    out = json_log.getvalue()
    assert '"at in"' in out and "hunter2" not in out
