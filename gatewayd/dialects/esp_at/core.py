"""ESP-AT basic commands: AT, ATE0/ATE1, AT+RST, AT+RESTORE, AT+GMR, AT+CMD?,
AT+SYSLOG, AT+RFPOWER.

AT+RST and AT+RESTORE answer OK, then the port reboots: silent for its
``boot_time``, then ``ready`` (:class:`gatewayd.session.port.PortSession`).
"""

from __future__ import annotations

from gatewayd import BUILD_DATE, BUILD_TIME, __version__
from gatewayd.config import UartSettings
from gatewayd.dialects.base import AtError, CommandSpec, Int, PortContext, Setter
from gatewayd.dialects.esp_at.limits import AT_VERSION

#: AT+GMR, modelled on an ESP-AT v4.1 build (the first with WSCFG auth modes);
#: the version is :data:`~gatewayd.dialects.esp_at.limits.AT_VERSION`.
_VERSION = ".".join(map(str, AT_VERSION))
GMR_LINES = (
    f"AT version:{_VERSION}(gatewayd-{__version__} - ESP32 - {BUILD_DATE} {BUILD_TIME})\r\n"
    f"SDK version:v5.0.8-gatewayd\r\n"
    f"compile time(gatewayd):{BUILD_DATE} {BUILD_TIME}\r\n"
    f"Bin version:{_VERSION.rsplit('.', 1)[0]}(gatewayd)\r\n"
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
    """Factory reset: what the port keeps in flash (AT+UART_DEF) is erased,
    then a restart as AT+RST, at the config's line settings; the host is never
    touched."""
    ctx.store.clear()
    ctx.restart_after_reply()


# -- AT+UART_CUR / AT+UART_DEF (AT+UART is AT+UART_DEF) --------------------

_STOPBITS = {1: 1, 2: 1.5, 3: 2}
_PARITY = {0: "N", 1: "O", 2: "E"}
#: Flow control numbers: 0 none, 1 RTS, 2 CTS, 3 both. The host's serial
#: driver has RTS/CTS only together: 3 switches it on, 1 and 2 are reported
#: as set but leave it off.
_FLOW_KEY = "esp_at_uart_flow"
_UART_PARAMS = (Int("baudrate", lo=80, hi=5_000_000), Int("databits", lo=5, hi=8),
                Int("stopbits", lo=1, hi=3), Int("parity", lo=0, hi=2),
                Int("flow_control", lo=0, hi=3))


def _uart_line(prefix: bytes, settings: UartSettings, flow: int | None) -> bytes:
    stopbits = next(n for n, bits in _STOPBITS.items() if bits == settings.stopbits)
    parity = next((n for n, p in _PARITY.items() if p == settings.parity), 0)
    if flow is None:
        flow = 3 if settings.rtscts else 0
    return b"%s:%d,%d,%d,%d,%d\r\n" % (prefix, settings.baudrate, settings.bytesize, stopbits,
                                         parity, flow)


def _settings(baudrate: int, databits: int, stopbits: int, parity: int,
              flow: int) -> UartSettings:
    return UartSettings(baudrate=baudrate, bytesize=databits, parity=_PARITY[parity],
                        stopbits=_STOPBITS[stopbits], rtscts=flow == 3)


async def uart_cur_set(ctx: PortContext, *values: int) -> None:
    ctx.state.uart_flow = values[4]
    ctx.set_uart(_settings(*values))


async def uart_cur_query(ctx: PortContext) -> None:
    flow = ctx.state.uart_flow
    if flow is None:  # since boot: the stored default's
        flow = ctx.store.get(_FLOW_KEY)
    ctx.write(_uart_line(b"+UART_CUR", ctx.uart_settings, flow))


async def uart_def_set(ctx: PortContext, *values: int) -> None:
    ctx.state.uart_flow = values[4]
    ctx.set_uart(_settings(*values), store=True)
    ctx.store.set(_FLOW_KEY, values[4])


async def uart_def_query(ctx: PortContext) -> None:
    ctx.write(_uart_line(b"+UART_DEF", ctx.boot_uart_settings, ctx.store.get(_FLOW_KEY)))


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


async def sysstore_query(ctx: PortContext) -> None:
    ctx.write(b"+SYSSTORE:%d\r\n" % ctx.state.sysstore)


async def sysstore_set(ctx: PortContext, mode: int) -> None:
    ctx.state.sysstore = bool(mode)


async def gslp(ctx: PortContext, ms: int) -> None:
    """Deep sleep: OK, every link dropped, silent for *ms*, then ``ready``."""
    ctx.restart_after_reply(boot_time=ms / 1000)


async def sleep_query(ctx: PortContext) -> None:
    ctx.write(b"+SLEEP:%d\r\n" % ctx.state.wifi.sleep)


async def sleep_set(ctx: PortContext, mode: int) -> None:
    softap = ctx.state.wifi.mode in (2, 3)
    if softap and mode in (1, 2, 3):
        raise AtError(why="sleep modes need station-only mode (AT+CWMODE=1)")
    ctx.state.wifi.sleep = mode


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
    CommandSpec("+SYSSTORE", "whether set commands are also kept in the port's state file",
                query=sysstore_query, set=Setter(sysstore_set, (Int("mode", lo=0, hi=1),))),
    CommandSpec("+GSLP", "deep sleep: links dropped, silent for <ms>, then ready",
                set=Setter(gslp, (Int("time", lo=0, hi=2**31 - 1),))),
    CommandSpec("+SLEEP", "sleep mode: stored and reported", query=sleep_query,
                set=Setter(sleep_set, (Int("sleep_mode", lo=0, hi=3),))),
    CommandSpec("+RESTORE", "factory reset (gatewayd's settings for the port), then restart",
                execute=restore),
    CommandSpec("+UART_CUR", "line settings now; the serial port switches after OK",
                query=uart_cur_query, set=Setter(uart_cur_set, _UART_PARAMS)),
    CommandSpec("+UART_DEF", "line settings now and at every boot (kept across restarts)",
                query=uart_def_query, set=Setter(uart_def_set, _UART_PARAMS)),
    CommandSpec("+UART", "AT+UART_DEF by its older name", set=Setter(uart_def_set, _UART_PARAMS)),
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
