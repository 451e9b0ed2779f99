"""Ameba system commands end to end: a virtual MCU on gatewayd's pty.

Expected bytes are those of shared/reference/ameba-at-behaviour.md §1, §4, §6.
"""

from __future__ import annotations

import pytest

from gatewayd import __version__

OK = b"\r\nOK\r\n"
#: AT+GMR of gatewayd (reference ameba-at-behaviour.md: the first line ends in LF only).
GMR_LINES = (
    b"AMEBA-RTOS SDK VERSION: 1.1.0\n"
    b"ATCMD VERSION: 2.0.0\r\n"
    b"IMAGE VERSION: 1.0\r\n"
    b"amebadplus: 6761746577\r\n"
    b"COMPILE TIME: Nov 22 2026 00:00:00\r\n"
    b"COMPILE USER: gatewayd@gatewayd-%s\r\n"
    b"COMPILE ENV : gatewayd\r\n" % __version__.encode()
)
#: AT+TEST=2 downstream data: this pattern, repeated.
DOWNSTREAM_PATTERN = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


async def test_banner_then_test_ok(ameba_mcu):
    await ameba_mcu.command(b"AT+TEST", OK)


async def test_no_echo(ameba_mcu):
    await ameba_mcu.send(b"AT+TEST\r\n")
    await ameba_mcu.expect(OK)
    await ameba_mcu.expect_silence(0.1)


async def test_gmr(ameba_mcu):
    await ameba_mcu.command(b"AT+GMR", GMR_LINES + OK)
    assert GMR_LINES.startswith(b"AMEBA-RTOS SDK VERSION: ")
    assert b"\nATCMD VERSION: 2." in GMR_LINES
    assert b"\r\nCOMPILE ENV : " in GMR_LINES


async def test_list(ameba_mcu):
    """Every command gatewayd answers, in the firmware's groups and order."""
    await ameba_mcu.command(b"AT+LIST", b"Common AT Command:\r\nAT+RREG\r\nAT+WREG\r\n"
                            b"AT+RST\r\nAT+LOG\r\nAT+TICKPS\r\nAT+STATE\r\nAT+CPULOAD\r\n"
                            b"AP Common AT Command:\r\nAT+OTACLEAR\r\nAT+OTARECOVER\r\n"
                            b"AT+TEST\r\nAT+LIST\r\nAT+GMR\r\nAT+UART\r\n"
                            b"Wi-Fi AT Command:\r\nAT+WLSTATICIP\r\nAT+WLCONN\r\n"
                            b"AT+WLDISCONN\r\nAT+WLSCAN\r\nAT+WLRSSI\r\nAT+WLSTARTAP\r\n"
                            b"AT+WLSTOPAP\r\nAT+WLSTATE\r\nAT+WLRECONN\r\nAT+WLPROMISC\r\n"
                            b"AT+WLDBG\r\nAT+WLPS\r\n"
                            b"Socket AT Commands:\r\nAT+SKTCFG\r\nAT+SKTQUERY\r\n"
                            b"AT+SKTSERVER\r\nAT+SKTCLIENT\r\nAT+SKTSEND\r\nAT+SKTREAD\r\n"
                            b"AT+SKTSENDRAW\r\nAT+SKTSTATE\r\nAT+SKTDEL\r\n"
                            b"WEBSOCKET AT command:\r\nAT+WSGLCFG\r\nAT+WSCFG\r\n"
                            b"AT+WSHEAD\r\nAT+WSHEADRAW\r\nAT+WSCONN\r\nAT+WSSEND\r\n"
                            b"AT+WSSENDRAW\r\nAT+WSDISCONN\r\nAT+WSQUERY\r\n"
                            b"AT+WSTXQUEUECHECK\r\nAT+WSSRVCFG\r\nAT+WSSRVSTART\r\n"
                            b"AT+WSSRVDISCONN\r\nAT+WSSRVSTOP\r\nAT+WSSRVSEND\r\n"
                            b"AT+WSSRVSENDRAW\r\nAT+WSSRVQUERY\r\n"
                            b"NETWORK AT command:\r\nAT+PING\r\nAT+IPERF\r\nAT+IPERF3\r\n"
                            b"AT+DNS\r\nAT+QUERYDNSSRV\r\nAT+SETDNSSRV\r\nAT+MDNS\r\n"
                            b"AT+SNTPCFG\r\nAT+SNTPQUERY\r\nAT+SNTPTIME\r\n" + OK)


async def test_list_names_every_command_of_the_table(ameba_mcu):
    """Every command of a 2.x port: the table less the Gen-1-only ones."""
    from gatewayd.dialects.ameba import DIALECT
    from gatewayd.dialects.ameba.generations import GEN1_ONLY

    await ameba_mcu.send(b"AT+LIST\r\n")
    listed = (await ameba_mcu.read_until(OK))[:-len(OK)].split(b"\r\n")
    names = [line[2:].decode() for line in listed if line.startswith(b"AT+")]
    assert names == [name for name in DIALECT.commands if name not in GEN1_ONLY]


async def test_list_ignores_arguments(ameba_mcu):
    await ameba_mcu.send(b"AT+LIST=1\r\n")
    reply = await ameba_mcu.read_until(OK)
    assert reply.startswith(b"Common AT Command:\r\n")


async def test_rst_prints_ok_then_banner(ameba_mcu):
    await ameba_mcu.command(b"AT+RST", OK + b"ATCMD READY\r\n")
    await ameba_mcu.command(b"AT+TEST", OK)


async def test_test_echo_mode(ameba_mcu):
    await ameba_mcu.command(b"AT+TEST=0,hello", b"\r\n arg len = 5 \r\n\r\n arg = hello \r\n" + OK)


async def test_test_upload_mode_reads_raw_block(ameba_mcu):
    await ameba_mcu.send(b"AT+TEST=1,10\r\n")
    await ameba_mcu.expect(b">>>\r\n")
    await ameba_mcu.send(b"12\r\n5,\\789")
    await ameba_mcu.expect(OK)


async def test_test_downstream_mode(ameba_mcu):
    await ameba_mcu.command(b"AT+TEST=2,100", (DOWNSTREAM_PATTERN * 2)[:100] + OK)


@pytest.mark.parametrize("line", [
    b"AT",            # bare AT is an unknown command on Ameba
    b"ATE0",          # no echo commands
    b"at+test",       # keys are case-sensitive
    b"AT+NOSUCH",
    b"hello",
    b"",
])
async def test_unknown_commands_get_nothing_on_the_at_port(ameba_mcu, line):
    await ameba_mcu.send(line + b"\r\n")
    await ameba_mcu.expect_silence(0.15)
    await ameba_mcu.command(b"AT+TEST", OK)


@pytest.mark.parametrize("line", [
    b"AT+TEST=3",       # no such mode
    b"AT+TEST=1,0",     # zero-length upload
    b"AT+TEST=2,999999999",
    b"AT+TEST=-1",
])
async def test_bad_parameters_get_error_1(ameba_mcu, line):
    await ameba_mcu.command(line, b"\r\nERROR: 1\r\n")
    await ameba_mcu.command(b"AT+TEST", OK)


async def test_line_editing_backspace(ameba_mcu):
    await ameba_mcu.send(b"AT+TESX\x08T\r\n")
    await ameba_mcu.expect(OK)


async def test_input_during_a_command_runs_after_it(ameba_mcu):
    # No busy reply on Ameba: the line editor reads the second line later.
    await ameba_mcu.send(b"AT+TEST=0,a\r\nAT+TEST\r\n")
    await ameba_mcu.expect(b"\r\n arg len = 1 \r\n\r\n arg = a \r\n" + OK + OK)


async def test_bytes_beyond_a_raw_block_are_lost(ameba_mcu):
    await ameba_mcu.send(b"AT+TEST=1,3\r\n")
    await ameba_mcu.expect(b">>>\r\n")
    await ameba_mcu.send(b"abcAT+TEST\r\n")
    await ameba_mcu.expect(OK)
    await ameba_mcu.expect_silence(0.1)


async def test_overlong_line_is_truncated_and_session_survives(ameba_mcu):
    await ameba_mcu.send(b"AT+TEST=0," + b"x" * 3000 + b"\r\n")
    reply = await ameba_mcu.read_until(OK)
    assert reply.startswith(b"\r\n arg len = 1988 \r\n")
    # The rest of the line ran as its own (unknown) command: nothing more arrives.
    await ameba_mcu.expect_silence(0.15)
    await ameba_mcu.command(b"AT+TEST", OK)


async def test_random_garbage_then_test_answers(ameba_mcu):
    await ameba_mcu.send(bytes(range(1, 256)) * 8 + b"\r\n")
    await ameba_mcu.expect_silence(0.1)
    await ameba_mcu.command(b"AT+TEST", OK)


async def test_test_upload_abort(ameba_mcu):
    import asyncio

    async def abort() -> None:
        for _ in range(3):
            await ameba_mcu.send(b"<")
            await asyncio.sleep(0.005)

    await ameba_mcu.send(b"AT+TEST=1,100\r\n")
    await ameba_mcu.expect(b">>>\r\n")
    await abort()
    await ameba_mcu.expect(b"\r\nERROR: 3\r\n")
    await ameba_mcu.send(b"AT+TEST=1,100\r\n")
    await ameba_mcu.expect(b">>>\r\n")
    await ameba_mcu.send(b"partial")
    await asyncio.sleep(0.05)
    await abort()
    await ameba_mcu.expect(OK)
    # Three '<' in one write are data, not an abort.
    await ameba_mcu.send(b"AT+TEST=1,3\r\n")
    await ameba_mcu.expect(b">>>\r\n")
    await ameba_mcu.send(b"<<<")
    await ameba_mcu.expect(OK)


async def test_a_burst_of_unknown_lines_leaves_the_port_answering(tmp_path):
    """Thousands of unknown lines in one write are logged only (as the firmware
    sends them to its log UART); the next command is still answered (after
    the burst is read: :func:`conftest.sent_in_full`)."""
    from conftest import sent_in_full

    from gatewayd.testing import running_gateway

    async with running_gateway(tmp_path, dialect="ameba") as (daemon, mcu):
        await sent_in_full(daemon, mcu, b"AT+NOSUCH=1\r\n" * 3000)
        await mcu.command(b"AT+TEST", OK, timeout=20)


async def test_a_group_switched_off_is_unknown(tmp_path):
    """``ameba_command_groups`` as the firmware's build options: a command of a
    group left out gets nothing, as an unknown command, and AT+LIST omits it."""
    from gatewayd.testing import running_gateway

    config = ('[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n'
              'ameba_command_groups = ["socket", "network"]\n')
    async with running_gateway(tmp_path, config_text=config) as (_, mcu):
        for line in (b"AT+WSQUERY", b"AT+WSSRVQUERY", b"AT+DNS=localhost", b"AT+QUERYDNSSRV",
                     b"AT+MDNS=0", b"AT+SNTPQUERY", b"AT+WSCFG=0,30,60"):
            await mcu.send(line + b"\r\n")
            await mcu.expect_silence(0.15)
        await mcu.command(b"AT+IPERF=-s", OK)              # network is on
        await mcu.send(b"AT+SKTQUERY\r\n")                 # socket is on
        assert (await mcu.read_until(OK)).startswith(b"\r\nGlobal SOCKET configuration:\r\n")
        await mcu.send(b"AT+LIST\r\n")
        listed = await mcu.read_until(OK)
        assert listed.endswith(b"AT+WLPS\r\n"
                               b"Socket AT Commands:\r\nAT+SKTCFG\r\nAT+SKTQUERY\r\n"
                               b"AT+SKTSERVER\r\nAT+SKTCLIENT\r\nAT+SKTSEND\r\nAT+SKTREAD\r\n"
                               b"AT+SKTSENDRAW\r\nAT+SKTSTATE\r\nAT+SKTDEL\r\n"
                               b"NETWORK AT command:\r\nAT+PING\r\nAT+IPERF\r\nAT+IPERF3\r\n"
                               + OK)
        assert listed.startswith(b"Common AT Command:\r\nAT+RREG\r\n")
