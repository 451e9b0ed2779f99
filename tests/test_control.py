"""`gatewayd status` and `gatewayd trace` against a running daemon, over its
control socket, with a real WebSocket link open."""

from __future__ import annotations

import asyncio
import sys

import pytest
from conftest import port_of

from gatewayd.service.control_client import render
from gatewayd.testing import GatewaydProcess, VirtualMcu

OK = b"\r\nOK\r\n"


async def gatewayd(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gatewayd", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_status_and_trace_of_a_running_daemon(tmp_path, ws_echo):
    config = tmp_path / "gw.toml"
    config.write_text('[[port]]\nname = "mcu"\ndevice = "pty:tty"\n'
                      '[control]\nsocket = "ctl.sock"\n')
    async with GatewaydProcess(["run", "-c", str(config)], cwd=tmp_path) as proc:
        await proc.wait_for("READY=1")
        assert (tmp_path / "ctl.sock").is_socket()
        mcu = await VirtualMcu.open(tmp_path / "tty")
        await mcu.expect(b"\r\nready\r\n")
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b'AT+WSOPEN=2,"ws://127.0.0.1:%d"' % port_of(ws_echo),
                          b"+WS_CONNECTED:2\r\n" + OK)
        await mcu.command(b"AT+WSSEND=2,4", b"\r\nOK\r\n\r\n>")
        await mcu.send(b"test")
        await mcu.expect(b"\r\nSEND OK\r\n+WS_DATA:2,4,test\r\n")

        code, out, err = await gatewayd("status", "-c", str(config))
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("port mcu  esp-at  pty:")
        assert "uart open" in lines[0]
        assert lines[1].startswith(f"  link 2  ws  127.0.0.1:{port_of(ws_echo)}  open  "
                                   "in 4 B  out 4 B  last error: -")

        tracer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gatewayd", "trace", "mcu", "-c", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await asyncio.sleep(0.5)  # let it subscribe
        await mcu.command(b"AT+GMR", b"AT version:", timeout=5)
        await mcu.read_until(OK)
        assert tracer.stdout is not None
        first = await asyncio.wait_for(tracer.stdout.readline(), 5)
        second = await asyncio.wait_for(tracer.stdout.readline(), 5)
        assert first.decode().rstrip().endswith(" mcu > AT+GMR\\r\\n")
        assert " mcu < AT version:" in second.decode()
        tracer.terminate()
        await tracer.wait()
        await mcu.close()
        code, stderr = await proc.stop()
        assert code == 0, stderr
    assert not (tmp_path / "ctl.sock").exists()


async def test_status_without_a_daemon_says_so(tmp_path):
    config = tmp_path / "gw.toml"
    config.write_text('[[port]]\nname = "mcu"\ndevice = "pty:tty"\n'
                      '[control]\nsocket = "ctl.sock"\n')
    code, _, err = await gatewayd("status", "-c", str(config))
    assert code == 3
    assert "cannot reach the daemon's control socket" in err


async def test_trace_of_an_unknown_port(tmp_path):
    config = tmp_path / "gw.toml"
    config.write_text('[[port]]\nname = "mcu"\ndevice = "pty:tty"\n'
                      '[control]\nsocket = "ctl.sock"\n')
    async with GatewaydProcess(["run", "-c", str(config)], cwd=tmp_path) as proc:
        await proc.wait_for("READY=1")
        code, _, err = await gatewayd("trace", "nosuch", "-c", str(config))
        assert code == 1
        assert "no port 'nosuch' (ports: mcu)" in err
        assert (await proc.stop())[0] == 0


def test_trace_renders_text_and_binary():
    import base64
    data = base64.b64encode(b"AT\r\n").decode()
    text = render({"t": 0.5, "port": "p", "dir": "in", "data": data})
    assert text.endswith(" p > AT\\r\\n")
    dump = render({"t": 0.0, "port": "p", "dir": "out",
                   "data": base64.b64encode(bytes(range(20))).decode()})
    lines = dump.splitlines()
    assert lines[0].endswith(" p < 20 bytes")
    assert lines[1] == "    00000000  " + bytes(range(16)).hex(" ") + "  " + "." * 16


async def test_prometheus_endpoint_reports_ports_and_links(tmp_path, ws_echo):
    import socket

    import aiohttp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        metrics_port = sock.getsockname()[1]
    config = tmp_path / "gw.toml"
    config.write_text('[[port]]\nname = "mcu"\ndevice = "pty:tty"\n'
                      f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
    async with GatewaydProcess(["run", "-c", str(config)], cwd=tmp_path) as proc:
        await proc.wait_for("READY=1")
        mcu = await VirtualMcu.open(tmp_path / "tty")
        await mcu.expect(b"\r\nready\r\n")
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b'AT+WSOPEN=1,"ws://127.0.0.1:%d"' % port_of(ws_echo),
                          b"+WS_CONNECTED:1\r\n" + OK)
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        assert 'gatewayd_port_commands_total{port="mcu"} 2.0' in text
        assert 'gatewayd_port_uart_up{port="mcu"} 1.0' in text
        assert 'gatewayd_port_links{port="mcu"} 1.0' in text
        peer = f"127.0.0.1:{port_of(ws_echo)}"
        assert f'gatewayd_link_up{{kind="ws",link="1",peer="{peer}",port="mcu"}} 1.0' in text
        assert 'gatewayd_port_bytes_total{direction="in",port="mcu"}' in text
        await mcu.close()
        assert (await proc.stop())[0] == 0


def test_metrics_listen_must_be_host_and_port(tmp_path):
    import subprocess

    config = tmp_path / "gw.toml"
    config.write_text('[[port]]\nname = "mcu"\ndevice = "pty:tty"\n[metrics]\nlisten = "9464"\n')
    result = subprocess.run([sys.executable, "-m", "gatewayd", "check-config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "metrics.listen" in result.stderr


async def _status_over(path) -> dict:
    import json

    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b'{"command": "status"}\n')
    line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    await writer.wait_closed()
    return json.loads(line)


def _http_get(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def test_running_gateway_starts_control_socket_and_metrics_and_stops_them(tmp_path):
    from gatewayd.testing import running_gateway

    config_text = ('[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\n'
                   '[control]\nsocket = "ctl.sock"\n'
                   '[metrics]\nlisten = "127.0.0.1:0"\n')
    async with running_gateway(tmp_path, config_text=config_text) as (daemon, mcu):
        await mcu.command(b"AT", b"AT\r\n" + OK)
        status = await _status_over(tmp_path / "ctl.sock")
        assert [p["name"] for p in status["ports"]] == ["mcu"]
        port = daemon.metrics.address[1]
        code, content_type, text = await asyncio.to_thread(_http_get, port)
        assert code == 200
        assert content_type.startswith("text/plain")
        assert 'gatewayd_port_commands_total{port="mcu"} 1.0' in text
    assert not (tmp_path / "ctl.sock").exists()
    assert not (tmp_path / "ttyAT0").exists()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


class _Recorder:
    def __init__(self, name: str, events: list[str], fail: bool = False) -> None:
        self.name, self.events, self.fail = name, events, fail

    async def start(self) -> None:
        self.events.append(f"start {self.name}")
        if self.fail:
            raise OSError(f"{self.name} cannot start")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")


async def test_services_stop_in_reverse_and_a_failed_start_stops_what_started():
    from gatewayd.logs import get_logger
    from gatewayd.service.lifecycle import Service, Services

    events: list[str] = []
    services = Services(get_logger())
    first, second = _Recorder("a", events), _Recorder("b", events)
    assert isinstance(first, Service)
    await services.start(first, second)
    await services.stop()
    await services.stop()  # twice is harmless
    assert events == ["start a", "start b", "stop b", "stop a"]
    events.clear()
    with pytest.raises(OSError, match="c cannot start"):
        await services.start(first, _Recorder("c", events, fail=True), second)
    assert events == ["start a", "start c", "stop c", "stop a"]


async def test_daemon_start_failing_on_metrics_closes_the_ports_again(tmp_path):
    import socket

    from gatewayd.config import load_config
    from gatewayd.logs import get_logger
    from gatewayd.plugin.manager import load_plugins
    from gatewayd.service.daemon import Daemon

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config_file = tmp_path / "gw.toml"
        config_file.write_text('[[port]]\nname = "mcu"\ndevice = "pty:tty"\n'
                               '[control]\nsocket = "ctl.sock"\n'
                               f'[metrics]\nlisten = "127.0.0.1:{taken.getsockname()[1]}"\n')
        daemon = Daemon(load_config(config_file), load_plugins(), get_logger())
        with pytest.raises(OSError):
            await daemon.start()
    assert daemon.sessions == {}
    assert not (tmp_path / "tty").exists()
    assert not (tmp_path / "ctl.sock").exists()


async def test_run_removes_its_signal_handlers_on_stop(tmp_path):
    import os
    import signal
    import socket
    import tempfile

    from gatewayd.config import load_config
    from gatewayd.logs import get_logger
    from gatewayd.plugin.manager import load_plugins
    from gatewayd.service.daemon import Daemon
    from gatewayd.service.systemd import Notifier

    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    config_file = tmp_path / "gw.toml"
    config_file.write_text('[[port]]\nname = "mcu"\ndevice = "pty:tty"\n')
    with tempfile.TemporaryDirectory(prefix="gwd-") as folder, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(os.path.join(folder, "notify"))
        notify.setblocking(False)
        daemon = Daemon(load_config(config_file), load_plugins(), get_logger())
        daemon.notifier = Notifier({"NOTIFY_SOCKET": os.path.join(folder, "notify")})
        running = asyncio.ensure_future(daemon.run())
        loop = asyncio.get_running_loop()
        message = await asyncio.wait_for(loop.sock_recv(notify, 4096), 5)
        assert b"READY=1" in message.split(b"\n")
        assert signal.getsignal(signal.SIGHUP) is not signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGTERM)  # the daemon's handler, not the default
        assert await asyncio.wait_for(running, 5) == 0
        assert b"STOPPING=1" in (await asyncio.wait_for(loop.sock_recv(notify, 4096), 5))
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert not (tmp_path / "tty").exists()


METRICS_CONFIG = ('[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\n'
                  '[metrics]\nlisten = "127.0.0.1:0"\n')


async def _raw_request(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send *data* on a fresh connection; everything until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def test_metrics_responder_answers_over_a_raw_socket(tmp_path):
    from prometheus_client import CONTENT_TYPE_LATEST

    from gatewayd.testing import running_gateway

    async with running_gateway(tmp_path, config_text=METRICS_CONFIG) as (daemon, _):
        port = daemon.metrics.address[1]
        answer = await _raw_request(port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK"
        assert b"Connection: close" in lines
        assert f"Content-Type: {CONTENT_TYPE_LATEST}".encode() in lines
        assert f"Content-Length: {len(body)}".encode() in lines
        assert b'gatewayd_port_uart_up{port="mcu"} 1.0' in body

        head_only = await _raw_request(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert head_only.startswith(b"HTTP/1.1 200 OK\r\n")
        assert head_only.endswith(b"\r\n\r\n")

        assert (await _raw_request(port, b"GET / HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 404 Not Found\r\n")
        refused = await _raw_request(port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
        assert b"\r\nAllow: GET, HEAD\r\n" in refused
        assert (await _raw_request(port, b"nonsense\r\n\r\n")).startswith(
            b"HTTP/1.1 400 Bad Request\r\n")
        code, _, _ = await asyncio.to_thread(_http_get, port, "/other")
        assert code == 404


async def test_metrics_responder_refuses_a_head_too_large(tmp_path):
    from gatewayd.service.metrics import MAX_HEAD
    from gatewayd.testing import running_gateway

    async with running_gateway(tmp_path, config_text=METRICS_CONFIG) as (daemon, _):
        port = daemon.metrics.address[1]
        huge = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * (2 * MAX_HEAD) + b"\r\n\r\n"
        answer = await _raw_request(port, huge)
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        # The endpoint still serves the next client.
        code, _, _ = await asyncio.to_thread(_http_get, port)
        assert code == 200


async def test_metrics_responder_drops_a_head_that_never_completes(tmp_path):
    from gatewayd.testing import running_gateway

    async with running_gateway(tmp_path, config_text=METRICS_CONFIG) as (daemon, _):
        daemon.metrics.head_timeout = 0.3
        port = daemon.metrics.address[1]
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await _raw_request(port, b"GET /metrics HTTP/1.1\r\nHost: a\r\n", timeout=5)
        assert answer == b""  # closed without an answer
        assert loop.time() - started < 3
        # One never finishing does not block stop either.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /met")
        daemon.metrics.head_timeout = 60
        await asyncio.sleep(0.1)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_control_socket_has_mode_0660_from_the_moment_it_exists(tmp_path):
    import os
    import stat
    from types import SimpleNamespace

    from gatewayd.logs import get_logger
    from gatewayd.service.control_server import ControlServer

    path = tmp_path / "ctl.sock"
    seen: list[int] = []

    async def watch() -> None:
        for _ in range(100_000):  # one look per loop iteration, bounded
            try:
                seen.append(stat.S_IMODE(os.lstat(path).st_mode))
                return
            except FileNotFoundError:
                await asyncio.sleep(0)

    old = os.umask(0)
    try:
        watcher = asyncio.ensure_future(watch())
        await asyncio.sleep(0)
        server = ControlServer(SimpleNamespace(sessions={}), path, get_logger())
        await server.start()
        await asyncio.wait_for(watcher, 5)
    finally:
        os.umask(old)
    try:
        assert seen == [0o660]
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660
        assert path.is_socket()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ctl.sock"]
        assert (await _status_over(path)) == {"ports": []}
    finally:
        await server.stop()
    assert not path.exists()


def _trace_stream(output: bytes, arrow: str) -> str:
    """The payloads of one direction's trace lines, joined (as rendered)."""
    marker = f" mcu {arrow} "
    return "".join(line.split(marker, 1)[1] for line in output.decode().splitlines()
                   if marker in line)


async def test_trace_redacts_wifi_passwords_and_headers_unless_raw(tmp_path):
    from gatewayd.testing import running_gateway

    config_text = ('[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\nwifi_interface = "lo"\n'
                   '[control]\nsocket = "ctl.sock"\n')
    async with running_gateway(tmp_path, config_text=config_text) as (daemon, mcu):
        tracers = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gatewayd", "trace", "mcu",
            "-c", str(tmp_path / "gatewayd.toml"), *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            for extra in ((), ("--raw",))]
        async with asyncio.timeout(10):
            while len(daemon.sessions["mcu"].tracers) < 2:
                await asyncio.sleep(0.02)
        await mcu.send_slowly(b'AT+CWJAP="home","hunter2"\r\n')  # one byte per chunk
        await mcu.read_until(OK)
        await mcu.command(b"AT+WSHEAD=28", b"AT+WSHEAD=28\r\n\r\nOK\r\n\r\n>")
        await mcu.send(b"Authorization: Bearer s3cret")
        await mcu.expect(OK)
        await mcu.command(b"AT+WSHEAD?", b"AT+WSHEAD?\r\n"
                          b'+WSHEAD:0,"Authorization: Bearer s3cret"\r\n' + OK)
        await asyncio.sleep(0.5)  # past TRACE_QUIET: held tails are shown
        for tracer in tracers:
            tracer.terminate()
        (redacted, err), (raw, raw_err) = [
            await asyncio.wait_for(t.communicate(), 10) for t in tracers]
    assert b"hunter2" not in redacted and b"s3cret" not in redacted, err
    assert _trace_stream(redacted, ">") == (
        'AT+CWJAP="home",<redacted>\\r\\nAT+WSHEAD=28\\r\\nAuthorization: <redacted>'
        "AT+WSHEAD?\\r\\n")
    out = _trace_stream(redacted, "<")
    assert out.startswith('AT+CWJAP="home",<redacted>\\r\\n')
    assert "+WSHEAD:0,\"Authorization: <redacted>\\r\\n" in out
    assert _trace_stream(raw, ">") == (
        'AT+CWJAP="home","hunter2"\\r\\nAT+WSHEAD=28\\r\\nAuthorization: Bearer s3cret'
        "AT+WSHEAD?\\r\\n"), raw_err
    assert '+WSHEAD:0,"Authorization: Bearer s3cret"\\r\\n' in _trace_stream(raw, "<")


def test_raw_trace_is_for_the_daemons_user_and_root():
    from gatewayd.service.control_server import may_trace_raw

    assert may_trace_raw(0, own_uid=998) and may_trace_raw(998, own_uid=998)
    assert not may_trace_raw(1000, own_uid=998)


def test_trace_redactor_hides_a_secret_split_by_a_quiet_flush():
    from gatewayd.session.redact import MAX_LINE, StreamRedactor

    redactor = StreamRedactor()
    assert redactor.feed(b'\r\nOK\r\nAT+CWJAP="h","hu') == b"\r\nOK\r\n"
    assert redactor.holding
    assert redactor.flush() == b'AT+CWJAP="h",<redacted>'
    assert not redactor.holding
    assert redactor.feed(b'nter2"\r\n') == b"\r\n"
    assert redactor.feed(b"Authoriz") == b""
    assert redactor.flush() == b"Authoriz"
    assert redactor.feed(b"ation: Bearer x\r\n") == b"ation: <redacted>\r\n"
    assert redactor.feed(b"Cookie: id=1") == b""
    assert redactor.flush(end=True) == b"Cookie: <redacted>"
    assert redactor.feed(b"AT\r\n") == b"AT\r\n"  # a new line, shown as it is
    assert redactor.feed(b"a" * (MAX_LINE + 1)) == b"a" * (MAX_LINE + 1)
    assert not redactor.holding
