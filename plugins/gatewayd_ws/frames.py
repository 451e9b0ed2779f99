"""The one place that encodes and parses WebSocket frames itself (RFC 6455 §5.2).

aiohttp's writer always sets FIN, but an ESP-AT MCU may send a message in
pieces (``AT+WSSEND=…,fin=0`` then continuation frames), reserved opcodes and
arbitrary control payloads. So every frame gatewayd sends — data,
continuation, ping, pong and close, as a client (masked) or as a server
(unmasked) — is encoded here and written to the connection's transport by
:class:`FrameWriter`. Each frame goes out in one ``transport.write`` call, so
frames never interleave.

aiohttp's reader parses what the peer sends, and reassembles a fragmented
message. A client link that asks for frames (``ClientRequest.frames``: an
ESP-AT module reports every frame as it comes) gets :class:`FrameReader`
instead, which hands over each data frame with its opcode and FIN.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any

from aiohttp import WebSocketError, WSCloseCode, WSMessage, WSMsgType

from gatewayd.transport import TransportError

if TYPE_CHECKING:
    import asyncio

    from aiohttp import ClientWebSocketResponse
    from aiohttp.web import WebSocketResponse

__all__ = ["MORE", "NO_STATUS_RCVD", "FrameReader", "FrameWriter", "encode_frame", "mask_payload",
           "valid_close_code"]

#: RFC 6455 §7.4.1: reported when a close frame carried no status code.
NO_STATUS_RCVD = 1005

_LEN_16 = struct.Struct("!BBH")
_LEN_64 = struct.Struct("!BBQ")


def mask_payload(payload: bytes, key: bytes) -> bytes:
    """XOR *payload* with the 4-byte *key* repeated (RFC 6455 §5.3).

    One big-integer XOR over the whole payload: linear and done in C, fast
    enough for the 16 KiB an ``AT+WSSEND`` may carry (and far beyond)."""
    size = len(payload)
    if not size:
        return b""
    keystream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(
        size, "big")


def encode_frame(opcode: int, payload: bytes, *, fin: bool, mask: bytes | None) -> bytes:
    """One complete frame: header (7-, 16- or 64-bit length), key, payload.

    *opcode* is any 4-bit value; control-frame rules (FIN set, ≤ 125 bytes)
    are deliberately not enforced — the peer judges what the MCU sends.
    *mask* is the 4-byte client masking key, or ``None`` for an unmasked
    (server-style) frame. RSV bits are always 0 (no extensions)."""
    if not 0 <= opcode <= 0xF:
        raise ValueError(f"opcode must be 0..15, got {opcode}")
    if mask is not None and len(mask) != 4:
        raise ValueError("the masking key must be 4 bytes")
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask is not None else 0
    size = len(payload)
    if size < 126:
        header = bytes((first, mask_bit | size))
    elif size < 1 << 16:
        header = _LEN_16.pack(first, mask_bit | 126, size)
    else:
        header = _LEN_64.pack(first, mask_bit | 127, size)
    if mask is None:
        return header + bytes(payload)
    return header + mask + mask_payload(payload, mask)


class FrameWriter:
    """Writes frames onto an open aiohttp WebSocket connection: masked client
    frames, or (``client=False``, for an upgraded ``web.WebSocketResponse``)
    unmasked server frames."""

    def __init__(self, ws: ClientWebSocketResponse[bool] | WebSocketResponse[bool], *,
                 client: bool = True) -> None:
        # aiohttp's public API has no way to send a frame without FIN, nor to
        # reach the transport. Its WebSocketWriter (client and server alike)
        # holds both the transport and the protocol whose
        # pause/resume_writing drive flow control; we use them here and
        # nowhere else in gatewayd.
        assert ws._writer is not None, "the WebSocket is not open yet"
        self._transport: asyncio.Transport = ws._writer.transport
        self._protocol = ws._writer.protocol
        self._client = client

    @property
    def closing(self) -> bool:
        return self._transport.is_closing()

    async def send(self, opcode: int, payload: bytes, fin: bool = True, *,
                   masked: bool = True) -> None:
        """Mask with a fresh random key (unless *masked* is false: an Ameba MCU
        may ask for that, and the server then judges the frame; a server-side
        writer never masks and ignores *masked*), write, and wait while the
        transport's buffer is over its high-water mark. Raises
        ``TransportError(stage="send")`` when the connection is closing or lost."""
        mask = os.urandom(4) if self._client and masked else None
        frame = encode_frame(opcode, payload, fin=fin, mask=mask)
        if self._transport.is_closing() or self._protocol.transport is None:
            raise TransportError("the WebSocket connection is closed", stage="send")
        self._transport.write(frame)
        if self._protocol.writing_paused:
            try:
                # aiohttp's BaseProtocol: resolves on resume_writing(), fails
                # (or returns) on connection_lost().
                await self._protocol._drain_helper()
            except (ConnectionError, OSError) as exc:  # ClientConnectionResetError too
                raise TransportError(f"connection lost while sending: {exc}",
                                     stage="send") from exc

    def close(self) -> None:
        """Close the transport after its buffer is flushed (no close frame)."""
        self._transport.close()

    def abort(self) -> None:
        """Drop the transport at once, discarding anything buffered."""
        self._transport.abort()


def valid_close_code(code: int) -> bool:
    """Whether a close frame may carry *code* (RFC 6455 §7.4.1, §7.4.2 and the
    IANA registry): 1000..1003, 1007..1014, 3000..4999. 1004 is reserved;
    1005, 1006 and 1015 must never be sent; below 1000, and 1016..2999 (not
    assigned), are protocol errors."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


#: A :class:`FrameReader` data frame's ``extra`` when it has no FIN ("" with FIN,
#: as aiohttp's whole messages).
MORE = "more"
_DATA = frozenset((WSMsgType.CONTINUATION, WSMsgType.TEXT, WSMsgType.BINARY))
_CONTROL = frozenset((WSMsgType.CLOSE, WSMsgType.PING, WSMsgType.PONG))
#: Opcode to message type, without a call of the enum per frame.
_KINDS = {int(kind): kind for kind in _DATA | _CONTROL}


class FrameReader:
    """Parses the frames a server sends into aiohttp's message queue, one
    ``WSMessage`` per frame, for links that report frames rather than messages.

    A data frame becomes ``WSMessage(TEXT | BINARY | CONTINUATION, payload,
    extra)``: the opcode the frame carries (a message's first frame has its
    type, the rest CONTINUATION), and ``extra`` :data:`MORE` when it has no
    FIN, ``""`` when it has (as aiohttp's whole messages). Ping, pong and
    close are as aiohttp gives them.

    aiohttp's rules stay. These end the link (``WebSocketError``, close code
    1002 or 1007): a continuation outside a message, a new data frame inside
    one, RSV bits, reserved opcodes, a fragmented or over-125-byte control
    frame, a one-byte or non-UTF-8 close payload, a close code no endpoint
    may send (:func:`valid_close_code`). A frame over *max_size* bytes ends
    it with 1009 before its payload is buffered. At most one frame is held;
    the queue pauses the socket while it is full. Masked frames (a server
    should not send them) are unmasked.
    """

    def __init__(self, queue: Any, max_size: int) -> None:
        self.queue = queue
        self._max_size = max_size
        self._buffer = bytearray()
        self._in_message = False
        self._failed = False

    def feed_eof(self) -> None:
        self.queue.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        """What aiohttp's protocol calls: ``(True, b"")`` once the link failed."""
        if self._failed:
            return True, b""
        self._buffer += data
        try:
            while self._next_frame():
                pass
        except WebSocketError as exc:
            self._failed = True
            self._buffer.clear()
            self.queue.set_exception(exc)
            return True, b""
        return False, b""

    def _next_frame(self) -> bool:
        """Deliver the first complete frame in the buffer; False when there is none."""
        buf = self._buffer
        if len(buf) < 2:
            return False
        first, second = buf[0], buf[1]
        size, offset = second & 0x7F, 2
        if size == 126:
            if len(buf) < 4:
                return False
            size, offset = struct.unpack_from("!H", buf, 2)[0], 4
        elif size == 127:
            if len(buf) < 10:
                return False
            size, offset = struct.unpack_from("!Q", buf, 2)[0], 10
        fin, opcode = bool(first & 0x80), first & 0x0F
        self._check(first, opcode, fin, size)
        mask = None
        if second & 0x80:
            mask, offset = bytes(buf[offset : offset + 4]), offset + 4
        if len(buf) < offset + size:
            return False
        payload = bytes(buf[offset : offset + size])
        del buf[: offset + size]
        self._deliver(_KINDS[opcode], mask_payload(payload, mask) if mask else payload, fin)
        return True

    def _check(self, first: int, opcode: int, fin: bool, size: int) -> None:
        if first & 0x70:
            raise WebSocketError(WSCloseCode.PROTOCOL_ERROR, "RSV bits set without an extension")
        if opcode not in _DATA and opcode not in _CONTROL:
            raise WebSocketError(WSCloseCode.PROTOCOL_ERROR, f"Unexpected opcode={opcode!r}")
        if opcode in _CONTROL and (not fin or size > 125):
            raise WebSocketError(WSCloseCode.PROTOCOL_ERROR, "fragmented or long control frame")
        if opcode in _DATA and (opcode == WSMsgType.CONTINUATION) != self._in_message:
            raise WebSocketError(WSCloseCode.PROTOCOL_ERROR,
                                 "continuation outside a message, or a new one inside")
        if size > self._max_size:
            raise WebSocketError(WSCloseCode.MESSAGE_TOO_BIG,
                                 f"frame of {size} bytes exceeds limit {self._max_size}")

    def _deliver(self, kind: WSMsgType, payload: bytes, fin: bool) -> None:
        if kind in _DATA:
            self._in_message = not fin
            self.queue.feed_data(WSMessage(kind, payload, "" if fin else MORE), len(payload))
        elif kind is WSMsgType.CLOSE:
            if len(payload) == 1:
                raise WebSocketError(WSCloseCode.PROTOCOL_ERROR, "one-byte close payload")
            code = struct.unpack_from("!H", payload)[0] if payload else 0
            if payload and not valid_close_code(code):
                raise WebSocketError(WSCloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError as exc:
                raise WebSocketError(WSCloseCode.INVALID_TEXT, "invalid UTF-8 close reason") \
                    from exc
            self.queue.feed_data(WSMessage(kind, code, reason), 0)
        else:
            self.queue.feed_data(WSMessage(kind, payload, ""), len(payload))
