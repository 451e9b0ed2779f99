"""A small-board check: can gatewayd keep a UART's line rate on a tenth of a core?

gatewayd runs under a CPU quota (a cgroup: ``cpu.max`` on cgroup v2, or
``cpu.cfs_quota_us`` on v1's ``cpu`` controller; default 10 % of one core,
about a Pi Zero-class core's share of this machine's) while a virtual MCU
paces its side of the pty at a baud rate (8N1: baud/10 bytes per second each
way) and carries a TCP echo for a few seconds through one data path:

* ``passthrough``: ESP-AT ``AT+CIPMODE=1`` / ``AT+CIPSEND``, raw bytes both ways;
* ``cipsend``: ESP-AT ``AT+CIPSEND`` blocks read back as ``+IPD``;
* ``wssend``: ESP-AT ``AT+WSSEND`` blocks read back as ``+WS_DATA``;
* ``ameba-wssendraw``, ``ameba-sktsendraw``, ``ameba-wssrvsendraw``: Ameba
  ``AT+WSSENDRAW`` / ``AT+SKTSENDRAW`` / ``AT+WSSRVSENDRAW`` blocks;
* ``ameba-wssend``, ``ameba-sktsend``: Ameba ``AT+WSSEND`` / ``AT+SKTSEND``
  with the data on the command line;
* ``all`` (the default): each of these in turn.

Blocks are 2048 bytes (1024 on the Ameba command-line paths), one at a time
and read back whole before the next is due, as ``ws_echo.py``'s round trips
(whose setup of each path this shares).

It prints, per baud rate, the payload rate offered and carried each way, and
gatewayd's CPU share over the run (from ``/proc/<pid>/task/*/schedstat``):
"keeps line rate" when at least 95 % of what fell due (in whole blocks, on
the block paths) came back.

    sudo .venv/bin/python bench/small_board.py [--quota 10] [--seconds 5]
        [--path all|passthrough|cipsend|wssend|ameba-…] [--baud 115200 921600 3000000]
        [--loop auto|asyncio|uvloop]

Needs a writable cgroup hierarchy (root, or a delegated cgroup); without one
it says so and measures without a quota. Every read is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ws_echo import TIMEOUT, Pty, cpu_seconds, echo_peers, gatewayd_command, open_path

CGROUP_V2 = Path("/sys/fs/cgroup")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")
BLOCK = 2048
#: --path name: (dialect, ws_echo link, block bytes).
PATHS = {
    "passthrough": ("esp-at", "passthrough", BLOCK),
    "cipsend": ("esp-at", "cipsend", BLOCK),
    "wssend": ("esp-at", "ws", BLOCK),
    "ameba-wssendraw": ("ameba", "ws", BLOCK),
    "ameba-sktsendraw": ("ameba", "tcp", BLOCK),
    "ameba-wssrvsendraw": ("ameba", "wssrv", BLOCK),
    "ameba-wssend": ("ameba", "wssend", 1024),
    "ameba-sktsend": ("ameba", "sktsend", 1024),
}


def make_cgroup(quota_percent: int) -> Path | None:
    """A fresh cgroup limited to *quota_percent* of one core, or ``None``."""
    name = f"gatewayd-bench-{os.getpid()}"
    period = 100_000
    quota = period * quota_percent // 100
    with contextlib.suppress(OSError):
        if (CGROUP_V2 / "cgroup.controllers").exists() and \
                "cpu" in (CGROUP_V2 / "cgroup.controllers").read_text().split():
            group = CGROUP_V2 / name
            group.mkdir()
            (group / "cpu.max").write_text(f"{quota} {period}")
            return group
        if (CGROUP_V1_CPU / "cpu.cfs_quota_us").exists():
            group = CGROUP_V1_CPU / name
            group.mkdir()
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
            return group
    return None


def start_gatewayd(workdir: Path, dialect: str, loop: str,
                   group: Path | None) -> subprocess.Popen[bytes]:
    def enter() -> None:
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    return subprocess.Popen(gatewayd_command(workdir, dialect, loop), cwd=workdir,
                            preexec_fn=enter)


def carry(mcu: Pty, raw: bool, roundtrip, block_size: int, rate: float,
          seconds: float) -> tuple[int, int]:
    """Offer *rate* payload bytes/s for *seconds*; (bytes sent, bytes echoed back).
    *raw* (passthrough): bytes as they fall due, read back as they come;
    otherwise one block of *block_size* at a time through *roundtrip*."""
    sent = received = 0
    start = time.monotonic()
    block = os.urandom(block_size)
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) * rate) - sent
        if raw:
            if due > 0:
                piece = block[: min(due, block_size)]
                mcu.write(piece)
                sent += len(piece)
            with contextlib.suppress(BlockingIOError):
                mcu.buffer += os.read(mcu.fd, 65536)
            received += len(mcu.buffer)
            mcu.buffer.clear()
            time.sleep(0.001)
        elif due >= block_size:
            roundtrip(mcu, block)
            sent += block_size
            received += block_size
        else:
            time.sleep(0.001)
    deadline = time.monotonic() + TIMEOUT
    while raw and received < sent and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            mcu._fill()
        received += len(mcu.buffer)
        mcu.buffer.clear()
    return sent, received


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quota", type=int, default=10, help="CPU quota, %% of one core")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--path", choices=["all", *PATHS], default="all")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                        help="gatewayd's [daemon] event_loop (default auto)")
    parser.add_argument("--baud", type=int, nargs="+", default=[115200, 921600, 3000000])
    args = parser.parse_args()
    group = make_cgroup(args.quota)
    if group is None:
        print("no writable cgroup with a cpu controller: measuring WITHOUT a quota",
              file=sys.stderr)
    rows = []
    try:
        with echo_peers() as ports:
            names = list(PATHS) if args.path == "all" else [args.path]
            for name in names:
                dialect, link, block_size = PATHS[name]
                for baud in args.baud:
                    rate = baud / 10  # 8N1
                    with tempfile.TemporaryDirectory(prefix="gwd-board-") as tmp:
                        proc = start_gatewayd(Path(tmp), dialect, args.loop, group)
                        release = None
                        try:
                            mcu = Pty(Path(tmp) / "ttyAT0")
                            roundtrip, release = open_path(mcu, dialect, link, ports)
                            cpu, wall = cpu_seconds(proc.pid), time.monotonic()
                            sent, received = carry(mcu, link == "passthrough", roundtrip,
                                                   block_size, rate, args.seconds)
                            share = (cpu_seconds(proc.pid) - cpu) / (time.monotonic() - wall)
                            mcu.close()
                        finally:
                            proc.terminate()
                            proc.wait(TIMEOUT)
                            if release is not None:
                                release()
                    # What fell due in whole blocks (a block goes once all of it is due).
                    quantum = 1 if link == "passthrough" else block_size
                    due = int(rate * args.seconds) // quantum * quantum
                    rows.append((name, baud, rate, sent / args.seconds, received / args.seconds,
                                 share, received >= 0.95 * due))
    finally:
        if group is not None:
            with contextlib.suppress(OSError):
                group.rmdir()
    quota = f"{args.quota} % of one core" if group is not None else "no quota"
    print(f"small-board check: {quota}, event loop {args.loop}, {args.seconds:.0f} s per rate")
    print(f"{'path':20}{'baud':>9}{'offered B/s':>14}{'sent B/s':>12}{'echoed B/s':>12}"
          f"{'CPU share':>11}  keeps line rate")
    for name, baud, rate, sent, echoed, share, kept in rows:
        print(f"{name:20}{baud:>9}{rate:>14.0f}{sent:>12.0f}{echoed:>12.0f}{share:>10.1%}  "
              f"{'yes' if kept else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
