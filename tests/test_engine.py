"""The sans-I/O AT engine, byte for byte, with both dialects' framings.

No I/O: bytes go in through ``receive_data``, bytes come out of
``data_to_send``. Expected bytes follow shared/reference/esp-at-behaviour.md §5
and shared/reference/ameba-at-behaviour.md §1, §2 and §4.
"""

from __future__ import annotations

import itertools
import operator
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewayd.at.engine import (
    AtEngine,
    Busy,
    Command,
    Discarded,
    ForcedRestart,
    Framing,
    LineTooLong,
    Overflow,
    RawData,
    State,
)
from gatewayd.dialects.ameba.dialect import FRAMING as AMEBA
from gatewayd.dialects.esp_at.dialect import FRAMING as ESP

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
SEND_OK = b"\r\nSEND OK\r\n"
URC1 = b"+WS_CONNECTED:0\r\n"
URC2 = b"[$][WS][EVENT]:linkid:0, pong\r\n"

ESP_LIMIT = 254  # 256 bytes including CRLF
AMEBA_LIMIT = 1998  # 2000 bytes including CRLF


def esp() -> AtEngine:
    return AtEngine(ESP)


def ameba() -> AtEngine:
    return AtEngine(AMEBA)


def running(engine: AtEngine, line: bytes) -> AtEngine:
    """Start *line* as a command and throw away its echo."""
    assert engine.receive_data(line + b"\r\n") == [Command(line)]
    engine.data_to_send()
    return engine


def cut(data: bytes, points) -> list[bytes]:
    """*data* split at the given offsets (empty pieces dropped)."""
    bounds = [0, *sorted(p for p in set(points) if 0 < p < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if a < b]


def drive(engine: AtEngine, chunks, result: bytes = OK) -> list:
    """Feed *chunks* like a port session that answers every command with *result*
    at once. Returns every event, in order."""
    seen: list = []
    for chunk in chunks:
        pending = deque(engine.receive_data(chunk))
        while pending:
            event = pending.popleft()
            seen.append(event)
            if isinstance(event, Command | LineTooLong):
                pending.extend(engine.finish(result))
    return seen


def lines_of(events) -> list[tuple[bytes, bool]]:
    return [(e.line, e.truncated) for e in events if isinstance(e, Command)]


# -- ESP-AT framing ----------------------------------------------------------


def test_esp_command_is_echoed_before_the_response():
    e = esp()
    assert e.receive_data(b"AT\r\n") == [Command(b"AT")]
    assert e.state is State.RUNNING
    assert e.data_to_send() == b"AT\r\n"
    e.finish(OK)
    assert e.data_to_send() == OK
    assert e.state is State.READY


def test_esp_echo_off_writes_nothing_back():
    e = esp()
    e.echo = False
    assert e.receive_data(b"AT\r\n") == [Command(b"AT")]
    assert e.data_to_send() == b""


def test_esp_single_byte_feeds_are_echoed_as_they_arrive():
    e = esp()
    events = []
    for byte in b"AT+GMR\r\n":
        events += e.receive_data(bytes([byte]))
        assert e.data_to_send() == bytes([byte])
    assert events == [Command(b"AT+GMR")]


def test_esp_terminator_split_across_two_feeds():
    e = esp()
    assert e.receive_data(b"AT\r") == []
    assert e.receive_data(b"\n") == [Command(b"AT")]
    assert e.data_to_send() == b"AT\r\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"AT\rX", b"AT\rX"),  # a lone CR is part of the line
        (b"AT\nX", b"AT\nX"),  # and so is a lone LF
        (b"AT\r\r", b"AT\r\r"),
        (b"", b""),  # a bare CRLF is an (empty) command
    ],
)
def test_esp_only_crlf_ends_a_line(line, expected):
    e = esp()
    assert e.receive_data(line + b"\r\n") == [Command(expected)]


def _esp_chunkings(line: bytes) -> dict[str, list[bytes]]:
    whole = line + b"\r\n"
    return {
        "one feed": [whole],
        "line then CRLF": [line, b"\r\n"],
        "line+CR then LF": [line + b"\r", b"\n"],
        "single bytes": [bytes([b]) for b in whole],
    }


@pytest.mark.parametrize("how", list(_esp_chunkings(b"")))
def test_esp_254_byte_line_is_a_command(how):
    line = b"AT+X=" + b"1" * (ESP_LIMIT - 5)
    assert len(line) + 2 == 256
    e = esp()
    assert drive(e, _esp_chunkings(line)[how]) == [Command(line)]
    assert e.data_to_send() == line + b"\r\n" + OK


@pytest.mark.parametrize("how", list(_esp_chunkings(b"")))
def test_esp_255_byte_line_is_too_long(how):
    line = b"AT+X=" + b"1" * (ESP_LIMIT - 4)
    assert len(line) + 2 == 257
    e = esp()
    events = drive(e, _esp_chunkings(line)[how], result=ERROR)
    assert events == [LineTooLong(255)]
    assert e.data_to_send() == line + b"\r\n" + ERROR


@pytest.mark.parametrize("chunk", [1, 7, 256, 1000, 10_240])
def test_esp_10k_line_gives_one_error_and_bounded_memory(chunk):
    e = esp()
    data = bytes(range(32, 127)) * 108  # 10 KB of printable bytes, no CR/LF
    data = data[:10_240]
    events = []
    for i in range(0, len(data), chunk):
        events += e.receive_data(data[i : i + chunk])
        assert len(e._line) <= 256
        e.data_to_send()
    assert events == []
    events += e.receive_data(b"\r\n")
    assert events == [LineTooLong(10_240)]
    assert len(e._line) <= 256
    e.finish(ERROR)
    e.data_to_send()
    # The module is usable again at once.
    assert e.receive_data(b"AT\r\n") == [Command(b"AT")]
    assert e.data_to_send() == b"AT\r\n"


def test_esp_overlong_line_ending_in_cr_keeps_the_terminator_start():
    e = esp()
    assert e.receive_data(b"A" * 300 + b"\r") == []
    assert len(e._line) <= 256
    assert e.receive_data(b"\n") == [LineTooLong(300)]


def test_esp_line_too_long_then_finish_then_at_works():
    e = esp()
    assert e.receive_data(b"B" * 300 + b"\r\n") == [LineTooLong(300)]
    assert e.state is State.RUNNING
    assert e.finish(ERROR) == []
    assert e.data_to_send() == b"B" * 300 + b"\r\n" + ERROR
    assert e.receive_data(b"AT\r\n") == [Command(b"AT")]
    assert e.data_to_send() == b"AT\r\n"


# -- ESP-AT while a command runs ----------------------------------------------


def test_esp_input_while_running_is_busy_and_dropped():
    e = running(esp(), b'AT+WSOPEN=0,"ws://x"')
    assert e.receive_data(b"AT+G") == [Busy(b"AT+G")]
    assert e.receive_data(b"MR\r\n") == [Busy(b"MR\r\n")]
    assert e.state is State.RUNNING
    assert e.data_to_send() == b""  # busy input is not echoed
    e.finish(OK)
    assert e.data_to_send() == OK
    # Nothing of the busy input survives into the next line.
    assert e.receive_data(b"AT\r\n") == [Command(b"AT")]


@pytest.mark.parametrize("chunk", [b"AT+RST\r\n", b"xyzAT+RST\r\nAT\r\n"])
def test_esp_busy_chunk_with_at_rst_forces_a_restart(chunk):
    e = running(esp(), b"AT+WSOPEN=0")
    assert e.receive_data(chunk) == [ForcedRestart()]


@pytest.mark.parametrize("chunks", [[b"AT+RST"], [b"AT+RS", b"T\r\n"], [b"at+rst\r\n"]])
def test_esp_restart_line_must_be_whole_in_one_chunk(chunks):
    e = running(esp(), b"AT+WSOPEN=0")
    for chunk in chunks:
        assert e.receive_data(chunk) == [Busy(chunk)]


def test_esp_two_commands_in_one_write_make_the_second_busy():
    e = esp()
    assert e.receive_data(b"AT\r\nAT\r\n") == [Command(b"AT"), Busy(b"AT\r\n")]
    assert e.data_to_send() == b"AT\r\n"  # only the first is echoed


# -- Ameba framing ------------------------------------------------------------


def test_ameba_has_no_echo():
    e = ameba()
    assert e.receive_data(b"AT+TEST\r\n") == [Command(b"AT+TEST")]
    assert e.data_to_send() == b""
    e.finish(OK)
    assert e.data_to_send() == OK


def test_ameba_input_while_running_becomes_the_next_command():
    e = running(ameba(), b"AT+WSCONN=0")
    assert e.receive_data(b"AT+G") == []
    assert e.receive_data(b"MR\r\nAT+LI") == []
    assert e.finish(OK) == [Command(b"AT+GMR")]
    assert e.state is State.RUNNING
    assert e.data_to_send() == OK
    # The held partial line continues with what arrives next.
    assert e.finish(OK) == []
    assert e.receive_data(b"ST\r\n") == [Command(b"AT+LIST")]


def test_ameba_two_commands_in_one_write_run_one_after_the_other():
    e = ameba()
    assert e.receive_data(b"AT+TEST\r\nAT+GMR\r\n") == [Command(b"AT+TEST")]
    assert e.finish(OK) == [Command(b"AT+GMR")]
    assert e.finish(OK) == []
    assert e.data_to_send() == OK + OK


@pytest.mark.parametrize(
    ("chunks", "line"),
    [
        ([b"AT+TESX\x08T\r\n"], b"AT+TEST"),
        ([b"AT+TESX\x7fT\r\n"], b"AT+TEST"),
        ([b"AT+TESX", b"\x08", b"T\r\n"], b"AT+TEST"),
        ([b"\x08\x7fAT+TEST\r\n"], b"AT+TEST"),  # erasing an empty line is harmless
        ([b"AT+TEST=0,a\tb\r\n"], b"AT+TEST=0,a b"),
        ([b"AT+\xffTE\xffST\r\n"], b"AT+TEST"),
        ([b"AT+TEST\x00"], b"AT+TEST"),
        ([b"AT+TEST", b"\x00"], b"AT+TEST"),
        ([b"AT+TEST\r\x00"], b"AT+TEST\r"),
        ([b"AT+TEST\r", b"\n"], b"AT+TEST"),
        ([b"AT+TEST\r", b"\xff\n"], b"AT+TEST"),
        ([b"AT+TEST\r\x08\n\r\n"], b"AT+TEST\n"),  # BS erased the CR: LF is a character
        ([b"A\rB\nC\r\n"], b"A\rB\nC"),  # lone CR and LF are characters
        ([b"A\rB\nC\x00\r\n"], b"A\rB\nC"),
    ],
)
def test_ameba_line_editor(chunks, line):
    e = ameba()
    events = []
    for chunk in chunks:
        events += e.receive_data(chunk)
    assert events == [Command(line)]


def test_ameba_nul_ends_a_line_and_the_rest_is_the_next_line():
    e = ameba()
    assert e.receive_data(b"AT+TEST\x00AT+GMR\x00") == [Command(b"AT+TEST")]
    assert e.finish(OK) == [Command(b"AT+GMR")]


LONG = b"AT+TEST=0," + bytes(range(33, 127)) * 22  # 2078 bytes, no CR/LF/edit bytes


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([LONG + b"\r\n"], id="one feed"),
        pytest.param([LONG, b"\r\n"], id="line then CRLF"),
        pytest.param([LONG[:1000], LONG[1000:], b"\r\n"], id="two halves"),
        pytest.param([bytes([b]) for b in LONG + b"\r\n"], id="single bytes"),
        pytest.param([b"\xff" + LONG + b"\r\n"], id="editor path"),
        pytest.param([b"\xff" + LONG[:1500], LONG[1500:] + b"\r\n"], id="editor then plain"),
    ],
)
def test_ameba_overlong_line_runs_truncated_and_the_rest_is_the_next_line(chunks):
    e = ameba()
    events = drive(e, chunks)
    assert lines_of(events) == [(LONG[:AMEBA_LIMIT], True), (LONG[AMEBA_LIMIT:], False)]
    assert not any(isinstance(x, LineTooLong | Discarded) for x in events)
    assert e.data_to_send() == OK + OK


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([b"A" * AMEBA_LIMIT + b"\r\n"], id="one feed"),
        pytest.param([b"A" * AMEBA_LIMIT, b"\r\n"], id="line then CRLF"),
        pytest.param([b"\xff" + b"A" * AMEBA_LIMIT + b"\r", b"\n"], id="editor, CR then LF"),
        pytest.param([b"A" * AMEBA_LIMIT + b"\r", b"\n"], id="CR then LF"),
    ],
)
def test_ameba_2000_byte_line_is_one_whole_command(chunks):
    # 1998 bytes + CRLF = 2000, the documented maximum: run as is, nothing left over.
    e = ameba()
    events = drive(e, chunks)
    assert lines_of(events) == [(b"A" * AMEBA_LIMIT, False)]
    assert e.receive_data(b"AT+TEST\r\n") == [Command(b"AT+TEST")]


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([b"A" * AMEBA_LIMIT + b"\rxy\r\n"], id="one feed"),
        pytest.param([b"\xff" + b"A" * AMEBA_LIMIT + b"\rxy\r\n"], id="editor path"),
        pytest.param([b"A" * AMEBA_LIMIT + b"\r", b"xy\r\n"], id="CR then rest"),
        pytest.param([b"\xff" + b"A" * AMEBA_LIMIT + b"\r", b"xy\r\n"], id="editor CR then rest"),
    ],
)
def test_ameba_overlong_line_whose_1999th_byte_is_cr(chunks):
    # 1998 bytes, then a CR that is not followed by LF: the line is too long, so
    # the first 1998 bytes run truncated and "\rxy" is the next line.
    e = ameba()
    events = drive(e, chunks)
    assert lines_of(events) == [(b"A" * AMEBA_LIMIT, True), (b"\rxy", False)]
    assert e.receive_data(b"AT+TEST\r\n") == [Command(b"AT+TEST")]


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([b"A" * 2100 + b"\r\n"], id="plain"),
        pytest.param([b"A" * AMEBA_LIMIT + b"\r", b"xy\r\n"], id="CR then rest"),
        pytest.param([b"\xff" + b"A" * AMEBA_LIMIT + b"\r", b"xy\r\n"], id="editor CR then rest"),
        pytest.param([b"\xff" + b"A" * AMEBA_LIMIT + b"\r\r", b"xy\r\n"], id="editor CRCR"),
    ],
)
def test_ameba_next_command_is_intact_after_an_overlong_line(chunks):
    # Whatever became of the overlong line, the MCU's next command must run as sent.
    e = ameba()
    drive(e, chunks)
    assert e.state is State.READY
    assert drive(e, [b"AT+TEST\r\n"]) == [Command(b"AT+TEST")]


@pytest.mark.parametrize("prefix", [b"", b"\xff"], ids=["plain", "editor path"])
def test_ameba_carriage_returns_do_not_stretch_the_line_limit(prefix):
    # 1998 bytes + CR CR LF is 2001 bytes: too long whichever path reads it.
    e = ameba()
    events = drive(e, [prefix + b"A" * AMEBA_LIMIT + b"\r\r\n"])
    assert lines_of(events) == [(b"A" * AMEBA_LIMIT, True), (b"\r", False)]


def test_ameba_run_of_carriage_returns_keeps_memory_bounded():
    e = ameba()
    events = drive(e, [b"\xff" + b"\r" * 10_000])
    assert all(len(line) <= AMEBA_LIMIT for line, _ in lines_of(events))
    assert len(e._line) <= AMEBA_LIMIT + 1
    assert len(e._held) <= AMEBA.hold_limit


def test_ameba_held_input_beyond_the_hold_limit_is_discarded():
    e = running(ameba(), b"AT+WSCONN=0")
    events = e.receive_data(b"x" * (AMEBA.hold_limit + 10))
    assert len(events) == 1
    assert isinstance(events[0], Discarded)
    assert events[0].data == b"x" * 10
    assert len(e._held) == AMEBA.hold_limit


# -- raw blocks after a prompt ---------------------------------------------------


RAW = b"12\r\n5,\\7\n89"  # 12 bytes with CR, LF, a comma and a backslash


@pytest.mark.parametrize(
    ("make", "prompt", "command"),
    [(esp, b"\r\nOK\r\n\r\n>", b"AT+WSSEND=0,12"), (ameba, b">>>\r\n", b"AT+WSSENDRAW=0,12")],
    ids=["esp-at", "ameba"],
)
@pytest.mark.parametrize(
    "pieces",
    [[RAW], [RAW[:3], RAW[3:4], RAW[4:]], [bytes([b]) for b in RAW]],
    ids=["whole", "pieces", "bytes"],
)
def test_raw_block_is_exactly_n_bytes_unechoed(make, prompt, command, pieces):
    e = running(make(), command)
    e.expect_raw(len(RAW), prompt)
    assert e.state is State.RAW
    assert e.data_to_send() == prompt
    events = []
    for piece in pieces:
        assert events == []
        events += e.receive_data(piece)
    assert events == [RawData(RAW)]
    assert e.state is State.RUNNING
    assert e.data_to_send() == b""  # raw bytes are never echoed
    assert e.finish(SEND_OK) == []
    assert e.data_to_send() == SEND_OK


def test_raw_remaining_counts_down():
    e = running(esp(), b"AT+WSSEND=0,5")
    e.expect_raw(5, b"\r\nOK\r\n\r\n>")
    assert e.raw_remaining == 5
    e.receive_data(b"ab")
    assert e.raw_remaining == 3


def test_esp_raw_block_may_contain_at_rst():
    e = running(esp(), b"AT+WSSEND=0,8")
    e.expect_raw(8, b"\r\nOK\r\n\r\n>")
    assert e.receive_data(b"AT+RST\r\n") == [RawData(b"AT+RST\r\n")]


def test_esp_bytes_beyond_the_raw_block_are_busy():
    e = running(esp(), b"AT+WSSEND=0,4")
    e.expect_raw(4, b"\r\nOK\r\n\r\n>")
    e.data_to_send()
    assert e.receive_data(b"abcdAT\r\n") == [RawData(b"abcd"), Busy(b"AT\r\n")]
    e.finish(SEND_OK)
    assert e.data_to_send() == SEND_OK
    assert e.receive_data(b"AT\r\n") == [Command(b"AT")]


def test_ameba_bytes_beyond_the_raw_block_are_discarded():
    e = running(ameba(), b"AT+WSSENDRAW=0,4")
    e.expect_raw(4, b">>>\r\n")
    events = e.receive_data(b"abcdAT+GMR\r\n")
    assert len(events) == 2
    assert events[0] == RawData(b"abcd")
    assert isinstance(events[1], Discarded)
    assert events[1].data == b"AT+GMR\r\n"
    # Not held: they do not become the next command.
    assert e.finish(OK) == []
    assert e.receive_data(b"AT+TEST\r\n") == [Command(b"AT+TEST")]


def test_expect_raw_needs_a_running_command_and_a_length():
    e = esp()
    with pytest.raises(RuntimeError):
        e.expect_raw(1, b"\r\nOK\r\n\r\n>")
    running(e, b"AT+WSSEND=0,0")
    with pytest.raises(ValueError):
        e.expect_raw(0, b"\r\nOK\r\n\r\n>")


def test_line_editing_and_split_overflow_go_together():
    with pytest.raises(ValueError):
        Framing(
            max_line=256,
            echo=True,
            busy_rejects_input=True,
            line_editing=True,
            overflow=Overflow.REJECT,
        )


def test_finish_without_a_command_is_an_error():
    with pytest.raises(RuntimeError):
        esp().finish(OK)


# -- unsolicited messages -------------------------------------------------------


@pytest.mark.parametrize("make", [esp, ameba], ids=["esp-at", "ameba"])
def test_unsolicited_is_written_at_once_when_ready(make):
    e = make()
    e.receive_data(b"AT+GM")  # a partial line does not hold it back
    e.data_to_send()
    e.unsolicited(URC1)
    assert e.data_to_send() == URC1
    assert e.unsolicited_pending == 0


@pytest.mark.parametrize("make", [esp, ameba], ids=["esp-at", "ameba"])
def test_unsolicited_waits_for_the_final_result(make):
    e = running(make(), b"AT+WSQUERY")
    e.send(b"+INFO:1\r\n")
    e.unsolicited(URC1)
    assert e.data_to_send() == b"+INFO:1\r\n"
    assert e.unsolicited_pending == len(URC1)
    e.send(b"+INFO:2\r\n")
    e.unsolicited(URC2)
    assert e.data_to_send() == b"+INFO:2\r\n"
    assert e.unsolicited_pending == len(URC1) + len(URC2)
    e.finish(OK)
    assert e.data_to_send() == OK + URC1 + URC2
    assert e.unsolicited_pending == 0
    e.unsolicited(URC1)
    assert e.data_to_send() == URC1


@pytest.mark.parametrize(
    ("make", "prompt"), [(esp, b"\r\nOK\r\n\r\n>"), (ameba, b">>>\r\n")], ids=["esp-at", "ameba"]
)
def test_unsolicited_waits_through_a_raw_block(make, prompt):
    e = running(make(), b"AT+WSSEND=0,3")
    e.unsolicited(URC1)
    e.expect_raw(3, prompt)
    e.unsolicited(URC2)
    assert e.receive_data(b"a") == []
    e.unsolicited(URC1)
    assert e.receive_data(b"bc") == [RawData(b"abc")]
    e.send(b"\r\nRecv 3 bytes\r\n")
    e.finish(SEND_OK)
    assert e.data_to_send() == prompt + b"\r\nRecv 3 bytes\r\n" + SEND_OK + URC1 + URC2 + URC1


def test_ameba_unsolicited_goes_between_a_result_and_the_held_next_command():
    e = running(ameba(), b"AT+WSCONN=0")
    e.receive_data(b"AT+GMR\r\n")
    e.unsolicited(URC2)
    assert e.finish(OK) == [Command(b"AT+GMR")]
    e.send(b"GMR LINES\r\n")
    e.unsolicited(URC1)
    e.finish(OK)
    assert e.data_to_send() == OK + URC2 + b"GMR LINES\r\n" + OK + URC1


# -- reset ------------------------------------------------------------------------


def test_reset_restores_echo_and_forgets_a_partial_line():
    e = esp()
    e.echo = False
    e.receive_data(b"AT+GM")
    e.reset()
    assert e.echo is True
    assert e.state is State.READY
    assert e.receive_data(b"AT\r\n") == [Command(b"AT")]
    assert e.data_to_send() == b"AT\r\n"


def test_reset_while_running_forgets_queued_unsolicited_and_raw_state():
    e = running(esp(), b"AT+WSSEND=0,10")
    e.unsolicited(URC1)
    e.expect_raw(10, b"\r\nOK\r\n\r\n>")
    e.receive_data(b"abc")
    e.reset()
    assert e.state is State.READY
    assert e.raw_remaining == 0
    assert e.unsolicited_pending == 0
    e.data_to_send()
    assert e.receive_data(b"AT\r\n") == [Command(b"AT")]
    e.finish(OK)
    assert e.data_to_send() == b"AT\r\n" + OK  # the old URC is gone


def test_reset_keeps_bytes_already_written():
    e = running(esp(), b"AT+RST")
    e.send(OK)
    e.reset()
    assert e.data_to_send() == OK


def test_ameba_reset_forgets_held_input():
    e = running(ameba(), b"AT+WSCONN=0")
    e.receive_data(b"AT+GMR\r\nAT+LI")
    e.reset()
    assert e.receive_data(b"AT+TEST\r\n") == [Command(b"AT+TEST")]
    assert e.finish(OK) == []


# -- properties ---------------------------------------------------------------------

PIECE = st.one_of(
    st.binary(max_size=48),
    st.sampled_from(
        [b"\r\n", b"AT", b"\x00", b"\x08", b"\x7f", b"\xff", b"\t", b"\r", b"\n", b"AT+RST\r\n"]
    ),
    st.builds(operator.mul, st.sampled_from([b"A", b"\r"]), st.integers(250, 260)),
    st.builds(operator.mul, st.sampled_from([b"A", b"\r"]), st.integers(1990, 2005)),
)
STREAM = st.lists(PIECE, max_size=16).map(lambda pieces: b"".join(pieces)[:4000])
CUTS = st.lists(st.integers(0, 4000), max_size=40)

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _settle(engine: AtEngine) -> None:
    """End any partial line and finish whatever it started."""
    drive(engine, [b"\r\n"])
    assert engine.state is State.READY


@PROPERTY
@given(STREAM, CUTS)
def test_esp_random_input_never_wedges(stream, cuts):
    e = esp()
    drive(e, cut(stream, cuts))
    assert len(e._line) <= 256
    _settle(e)
    e.data_to_send()
    assert e.receive_data(b"AT\r\n") == [Command(b"AT")]
    assert e.data_to_send() == b"AT\r\n"


@PROPERTY
@given(STREAM, CUTS)
def test_ameba_random_input_never_wedges(stream, cuts):
    e = ameba()
    drive(e, cut(stream, cuts))
    _settle(e)
    e.data_to_send()
    assert e.receive_data(b"AT+TEST\r\n") == [Command(b"AT+TEST")]
    assert e.data_to_send() == b""


def _no_crlf(body: bytes) -> bytes:
    while b"\r\n" in body:
        body = body.replace(b"\r\n", b"")
    return body


@PROPERTY
@given(st.lists(st.tuples(STREAM.map(_no_crlf), CUTS), min_size=1, max_size=4))
def test_esp_each_line_is_framed_the_same_however_it_is_chunked(lines):
    # The MCU sends one line, waits for the result, sends the next; the UART
    # may deliver each line in any number of pieces.
    e = esp()
    expected_events, expected_out, events = [], b"", []
    for body, cuts in lines:
        whole = body + b"\r\n"
        if len(body) <= ESP_LIMIT:
            expected_events.append(Command(body))
        else:
            expected_events.append(LineTooLong(len(body)))
        expected_out += whole + OK
        for chunk in cut(whole, cuts):
            events += drive(e, [chunk])
            assert len(e._line) <= 256
    assert events == expected_events
    assert e.data_to_send() == expected_out


def ameba_line_editor(stream: bytes) -> list[tuple[bytes, bool]]:
    """Reference model of the Ameba line editor (ameba-at-behaviour.md §4):
    (line, truncated) for every command the stream runs."""
    out, line = [], bytearray()
    for b in stream:
        if b in (0x08, 0x7F):
            if line:
                line.pop()
        elif b == 0xFF:
            pass
        elif b == 0x00:
            out.append((bytes(line), False))
            line.clear()
        elif b == 0x0A and line.endswith(b"\r"):
            out.append((bytes(line[:-1]), False))
            line.clear()
        else:
            line.append(0x20 if b == 0x09 else b)
            # A 1999th byte that is CR may still be the start of the terminator.
            if len(line) > AMEBA_LIMIT and not (
                len(line) == AMEBA_LIMIT + 1 and line.endswith(b"\r")
            ):
                out.append((bytes(line[:AMEBA_LIMIT]), True))
                del line[:AMEBA_LIMIT]
    return out


@PROPERTY
@given(STREAM, CUTS)
def test_ameba_commands_do_not_depend_on_chunking(stream, cuts):
    e = ameba()
    events = drive(e, cut(stream, cuts))
    assert not any(isinstance(x, Discarded) for x in events)
    assert lines_of(events) == ameba_line_editor(stream)
