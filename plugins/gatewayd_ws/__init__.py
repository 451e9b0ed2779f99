"""gatewayd's WebSocket transport (link kinds ``ws`` and ``wss``), on aiohttp: outgoing
links (:mod:`gatewayd_ws.client`) and listeners (:mod:`gatewayd_ws.server`), registered
as one transport by :mod:`gatewayd_ws.plugin`.

The client, its limits and defaults:

- One aiohttp ``ClientSession`` per link; no cookies kept, no proxy taken from the
  environment, redirects followed as aiohttp does. The handshake sends the request's
  headers in order, adds ``User-Agent: ESP32 Websocket Client`` (as the ESP-AT module
  does) unless one is given, and omits aiohttp's ``Accept``/``Accept-Encoding``.
  Subprotocols go into ``Sec-WebSocket-Protocol``; none is required in the answer.
- ``connect_timeout`` bounds resolve + connect + TLS + handshake together; ``None``
  leaves only the operating system's TCP connect timeout. No read timeout, no
  automatic ping (the core owns ping/pong deadlines), no compression.
- wss verifies with the request's ``SSLContext``; without one, with the system trust
  store. ``server_hostname`` overrides the name checked and sent as SNI.
- Frames we send are written by :mod:`gatewayd_ws.frames` (masked, any 4-bit opcode,
  FIN as asked, no size limit or control-frame checks: the server judges). Frames we
  receive are parsed and reassembled by aiohttp: each message is delivered whole with
  ``fin=True``; no message size limit here (the core bounds its buffers), and
  ``LinkEvents.data`` is awaited before the next message is read (backpressure).
- A server PING is answered with a PONG echoing its payload; a PONG is reported with
  ``LinkEvents.pong``. A server close frame is answered with a close frame echoing its
  code and reported as ``closed(by_peer=True, code=…)``; a close frame without a code
  reports 1005. A close locally waits up to 1 s for the server's close frame.
- Socket options (nodelay, keep-alive, SO_SNDTIMEO/SO_RCVTIMEO) are applied after the
  connection is made; a refused option is logged and skipped. The send/receive
  timeouts have no effect on the non-blocking socket asyncio uses.
- Listening (``Transport.listen``) is the server's: see :mod:`gatewayd_ws.server` for
  its admission rules (allow list → 403, token → 401, bad upgrade → 400, ``Refused``
  → its status), handshake deadline, message limit and close handling. Its frames are
  written unmasked by the same :mod:`gatewayd_ws.frames`.
"""

# Deliberately light: importing the package must not import aiohttp
# (gatewayd_ws.client, gatewayd_ws.server and gatewayd_ws.frames hold the
# implementation).

#: How the transport shows in ``gatewayd plugins``; shared by the lazy
#: registration in :mod:`gatewayd_ws.plugin`, :mod:`gatewayd_ws.client` and
#: :mod:`gatewayd_ws.server`. The name dates from when it only connected; it is
#: kept because configurations, documentation and plugin-clash messages use it.
NAME = "aiohttp-ws-client"
KINDS = frozenset({"ws", "wss"})
SUMMARY = ("WebSocket client and server (ws, wss) on aiohttp; "
           "frames written by gatewayd_ws")
