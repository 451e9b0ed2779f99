"""Autobahn|Testsuite (``wstest -m fuzzingclient``) against WebSocket echo servers.

Opt-in, not part of the test suite. Needs ``bash bench/autobahn/setup.sh``
first (a Python 2.7 virtualenv with ``wstest``), then, from the repository
root with the project's venv::

    .venv/bin/python bench/autobahn/run.py --target aiohttp
    .venv/bin/python bench/autobahn/run.py --target gatewayd
    .venv/bin/python bench/autobahn/run.py --target both --cases '1.*,2.*' --out /tmp/ab
    .venv/bin/python bench/autobahn/run.py --target both --all     # 9.*, 12.*, 13.* too

Targets, each an echo server on 127.0.0.1 in its own child process:

* ``aiohttp``: ``aiohttp.web`` with a plain ``async for msg in ws`` handler
  that sends every text or binary message back as the same type.
* ``gatewayd``: gatewayd's Ameba WebSocket server (``AT+WSSRVCFG``,
  ``AT+WSSRVSTART``), in process through :func:`gatewayd.testing.running_gateway`,
  with a virtual MCU on its pty that echoes every
  ``[$][WSSRV][DATA][<id>][<opcode>][<len>]:`` message with
  ``AT+WSSRVSENDRAW=<id>,<len>,<opcode>`` (``AT+WSSRVSEND=<id>,0,<opcode>,``
  for an empty one).

``--target both`` puts both servers in one fuzzing run, side by side in one
report. The report (``index.html``, ``index.json``), ``spec.json``, the
``wstest`` output and each server's log go to ``--out`` (default
``bench/autobahn/reports``). Printed: per agent, how many cases ended OK,
NON-STRICT, INFORMATIONAL, UNIMPLEMENTED and FAILED (by ``behavior``), the
``behaviorClose`` tally, and the ids of FAILED cases. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WSTEST = HERE / ".venv27" / "bin" / "wstest"
DEFAULT_OUT = HERE / "reports"
DEFAULT_EXCLUDE = "9.*,12.*,13.*"
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
TARGETS = ("aiohttp", "gatewayd")

#: Seconds for a server child to report its port (or its failure).
START_TIMEOUT = 30.0
#: Seconds for a server child to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 10.0
#: Seconds the Ameba dialect gets to answer the first command: it answers
#: nothing at all to a command it does not know.
FIRST_REPLY_TIMEOUT = 3.0
#: Seconds for any other AT reply (a raw block adds time for its size).
REPLY_TIMEOUT = 15.0
NOT_AVAILABLE = "gatewayd WebSocket server not available"


# -- target: aiohttp (child process) ----------------------------------------------


def announce(line: str) -> None:
    """One line to the parent on stdout (the only thing written there)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_aiohttp() -> int:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        # max_msg_size=0: no limit, so that 9.* (up to 16 MiB) can be run.
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        announce(f"READY {runner.addresses[0][1]}")
        await wait_for_stop()
    finally:
        await runner.cleanup()
    return 0


# -- target: gatewayd (child process) ---------------------------------------------


class Unavailable(Exception):
    """gatewayd's WebSocket server cannot be started (yet)."""


class ProtocolError(Exception):
    """gatewayd wrote something the MCU cannot make sense of."""


class AmebaParser:
    """Splits what gatewayd writes on the pty into events, sans I/O.

    Line-based except data messages, which are read by their length (the
    payload is binary and may hold CR LF). Events: ``("prompt",)``,
    ``("ok",)``, ``("error", code)``, ``("info", line)``, ``("connected", id)``,
    ``("disconnected", id, reason)``, ``("data", id, opcode, payload)``,
    ``("high",)``, ``("low",)``, ``("urc", line)``."""

    DATA_PREFIX = b"[$][WSSRV][DATA]["
    DATA = re.compile(rb"\[\$\]\[WSSRV\]\[DATA\]\[(\d+)\]\[(\d+)\]\[(\d+)\]:")
    CONNECTED = re.compile(rb"\[\$\]\[WSSRV\]\[EVENT\]:linkid:(\d+), connected")
    DISCONNECTED = re.compile(rb"\[\$\]\[WSSRV\]\[EVENT\]:linkid:(\d+), disconnected, reason:(\d+)")
    ERROR = re.compile(rb"ERROR(?::\s?(\d+))?")
    MAX_LINE = 4096

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.want: int | None = None  # payload + CR LF still to read
        self.payload = bytearray()
        self.header: tuple[int, int] = (0, 0)

    def feed(self, data: bytes) -> list[tuple]:
        events: list[tuple] = []
        buf = self.buffer
        buf += data
        pos = 0
        while True:
            if self.want is not None:
                take = min(self.want - len(self.payload), len(buf) - pos)
                self.payload += buf[pos:pos + take]
                pos += take
                if len(self.payload) < self.want:
                    break
                if self.payload[-2:] != b"\r\n":
                    raise ProtocolError(f"data message not ended by CR LF: "
                                        f"{bytes(self.payload[-8:])!r}")
                events.append(("data", *self.header, bytes(self.payload[:-2])))
                self.want = None
                self.payload = bytearray()
                continue
            rest = len(buf) - pos
            if buf.startswith(self.DATA_PREFIX, pos):
                end = buf.find(b"]:", pos)
                if end < 0:
                    if rest > 64:
                        raise ProtocolError(f"bad data header {bytes(buf[pos:pos + 64])!r}")
                    break
                match = self.DATA.fullmatch(buf, pos, end + 2)
                if match is None:
                    raise ProtocolError(f"bad data header {bytes(buf[pos:end + 2])!r}")
                self.header = (int(match[1]), int(match[2]))
                self.want = int(match[3]) + 2
                pos = end + 2
                continue
            if rest < len(self.DATA_PREFIX) and self.DATA_PREFIX.startswith(bytes(buf[pos:])):
                break  # nothing, or what may become a data header
            if buf.startswith(b"\r\n", pos):  # a final result: one write, never split by a URC
                end = buf.find(b"\r\n", pos + 2)
                if end < 0:
                    if rest > self.MAX_LINE:
                        raise ProtocolError(f"unterminated line {bytes(buf[pos:pos + 80])!r}")
                    break
                text = bytes(buf[pos + 2:end])
                if text == b"OK":
                    events.append(("ok",))
                    pos = end + 2
                elif match := self.ERROR.fullmatch(text):
                    events.append(("error", int(match[1]) if match[1] else -1))
                    pos = end + 2
                else:
                    pos += 2  # a blank line; what follows is read as a line
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if rest > self.MAX_LINE:
                    raise ProtocolError(f"unterminated line {bytes(buf[pos:pos + 80])!r}")
                break
            events.append(self._line(bytes(buf[pos:end])))
            pos = end + 2
        del buf[:pos]
        return events

    def _line(self, line: bytes) -> tuple:
        if line == b">>>":
            return ("prompt",)
        if match := self.CONNECTED.fullmatch(line):
            return ("connected", int(match[1]))
        if match := self.DISCONNECTED.fullmatch(line):
            return ("disconnected", int(match[1]), int(match[2]))
        if line == b"[$][TT]:High Watermark":
            return ("high",)
        if line == b"[$][TT]:Low Watermark":
            return ("low",)
        if line.startswith(b"[$]"):
            return ("urc", line)
        return ("info", line)


class EchoMcu:
    """The MCU side on the pty: raw, non-blocking reads and writes on its own
    fd. A reader callback sorts what arrives into replies (one command at a
    time), link events and data messages; one worker echoes the messages in
    the order they came."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.loop = asyncio.get_running_loop()
        self.parser = AmebaParser()
        self.replies: asyncio.Queue[tuple[tuple, list[bytes]]] = asyncio.Queue()
        self.work: asyncio.Queue[tuple[int, int, int, bytes]] = asyncio.Queue()
        self.may_write = asyncio.Event()
        self.may_write.set()
        self.info: list[bytes] = []
        self.generation: defaultdict[int, int] = defaultdict(int)
        self.stats: Counter[str] = Counter()
        self.broken: asyncio.Future[None] = self.loop.create_future()
        self.loop.add_reader(fd, self._readable)

    def log(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} mcu: {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def _fail(self, exc: BaseException) -> None:
        self.loop.remove_reader(self.fd)
        if not self.broken.done():
            self.broken.set_exception(exc)

    # reading ------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(exc)
            return
        if not data:
            self._fail(EOFError("the pty was closed"))
            return
        try:
            events = self.parser.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: tuple) -> None:
        kind = event[0]
        if kind in ("prompt", "ok", "error"):
            self.replies.put_nowait((event, self.info))
            self.info = []
        elif kind == "info":
            self.info.append(event[1])
        elif kind == "data":
            _, link, opcode, payload = event
            self.stats["received"] += 1
            self.work.put_nowait((link, self.generation[link], opcode, payload))
        elif kind == "connected":
            self.stats["connections"] += 1
        elif kind == "disconnected":
            # Messages of this connection not echoed yet must not reach the
            # next client that gets the same link id.
            self.generation[event[1]] += 1
            self.stats[f"disconnect reason {event[2]}"] += 1
        elif kind == "high":
            self.may_write.clear()
        elif kind == "low":
            self.may_write.set()
        else:
            self.log(f"unexpected message {event[1]!r}")

    async def reply(self, timeout: float) -> tuple[tuple, list[bytes]]:
        get = asyncio.ensure_future(self.replies.get())
        done, _ = await asyncio.wait({get, self.broken}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if get not in done:
            get.cancel()
            if self.broken.done():
                self.broken.result()  # raises why
            raise TimeoutError(f"no reply within {timeout} s")
        return get.result()

    # writing ------------------------------------------------------------------

    async def _writable(self) -> None:
        ready = self.loop.create_future()
        self.loop.add_writer(self.fd, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, REPLY_TIMEOUT)
        finally:
            self.loop.remove_writer(self.fd)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if not self.may_write.is_set():  # "[$][TT]:High Watermark": pause
                await asyncio.wait_for(self.may_write.wait(), REPLY_TIMEOUT)
            try:
                written = os.write(self.fd, view[:16384])
            except BlockingIOError:
                await self._writable()
                continue
            view = view[written:]

    async def command(self, line: bytes, timeout: float = REPLY_TIMEOUT,
                      ) -> tuple[tuple, list[bytes]]:
        while not self.replies.empty():
            self.log(f"stray reply before {line!r}: {self.replies.get_nowait()!r}")
        await self.write(line + b"\r\n")
        return await self.reply(timeout)

    # the script ---------------------------------------------------------------

    async def start_server(self, port: int) -> None:
        try:
            (reply, _) = await self.command(b"AT+WSSRVCFG=3,30,0,16384,16384",
                                           FIRST_REPLY_TIMEOUT)
        except TimeoutError:
            raise Unavailable(f"{NOT_AVAILABLE}: no reply to AT+WSSRVCFG within "
                              f"{FIRST_REPLY_TIMEOUT} s (the Ameba dialect answers nothing "
                              f"to a command it does not know)") from None
        if reply != ("ok",):
            raise Unavailable(f"{NOT_AVAILABLE}: AT+WSSRVCFG answered {reply!r}")
        try:
            reply, info = await self.command(b"AT+WSSRVSTART=%d,1" % port)
        except TimeoutError:
            raise Unavailable(f"{NOT_AVAILABLE}: no reply to AT+WSSRVSTART") from None
        if reply != ("ok",):
            raise Unavailable(f"{NOT_AVAILABLE}: AT+WSSRVSTART={port},1 answered {reply!r}")
        if info != [b"[WSSRV][EVENT]:start"]:
            self.log(f"AT+WSSRVSTART: expected [WSSRV][EVENT]:start before OK, got {info!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT):
                pass
        except OSError as exc:
            raise Unavailable(f"{NOT_AVAILABLE}: AT+WSSRVSTART answered OK but "
                              f"127.0.0.1:{port} refuses connections ({exc})") from None

    async def echo_forever(self) -> None:
        while True:
            link, generation, opcode, payload = await self.work.get()
            if generation != self.generation[link]:
                self.stats["not echoed: client gone"] += 1
                continue
            if opcode not in (0, 1, 2):
                self.log(f"link {link}: not echoing a message with opcode {opcode}")
                self.stats[f"not echoed: opcode {opcode}"] += 1
                continue
            if opcode == 0 and not self.stats["received opcode 0"]:
                self.log("a message with opcode 0 (continuation): gatewayd delivers fragments"
                         " one by one? echoing them as they come")
            self.stats[f"received opcode {opcode}"] += 1
            if payload:
                line = b"AT+WSSRVSENDRAW=%d,%d,%d" % (link, len(payload), opcode)
                self.may_write.set()  # watermarks belong to one raw block
                reply, _ = await self.command(line)
                if reply == ("prompt",):
                    await self.write(payload)
                    reply, _ = await self.reply(REPLY_TIMEOUT + len(payload) / 1e6)
            else:
                line = b"AT+WSSRVSEND=%d,0,%d," % (link, opcode)
                reply, _ = await self.command(line)
            if reply == ("ok",):
                self.stats["echoed"] += 1
            else:
                self.stats[f"echo answered {reply!r}"] += 1
                if generation == self.generation[link]:
                    self.log(f"{line.decode()} answered {reply!r}")

    async def run_until_stopped(self) -> None:
        worker = asyncio.ensure_future(self.echo_forever())
        stop = asyncio.ensure_future(wait_for_stop())
        try:
            done, _ = await asyncio.wait({worker, stop, self.broken},
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop:
                    task.result()  # raises: the MCU lost track of gatewayd
        finally:
            worker.cancel()
            stop.cancel()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve_gatewayd(log_level: str) -> int:
    from gatewayd.config import PortConfig
    from gatewayd.logs import configure_logging
    from gatewayd.testing import running_gateway

    configure_logging(log_level, "json", stream=sys.stderr)
    port = free_port()
    config = '[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n'
    if "server_bind" in PortConfig.__dataclass_fields__:
        config += 'server_bind = "127.0.0.1"\n'
    mcu: EchoMcu | None = None
    with tempfile.TemporaryDirectory(prefix="gwd-autobahn-") as tmp:
        async with running_gateway(Path(tmp), dialect="ameba", config_text=config) as (_, vmcu):
            # Take the pty over from the VirtualMcu: open our own fd first (the
            # pty always has a reader), then close the VirtualMcu's.
            fd = os.open(vmcu.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            leftover = vmcu.pending()
            await vmcu.close()
            mcu = EchoMcu(fd)
            try:
                for event in mcu.parser.feed(leftover):
                    mcu._dispatch(event)
                try:
                    await mcu.start_server(port)
                except Unavailable as exc:
                    announce(f"FAIL {exc}")
                    return 3
                announce(f"READY {port}")
                mcu.log(f"WebSocket server on 127.0.0.1:{port}")
                try:
                    await mcu.run_until_stopped()
                except Exception as exc:  # reported; the fuzzing run goes on without us
                    mcu.log(f"gave up: {exc!r}")
                    announce(f"STATS {json.dumps(dict(mcu.stats))} error={exc!r}")
                    return 1
                announce(f"STATS {json.dumps(dict(mcu.stats))}")
            finally:
                mcu.close()
    return 0


# -- the fuzzing run (parent) ----------------------------------------------------------


class Server:
    """A target server in a child process of its own (own session, killed at the end)."""

    def __init__(self, target: str, out: Path, log_level: str) -> None:
        self.target = target
        self.log_path = out / f"{target}-server.log"
        self.stats = ""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve", target,
                 "--gatewayd-log-level", log_level],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=log, start_new_session=True)

    def wait_ready(self) -> int:
        """The port, or :class:`Unavailable` with the child's reason."""
        line = self._read_line(START_TIMEOUT)
        if line.startswith("READY "):
            return int(line.split()[1])
        if line.startswith("FAIL "):
            raise Unavailable(line.removeprefix("FAIL "))
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(1)
        code = self.proc.poll()
        reason = (f"the {self.target} server exited with code {code} before it was ready"
                  if code is not None else
                  f"the {self.target} server was not ready within {START_TIMEOUT} s")
        reason += f" (got {line!r}; see {self.log_path})" if line else f" (see {self.log_path})"
        raise Unavailable(reason)

    def _read_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                break
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").strip()

    def stop(self) -> None:
        died = self.proc.poll()
        if died is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate(timeout=STOP_TIMEOUT)
        for line in (out or b"").decode(errors="replace").splitlines():
            if line.startswith("STATS "):
                self.stats = line.removeprefix("STATS ")
        if died is not None:
            print(f"warning: the {self.target} server exited during the run "
                  f"(code {died}); see {self.log_path}", file=sys.stderr)


def split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def run_wstest(spec_path: Path, out: Path, timeout: float) -> tuple[int | None, float]:
    log_path = out / "wstest.log"
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(WSTEST), "-m", "fuzzingclient", "-s", str(spec_path)],
                                cwd=out, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)
            raise
    return code, time.monotonic() - start


def summarize(index: dict[str, dict[str, dict[str, Any]]], agents: list[str]) -> None:
    others = sorted({r.get("behavior") for a in agents for r in index.get(a, {}).values()}
                    - set(BEHAVIORS))
    columns = [*BEHAVIORS, *others, "total"]
    width = max(len("agent"), *(len(a) for a in agents))
    print(f"{'agent':<{width}}  " + "  ".join(f"{c:>{max(len(c), 5)}}" for c in columns))
    for agent in agents:
        results = index.get(agent, {})
        counts = Counter(r.get("behavior") for r in results.values())
        cells = [counts.get(c, 0) for c in [*BEHAVIORS, *others]] + [len(results)]
        print(f"{agent:<{width}}  " + "  ".join(
            f"{n:>{max(len(c), 5)}}" for c, n in zip(columns, cells, strict=True)))
    for agent in agents:
        results = index.get(agent, {})
        if not results:
            print(f"\n{agent}: no results in index.json")
            continue
        closes = Counter(r.get("behaviorClose") for r in results.values())
        print(f"\n{agent}: behaviorClose " + ", ".join(
            f"{k} {v}" for k, v in sorted(closes.items(), key=lambda kv: str(kv[0]))))
        rest = [b for b in (*BEHAVIORS, *others) if b not in ("OK", "FAILED")]
        for behavior in ("FAILED", *rest):
            ids = sorted((c for c, r in results.items() if r.get("behavior") == behavior),
                         key=case_key)
            if ids or behavior == "FAILED":
                print(f"{agent}: {behavior} ({len(ids)}): {', '.join(ids) if ids else '-'}")
        odd_close = sorted((c for c, r in results.items() if r.get("behavior") != "FAILED"
                            and r.get("behaviorClose") not in ("OK", "INFORMATIONAL")),
                           key=case_key)
        if odd_close:
            print(f"{agent}: closing not OK although the case did not fail: " + ", ".join(
                f"{c} ({results[c].get('behaviorClose')})" for c in odd_close))


def main_run(args: argparse.Namespace) -> int:
    if not WSTEST.exists():
        print(f"error: {WSTEST.relative_to(ROOT)} is missing: run "
              f"`bash bench/autobahn/setup.sh` first", file=sys.stderr)
        return 2
    out = Path(args.out).resolve() if args.out else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").unlink(missing_ok=True)  # never report a previous run
    targets = list(TARGETS) if args.target == "both" else [args.target]
    cases = split_list(args.cases) or ["*"]
    exclude = [] if args.all else split_list(args.exclude)

    servers: list[Server] = []
    try:
        urls = {}
        for target in targets:
            server = Server(target, out, args.gatewayd_log_level)
            servers.append(server)
            urls[target] = f"ws://127.0.0.1:{server.wait_ready()}"
        spec = {"outdir": str(out), "servers": [{"agent": t, "url": urls[t]} for t in targets],
                "cases": cases, "exclude-cases": exclude, "exclude-agent-cases": {}}
        spec_path = out / "spec.json"
        spec_path.write_text(json.dumps(spec, indent=2) + "\n")
        print(f"wstest fuzzingclient: {', '.join(f'{t} {urls[t]}' for t in targets)}; "
              f"cases {','.join(cases)}; excluded {','.join(exclude) or '-'}", flush=True)
        code, elapsed = run_wstest(spec_path, out, args.timeout)
    except Unavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        for server in servers:
            server.stop()

    log_text = (out / "wstest.log").read_text(errors="replace")
    planned = re.search(r"will run (\d+) test cases", log_text)
    ended = f"exit code {code}" if code is not None else f"killed after {args.timeout} s"
    print(f"{planned[1] if planned else '?'} cases per agent, {elapsed:.1f} s (wstest {ended})\n")
    index_path = out / "index.json"
    if not index_path.exists():
        print(f"error: no {index_path}; see {out / 'wstest.log'}", file=sys.stderr)
        return 1
    summarize(json.loads(index_path.read_text()), targets)
    for server in servers:
        if server.stats:
            print(f"\n{server.target} MCU: {server.stats}")
    print(f"\nreport: {out / 'index.html'}  (logs: wstest.log, <target>-server.log)")
    return 0 if code == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=[*TARGETS, "both"], default="aiohttp")
    parser.add_argument("--cases", default="*", help="comma-separated case patterns (default: *)")
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE,
                        help=f"comma-separated case patterns to skip (default: {DEFAULT_EXCLUDE},"
                             " the slow performance and compression groups; '' for none)")
    parser.add_argument("--all", action="store_true", help="exclude nothing (same as --exclude '')")
    parser.add_argument("--out", help=f"report folder (default: {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds the whole wstest run may take (default: 1800)")
    parser.add_argument("--gatewayd-log-level", default="warning",
                        choices=["debug", "info", "warning", "error"],
                        help="gatewayd's log level in gatewayd-server.log (default: warning)")
    parser.add_argument("--serve", choices=TARGETS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "aiohttp":
        return asyncio.run(serve_aiohttp())
    if args.serve == "gatewayd":
        return asyncio.run(serve_gatewayd(args.gatewayd_log_level))
    return main_run(args)


if __name__ == "__main__":
    raise SystemExit(main())
