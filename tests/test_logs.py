"""Logs: JSON lines off a terminal, and secrets never reach them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gatewayd.logs import RateLimit, configure_logging, get_logger


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
    ("AT+WLCONN=ssid,home,pw,hunter2", "hunter2"),
    ("AT+WLSTARTAP=ssid,ap,ch,6,pw,hunter2,sec,wpa2", "hunter2"),
    ("  PASSWORD => hun,ter2\\r\\n", "ter2"),
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


def _journal_fields(datagram: bytes) -> dict[str, str]:
    """Decode sd_journal_send's native protocol (KEY=value lines, or KEY, a
    little-endian length and the raw value for values with newlines)."""
    fields, i = {}, 0
    while i < len(datagram):
        end = datagram.index(b"\n", i)
        line = datagram[i:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            i = end + 1
        else:
            key, size = line, int.from_bytes(datagram[end + 1 : end + 9], "little")
            value = datagram[end + 9 : end + 9 + size]
            i = end + 9 + size + 1
        fields[key.decode()] = value.decode()
    return fields


async def test_journald_gets_structured_fields(tmp_path):
    """Under systemd (JOURNAL_STREAM set) with systemd-python importable, log
    events go to the journal's native socket with PORT/DIALECT fields; a unix
    datagram socket at the journal's path stands in for journald."""
    import asyncio
    import socket

    from gatewayd.testing import GatewaydProcess, VirtualMcu

    try:
        __import__("systemd.journal")
    except ImportError:
        pytest.fail("systemd-python is missing: install libsystemd-dev and pkg-config, then "
                    "`make test` builds it (.ci/run does)")
    journal_dir = Path("/run/systemd/journal")
    assert not (journal_dir / "socket").exists(), "a real journald is running here"
    journal_dir.mkdir(parents=True, exist_ok=True)
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        receiver.bind(str(journal_dir / "socket"))
        receiver.setblocking(False)
        link = tmp_path / "tty"
        env = {"JOURNAL_STREAM": "8:12345", "INVOCATION_ID": "0" * 32}
        async with GatewaydProcess(["run", "--device", f"pty:{link}", "--log-level", "debug"],
                                   cwd=tmp_path, env=env) as proc:
            await proc.wait_for("READY=1")
            mcu = await VirtualMcu.open(link)
            await mcu.expect(b"\r\nready\r\n")  # input sent while it boots is dropped
            await mcu.command(b"AT", b"AT\r\n\r\nOK\r\n")
            await mcu.close()
            assert (await proc.stop())[0] == 0
        loop = asyncio.get_running_loop()
        messages = []
        async with asyncio.timeout(5):
            while not any(m.get("MESSAGE") == "at in" for m in messages):
                messages.append(_journal_fields(await loop.sock_recv(receiver, 65536)))
    finally:
        receiver.close()
        (journal_dir / "socket").unlink(missing_ok=True)
    [at_in] = [m for m in messages if m.get("MESSAGE") == "at in"]
    assert at_in["PORT"] == "mcu" and at_in["DIALECT"] == "esp-at" and at_in["LINE"] == "AT"
    assert at_in["PRIORITY"] == "7" and at_in["SYSLOG_IDENTIFIER"] == "gatewayd"


def test_rate_limit_counts_what_it_suppresses():
    now = [0.0]
    limit = RateLimit(burst=3, window=10.0, clock=lambda: now[0])
    assert [limit.allow("x") for _ in range(5)] == [0, 0, 0, None, None]
    assert limit.allow("y") == 0  # kinds are counted apart
    now[0] = 10.0
    assert limit.allow("x") == 2  # the first one of a new window reports the gap
    assert limit.allow("x") == 0


async def test_a_flood_of_unknown_commands_logs_a_few_lines(gateway, json_log):
    """A confused MCU repeating a command gatewayd lacks costs a few log lines
    per window, not one per line, and the port still answers."""
    from conftest import sent_in_full

    async with gateway(dialect="ameba") as (daemon, mcu):
        await sent_in_full(daemon, mcu, b"AT+NOSUCH=1\r\n" * 500)
        await mcu.command(b"AT+TEST", b"\r\nOK\r\n", timeout=10)
    unknown = [e for e in events(json_log) if e["event"] == "at unknown command"]
    assert len(unknown) == 10


async def test_link_open_keeps_the_port_field_for_the_gatewayd_port(tmp_path, json_log):
    """journald's PORT field names the gatewayd port; the peer's TCP port is
    peer_port (it once overwrote port)."""
    from conftest import port_of
    from websockets.asyncio.server import serve

    from gatewayd.testing import running_gateway

    async def idle(ws):
        await ws.wait_closed()

    config = '[[port]]\nname = "mcu"\ndevice = "pty:tty"\n'
    async with serve(idle, "127.0.0.1", 0) as server, \
            running_gateway(tmp_path, config_text=config) as (_, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n\r\nOK\r\n")
        peer_port = port_of(server)
        await mcu.command(b'AT+WSOPEN=0,"ws://127.0.0.1:%d/"' % peer_port,
                          b"+WS_CONNECTED:0\r\n\r\nOK\r\n")
    [opened] = [e for e in events(json_log) if e["event"] == "link open"]
    assert (opened["port"], opened["peer_port"]) == ("mcu", peer_port)


#: Spellings that once defeated the patterns: (line, secret, typed a byte at a time).
SPELLINGS = [
    (b'AT+CWJAP="home","hunter2"', "hunter2", True),  # picocom, a slow UART
    (b'AT+CWJAP="my\\"net","hunter2"', "hunter2", False),  # an escaped quote in the SSID
    (b'AT+WSOPEN=0,"ws://127.0.0.1:9/","a\\,b",1000,"Bearer s3cret"', "s3cret", False),
    (b'AT+WSOPEN=1,"ws://u:p@s3cret@127.0.0.1:9/"', "s3cret", False),  # a raw @ in userinfo
    (b'AT+CWJAP"home","hunter2"', "hunter2", False),  # no "=": names no command
]


@pytest.mark.parametrize(("line", "secret", "slowly"), SPELLINGS)
async def test_no_spelling_of_a_secret_reaches_the_debug_log(gateway, json_log, line,
                                                             secret, slowly):
    """`at in` is the command rebuilt from its parsed fields with the table's
    secret parameters hidden; `at out` (ESP-AT's echo) is redacted a whole
    line at a time, however the MCU's bytes arrive."""
    config = '[[port]]\nname = "mcu"\ndevice = "pty:tty"\nwifi_interface = "lo"\n'
    async with gateway(config_text=config) as (_, mcu):
        await (mcu.send_slowly if slowly else mcu.send)(line + b"\r\n")
        while (await mcu.read_until(b"\r\n", timeout=10)) not in (b"OK\r\n", b"ERROR\r\n"):
            pass  # up to the line's final result, whichever it is
    logged = events(json_log)
    assert secret not in json_log.getvalue()
    [at_in] = [e["line"] for e in logged if e["event"] == "at in" and "AT+" in e["line"]]
    assert "<redacted>" in at_in, at_in
    echo = "".join(e["data"] for e in logged if e["event"] == "at out")
    assert echo.count("AT+") == 1 and "<redacted>" in echo, echo


async def test_a_line_without_equals_is_logged_by_its_name_at_info(gateway, json_log):
    configure_logging("info", "json", json_log)
    async with gateway() as (_, mcu):
        await mcu.command(b'AT+CWJAP"home","hunter2"', b'AT+CWJAP"home","hunter2"\r\n'
                          b"\r\nERROR\r\n")
    [unknown] = [e for e in events(json_log) if e["event"] == "at unknown command"]
    assert unknown["command"] == "AT+CWJAP<redacted>" and "hunter2" not in json_log.getvalue()


@pytest.mark.parametrize(("dialect", "line", "shown"), [
    ("esp-at", b'AT+WSOPEN=0,"ws://h/","a\\,b",1000,"Bearer X"',
     b'AT+WSOPEN=0,"ws://h/","a\\,b",1000,<redacted>'),
    ("esp-at", b'AT+CWJAP="my\\"net","pw"', b'AT+CWJAP="my\\"net",<redacted>'),
    ("esp-at", b'AT+CWSAP="ap","pw",1,3', b'AT+CWSAP="ap",<redacted>,1,3'),
    ("esp-at", b'AT+CIPSSLCPSK="psk","hint"', b'AT+CIPSSLCPSK=<redacted>,"hint"'),
    ("esp-at", b'AT+CIPSSLCPSKHEX=1,"70736b","hint"', b'AT+CIPSSLCPSKHEX=1,<redacted>,"hint"'),
    ("esp-at", b'AT+CWJAP="home","hu', b'AT+CWJAP="home",<redacted>'),  # half typed
    ("esp-at", b"AT+CWJAP?", b"AT+CWJAP?"),
    ("esp-at", b"ATE0", b"ATE0"),
    ("ameba", b"AT+WLCONN=ssid,home,pw,hunter2", b"AT+WLCONN=ssid,home,pw,<redacted>"),
    ("ameba", b"AT+WLSTARTAP=ssid,ap,pw,hunter2,sec,wpa2",
     b"AT+WLSTARTAP=ssid,ap,pw,<redacted>,sec,wpa2"),
    ("ameba", b"AT+WSHEAD=0,17,X-Token: a\\,b", b"AT+WSHEAD=0,17,X-Token: <redacted>"),
    ("ameba", b"AT+WLDISCONN=pw", b"AT+WLDISCONN<redacted>"),  # "=" text it ignores
])
def test_dialects_rebuild_lines_without_their_secret_parameters(dialect, line, shown):
    from gatewayd.dialects.ameba import DIALECT as AMEBA
    from gatewayd.dialects.esp_at import DIALECT as ESP_AT

    assert {"esp-at": ESP_AT, "ameba": AMEBA}[dialect].loggable(line) == shown


async def test_header_blocks_are_hidden_from_the_raw_in_debug_line(gateway, json_log):
    """AT+WSHEAD's block is a header: its value is hidden whatever its name."""
    async with gateway(dialect="ameba") as (_, mcu):
        await mcu.command(b"AT+WSHEADRAW=0,15", b">>>", timeout=10)
        await mcu.send(b"X-Token: s3cret")
        await mcu.read_until(b"\r\nOK\r\n")
    [raw] = [e["data"] for e in events(json_log) if e["event"] == "at raw in"]
    assert raw == "X-Token: <redacted>" and "s3cret" not in json_log.getvalue()
