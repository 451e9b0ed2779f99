"""Benchmark gatewayd as the MCU sees it: start-up, memory, AT round trips, idle CPU.

Prints one plain-text table. Nothing here asserts on timing: the figures are
for a reader to compare with the targets from the issue (p99 < 1 ms,
start-to-ready within 5x `python -c pass`, RSS < 32 MB at READY=1 and < 36 MB
once the transports are loaded), which are printed beside them.

gatewayd's own modules are byte-compiled first (``compileall``), as pip and
the .deb install them: with ``PYTHONDONTWRITEBYTECODE`` set (as on some
build machines) every start would otherwise compile them from source again,
about 100 ms here, and time that no installed daemon spends.

What is measured, and how:

1. Start-up. ``python -m gatewayd run --device pty:<tmp>/ttyAT0 --log-level
   warning`` is spawned five times (with :class:`GatewaydProcess`, which gives
   the child a unix datagram socket as ``NOTIFY_SOCKET``). For each start we
   time spawn -> ``READY=1`` and spawn -> the pty symlink exists (polled every
   millisecond); the table shows medians. Baseline, same run, same
   interpreter: spawn -> exit of ``python -c pass``, i.e. bare interpreter
   start-up.
2. Resident memory: ``VmRSS`` from ``/proc/<pid>/status`` of the last daemon
   right after ``READY=1`` and again after the round trips.
3. AT round trip over the pty. The benchmark process opens the symlink in
   raw mode and runs a plain blocking ``os.write``/``os.read`` loop (every
   read is guarded by ``select()`` with a timeout): esp-at sends ``ATE0``
   first, then ``AT\\r\\n`` N times; ameba sends ``AT+TEST\\r\\n`` N times.
   Each round trip is timed from the write until the complete
   ``\\r\\nOK\\r\\n`` has been read. A few warm-up round trips are not
   counted. Baseline, same run, same client loop: a bare Python child that
   reads its end of a pty and writes ``\\r\\nOK\\r\\n`` for every ``\\r\\n``,
   which is the floor set by the pty and by Python itself.
4. Idle CPU: ``utime + stime`` from ``/proc/<pid>/stat`` over 1.0 s of
   idleness after the round trips, as ms of CPU per second. Those counters
   tick in 1/``SC_CLK_TCK`` s (usually 10 ms), so the main thread's
   ``/proc/<pid>/schedstat`` (nanoseconds) is shown too where it exists.

Finally the daemon gets SIGTERM and its exit code is reported. Every wait is
bounded; a daemon that does not answer in time aborts the run.

Usage: ``.venv/bin/python bench/at_roundtrip.py [--count N] [--dialect esp-at|ameba]``
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import termios
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

from ws_echo import compile_gatewayd

from gatewayd.testing.virtual_mcu import GatewaydProcess

STARTS = 5
WARMUP = 100
IDLE_SECONDS = 1.0
READY_TIMEOUT = 10.0  # s, per start
REPLY_TIMEOUT = 2.0  # s, per read of a reply
STOP_TIMEOUT = 5.0  # s, SIGTERM -> exit
OK = b"\r\nOK\r\n"

#: Per dialect: the banner written when the port opens, the set-up exchange,
#: and the request whose reply must be exactly ``OK``.
DIALECTS = {
    "esp-at": {"banner": b"\r\nready\r\n", "setup": b"ATE0\r\n", "request": b"AT\r\n"},
    "ameba": {"banner": b"ATCMD READY\r\n", "setup": None, "request": b"AT+TEST\r\n"},
}

#: The baseline responder: one OK per CRLF, blocking reads, exits on EOF/EIO.
ECHO_RESPONDER = r"""
import os, sys
fd = int(sys.argv[1])
tail = b""
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    data = tail + data
    n = data.count(b"\r\n")
    tail = data[-1:] if data.endswith(b"\r") else b""
    if n:
        os.write(fd, b"\r\nOK\r\n" * n)
"""


# -- small helpers ------------------------------------------------------------


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e3


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def rss_mb(pid: int) -> float:
    """VmRSS of *pid* in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_ticks(pid: int) -> int:
    """utime + stime of *pid*, in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)


def sched_ns(pid: int) -> int | None:
    """Time on CPU of *pid*'s main thread in ns, if the kernel keeps it (a
    process that has run a while reads 0 where it does not)."""
    try:
        ns = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return ns or None


# -- the MCU side: a blocking raw-mode client -----------------------------------


def read_until(fd: int, marker: bytes, timeout: float = REPLY_TIMEOUT) -> bytes:
    """Read from *fd* until the data ends with *marker*; bounded by *timeout*."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(marker):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"no {marker!r} within {timeout} s; got {data!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise EOFError(f"pty closed; got {data!r}")
        data += chunk
    return data


def round_trips(fd: int, request: bytes, count: int, warmup: int = WARMUP) -> list[float]:
    """Send *request* ``warmup + count`` times, each time waiting for exactly
    ``OK``; return the last *count* round trips in microseconds."""
    times: list[float] = []
    for i in range(warmup + count):
        start = time.perf_counter_ns()
        os.write(fd, request)
        reply = read_until(fd, OK)
        elapsed = time.perf_counter_ns() - start
        if reply != OK:
            raise RuntimeError(f"unexpected reply to {request!r}: {reply!r}")
        if i >= warmup:
            times.append(elapsed / 1e3)
    return times


def open_raw(path: str | os.PathLike[str]) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd, termios.TCSANOW)
    return fd


# -- baselines ---------------------------------------------------------------------


async def interpreter_start(runs: int = STARTS) -> float:
    """Median seconds from spawn to exit of ``python -c pass``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await asyncio.wait_for(proc.wait(), READY_TIMEOUT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def echo_round_trips(request: bytes, count: int) -> list[float]:
    """Round trips through the bare Python pty responder, in microseconds."""
    responder_fd, client_fd = os.openpty()
    for fd in (responder_fd, client_fd):
        tty.setraw(fd, termios.TCSANOW)
    child = subprocess.Popen([sys.executable, "-c", ECHO_RESPONDER, str(responder_fd)],
                             pass_fds=[responder_fd])
    os.close(responder_fd)
    try:
        return round_trips(client_fd, request, count)
    finally:
        os.close(client_fd)  # the responder reads EOF/EIO and exits
        try:
            child.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=STOP_TIMEOUT)


# -- the daemon ------------------------------------------------------------------


@dataclass
class Startup:
    ready: list[float] = field(default_factory=list)  # s, spawn -> READY=1
    symlink: list[float] = field(default_factory=list)  # s, spawn -> symlink exists


async def wait_for_path(path: Path, timeout: float) -> None:
    """Bounded poll (1 ms): a symlink's appearance has no event to await."""
    async with asyncio.timeout(timeout):
        while not path.is_symlink():
            await asyncio.sleep(0.001)


async def wait_ready(gateway: GatewaydProcess) -> None:
    """Await ``READY=1``; fail early, with the daemon's stderr, if it exits."""
    assert gateway.proc is not None
    ready = asyncio.create_task(gateway.wait_for("READY=1", READY_TIMEOUT))
    exited = asyncio.create_task(gateway.proc.wait())
    done, _ = await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
    if ready in done:
        exited.cancel()
        ready.result()  # raises TimeoutError if READY=1 never came
        return
    ready.cancel()
    _, err = await asyncio.wait_for(gateway.proc.communicate(), STOP_TIMEOUT)
    raise RuntimeError(f"gatewayd exited with {gateway.proc.returncode} before READY=1:\n"
                       f"{err.decode(errors='replace')}")


async def start_daemon(workdir: Path, dialect: str, loop: str,
                       startup: Startup) -> GatewaydProcess:
    """Spawn gatewayd on ``pty:<workdir>/ttyAT0`` with ``[daemon] event_loop``
    *loop*; record its start-up times."""
    link = workdir / "ttyAT0"
    config = workdir / "loop.toml"
    config.write_text(f'[daemon]\nevent_loop = "{loop}"\n')
    gateway = GatewaydProcess(
        ["run", "-c", str(config), "--device", f"pty:{link}", "--dialect", dialect,
         "--log-level", "warning"], cwd=workdir)
    start = time.perf_counter()

    async def symlink_seen() -> float:
        await wait_for_path(link, READY_TIMEOUT)
        return time.perf_counter() - start

    try:
        await gateway.start()
        symlink_task = asyncio.create_task(symlink_seen())
        try:
            await wait_ready(gateway)
            startup.ready.append(time.perf_counter() - start)
            startup.symlink.append(await symlink_task)  # published before READY=1
        finally:
            symlink_task.cancel()
    except BaseException:
        await gateway.__aexit__()  # kills the child, removes the notify socket
        raise
    return gateway


async def stop_daemon(gateway: GatewaydProcess) -> int:
    """SIGTERM, bounded wait; the exit code."""
    try:
        code, _ = await gateway.stop(STOP_TIMEOUT)
    finally:
        await gateway.__aexit__()
    return code


def idle_cpu(pid: int, seconds: float = IDLE_SECONDS) -> tuple[float, float | None]:
    """ms of CPU per second over *seconds* of idleness: (stat ticks, schedstat)."""
    hz = os.sysconf("SC_CLK_TCK")
    ticks, ns = cpu_ticks(pid), sched_ns(pid)
    start = time.perf_counter()
    time.sleep(seconds)
    wall = time.perf_counter() - start
    by_ticks = (cpu_ticks(pid) - ticks) / hz * 1e3 / wall
    end_ns = sched_ns(pid)
    by_sched = (end_ns - ns) / 1e6 / wall if ns is not None and end_ns is not None else None
    return by_ticks, by_sched


def talk_to_daemon(link: Path, dialect: str, count: int) -> list[float]:
    """Open the pty, read the banner, set up, then time the round trips (us)."""
    spec = DIALECTS[dialect]
    fd = open_raw(link)
    try:
        read_until(fd, spec["banner"])
        if spec["setup"]:
            os.write(fd, spec["setup"])
            read_until(fd, OK)
        return round_trips(fd, spec["request"], count)
    finally:
        os.close(fd)


# -- the report ------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    measured: str
    baseline: str = ""
    target: str = ""
    met: str = ""


def checked(value: float, limit: float) -> str:
    return "yes" if value < limit else "NO"


def latency_rows(times: list[float], floor: list[float]) -> list[Row]:
    ours, base = sorted(times), sorted(floor)
    rows = []
    for name, p in (("median", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        value = percentile(ours, p)
        row = Row(f"round trip {name}", f"{value:,.0f} us", f"{percentile(base, p):,.0f} us")
        if name == "p99":
            row.target, row.met = "< 1,000 us", checked(value, 1000)
        rows.append(row)
    return rows


def print_table(title: str, rows: list[Row], notes: list[str]) -> None:
    header = Row("figure", "gatewayd", "baseline", "target", "met")
    widths = [max(len(getattr(r, col)) for r in [header, *rows])
              for col in ("figure", "measured", "baseline", "target", "met")]

    def line(r: Row) -> str:
        cells = (r.figure, r.measured, r.baseline, r.target, r.met)
        left = cells[0].ljust(widths[0])
        right = "  ".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return f"{left}  {right}".rstrip()

    print(title)
    print(line(header))
    print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for r in rows:
        print(line(r))
    print()
    for note in notes:
        print(note)


# -- main ---------------------------------------------------------------------


async def run(count: int, dialect: str, loop: str) -> None:
    compile_gatewayd()
    interpreter = await interpreter_start()
    startup = Startup()
    with tempfile.TemporaryDirectory(prefix="gwd-bench-") as tmp:
        workdir = Path(tmp)
        for _ in range(STARTS - 1):
            await stop_daemon(await start_daemon(workdir, dialect, loop, startup))
        gateway = await start_daemon(workdir, dialect, loop, startup)  # kept for the rest
        try:
            rss_ready = rss_mb(gateway.pid)
            floor = echo_round_trips(DIALECTS[dialect]["request"], count)
            times = talk_to_daemon(workdir / "ttyAT0", dialect, count)
            rss_after = rss_mb(gateway.pid)
            by_ticks, by_sched = idle_cpu(gateway.pid)
        finally:
            exit_code = await stop_daemon(gateway)

    ready = median_ms(startup.ready)
    rows = [
        Row(f"start -> pty symlink (median of {STARTS})", f"{median_ms(startup.symlink):.1f} ms"),
        Row(f"start -> READY=1 (median of {STARTS})", f"{ready:.1f} ms",
            f"{interpreter * 1e3:.1f} ms", f"<= 5x ({ready / (interpreter * 1e3):.1f}x)",
            checked(ready, 5 * interpreter * 1e3)),
        Row("RSS at READY=1 (transports not loaded)", f"{rss_ready:.1f} MB", "", "< 32 MB",
            checked(rss_ready, 32)),
        Row(f"RSS, transports loaded, {count:,} trips", f"{rss_after:.1f} MB", "", "< 36 MB",
            checked(rss_after, 36)),
        *latency_rows(times, floor),
        Row(f"idle CPU, utime+stime over {IDLE_SECONDS:.1f} s", f"{by_ticks:.1f} ms/s"),
    ]
    if by_sched is not None:
        rows.append(Row("idle CPU, schedstat (main thread)", f"{by_sched:.2f} ms/s"))
    rows.append(Row("exit code after SIGTERM", str(exit_code), "", "0",
                    "yes" if exit_code == 0 else "NO"))

    request = DIALECTS[dialect]["request"].decode().strip()
    title = (f"gatewayd AT round-trip bench: dialect {dialect}, event loop {loop}, "
             f"{count:,} x {request} "
             f"(+{WARMUP} warm-up), Python {platform.python_version()}, "
             f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs")
    notes = [
        "baselines: start -> READY=1 vs spawn -> exit of `python -c pass`;",
        "           round trips vs a bare Python responder on a pty (same client loop).",
        "RSS at READY=1 is read as the daemon begins importing its transports (aiohttp),",
        "which it does right after READY=1; the second RSS figure has them loaded.",
        "round trips: write the request, read until the complete \\r\\nOK\\r\\n; "
        "percentiles are nearest-rank.",
        f"idle CPU: utime+stime tick every {1000 / os.sysconf('SC_CLK_TCK'):.0f} ms.",
    ]
    print_table(title, rows, notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=10000,
                        help="timed round trips (default 10000)")
    parser.add_argument("--dialect", choices=sorted(DIALECTS), default="esp-at",
                        help="dialect of the emulated module (default esp-at)")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                        help="gatewayd's [daemon] event_loop (default auto)")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")
    # Under systemd our own notify socket would be inherited and take precedence.
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        os.environ.pop(name, None)
    asyncio.run(run(args.count, args.dialect, args.loop))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
