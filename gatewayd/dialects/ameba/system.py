"""Ameba's remaining system commands: AT+RREG, AT+WREG, AT+LOG, AT+TICKPS,
AT+STATE, AT+CPULOAD (``atcmd_sys_common.c``), AT+OTACLEAR, AT+OTARECOVER,
AT+UART (``atcmd_sys.c``).

Bytes and error numbers follow ``shared/reference/ameba-wifi-network.md`` §5.
There is no chip behind them, so:

- AT+RREG/AT+WREG check their field count and answer OK; the firmware's dump
  goes to its log UART, gatewayd logs the request. No memory is read or written.
- AT+LOG keeps the MCU's log levels per tag (RAM; a restart resets them);
  they change nothing in gatewayd's own log.
- AT+STATE prints fixed heap figures (:data:`HEAP`) and no task list (the
  firmware prints one only when built with its trace facility).
- AT+CPULOAD's table shows gatewayd's own CPU use since the last baseline as
  the ``at_cmd`` task and the rest as ``IDLE``.
- AT+TICKPS answers nothing at all, as the module (no OK, no ERROR); no
  sleep is entered.
- AT+OTACLEAR/AT+OTARECOVER answer OK and change nothing.
- AT+UART switches the line before its OK (the OK arrives at the new rate);
  with ``<store>`` 1 the rate is also the one the module boots with, kept in
  the port's state file (``ctx.store``), so it survives AT+RST and a daemon
  restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field

from gatewayd.at.grammar import ameba_atoi
from gatewayd.dialects.ameba.fields import field_count, fields_setter, missing
from gatewayd.dialects.base import AtError, CommandSpec, PortContext

__all__ = ["AP_COMMANDS", "COMMON_COMMANDS", "SystemState"]

COMMON = "Common AT Command:"
AP_COMMON = "AP Common AT Command:"

#: AT+UART's range (inclusive).
BAUD_MIN, BAUD_MAX = 4800, 6_000_000
#: AT+LOG: levels 0 (none) .. 5 (debug); a tag never set has the build's default (info).
LOG_LEVEL_MAX = 5
LOG_DEFAULT_LEVEL = 4
#: AT+STATE's figures: total, free now, used now, used at most (bytes).
HEAP = (393216, 327680, 65536, 98304)
#: AT+CPULOAD defaults: seconds between tables, how many (-1: until mode 1).
CPULOAD_INTERVAL = 1
CPULOAD_COUNT = -1


@dataclass
class SystemState:
    """The system commands' RAM state (a restart resets it)."""

    log_levels: dict[bytes, int] = field(default_factory=dict)
    log_default: int = LOG_DEFAULT_LEVEL
    #: AT+CPULOAD's baseline: (wall clock, gatewayd's CPU time), both in s.
    cpu_baseline: tuple[float, float] = field(
        default_factory=lambda: (time.monotonic(), time.process_time()))
    #: Bumped to end a running AT+CPULOAD=0 task.
    cpuload_generation: int = 0


# -- AT+RREG, AT+WREG, AT+OTACLEAR, AT+OTARECOVER, AT+TICKPS ----------------------------


async def rreg(ctx: PortContext, *fields: bytes | None) -> None:
    if not 1 <= field_count(fields) <= 3:
        raise AtError(1, why="AT+RREG=<addr>[,<len>[,b]]")
    ctx.log.info("register read not done: there is no chip", address=_text(fields[0]))


async def wreg(ctx: PortContext, *fields: bytes | None) -> None:
    if field_count(fields) != 2:
        raise AtError(1, why="AT+WREG=<addr>,<value>")
    ctx.log.info("register write not done: there is no chip", address=_text(fields[0]))


async def ota_signature(ctx: PortContext) -> None:
    ctx.log.info("OTA image signature left alone: there is no flash")


async def tickps(ctx: PortContext, *fields: bytes | None) -> bytes:
    """The firmware prints nothing on the host link, whatever the arguments."""
    ctx.log.info("sleep request ignored", request=_text(fields[0]) if fields else "")
    return b""


async def tickps_bare(ctx: PortContext) -> bytes:
    return await tickps(ctx)


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "surrogateescape")[:40]


# -- AT+LOG -------------------------------------------------------------------------


async def log_level(ctx: PortContext, *fields: bytes | None) -> None:
    system: SystemState = ctx.state.system
    count, op = field_count(fields), fields[0]
    tag = fields[1] or b""
    if op == b"0" and count == 2 and tag:
        level = system.log_levels.get(tag, system.log_default)
        ctx.write(b"<%s> level is %d\r\n" % (tag, level))
    elif op == b"1" and count == 3 and tag:
        level = ameba_atoi(fields[2] or b"")
        if not 0 <= level <= LOG_LEVEL_MAX:
            raise AtError(2, why=f"level outside 0..{LOG_LEVEL_MAX}")
        if tag == b"*":
            system.log_default = level
            system.log_levels.clear()
        else:
            system.log_levels[tag] = level
    elif op == b"2" and count == 1:
        ctx.log.info("module log levels", default=system.log_default,
                     **{_text(t): lv for t, lv in system.log_levels.items()})
    elif op == b"3" and count == 1:
        system.log_levels.clear()
    else:
        raise AtError(1, why="AT+LOG=0,<tag> | 1,<tag>,<level> | 2 | 3")


# -- AT+STATE, AT+CPULOAD -------------------------------------------------------------


async def state(ctx: PortContext) -> None:
    ctx.write(b"HeapStats: \r\nTotal Heap:\t%u\r\nHeap Free Now:\t%u\r\n"
              b"Heap Used Now:\t%u\r\nHeap Used Max:\t%u\r\n" % HEAP)


def _cpu_table(system: SystemState) -> bytes:
    wall0, cpu0 = system.cpu_baseline
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    busy = min(10000, round(10000 * cpu / wall)) if wall > 0 else 0  # hundredths of %
    rows = ((b"at_cmd", b"R", 5, busy), (b"IDLE", b"R", 0, 10000 - busy))
    return b"task name\tstate\tprio\tCPU%\n\r" + b"".join(
        b"%s\t%s\t%d\t%d.%02d\r\n" % (name, st, prio, pct // 100, pct % 100)
        for name, st, prio, pct in rows)


async def cpuload(ctx: PortContext, *fields: bytes | None) -> None:
    count = field_count(fields)
    if count > 3:
        raise AtError(1, why="AT+CPULOAD=<mode>[,<interval>][,<count>]")
    mode = ameba_atoi(fields[0] or b"")
    interval = ameba_atoi(fields[1]) if fields[1] else CPULOAD_INTERVAL
    times = ameba_atoi(fields[2]) if fields[2] else CPULOAD_COUNT
    ctx.write(b"current mode: %d time: %d(s) count: %d (-1 for infinite)\r\n"
              % (mode, interval, times))
    system: SystemState = ctx.state.system
    if mode == 0:
        system.cpuload_generation += 1
        ctx.spawn(_cpuload_task(ctx, system, max(1, interval), times))
    elif mode == 1:
        system.cpuload_generation += 1
    elif mode == 2:
        system.cpu_baseline = (time.monotonic(), time.process_time())
    elif mode == 3:
        ctx.write(_cpu_table(system))
    else:
        raise AtError(3, why="mode 0..3")


async def _cpuload_task(ctx: PortContext, system: SystemState, interval: int,
                        times: int) -> None:
    """A table every *interval* s, *times* times (negative: until stopped),
    unsolicited and without ``[$]``, as the firmware's statistics task."""
    generation = system.cpuload_generation
    while times != 0:
        await asyncio.sleep(interval)
        if ctx.state.system is not system or system.cpuload_generation != generation:
            return
        ctx.unsolicited(_cpu_table(system))
        times -= 1 if times > 0 else 0


# -- AT+UART ---------------------------------------------------------------------------


async def uart(ctx: PortContext, *fields: bytes | None) -> None:
    if field_count(fields) != 2:
        raise AtError(1, why="AT+UART=<store 0|1>,<baudrate>")
    baudrate = ameba_atoi(fields[1] or b"")
    if not BAUD_MIN <= baudrate <= BAUD_MAX:
        raise AtError(1, why=f"baudrate outside {BAUD_MIN}..{BAUD_MAX}")
    settings = dataclasses.replace(ctx.uart_settings, baudrate=baudrate)
    ctx.set_uart(settings, store=ameba_atoi(fields[0] or b"") == 1, before_reply=True)


COMMON_COMMANDS = {
    "+RREG": CommandSpec("+RREG", "read a register (accepted; there is no chip)",
                         execute=missing, set=fields_setter(rreg), section=COMMON),
    "+WREG": CommandSpec("+WREG", "write a register (accepted; there is no chip)",
                         execute=missing, set=fields_setter(wreg), section=COMMON),
    "+LOG": CommandSpec("+LOG", "the module's log levels per tag (kept, not applied)",
                        execute=missing, set=fields_setter(log_level), section=COMMON),
    "+TICKPS": CommandSpec("+TICKPS", "sleep control: answers nothing, as the module",
                           execute=tickps_bare, set=fields_setter(tickps), section=COMMON),
    "+STATE": CommandSpec("+STATE", "heap statistics", execute=state, section=COMMON),
    "+CPULOAD": CommandSpec("+CPULOAD", "CPU use table (gatewayd's own)",
                            execute=missing, set=fields_setter(cpuload), section=COMMON),
}
AP_COMMANDS = {
    "+OTACLEAR": CommandSpec("+OTACLEAR", "clear the OTA2 signature (no effect)",
                             execute=ota_signature, section=AP_COMMON),
    "+OTARECOVER": CommandSpec("+OTARECOVER", "restore the OTA2 signature (no effect)",
                               execute=ota_signature, section=AP_COMMON),
    "+UART": CommandSpec("+UART", "baud rate: OK at the new rate; <store> 1 keeps it",
                         execute=missing, set=fields_setter(uart), section=AP_COMMON),
}
