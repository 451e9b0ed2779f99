"""ESP-AT basic commands end to end: a virtual MCU on gatewayd's pty.

Expected bytes are those of shared/reference/esp-at-behaviour.md §5.
"""

from __future__ import annotations

import pytest

from gatewayd import __version__

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
#: AT+GMR of gatewayd, in the four-line form of an ESP-AT 4.1.1 build.
GMR_LINES = (
    b"AT version:4.1.1.0(gatewayd-%s - ESP32 - Nov 22 2026 00:00:00)\r\n"
    b"SDK version:v5.0.8-gatewayd\r\n"
    b"compile time(gatewayd):Nov 22 2026 00:00:00\r\n"
    b"Bin version:4.1.1(gatewayd)\r\n" % __version__.encode()
)


async def test_at_is_echoed_then_ok(esp_at_mcu):
    await esp_at_mcu.command(b"AT", b"AT\r\n" + OK)


async def test_lowercase_at_works(esp_at_mcu):
    await esp_at_mcu.command(b"at+gmr", b"at+gmr\r\n" + GMR_LINES + OK)


async def test_typed_one_byte_at_a_time(esp_at_mcu):
    await esp_at_mcu.send_slowly(b"AT\r\n", gap=0.002)
    await esp_at_mcu.expect(b"AT\r\n" + OK)


async def test_ate0_stops_echo_and_ate1_restores_it(esp_at_mcu):
    await esp_at_mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await esp_at_mcu.command(b"AT", OK)
    await esp_at_mcu.command(b"ATE1", OK)
    await esp_at_mcu.command(b"AT", b"AT\r\n" + OK)


async def test_gmr_four_lines(esp_at_mcu):
    await esp_at_mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await esp_at_mcu.command(b"AT+GMR", GMR_LINES + OK)
    lines = GMR_LINES.split(b"\r\n")[:-1]
    assert len(lines) == 4
    assert lines[0].startswith(b"AT version:")
    assert lines[1].startswith(b"SDK version:")
    assert lines[2].startswith(b"compile time(")
    assert lines[3].startswith(b"Bin version:")


async def test_rst_answers_ok_then_ready_and_restores_echo(esp_at_mcu):
    await esp_at_mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await esp_at_mcu.command(b"AT+RST", OK + b"\r\nready\r\n")
    await esp_at_mcu.command(b"AT", b"AT\r\n" + OK)


async def test_rst_resets_syslog(esp_at_mcu):
    await esp_at_mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await esp_at_mcu.command(b"AT+SYSLOG=1", OK)
    await esp_at_mcu.command(b"AT+RST", OK + b"\r\nready\r\n")
    await esp_at_mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await esp_at_mcu.command(b"AT+SYSLOG?", b"+SYSLOG:0\r\n" + OK)


async def test_cmd_query_lists_every_command_with_its_forms(esp_at_mcu):
    await esp_at_mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await esp_at_mcu.send(b"AT+CMD?\r\n")
    listing = await esp_at_mcu.read_until(OK)
    lines = listing[: -len(OK)].split(b"\r\n")[:-1]
    assert lines[0] == b'+CMD:0,"AT",0,0,0,1'
    assert b'+CMD:5,"AT+CMD",0,1,0,0' in lines
    assert b'+CMD:6,"AT+SYSLOG",0,1,1,0' in lines
    assert [int(line.split(b",")[0][5:]) for line in lines] == list(range(len(lines)))


async def test_syslog_adds_err_code_lines(esp_at_mcu):
    mcu = esp_at_mcu
    await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await mcu.command(b"AT+SYSLOG?", b"+SYSLOG:0\r\n" + OK)
    await mcu.command(b"AT+NOSUCH", ERROR)
    await mcu.command(b"AT+SYSLOG=1", OK)
    await mcu.command(b"AT+SYSLOG?", b"+SYSLOG:1\r\n" + OK)
    await mcu.command(b"AT+NOSUCH", b"ERR CODE:0x01090000\r\n" + ERROR)
    # A parameter that fails to parse names its index.
    await mcu.command(b"AT+SYSLOG=x", b"ERR CODE:0x01080000\r\n" + ERROR)
    # A handler's own range check prints no code.
    await mcu.command(b"AT+SYSLOG=2", ERROR)
    await mcu.command(b"AT+SYSLOG=0", OK)
    await mcu.command(b"AT+NOSUCH", ERROR)


@pytest.mark.parametrize("line", [
    b"",                 # a bare CRLF is parsed as a command
    b"AT+NOSUCH",        # unknown
    b"XYZ",              # not AT at all
    b"AT+GMR?",          # known command, no query handler
    b"AT+GMR=1",         # no set handler
    b"AT+CMD",           # no execute handler
    b"AT+SYSLOG=?",      # no test handler
    b"AT+SYSLOG=2",      # out of range
    b"AT+SYSLOG=-1",
    b"AT+SYSLOG=1,1",    # too many parameters
    b"AT+SYSLOG=",       # required parameter omitted
    b"AT+SYSLOG=\"1\"",  # a string where an integer belongs
    b"AT+SYSLOG=99999999999",  # overflow
    b"AT+GMR?x",         # junk after the form
    b"AT\xff\xfe",
])
async def test_malformed_commands_get_error_and_session_stays_usable(esp_at_mcu, line):
    await esp_at_mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await esp_at_mcu.command(line, ERROR)
    await esp_at_mcu.command(b"AT", OK)


async def test_hex_parameter_accepted(esp_at_mcu):
    await esp_at_mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await esp_at_mcu.command(b"AT+SYSLOG=0x1", OK)
    await esp_at_mcu.command(b"AT+SYSLOG?", b"+SYSLOG:1\r\n" + OK)


async def test_overlong_line_gets_error_once(esp_at_mcu):
    await esp_at_mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await esp_at_mcu.command(b"AT+SYSLOG=1", OK)
    await esp_at_mcu.command(b"AT" + b"A" * 252, OK.replace(b"OK", b"ERROR")
                             if False else b"ERR CODE:0x01090000\r\n" + ERROR)
    await esp_at_mcu.command(b"AT" + b"A" * 253, b"ERR CODE:0x01030000\r\n" + ERROR)
    await esp_at_mcu.command(b"AT" + b"X" * 5000, b"ERR CODE:0x01030000\r\n" + ERROR)
    await esp_at_mcu.expect_silence(0.1)
    await esp_at_mcu.command(b"AT", OK)


async def test_second_command_in_one_write_gets_busy(esp_at_mcu):
    await esp_at_mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await esp_at_mcu.send(b"AT\r\nAT+GMR\r\n")
    await esp_at_mcu.expect(b"\r\nbusy p...\r\n" + OK)
    await esp_at_mcu.expect_silence(0.1)


async def test_garbage_bytes_then_at_still_answers(esp_at_mcu):
    await esp_at_mcu.command(b"ATE0", b"ATE0\r\n" + OK)
    await esp_at_mcu.send(bytes(range(256)) * 4 + b"\r\n")
    reply = await esp_at_mcu.read_until(ERROR)
    assert reply == ERROR
    await esp_at_mcu.command(b"AT", OK)


async def test_a_burst_of_bad_lines_leaves_the_port_answering(tmp_path):
    """Thousands of bad lines in one write: the first line of each chunk gatewayd
    reads gets its ERROR and the rest of the chunk busy p..., as on the module;
    then the port answers as before (once every reply to the burst is in:
    the MCU waits, bounded, until it has all the port wrote)."""
    import asyncio
    import re

    from gatewayd.testing import running_gateway

    burst = b"AT+NOSUCH\r\n" * 3000
    async with running_gateway(tmp_path, dialect="esp-at") as (daemon, mcu):
        session = daemon.sessions["mcu"]
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        start_in, start_out = session.bytes_in, session.bytes_out
        await mcu.send(burst)
        async with asyncio.timeout(20):
            while (session.bytes_in < start_in + len(burst)
                   or len(mcu.pending()) < session.bytes_out - start_out):
                await asyncio.sleep(0.01)
        replies = mcu.flush_input()
        assert replies.startswith(ERROR)
        assert re.fullmatch(rb"(\r\nERROR\r\n|\r\nbusy p\.\.\.\r\n)+", replies), \
            replies[:200]
        await mcu.command(b"AT", OK)
