"""``gatewayd status`` and ``gatewayd trace``: clients of the control socket.

The socket is found as the daemon finds it (:func:`gatewayd.service.control_server.
control_socket_path`), falling back to the systemd unit's
``/run/gatewayd/gatewayd.sock``. ``trace`` prints the port's bytes a line at
a time with secrets redacted (``--raw``: one line per UART chunk, unredacted;
the daemon allows it to its own user and root only), each with a timestamp
and the direction (``>`` from the MCU, ``<`` to it): text as escaped text,
anything else (raw blocks, binary) as a hexdump.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from gatewayd.config import ConfigError, default_config, load_config
from gatewayd.service.control_server import SYSTEMD_SOCKET, control_socket_path

EXIT_UNREACHABLE = 3
_PRINTABLE = set(range(0x20, 0x7F)) | {0x0D, 0x0A, 0x09}


def _socket_path(args: argparse.Namespace) -> Path:
    config = load_config(args.config) if args.config else default_config(".")
    return control_socket_path(config) or SYSTEMD_SOCKET


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(path))
    return sock


def main(args: argparse.Namespace) -> int:
    try:
        path = _socket_path(args)
        sock = _connect(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gatewayd: cannot reach the daemon's control socket {path}: {exc.strerror}",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    with sock:
        if args.command == "status":
            return _status(sock, as_json=args.json)
        return _trace(sock, args.port, raw=args.raw)


def _request(sock: socket.socket, message: dict[str, Any]) -> Any:
    sock.sendall(json.dumps(message).encode() + b"\n")
    return sock.makefile("rb")


def _status(sock: socket.socket, *, as_json: bool) -> int:
    reply = json.loads(_request(sock, {"command": "status"}).readline())
    if as_json:
        print(json.dumps(reply, indent=2))
        return 0
    for port in reply["ports"]:
        pty = f" ({port['pty']})" if port["pty"] else ""
        print(f"port {port['name']}  {port['dialect']}  {port['device']}{pty}  "
              f"uart {'open' if port['uart_open'] else 'DOWN'}  in {port['bytes_in']} B  "
              f"out {port['bytes_out']} B  commands {port['commands']}")
        for link in port["links"]:
            routed = f" -> {link['routed_to']}" if link.get("routed_to") else ""
            print(f"  link {link['id']}  {link['kind']}  {link['peer']}{routed}  {link['state']}  "
                  f"in {link['bytes_in']} B  out {link['bytes_out']} B  "
                  f"last error: {link['last_error'] or '-'}")
        if not port["links"]:
            print("  no links")
    return 0


def render(event: dict[str, Any]) -> str:
    """One trace event as a line (text) or a hexdump (anything else)."""
    data = base64.b64decode(event["data"])
    micros = int(event["t"] % 1 * 1e6)
    stamp = time.strftime("%H:%M:%S", time.localtime(event["t"])) + f".{micros:06d}"
    arrow = ">" if event["dir"] == "in" else "<"
    head = f"{stamp} {event['port']} {arrow} "
    if all(b in _PRINTABLE for b in data):
        return head + repr(data.decode("ascii"))[1:-1]
    lines = [f"{head}{len(data)} bytes"]
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"    {offset:08x}  {row.hex(' '):<47}  {text}")
    return "\n".join(lines)


def _trace(sock: socket.socket, port: str, *, raw: bool) -> int:
    stream = _request(sock, {"command": "trace", "port": port, "raw": raw})
    first = json.loads(stream.readline() or b"{}")
    if "error" in first:
        print(f"gatewayd: {first['error']}", file=sys.stderr)
        return 1
    sock.settimeout(None)
    try:
        for line in stream:
            print(render(json.loads(line)), flush=True)
    except KeyboardInterrupt:
        pass
    return 0
