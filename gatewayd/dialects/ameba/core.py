"""Ameba system commands: AT+TEST, AT+LIST, AT+GMR, AT+RST, and the table of
both system groups in the firmware's order (the other system commands are in
:mod:`gatewayd.dialects.ameba.system`)."""

from __future__ import annotations

from gatewayd import BUILD_DATE, BUILD_TIME, __version__
from gatewayd.at.grammar import ameba_atoi
from gatewayd.dialects.ameba import system
from gatewayd.dialects.ameba.system import AP_COMMON, COMMON
from gatewayd.dialects.ameba.tt import read_block
from gatewayd.dialects.base import AtError, CommandSpec, Int, PortContext, Raw, Setter

#: AT+GMR. The SDK line ends in LF only, as the firmware prints it.
GMR_LINES = (
    b"AMEBA-RTOS SDK VERSION: 1.1.0\n"
    b"ATCMD VERSION: 2.0.0\r\n"
    b"IMAGE VERSION: 1.0\r\n"
    b"amebadplus: 6761746577\r\n"
    + f"COMPILE TIME: {BUILD_DATE} {BUILD_TIME}\r\n".encode()
    + f"COMPILE USER: gatewayd@gatewayd-{__version__}\r\n".encode()
    + b"COMPILE ENV : gatewayd\r\n"
)

#: AT+TEST=2,<len> writes this pattern, repeated, as its downstream test data.
DOWNSTREAM_PATTERN = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DOWNSTREAM_CHUNK = 4096
#: Largest AT+TEST=1/2 length accepted (the firmware's TT ring is 80 KB).
TEST_MAX_LEN = 80 * 1024


async def test_alive(ctx: PortContext) -> None:
    return None


async def test_modes(ctx: PortContext, mode: int, arg: bytes) -> None:
    if mode == 0:
        ctx.write(b"\r\n arg len = %d \r\n\r\n arg = %s \r\n" % (len(arg), arg))
        return
    length = ameba_atoi(arg)
    if not 1 <= length <= TEST_MAX_LEN:
        raise AtError(1, why=f"length {length} outside 1..{TEST_MAX_LEN}")
    if mode == 1:
        await read_block(ctx, length)
    else:
        reps = -(-length // len(DOWNSTREAM_PATTERN))
        data = (DOWNSTREAM_PATTERN * reps)[:length]
        for start in range(0, length, DOWNSTREAM_CHUNK):
            await ctx.writable()
            ctx.write(data[start : start + DOWNSTREAM_CHUNK])


async def list_commands(ctx: PortContext) -> None:
    sections: dict[str, list[str]] = {}
    for spec in ctx.dialect.commands.values():
        if not ctx.dialect.available(spec, ctx.config):
            continue
        sections.setdefault(spec.section, []).append(spec.name)
    out = []
    for section, names in sections.items():
        out.append(f"{section}\r\n")
        out.extend(f"AT{name}\r\n" for name in names)
    ctx.write("".join(out).encode())


async def version(ctx: PortContext) -> None:
    ctx.write(GMR_LINES)


async def restart(ctx: PortContext) -> None:
    ctx.restart_after_reply()


_COMMANDS = {
    **system.COMMON_COMMANDS,
    **system.AP_COMMANDS,
    "+RST": CommandSpec("+RST", "restart: close every link, then print ATCMD READY",
                        execute=restart, section=COMMON),
    "+GMR": CommandSpec("+GMR", "version information", execute=version, section=AP_COMMON),
    "+TEST": CommandSpec(
        "+TEST",
        "liveness probe; =0,<str> echoes, =1,<len> TT upload, =2,<len> downstream",
        execute=test_alive,
        set=Setter(test_modes, (Int("mode", default=0, lo=0, hi=2), Raw("arg", default=b""))),
        section=AP_COMMON,
    ),
    "+LIST": CommandSpec("+LIST", "list the supported commands", execute=list_commands,
                         section=AP_COMMON),
}
#: AT+LIST order (2.x ``atcmd_sys_common.c`` then ``atcmd_sys.c``, reference
#: ameba-wifi-network.md §5).
ORDER = ("+RREG", "+WREG", "+RST", "+LOG", "+TICKPS", "+STATE", "+CPULOAD",
         "+OTACLEAR", "+OTARECOVER", "+TEST", "+LIST", "+GMR", "+UART")
COMMANDS = tuple(_COMMANDS[name] for name in ORDER)
