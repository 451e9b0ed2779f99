"""WebSocket or TCP echo through gatewayd (ESP-AT or Ameba), beside a socat relay baseline.

What is measured, in one run on this machine:

* gatewayd: an MCU on gatewayd's pty opens ``ws://127.0.0.1`` to a
  ``websockets`` echo server and sends blocks with ``AT+WSSEND`` (``OK``,
  ``>``, the block, ``SEND OK``), then reads the echo back as
  ``+WS_DATA:0,<len>,<data>\\r\\n``. Throughput counts payload bytes sent and
  received back, one block in flight; latency is one 64-byte message from
  the ``AT+WSSEND`` line to the end of its ``+WS_DATA`` line.
* ``--dialect ameba``: the MCU connects with ``AT+WSCONN`` and sends each
  block with ``AT+WSSENDRAW`` (``>>>``, the block, ``OK``); the server echoes
  it in messages of at most 16 KiB (the largest Ameba receive buffer; the
  firmware discards bigger messages), read back as ``[$][WS][DATA]`` messages.
* ``--dialect ameba --link tcp``: the MCU opens a TCP client link with
  ``AT+SKTCLIENT`` (auto receive) to a raw TCP echo server and sends each
  block with ``AT+SKTSENDRAW`` (``>>>``, the block, ``OK``); the echo comes
  back as ``[$][SKT][DATA][0][<len>]:`` messages (at most 16 KiB each).
* ``--link cipsend`` (ESP-AT): a TCP link with ``AT+CIPSTART``, each block
  sent with ``AT+CIPSEND`` (``>``, the block, ``Recv``, ``SEND OK``; at most
  8192 bytes, 2048 is typical) and read back as ``+IPD,<len>:`` messages.
* ``--link passthrough`` (ESP-AT): the same link in passthrough
  (``AT+CIPMODE=1``, ``AT+CIPSEND``): raw bytes both ways, as socat.
* ``--dialect ameba --link wssrv``: the MCU starts gatewayd's WebSocket server
  (``AT+WSSRVCFG``, ``AT+WSSRVSTART``), a ``websockets`` client (in a child
  process) connects and echoes every message, and the MCU sends each block
  with ``AT+WSSRVSENDRAW`` (``>>>``, the block, ``OK``); the echo comes back
  as ``[$][WSSRV][DATA][0][2][<len>]:`` messages.
* baseline: ``socat`` relays a pty to a raw TCP echo server; the MCU writes
  the same block and reads it back.

CPU: user+system time of the gatewayd process alone (and of socat alone),
from ``/proc/<pid>/stat``, over the throughput phase, per MB carried (both
directions).

The echo servers run in a child process so that they do not share a core
with the MCU side. Every read is bounded by ``select`` timeouts.

    .venv/bin/python bench/ws_echo.py [--blocks 300] [--size 4096] [--count 1000]
    .venv/bin/python bench/ws_echo.py --dialect ameba --size 65536 --blocks 100
    .venv/bin/python bench/ws_echo.py --dialect ameba --link tcp --size 65536 --blocks 100
    .venv/bin/python bench/ws_echo.py --link cipsend --size 2048 --blocks 1000
    .venv/bin/python bench/ws_echo.py --link passthrough --size 4096
    .venv/bin/python bench/ws_echo.py --dialect ameba --link wssrv
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import multiprocessing
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path

TIMEOUT = 10.0
AMEBA_BUFFER = 16384


# -- peers (child process) -------------------------------------------------------


def serve_echo(ports: multiprocessing.connection.Connection) -> None:
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def ws_echo(websocket):
        # gatewayd drops the link without a close frame when it stops, as
        # AT+WSCLOSE does; that is the end of the run, not an error.
        with contextlib.suppress(ConnectionClosed):
            async for message in websocket:
                await websocket.send(message)

    async def ws_echo_in_pieces(websocket):
        with contextlib.suppress(ConnectionClosed):
            async for message in websocket:
                for start in range(0, len(message), AMEBA_BUFFER):
                    await websocket.send(message[start : start + AMEBA_BUFFER])

    async def tcp_echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def main():
        async with serve(ws_echo, "127.0.0.1", 0, max_size=None) as ws, \
                serve(ws_echo_in_pieces, "127.0.0.1", 0, max_size=None) as pieces:
            tcp = await asyncio.start_server(tcp_echo, "127.0.0.1", 0)
            ports.send((next(iter(ws.sockets)).getsockname()[1],
                        next(iter(pieces.sockets)).getsockname()[1],
                        tcp.sockets[0].getsockname()[1]))
            await asyncio.Event().wait()

    asyncio.run(main())


@contextlib.contextmanager
def echo_peers() -> Iterator[tuple[int, int, int]]:
    """:func:`serve_echo` in a child process (so the peers do not share a core
    with the MCU side), stopped on exit; yields its ports: ws, ws-in-pieces, tcp."""
    parent, child = multiprocessing.Pipe()
    peers = multiprocessing.get_context("spawn").Process(target=serve_echo, args=(child,),
                                                         daemon=True)
    peers.start()
    try:
        if not parent.poll(TIMEOUT):
            raise TimeoutError("echo servers did not start")
        yield parent.recv()
    finally:
        peers.terminate()


def client_echo(port: int) -> None:
    """A WebSocket client of gatewayd's server on *port* that echoes every
    message (its connect retried until the server listens, for TIMEOUT s)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def main():
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                websocket = await connect(f"ws://127.0.0.1:{port}/", max_size=None)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        with contextlib.suppress(ConnectionClosed):
            async for message in websocket:
                await websocket.send(message)

    asyncio.run(main())


# -- the MCU side: blocking reads with bounded waits ----------------------------


class Pty:
    def __init__(self, path: Path) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not appear")
            time.sleep(0.01)
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)
        self.buffer = bytearray()

    def write(self, data: bytes) -> None:
        """Write *data* while reading what arrives meanwhile (full duplex, as a
        UART): gatewayd stops reading an MCU that does not read."""
        view = memoryview(data)
        while view:
            readable, writable, _ = select.select([self.fd], [self.fd], [], TIMEOUT)
            if not (readable or writable):
                raise TimeoutError("the pty stopped moving data")
            if readable:
                with contextlib.suppress(BlockingIOError):
                    self.buffer += os.read(self.fd, 65536)
            if writable:
                with contextlib.suppress(BlockingIOError):
                    view = view[os.write(self.fd, view[:4096]):]

    def _fill(self) -> None:
        ready, _, _ = select.select([self.fd], [], [], TIMEOUT)
        if not ready:
            raise TimeoutError(f"nothing read within {TIMEOUT} s; have {bytes(self.buffer[-80:])}")
        with contextlib.suppress(BlockingIOError):
            self.buffer += os.read(self.fd, 65536)

    def read_until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            self._fill()
        end += len(marker)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def close(self) -> None:
        os.close(self.fd)


_WS_DATA = re.compile(rb"\+WS_DATA:0,(\d+),")


def ws_roundtrip(mcu: Pty, block: bytes) -> None:
    mcu.write(b"AT+WSSEND=0,%d,2\r\n" % len(block))
    mcu.read_until(b"\r\nOK\r\n\r\n>")
    mcu.write(block)
    mcu.read_until(b"\r\nSEND OK\r\n")
    got = 0
    while got < len(block):
        header = mcu.read_until(b",") + mcu.read_until(b",")
        match = _WS_DATA.fullmatch(header)
        assert match, header
        size = int(match.group(1))
        mcu.read_exactly(size + 2)
        got += size


def ameba_roundtrip(command: bytes, data_urc: bytes):
    """A round trip for an Ameba raw send: *command* (``%d`` = length), ``>>>``,
    the block, ``OK``, then the echo as ``<data_urc>[<len>]:`` messages."""
    header_re = re.compile(re.escape(data_urc) + rb"\[(\d+)\]:")

    def roundtrip(mcu: Pty, block: bytes) -> None:
        mcu.write(command % len(block) + b"\r\n")
        mcu.read_until(b">>>\r\n")
        mcu.write(block)
        mcu.read_until(b"\r\nOK\r\n")
        got = 0
        while got < len(block):
            header = mcu.read_until(b"]:")
            match = header_re.fullmatch(header)
            assert match, header
            size = int(match.group(1))
            mcu.read_exactly(size + 2)
            got += size

    return roundtrip


_IPD = re.compile(rb"\r\n\+IPD,(\d+):")


def cipsend_roundtrip(mcu: Pty, block: bytes) -> None:
    mcu.write(b"AT+CIPSEND=%d\r\n" % len(block))
    mcu.read_until(b"\r\nOK\r\n\r\n>")
    mcu.write(block)
    mcu.read_until(b"\r\nSEND OK\r\n")
    got = 0
    while got < len(block):
        match = _IPD.fullmatch(mcu.read_until(b":"))
        assert match
        size = int(match.group(1))
        mcu.read_exactly(size + 2)  # the data and its trailing CRLF
        got += size


def cpu_seconds(pid: int) -> float:
    """CPU time process *pid* has run so far: the sum over its threads of
    ``/proc/<pid>/task/*/schedstat`` (nanoseconds), else utime + stime from
    ``/proc/<pid>/stat`` (clock ticks, usually 10 ms)."""
    total, found = 0, False
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            total += int((task / "schedstat").read_text().split()[0])
            found = True
        except (OSError, ValueError, IndexError):
            continue
    if found:
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(roundtrip, mcu: Pty, pid: int, args) -> dict[str, float]:
    """Throughput with the CPU *pid* spent per MB, then latency."""
    roundtrip(mcu, b"warm-up")
    cpu = cpu_seconds(pid)
    mb_s = throughput(roundtrip, mcu, args.size, args.blocks)
    cpu_ms_per_mb = (cpu_seconds(pid) - cpu) * 1000 / (2 * args.size * args.blocks / 1e6)
    cpu = cpu_seconds(pid)
    median, p99 = summary(latency(roundtrip, mcu, args.count))
    cpu_us_per_rt = (cpu_seconds(pid) - cpu) * 1e6 / args.count
    return {"mb_s": mb_s, "median": median, "p99": p99, "cpu": cpu_ms_per_mb,
            "cpu_rt": cpu_us_per_rt}


def ameba_line_roundtrip(command: bytes, data_urc: bytes):
    """A round trip for an Ameba send with the data on the command line
    (``AT+WSSEND``, ``AT+SKTSEND``): *command* (``%d`` = length) + the data
    (printable, nothing to escape) + CRLF, ``OK``, then the echo as
    ``<data_urc>[<len>]:`` messages. The line is at most 2000 bytes."""
    header_re = re.compile(re.escape(data_urc) + rb"(?:\[\d+\])?\[(\d+)\]:")

    def roundtrip(mcu: Pty, block: bytes) -> None:
        data = b"x" * len(block)
        mcu.write(command % len(data) + data + b"\r\n")
        mcu.read_until(b"\r\nOK\r\n")
        got = 0
        while got < len(data):
            match = header_re.fullmatch(mcu.read_until(b"]:"))
            assert match
            size = int(match.group(1))
            mcu.read_exactly(size + 2)
            got += size

    return roundtrip


def raw_roundtrip(mcu: Pty, block: bytes) -> None:
    """Write *block* while reading its echo (:meth:`Pty.write` is full duplex),
    then read the rest of it."""
    mcu.write(block)
    mcu.read_exactly(len(block))


# -- measurements ------------------------------------------------------------------


def throughput(roundtrip, mcu: Pty, size: int, blocks: int) -> float:
    block = os.urandom(size)
    start = time.perf_counter()
    for _ in range(blocks):
        roundtrip(mcu, block)
    elapsed = time.perf_counter() - start
    return 2 * size * blocks / elapsed / 1e6  # MB/s, both directions


def latency(roundtrip, mcu: Pty, count: int) -> list[float]:
    block = b"x" * 64
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        roundtrip(mcu, block)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def open_path(mcu: Pty, dialect: str, link: str, ports: tuple[int, int, int],
              transintvl: int = 20):
    """Bring gatewayd's module from its banner to the data path *link* of
    *dialect* (the echo peers at *ports*: ws, ws-in-pieces, tcp); return the
    round trip that carries a block over it and a function that releases
    what the path started (the WebSocket server's client process)."""
    client = None

    def release() -> None:
        if client is not None:
            client.terminate()
            client.join(TIMEOUT)

    if dialect == "ameba" and link == "wssrv":
        mcu.read_until(b"ATCMD READY\r\n")
        mcu.write(b"AT+WSSRVCFG=3,30,0,%d,%d\r\n" % (AMEBA_BUFFER, AMEBA_BUFFER))
        mcu.read_until(b"\r\nOK\r\n")
        with socket.socket() as probe:  # a free port for the MCU's server
            probe.bind(("127.0.0.1", 0))
            server_port = probe.getsockname()[1]
        mcu.write(b"AT+WSSRVSTART=%d,1\r\n" % server_port)
        mcu.read_until(b"\r\nOK\r\n")
        client = multiprocessing.get_context("spawn").Process(
            target=client_echo, args=(server_port,), daemon=True)
        client.start()
        mcu.read_until(b"[$][WSSRV][EVENT]:linkid:0, connected\r\n")
        return ameba_roundtrip(b"AT+WSSRVSENDRAW=0,%d,2", b"[$][WSSRV][DATA][0][2]"), release
    if dialect == "ameba" and link in ("tcp", "sktsend"):
        mcu.read_until(b"ATCMD READY\r\n")
        mcu.write(b"AT+SKTCFG=,,1,,,,\r\n")  # TCP_NODELAY, as socat has
        mcu.read_until(b"\r\nOK\r\n")
        mcu.write(b"AT+SKTCLIENT=0,1,,127.0.0.1,%d,,1\r\n" % ports[2])
        mcu.read_until(b"\r\nOK\r\n")
        if link == "tcp":
            return ameba_roundtrip(b"AT+SKTSENDRAW=0,%d", b"[$][SKT][DATA][0]"), release
        return ameba_line_roundtrip(b"AT+SKTSEND=0,%d,,,", b"[$][SKT][DATA][0]"), release
    if dialect == "ameba":
        mcu.read_until(b"ATCMD READY\r\n")
        mcu.write(b"AT+WSCFG=0,60,120,%d,50\r\n" % AMEBA_BUFFER)
        mcu.read_until(b"\r\nOK\r\n")
        mcu.write(b"AT+WSCONN=0,127.0.0.1,,%d,1\r\n" % ports[1])
        mcu.read_until(b"connected\r\n\r\nOK\r\n")
        if link == "ws":
            return ameba_roundtrip(b"AT+WSSENDRAW=0,%d,1,2", b"[$][WS][DATA][0]"), release
        return ameba_line_roundtrip(b"AT+WSSEND=0,%d,,,", b"[$][WS][DATA][0]"), release
    if link in ("cipsend", "passthrough"):
        mcu.read_until(b"\r\nready\r\n")
        for line in (b"ATE0", b"AT+CWMODE=1", b'AT+CWJAP="bench","password"',
                     b"AT+CIPTCPOPT=-1,1", b'AT+CIPSTART="TCP","127.0.0.1",%d' % ports[2]):
            mcu.write(line + b"\r\n")
            mcu.read_until(b"\r\nOK\r\n")
        if link == "cipsend":
            return cipsend_roundtrip, release
        mcu.write(b"AT+TRANSINTVL=%d\r\n" % transintvl)
        mcu.read_until(b"\r\nOK\r\n")
        mcu.write(b"AT+CIPMODE=1\r\n")
        mcu.read_until(b"\r\nOK\r\n")
        mcu.write(b"AT+CIPSEND\r\n")
        mcu.read_until(b"\r\nOK\r\n\r\n>")
        return raw_roundtrip, release
    mcu.read_until(b"\r\nready\r\n")
    mcu.write(b"ATE0\r\n")
    mcu.read_until(b"\r\nOK\r\n")
    mcu.write(b"AT+WSCFG=0,60,120,8192\r\n")
    mcu.read_until(b"\r\nOK\r\n")
    mcu.write(b'AT+WSOPEN=0,"ws://127.0.0.1:%d"\r\n' % ports[0])
    mcu.read_until(b"+WS_CONNECTED:0\r\n\r\nOK\r\n")
    return ws_roundtrip, release


def compile_gatewayd() -> None:
    """Byte-compile gatewayd and its built-in plugins, as pip and the .deb do:
    a module changed since its last compilation would otherwise be compiled
    at every start (``PYTHONDONTWRITEBYTECODE`` keeps it so)."""
    for package in ("gatewayd", "gatewayd_ws", "gatewayd_sockets"):
        folder = Path(__import__(package).__file__).parent
        compileall.compile_dir(folder, quiet=1)


def gatewayd_command(workdir: Path, dialect: str, loop: str) -> list[str]:
    """``gatewayd run`` on ``pty:<workdir>/ttyAT0`` with ``[daemon] event_loop``."""
    loop_config = workdir / f"loop-{loop}.toml"
    loop_config.write_text(f'[daemon]\nevent_loop = "{loop}"\n')
    return [sys.executable, "-m", "gatewayd", "run", "-c", str(loop_config),
            "--device", f"pty:{workdir / 'ttyAT0'}", "--dialect", dialect,
            "--log-level", "warning"]


def run_gatewayd(workdir: Path, ports: tuple[int, int, int], args) -> dict[str, float]:
    command = gatewayd_command(workdir, args.dialect, args.loop)
    if args.profile:  # cProfile writes its file when SIGTERM ends the daemon
        command[1:3] = ["-m", "cProfile", "-o", str(Path(args.profile).resolve()), "-m",
                        "gatewayd"]
    proc = subprocess.Popen(command, cwd=workdir)
    release = None
    try:
        mcu = Pty(workdir / "ttyAT0")
        roundtrip, release = open_path(mcu, args.dialect, args.link, ports, args.transintvl)
        result = measured(roundtrip, mcu, proc.pid, args)
        mcu.close()
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(TIMEOUT)
        if release is not None:
            release()


def run_socat(workdir: Path, tcp_port: int, args) -> dict[str, float]:
    link = workdir / "ttySOCAT"
    proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={link}",
                             f"tcp:127.0.0.1:{tcp_port}"])
    try:
        mcu = Pty(link)
        result = measured(raw_roundtrip, mcu, proc.pid, args)
        mcu.close()
        return result
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)


#: (label, dialect, link, sizes, AT+TRANSINTVL): the data paths --all measures.
#: Passthrough with the module's 20 ms packing timer is bound by the timer in a
#: one-block-in-flight echo (as on the module); with 0 it shows gatewayd's cost.
PATHS = (
    ("esp-at AT+WSSEND", "esp-at", "ws", (4096,), 20),
    ("esp-at AT+CIPSEND", "esp-at", "cipsend", (4096,), 20),
    ("esp-at passthrough", "esp-at", "passthrough", (4096, 65536), 20),
    ("esp-at passthrough, TI=0", "esp-at", "passthrough", (4096, 65536), 0),
    ("ameba AT+WSSENDRAW", "ameba", "ws", (4096, 65536), 20),
    ("ameba AT+SKTSENDRAW", "ameba", "tcp", (4096, 65536), 20),
    ("ameba AT+WSSEND", "ameba", "wssend", (1024,), 20),
    ("ameba AT+SKTSEND", "ameba", "sktsend", (1024,), 20),
    ("ameba AT+WSSRVSENDRAW", "ameba", "wssrv", (4096,), 20),
)


def all_paths(args) -> int:
    """One table: every path of :data:`PATHS` beside socat for the same blocks."""
    rows = []
    with echo_peers() as ports, tempfile.TemporaryDirectory(prefix="gwd-bench-") as tmp:
        baselines = {}
        loops = ("uvloop", "asyncio") if args.loop == "both" else (args.loop,)
        for label, dialect, link, sizes, interval in PATHS:
            for size in sizes:
                for loop in loops:
                    run = argparse.Namespace(**{
                        **vars(args), "dialect": dialect, "link": link, "size": size,
                        "transintvl": interval, "loop": loop,
                        "blocks": max(20, args.blocks * 4096 // size)})
                    if size not in baselines:
                        baselines[size] = run_socat(Path(tmp), ports[2], run)
                    result = run_gatewayd(Path(tmp), ports, run)
                    shown = f", {loop}" if len(loops) > 1 else ""
                    rows.append((f"{label}, {size // 1024} KiB{shown}", result,
                                 baselines[size]))
    print(f"every path, gatewayd beside socat in the same run; "
          f"{args.count} x 64 B round trips each")
    head = ("path", "MB/s", "x socat", "CPU ms/MB", "x socat", "CPU us/64B RT", "x socat",
            "RTT med us", "p99 us")
    print(f"{head[0]:36}" + "".join(f"{h:>14}" for h in head[1:]))
    for label, gw, base in rows:
        cells = (gw["mb_s"], gw["mb_s"] / base["mb_s"], gw["cpu"],
                 gw["cpu"] / base["cpu"] if base["cpu"] else float("inf"), gw["cpu_rt"],
                 gw["cpu_rt"] / base["cpu_rt"] if base["cpu_rt"] else float("inf"),
                 gw["median"], gw["p99"])
        print(f"{label:36}" + "".join(f"{c:14.2f}" for c in cells))
    print(f"{'socat (baseline), 4 KiB':36}{baselines[4096]['mb_s']:14.2f}{'':14}"
          f"{baselines[4096]['cpu']:14.2f}{'':14}{baselines[4096]['cpu_rt']:14.2f}{'':14}"
          f"{baselines[4096]['median']:14.2f}{baselines[4096]['p99']:14.2f}")
    print("targets: CPU per 64 B round trip <= 3x socat; CPU per MB <= 3x (4 KiB), <= 2x"
          " (64 KiB, passthrough); WSSEND >= 0.5x and passthrough >= 0.8x socat's MB/s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=300, help="blocks for throughput")
    parser.add_argument("--size", type=int, default=4096, help="block size in bytes")
    parser.add_argument("--count", type=int, default=1000, help="64-byte round trips")
    parser.add_argument("--dialect", choices=["esp-at", "ameba"], default="esp-at")
    parser.add_argument("--link", choices=["ws", "tcp", "cipsend", "passthrough", "wssend",
                                           "sktsend", "wssrv"], default="ws",
                        help="tcp: Ameba AT+SKTCLIENT/AT+SKTSENDRAW to a TCP echo server;"
                             " cipsend, passthrough: ESP-AT AT+CIPSTART to it; wssrv: Ameba"
                             " AT+WSSRVSENDRAW to a client of gatewayd's WebSocket server")
    parser.add_argument("--transintvl", type=int, default=20,
                        help="passthrough: AT+TRANSINTVL in ms (the module's default 20)")
    parser.add_argument("--all", action="store_true",
                        help="every data path in 4 KiB (and 64 KiB where allowed) blocks, one"
                             " table, socat measured in the same run")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop", "both"], default=None,
                        help="gatewayd's [daemon] event_loop; both (the default of --all):"
                             " every path on uvloop and on asyncio's loop (single paths:"
                             " default auto)")
    parser.add_argument("--profile", metavar="FILE",
                        help="run gatewayd under cProfile, write its stats to FILE and print"
                             " the top functions (the figures then include the profiler)")
    args = parser.parse_args()
    if args.all:
        args.loop = args.loop or "both"
        return all_paths(args)
    args.loop = args.loop or "auto"
    if args.loop == "both":
        parser.error("--loop both is for --all")
    if args.link in ("tcp", "wssend", "sktsend") and args.dialect != "ameba":
        parser.error(f"--link {args.link} needs --dialect ameba")
    if args.link in ("wssend", "sktsend") and args.size > 1900:
        parser.error("AT+WSSEND/AT+SKTSEND carry their data on a line of at most 2000 bytes")
    if args.link in ("cipsend", "passthrough") and args.dialect != "esp-at":
        parser.error(f"--link {args.link} needs --dialect esp-at")
    if args.link == "cipsend" and args.size > 8192:
        parser.error("AT+CIPSEND sends at most 8192 bytes")
    if shutil.which("socat") is None:
        print("socat is needed for the baseline (apt-get install socat)", file=sys.stderr)
        return 2
    with echo_peers() as ports, tempfile.TemporaryDirectory(prefix="gwd-bench-") as tmp:
        gw = run_gatewayd(Path(tmp), ports, args)
        base = run_socat(Path(tmp), ports[2], args)
    print(f"{args.dialect} over {args.link}, event loop {args.loop}: echo of {args.size}-byte"
          f" blocks ({args.blocks} blocks), 64-byte latency ({args.count} messages)")
    print(f"{'':28}{f'gatewayd ({args.link})':>16}{'socat (tcp)':>16}{'ratio':>8}   target")
    target = ">= 0.8x socat" if args.link == "passthrough" else ">= 0.5x socat"
    print(f"{'throughput, MB/s':28}{gw['mb_s']:16.2f}{base['mb_s']:16.2f}"
          f"{gw['mb_s'] / base['mb_s']:8.2f}   {target}")
    print(f"{'CPU per MB carried, ms':28}{gw['cpu']:16.1f}{base['cpu']:16.1f}"
          f"{gw['cpu'] / base['cpu'] if base['cpu'] else float('inf'):8.2f}   <= 3x socat")
    print(f"{'CPU per 64 B round trip, us':28}{gw['cpu_rt']:16.1f}{base['cpu_rt']:16.1f}"
          f"{gw['cpu_rt'] / base['cpu_rt'] if base['cpu_rt'] else float('inf'):8.2f}"
          "   <= 3x socat")
    print(f"{'64 B round trip median, us':28}{gw['median']:16.0f}{base['median']:16.0f}")
    print(f"{'64 B round trip p99, us':28}{gw['p99']:16.0f}{base['p99']:16.0f}"
          f"{'':8}   p99 < 2000 us")
    if args.profile:
        import pstats

        print(f"\nwhere gatewayd's time went ({args.profile}):")
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
