"""A small-board check: can gatewayd keep a UART's line rate on a tenth of a core?

gatewayd runs under a CPU quota (a cgroup: ``cpu.max`` on cgroup v2, or
``cpu.cfs_quota_us`` on v1's ``cpu`` controller; default 10 % of one core,
about a Pi Zero-class core's share of this machine's) while a virtual MCU
paces its side of the pty at a baud rate (8N1: baud/10 bytes per second each
way) and carries a TCP echo for a few seconds through one data path:

* ``passthrough``: ESP-AT ``AT+CIPMODE=1`` / ``AT+CIPSEND``, raw bytes both ways;
* ``cipsend``: ESP-AT ``AT+CIPSEND`` blocks (2048 bytes) read back as ``+IPD``;
* ``wssend``: ESP-AT ``AT+WSSEND`` blocks (2048 bytes) read back as ``+WS_DATA``.

It prints, per baud rate, the payload rate offered and carried each way, and
gatewayd's CPU share over the run (from ``/proc/<pid>/task/*/schedstat``):
"keeps line rate" when at least 95 % of the offered rate came back.

    sudo .venv/bin/python bench/small_board.py [--quota 10] [--seconds 5]
        [--path passthrough|cipsend|wssend] [--baud 115200 921600 3000000]

Needs a writable cgroup hierarchy (root, or a delegated cgroup); without one
it says so and measures without a quota. Every read is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ws_echo import TIMEOUT, Pty, cipsend_roundtrip, cpu_seconds, serve_echo, ws_roundtrip

CGROUP_V2 = Path("/sys/fs/cgroup")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")
BLOCK = 2048


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


def start_gatewayd(workdir: Path, group: Path | None) -> subprocess.Popen[bytes]:
    link = workdir / "ttyAT0"

    def enter() -> None:
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    return subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "run", "--device", f"pty:{link}",
         "--log-level", "warning"], cwd=workdir, preexec_fn=enter)


def setup(mcu: Pty, path: str, tcp_port: int, ws_port: int) -> None:
    mcu.read_until(b"\r\nready\r\n")
    lines = [b"ATE0", b"AT+CWMODE=1", b'AT+CWJAP="bench","password"']
    if path == "wssend":
        lines += [b"AT+WSCFG=0,60,120,8192", b'AT+WSOPEN=0,"ws://127.0.0.1:%d"' % ws_port]
    else:
        lines += [b"AT+CIPTCPOPT=-1,1", b'AT+CIPSTART="TCP","127.0.0.1",%d' % tcp_port]
    for line in lines:
        mcu.write(line + b"\r\n")
        mcu.read_until(b"\r\nOK\r\n")
    if path == "passthrough":
        mcu.write(b"AT+CIPMODE=1\r\n")
        mcu.read_until(b"\r\nOK\r\n")
        mcu.write(b"AT+CIPSEND\r\n")
        mcu.read_until(b"\r\nOK\r\n\r\n>")


def carry(mcu: Pty, path: str, rate: float, seconds: float) -> tuple[int, int]:
    """Offer *rate* payload bytes/s for *seconds*; (bytes sent, bytes echoed back).
    Blocks of the command paths go one at a time and are read back whole
    (ws_echo's round trips) before the next is due."""
    roundtrip = cipsend_roundtrip if path == "cipsend" else ws_roundtrip
    sent = received = 0
    start = time.monotonic()
    block = os.urandom(BLOCK)
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) * rate) - sent
        if path == "passthrough":
            if due > 0:
                piece = block[: min(due, BLOCK)]
                mcu.write(piece)
                sent += len(piece)
            with contextlib.suppress(BlockingIOError):
                mcu.buffer += os.read(mcu.fd, 65536)
            received += len(mcu.buffer)
            mcu.buffer.clear()
            time.sleep(0.001)
        elif due >= BLOCK:
            roundtrip(mcu, block)
            sent += BLOCK
            received += BLOCK
        else:
            time.sleep(0.001)
    deadline = time.monotonic() + TIMEOUT
    while path == "passthrough" and received < sent and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            mcu._fill()
        received += len(mcu.buffer)
        mcu.buffer.clear()
    return sent, received


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quota", type=int, default=10, help="CPU quota, % of one core")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--path", choices=["passthrough", "cipsend", "wssend"],
                        default="passthrough")
    parser.add_argument("--baud", type=int, nargs="+", default=[115200, 921600, 3000000])
    args = parser.parse_args()
    group = make_cgroup(args.quota)
    if group is None:
        print("no writable cgroup with a cpu controller: measuring WITHOUT a quota",
              file=sys.stderr)
    parent, child = multiprocessing.Pipe()
    peers = multiprocessing.get_context("spawn").Process(target=serve_echo, args=(child,),
                                                         daemon=True)
    peers.start()
    rows = []
    try:
        if not parent.poll(TIMEOUT):
            raise TimeoutError("echo servers did not start")
        ws_port, _pieces, tcp_port = parent.recv()
        for baud in args.baud:
            rate = baud / 10  # 8N1
            with tempfile.TemporaryDirectory(prefix="gwd-board-") as tmp:
                proc = start_gatewayd(Path(tmp), group)
                try:
                    mcu = Pty(Path(tmp) / "ttyAT0")
                    setup(mcu, args.path, tcp_port, ws_port)
                    cpu, wall = cpu_seconds(proc.pid), time.monotonic()
                    sent, received = carry(mcu, args.path, rate, args.seconds)
                    share = (cpu_seconds(proc.pid) - cpu) / (time.monotonic() - wall)
                    mcu.close()
                finally:
                    proc.terminate()
                    proc.wait(TIMEOUT)
            rows.append((baud, rate, sent / args.seconds, received / args.seconds, share))
    finally:
        peers.terminate()
        if group is not None:
            with contextlib.suppress(OSError):
                group.rmdir()
    quota = f"{args.quota} % of one core" if group is not None else "no quota"
    print(f"small-board check: ESP-AT {args.path}, {quota}, {args.seconds:.0f} s per rate")
    print(f"{'baud':>9}{'offered B/s':>14}{'sent B/s':>12}{'echoed B/s':>12}"
          f"{'CPU share':>11}  keeps line rate")
    for baud, rate, sent, echoed, share in rows:
        print(f"{baud:>9}{rate:>14.0f}{sent:>12.0f}{echoed:>12.0f}{share:>10.1%}  "
              f"{'yes' if echoed >= 0.95 * rate else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
