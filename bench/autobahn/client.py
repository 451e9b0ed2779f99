"""Autobahn|Testsuite (``wstest -m fuzzingserver``) against WebSocket echo *clients*.

Opt-in, not part of the test suite. Needs ``bash bench/autobahn/setup.sh``
first (a Python 2.7 virtualenv with ``wstest``), then, from the repository
root with the project's venv::

    .venv/bin/python bench/autobahn/client.py                      # all three agents
    .venv/bin/python bench/autobahn/client.py --agents gatewayd-ameba --cases '5.*'
    .venv/bin/python bench/autobahn/client.py --all                # 9.*, 12.*, 13.* too (slow)

One fuzzing server on 127.0.0.1 (``--port``, default 9001; its web UI is
off, and it listens on loopback only), and one agent after the other, each
running every case (``/runCase?case=N&agent=<agent>``) and then
``/updateReports``:

* ``aiohttp``: ``aiohttp.ClientSession.ws_connect`` with a plain
  ``async for msg in ws`` loop that sends every text or binary message back
  as the same type (the baseline).
* ``gatewayd-esp-at``: gatewayd (in a child process, through
  :func:`gatewayd.testing.running_gateway`) with an ESP-AT port and a virtual
  MCU on its pty: ``AT+WSCFG=0,7200,7200,8192`` and
  ``AT+WSOPEN=0,"ws://127.0.0.1:9001/runCase?case=N&agent=gatewayd-esp-at"``;
  every ``+WS_DATA`` piece goes back with ``AT+WSSEND``. ``+WS_DATA`` carries
  neither the opcode nor FIN, and a frame over ``buffer_size`` arrives in
  pieces, so the MCU cannot know where a message ends or whether it was text:
  it gathers pieces until none has come for ``--esp-at-gap`` seconds (0.2),
  then sends them as one message: text when the bytes are valid UTF-8,
  otherwise binary; in ``AT+WSSEND`` blocks of at most 16384 bytes, the first
  with the opcode and ``fin`` 0, the following ones opcode 0, ``fin`` 1 on the
  last (``--esp-at-gap 0``: every piece is echoed at once as a message of its
  own). ``+WS_DISCONNECTED`` is answered with ``AT+WSCLOSE=0`` so that the
  link does not reconnect (which would run the case again).
* ``gatewayd-ameba``: the same with an Ameba port (``ameba_ws_data_opcode =
  true``): ``AT+WSGLCFG=10000``, ``AT+WSCFG=0,7200,7200,16384,50`` and
  ``AT+WSCONN=0,127.0.0.1,/runCase?case=N&agent=gatewayd-ameba,9001,1``; each
  ``[$][WS][DATA][0][<opcode>][<len>]:`` message goes back with
  ``AT+WSSENDRAW=0,<len>,1,<opcode>``. A reassembled fragmented message is
  reported with opcode 0 (as the firmware does), so text/binary is guessed as
  for ESP-AT. An empty message cannot be echoed: ``AT+WSSEND`` and
  ``AT+WSSENDRAW`` need a length of at least 1.

Printed: per agent, how many cases ended OK, NON-STRICT, INFORMATIONAL,
UNIMPLEMENTED and FAILED (the ``behavior`` of the report's ``index.json``),
then every FAILED case with a one-line reason taken from its JSON report
(what the server received against what it expected, or the closing verdict),
and each gatewayd MCU's counts. The report (``index.html``), ``spec.json``,
``wstest.log`` and each gatewayd agent's log go to ``--out`` (default
``bench/autobahn/reports-client``). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PY27 = HERE / ".venv27" / "bin" / "python"
DEFAULT_OUT = HERE / "reports-client"
DEFAULT_EXCLUDE = "9.*,12.*,13.*"
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
AGENTS = ("aiohttp", "gatewayd-esp-at", "gatewayd-ameba")

#: Seconds for the fuzzing server to listen.
START_TIMEOUT = 60.0
#: Seconds for any AT reply.
REPLY_TIMEOUT = 20.0
#: Seconds a gatewayd agent child may take beyond its cases.
CHILD_SLACK = 120.0
#: Largest AT+WSSEND block (ESP-AT).
ESP_MAX_SEND = 16384

#: wstest in fuzzingserver mode, listening on 127.0.0.1 only (wstest itself
#: listens on every interface), with the web UI off.
WSTEST_LOOPBACK = """\
import sys
from autobahn.twisted import websocket
from autobahntestsuite import fuzzing, wstest
_listen = websocket.listenWS
fuzzing.listenWS = lambda factory, context=None: _listen(factory, context, interface="127.0.0.1")
sys.argv = ["wstest", "-m", "fuzzingserver", "-s", sys.argv[1], "--webport", "0"]
wstest.run()
"""


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- the fuzzing server's control endpoints ---------------------------------------


async def get_case_count(base: str) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"{base}/getCaseCount", timeout=aiohttp.ClientWSTimeout(
                ws_receive=REPLY_TIMEOUT)) as ws:
        msg = await ws.receive()
        return int(msg.data)


async def update_reports(base: str, agent: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"{base}/updateReports?agent={agent}") as ws:
        async with asyncio.timeout(300):
            async for _ in ws:
                pass


# -- agent: aiohttp ----------------------------------------------------------------


async def run_aiohttp(base: str, agent: str, count: int, case_timeout: float) -> Counter[str]:
    import aiohttp
    from aiohttp import WSMsgType

    stats: Counter[str] = Counter()
    async with aiohttp.ClientSession() as session:
        for case in range(1, count + 1):
            url = f"{base}/runCase?case={case}&agent={agent}"
            try:
                async with asyncio.timeout(case_timeout):
                    async with session.ws_connect(url, max_msg_size=0) as ws:
                        async for msg in ws:
                            stats[f"received {msg.type.name}"] += 1
                            if msg.type is WSMsgType.TEXT:
                                await ws.send_str(msg.data)
                            elif msg.type is WSMsgType.BINARY:
                                await ws.send_bytes(msg.data)
                            else:
                                continue
                            stats["echoed"] += 1
            except TimeoutError:
                stats["case timeout"] += 1
            except Exception as exc:  # the verdict is the server's
                stats[f"ended by {type(exc).__name__}"] += 1
    return stats


# -- agents: gatewayd (child process) ------------------------------------------------


class ProtocolError(Exception):
    """gatewayd wrote something the MCU cannot make sense of."""


class EspAtParser:
    """Splits what an ESP-AT port writes into events, sans I/O: ``("result",
    text)`` (OK, ERROR, SEND OK, SEND FAIL), ``("prompt",)``, ``("data", link,
    payload)``, ``("event", name, link)`` and ``("info", line)``."""

    DATA = b"+WS_DATA:"
    HEADER = re.compile(rb"\+WS_DATA:(\d+),(\d+),")
    EVENT = re.compile(rb"\+WS_(CONNECTED|DISCONNECTED|CLOSED):(\d+)")
    RESULTS = (b"OK", b"ERROR", b"SEND OK", b"SEND FAIL")

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple]:
        buf = self.buf
        buf += data
        events: list[tuple] = []
        pos = 0
        while pos < len(buf):
            if buf.startswith(b"\r\n", pos):
                pos += 2
                continue
            if buf[pos:pos + 1] == b">":
                events.append(("prompt",))
                pos += 1
                continue
            rest = bytes(buf[pos:pos + len(self.DATA)])
            if len(rest) < len(self.DATA) and self.DATA.startswith(rest):
                break
            if rest == self.DATA:
                match = self.HEADER.match(buf, pos)
                if match is None:
                    if len(buf) - pos > 40:
                        raise ProtocolError(f"bad +WS_DATA header {bytes(buf[pos:pos + 40])!r}")
                    break
                size = int(match[2])
                end = match.end() + size
                if len(buf) < end + 2:
                    break
                if buf[end:end + 2] != b"\r\n":
                    raise ProtocolError(f"+WS_DATA not ended by CR LF: {bytes(buf[end:end + 8])!r}")
                events.append(("data", int(match[1]), bytes(buf[match.end():end])))
                pos = end + 2
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            line = bytes(buf[pos:end])
            pos = end + 2
            if line in self.RESULTS:
                events.append(("result", line))
            elif match := self.EVENT.fullmatch(line):
                events.append(("event", match[1].decode().lower(), int(match[2])))
            else:
                events.append(("info", line))
        del buf[:pos]
        return events


class AmebaParser:
    """The same for an Ameba port with ``ameba_ws_data_opcode = true``:
    ``("result", b"OK" | b"ERROR: n")``, ``("prompt",)``, ``("data", link,
    opcode, payload)``, ``("event", "connected" | "disconnect" | "pong", link)``."""

    DATA = b"[$][WS][DATA]["
    HEADER = re.compile(rb"\[\$\]\[WS\]\[DATA\]\[(\d+)\]\[(\d+)\]\[(\d+)\]:")
    EVENT = re.compile(rb"\[\$\]\[WS\]\[EVENT\]:linkid:(\d+), (connected|disconnect|pong)")
    ERROR = re.compile(rb"ERROR(: ?\d+)?")

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple]:
        buf = self.buf
        buf += data
        events: list[tuple] = []
        pos = 0
        while pos < len(buf):
            if buf.startswith(b"\r\n", pos):
                pos += 2
                continue
            rest = bytes(buf[pos:pos + len(self.DATA)])
            if len(rest) < len(self.DATA) and self.DATA.startswith(rest):
                break
            if rest == self.DATA:
                match = self.HEADER.match(buf, pos)
                if match is None:
                    if len(buf) - pos > 60:
                        raise ProtocolError(f"bad data header {bytes(buf[pos:pos + 60])!r}")
                    break
                size = int(match[3])
                end = match.end() + size
                if len(buf) < end + 2:
                    break
                if buf[end:end + 2] != b"\r\n":
                    raise ProtocolError(f"data not ended by CR LF: {bytes(buf[end:end + 8])!r}")
                events.append(("data", int(match[1]), int(match[2]), bytes(buf[match.end():end])))
                pos = end + 2
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            line = bytes(buf[pos:end])
            pos = end + 2
            if line == b">>>":
                events.append(("prompt",))
            elif line == b"OK" or self.ERROR.fullmatch(line):
                events.append(("result", line))
            elif match := self.EVENT.fullmatch(line):
                events.append(("event", match[2].decode(), int(match[1])))
            else:
                events.append(("info", line))
        del buf[:pos]
        return events


class EchoMcu:
    """The MCU on gatewayd's pty: raw non-blocking reads and writes on its own
    fd; replies (results, prompts) go to one queue, data to the current
    case's queue, and the end of the link sets the case's ``ended``."""

    def __init__(self, fd: int, dialect: str, gap: float) -> None:
        self.fd = fd
        self.dialect = dialect
        self.gap = gap
        self.loop = asyncio.get_running_loop()
        self.parser = EspAtParser() if dialect == "esp-at" else AmebaParser()
        self.replies: asyncio.Queue[tuple] = asyncio.Queue()
        self.work: asyncio.Queue[tuple] = asyncio.Queue()
        self.ended = asyncio.Event()
        self.end_kind = ""
        self.stats: Counter[str] = Counter()
        self.broken: asyncio.Future[None] = self.loop.create_future()
        self.loop.add_reader(fd, self._readable)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def _fail(self, exc: BaseException) -> None:
        self.loop.remove_reader(self.fd)
        if not self.broken.done():
            self.broken.set_exception(exc)

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
            self.dispatch(event)

    def dispatch(self, event: tuple) -> None:
        kind = event[0]
        if kind in ("result", "prompt"):
            self.replies.put_nowait(event)
        elif kind == "data":
            self.stats["data messages" if self.dialect == "ameba" else "+WS_DATA pieces"] += 1
            self.work.put_nowait(event[2:])
        elif kind == "event":
            name = event[1]
            if name in ("disconnected", "closed", "disconnect"):
                self.stats[f"link ended: {name}"] += 1
                if not self.ended.is_set():
                    self.end_kind = name
                self.ended.set()
            elif name == "pong":
                self.stats["pong events"] += 1
        elif event[1] not in (b"ATE0",):
            log(f"mcu: unexpected {event[1]!r}")

    async def reply(self, timeout: float = REPLY_TIMEOUT) -> tuple:
        get = asyncio.ensure_future(self.replies.get())
        try:
            done, _ = await asyncio.wait({get, self.broken}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not get.done():  # a cancelled wait must not leave a reply thief behind
                get.cancel()
        if get not in done:
            if self.broken.done():
                self.broken.result()
            raise TimeoutError(f"no reply within {timeout} s")
        return get.result()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                ready = self.loop.create_future()
                self.loop.add_writer(self.fd, lambda f=ready: f.done() or f.set_result(None))
                try:
                    await asyncio.wait_for(ready, REPLY_TIMEOUT)
                finally:
                    self.loop.remove_writer(self.fd)

    async def command(self, line: bytes, timeout: float = REPLY_TIMEOUT) -> tuple:
        await self.write(line + b"\r\n")
        return await self.reply(timeout)

    async def expect_ok(self, line: bytes) -> None:
        reply = await self.command(line)
        if reply != ("result", b"OK"):
            raise ProtocolError(f"{line!r} answered {reply!r}")

    # -- one case ------------------------------------------------------------

    async def setup(self) -> None:
        if self.dialect == "esp-at":
            await self.expect_ok(b"ATE0")
        else:
            await self.expect_ok(b"AT+WSGLCFG=10000")
            await self.expect_ok(b"AT+WSCFG=0,7200,7200,16384,50")

    async def open(self, base: str, case: int, agent: str) -> bool:
        query = f"/runCase?case={case}&agent={agent}"
        if self.dialect == "esp-at":
            await self.expect_ok(b"AT+WSCFG=0,7200,7200,8192")
            line = f'AT+WSOPEN=0,"{base}{query}"'.encode()
        else:
            host, port = base.removeprefix("ws://").rsplit(":", 1)
            line = f"AT+WSCONN=0,{host},{query},{port},1".encode()
        reply = await self.command(line)
        if reply != ("result", b"OK"):
            self.stats[f"open answered {reply[1:]!r}"] += 1
            log(f"mcu: case {case}: {line.decode()} answered {reply!r}")
            return False
        return True

    async def end_link(self) -> None:
        """After the case: make sure link 0 is free and will not reconnect."""
        if self.dialect == "esp-at":
            await self.expect_ok(b"AT+WSCLOSE=0")
            return
        if not self.ended.is_set():
            reply = await self.command(b"AT+WSDISCONN=0")
            if reply == ("result", b"OK"):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ended.wait(), 5)

    async def send_esp(self, data: bytes, opcode: int, fin: int) -> bool:
        reply = await self.command(b"AT+WSSEND=0,%d,%d,10000,%d" % (len(data), opcode, fin))
        if data:
            if reply != ("result", b"OK"):
                return False
            if await self.reply() != ("prompt",):
                raise ProtocolError("AT+WSSEND: no prompt after OK")
            await self.write(data)
            reply = await self.reply()
        return reply == ("result", b"SEND OK")

    async def echo_esp(self, data: bytes) -> None:
        opcode = 1 if is_text(data) else 2
        blocks = [data[i:i + ESP_MAX_SEND] for i in range(0, len(data), ESP_MAX_SEND)] or [b""]
        for index, block in enumerate(blocks):
            last = index == len(blocks) - 1
            if not await self.send_esp(block, opcode if index == 0 else 0, int(last)):
                self.stats["echo refused"] += 1
                return
        self.stats["echoed"] += 1

    async def echo_ameba(self, opcode: int, data: bytes) -> None:
        if opcode == 0:  # a reassembled fragmented message: text or binary?
            opcode = 1 if is_text(data) else 2
            self.stats["opcode 0 (guessed)"] += 1
        if not data:
            self.stats["not echoed: empty (length must be >= 1)"] += 1
            return
        reply = await self.command(b"AT+WSSENDRAW=0,%d,1,%d" % (len(data), opcode))
        if reply == ("prompt",):
            await self.write(data)
            reply = await self.reply(REPLY_TIMEOUT + len(data) / 1e5)
        if reply == ("result", b"OK"):
            self.stats["echoed"] += 1
        else:
            self.stats["echo refused"] += 1

    async def echo_forever(self) -> None:
        # Python 3.11's wait_for can swallow a cancel (when the get completes
        # at the same moment), so the loop also stops by itself once the link
        # has ended.
        if self.dialect == "ameba":
            while not self.ended.is_set():
                opcode, data = await self.work.get()
                await self.echo_ameba(opcode, data)
            return
        pieces: list[bytes] = []
        while not self.ended.is_set():
            try:
                async with asyncio.timeout(self.gap if pieces else None):
                    (data,) = await self.work.get()
            except TimeoutError:
                message, pieces = b"".join(pieces), []
                await self.echo_esp(message)
                continue
            if self.gap <= 0:
                await self.echo_esp(data)
            else:
                pieces.append(data)

    async def run_case(self, base: str, case: int, agent: str, case_timeout: float) -> None:
        self.ended.clear()
        self.end_kind = ""
        self.work = asyncio.Queue()
        if not await self.open(base, case, agent):
            await self.end_link()
            return
        worker = asyncio.ensure_future(self.echo_forever())
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            done, _ = await asyncio.wait({worker, ended, self.broken}, timeout=case_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not ended:
                    task.result()
            if not done:
                self.stats["case timeout"] += 1
                log(f"mcu: case {case}: no end within {case_timeout} s")
        finally:
            ended.cancel()
            for _ in range(3):
                worker.cancel()
                await asyncio.wait({worker}, timeout=REPLY_TIMEOUT)
                if worker.done():
                    break
            else:
                raise ProtocolError("the echo worker does not stop")
            if not worker.cancelled() and worker.exception() is not None:
                raise worker.exception()  # type: ignore[misc]
        # A command may have been cut off by the cancel: take its reply first.
        with contextlib.suppress(TimeoutError):
            while True:
                await self.reply(0.3)
        await self.end_link()


async def serve_agent(agent: str, base: str, count: int, case_timeout: float, gap: float,
                      log_level: str) -> int:
    from gatewayd.logs import configure_logging
    from gatewayd.testing import running_gateway

    configure_logging(log_level, "json", stream=sys.stderr)
    dialect = agent.removeprefix("gatewayd-")
    config = f'[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "{dialect}"\n'
    config += ("ws_reconnect_interval = 3600\n" if dialect == "esp-at"
               else "ameba_ws_data_opcode = true\n")
    with tempfile.TemporaryDirectory(prefix="gwd-autobahn-client-") as tmp:
        stack = contextlib.AsyncExitStack()
        _, vmcu = await stack.enter_async_context(
            running_gateway(Path(tmp), dialect=dialect, config_text=config))
        try:
            # Take the pty over from the VirtualMcu: our own fd first (the pty
            # always has a reader), then close the VirtualMcu's.
            fd = os.open(vmcu.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            leftover = vmcu.pending()
            await vmcu.close()
            mcu = EchoMcu(fd, dialect, gap)
            try:
                for event in mcu.parser.feed(leftover):
                    mcu.dispatch(event)
                await mcu.setup()
                for case in range(1, count + 1):
                    await mcu.run_case(base, case, agent, case_timeout)
            except Exception as exc:  # reported; the report shows what ran
                log(f"mcu: gave up: {exc!r}")
                print(f"STATS {json.dumps(dict(mcu.stats))} error={exc!r}", flush=True)
                return 1
            finally:
                mcu.close()
            print(f"STATS {json.dumps(dict(mcu.stats))}", flush=True)
        finally:
            try:
                async with asyncio.timeout(15):
                    await stack.aclose()
            except TimeoutError:
                log("gatewayd did not stop within 15 s")
    return 0


def run_gatewayd_agent(agent: str, base: str, count: int, args: argparse.Namespace,
                       out: Path) -> str:
    """Runs *agent*'s cases in a child process; returns its STATS line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log_path = out / f"{agent}.log"
    with open(log_path, "wb") as child_log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", agent, "--url", base,
             "--count", str(count), "--case-timeout", str(args.case_timeout),
             "--esp-at-gap", str(args.esp_at_gap), "--gatewayd-log-level",
             args.gatewayd_log_level],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=child_log, start_new_session=True)
        try:
            stdout, _ = proc.communicate(timeout=count * args.case_timeout + CHILD_SLACK)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            stdout, _ = proc.communicate(timeout=10)
            return f"killed after the time limit (see {log_path})"
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise
    stats = [line.removeprefix("STATS ") for line in stdout.decode(errors="replace").splitlines()
             if line.startswith("STATS ")]
    return stats[-1] if stats else f"exit code {proc.returncode}, no stats (see {log_path})"


# -- the run (parent) ------------------------------------------------------------------


def split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"wstest exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"wstest did not listen on 127.0.0.1:{port} within {timeout} s")


def describe_events(events: list[Any], limit: int = 4) -> str:
    parts = []
    for event in events:
        if not isinstance(event, list) or not event:
            parts.append(repr(event)[:30])
        elif event[0] == "message":
            parts.append(f"{'binary' if event[2] else 'text'}({len(event[1])})")
        elif event[0] in ("ping", "pong"):
            parts.append(f"{event[0]}({len(event[1]) if len(event) > 1 else 0})")
        elif event[0] == "timeout":
            parts.append(f"timeout({event[1]} ms)")
        else:
            parts.append(str(event[0]))
    if not parts:
        return "nothing"
    more = f" +{len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def reason(report: dict[str, Any]) -> str:
    """One line on why a case FAILED, from its JSON report."""
    if report.get("behavior") == "FAILED":
        expected = report.get("expected") or {}
        ok = expected.get("OK") or expected.get("NON-STRICT") or []
        text = (f"received {describe_events(report.get('received') or [])}; "
                f"expected {describe_events(ok)}")
        if report.get("behaviorClose") not in ("OK", "INFORMATIONAL", None):
            text += f"; close: {report.get('resultClose', '')}"
        return text
    return f"close {report.get('behaviorClose')}: {report.get('resultClose', '')}"


def summarize(out: Path, index: dict[str, dict[str, dict[str, Any]]], agents: list[str]) -> None:
    others = sorted({r.get("behavior") for a in agents for r in index.get(a, {}).values()}
                    - set(BEHAVIORS))
    columns = [*BEHAVIORS, *others, "total"]
    width = max(len("agent"), *(len(a) for a in agents))
    print(f"| {'agent':<{width}} | " + " | ".join(f"{c:>{max(len(c), 5)}}" for c in columns)
          + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * (max(len(c), 5) + 2) for c in columns) + "|")
    for agent in agents:
        results = index.get(agent, {})
        counts = Counter(r.get("behavior") for r in results.values())
        cells = [counts.get(c, 0) for c in [*BEHAVIORS, *others]] + [len(results)]
        print(f"| {agent:<{width}} | " + " | ".join(
            f"{n:>{max(len(c), 5)}}" for c, n in zip(columns, cells, strict=True)) + " |")
    for agent in agents:
        results = index.get(agent, {})
        if not results:
            print(f"\n{agent}: no results in index.json")
            continue
        failed = sorted((c for c, r in results.items() if r.get("behavior") == "FAILED"),
                        key=case_key)
        closes = Counter(r.get("behaviorClose") for r in results.values())
        print(f"\n{agent}: behaviorClose " + ", ".join(
            f"{k} {v}" for k, v in sorted(closes.items(), key=lambda kv: str(kv[0]))))
        print(f"{agent}: FAILED ({len(failed)})" + (":" if failed else ": -"))
        for case_id in failed:
            path = out / results[case_id].get("reportfile", "")
            try:
                report = json.loads(path.read_text())
            except (OSError, ValueError):
                line = f"(no report {path.name})"
            else:
                about = " ".join(report.get("description", "").split("<br")[0].split())[:70]
                line = f"{about} -- {reason(report)}"
            print(f"  {case_id}: {line}")
        for behavior in ("NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", *others):
            ids = sorted((c for c, r in results.items() if r.get("behavior") == behavior),
                         key=case_key)
            if ids:
                print(f"{agent}: {behavior} ({len(ids)}): {', '.join(ids)}")


def main_run(args: argparse.Namespace) -> int:
    if not PY27.exists():
        print(f"error: {PY27.relative_to(ROOT)} is missing: run "
              f"`bash bench/autobahn/setup.sh` first", file=sys.stderr)
        return 2
    out = Path(args.out).resolve() if args.out else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").unlink(missing_ok=True)  # never report a previous run
    agents = split_list(args.agents)
    unknown = set(agents) - set(AGENTS)
    if unknown:
        print(f"error: unknown agents {sorted(unknown)}; known: {', '.join(AGENTS)}",
              file=sys.stderr)
        return 2
    cases = split_list(args.cases) or ["*"]
    exclude = [] if args.all else split_list(args.exclude)
    base = f"ws://127.0.0.1:{args.port}"
    spec = {"url": base, "outdir": str(out), "cases": cases, "exclude-cases": exclude,
            "exclude-agent-cases": {}, "options": {"failByDrop": False}}
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    with open(out / "wstest.log", "wb") as wslog:
        server = subprocess.Popen([str(PY27), "-c", WSTEST_LOOPBACK, str(spec_path)], cwd=out,
                                  stdin=subprocess.DEVNULL, stdout=wslog,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    all_stats: dict[str, str] = {}
    try:
        wait_listening(args.port, server, START_TIMEOUT)
        count = asyncio.run(get_case_count(base))
        print(f"wstest fuzzingserver on {base}: {count} cases; cases {','.join(cases)}; "
              f"excluded {','.join(exclude) or '-'}; agents {', '.join(agents)}", flush=True)
        for agent in agents:
            start = time.monotonic()
            if agent == "aiohttp":
                stats = asyncio.run(run_aiohttp(base, agent, count, args.case_timeout))
                all_stats[agent] = json.dumps(dict(stats))
            else:
                all_stats[agent] = run_gatewayd_agent(agent, base, count, args, out)
            asyncio.run(update_reports(base, agent))
            print(f"{agent}: {count} cases in {time.monotonic() - start:.1f} s", flush=True)
    except RuntimeError as exc:
        print(f"error: {exc} (see {out / 'wstest.log'})", file=sys.stderr)
        return 3
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)

    index_path = out / "index.json"
    if not index_path.exists():
        print(f"error: no {index_path}; see {out / 'wstest.log'}", file=sys.stderr)
        return 1
    print()
    summarize(out, json.loads(index_path.read_text()), agents)
    print()
    for agent, stats in all_stats.items():
        print(f"{agent} counts: {stats}")
    print(f"\nreport: {out / 'index.html'}  (logs: wstest.log, <agent>.log)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default=",".join(AGENTS),
                        help=f"comma-separated (default: {','.join(AGENTS)})")
    parser.add_argument("--cases", default="*", help="comma-separated case patterns (default: *)")
    parser.add_argument("--exclude", default=DEFAULT_EXCLUDE,
                        help=f"comma-separated case patterns to skip (default: {DEFAULT_EXCLUDE},"
                             " the slow performance and compression groups; '' for none)")
    parser.add_argument("--all", action="store_true", help="exclude nothing")
    parser.add_argument("--port", type=int, default=9001, help="fuzzing server port (9001)")
    parser.add_argument("--out", help=f"report folder (default: {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--case-timeout", type=float, default=60.0,
                        help="seconds one case may take (default: 60)")
    parser.add_argument("--esp-at-gap", type=float, default=0.2,
                        help="seconds without +WS_DATA that end a message for the ESP-AT MCU"
                             " (default: 0.2; 0: echo every piece as a message)")
    parser.add_argument("--gatewayd-log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--child", choices=AGENTS[1:], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return asyncio.run(serve_agent(args.child, args.url, args.count, args.case_timeout,
                                       args.esp_at_gap, args.gatewayd_log_level))
    return main_run(args)


if __name__ == "__main__":
    raise SystemExit(main())
