"""README.md's Ameba start-up session (reference ameba-wifi-network.md §9
T1), replayed on the pty byte for byte: its config block is the port's, its
TCP server is a real one here, and each command's reply is the text up to
the next command with CR LF line ends. The addresses the README shows (T1's)
are replaced by the host's, which gatewayd reports; the host needs a
default route."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from gatewayd.links import hostnet
from gatewayd.testing import running_gateway

README = Path(__file__).resolve().parents[1] / "README.md"
T1_ADDRESSES = ("192.168.1.57", "192.168.1.1", "255.255.255.0")


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def blocks(text: str, language: str) -> list[str]:
    """The fenced blocks of *language* ("" for plain ones)."""
    return [body for lang, body in re.findall(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)
            if lang == language]


def exchanges(transcript: str) -> list[tuple[bytes, bytes]]:
    """(command, reply) pairs: each ``AT+`` line and the lines up to the next."""
    pairs: list[tuple[str, list[str]]] = []
    for line in transcript.splitlines():
        if line.startswith("AT+"):
            pairs.append((line, []))
        elif pairs:
            pairs[-1][1].append(line)
    return [(command.encode(), "".join(f"{reply}\r\n" for reply in lines).encode())
            for command, lines in pairs]


@pytest.mark.skipif(hostnet.default_interface() is None, reason="the host has no default route")
async def test_ameba_startup_session(tmp_path):
    text = section("An Ameba start-up session on the pty")
    [config] = blocks(text, "toml")
    [transcript] = blocks(text, "")
    assert transcript.startswith("ATCMD READY\n")  # read by running_gateway
    iface = hostnet.default_interface()
    assert iface is not None
    host = (iface.address, iface.gateway, iface.netmask)

    async def world(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            writer.write(b"world")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(world, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    session = exchanges(transcript)
    assert [command.split(b"=")[0] for command, _ in session] == [
        b"AT+TEST", b"AT+WLCONN", b"AT+WLSTATE", b"AT+SKTCLIENT", b"AT+SKTSEND"]
    async with server, running_gateway(tmp_path, config_text=config) as (_, mcu):
        for command, reply in session:
            for shown, real in zip(T1_ADDRESSES, host, strict=True):
                reply = reply.replace(shown.encode() + b"\r\n", real.encode() + b"\r\n")
                reply = reply.replace(b'"%s"' % shown.encode(), b'"%s"' % real.encode())
            await mcu.command(command.replace(b",8080,", b",%d," % port), reply)
