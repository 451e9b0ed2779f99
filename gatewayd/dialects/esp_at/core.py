"""ESP-AT basic commands: AT, ATE0/ATE1, AT+RST, AT+RESTORE, AT+GMR, AT+CMD?,
AT+SYSLOG, AT+RFPOWER.

AT+RST and AT+RESTORE answer OK, then the port reboots: silent for its
``boot_time``, then ``ready`` (:class:`gatewayd.session.port.PortSession`).
"""

from __future__ import annotations

from gatewayd import BUILD_DATE, BUILD_TIME, __version__
from gatewayd.dialects.base import AtError, CommandSpec, Int, PortContext, Setter

#: AT+GMR, modelled on an ESP-AT v4.1 build (the first with WSCFG auth modes).
GMR_LINES = (
    f"AT version:4.1.1.0(gatewayd-{__version__} - ESP32 - {BUILD_DATE} {BUILD_TIME})\r\n"
    f"SDK version:v5.0.8-gatewayd\r\n"
    f"compile time(gatewayd):{BUILD_DATE} {BUILD_TIME}\r\n"
    f"Bin version:4.1.1(gatewayd)\r\n"
).encode()


async def at(ctx: PortContext) -> None:
    return None


async def echo_off(ctx: PortContext) -> None:
    ctx.set_echo(False)


async def echo_on(ctx: PortContext) -> None:
    ctx.set_echo(True)


async def restart(ctx: PortContext) -> None:
    ctx.restart_after_reply()


async def restore(ctx: PortContext) -> None:
    """Factory reset: gatewayd keeps no ESP-AT setting beyond a restart yet,
    so this restarts as AT+RST does; the host is never touched."""
    ctx.restart_after_reply()


#: AT+RFPOWER? reports the level an ESP32 applies for a set value (0.25 dBm units).
_WIFI_POWER_LEVELS = ((78, 78), (72, 72), (66, 66), (60, 60), (56, 56), (52, 52), (44, 44),
                      (40, 34))


async def rfpower_set(ctx: PortContext, wifi_power: int, *ble: int | None) -> None:
    if any(level is not None for level in ble):
        # As on a module whose Bluetooth LE is not initialised (gatewayd has none).
        raise AtError(why="Bluetooth LE is not initialised: no BLE power to set")
    ctx.state.rf_power = next(got for floor, got in _WIFI_POWER_LEVELS if wifi_power >= floor)


async def rfpower_query(ctx: PortContext) -> None:
    ctx.write(b"+RFPOWER:%d,0,0,0\r\n" % ctx.state.rf_power)


async def version(ctx: PortContext) -> None:
    ctx.write(GMR_LINES)


async def list_commands(ctx: PortContext) -> None:
    lines = []
    for index, spec in enumerate(ctx.dialect.commands.values()):
        flags = (spec.test, spec.query, spec.set, spec.execute)
        support = ",".join("1" if f is not None else "0" for f in flags)
        lines.append(f'+CMD:{index},"AT{spec.name}",{support}\r\n')
    ctx.write("".join(lines).encode())


async def syslog_query(ctx: PortContext) -> None:
    ctx.write(b"+SYSLOG:%d\r\n" % ctx.state.syslog)


async def syslog_set(ctx: PortContext, status: int) -> None:
    ctx.state.syslog = bool(status)


COMMANDS = (
    CommandSpec("", "test the AT startup", execute=at),
    CommandSpec("E0", "echo off", execute=echo_off),
    CommandSpec("E1", "echo on", execute=echo_on),
    CommandSpec("+RST", "restart: close every link, then print ready", execute=restart),
    CommandSpec("+GMR", "version information", execute=version),
    CommandSpec("+CMD", "list the supported commands", query=list_commands),
    CommandSpec(
        "+SYSLOG",
        "print ERR CODE lines before ERROR",
        query=syslog_query,
        set=Setter(syslog_set, (Int("status", lo=0, hi=1),)),
    ),
    CommandSpec("+RESTORE", "factory reset (gatewayd's settings for the port), then restart",
                execute=restore),
    CommandSpec(
        "+RFPOWER",
        "RF TX power: stored and reported, the host's radio is never changed",
        query=rfpower_query,
        set=Setter(rfpower_set, (Int("wifi_power", lo=40, hi=84),
                                 *(Int(name, default=None, lo=0, hi=7)
                                   for name in ("ble_adv_power", "ble_scan_power",
                                                "ble_conn_power")))),
    ),
)
