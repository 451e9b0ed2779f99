"""The one place that writes WebSocket frames itself (RFC 6455 §5.2).

aiohttp's writer always sets FIN, but an ESP-AT MCU may send a message in
pieces (``AT+WSSEND=…,fin=0`` then continuation frames), reserved opcodes and
arbitrary control payloads. So every frame gatewayd sends — data,
continuation, ping, pong and close, as a client (masked) or as a server
(unmasked) — is encoded here and written to the connection's transport by
:class:`FrameWriter`. Each frame goes out in one ``transport.write`` call, so
frames never interleave; aiohttp's own reader still parses what the peer sends.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING

from gatewayd.transport import TransportError

if TYPE_CHECKING:
    import asyncio

    from aiohttp import ClientWebSocketResponse
    from aiohttp.web import WebSocketResponse

__all__ = ["NO_STATUS_RCVD", "FrameWriter", "encode_frame", "mask_payload"]

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
