"""ESP-AT WebSocket commands: AT+WSCFG, AT+WSHEAD, AT+WSOPEN, AT+WSSEND, AT+WSCLOSE.

Bytes and rules follow ``shared/reference/esp-at-behaviour.md`` §1-§4 (master
firmware): three links (0..2); ``+WS_CONNECTED``/``+WS_DISCONNECTED``/
``+WS_CLOSED``/``+WS_DATA`` messages without a leading CRLF; received data
reported frame by frame (a fragmented message is never reassembled), each
frame in pieces of at most ``buffer_size`` bytes; a dropped link
reconnects every ``ws_reconnect_interval`` seconds until ``AT+WSCLOSE``; a
close frame from the server frees the link and its WSCFG.

Deliberate differences from the firmware (documented behaviour wins):
``AT+WSSEND`` with opcode 0 and FIN sends the data as the final continuation
frame (the firmware drops the data); wss without a CA verifies the server
against the system trust store unless the port sets ``trust_any_server_cert``;
with a CA the server's hostname is checked too.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote, urlsplit

from gatewayd.dialects.base import (
    AtError,
    CommandSpec,
    Int,
    PortContext,
    Setter,
    Str,
    open_client_link,
)
from gatewayd.dialects.esp_at.dialect import PROMPT, SEND_OK
from gatewayd.dialects.esp_at.limits import LIMITS
from gatewayd.dialects.esp_at.state import WS_LINK_IDS, WsConfig, WsLinkInfo, WsState
from gatewayd.dialects.esp_at.suites import check_suites, client_tls
from gatewayd.links import ClientLink, LinkState, PingPolicy, ReconnectPolicy
from gatewayd.transport import ClientRequest, Opcode, TransportError

MAX_SEND = 16384
DEFAULT_CONNECT_TIMEOUT_MS = 15000
USER_AGENT = "ESP32 Websocket Client"
#: Limits the firmware leaves to its heap; gatewayd states them (ERROR beyond).
MAX_HEADER_LEN = 4096
MAX_HEADERS = 32

#: AT+WSOPEN? state numbers.
STATE_NUMBERS = {
    LinkState.CLOSED: 0,
    LinkState.CONNECTING: 1,
    LinkState.OPEN: 2,
    LinkState.WAITING_TO_RECONNECT: 3,
}


def ws_state(ctx: PortContext) -> WsState:
    state: WsState = ctx.state.ws
    return state


# -- messages ----------------------------------------------------------------


class EspWsObserver:
    """Turns link events into ESP-AT messages."""

    def __init__(self, ctx: PortContext, state: WsState, config: WsConfig) -> None:
        self.ctx, self.state, self.config = ctx, state, config

    async def data(self, link: ClientLink, payload: bytes, opcode: Opcode, fin: bool) -> None:
        size = self.config.buffer_size
        if not payload:
            await self.ctx.deliver(b"+WS_DATA:%d,0,\r\n" % link.id)
        for start in range(0, len(payload), size):
            piece = payload[start : start + size]
            await self.ctx.deliver(b"+WS_DATA:%d,%d," % (link.id, len(piece)) + piece + b"\r\n")
        link.bytes_in += len(payload)

    def connected(self, link: ClientLink) -> None:
        self.ctx.unsolicited(b"+WS_CONNECTED:%d\r\n" % link.id)

    def disconnected(self, link: ClientLink) -> None:
        self.ctx.unsolicited(b"+WS_DISCONNECTED:%d\r\n" % link.id)

    def closed_by_peer(self, link: ClientLink, code: int | None) -> None:
        self.state.links.pop(link.id)
        self.state.configs.pop(link.id, None)
        self.ctx.unsolicited(b"+WS_CLOSED:%d\r\n" % link.id)

    def pong(self, link: ClientLink, payload: bytes) -> None:
        pass  # the module reports no pongs


# -- AT+WSCFG ----------------------------------------------------------------


async def wscfg(ctx: PortContext, link_id: int, ping_interval: int, ping_timeout: int,
                buffer_size: int | None, auth_mode: int | None, pki: int | None,
                ca: int | None) -> None:
    given = sum(v is not None for v in (buffer_size, auth_mode, pki, ca))
    if (given == 2 and auth_mode != 0) or given == 3:
        raise AtError(why="auth_mode 1..3 needs pki_number and ca_number")
    if given == 4 and auth_mode == 0:
        pki = ca = None
    auth_mode = auth_mode or 0
    check_suites(ctx, auth_mode, pki, ca)
    ws_state(ctx).configs[link_id] = WsConfig(
        ping_interval, ping_timeout, buffer_size or 1024, auth_mode, pki or 0, ca or 0)


# -- AT+WSHEAD ---------------------------------------------------------------


async def wshead_set(ctx: PortContext, length: int) -> None:
    state = ws_state(ctx)
    if length == 0:
        state.headers.clear()
        return
    if length > MAX_HEADER_LEN or len(state.headers) >= MAX_HEADERS:
        raise AtError(why=f"headers are limited to {MAX_HEADERS} of {MAX_HEADER_LEN} bytes")
    data = await ctx.read_raw(length, PROMPT)
    if b"\0" in data or data.endswith(b"\r\n") or b":" not in data:
        raise AtError(why="a header is 'key: value' without NUL or a final CRLF")
    key, _, value = data.decode("latin-1").partition(":")
    state.headers.insert(0, (key, value))


async def wshead_query(ctx: PortContext) -> None:
    lines = [f'+WSHEAD:{i},"{k}:{v}"\r\n' for i, (k, v) in enumerate(ws_state(ctx).headers)]
    ctx.write("".join(lines).encode("latin-1"))


# -- AT+WSOPEN ---------------------------------------------------------------


def _parse_uri(uri: str) -> tuple[str, str, int, str, str | None]:
    """(kind, host, port, path, basic-auth header) or AtError."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise AtError(why=f"malformed uri {uri!r}") from None
    kind = parts.scheme.lower()
    if kind not in ("ws", "wss") or not parts.hostname:
        raise AtError(why=f"uri {uri!r} is not ws:// or wss://")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    basic = None
    if parts.username is not None:
        creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        basic = "Basic " + base64.b64encode(creds.encode()).decode()
    return kind, parts.hostname, port or (443 if kind == "wss" else 80), path, basic


async def wsopen(ctx: PortContext, link_id: int, uri: str, subprotocol: str | None,
                 timeout_ms: int, auth: str | None) -> None:
    state = ws_state(ctx)
    if link_id in state.links:
        raise AtError(why=f"ws:{link_id} already established")
    if auth is not None and auth.endswith("\r\n"):
        raise AtError(why="auth ends with CRLF")
    kind, host, port, path, basic = _parse_uri(uri)
    config = state.configs.pop(link_id, WsConfig())
    tls = (client_tls(ctx, config.auth_mode, config.pki_number, config.ca_number)
           if kind == "wss" else None)
    authorization = auth or basic

    def request() -> ClientRequest:
        headers = [("User-Agent", USER_AGENT)]
        if authorization:
            headers.append(("Authorization", authorization))
        headers.extend(state.headers)
        return ClientRequest(kind=kind, host=host, port=port, path=path, tls=tls,
                             headers=tuple(headers),
                             subprotocols=(subprotocol,) if subprotocol else (),
                             connect_timeout=timeout_ms / 1000, frames=True)

    try:
        await open_client_link(
            ctx, state.links, link_id, kind, request, EspWsObserver(ctx, state, config),
            entry=lambda link: WsLinkInfo(link, uri, config),
            ping=PingPolicy(config.ping_interval, config.ping_timeout),
            reconnect=ReconnectPolicy(ctx.config.ws_reconnect_interval),
            timeout=timeout_ms / 1000, no_transport=None)
    except TransportError as exc:
        ctx.write(b"+WS_DISCONNECTED:%d\r\n" % link_id)
        raise AtError(why=f"connect failed ({exc.stage}): {exc}") from None
    ctx.write(b"+WS_CONNECTED:%d\r\n" % link_id)


async def wsopen_query(ctx: PortContext) -> None:
    lines = []
    for link_id, info in ws_state(ctx).links.sorted():
        lines.append(b'+WSOPEN:%d,%d,"%s"\r\n' % (
            link_id, STATE_NUMBERS[info.link.state], info.uri.encode("utf-8", "surrogateescape")))
    ctx.write(b"".join(lines))


# -- AT+WSSEND ---------------------------------------------------------------


def plan_frames(data: bytes, opcode: int, fin: bool, buffer_size: int,
                ) -> list[tuple[int, bytes, bool]]:
    """The frames the module sends for one AT+WSSEND (reference §2 table)."""
    if opcode >= 3:
        if not fin:
            raise AtError(why=f"unsupported opcode:{opcode} fin:0 combination")
        return [(opcode, data, True)]
    pieces = [data[i : i + buffer_size] for i in range(0, len(data), buffer_size)] or [b""]
    frames = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        frames.append((opcode if index == 0 else 0, piece, fin and last))
    return frames


async def wssend(ctx: PortContext, link_id: int, length: int, opcode: int, timeout_ms: int,
                 fin: int) -> bytes:
    info = ws_state(ctx).links.get(link_id)
    if info is None:
        raise AtError(why=f"no ws: {link_id}")
    data = await ctx.read_raw(length, PROMPT) if length else b""
    frames = plan_frames(data, opcode, bool(fin), info.config.buffer_size)
    needs_open = fin or opcode >= 3
    if needs_open and info.link.state is not LinkState.OPEN:
        raise AtError(why=f"ws:{link_id} is not connected")
    try:
        for frame_opcode, payload, frame_fin in frames:
            await info.link.send(payload, opcode=frame_opcode, fin=frame_fin,
                                 timeout=timeout_ms / 1000 or None)
    except (TransportError, TimeoutError) as exc:
        raise AtError(why=f"send failed: {exc!r}") from None
    return SEND_OK


# -- AT+WSCLOSE --------------------------------------------------------------


async def wsclose(ctx: PortContext, link_id: int) -> None:
    state = ws_state(ctx)
    state.configs.pop(link_id, None)
    info = state.links.pop(link_id)
    if info is not None:
        await info.link.close(graceful=False)


# -- table -------------------------------------------------------------------

_LINK = Int("link_id", lo=WS_LINK_IDS.start, hi=WS_LINK_IDS.stop - 1)


def _opt_int(name: str, lo: int, hi: int, default: Any = None) -> Int:
    return Int(name, default=default, lo=lo, hi=hi, allow_empty=False)


COMMANDS = (
    CommandSpec("+WSCFG", "configure the next AT+WSOPEN of a link", set=Setter(wscfg, (
        _LINK, Int("ping_intv_sec", lo=1, hi=7200), Int("ping_timeout_sec", lo=1, hi=7200),
        _opt_int("buffer_size", 1, LIMITS.ws_buffer_size), _opt_int("auth_mode", 0, 3),
        _opt_int("pki_number", 0, 2**31 - 1), _opt_int("ca_number", 0, 2**31 - 1)))),
    CommandSpec("+WSHEAD", "add a request header (through the > prompt); 0 clears",
                query=wshead_query,
                set=Setter(wshead_set, (Int("req_header_len", lo=0, hi=2**31 - 1),),
                           raw_secret="header")),
    CommandSpec("+WSOPEN", "open a WebSocket link; query lists links", query=wsopen_query,
                set=Setter(wsopen, (
                    _LINK, Str("uri"), Str("subprotocol", default=None),
                    _opt_int("timeout_ms", 1, 180000, DEFAULT_CONNECT_TIMEOUT_MS),
                    Str("auth", default=None, secret=True)))),
    CommandSpec("+WSSEND", "send a frame: OK, >, exactly <length> bytes, SEND OK",
                set=Setter(wssend, (
                    _LINK, Int("length", lo=0, hi=MAX_SEND), _opt_int("opcode", 0, 15, 1),
                    _opt_int("timeout_ms", 0, 60000, 10000), _opt_int("fin", 0, 1, 1)))),
    CommandSpec("+WSCLOSE", "drop a link without a close frame", set=Setter(wsclose, (_LINK,))),
)

__all__ = ["COMMANDS", "plan_frames"]
