"""ESP-AT passthrough ("transparent transmission"): AT+CIPSEND with no
parameters after AT+CIPMODE=1, and AT+TRANSINTVL, AT+CIPRECONNINTV,
AT+SAVETRANSLINK (reference esp-at-tcpip.md §4.2).

In the send state every UART byte is payload for link 0, and whatever the
peer sends is written to the UART raw. :class:`Packer` decides when bytes
leave: a packet as soon as :data:`PACKET` bytes wait, or once the UART has
been idle for AT+TRANSINTVL ms (default 20). ``+++`` ends the send state
only with the module's timing: at least :data:`GUARD` s of silence before
the first ``+``, the three within :data:`GUARD` s of each other, and
:data:`GUARD` s of silence after; those three bytes are not sent. Any other
``+++`` is payload. The reply to the exit is nothing, or ``\\r\\n+QUITT\\r\\n``
with AT+SYSMSG bit 0; received data stays raw until AT+CIPMODE=0.

A client link that drops in the send state is dialled again every
AT+CIPRECONNINTV times 100 ms until it is back or the MCU leaves with ``+++``;
meanwhile its bytes are dropped (and counted in the log).

AT+SAVETRANSLINK is kept in the port's state file (it survives AT+RST and
daemon restarts, as in the module's flash; AT+RESTORE and
``AT+SAVETRANSLINK=0`` clear it). After each ``ready``, once the station is
joined, the module dials it and enters the send state by itself, printing
``\r\n>`` (:func:`autostart`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from gatewayd.dialects.base import AtError, CommandSpec, Int, PortContext, Setter
from gatewayd.dialects.esp_at.dialect import PROMPT
from gatewayd.dialects.esp_at.fields import Fields, raw_fields
from gatewayd.dialects.esp_at.iplinks import IpLink, IpState
from gatewayd.dialects.esp_at.ipsend import cipsend, send_data
from gatewayd.dialects.esp_at.tcpip import CONNECT_LIMIT, TYPES, connect, ip_state
from gatewayd.links import LinkState

__all__ = ["COMMANDS", "Packer", "autostart", "send_state"]

#: Bytes per passthrough packet.
PACKET = 2920
#: The ``+++`` guard time (the UART pattern detector's), s.
GUARD = 0.02
ESCAPE = b"+++"
QUITT = b"\r\n+QUITT\r\n"
#: The send state never ends by length.
ENDLESS = 2**62
SAVED_LINK_KEY = "esp_at_savetranslink"


@dataclass
class Packer:
    """Sans-I/O packing and ``+++`` detection; times in seconds (loop time).

    :meth:`feed` takes what one UART transfer brought and when;
    :meth:`idle` is called when :meth:`deadline` passes. Both return the
    packets to send now; :attr:`escaped` becomes true on a valid ``+++``."""

    interval: float
    last: float = 0.0
    buffer: bytearray = field(default_factory=bytearray)
    #: Bytes that may be the escape (``+`` only, after a guard's silence).
    candidate: bytes = b""
    escaped: bool = False

    def feed(self, data: bytes, at: float) -> list[bytes]:
        gap, self.last = at - self.last, at
        if self.candidate:
            if gap < GUARD and not data.strip(b"+") and \
                    len(self.candidate) + len(data) <= len(ESCAPE):
                self.candidate += data
                return []
            self.buffer += self.candidate
            self.candidate = b""
        elif gap >= GUARD and data and not data.strip(b"+") and len(data) <= len(ESCAPE):
            self.candidate = data
            return self._packets(flush=True)
        self.buffer += data
        return self._packets(flush=False)

    def deadline(self) -> float | None:
        """When :meth:`idle` must run next (``None``: nothing waits)."""
        times = []
        if self.buffer:
            times.append(self.last + self.interval)
        if self.candidate:
            times.append(self.last + GUARD)
        return min(times) if times else None

    def idle(self, now: float) -> list[bytes]:
        if self.candidate and now - self.last >= GUARD:
            if self.candidate == ESCAPE:
                self.escaped = True
                self.candidate = b""
                return self._packets(flush=True)
            self.buffer += self.candidate
            self.candidate = b""
        return self._packets(flush=now - self.last >= self.interval)

    def _packets(self, *, flush: bool) -> list[bytes]:
        packets = []
        while len(self.buffer) >= PACKET:
            packets.append(bytes(self.buffer[:PACKET]))
            del self.buffer[:PACKET]
        if flush and self.buffer:
            packets.append(bytes(self.buffer))
            self.buffer.clear()
        return packets


async def cipsend_passthrough(ctx: PortContext) -> bytes:
    ip = ip_state(ctx)
    if ip.mode != 1:
        raise AtError(why="AT+CIPSEND without parameters needs AT+CIPMODE=1")
    link = ip.links.get(0)
    if link is None or link.state is not LinkState.OPEN or len(ip.links) != 1:
        raise AtError(why="passthrough needs link 0 open, and only it")
    return await send_state(ctx, PROMPT)


async def send_state(ctx: PortContext, prompt: bytes) -> bytes:
    """Write *prompt*, then carry link 0 raw until ``+++``; the reply to the
    exit (nothing, or ``+QUITT`` with AT+SYSMSG bit 0)."""
    ip = ip_state(ctx)
    loop = asyncio.get_running_loop()
    stream = ctx.read_raw_stream(ENDLESS, prompt, eager=True)
    ip.sending = True
    ip.redial = lambda lost: ip.spawn(_redial(ctx, ip, lost))
    ctx.log.info("passthrough: send state")
    packer = Packer(ip.trans_interval / 1000, last=loop.time())
    iterator = stream.__aiter__()
    dropped = 0
    try:
        while not packer.escaped:
            deadline = packer.deadline()
            if deadline is None:  # nothing held: wait for bytes as long as it takes
                piece = await iterator.__anext__()
                packets = packer.feed(piece, stream.arrived_at)
            elif deadline <= loop.time() and not stream.ready:
                # Due already (AT+TRANSINTVL=0, after every piece): no timer.
                packets = packer.idle(loop.time())
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        piece = await iterator.__anext__()
                except TimeoutError:
                    # The deadline has come, even if the loop's timer (libuv's
                    # counts whole milliseconds) fired a little before it.
                    packets = packer.idle(max(loop.time(), deadline))
                else:
                    packets = packer.feed(piece, stream.arrived_at)
            for packet in packets:
                current = ip.links.get(0)
                if current is None or not await send_data(ctx, ip, current, packet):
                    dropped += len(packet)
    finally:
        ip.sending = False
        ip.redial = None
        stream.end()
    ctx.log.info("passthrough: +++, command state", dropped=dropped)
    return QUITT if ip.sysmsg & 1 else b""


async def _redial(ctx: PortContext, ip: IpState, lost: IpLink) -> None:
    kind = TYPES[lost.type][0]
    while ip.sending:
        await asyncio.sleep(ip.reconnect_interval / 10)
        if not ip.sending or 0 in ip.links:
            return
        link = IpLink(lost.id, lost.type, remote=lost.remote, local_port=lost.local_port,
                      host=lost.host, state=LinkState.CONNECTING)
        try:
            await connect(ctx, ip, link, kind, "", CONNECT_LIMIT)
        except AtError:
            continue
        if ip.sending and ip.sysmsg & 4:
            ctx.write(ip.link_up_message(link))
        return


#: The saved link's prompt when the module enters passthrough by itself.
AUTO_PROMPT = b"\r\n>"


def autostart(ctx: PortContext) -> None:
    """After ``ready``: with a link kept by AT+SAVETRANSLINK and the station
    joined (AT+CWAUTOCONN), dial it and enter passthrough without a command,
    printing ``\r\n>``, as the module does; retried every AT+CIPRECONNINTV
    until it connects or the MCU opens link 0 itself."""
    saved = ctx.store.get(SAVED_LINK_KEY)
    if not isinstance(saved, dict):
        return
    ip_state(ctx).spawn(_dial_saved(ctx, saved))


async def _dial_saved(ctx: PortContext, saved: dict[str, Any]) -> None:
    ip = ip_state(ctx)
    try:
        host, port, link_type = str(saved["host"]), int(saved["port"]), str(saved["type"])
        kind, _family = TYPES[link_type]
    except (KeyError, TypeError, ValueError):
        ctx.log.warning("AT+SAVETRANSLINK: the saved link is unreadable; ignored")
        return
    extra = int(saved.get("extra") or 0)
    while True:
        if ctx.state.wifi.joined_ssid is None and ctx.state.wifi.mode == 1:
            await asyncio.sleep(ip.reconnect_interval / 10)
            continue
        if 0 in ip.links or ip.mux:
            return  # the MCU took over
        link = IpLink(0, link_type, remote=(host, port),
                      local_port=extra if kind == "udp" else 0, host=host,
                      state=LinkState.CONNECTING)
        if kind != "udp" and extra:
            ip.options[0].tcp.keep_alive = extra
        try:
            await connect(ctx, ip, link, kind, "", CONNECT_LIMIT)
        except AtError as exc:
            ctx.log.info("AT+SAVETRANSLINK: dial failed; retrying", error=exc.why)
            await asyncio.sleep(ip.reconnect_interval / 10)
            continue
        ip.mode = 1
        if not ctx.run_unprompted(lambda c: send_state(c, AUTO_PROMPT), "saved passthrough"):
            ctx.log.info("AT+SAVETRANSLINK: a command runs; link 0 stays in CIPMODE=1")
        return


async def transintvl_query(ctx: PortContext) -> None:
    ctx.write(b"+TRANSINTVL:%d\r\n" % ip_state(ctx).trans_interval)


async def transintvl_set(ctx: PortContext, interval: int) -> None:
    ip_state(ctx).trans_interval = interval


async def cipreconnintv_query(ctx: PortContext) -> None:
    ctx.write(b"+CIPRECONNINTV:%d\r\n" % ip_state(ctx).reconnect_interval)


async def cipreconnintv_set(ctx: PortContext, interval: int) -> None:
    ip_state(ctx).reconnect_interval = interval


async def savetranslink(ctx: PortContext, *raw: bytes | None) -> None:
    f = Fields(raw)
    if f.number("mode", 0, 1) == 0:
        f.done()
        ctx.store.set(SAVED_LINK_KEY, None)
        return
    host = f.text("remote host", max_len=64)
    port = f.number("remote port", 1, 65535)
    link_type = f.text("type", default="TCP")
    if link_type not in TYPES:
        raise AtError(why=f"type {link_type!r}")
    extra = f.number("keep_alive or local port", 0, 65535, default=0)
    f.done()
    if not host:
        raise AtError(why="remote host is empty")
    ctx.store.set(SAVED_LINK_KEY, {"host": host, "port": port, "type": link_type,
                                   "extra": extra})


COMMANDS = (
    CommandSpec("+CIPSEND", "send <length> bytes after >: Recv, SEND OK; without parameters"
                " (AT+CIPMODE=1): passthrough until +++",
                set=raw_fields(cipsend, 4), execute=cipsend_passthrough),
    CommandSpec("+TRANSINTVL", "passthrough packing interval (ms)", query=transintvl_query,
                set=Setter(transintvl_set, (Int("interval", lo=0, hi=1000),))),
    CommandSpec("+CIPRECONNINTV", "passthrough reconnect interval (100 ms units)",
                query=cipreconnintv_query,
                set=Setter(cipreconnintv_set, (Int("interval", lo=1, hi=36000),))),
    CommandSpec("+SAVETRANSLINK", "keep a passthrough link in the port's state file",
                set=raw_fields(savetranslink, 5)),
)
