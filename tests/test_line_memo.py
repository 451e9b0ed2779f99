"""A port remembers short command lines parsed and bound (an MCU repeats
``AT+CIPSEND=0,2048`` before every block). What the MCU sees must not change:
a remembered line still runs its command against the state of the moment, a
line that failed to bind fails again, and a flood of distinct lines keeps the
memo bounded while every one is answered."""

from __future__ import annotations

from gatewayd.session.port import MEMO_LINES

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"


async def test_a_repeated_line_runs_its_command_each_time(gateway):
    async with gateway(dialect="esp-at") as (_, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        hostname = b'AT+CWHOSTNAME="pump-7"'
        await mcu.command(hostname, OK)
        await mcu.command(b"AT+CWMODE=2", OK)
        # The same line, now in SoftAP mode: the handler decides, not the memo.
        await mcu.command(hostname, ERROR)
        await mcu.command(b"AT+CWMODE=1", OK)
        await mcu.command(hostname, OK)
        await mcu.command(b"AT+CWHOSTNAME?", b"+CWHOSTNAME:pump-7\r\n" + OK)


async def test_a_line_that_fails_to_bind_fails_every_time(gateway):
    async with gateway(dialect="esp-at") as (_, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        for _ in range(3):
            await mcu.command(b"AT+CWMODE=9", ERROR)
            await mcu.command(b"AT+CWMODE=x", ERROR)
            await mcu.command(b"AT+CWMODE?", b"+CWMODE:1\r\n" + OK)
        await mcu.command(b"AT+CWMODE=3", OK)
        await mcu.command(b"AT+CWMODE?", b"+CWMODE:3\r\n" + OK)


async def test_many_distinct_lines_are_all_answered_and_the_memo_stays_bounded(gateway):
    async with gateway(dialect="esp-at") as (daemon, mcu):
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        session = next(iter(daemon.sessions.values()))
        for number in range(3 * MEMO_LINES + 5):
            await mcu.command(b'AT+CWHOSTNAME="host-%d"' % number, OK)
            assert len(session._memo) <= MEMO_LINES
        await mcu.command(b"AT+CWHOSTNAME?", b"+CWHOSTNAME:host-%d\r\n" % (3 * MEMO_LINES + 4)
                          + OK)
        # An early line, long since dropped from the memo, runs again.
        await mcu.command(b'AT+CWHOSTNAME="host-0"', OK)
        await mcu.command(b"AT+CWHOSTNAME?", b"+CWHOSTNAME:host-0\r\n" + OK)


async def test_ameba_repeated_lines_and_errors(gateway):
    async with gateway(dialect="ameba") as (_, mcu):
        for _ in range(3):
            await mcu.command(b"AT+WLPS=lps", b"\r\nERROR: 3\r\n")
            await mcu.command(b"AT+WLPS=foo,1", b"\r\nERROR: 2\r\n")
            await mcu.command(b"AT+WLPS=lps,1", b"\r\nOK\r\n")
