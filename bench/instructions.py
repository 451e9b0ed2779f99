"""Instructions gatewayd executes, counted by valgrind's callgrind: per 64-byte
round trip on every data path, and from spawn to ``READY=1``, each beside a
baseline in the same run.

Wall-clock and CPU-time figures on a shared machine move by ±20 % between
runs; an instruction count moves by well under 1 %, so it is the figure to
compare two versions of the code by (run this script on each). What it
counts is user space only: the kernel's side of every ``read``/``write`` (a
large share of a round trip, see ``ws_echo.py``'s CPU figures) is not in it.

* round trips: gatewayd runs under callgrind with instrumentation off; the
  MCU brings up the path as ``ws_echo.py`` does (:func:`ws_echo.open_path`),
  sends ``--warmup`` round trips, then callgrind counts ``--count`` 64-byte
  round trips. The baseline is socat relaying a pty to the TCP echo server,
  counted the same way. Passthrough runs with ``AT+TRANSINTVL=0`` (with the
  module's 20 ms it waits for its packing timer).
* start-up: ``gatewayd run --device pty:…`` under callgrind, counted up to
  its first ``sendto`` (the ``READY=1`` datagram; callgrind's
  ``--dump-before``); the baseline is ``python -c pass``.

    .venv/bin/python bench/instructions.py                  # every path, uvloop
    .venv/bin/python bench/instructions.py --path wssend --count 100
    .venv/bin/python bench/instructions.py --loop asyncio

Needs valgrind and socat. A round trip under callgrind takes about 5 ms, so
the default run (9 paths, 200 round trips each) takes about two minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import ws_echo
from ws_echo import (
    TIMEOUT,
    Pty,
    compile_gatewayd,
    echo_peers,
    gatewayd_command,
    open_path,
    raw_roundtrip,
)

#: --path name (as small_board.py's): (label, dialect, ws_echo link).
PATHS = {
    "wssend": ("esp-at AT+WSSEND", "esp-at", "ws"),
    "cipsend": ("esp-at AT+CIPSEND", "esp-at", "cipsend"),
    "passthrough": ("esp-at passthrough, TI=0", "esp-at", "passthrough"),
    "ameba-wssendraw": ("ameba AT+WSSENDRAW", "ameba", "ws"),
    "ameba-sktsendraw": ("ameba AT+SKTSENDRAW", "ameba", "tcp"),
    "ameba-wssend": ("ameba AT+WSSEND", "ameba", "wssend"),
    "ameba-sktsend": ("ameba AT+SKTSEND", "ameba", "sktsend"),
    "ameba-wssrvsendraw": ("ameba AT+WSSRVSENDRAW", "ameba", "wssrv"),
}
#: Under callgrind everything is some 50 times slower: the MCU waits longer.
SLOW_TIMEOUT = 120.0
ws_echo.TIMEOUT = SLOW_TIMEOUT  # every bounded wait of the MCU side (Pty)
#: String hashing seeded alike in every run, so dict and set work does not vary.
ENV = dict(os.environ, PYTHONHASHSEED="0")
_TOTALS = re.compile(rb"^totals: (\d+)", re.MULTILINE)


def counted(out_file: Path) -> int:
    """The instruction total of one callgrind output file."""
    match = _TOTALS.search(out_file.read_bytes())
    if match is None:
        raise RuntimeError(f"no totals in {out_file}")
    return int(match.group(1))


def callgrind(out_file: Path, *options: str) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={out_file}",
            *options]


def instrument(pid: int, on: bool) -> None:
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(pid)],
                   check=True, capture_output=True, timeout=SLOW_TIMEOUT)


def per_round_trip(command: list[str], cwd: Path, tty: Path, bring_up, args) -> float:
    """Instructions per 64-byte round trip of the process *command* starts
    under callgrind; *bring_up(mcu)* opens the path and returns
    ``(roundtrip, release)``."""
    out_file = cwd / f"round-trips-{command[0].rsplit('/', 1)[-1]}.cg"
    proc = subprocess.Popen(callgrind(out_file, "--instr-atstart=no") + command, cwd=cwd,
                            env=ENV, stderr=subprocess.DEVNULL)
    release = None
    try:
        mcu = Pty(tty)
        roundtrip, release = bring_up(mcu)
        block = b"x" * 64
        for _ in range(args.warmup):
            roundtrip(mcu, block)
        instrument(proc.pid, True)
        for _ in range(args.count):
            roundtrip(mcu, block)
        instrument(proc.pid, False)
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True,
                       capture_output=True, timeout=SLOW_TIMEOUT)
        mcu.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(SLOW_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(TIMEOUT)
        if release is not None:
            release()
    return counted(out_file.with_name(out_file.name + ".1")) / args.count  # the dump


def gatewayd_round_trip(workdir: Path, dialect: str, link: str, ports, args) -> float:
    command = gatewayd_command(workdir, dialect, args.loop)
    return per_round_trip(command, workdir, workdir / "ttyAT0",
                          lambda mcu: open_path(mcu, dialect, link, ports, transintvl=0), args)


def socat_round_trip(workdir: Path, tcp_port: int, args) -> float:
    link = workdir / "ttySOCAT"
    command = ["socat", f"pty,raw,echo=0,link={link}", f"tcp:127.0.0.1:{tcp_port}"]
    return per_round_trip(command, workdir, link, lambda mcu: (raw_roundtrip, None), args)


def startup(workdir: Path, loop: str) -> tuple[int, int]:
    """Instructions from spawn to ``READY=1`` of gatewayd, and of ``python -c pass``."""
    python = workdir / "pass.cg"
    subprocess.run([*callgrind(python), sys.executable, "-c", "pass"], env=ENV, check=True,
                   timeout=SLOW_TIMEOUT)
    notify = workdir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(notify))
        receiver.settimeout(SLOW_TIMEOUT)
        out_file = workdir / "startup.cg"
        proc = subprocess.Popen(
            callgrind(out_file, "--dump-before=*sendto*") + gatewayd_command(workdir, "esp-at",
                                                                              loop),
            cwd=workdir, env={**ENV, "NOTIFY_SOCKET": str(notify)}, stderr=subprocess.DEVNULL)
        try:
            message = receiver.recv(4096)
            if not message.startswith(b"READY=1"):
                raise RuntimeError(f"gatewayd's first notification was {message!r}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(SLOW_TIMEOUT)
    # Part 1 is everything before the first sendto, the READY=1 datagram.
    return counted(out_file.with_name(out_file.name + ".1")), counted(python)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", choices=["all", *PATHS], default="all")
    parser.add_argument("--count", type=int, default=200, help="counted round trips per path")
    parser.add_argument("--warmup", type=int, default=50, help="round trips before counting")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                        help="gatewayd's [daemon] event_loop")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up count")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "socat"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed (apt-get install valgrind socat)", file=sys.stderr)
            return 2
    paths = PATHS.values() if args.path == "all" else [PATHS[args.path]]
    compile_gatewayd()
    rows = []
    with echo_peers() as ports, tempfile.TemporaryDirectory(prefix="gwd-bench-") as tmp:
        workdir = Path(tmp)
        base = socat_round_trip(workdir, ports[2], args)
        for label, dialect, link in paths:
            rows.append((label, gatewayd_round_trip(workdir, dialect, link, ports, args)))
        ready = startup(workdir, args.loop) if not args.no_startup else None
    print(f"user-space instructions (callgrind), event loop {args.loop}; "
          f"{args.count} x 64 B round trips per path after {args.warmup} unmeasured")
    print(f"{'':42}{'gatewayd':>14}{'baseline':>14}{'ratio':>8}")
    for label, value in rows:
        print(f"{label + ', per round trip':42}{value:14,.0f}{base:14,.0f}{value / base:8.1f}")
    if ready is not None:
        gatewayd, python = ready
        print(f"{'spawn -> READY=1':42}{gatewayd:14,}{python:14,}{gatewayd / python:8.1f}")
    print("baselines: socat relaying the pty to the TCP echo server; `python -c pass`."
          " Kernel work is not counted.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
