"""Ameba's transparent-transmission (TT) raw blocks: the ``>>>`` prompt, the
ring size past which watermark messages are written, reading a block with the
``<<<`` abort (whole, :func:`read_block`, or streamed to the network,
:func:`stream_block`), and the table helper for commands that count their
fields."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gatewayd.dialects.base import AtError, PortContext, RawAborted, Setter, Watermarks

__all__ = ["TT_HIGH_WATERMARK", "TT_LOW_WATERMARK", "TT_PROMPT", "TT_RING", "WATERMARKS", "exact",
           "read_block", "stream_block"]

TT_PROMPT = b">>>\r\n"
TT_HIGH_WATERMARK = b"[$][TT]:High Watermark\r\n"
TT_LOW_WATERMARK = b"[$][TT]:Low Watermark\r\n"
#: Raw blocks this large get watermark messages (the firmware's TT ring size).
TT_RING = 80 * 1024
WATERMARKS = Watermarks(high_at=TT_RING * 7 // 10, low_at=TT_RING * 2 // 10,
                        high=TT_HIGH_WATERMARK, low=TT_LOW_WATERMARK)


def exact(run: Any, params: tuple[Any, ...], *, escaped: bool = False,
          every_field: bool = False) -> Setter:
    """A setter that refuses fields beyond its parameters with ``ERROR: 1``
    (the socket and WebSocket server handlers check their field count); with
    *every_field*, fewer fields too (each may be empty)."""
    return Setter(run, params, escaped=escaped, max_params=len(params),
                  min_params=len(params) if every_field else 0)


def _nothing_sent(code: int) -> AtError:
    return AtError(code, why="transparent transmission aborted before any data")


async def read_block(ctx: PortContext, length: int, *, empty_abort: int = 3) -> bytes:
    """A TT block of *length* bytes, whole. ``<<<`` ends it early with what
    came before; before any data it is ``ERROR: <empty_abort>``."""
    try:
        return await ctx.read_raw(length, TT_PROMPT, abort=b"<")
    except RawAborted as aborted:
        if not aborted.data:
            raise _nothing_sent(empty_abort) from None
        return aborted.data


async def stream_block(ctx: PortContext, length: int, chunk: int,
                       send: Callable[[bytes, bool, bool], Awaitable[None]], *,
                       empty_abort: int) -> None:
    """Stream a TT block of *length* bytes from the UART in *chunk* pieces:
    ``await send(piece, first, last)`` for each, which holds the MCU back while
    the network is slower. Blocks of :data:`TT_RING` bytes or more get the
    watermark messages. ``<<<`` after some data ends what was begun with
    ``send(b"", False, True)``; before any data it is ``ERROR: <empty_abort>``."""
    stream = ctx.read_raw_stream(length, TT_PROMPT, chunk=chunk, abort=b"<",
                                 watermarks=WATERMARKS if length >= TT_RING else None)
    sent = 0
    try:
        async for piece in stream:
            first = sent == 0
            sent += len(piece)
            await send(piece, first, sent >= length)
    except RawAborted as aborted:
        if aborted.received == 0:
            raise _nothing_sent(empty_abort) from None
        await send(b"", False, True)
