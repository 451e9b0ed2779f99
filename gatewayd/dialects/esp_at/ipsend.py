"""ESP-AT data in normal transmission mode: AT+CIPSEND, AT+CIPSENDEX,
AT+CIPSENDL, AT+CIPSENDLCFG; passive receive: AT+CIPRECVTYPE (and its old
name AT+CIPRECVMODE), AT+CIPRECVDATA, AT+CIPRECVLEN? (reference
esp-at-tcpip.md §3, §4.1, §4.3).

- AT+CIPSEND prompts ``\\r\\nOK\\r\\n\\r\\n>``, reads exactly ``<length>``
  bytes (at most :data:`MAX_SEND`), prints ``\\r\\nRecv <n> bytes\\r\\n``, and
  answers ``SEND OK`` once the socket took the data (``SEND FAIL`` when the
  link closed meanwhile, the send failed, or AT+CIPTCPOPT's send timeout ran
  out). Surplus bytes in the same burst get ``busy p...``. A UART transfer of
  exactly ``+++`` cancels: ``\\r\\nSEND Canceled\\r\\n``.
- AT+CIPSENDEX: the same, but ``\\0`` ends the data early and a backslash
  takes the next byte literally (``<length>`` counts the bytes kept).
- AT+CIPSENDL streams up to 2^31-1 bytes to the network as they arrive, in
  blocks of its transmit size, with ``+CIPSENDL:<sent>,<received>`` every
  report size; ``+++`` gives ``SEND CANCELLED``.
- ``+IPD`` for the peer's data is held while a command runs and follows its
  result (an MCU never finds it inside ``Recv``/``SEND OK``).
"""

from __future__ import annotations

import asyncio

from gatewayd.dialects.base import (
    AtError,
    ChunkAbort,
    CommandSpec,
    Int,
    PortContext,
    RawAborted,
    Setter,
)
from gatewayd.dialects.esp_at.dialect import PROMPT, SEND_OK
from gatewayd.dialects.esp_at.fields import Fields, raw_fields
from gatewayd.dialects.esp_at.iplinks import ALL_LINKS, IpLink, IpState
from gatewayd.dialects.esp_at.tcpip import ip_state, resolve
from gatewayd.links import LinkState
from gatewayd.links.deadline import within
from gatewayd.transport import TransportError

__all__ = ["COMMANDS", "cipsend", "send_data"]

MAX_SEND = 8192
MAX_SENDL = 2**31 - 1
SEND_FAIL = b"\r\nSEND FAIL\r\n"
SEND_CANCELED = b"\r\nSEND Canceled\r\n"
SEND_CANCELLED = b"\r\nSEND CANCELLED\r\n"
CANCEL = ChunkAbort(b"+++")
#: Seconds AT+CIPSEND may spend resolving a UDP destination.
RESOLVE_LIMIT = 10.0


async def send_data(ctx: PortContext, ip: IpState, link: IpLink, data: bytes) -> bool:
    """Hand *data* to *link*'s socket; ``False`` if it is closed or the send
    failed or outlasted AT+CIPTCPOPT's ``so_sndtimeo``."""
    connection = link.connection
    if connection is None or link.state is not LinkState.OPEN:
        return False
    timeout = ip.options[link.id].tcp.sndtimeo / 1000 or None
    try:
        await within(timeout, connection.send(data, peer=None if link.stream else link.remote))
    except (TransportError, TimeoutError) as exc:
        link.last_error = str(exc) or "send timed out"
        ctx.log.info("send failed", link=link.id, error=link.last_error)
        return False
    link.bytes_out += len(data)
    link.last_activity = asyncio.get_running_loop().time()
    return True


async def _target(ctx: PortContext, f: Fields, max_length: int) -> tuple[IpState, IpLink, int]:
    """The link and length of a send command, with a UDP destination applied."""
    ip = ip_state(ctx)
    if ip.mode != 0:
        raise AtError(why="IPMODE=1: use AT+CIPSEND without parameters")
    link_id = f.number("link ID", 0, 4) if ip.mux else 0
    length = f.number("length", 1, max_length)
    link = ip.links.get(link_id)
    if link is None or link.state is not LinkState.OPEN:
        raise AtError(why=f"invalid link {link_id}")
    if f.left:
        if link.stream:
            raise AtError(why="a remote address is for UDP links only")
        host = f.text("remote host", max_len=64)
        port = f.number("remote port", 1, 65535)
        f.done()
        link.remote = (await resolve(host, 6 if link.type.endswith("v6") else 4,
                                     RESOLVE_LIMIT), port)
    return ip, link, length


def _recv(count: int) -> bytes:
    return b"\r\nRecv %d bytes\r\n" % count


async def cipsend(ctx: PortContext, *raw: bytes | None) -> bytes:
    ip, link, length = await _target(ctx, Fields(raw), MAX_SEND)
    try:
        data = await ctx.read_raw(length, PROMPT, abort=CANCEL)
    except RawAborted:
        return SEND_CANCELED
    ctx.write(_recv(len(data)))
    return SEND_OK if await send_data(ctx, ip, link, data) else SEND_FAIL


async def cipsendex(ctx: PortContext, *raw: bytes | None) -> bytes:
    ip, link, length = await _target(ctx, Fields(raw), MAX_SEND)
    # Every kept byte takes at most two (an escape and the byte).
    stream = ctx.read_raw_stream(2 * length, PROMPT, eager=True, abort=CANCEL)
    kept = bytearray()
    escaped = ended = False
    surplus = b""
    try:
        async for piece in stream:
            for index, byte in enumerate(piece):
                if escaped:
                    escaped = False
                    if byte == 0x30:  # backslash-zero: the end
                        ended = True
                    else:
                        kept.append(byte)
                elif byte == 0x5C:
                    escaped = True
                else:
                    kept.append(byte)
                if ended or len(kept) >= length:
                    surplus = piece[index + 1:]
                    break
            if ended or len(kept) >= length:
                break
    except RawAborted:
        return SEND_CANCELED
    finally:
        stream.end()
    if surplus:
        ctx.write(ctx.dialect.busy(ctx.state))
    ctx.write(_recv(len(kept)))
    return SEND_OK if await send_data(ctx, ip, link, bytes(kept)) else SEND_FAIL


async def cipsendl(ctx: PortContext, *raw: bytes | None) -> bytes:
    ip, link, length = await _target(ctx, Fields(raw), MAX_SENDL)
    report, block = ip.sendl_report, ip.sendl_transmit
    sent = received = reported = 0
    ok = True
    stream = ctx.read_raw_stream(length, PROMPT, eager=True, abort=CANCEL)
    try:
        async for piece in stream:
            received += len(piece)
            for start in range(0, len(piece), block):
                if ok:
                    ok = await send_data(ctx, ip, link, piece[start:start + block])
                    sent += len(piece[start:start + block]) if ok else 0
            while sent - reported >= report:
                reported += report
                ctx.write(b"+CIPSENDL:%d,%d\r\n" % (reported, received))
    except RawAborted:
        return SEND_CANCELLED
    if reported != sent:
        ctx.write(b"+CIPSENDL:%d,%d\r\n" % (sent, received))
    return SEND_OK if ok and sent == length else SEND_FAIL


async def cipsendlcfg_query(ctx: PortContext) -> None:
    ip = ip_state(ctx)
    ctx.write(b"+CIPSENDLCFG:%d,%d\r\n" % (ip.sendl_report, ip.sendl_transmit))


async def cipsendlcfg_set(ctx: PortContext, report: int, transmit: int | None) -> None:
    ip = ip_state(ctx)
    ip.sendl_report = report
    if transmit is not None:
        ip.sendl_transmit = transmit


# -- passive receive ----------------------------------------------------------------


def _no_passthrough(ip: IpState) -> None:
    if ip.mode == 1:
        raise AtError(why="not in passthrough (AT+CIPMODE=1)")


def _set_passive(ip: IpState, link_id: int, passive: bool) -> None:
    ip.options[link_id].passive = passive
    link = ip.links.get(link_id)
    if passive and link is not None and link.events is not None:
        link.events.notify()


async def ciprecvtype_query(ctx: PortContext) -> None:
    ip = ip_state(ctx)
    ctx.write(b"".join(b"+CIPRECVTYPE:%d,%d\r\n" % (i, ip.options[i].passive)
                       for i in ip.ids()))


async def ciprecvtype_set(ctx: PortContext, *raw: bytes | None) -> None:
    ip = ip_state(ctx)
    _no_passthrough(ip)
    f = Fields(raw)
    link_id = f.number("link ID", 0, ALL_LINKS) if ip.mux else 0
    mode = f.number("mode", 0, 1)
    f.done()
    for i in range(5) if link_id == ALL_LINKS else (link_id,):
        _set_passive(ip, i, bool(mode))


async def ciprecvmode_query(ctx: PortContext) -> None:
    ctx.write(b"+CIPRECVMODE:%d\r\n" % ip_state(ctx).options[0].passive)


async def ciprecvmode_set(ctx: PortContext, mode: int) -> None:
    ip = ip_state(ctx)
    _no_passthrough(ip)
    for i in range(5):
        _set_passive(ip, i, bool(mode))


async def ciprecvdata(ctx: PortContext, *raw: bytes | None) -> None:
    ip = ip_state(ctx)
    f = Fields(raw)
    link_id = f.number("link ID", 0, 4) if ip.mux else 0
    size = f.number("len", 1, 2**31 - 1)
    f.done()
    link = ip.links.get(link_id)
    if link is None or link.events is None or not ip.options[link_id].passive:
        raise AtError(why=f"link {link_id} is not in passive receive mode")
    if not link.buffer:
        raise AtError(why="no data")
    data = link.events.read(size)
    head = b"+CIPRECVDATA:%d," % len(data)
    if ip.dinfo:
        head += b'"%s",%d,' % (link.remote[0].encode(), link.remote[1])
    ctx.write(head + data)
    link.events.after_read()


async def ciprecvlen_query(ctx: PortContext) -> None:
    ip = ip_state(ctx)
    lengths = []
    for i in ip.ids():
        link = ip.links.get(i)
        lengths.append(b"%d" % (len(link.buffer) if link is not None else 0))
    ctx.write(b"+CIPRECVLEN:" + b",".join(lengths) + b"\r\n")


COMMANDS = (
    CommandSpec("+CIPSENDEX", "AT+CIPSEND whose data may end early with \\0",
                set=raw_fields(cipsendex, 4)),
    CommandSpec("+CIPSENDL", "send a long block, streamed, with +CIPSENDL progress",
                set=raw_fields(cipsendl, 4)),
    CommandSpec("+CIPSENDLCFG", "AT+CIPSENDL report and transmit sizes",
                query=cipsendlcfg_query,
                set=Setter(cipsendlcfg_set, (Int("report_size", lo=100, hi=1048576),
                                             Int("transmit_size", default=None, lo=100,
                                                 hi=2920)))),
    CommandSpec("+CIPRECVTYPE", "receive mode per link: active (+IPD) or passive",
                query=ciprecvtype_query, set=raw_fields(ciprecvtype_set, 2)),
    CommandSpec("+CIPRECVMODE", "AT+CIPRECVTYPE for every link, by its older name",
                query=ciprecvmode_query,
                set=Setter(ciprecvmode_set, (Int("mode", lo=0, hi=1),))),
    CommandSpec("+CIPRECVDATA", "read buffered data (passive mode)",
                set=raw_fields(ciprecvdata, 3)),
    CommandSpec("+CIPRECVLEN", "buffered bytes per link (passive mode)", query=ciprecvlen_query),
)
