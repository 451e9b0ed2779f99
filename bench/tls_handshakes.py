"""Memory under a flood of TLS handshakes that never finish, and after it.

An Ameba MCU on gatewayd's pty starts a TLS server (``AT+SKTSERVER`` conn_type
2 with a throw-away certificate); then this script opens N TCP connections
to it and sends nothing (each would hold a TLS handshake), holds them for a
few seconds, and closes them. It prints the daemon's VmRSS before, while the
connections are held, and a few seconds after they closed, with how many the
listener kept in their handshake (the rest were closed at accept by the
per-listener cap, ``HandshakeGate``).

    .venv/bin/python bench/tls_handshakes.py [--connections 500] [--hold 3]

Needs trustme (a test dependency) for the certificate. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

import trustme

from gatewayd.testing import GatewaydProcess, VirtualMcu


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


Peer = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def flood(port: int, count: int) -> list[Peer]:
    peers = []
    for _ in range(count):
        with contextlib.suppress(OSError, TimeoutError):
            peers.append(await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5))
    return peers


def still_open(peers: list[Peer]) -> int:
    """Connections the server has not closed (no EOF seen)."""
    return sum(1 for reader, _ in peers if not reader.at_eof())


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--hold", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gwd-tls-") as tmp:
        folder = Path(tmp)
        ca = trustme.CA()
        cert = ca.issue_cert("localhost")
        cert.cert_chain_pems[0].write_to_path(folder / "server.pem")
        cert.private_key_pem.write_to_path(folder / "server.key")
        (folder / "server.key").chmod(0o600)
        (folder / "gatewayd.toml").write_text(
            '[[port]]\nname = "mcu"\ndevice = "pty:ttyAT0"\ndialect = "ameba"\n'
            f'[certs.server.1]\ncert = "{folder / "server.pem"}"\n'
            f'key = "{folder / "server.key"}"\n')
        async with GatewaydProcess(["run", "-c", "gatewayd.toml"], cwd=folder) as proc:
            await proc.wait_for("READY=1")
            mcu = await VirtualMcu.open(folder / "ttyAT0")
            await mcu.expect(b"ATCMD READY\r\n")
            await asyncio.sleep(1.0)  # the transports load right after READY
            with contextlib.closing(__import__("socket").socket()) as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            await mcu.command(b"AT+SKTSERVER=0,2,1,%d,1" % port, b"\r\nOK\r\n")
            before = rss_mb(proc.pid)
            peers = await flood(port, args.connections)
            await asyncio.sleep(args.hold)
            held = rss_mb(proc.pid)
            kept = still_open(peers)
            for _, writer in peers:
                writer.close()
            await asyncio.sleep(3.0)
            after = rss_mb(proc.pid)
            await mcu.command(b"AT+TEST", b"\r\nOK\r\n")
            await mcu.close()
    print(f"TLS handshakes held: {len(peers)} connections opened, {kept} still open after"
          f" {args.hold:.0f} s (the rest closed at accept by the handshake cap)")
    print(f"{'daemon VmRSS':24}{'MB':>8}")
    print(f"{'before':24}{before:8.1f}")
    print(f"{'while held':24}{held:8.1f}")
    print(f"{'3 s after closing':24}{after:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
