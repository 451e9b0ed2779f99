"""Ameba network commands end to end, and the start-up transcripts of
shared/reference/ameba-wifi-network.md §9 with fixed addresses.

In-process tests (the host's own network, read-only): AT+PING against
127.0.0.1, AT+DNS of ``localhost`` and literals only (never the machine's
resolver for other names), AT+QUERYDNSSRV/AT+SETDNSSRV against the host's
``/etc/resolv.conf`` (checked unchanged), SNTP against the host clock.

Transcripts T1 and T3 run the real ``gatewayd`` in a network namespace the
test creates (root and iproute2 needed, else skipped): ``wlan0`` with
192.168.1.57/24 and the default route via 192.168.1.1, the other end of its
veth pair holding the gateway's address and T1's server 192.168.1.10, a
resolv.conf of its own (``/etc/netns/<name>/resolv.conf``) and ping sockets
allowed. Nothing is created outside the namespace, and the test asserts
that its addresses, routes and resolv.conf, and the host's, are unchanged
afterwards. T3's TLS socket to example.com and its DNS lookup of
example.com need the Internet; the lookup is made for ``localhost`` here.

Not provoked, hence not tested: AT+DNS with a name the resolver fails on
(only ``localhost`` and literals may be resolved; an over-long label fails
before any lookup and stands in for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.links import hostnet
from gatewayd.testing import VirtualMcu, running_gateway

OK = b"\r\nOK\r\n"


def error(code: int) -> bytes:
    return b"\r\nERROR: %d\r\n" % code


def config(extra: str = "") -> str:
    return f'[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n{extra}'


def ping_sockets_allowed() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
    except OSError:
        return False
    return True


def host_nameservers() -> list[str]:
    servers = []
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver" and re.fullmatch(
                r"\d+\.\d+\.\d+\.\d+", words[1]):
            servers.append(words[1])
    return servers


@pytest.fixture
async def mcu(tmp_path):
    async with running_gateway(tmp_path, config_text=config()) as (_, mcu):
        yield mcu


@pytest.fixture
async def results(tmp_path):
    """A port that reports ping results on the AT port."""
    async with running_gateway(tmp_path, config_text=config("ameba_ping_results = true\n")) \
            as (_, mcu):
        yield mcu


# -- AT+PING -----------------------------------------------------------------


@pytest.mark.parametrize(("line", "code"), [
    (b"AT+PING", 1),
    (b"AT+PING=", 1),
    (b"AT+PING=127.0.0.1,-n,0", 2),
    (b"AT+PING=127.0.0.1,-n,x", 2),
    (b"AT+PING=127.0.0.1,-n", 2),
    (b"AT+PING=127.0.0.1,-l,10001", 2),
    (b"AT+PING=127.0.0.1,-l,-1", 2),
    (b"AT+PING=127.0.0.1,if,2", 2),
    (b"AT+PING=127.0.0.1,-t,5", 2),      # the docs' -t,<interval>: 5 is an unknown option
    (b"AT+PING=127.0.0.1,-x", 2),
])
async def test_ping_errors(mcu, line, code):
    await mcu.command(line, error(code))
    await mcu.command(b"AT+TEST", OK)


async def test_ping_answers_ok_at_once_and_reports_to_the_log_only(mcu):
    await mcu.command(b"AT+PING=127.0.0.1,-n,1,-l,0,if,0", OK, timeout=0.5)
    await mcu.expect_silence(0.5)
    await mcu.command(b"AT+PING=stop", OK)


async def test_ping_results_on_the_at_port(results):
    await results.command(b"AT+PING=127.0.0.1,-n,2", OK, timeout=0.5)
    if ping_sockets_allowed():
        pattern = (rb"\[\$\]\[ping_test\] 32 bytes from 127\.0\.0\.1: icmp_seq=1 time=\d+ ms\r\n"
                   rb"\[\$\]\[ping_test\] 32 bytes from 127\.0\.0\.1: icmp_seq=2 time=\d+ ms\r\n"
                   rb"\[\$\]\[ping_test\] 2 packets transmitted, 2 received, 0% packet loss,"
                   rb" average \d+ ms\r\n"
                   rb"\[\$\]\[ping_test\] min: \d+ ms, max: \d+ ms\r\n")
    else:  # ping_group_range leaves us out: no echo gets a reply
        pattern = (rb"\[\$\]\[ping_test\] Request timeout for icmp_seq 1\r\n"
                   rb"\[\$\]\[ping_test\] Request timeout for icmp_seq 2\r\n"
                   rb"\[\$\]\[ping_test\] 2 packets transmitted, 0 received, 100% packet loss,"
                   rb" average 0 ms\r\n"
                   rb"\[\$\]\[ping_test\] min: 0 ms, max: 0 ms\r\n")
    reply = await results.read_until(b" max: ", timeout=12)
    reply += await results.read_until(b"\r\n", timeout=1)
    assert re.fullmatch(pattern, reply), reply
    await results.command(b"AT+TEST", OK)


async def test_ping_while_running_and_stop(results):
    await results.command(b"AT+PING=127.0.0.1,-t", OK, timeout=0.5)
    await results.command(b"AT+PING=127.0.0.1,-n,1", OK, timeout=0.5)  # running: nothing new
    await asyncio.sleep(0.2)
    await results.send(b"AT+PING=stop\r\n")
    reply = await results.read_until(b" max: ", timeout=10)
    assert OK in reply
    assert b"packets transmitted" in reply
    await results.read_until(b"\r\n", timeout=1)
    await results.expect_silence(1.5)
    await results.command(b"AT+TEST", OK)


# -- AT+IPERF, AT+IPERF3, AT+MDNS -----------------------------------------------------


@pytest.mark.parametrize(("line", "code"), [
    (b"AT+IPERF", 3),
    (b"AT+IPERF=-s,-p,5001", None),
    (b"AT+IPERF=-c,192.168.1.1,-t,10", None),
    (b"AT+IPERF3", 1),
    (b"AT+IPERF3=-x", 2),
    (b"AT+IPERF3=-c", 2),
    (b"AT+IPERF3=-s", None),
    (b"AT+IPERF3=-c,192.168.1.1", None),
])
async def test_iperf_accepted_and_not_run(mcu, line, code):
    await mcu.command(line, OK if code is None else error(code))
    await mcu.command(b"AT+TEST", OK)


@pytest.mark.parametrize(("line", "code"), [
    (b"AT+MDNS", 1),
    (b"AT+MDNS=", 1),
    (b"AT+MDNS=2", 1),
    (b"AT+MDNS=1,ameba,_http", 1),                     # no port
    (b"AT+MDNS=1,ameba,_http,0", 1),
    (b"AT+MDNS=1,ameba,_http,65536", 1),
    (b"AT+MDNS=1,,_http,80", 1),
    (b"AT+MDNS=1,ameba,_http,80,web,3", 1),            # proto not 1 or 2
    (b"AT+MDNS=1,ameba,_http,80,web,1,7", 1),          # txt_cnt above 6
    (b"AT+MDNS=1,ameba,_http,80,web,1,2,k1,v1", 1),    # fewer pairs than txt_cnt
    (b"AT+MDNS=1,ameba,_http,80", 4),                  # Wi-Fi not joined
    (b"AT+MDNS=0", None),
])
async def test_mdns_errors(mcu, line, code):
    await mcu.command(line, OK if code is None else error(code))
    await mcu.command(b"AT+TEST", OK)


@pytest.mark.skipif(hostnet.default_interface() is None, reason="the host has no default route")
async def test_mdns_while_joined(mcu):
    await mcu.send(b"AT+WLCONN=ssid,MyWiFi\r\n")
    await mcu.read_until(OK)
    await mcu.command(b"AT+MDNS=1,ameba,_http,80,web,1,2,k1,v1,k2,v2", OK)
    await mcu.command(b"AT+MDNS=1,ameba,_http,80", error(3))   # already enabled
    await mcu.command(b"AT+MDNS=0", OK)
    await mcu.command(b"AT+MDNS=1,ameba,_http,80", OK)
    await mcu.command(b"AT+WLRECONN=fast,0", OK)  # no rejoin after the restart
    await mcu.command(b"AT+RST", OK + b"ATCMD READY\r\n")     # RAM only
    await mcu.command(b"AT+MDNS=1,ameba,_http,80", error(4))


# -- AT+DNS, AT+QUERYDNSSRV, AT+SETDNSSRV ----------------------------------------------


async def test_dns(mcu):
    await mcu.command(b"AT+DNS=localhost", b"\r\n+DNS:127.0.0.1\r\n" + OK)
    await mcu.command(b"AT+DNS=93.184.215.14", b"\r\n+DNS:93.184.215.14\r\n" + OK)


@pytest.mark.parametrize(("line", "code"), [
    (b"AT+DNS", 1),
    (b"AT+DNS=localhost,localhost", 1),
    (b"AT+DNS=", 2),
    (b"AT+DNS=" + b"a" * 64 + b".example", 2),   # a label over 63 bytes: never resolvable
    (b"AT+DNS=localhost,", 1),                    # a trailing empty field counts
])
async def test_dns_errors(mcu, line, code):
    await mcu.command(line, error(code))
    await mcu.command(b"AT+TEST", OK)


async def test_dns_servers_are_stored_and_resolv_conf_untouched(mcu):
    before = Path("/etc/resolv.conf").read_bytes()
    servers = host_nameservers()[:2]
    await mcu.command(b"AT+QUERYDNSSRV", b"\r\n+QUERYDNSSRV:" + ", ".join(servers).encode()
                      + b"\r\n" + OK)
    await mcu.command(b"AT+SETDNSSRV=8.8.8.8", OK)
    await mcu.command(b"AT+QUERYDNSSRV", b"\r\n+QUERYDNSSRV:8.8.8.8\r\n" + OK)
    await mcu.command(b"AT+SETDNSSRV=192.168.1.1,8.8.4.4", OK)
    await mcu.command(b"AT+QUERYDNSSRV", b"\r\n+QUERYDNSSRV:192.168.1.1, 8.8.4.4\r\n" + OK)
    await mcu.command(b"AT+DNS=localhost", b"\r\n+DNS:127.0.0.1\r\n" + OK)
    await mcu.command(b"AT+RST", OK + b"ATCMD READY\r\n")  # RAM only
    await mcu.command(b"AT+QUERYDNSSRV", b"\r\n+QUERYDNSSRV:" + ", ".join(servers).encode()
                      + b"\r\n" + OK)
    assert Path("/etc/resolv.conf").read_bytes() == before


@pytest.mark.parametrize(("line", "code"), [
    (b"AT+QUERYDNSSRV=", 1),
    (b"AT+QUERYDNSSRV=1", 1),
    (b"AT+SETDNSSRV", 1),
    (b"AT+SETDNSSRV=1.1.1.1,8.8.8.8,9.9.9.9", 1),
    (b"AT+SETDNSSRV=", 2),
    (b"AT+SETDNSSRV=dns.google", 2),
    (b"AT+SETDNSSRV=8.8.8", 2),
    (b"AT+SETDNSSRV=8.8.8.8,256.1.1.1", 2),
    (b"AT+SETDNSSRV=8.8.8.8,", 2),                # a trailing empty field counts
    (b"AT+SETDNSSRV=8.8.8.8,8.8.4.4,", 1),
])
async def test_dns_server_errors(mcu, line, code):
    await mcu.command(line, error(code))
    await mcu.command(b"AT+TEST", OK)


# -- SNTP ------------------------------------------------------------------------


def sntpquery(enable: int, timezone: str, interval: int, *servers: str) -> bytes:
    return (b"\r\nenable: %d\r\ntimezone: %s\r\ninterval: %d\r\nserver_count: %d\r\n"
            % (enable, timezone.encode(), interval, len(servers))
            + b"".join(b"server%d: %s\r\n" % (i, s.encode()) for i, s in enumerate(servers))
            + OK)


async def test_sntp_config_and_query(mcu):
    await mcu.command(b"AT+SNTPQUERY", sntpquery(0, "800", 3600))
    await mcu.command(b"AT+SNTPCFG=1,8,3600,pool.ntp.org", OK)
    await mcu.command(b"AT+SNTPQUERY", sntpquery(1, "800", 3600, "pool.ntp.org"))
    await mcu.command(b"AT+SNTPCFG=1,-530,60,ntp1.example,ntp2.example", OK)
    await mcu.command(b"AT+SNTPQUERY", sntpquery(1, "-530", 60, "ntp1.example", "ntp2.example"))
    await mcu.command(b"AT+SNTPCFG=1,0", OK)
    await mcu.command(b"AT+SNTPQUERY", sntpquery(1, "000", 3600, "pool.ntp.org"))
    await mcu.command(b"AT+SNTPCFG=1,0800", OK)
    await mcu.command(b"AT+SNTPQUERY", sntpquery(1, "800", 3600, "pool.ntp.org"))
    await mcu.command(b"AT+SNTPCFG=1,1400,15", OK)
    await mcu.command(b"AT+SNTPQUERY", sntpquery(1, "1400", 15, "pool.ntp.org"))
    await mcu.command(b"AT+SNTPCFG=1", OK)     # the zone falls back to UTC+8 every time
    await mcu.command(b"AT+SNTPQUERY", sntpquery(1, "800", 3600, "pool.ntp.org"))
    await mcu.command(b"AT+SNTPCFG=0", OK)
    await mcu.command(b"AT+SNTPQUERY", sntpquery(0, "800", 3600))
    await mcu.command(b"AT+SNTPCFG=1,530", OK)
    await mcu.command(b"AT+RST", OK + b"ATCMD READY\r\n")  # RAM only
    await mcu.command(b"AT+SNTPQUERY", sntpquery(0, "800", 3600))


async def test_sntp_time_is_the_host_clock_in_the_zone(mcu):
    await mcu.send(b"AT+SNTPTIME\r\n")
    reply = await mcu.read_until(OK)
    assert re.fullmatch(rb"\r\n\+SNTPTIME:1970-01-01 00:00:\d\d UTC\+08:00\r\n" + OK, reply)
    for zone, minutes, label in ((b"8", 480, b"UTC+08:00"), (b"-530", -330, b"UTC-05:30"),
                                 (b"0", 0, b"UTC+00:00")):
        await mcu.command(b"AT+SNTPCFG=1," + zone + b",3600,pool.ntp.org", OK)
        await mcu.send(b"AT+SNTPTIME\r\n")
        reply = await mcu.read_until(OK)
        m = re.fullmatch(rb"\r\n\+SNTPTIME:(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)\r\n" + OK, reply)
        assert m is not None, reply
        assert m.group(2) == label
        shown = datetime.datetime.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S")
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) \
            + datetime.timedelta(minutes=minutes)
        assert abs((now - shown).total_seconds()) < 3


@pytest.mark.parametrize(("line", "code"), [
    (b"AT+SNTPCFG", 1),
    (b"AT+SNTPCFG=", 2),
    (b"AT+SNTPCFG=2", 2),
    (b"AT+SNTPCFG=yes", 2),
    (b"AT+SNTPCFG=1,+8", 2),          # "+" is rejected
    (b"AT+SNTPCFG=1,15", 2),          # beyond +14
    (b"AT+SNTPCFG=1,-13", 2),         # beyond -12
    (b"AT+SNTPCFG=1,1401", 2),
    (b"AT+SNTPCFG=1,860", 2),         # 60 minutes
    (b"AT+SNTPCFG=1,8:00", 2),
    (b"AT+SNTPCFG=1,8,14", 2),        # interval below 15 s
    (b"AT+SNTPCFG=1,8,3600,a,b,c,d,e", 1),  # too many servers
    (b"AT+SNTPQUERY=1", 1),
    (b"AT+SNTPTIME=1", 1),
])
async def test_sntp_errors(mcu, line, code):
    await mcu.command(line, error(code))
    await mcu.command(b"AT+TEST", OK)


# -- the start-up transcripts in a network namespace ------------------------------------

NS_CONFIG = """\
[[port]]
name = "mcu"
device = "pty:{pty}"
dialect = "ameba"
wifi_mac = "00:e0:4c:b7:23:12"
ameba_ping_results = true
[[port.wifi_networks]]
ssid = "MyWiFi"
password = "password123"
bssid = "e8:91:20:fa:8d:1d"
channel = 6
"""
NS_RESOLV = "nameserver 192.168.1.1\nnameserver 8.8.8.8\n"
#: T1's server: answers "world" to whatever arrives.
SERVER = """\
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.1.10", 8080)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); c.recv(5); c.sendall(b"world"); c.recv(1)
"""


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True,
                          timeout=10).stdout


def _snapshot(ns: str) -> tuple[str, ...]:
    return (_ip("-n", ns, "-4", "addr", "show"), _ip("-n", ns, "-4", "route", "show"),
            _ip("-n", ns, "link", "show"), Path(f"/etc/netns/{ns}/resolv.conf").read_text(),
            _ip("-4", "addr", "show"), _ip("-4", "route", "show"),
            Path("/etc/resolv.conf").read_text())


@contextlib.contextmanager
def namespace(*, dhcp: bool = True):
    """A namespace as the module docstring describes; without *dhcp*, wlan0
    has the default route but no IPv4 address (a DHCP server that never
    answers)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    name = f"gwd-ameba-{os.getpid()}"
    etc = Path("/etc/netns") / name
    made_netns_dir = not Path("/etc/netns").exists()
    _ip("netns", "add", name)
    try:
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(NS_RESOLV)

        def ns(*args: str) -> None:
            _ip("-n", name, *args)

        ns("link", "set", "lo", "up")
        ns("link", "add", "wlan0", "type", "veth", "peer", "name", "ap0")
        if dhcp:
            ns("addr", "add", "192.168.1.57/24", "dev", "wlan0")
        ns("addr", "add", "192.168.1.1/24", "dev", "ap0")
        ns("addr", "add", "192.168.1.10/24", "dev", "ap0")
        ns("link", "set", "wlan0", "up")
        ns("link", "set", "ap0", "up")
        if dhcp:
            ns("route", "add", "default", "via", "192.168.1.1", "dev", "wlan0")
        else:
            ns("route", "add", "default", "dev", "wlan0")
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-q", "-w",
                        "net.ipv4.ping_group_range=0 2147483647"], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)
        shutil.rmtree(etc, ignore_errors=True)
        if made_netns_dir:
            with contextlib.suppress(OSError):
                Path("/etc/netns").rmdir()


@pytest.fixture
def netns():
    with namespace() as name:
        yield name


@pytest.fixture
def netns_without_dhcp():
    with namespace(dhcp=False) as name:
        yield name


@contextlib.asynccontextmanager
async def in_netns(ns: str, *args: str, **kwargs):
    proc = await asyncio.create_subprocess_exec("ip", "netns", "exec", ns, *args, **kwargs)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def gatewayd_in(ns: str, tmp_path: Path):
    pty = tmp_path / "ttyAT0"
    (tmp_path / "gatewayd.toml").write_text(NS_CONFIG.format(pty=pty))
    with (tmp_path / "stderr").open("wb") as err:
        async with in_netns(ns, sys.executable, "-m", "gatewayd", "run", "-c",
                            str(tmp_path / "gatewayd.toml"), cwd=tmp_path,
                            stdout=asyncio.subprocess.DEVNULL, stderr=err) as proc:
            mcu = await VirtualMcu.open(pty, timeout=10)
            try:
                yield mcu
            finally:
                await mcu.close()
        assert proc.returncode == 0, (tmp_path / "stderr").read_text()[-2000:]


T1_STATE = (b"WLAN0 Status: Running\r\n"
            b"==============================\r\n"
            b"WLAN0 Setting:\r\n"
            b"==============================\r\n"
            b"      MODE => STATION\r\n"
            b"      SSID => MyWiFi\r\n"
            b"     BSSID => e8:91:20:fa:8d:1d\r\n"
            b"   CHANNEL => 6\r\n"
            b"  SECURITY => WPA2 AES\r\n"
            b"  PASSWORD => password123\r\n"
            b"\r\n"
            b"Interface (0)\r\n"
            b"==============================\r\n"
            b"MAC => 00:e0:4c:b7:23:12\r\n"
            b"IP  => 192.168.1.57\r\n"
            b"GW  => 192.168.1.1\r\n"
            b"MSK  => 255.255.255.0\r\n\r\n"
            b"\r\nOK\r\n")


async def test_t1_cold_boot_dhcp_join_state_tcp_socket(netns, tmp_path):
    before = _snapshot(netns)
    async with in_netns(netns, sys.executable, "-c", SERVER,
                        stdout=asyncio.subprocess.PIPE) as server:
        assert server.stdout is not None
        assert await asyncio.wait_for(server.stdout.readline(), 10) == b"ready\n"
        async with gatewayd_in(netns, tmp_path) as mcu:
            await mcu.expect(b"ATCMD READY\r\n", timeout=10)
            await mcu.command(b"AT+TEST", b"\r\nOK\r\n")
            await mcu.command(b"AT+WLCONN=ssid,MyWiFi,pw,password123",
                              b"[$]wifi connected\r\n"
                              b'[$]wifi got ip:"192.168.1.57"\r\n'
                              b"\r\nOK\r\n")
            await mcu.command(b"AT+WLSTATE", T1_STATE)
            await mcu.command(b"AT+SKTCLIENT=0,1,,192.168.1.10,8080,,1", b"\r\nOK\r\n")
            await mcu.command(b"AT+SKTSEND=0,5,,,hello",
                              b"\r\nOK\r\n[$][SKT][DATA][0][5]:world\r\n")
            # The namespace's own resolvers, and a real echo through a ping socket.
            await mcu.command(b"AT+QUERYDNSSRV",
                              b"\r\n+QUERYDNSSRV:192.168.1.1, 8.8.8.8\r\n\r\nOK\r\n")
            await mcu.command(b"AT+PING=192.168.1.1,-n,2", b"\r\nOK\r\n")
            reply = await mcu.read_until(b" max: ", timeout=10)
            reply += await mcu.read_until(b"\r\n", timeout=1)
            assert re.fullmatch(
                rb"\[\$\]\[ping_test\] 32 bytes from 192\.168\.1\.1: icmp_seq=1 time=\d+ ms\r\n"
                rb"\[\$\]\[ping_test\] 32 bytes from 192\.168\.1\.1: icmp_seq=2 time=\d+ ms\r\n"
                rb"\[\$\]\[ping_test\] 2 packets transmitted, 2 received, 0% packet loss,"
                rb" average \d+ ms\r\n"
                rb"\[\$\]\[ping_test\] min: \d+ ms, max: \d+ ms\r\n", reply), reply
            await mcu.command(b"AT+TEST", b"\r\nOK\r\n")
    assert _snapshot(netns) == before


async def test_t3_wrong_password_static_ip_dns(netns, tmp_path):
    before = _snapshot(netns)
    async with gatewayd_in(netns, tmp_path) as mcu:
        await mcu.expect(b"ATCMD READY\r\n", timeout=10)
        await mcu.command(b"AT+WLCONN=ssid,MyWiFi,pw,wrongpass",
                          b"[$]wifi connect failed\r\n"
                          b"\r\nERROR: 17\r\n")
        await mcu.expect(b"[$]wifi reconnecting\r\n"
                         b"[$]wifi connect failed\r\n", timeout=8)
        await mcu.command(b"AT+WLSTATICIP=192.168.1.200,192.168.1.1,255.255.255.0",
                          b"\r\nOK\r\n")
        await mcu.command(b"AT+WLCONN=ssid,MyWiFi,pw,password123",
                          b"[$]wifi connected\r\n"
                          b"\r\nOK\r\n")
        await mcu.command(b"AT+SETDNSSRV=8.8.8.8", b"\r\nOK\r\n")
        await mcu.command(b"AT+DNS=localhost", b"\r\n+DNS:127.0.0.1\r\n\r\nOK\r\n")
        await mcu.command(b"AT+WLSTATE", T1_STATE.replace(b"192.168.1.57", b"192.168.1.200"))
        await mcu.command(b"AT+QUERYDNSSRV", b"\r\n+QUERYDNSSRV:8.8.8.8\r\n\r\nOK\r\n")
        await mcu.expect_silence(6)  # the new join cancelled the pending retry
    assert _snapshot(netns) == before


async def test_join_without_dhcp_answer_waits_for_got_ip_timeout(netns_without_dhcp, tmp_path):
    """A default route but no address: joined at once, then DHCP runs (the
    firmware gives up after about 60 s with ``got ip timeout`` and then OK;
    this test stops the daemon after 2 s of the wait)."""
    before = _snapshot(netns_without_dhcp)
    async with gatewayd_in(netns_without_dhcp, tmp_path) as mcu:
        await mcu.expect(b"ATCMD READY\r\n", timeout=10)
        await mcu.command(b"AT+WLCONN=ssid,MyWiFi,pw,password123", b"[$]wifi connected\r\n")
        await mcu.expect_silence(2.0)  # neither got ip nor OK yet
    assert _snapshot(netns_without_dhcp) == before


def _routes(ns: str) -> set[str]:
    return set(_ip("-n", ns, "-4", "route", "show").splitlines())


async def test_t4_host_loses_and_regains_its_route(netns, tmp_path):
    """T4's Wi-Fi lines: the interface goes down (the default route goes with
    it), comes back and gets its default route again, as after a DHCP renew."""
    before = _snapshot(netns)
    async with gatewayd_in(netns, tmp_path) as mcu:
        await mcu.expect(b"ATCMD READY\r\n", timeout=10)
        await mcu.command(b"AT+WLCONN=ssid,MyWiFi,pw,password123",
                          b"[$]wifi connected\r\n"
                          b'[$]wifi got ip:"192.168.1.57"\r\n'
                          b"\r\nOK\r\n")
        _ip("-n", netns, "link", "set", "wlan0", "down")
        await mcu.expect(b"[$]wifi disconnected\r\n", timeout=3)
        await mcu.command(b"AT+WLSTATE", T1_STATE.replace(b"MyWiFi", b"").replace(
            b"password123", b"").replace(b"e8:91:20:fa:8d:1d", b"00:00:00:00:00:00").replace(
            b"CHANNEL => 6", b"CHANNEL => 0").replace(b"WPA2 AES", b"OPEN").replace(
            b"192.168.1.57", b"0.0.0.0").replace(b"192.168.1.1", b"0.0.0.0").replace(
            b"255.255.255.0", b"0.0.0.0"))
        # Still down at the first retry, 5 s after the loss:
        await mcu.expect(b"[$]wifi reconnecting\r\n[$]wifi connect failed\r\n", timeout=7)
        _ip("-n", netns, "link", "set", "wlan0", "up")
        _ip("-n", netns, "route", "add", "default", "via", "192.168.1.1", "dev", "wlan0")
        await mcu.expect(b"[$]wifi reconnecting\r\n"
                         b"[$]wifi connected\r\n"
                         b'[$]wifi got ip:"192.168.1.57"\r\n', timeout=7)
        await mcu.command(b"AT+WLSTATE", T1_STATE)
        await mcu.expect_silence(1)
    after = _snapshot(netns)
    assert _routes(netns) == set(before[1].splitlines())
    assert after[0] == before[0] and after[3:] == before[3:]
