"""The ``gatewayd`` command as a user runs it: a real subprocess, a real pty,
and a unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
from pathlib import Path

from gatewayd.testing import GatewaydProcess, VirtualMcu

OK = b"\r\nOK\r\n"


def gatewayd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gatewayd", *args], capture_output=True,
                          text=True, timeout=30, cwd=cwd)


def test_check_config_ok(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[[port]]\nname = "mcu"\ndevice = "pty:tty0"\n')
    result = gatewayd("check-config", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{good}: ok"


def test_check_config_reports_each_problem_on_its_own_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[port]]\nname = "mcu"\ndevice = "pty:tty0"\nbaudrate = "fast"\ncolour = "red"\n'
        '[certs.client.1]\nca = "missing-ca.pem"\n')
    result = gatewayd("check-config", str(bad))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert any(line.startswith(f"{bad}: port[0].baudrate: ") for line in lines)
    assert f"{bad}: port[0].colour: unknown key" in lines
    assert any(line.startswith(f"{bad}: certs.client.1.ca: ") and "missing-ca.pem" in line
               for line in lines)


def test_check_config_unknown_dialect(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[port]]\nname = "mcu"\ndevice = "pty:tty0"\ndialect = "hayes"\n')
    result = gatewayd("check-config", str(bad))
    assert result.returncode != 0
    assert "port[0].dialect: no plugin provides dialect 'hayes'" in result.stderr


def test_plugins_lists_builtin_dialects_with_their_distribution():
    result = gatewayd("plugins")
    assert result.returncode == 0, result.stderr
    assert "esp-at" in result.stdout and "ameba" in result.stdout
    assert "from gatewayd 0.1.0" in result.stdout


def test_dialect_without_device_is_refused():
    result = gatewayd("run", "--dialect", "ameba")
    assert result.returncode == 2
    assert "--device" in result.stderr


async def test_ready_only_after_pty_exists_then_sigterm_exits_zero(tmp_path):
    link = tmp_path / "ttyAT0"
    async with GatewaydProcess(["run", "--device", f"pty:{link}"], cwd=tmp_path) as proc:
        message = await proc.wait_for("READY=1")
        assert link.is_symlink(), "READY=1 arrived before the pty symlink existed"
        assert any(line.startswith("STATUS=1 port(s) open") for line in message.split("\n"))
        mcu = await VirtualMcu.open(link)
        await mcu.expect(b"\r\nready\r\n")
        await mcu.command(b"AT", b"AT\r\n" + OK)
        await mcu.close()
        code, stderr = await proc.stop()
        assert code == 0, stderr
        await proc.wait_for("STOPPING=1")
    assert not link.exists(), "the pty symlink outlived the daemon"


async def test_default_run_uses_pty_in_current_directory(tmp_path):
    async with GatewaydProcess(["run"], cwd=tmp_path) as proc:
        await proc.wait_for("READY=1")
        mcu = await VirtualMcu.open(tmp_path / "ttyAT0")
        await mcu.expect(b"\r\nready\r\n")
        await mcu.close()
        code, _ = await proc.stop()
        assert code == 0


async def test_ameba_dialect_from_command_line(tmp_path):
    link = tmp_path / "tty"
    async with GatewaydProcess(["run", "--device", f"pty:{link}", "--dialect", "ameba"],
                               cwd=tmp_path) as proc:
        await proc.wait_for("READY=1")
        mcu = await VirtualMcu.open(link)
        await mcu.expect(b"ATCMD READY\r\n")
        await mcu.command(b"AT+TEST", OK)
        await mcu.close()
        assert (await proc.stop())[0] == 0


async def test_watchdog_pings_at_half_the_interval(tmp_path):
    env = {"WATCHDOG_USEC": "400000"}
    async with GatewaydProcess(["run", "--device", f"pty:{tmp_path / 't'}"], cwd=tmp_path,
                               env=env) as proc:
        await proc.wait_for("READY=1")
        loop = asyncio.get_running_loop()
        await proc.wait_for("WATCHDOG=1", timeout=2)
        start = loop.time()
        for _ in range(3):
            await proc.wait_for("WATCHDOG=1", timeout=2)
        per_ping = (loop.time() - start) / 3
        assert 0.1 < per_ping < 0.4, per_ping
        assert (await proc.stop())[0] == 0


async def test_sighup_reload_adds_a_port_and_keeps_the_other(tmp_path):
    config = tmp_path / "gw.toml"
    one = '[[port]]\nname = "a"\ndevice = "pty:a"\n'
    config.write_text(one)
    async with GatewaydProcess(["run", "-c", str(config)], cwd=tmp_path) as proc:
        await proc.wait_for("READY=1")
        mcu_a = await VirtualMcu.open(tmp_path / "a")
        await mcu_a.expect(b"\r\nready\r\n")
        await mcu_a.command(b"ATE0", b"ATE0\r\n" + OK)
        config.write_text(one + '[[port]]\nname = "b"\ndevice = "pty:b"\ndialect = "ameba"\n')
        proc.signal(signal.SIGHUP)
        await proc.wait_for("RELOADING=1")
        await proc.wait_for("READY=1")
        mcu_b = await VirtualMcu.open(tmp_path / "b")
        await mcu_b.expect(b"ATCMD READY\r\n")
        await mcu_b.command(b"AT+TEST", OK)
        # Port a was not reopened: echo is still off and no banner was sent.
        await mcu_a.command(b"AT", OK)
        # A broken file is rejected and the running config stays.
        config.write_text("[[port]]\nname = 5\n")
        proc.signal(signal.SIGHUP)
        await proc.wait_for("READY=1")
        await mcu_a.command(b"AT", OK)
        await mcu_b.command(b"AT+TEST", OK)
        await mcu_a.close()
        await mcu_b.close()
        code, stderr = await proc.stop()
        assert code == 0
        assert b"reload rejected" in stderr


async def test_unopenable_device_exits_non_zero(tmp_path):
    async with GatewaydProcess(["run", "--device", str(tmp_path / "no-such-tty")],
                               cwd=tmp_path) as proc:
        assert proc.proc is not None
        code = await asyncio.wait_for(proc.proc.wait(), 20)
        assert code != 0


def test_module_entry_point_version():
    result = gatewayd("--version")
    assert result.stdout.strip() == "gatewayd 0.1.0"


async def test_sighup_with_a_changed_suite_applies_to_new_connections(tmp_path, tls_files):
    import trustme
    from conftest import echo, port_of
    from websockets.asyncio.server import serve

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(other_ca)
    config = tmp_path / "gw.toml"
    port = '[[port]]\nname = "mcu"\ndevice = "pty:tty"\n'
    config.write_text(port + f'[certs.client.1]\nca = "{other_ca}"\n')
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
    async with serve(echo, "127.0.0.1", 0, ssl=context) as server, \
            GatewaydProcess(["run", "-c", str(config)], cwd=tmp_path) as proc:
        uri = b'AT+WSOPEN=0,"wss://127.0.0.1:%d"' % port_of(server)
        await proc.wait_for("READY=1")
        mcu = await VirtualMcu.open(tmp_path / "tty")
        await mcu.expect(b"\r\nready\r\n")
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b"AT+WSCFG=0,30,60,1024,2,0,1", OK)
        await mcu.command(uri, b"+WS_DISCONNECTED:0\r\n\r\nERROR\r\n")  # wrong CA
        config.write_text(port + f'[certs.client.1]\nca = "{tls_files["ca"]}"\n')
        proc.signal(signal.SIGHUP)
        await proc.wait_for("RELOADING=1")
        await proc.wait_for("READY=1")
        await mcu.command(b"AT+WSCFG=0,30,60,1024,2,0,1", OK)  # echo still off: same port
        await mcu.command(uri, b"+WS_CONNECTED:0\r\n" + OK)
        await mcu.close()
        assert (await proc.stop())[0] == 0


async def test_status_notification_follows_the_links(tmp_path, ws_echo):
    from conftest import port_of

    link = tmp_path / "tty"
    async with GatewaydProcess(["run", "--device", f"pty:{link}"], cwd=tmp_path) as proc:
        ready = await proc.wait_for("READY=1")
        assert "STATUS=1 port(s) open: mcu (esp-at); 0 link(s)" in ready.split("\n")
        mcu = await VirtualMcu.open(link)
        await mcu.expect(b"\r\nready\r\n")
        await mcu.command(b"ATE0", b"ATE0\r\n" + OK)
        await mcu.command(b'AT+WSOPEN=0,"ws://127.0.0.1:%d"' % port_of(ws_echo),
                          b"+WS_CONNECTED:0\r\n" + OK)
        await proc.wait_for("STATUS=1 port(s) open: mcu (esp-at); 1 link(s)")
        await mcu.command(b"AT+WSCLOSE=0", OK)
        await proc.wait_for("STATUS=1 port(s) open: mcu (esp-at); 0 link(s)")
        await mcu.close()
        assert (await proc.stop())[0] == 0


async def test_device_with_a_file_that_has_no_ports(tmp_path):
    """DESIGN: --device replaces the file's ports, and a file holding only other
    settings is valid then; a reload keeps the --device port."""
    config = tmp_path / "only-settings.toml"
    config.write_text('[log]\nlevel = "debug"\n[control]\nsocket = "ctl.sock"\n')
    link = tmp_path / "tty"
    async with GatewaydProcess(["run", "-c", str(config), "--device", f"pty:{link}"],
                               cwd=tmp_path) as proc:
        await proc.wait_for("READY=1")
        assert (tmp_path / "ctl.sock").is_socket()  # the file's other settings apply
        mcu = await VirtualMcu.open(link)
        await mcu.expect(b"\r\nready\r\n")
        proc.signal(signal.SIGHUP)
        await proc.wait_for("READY=1")
        await mcu.command(b"AT", b"AT\r\n" + OK)  # the port was not reopened
        await mcu.close()
        code, stderr = await proc.stop()
        assert code == 0, stderr
    result = gatewayd("check-config", str(config))
    assert result.returncode == 2
    assert result.stderr == (f"{config}: port: no [[port]] table: add one, or give the port"
                             " with --device\n")
