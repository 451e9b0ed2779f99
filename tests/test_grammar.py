"""Parameter grammars and command-line parsing of both dialects.

Rules from shared/reference/esp-at-behaviour.md §5 (Syntax, Parameters) and
shared/reference/ameba-at-behaviour.md §4.
"""

from __future__ import annotations

import pytest

from gatewayd.at.grammar import (
    GrammarError,
    ameba_atoi,
    ameba_split,
    ameba_split_escaped,
    esp_at_int,
    esp_at_split,
    esp_at_string,
)
from gatewayd.dialects.ameba import DIALECT as AMEBA
from gatewayd.dialects.base import Form, Invocation, Unknown
from gatewayd.dialects.esp_at import DIALECT as ESP
from gatewayd.dialects.esp_at.dialect import ERR_UNKNOWN_COMMAND

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)

# -- ESP-AT ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fields"),
    [
        (b"0,1,2", [b"0", b"1", b"2"]),
        (b"", [b""]),
        (b"a,,c", [b"a", b"", b"c"]),  # an empty field means "omitted"
        (b"a,", [b"a", b""]),  # a trailing comma adds an empty field
        (b",", [b"", b""]),
        (b'"x\\,y",1', [b'"x\\,y"', b"1"]),  # \, does not split; the escape is kept
        (b'"a,b"', [b'"a', b'b"']),  # quotes do not protect commas
        (b'"a\\\\",b', [b'"a\\\\"', b"b"]),  # \\ is one escaped backslash: the comma splits
        (b'"a\\"b",c', [b'"a\\"b"', b"c"]),
        (b"a\\", [b"a\\"]),  # a trailing backslash escapes nothing
    ],
)
def test_esp_at_split(args, fields):
    assert esp_at_split(args) == fields


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b'""', b""),
        (b'"abc"', b"abc"),
        (b'"a\\"b"', b'a"b'),
        (b'"a\\\\b"', b"a\\b"),
        (b'"a\\,b"', b"a,b"),
        (b'"\\x"', b"x"),  # any escaped byte stands for itself
        (b'"\\\\"', b"\\"),
        (b'"a b:c"', b"a b:c"),
    ],
)
def test_esp_at_string(field, value):
    assert esp_at_string(field) == value


@pytest.mark.parametrize(
    "field",
    [
        b"abc",  # quotes are required
        b'"abc',
        b'abc"',
        b'"',
        b"",
        b"'abc'",
        b'"a"b"',  # unescaped inner quote
        b'"abc\\"',  # lone trailing backslash (it escapes the closing quote)
        b'"\\"',
        b' "abc"',
    ],
)
def test_esp_at_string_rejects(field):
    with pytest.raises(GrammarError):
        esp_at_string(field)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"0", 0),
        (b"42", 42),
        (b"007", 7),
        (b"-7", -7),
        (b"0x1F", 31),
        (b"0X1f", 31),
        (b"0x0", 0),
        (b"2147483647", INT32_MAX),
        (b"-2147483648", INT32_MIN),
        (b"0x7fffffff", INT32_MAX),
    ],
)
def test_esp_at_int(field, value):
    assert esp_at_int(field) == value


@pytest.mark.parametrize(
    "field",
    [
        b"2147483648",  # overflow beyond int32
        b"-2147483649",
        b"0x80000000",
        b"99999999999999999999",
        b"12a",
        b"+5",
        b" 5",
        b"5 ",
        b'"5"',
        b"",
        b"-",
        b"0x",
        b"0xg",
        b"1.5",
        b"1_000",
    ],
)
def test_esp_at_int_rejects(field):
    with pytest.raises(GrammarError):
        esp_at_int(field)


def test_grammar_error_is_a_value_error():
    assert issubclass(GrammarError, ValueError)


# -- Ameba -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fields"),
    [
        (b"0,1", [b"0", b"1"]),
        (b"", [b""]),
        (b"2000,2000,,1,60,10,3", [b"2000", b"2000", b"", b"1", b"60", b"10", b"3"]),
        (b"a,", [b"a", b""]),
        (b"a\\,b", [b"a\\", b"b"]),  # no escapes in parse_param
        (b'"a,b"', [b'"a', b'b"']),  # quotes are ordinary characters
    ],
)
def test_ameba_split(args, fields):
    assert ameba_split(args) == fields


@pytest.mark.parametrize(
    ("args", "fields"),
    [
        (b"0,5,,,hello", [b"0", b"5", b"", b"", b"hello"]),
        (b"0,5,a\\,b", [b"0", b"5", b"a,b"]),
        (b"a\\\\,b", [b"a\\", b"b"]),  # \\ is a backslash; the comma after it splits
        (b"a\\\\\\,b", [b"a\\,b"]),
        (
            b"Sec-WebSocket-Protocol: chat\\, superchat",
            [b"Sec-WebSocket-Protocol: chat, superchat"],
        ),
        (b"", [b""]),
        (b"x,,", [b"x", b"", b""]),
        (b'"q"', [b'"q"']),
    ],
)
def test_ameba_split_escaped(args, fields):
    assert ameba_split_escaped(args) == fields


@pytest.mark.parametrize("args", [b"a\\n", b"a\\", b'\\"', b"0,\\x41", b"\\ "])
def test_ameba_split_escaped_rejects_other_escapes(args):
    with pytest.raises(GrammarError):
        ameba_split_escaped(args)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (None, 0),
        (b"", 0),
        (b"42", 42),
        (b"  42", 42),
        (b" \t\n\v\f\r7", 7),
        (b"-3", -3),
        (b"+5", 5),
        (b"12abc", 12),  # trailing junk ignored
        (b"1 2", 1),
        (b"abc", 0),  # junk reads as 0
        (b'"5"', 0),
        (b"0x10", 0),  # no hex
        (b"- 5", 0),
        (b"+-5", 0),
        (b"007", 7),
        (b"99999999999", INT32_MAX),  # strtol saturates
        (b"-99999999999", INT32_MIN),
    ],
)
def test_ameba_atoi(field, value):
    assert ameba_atoi(field) == value


# -- ESP-AT command lines ----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name", "form", "args"),
    [
        (b"AT", "", Form.EXECUTE, None),
        (b"at", "", Form.EXECUTE, None),
        (b"aT", "", Form.EXECUTE, None),
        (b"AT+GMR", "+GMR", Form.EXECUTE, None),
        (b"at+gmr", "+GMR", Form.EXECUTE, None),
        (b"At+GmR", "+GMR", Form.EXECUTE, None),
        (b"ATE0", "E0", Form.EXECUTE, None),
        (b"ate1", "E1", Form.EXECUTE, None),
        (b"AT+SYSLOG?", "+SYSLOG", Form.QUERY, None),
        (b"AT+SYSLOG=?", "+SYSLOG", Form.TEST, None),
        (b"AT+SYSLOG=1", "+SYSLOG", Form.SET, b"1"),
        (b"AT+SYSLOG=", "+SYSLOG", Form.SET, b""),
        (b"AT+SYSLOG=?1", "+SYSLOG", Form.SET, b"?1"),  # "=" starts the parameters
        (b'AT+SYSLOG="a,b"\\,c', "+SYSLOG", Form.SET, b'"a,b"\\,c'),
        (b"AT+CMD?", "+CMD", Form.QUERY, None),
    ],
)
def test_esp_parse(line, name, form, args):
    parsed = ESP.parse(line)
    assert isinstance(parsed, Invocation)
    assert parsed.spec.name == name
    assert (parsed.form, parsed.args) == (form, args)


@pytest.mark.parametrize(
    "line",
    [
        b"AT+NOPE",
        b"AT+NOPE=1",
        b"AT+NOPE?",
        b"AT+GMRX",
        b"ATE2",
    ],
)
def test_esp_parse_unknown_command(line):
    parsed = ESP.parse(line)
    assert isinstance(parsed, Unknown)
    assert parsed.err_code == ERR_UNKNOWN_COMMAND == 0x01090000
    assert parsed.line == line


@pytest.mark.parametrize(
    "line",
    [
        b"AT+GMR?x",  # "?" must be followed directly by the end of the line
        b"AT+SYSLOG?=1",
        b"AT+GMR ",
        b" AT+GMR",
        b"AT+GMR\r",
        b"",  # a bare CRLF
        b"A",
        b"XT+GMR",
        b"+GMR",
    ],
)
def test_esp_parse_malformed(line):
    assert isinstance(ESP.parse(line), Unknown)


# -- Ameba command lines -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name", "form", "args"),
    [
        (b"AT+TEST", "+TEST", Form.EXECUTE, None),
        (b"AT+TEST=0,x", "+TEST", Form.SET, b"0,x"),
        (b"AT+TEST=", "+TEST", Form.SET, b""),  # empty, not absent
        (b"AT+TEST=0,a=b", "+TEST", Form.SET, b"0,a=b"),  # split at the first "="
        (b"AT+TEST=?", "+TEST", Form.SET, b"?"),  # no query/test forms
        (b"AT+LIST", "+LIST", Form.EXECUTE, None),
        (b"AT+LIST=whatever", "+LIST", Form.EXECUTE, None),  # no set form: args ignored
        (b"AT+GMR", "+GMR", Form.EXECUTE, None),
        (b"AT+RST", "+RST", Form.EXECUTE, None),
    ],
)
def test_ameba_parse(line, name, form, args):
    parsed = AMEBA.parse(line)
    assert isinstance(parsed, Invocation)
    assert parsed.spec.name == name
    assert (parsed.form, parsed.args) == (form, args)


@pytest.mark.parametrize(
    "line",
    [
        b"at+test",  # keys are case-sensitive
        b"AT+test",
        b"At+TEST",
        b"AT",  # bare AT is not a command on Ameba
        b"AT+",
        b"AT=1",
        b"AT+TEST?",
        b"AT+TESTX",
        b" AT+TEST",
        b"AT+TEST ",
        b"",
        b"AT+NOPE=1",
    ],
)
def test_ameba_parse_unknown(line):
    parsed = AMEBA.parse(line)
    assert isinstance(parsed, Unknown)
    assert parsed.line == line
