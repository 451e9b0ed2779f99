"""Ameba's transparent-transmission (TT) raw blocks: the ``>>>`` prompt, the
ring size past which watermark messages are written, and the table helper
for commands that count their fields."""

from __future__ import annotations

from typing import Any

from gatewayd.dialects.base import Setter, Watermarks

__all__ = ["TT_HIGH_WATERMARK", "TT_LOW_WATERMARK", "TT_PROMPT", "TT_RING", "WATERMARKS", "exact"]

TT_PROMPT = b">>>\r\n"
TT_HIGH_WATERMARK = b"[$][TT]:High Watermark\r\n"
TT_LOW_WATERMARK = b"[$][TT]:Low Watermark\r\n"
#: Raw blocks this large get watermark messages (the firmware's TT ring size).
TT_RING = 80 * 1024
WATERMARKS = Watermarks(high_at=TT_RING * 7 // 10, low_at=TT_RING * 2 // 10,
                        high=TT_HIGH_WATERMARK, low=TT_LOW_WATERMARK)


def exact(run: Any, params: tuple[Any, ...], *, escaped: bool = False) -> Setter:
    """A setter that refuses fields beyond its parameters with ``ERROR: 1``
    (the socket and WebSocket server handlers check their field count)."""
    return Setter(run, params, escaped=escaped, max_params=len(params))
